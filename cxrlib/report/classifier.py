"""Classifier figures: ROC curves per arm, a metric against the synthetic ratio, confusion matrices.

Prediction frames have columns y_true (1 = positive class, PNEUMONIA) and score (P(positive));
see cxrlib.train.classifier.evaluate_split. The summary has one row per trained model with
columns arm, ratio, seed and the metrics (see cxrlib.metrics.classification.compare_arms).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.metrics import confusion_matrix, roc_auc_score, roc_curve

from cxrlib.report.figures import plt, save_figure


def plot_roc(
    predictions: dict[str, pd.DataFrame], out_png: Path, *, synthetic: bool = False
) -> None:
    """One ROC curve per entry (label -> frame with y_true, score), AUROC in the legend."""
    fig, ax = plt.subplots(figsize=(4.8, 4.5))
    for label, frame in predictions.items():
        y, s = frame["y_true"].to_numpy(int), frame["score"].to_numpy(float)
        fpr, tpr, _ = roc_curve(y, s)
        ax.plot(fpr, tpr, lw=1.2, label=f"{label} (AUROC {roc_auc_score(y, s):.3f})")
    ax.plot([0, 1], [0, 1], ls=":", color="grey", lw=0.8)
    ax.set_xlabel("1 - specificity (false positive rate)")
    ax.set_ylabel("sensitivity (true positive rate)")
    ax.set_title("ROC on the real test set", fontsize=10)
    ax.set_aspect("equal")
    ax.legend(fontsize=7, loc="lower right")
    save_figure(fig, out_png, synthetic=synthetic)


def _mean_ci(values: np.ndarray, alpha: float = 0.05) -> tuple[float, float]:
    """(mean, t-interval half width) over seeds; half width NaN with one seed."""
    n = len(values)
    if n < 2:
        return float(values.mean()), math.nan
    half = float(stats.t.ppf(1 - alpha / 2, n - 1)) * values.std(ddof=1) / math.sqrt(n)
    return float(values.mean()), half


def plot_metric_vs_ratio(
    summary: pd.DataFrame,
    out_png: Path,
    metric: str = "auroc",
    *,
    baseline: str = "real",
    synthetic: bool = False,
) -> None:
    """Mean `metric` over seeds with its 95 % t interval, against the synthetic ratio, per arm.

    Arms with one ratio (the real-only baseline, classical augmentation) are drawn as
    horizontal lines with a shaded interval; single seeds as small dots. The axis stops at the
    metric's range [0, 1]: with two or three seeds a t interval is wider than that.
    """
    fig, ax = plt.subplots(figsize=(6, 4))
    for k, (arm, grp) in enumerate(summary.groupby("arm", sort=True)):
        colour = "black" if arm == baseline else f"C{k}"
        points = [
            (float(r), *_mean_ci(g[metric].to_numpy(float)))
            for r, g in grp.groupby("ratio", sort=True)
        ]
        ax.scatter(grp["ratio"], grp[metric], s=8, color=colour, alpha=0.4, lw=0)
        if len(points) == 1:
            _, mean, half = points[0]
            ax.axhline(mean, color=colour, ls="--", lw=1, label=f"{arm} (n={len(grp)})")
            if math.isfinite(half):
                ax.axhspan(mean - half, mean + half, color=colour, alpha=0.12, lw=0)
            continue
        xs, means, halves = (np.array(v) for v in zip(*points, strict=True))
        ax.errorbar(
            xs,
            means,
            yerr=np.nan_to_num(halves),
            marker="o",
            ms=4,
            capsize=3,
            color=colour,
            label=f"{arm} (seeds per ratio: {grp.groupby('ratio').size().min()}"
            f"-{grp.groupby('ratio').size().max()})",
        )
    # every metric here lies in [0, 1]; intervals from few seeds reach past it (clipped)
    low, high = ax.get_ylim()
    ax.set_ylim(max(low, -0.02), min(high, 1.02))
    ax.set_xlabel("synthetic : real ratio (of the synthetic class)")
    ax.set_ylabel(f"test {metric} (mean over seeds, 95 % t interval)")
    ax.set_title(f"Test {metric} against the amount of synthetic data", fontsize=10)
    ax.legend(fontsize=7)
    save_figure(fig, out_png, synthetic=synthetic)


def plot_confusion(
    predictions: dict[str, pd.DataFrame],
    out_png: Path,
    *,
    threshold: float = 0.5,
    class_names: tuple[str, str] = ("NORMAL", "PNEUMONIA"),
    synthetic: bool = False,
) -> None:
    """One confusion matrix per entry: counts and row percentages at `threshold`.

    class_names: (negative, positive) names for the axes.
    """
    n = max(len(predictions), 1)
    fig, axes = plt.subplots(1, n, figsize=(2.9 * n, 3.0), squeeze=False)
    for k, (ax, (label, frame)) in enumerate(zip(axes[0], predictions.items(), strict=False)):
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
        ax.set_xticks([0, 1], class_names, fontsize=7)
        # class names and "true" on the first panel only: they overlap their left neighbour
        ax.set_yticks([0, 1], class_names if k == 0 else [], fontsize=7)
        ax.set_xlabel("predicted", fontsize=8)
        if k == 0:
            ax.set_ylabel("true", fontsize=8)
        ax.set_title(str(label), fontsize=8)
    fig.suptitle(f"Confusion matrices on the real test set (threshold {threshold})", fontsize=9)
    save_figure(fig, out_png, synthetic=synthetic)
