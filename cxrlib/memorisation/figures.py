"""Figures of the memorisation audit: how close samples come to training images, and the closest.

Both figures read an `AuditResult` (cxrlib.memorisation.audit.audit). The histograms put the
synthetic-to-real nearest distances beside the real-to-real ones (other patients only): a
generator that learnt the distribution without copying gives two similar histograms; copies
show up as a separate mass beyond the thresholds, marked on both panels.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from cxrlib.memorisation.audit import AuditResult
from cxrlib.plotting import plt, save_figure


def _shared_bins(a: pd.Series, b: pd.Series, extra: float, n: int = 40) -> np.ndarray:
    """Bins over the range of both series and the threshold, so the histograms compare."""
    values = np.concatenate([a.to_numpy(float), b.to_numpy(float), [extra]])
    values = values[np.isfinite(values)]
    low, high = float(values.min()), float(values.max())
    if high <= low:
        high = low + 1e-6
    return np.linspace(low, high, n + 1)


def plot_nearest_distances(
    result: AuditResult, out_png: str | Path, *, synthetic: bool = False
) -> None:
    """Two panels: nearest feature distance and best SSIM, synthetic->real vs real->real.

    Densities (not counts), since the sets differ in size; the near-copy thresholds are dashed
    lines (synthetic images left of the feature line or right of the SSIM line are flagged).
    Without a real-to-real baseline (reals of one patient) only the synthetic histograms and
    the SSIM line are drawn.
    """
    fake, real, summary = result.samples, result.real_to_real, result.summary
    fig, axes = plt.subplots(1, 2, figsize=(7.2, 3.2))
    panels = (
        (
            "feature_distance",
            summary["feature_threshold"],
            "nearest feature distance (L2, feature units)",
        ),
        ("ssim", summary["ssim_threshold"], "best SSIM with a real image (unitless, 0-1)"),
    )
    for ax, (column, threshold, label) in zip(axes, panels, strict=True):
        threshold = np.nan if threshold is None else float(threshold)
        bins = _shared_bins(fake[column], real[column], threshold)
        real_values = real[column].to_numpy(float)
        real_values = real_values[np.isfinite(real_values)]
        if len(real_values):
            ax.hist(
                real_values, bins=bins, density=True, alpha=0.55, label="real -> other patients"
            )
        ax.hist(fake[column], bins=bins, density=True, alpha=0.55, label="synthetic -> real")
        if np.isfinite(threshold):
            ax.axvline(threshold, color="firebrick", ls="--", lw=1, label="near-copy threshold")
        ax.set_xlabel(label, fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0].set_ylabel("probability density (share per unit)", fontsize=8)
    axes[1].set_ylabel("probability density (share per unit)", fontsize=8)
    axes[0].set_title(
        f"threshold: {summary['feature_quantile']:.0%} quantile of real->real"
        if summary.get("feature_threshold") is not None
        else "no threshold: real images of < 2 patients (n/a)",
        fontsize=9,
    )
    axes[1].set_title(f"threshold: SSIM >= {summary['ssim_threshold']:.2f}", fontsize=9)
    axes[1].legend(fontsize=7)
    fig.suptitle(
        f"Memorisation audit: {summary['n_near_copies']} of {summary['n_fake']} synthetic images "
        f"flagged as near-copies ({summary['n_real']} training images)",
        fontsize=10,
    )
    save_figure(fig, Path(out_png), synthetic=synthetic)


def closest_pairs(
    result: AuditResult, n: int = 8, rank_by: Literal["ssim", "feature"] = "ssim"
) -> pd.DataFrame:
    """The `n` synthetic images closest to a training image: highest SSIM first (or smallest
    feature distance), with `real_index`/`real_path` naming the partner on that criterion."""
    samples = result.samples
    if rank_by == "ssim":
        top = samples.sort_values(["ssim", "sample"], ascending=[False, True]).head(n).copy()
        top["real_index"] = top["nearest_pixel_index"]
        top["real_path"] = top["nearest_pixel_path"]
    elif rank_by == "feature":
        top = samples.sort_values(["feature_distance", "sample"]).head(n).copy()
        top["real_index"] = top["nearest_feature_index"]
        top["real_path"] = top["nearest_feature_path"]
    else:
        raise ValueError(f"rank_by must be 'ssim' or 'feature', got {rank_by!r}")
    return top.reset_index(drop=True)


def _real_image(images: np.ndarray | Mapping[str, np.ndarray], index: int, path: str) -> np.ndarray:
    if isinstance(images, Mapping):
        return images[path]
    return images[index]


def plot_closest_pairs(
    result: AuditResult,
    fake_images: np.ndarray,
    real_images_by_path_or_index: np.ndarray | Mapping[str, np.ndarray],
    out_png: str | Path,
    n: int = 8,
    *,
    rank_by: Literal["ssim", "feature"] = "ssim",
    pairs_per_row: int = 3,
    synthetic: bool = False,
) -> None:
    """The closest pairs side by side: synthetic | its nearest real training image.

    `fake_images` uint8 (M, h, w) in the audit's order; the real images either as the array the
    audit saw (indexed by position) or a mapping path -> uint8 image. Pairs are ranked by
    `rank_by` (see `closest_pairs`); titles give SSIM, feature distance and the real file name,
    near-copies in red.
    """
    pairs = closest_pairs(result, n, rank_by)
    if pairs.empty:
        raise ValueError("the audit has no synthetic images to show")
    rows = -(-len(pairs) // pairs_per_row)
    cols = 2 * min(pairs_per_row, len(pairs))
    fig, axes = plt.subplots(rows, cols, figsize=(1.2 * cols, 1.6 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for k, pair in pairs.iterrows():
        ax_fake = axes[k // pairs_per_row, 2 * (k % pairs_per_row)]
        ax_real = axes[k // pairs_per_row, 2 * (k % pairs_per_row) + 1]
        real = _real_image(real_images_by_path_or_index, int(pair["real_index"]), pair["real_path"])
        ax_fake.imshow(fake_images[int(pair["sample"])], cmap="gray", vmin=0, vmax=255)
        ax_real.imshow(real, cmap="gray", vmin=0, vmax=255)
        colour = "firebrick" if pair["near_copy"] else "black"
        ax_fake.set_title(
            f"synthetic #{int(pair['sample'])}\nSSIM {pair['ssim']:.3f}",
            fontsize=7,
            color=colour,
        )
        # The feature distance is to the feature-nearest real, which may be another image.
        other = "" if pair["nearest_feature_path"] == pair["real_path"] else " (other)"
        ax_real.set_title(
            f"{Path(str(pair['real_path'])).name}\nfeat. d {pair['feature_distance']:.3g}{other}",
            fontsize=7,
            color=colour,
        )
    criterion = "SSIM" if rank_by == "ssim" else "feature distance"
    fig.suptitle(
        f"Closest synthetic | real training pairs by {criterion} (red: flagged near-copy)",
        fontsize=9,
    )
    save_figure(fig, Path(out_png), synthetic=synthetic)
