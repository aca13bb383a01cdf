"""The front page's figure: real training and test images beside each GAN run's chosen samples.

One row per image set, the same number of images in each, every tile drawn at the same size
whatever the set's resolution (a 32 px StyleGAN2-ADA sample beside 128 px real images), so a
reader compares the sets at a glance. Real images are evenly spaced through their split (not
picked); samples are the first ones the sampling job wrote (seeded, not picked either).
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from cxrlib.data.cache import load_split
from cxrlib.plotting import plain, plt, save_figure

# Width of the front page's text column in Snakemake's report (Tailwind max-w-lg: 32 rem).
COLUMN_PX = 512


@dataclass(frozen=True)
class ImageRow:
    """One row of the figure: its label (may hold a line break) and uint8 (N, H, W) images."""

    label: str
    images: np.ndarray


def real_row(cache: str | Path, label: str, n: int, title: str) -> ImageRow:
    """`n` images of class `label` from a split's cache (cxrlib.data.cache), evenly spaced."""
    images = load_split(cache).of_label(label)
    if len(images) == 0:
        raise ValueError(f"{cache} holds no {label} image for the summary figure")
    picks = np.linspace(0, len(images) - 1, num=min(n, len(images))).round().astype(int)
    return ImageRow(title, images[picks])


def sample_row(folder: str | Path, n: int, title: str) -> ImageRow:
    """The first `n` samples listed in a sample folder's index.csv (generate_samples)."""
    folder = Path(folder)
    index = pd.read_csv(folder / "index.csv")
    images = []
    for name in index["file"].head(n):
        with Image.open(folder / name) as im:
            images.append(np.asarray(im.convert("L")))
    if not images:
        raise ValueError(f"{folder} lists no sample in index.csv for the summary figure")
    return ImageRow(title, np.stack(images))


def plot_summary(
    rows: Sequence[ImageRow], out_png: Path, *, title: str = "", synthetic: bool = False
) -> None:
    """Rows of images with their labels on the left, sized for the report's text column.

    Rows with fewer images than the longest leave blank tiles. The PNG is twice the column's
    width (COLUMN_PX) and a half, so it stays sharp when the browser shrinks it to the column.
    """
    if not rows:
        raise ValueError("no image rows for the summary figure")
    n = max(len(r.images) for r in rows)
    label_in = 1.15  # inches for the row labels
    tile_in = (COLUMN_PX / 100 - label_in) / n
    fig, axes = plt.subplots(
        len(rows),
        n,
        figsize=(COLUMN_PX / 100, tile_in * len(rows) + 0.35),
        squeeze=False,
        gridspec_kw={
            "wspace": 0.04,
            "hspace": 0.06,
            "left": label_in / (COLUMN_PX / 100),
            "top": 1 - 0.3 / (tile_in * len(rows) + 0.35),
            "bottom": 0.0,
            "right": 1.0,
        },
    )
    for r, row in enumerate(rows):
        for c in range(n):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if c < len(row.images):
                ax.imshow(row.images[c], cmap="gray", vmin=0, vmax=255, interpolation="lanczos")
        # long names wrapped, so a run name never widens the figure past the column
        label = "\n".join(textwrap.fill(plain(part), 18) for part in row.label.split("\n"))
        axes[r, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=7, labelpad=4)
    if title:
        fig.suptitle(plain(title), fontsize=8, y=1.0, va="top")
    save_figure(fig, out_png, synthetic=synthetic, dpi=150)
