"""Data QC figures: what went into the study, before any model sees it."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from cxrlib.data.cache import load_split
from cxrlib.plotting import plain, plt, save_figure
from cxrlib.scoring.reference import (
    COMPARISONS,
    ShiftFinding,
    floor_label,
    format_fid,
    shift_sentence,
)


def plot_class_counts(class_counts_csv: Path, target: Path, *, synthetic: bool = False) -> None:
    """Grouped bars: images per class in each split, with patient counts annotated."""
    counts = pd.read_csv(class_counts_csv)
    splits = [s for s in ("train", "val", "test") if s in set(counts["split"])]
    labels = sorted(counts["label"].unique())
    fig, ax = plt.subplots(figsize=(6, 3.5))
    width = 0.8 / len(labels)
    for j, label in enumerate(labels):
        sub = counts[counts["label"] == label].set_index("split").reindex(splits).fillna(0)
        xs = np.arange(len(splits)) + j * width
        bars = ax.bar(xs, sub["n_images"], width, label=plain(label))
        for bar, n_pat in zip(bars, sub["n_patients"], strict=True):
            ax.annotate(
                f"{int(n_pat)} pat.",
                (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                ha="center",
                va="bottom",
                fontsize=7,
            )
    ax.set_xticks(np.arange(len(splits)) + width * (len(labels) - 1) / 2, splits)
    ax.set_ylabel("images")
    ax.set_title("Usable images per split and class")
    ax.legend()
    save_figure(fig, target, synthetic=synthetic)


def plot_examples(
    cache_paths: Sequence[Path],
    target: Path,
    per_class: int,
    *,
    splits: Sequence[str] = ("train", "test"),
    synthetic: bool = False,
) -> None:
    """Prepared images, one row per (class, split) for each of `splits` present in
    `cache_paths` (the splits' caches), `per_class` per row, evenly spaced through the split
    (not cherry-picked): test images right under the training images of their class, so a
    shift between the splits shows."""
    caches = {Path(p).stem: load_split(p) for p in cache_paths if Path(p).stem in splits}
    shown = [s for s in splits if s in caches]
    if not shown:
        raise ValueError(f"no cache of the splits {', '.join(splits)} among {cache_paths}")
    labels = list(caches[shown[0]].label_names)
    rows = [(label, split) for label in labels for split in shown]
    # cells as wide as the report's pane allows, the figure no taller than a laptop window
    cell = min(7.2 / per_class, 6.0 / (1.15 * len(rows)))
    fig, axes = plt.subplots(
        len(rows), per_class, figsize=(cell * per_class, cell * 1.15 * len(rows)), squeeze=False
    )
    for r, (label, split) in enumerate(rows):
        arrays = caches[split]
        images = arrays.of_label(label) if label in arrays.label_names else arrays.images[:0]
        picks = np.linspace(0, len(images) - 1, num=min(per_class, len(images))).astype(int)
        for c in range(per_class):
            ax = axes[r, c]
            ax.axis("off")
            if c < len(picks):
                ax.imshow(images[picks[c]], cmap="gray", vmin=0, vmax=255)
        axes[r, 0].set_title(
            plain(f"{split}: {label} ({len(images)} images)"), loc="left", fontsize=9
        )
    fig.suptitle(
        f"Prepared {' and '.join(shown)} images, evenly spaced through each split", fontsize=10
    )
    save_figure(fig, target, synthetic=synthetic)


def plot_histograms(
    histograms_csv: Path, target: Path, normalisation: str, *, synthetic: bool = False
) -> None:
    """Mean intensity histograms per class before and after normalisation (8-bit scale)."""
    hist = pd.read_csv(histograms_csv)
    fig, axes = plt.subplots(1, 2, figsize=(7.2, 3), sharey=False)
    for ax, stage, title in zip(
        axes, ("before", "after"), ("decoded", f"after {normalisation} + resize"), strict=True
    ):
        for label, sub in hist[hist["stage"] == stage].groupby("label"):
            density = sub["count"].to_numpy(float)
            density /= max(density.sum(), 1.0)
            ax.plot(sub["level"], density, label=plain(label), lw=1)
        ax.set_title(f"Intensity, {title}", fontsize=9)
        ax.set_xlabel("gray level (8-bit)")
    axes[0].set_ylabel("fraction of pixels")
    axes[1].legend(fontsize=8)
    save_figure(fig, target, synthetic=synthetic)


def plot_real_distances(
    table: pd.DataFrame,
    findings: Sequence[ShiftFinding],
    target: Path,
    *,
    label: str = "",
    synthetic: bool = False,
) -> None:
    """Bars of the real-vs-real FIDs (results/metrics/real_reference.csv), one group per
    extractor and resolution: train vs val, train half vs half, train vs test.

    A log axis when the FIDs span more than 50x; each bar carries its value; a group whose
    test split is flagged (`findings`) is titled so, and every finding's sentence is printed
    under the axes. NaN FIDs (a set too small) are drawn as "n/a".
    """
    groups = sorted(
        {(str(e), int(r)) for e, r in zip(table.extractor, table.resolution, strict=True)}
    )
    order = [COMPARISONS[0], COMPARISONS[2], COMPARISONS[1]]  # the two floors, then the test
    colors = {COMPARISONS[0]: "C0", COMPARISONS[2]: "C2", COMPARISONS[1]: "C3"}
    flagged = {(f.extractor, f.resolution): f.flagged for f in findings}
    fig, ax = plt.subplots(figsize=(max(5.0, 2.4 * len(groups) + 1.5), 3.8))
    width = 0.8 / len(order)
    values: list[float] = []
    labelled = []
    for j, pair in enumerate(order):
        fids = []
        for extractor, res in groups:
            row = table[
                (table.extractor.astype(str) == extractor)
                & (table.resolution.astype(int) == res)
                & (table.set_a == pair[0])
                & (table.set_b == pair[1])
            ]
            fids.append(float(row.fid.iloc[0]) if len(row) else float("nan"))
        values += fids
        xs = np.arange(len(groups)) + j * width
        bars = ax.bar(xs, fids, width, color=colors[pair], label=floor_label(*pair))
        labelled += list(zip(bars, fids, strict=True))
    finite = [v for v in values if np.isfinite(v) and v > 0]
    if finite and max(finite) / min(finite) > 50:
        ax.set_yscale("log")
    bottom = ax.get_ylim()[0]
    for bar, fid in labelled:
        ax.annotate(
            format_fid(fid),
            (bar.get_x() + bar.get_width() / 2, fid if np.isfinite(fid) else bottom),
            ha="center",
            va="bottom",
            fontsize=7,
        )
    names = [f"{e}, {r} px" + ("\nTEST SHIFTED" if flagged.get((e, r)) else "") for e, r in groups]
    ax.set_xticks(np.arange(len(groups)) + width * (len(order) - 1) / 2, names)
    ax.set_ylabel("FID between real image sets" + (" (log)" if ax.get_yscale() == "log" else ""))
    of = f" ({label})" if label else ""
    ax.set_title(f"How far real images{of} are from each other: train, val, test", fontsize=10)
    ax.legend(fontsize=8)
    text = "\n".join(textwrap.fill(shift_sentence(f), 120) for f in findings)
    if text:
        fig.text(0.01, 0.0, text, fontsize=7, va="top", ha="left")
    save_figure(fig, target, synthetic=synthetic)
