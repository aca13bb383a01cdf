"""StyleGAN2-ADA report figures: training curves with ADA's p, and the truncation sweep."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from cxrlib.plotting import plt, save_figure
from cxrlib.scoring.fidelity import to_uint8_rgb
from cxrlib.scoring.figures import PANE_WIDTH_IN
from cxrlib.snapshot import load_generator, read_snapshot


def plot_stylegan_curves(
    train_log: pd.DataFrame,
    out_png: Path,
    *,
    ada_target: float | None = None,
    synthetic: bool = False,
) -> None:
    """Losses, regularisers, and ADA's p with r_t (and its `ada_target`, a dotted line) against
    kimg (columns of train_log.csv), three panels stacked to fit the report's image pane."""
    fig, axes = plt.subplots(3, 1, figsize=(PANE_WIDTH_IN, 6.0), sharex=True)
    kimg = train_log["kimg"]
    axes[0].plot(kimg, train_log["loss_g"], label="G loss")
    axes[0].plot(kimg, train_log["loss_d"], label="D loss")
    axes[0].set_title("non-saturating logistic losses", fontsize=8)
    axes[0].set_ylabel("loss (softplus, per image)", fontsize=7)
    for column, label in (("r1", "R1 penalty"), ("pl", "path-length penalty")):
        if column in train_log and train_log[column].notna().any():
            axes[1].plot(kimg, train_log[column], label=label)
    axes[1].set_title("regularisers", fontsize=8)
    axes[1].set_ylabel("penalty (unweighted)", fontsize=7)
    if "ada_p" in train_log:
        axes[2].plot(kimg, train_log["ada_p"], label="augmentation p")
    if "ada_rt" in train_log and train_log["ada_rt"].notna().any():
        axes[2].plot(kimg, train_log["ada_rt"], label="r_t = E[sign D(real)]", alpha=0.7)
    if ada_target is not None:
        axes[2].axhline(
            ada_target, color="gray", ls=":", lw=1, label=f"r_t target ({ada_target:g})"
        )
    axes[2].set_ylim(-0.05, 1.05)
    axes[2].set_title("adaptive augmentation", fontsize=8)
    axes[2].set_ylabel("probability / sign mean (0-1)", fontsize=7)
    axes[2].set_xlabel("kimg (thousands of real images shown to D)", fontsize=7)
    for ax in axes:
        ax.legend(fontsize=6.5, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
        ax.tick_params(labelsize=6.5)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, Path(out_png), synthetic=synthetic)


@torch.no_grad()
def plot_truncation(
    snapshot: Path,
    psis: Sequence[float],
    out_png: Path,
    *,
    n: int = 8,
    seed: int = 0,
    which: str = "",
    synthetic: bool = False,
) -> None:
    """One row per truncation psi, the same `n` seeds in every row; `which` says in the title
    how the snapshot was chosen (e.g. "best")."""
    generator = load_generator(snapshot)
    rows = []
    for psi in psis:
        rng = torch.Generator().manual_seed(seed)
        images = to_uint8_rgb(generator.sample(n, rng, truncation_psi=float(psi)))
        rows.append(images[:, 0].numpy())
    fig, axes = plt.subplots(
        len(psis), n, figsize=(PANE_WIDTH_IN, PANE_WIDTH_IN / n * len(psis) + 0.4), squeeze=False
    )
    for r, (psi, images) in enumerate(zip(psis, rows, strict=True)):
        for c in range(n):
            ax = axes[r, c]
            ax.imshow(np.asarray(images[c]), cmap="gray", vmin=0, vmax=255)
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(f"psi {psi:g}", fontsize=9)
    progress = read_snapshot(snapshot)["progress"]
    chosen = f"{which} snapshot" if which else "snapshot"
    shown = progress.get("kimg_shown", progress.get("kimg")) if isinstance(progress, dict) else None
    at = f" ({float(shown):g} kimg shown)" if shown is not None else ""
    fig.suptitle(f"truncation sweep, {chosen} {Path(snapshot).stem}{at}", fontsize=10)
    save_figure(fig, Path(out_png), synthetic=synthetic)
