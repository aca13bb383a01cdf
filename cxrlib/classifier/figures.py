"""Classifier figures: ROC curves per arm, a metric against the synthetic ratio, confusion matrices.

Prediction frames have columns y_true (1 = positive class, PNEUMONIA) and score (P(positive));
see cxrlib.classifier.trainer.evaluate_split. The summary has one row per trained model with
columns arm, ratio, seed and the metrics (see cxrlib.classifier.metrics.compare_arms).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.metrics import confusion_matrix, roc_auc_score, roc_curve

from cxrlib.classifier.metrics import MIN_SEEDS
from cxrlib.plotting import plain, plt, save_figure


def _per_seed(predictions: Mapping[str, pd.DataFrame | Sequence[pd.DataFrame]]) -> dict:
    """label -> list of prediction frames (one per seed); a single frame is one seed."""
    return {
        label: [frames] if isinstance(frames, pd.DataFrame) else list(frames)
        for label, frames in predictions.items()
    }


def plot_roc(
    predictions: Mapping[str, pd.DataFrame | Sequence[pd.DataFrame]],
    out_png: Path,
    *,
    synthetic: bool = False,
) -> None:
    """ROC curves per arm: every seed's curve (thin) and their vertical mean (thick).

    predictions: label -> the prediction frames (y_true, score) of its seeds. The legend gives
    the mean and sd over seeds of the per-seed AUROCs, the numbers the headline table shows
    (not the AUROC of the mean curve, which can differ a little).
    """
    grid = np.linspace(0.0, 1.0, 201)
    fig, ax = plt.subplots(figsize=(5.6, 5.2))
    for k, (label, frames) in enumerate(_per_seed(predictions).items()):
        colour = f"C{k % 10}"
        aurocs, tprs = [], []
        for frame in frames:
            y, s = frame["y_true"].to_numpy(int), frame["score"].to_numpy(float)
            fpr, tpr, _ = roc_curve(y, s)
            aurocs.append(roc_auc_score(y, s))
            tprs.append(np.interp(grid, fpr, tpr))
            tprs[-1][0] = 0.0  # every curve starts at (0, 0)
            ax.plot(fpr, tpr, lw=0.6, alpha=0.35, color=colour)
        spread = f" ± {np.std(aurocs, ddof=1):.3f}" if len(aurocs) > 1 else ""
        ax.plot(
            grid,
            np.mean(tprs, axis=0),
            lw=1.6,
            color=colour,
            label=f"{label}: {np.mean(aurocs):.3f}{spread} ({len(aurocs)} seed(s))",
        )
    ax.plot([0, 1], [0, 1], ls=":", color="grey", lw=0.8)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("1 - specificity (false positive rate)")
    ax.set_ylabel("sensitivity (true positive rate)")
    ax.set_title("ROC on the real test set: each seed (thin), mean over seeds (thick)", fontsize=9)
    ax.set_aspect("equal")
    # below the chance line, where a useful classifier's curves never are
    ax.legend(
        fontsize=7, title="arm: test AUROC mean ± sd over seeds", title_fontsize=7,
        loc="lower right",
    )  # fmt: skip
    save_figure(fig, out_png, synthetic=synthetic)


def mean_interval(values: np.ndarray, alpha: float = 0.05) -> tuple[float, float, float]:
    """(mean, low, high) over seeds: the 95 % t interval intersected with [0, 1] (every
    metric's range); low and high NaN with fewer than MIN_SEEDS seeds (see
    cxrlib.classifier.metrics: t with 1 degree of freedom spans several ranges)."""
    n = len(values)
    mean = float(values.mean())
    if n < MIN_SEEDS:
        return mean, math.nan, math.nan
    half = float(stats.t.ppf(1 - alpha / 2, n - 1)) * values.std(ddof=1) / math.sqrt(n)
    if not math.isfinite(half):  # a NaN value: no interval (max/min would turn it into 0/1)
        return mean, math.nan, math.nan
    return mean, max(0.0, mean - half), min(1.0, mean + half)


def _seed_counts(group: pd.DataFrame) -> str:
    """'3 seeds', or '2-3 seeds per ratio' when ratios differ."""
    sizes = group.groupby("ratio").size()
    low, high = int(sizes.min()), int(sizes.max())
    return f"{low} seeds" if low == high else f"{low}-{high} seeds per ratio"


def plot_metric_vs_ratio(
    summary: pd.DataFrame,
    out_png: Path,
    metric: str = "auroc",
    *,
    baseline: str = "real",
    synthetic: bool = False,
) -> None:
    """Mean `metric` over seeds against the synthetic ratio, per arm, with every seed's value
    as a dot and, from MIN_SEEDS seeds on, the 95 % t interval (kept inside [0, 1]).

    Arms without added images (ratio 0: the real-only baseline, classical augmentation) are
    drawn as horizontal lines with a shaded interval, the others as points with error bars,
    set side by side (by 1.5 % of the ratio axis each) where several arms share a ratio.
    """
    fig, ax = plt.subplots(figsize=(5.4, 3.8))
    n_min = int(summary.groupby(["arm", "ratio"]).size().min()) if len(summary) else 0
    added = sorted(set(summary.loc[summary["ratio"] > 0, "arm"]))
    span = float(summary["ratio"].max()) if len(summary) else 0.0
    for k, (arm, grp) in enumerate(summary.groupby("arm", sort=True)):
        colour = "black" if arm == baseline else f"C{k}"
        points = [
            (float(r), *mean_interval(g[metric].to_numpy(float)))
            for r, g in grp.groupby("ratio", sort=True)
        ]
        dodge = (added.index(arm) - (len(added) - 1) / 2) * 0.015 * span if arm in added else 0
        ax.scatter(grp["ratio"] + dodge, grp[metric], s=10, color=colour, alpha=0.5, lw=0)
        if len(points) == 1 and points[0][0] == 0:
            _, mean, low, high = points[0]
            ax.axhline(mean, color=colour, ls="--", lw=1, label=f"{arm} (n={len(grp)})")
            if math.isfinite(low):
                ax.axhspan(low, high, color=colour, alpha=0.12, lw=0)
            continue
        xs, means, lows, highs = (np.array(v, dtype=float) for v in zip(*points, strict=True))
        ax.errorbar(
            xs + dodge,
            means,
            yerr=np.nan_to_num(np.vstack([means - lows, highs - means])),
            marker="o",
            ms=4,
            capsize=3,
            color=colour,
            label=f"{arm} ({_seed_counts(grp)})",
        )
    low, high = ax.get_ylim()
    ax.set_ylim(max(low, -0.02), min(high, 1.02))
    ax.set_xlabel("synthetic : real ratio (extra images / real images of the synthetic class)")
    interval = (
        "95 % t interval, clipped to 0-1"
        if n_min >= MIN_SEEDS
        else f"no interval: < {MIN_SEEDS} seeds"
    )
    name = metric.upper() if metric in ("auroc", "auprc", "f1") else metric.replace("_", " ")
    ax.set_ylabel(f"test {name} (mean over seeds; {interval})", fontsize=8)
    ax.set_title(f"Test {name} against the amount of added data; dots: single seeds", fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    save_figure(fig, out_png, synthetic=synthetic)


def plot_confusion(
    predictions: Mapping[str, pd.DataFrame | Sequence[pd.DataFrame]],
    out_png: Path,
    *,
    threshold: float = 0.5,
    class_names: tuple[str, str] = ("NORMAL", "PNEUMONIA"),
    synthetic: bool = False,
) -> None:
    """One confusion matrix per entry: counts summed over its seeds' frames and row
    percentages, at `threshold`.

    class_names: (negative, positive) names for the axes.
    """
    predictions = {
        label: pd.concat(frames, ignore_index=True)
        for label, frames in _per_seed(predictions).items()
    }
    n = max(len(predictions), 1)
    cols = min(n, 3)  # rows of three fit the report's image pane
    rows = -(-n // cols)
    # panels no taller than wide, the figure no taller than a laptop window at the pane's width
    height = min(2.3, 6.0 / rows)
    fig, axes = plt.subplots(rows, cols, figsize=(2.4 * cols, height * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    for k, (ax, (label, frame)) in enumerate(zip(axes.flat, predictions.items(), strict=False)):
        y = frame["y_true"].to_numpy(int)
        pred = (frame["score"].to_numpy(float) >= threshold).astype(int)
        cm = confusion_matrix(y, pred, labels=[0, 1])
        rows = cm / np.maximum(cm.sum(1, keepdims=True), 1)
        ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
        for i in range(2):
            for j in range(2):
                colour = "white" if rows[i, j] > 0.5 else "black"
                ax.text(
                    j,
                    i,
                    f"{cm[i, j]}\n{100 * rows[i, j]:.0f}%",
                    ha="center",
                    va="center",
                    fontsize=8,
                    color=colour,
                )
        names = [plain(c) for c in class_names]
        ax.set_xticks([0, 1], names, fontsize=7)
        # class names and "true" on the first panel only: they overlap their left neighbour
        ax.set_yticks([0, 1], names if k % cols == 0 else [], fontsize=7)
        ax.set_xlabel("predicted", fontsize=8)
        if k % cols == 0:
            ax.set_ylabel("true", fontsize=8)
        ax.set_title(str(label), fontsize=8)
    fig.suptitle(
        f"Confusion matrices on the real test set (threshold {threshold}; counts summed over "
        "seeds)",
        fontsize=9,
    )
    fig.tight_layout()  # each panel's "predicted" clear of the title below it
    save_figure(fig, out_png, synthetic=synthetic)
