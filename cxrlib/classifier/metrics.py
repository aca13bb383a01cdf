"""Classifier metrics with patient-level bootstrap CIs, and the paired comparison of arms.

Conventions: `y_true` is 1 for the positive class (PNEUMONIA) and 0 otherwise; `scores` are
P(positive); a prediction is positive when score >= threshold. Prediction frames (written by
cxrlib.classifier.trainer.evaluate_split) have columns path, patient_id, y_true, score.

Why a cluster bootstrap: a patient contributes 1-3 correlated images, so resampling images
would treat them as independent and give intervals that are too narrow. Resampling patients
with replacement (all of a patient's images come along) respects the correlation.

Speed: a resample is a vector of patient multiplicities; every metric is computed as a
*weighted* metric of the original images (weight = how often the image's patient was drawn),
vectorised over many resamples at once. Tests check that this equals scikit-learn's metrics on
the explicitly resampled data. Point estimates (`binary_metrics`) use scikit-learn directly.
Resamples in which one class is absent leave AUROC, AUPRC, F1, sensitivity, specificity and
balanced accuracy undefined: they are skipped for those metrics and counted.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    balanced_accuracy_score,
    f1_score,
    recall_score,
    roc_auc_score,
)

log = logging.getLogger(__name__)

METRICS = (
    "accuracy",
    "balanced_accuracy",
    "auroc",
    "auprc",
    "f1",
    "sensitivity",
    "specificity",
)
# A t interval over 2 seeds has 1 degree of freedom: t(0.975, 1) = 12.7 makes it span several
# times the metric's whole range, so no interval is computed from fewer seeds than this.
MIN_SEEDS = 3
INSUFFICIENT = f"insufficient evidence (fewer than {MIN_SEEDS} seeds)"
TOO_FEW_SEEDS = f"too few seeds for an interval over seeds (at least {MIN_SEEDS}: classifier.seeds)"
NO_EVIDENCE = "no evidence of a difference"

PredictionSource = (
    Mapping[tuple[str, float, int], pd.DataFrame] | Callable[[str, float, int], pd.DataFrame]
)


def _check(y_true: Any, scores: Any) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true).astype(int)
    s = np.asarray(scores, dtype=np.float64)
    if y.ndim != 1 or y.shape != s.shape or len(y) == 0:
        raise ValueError(
            f"y_true and scores must be equal-length 1-d arrays, got {y.shape} {s.shape}"
        )
    if not np.isin(y, (0, 1)).all():
        raise ValueError("y_true must be 0/1 (1 = positive class)")
    if not np.isfinite(s).all():
        raise ValueError("scores contain NaN or inf")
    return y, s


def binary_metrics(y_true: Any, scores: Any, threshold: float = 0.5) -> dict[str, float]:
    """The seven metrics of one prediction set (scikit-learn); NaN where one class is absent."""
    y, s = _check(y_true, scores)
    pred = (s >= threshold).astype(int)
    out = {"accuracy": float(accuracy_score(y, pred))}
    if len(np.unique(y)) < 2:
        return out | {m: math.nan for m in METRICS if m != "accuracy"}
    return out | {
        "balanced_accuracy": float(balanced_accuracy_score(y, pred)),
        "auroc": float(roc_auc_score(y, s)),
        "auprc": float(average_precision_score(y, s)),
        "f1": float(f1_score(y, pred, zero_division=0.0)),
        "sensitivity": float(recall_score(y, pred, pos_label=1)),
        "specificity": float(recall_score(y, pred, pos_label=0)),
    }


# -- weighted metrics, vectorised over resamples -------------------------------------------


class _Sorted:
    """Images sorted by score with their tie groups: shared by every resample of one set."""

    def __init__(self, y: np.ndarray, scores: np.ndarray):
        self.order = np.argsort(scores, kind="stable")
        s = scores[self.order]
        self.y = y[self.order].astype(np.float64)
        new = np.r_[True, s[1:] != s[:-1]]
        self.starts = np.flatnonzero(new)  # first sorted position of each distinct score
        self.ends = np.r_[self.starts[1:], len(s)]  # one past its last position
        self.group = np.cumsum(new) - 1  # tie group of each sorted position


def _below(cum: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """cum[:, idx - 1] with 0 for idx == 0: total weight strictly before sorted position idx."""
    padded = np.concatenate([np.zeros((cum.shape[0], 1)), cum], axis=1)
    return padded[:, idx]


def _weighted_auroc(w: np.ndarray, srt: _Sorted) -> np.ndarray:
    """AUROC (B,) for weights w (B, N) in sorted order: P(score+ > score-) + 0.5 P(tie)."""
    wp, wn = w * srt.y, w * (1 - srt.y)
    cum_n = np.cumsum(wn, axis=1)
    below = _below(cum_n, srt.starts)  # negatives strictly below each tie group
    within = _below(cum_n, srt.ends) - below  # negatives tied with it
    per_position = (below + 0.5 * within)[:, srt.group]
    with np.errstate(invalid="ignore", divide="ignore"):
        return (wp * per_position).sum(1) / (wp.sum(1) * wn.sum(1))


def _weighted_auprc(w: np.ndarray, srt: _Sorted) -> np.ndarray:
    """Average precision (B,), scikit-learn's definition: sum over thresholds of ΔR x P."""
    wp = w * srt.y
    cum_p, cum_all = np.cumsum(wp, axis=1), np.cumsum(w, axis=1)
    total_p, total = cum_p[:, -1:], cum_all[:, -1:]
    # thresholds from the highest distinct score down: predicted positive = score >= it
    starts = srt.starts[::-1]
    tp = total_p - _below(cum_p, starts)
    predicted = total - _below(cum_all, starts)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = tp / total_p
    d_recall = np.diff(np.concatenate([np.zeros_like(recall[:, :1]), recall], axis=1), axis=1)
    return (d_recall * precision).sum(1)


def weighted_metrics(
    weights: np.ndarray, y_true: np.ndarray, scores: np.ndarray, threshold: float = 0.5
) -> dict[str, np.ndarray]:
    """All metrics (B,) for B weightings (B, N) of the same images; NaN where undefined.

    With integer weights (bootstrap multiplicities) each row equals `binary_metrics` of the
    data with image i repeated weights[b, i] times.
    """
    y, s = _check(y_true, scores)
    w = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    if w.shape[1] != len(y):
        raise ValueError(f"weights have {w.shape[1]} columns for {len(y)} images")
    pos = y.astype(np.float64)
    pred = (s >= threshold).astype(np.float64)
    tp, fn = w @ (pos * pred), w @ (pos * (1 - pred))
    fp, tn = w @ ((1 - pos) * pred), w @ ((1 - pos) * (1 - pred))
    n_pos, n_neg = tp + fn, fp + tn
    two_classes = (n_pos > 0) & (n_neg > 0)
    srt = _Sorted(y, s)
    ws = w[:, srt.order]
    with np.errstate(invalid="ignore", divide="ignore"):
        sens, spec = tp / n_pos, tn / n_neg
        out = {
            "accuracy": (tp + tn) / (n_pos + n_neg),
            "balanced_accuracy": (sens + spec) / 2,
            "auroc": _weighted_auroc(ws, srt),
            "auprc": _weighted_auprc(ws, srt),
            "f1": np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), 0.0),
            "sensitivity": sens,
            "specificity": spec,
        }
    for name in METRICS:
        if name != "accuracy":
            out[name] = np.where(two_classes, out[name], np.nan)
    return out


# -- the patient-level (cluster) bootstrap -------------------------------------------------


def patient_resamples(groups: Any, n_boot: int, rng: np.random.Generator, chunk: int = 250) -> Any:
    """Yield image weights (b, N) for chunks of resamples; b sums to n_boot.

    Each resample draws as many patients as there are, with replacement; an image's weight
    is how often its patient was drawn.
    """
    _, inverse = np.unique(np.asarray(groups).astype(str), return_inverse=True)
    n_patients = int(inverse.max()) + 1
    done = 0
    while done < n_boot:
        b = min(chunk, n_boot - done)
        counts = rng.multinomial(n_patients, np.full(n_patients, 1.0 / n_patients), size=b)
        yield counts[:, inverse].astype(np.float64)
        done += b


def bootstrap_replicates(
    y_true: Any,
    scores: Any,
    groups: Any,
    n_boot: int = 2000,
    seed: int = 0,
    threshold: float = 0.5,
) -> dict[str, np.ndarray]:
    """Each metric over `n_boot` patient resamples, (n_boot,) with NaN where undefined."""
    y, s = _check(y_true, scores)
    if len(np.asarray(groups)) != len(y):
        raise ValueError("groups (patient ids) must have one entry per image")
    rng = np.random.default_rng(seed)
    chunks = [weighted_metrics(w, y, s, threshold) for w in patient_resamples(groups, n_boot, rng)]
    return {m: np.concatenate([c[m] for c in chunks]) for m in METRICS}


def _percentile_ci(values: np.ndarray, alpha: float) -> tuple[float, float]:
    ok = values[np.isfinite(values)]
    if len(ok) == 0:
        return math.nan, math.nan
    low, high = np.percentile(ok, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(low), float(high)


def bootstrap_ci(
    y_true: Any,
    scores: Any,
    groups: Any,
    n_boot: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
    threshold: float = 0.5,
) -> dict[str, tuple[float, float]]:
    """Percentile (1 - alpha) CIs of every metric by resampling patients with replacement.

    Resamples with one class are skipped for the metrics they leave undefined; how many is
    logged, and `metrics_table` reports it per metric.
    """
    reps = bootstrap_replicates(y_true, scores, groups, n_boot, seed, threshold)
    skipped = {m: int(np.isnan(v).sum()) for m, v in reps.items()}
    if any(skipped.values()):
        log.info("bootstrap: %s of %d resamples had one class (skipped)", skipped, n_boot)
    return {m: _percentile_ci(v, alpha) for m, v in reps.items()}


def metrics_table(
    y_true: Any,
    scores: Any,
    groups: Any,
    n_boot: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
    threshold: float = 0.5,
) -> pd.DataFrame:
    """One row per metric: value, ci_low, ci_high, n_boot, n_skipped (one-class resamples)."""
    point = binary_metrics(y_true, scores, threshold)
    reps = bootstrap_replicates(y_true, scores, groups, n_boot, seed, threshold)
    rows = []
    for m in METRICS:
        low, high = _percentile_ci(reps[m], alpha)
        rows.append(
            {
                "metric": m,
                "value": point[m],
                "ci_low": low,
                "ci_high": high,
                "n_boot": n_boot,
                "n_skipped": int(np.isnan(reps[m]).sum()),
            }
        )
    return pd.DataFrame(rows)


# -- comparing arms ------------------------------------------------------------------------


def _t_interval(arm: np.ndarray, base: np.ndarray, alpha: float) -> dict[str, Any]:
    """Mean paired difference over seeds, its t-based CI and the paired t-test p-value.

    With fewer than MIN_SEEDS pairs there is no interval (NaN, `t_note` says why). Every
    metric here lies in [0, 1], so a difference lies in [-1, 1]: the interval is intersected
    with that range, which holds the true difference, so coverage is kept.
    """
    d = arm - base
    n = len(d)
    out: dict[str, Any] = {"n_paired": n, "diff_mean": float(d.mean()) if n else math.nan}
    if n < MIN_SEEDS:
        return out | {
            "diff_ci_low": math.nan,
            "diff_ci_high": math.nan,
            "t_pvalue": math.nan,
            "t_note": f"{n} seed(s): {TOO_FEW_SEEDS}",
        }
    sd = float(d.std(ddof=1))
    if sd == 0.0:  # t undefined; the interval collapses onto the (exact) difference
        return out | {
            "diff_ci_low": out["diff_mean"],
            "diff_ci_high": out["diff_mean"],
            "t_pvalue": math.nan,
            "t_note": "all paired differences equal: t undefined",
        }
    half = float(stats.t.ppf(1 - alpha / 2, n - 1)) * sd / math.sqrt(n)
    if not math.isfinite(half):  # a NaN metric (one class in a resample-free set, say)
        return out | {
            "diff_ci_low": math.nan,
            "diff_ci_high": math.nan,
            "t_pvalue": math.nan,
            "t_note": "a metric value is not a number: no t interval",
        }
    return out | {
        "diff_ci_low": max(-1.0, out["diff_mean"] - half),
        "diff_ci_high": min(1.0, out["diff_mean"] + half),
        "t_pvalue": float(stats.ttest_rel(arm, base).pvalue),
        "t_note": "",
    }


def _lookup(source: PredictionSource, arm: str, ratio: float, seed: int) -> pd.DataFrame:
    if callable(source):
        frame = source(arm, ratio, seed)
    else:
        keyed = {(str(a), float(r), int(s)): v for (a, r, s), v in source.items()}
        key = (str(arm), float(ratio), int(seed))
        if key not in keyed:
            raise KeyError(f"no test predictions for arm {arm!r}, ratio {ratio}, seed {seed}")
        frame = keyed[key]
    missing = {"y_true", "score", "patient_id"} - set(frame.columns)
    if missing:
        raise ValueError(f"predictions of {arm}/{ratio}/{seed} lack {', '.join(sorted(missing))}")
    return frame


def _align(frame: pd.DataFrame, reference: pd.DataFrame, what: str) -> pd.DataFrame:
    """`frame`'s rows in `reference`'s order (by path where both have it)."""
    if "path" in frame.columns and "path" in reference.columns:
        if set(frame["path"]) != set(reference["path"]) or frame["path"].duplicated().any():
            raise ValueError(f"{what} was not scored on the same test images as the baseline")
        frame = frame.set_index("path").loc[reference["path"]].reset_index()
    elif len(frame) != len(reference):
        raise ValueError(f"{what} has {len(frame)} test predictions, the baseline {len(reference)}")
    same = (frame["y_true"].to_numpy() == reference["y_true"].to_numpy()).all() and (
        frame["patient_id"].astype(str).to_numpy() == reference["patient_id"].astype(str).to_numpy()
    ).all()
    if not same:
        raise ValueError(f"{what}: labels or patient ids differ from the baseline's test set")
    return frame


def paired_bootstrap(
    arm_frames: list[pd.DataFrame],
    base_frames: list[pd.DataFrame],
    metric: str = "auroc",
    n_boot: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
    threshold: float = 0.5,
) -> dict[str, Any]:
    """Patient-level paired bootstrap of metric(arm) - metric(baseline) over the test set.

    Frame i of each list comes from the same seed. Each resample draws test patients with
    replacement once and scores every model on that same resample; the statistic is the
    difference averaged over seeds (mean single-model difference, the quantity the seed
    t-test is about). It measures test-set sampling uncertainty only; seed-to-seed spread is
    the t interval's business. Two-sided p: twice the smaller share of resampled differences
    on either side of 0 (with +1 smoothing), capped at 1.
    """
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; known: {', '.join(METRICS)}")
    ref = base_frames[0]
    y = ref["y_true"].to_numpy().astype(int)
    arms = [_align(f, ref, "arm").score.to_numpy(float) for f in arm_frames]
    bases = [_align(f, ref, "baseline").score.to_numpy(float) for f in base_frames]
    full = np.ones((1, len(y)))

    def diff(w: np.ndarray) -> np.ndarray:
        per_seed = [
            weighted_metrics(w, y, a, threshold)[metric]
            - weighted_metrics(w, y, b, threshold)[metric]
            for a, b in zip(arms, bases, strict=True)
        ]
        return np.mean(per_seed, axis=0)

    rng = np.random.default_rng(seed)
    reps = np.concatenate([diff(w) for w in patient_resamples(ref["patient_id"], n_boot, rng)])
    ok = reps[np.isfinite(reps)]
    low, high = _percentile_ci(reps, alpha)
    if len(ok):
        below, above = (ok <= 0).sum(), (ok >= 0).sum()
        p = min(1.0, 2 * min(below + 1, above + 1) / (len(ok) + 1))
    else:
        p = math.nan
    return {
        "boot_diff": float(diff(full)[0]),
        "boot_ci_low": low,
        "boot_ci_high": high,
        "boot_pvalue": float(p),
        "boot_n_skipped": int(len(reps) - len(ok)),
    }


def _verdict(n_paired: int, intervals: list[tuple[float, float]]) -> str:
    """helped / hurt when every interval excludes 0 on the same side; else no evidence."""
    if n_paired < MIN_SEEDS:
        return INSUFFICIENT
    if any(not (math.isfinite(lo) and math.isfinite(hi)) for lo, hi in intervals):
        return NO_EVIDENCE
    if all(lo > 0 for lo, _ in intervals):
        return "helped"
    if all(hi < 0 for _, hi in intervals):
        return "hurt"
    return NO_EVIDENCE


def paired_difference(
    arm: tuple[str, float, pd.Series],
    base: tuple[str, float, pd.Series],
    metric: str,
    predictions: PredictionSource | None,
    *,
    n_boot: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
    threshold: float = 0.5,
) -> dict[str, Any]:
    """`metric` of arm minus base, paired by seed: (name, ratio, metric by seed) of each.

    The t interval over seeds (`_t_interval`), with `predictions` also the patient-level
    paired bootstrap (`paired_bootstrap`), and the verdict both intervals support (helped /
    hurt / no evidence / insufficient evidence), with `verdict_basis` naming the intervals.
    """
    (name, ratio, by_seed), (base_name, base_ratio, base_by_seed) = arm, base
    matched = sorted(set(by_seed.index) & set(base_by_seed.index))
    a, b = by_seed.loc[matched].to_numpy(), base_by_seed.loc[matched].to_numpy()
    row = _t_interval(a, b, alpha)
    intervals = [(row["diff_ci_low"], row["diff_ci_high"])]
    basis = "seed t interval"
    if predictions is not None and matched:
        boot = paired_bootstrap(
            [_lookup(predictions, name, ratio, s) for s in matched],
            [_lookup(predictions, base_name, base_ratio, s) for s in matched],
            metric,
            n_boot,
            seed,
            alpha,
            threshold,
        )
        row |= boot
        intervals.append((boot["boot_ci_low"], boot["boot_ci_high"]))
        basis += " + patient bootstrap interval"
    return row | {"verdict": _verdict(len(matched), intervals), "verdict_basis": basis}


def compare_arms(
    summary: pd.DataFrame,
    baseline: str = "real",
    metric: str = "auroc",
    predictions: PredictionSource | None = None,
    *,
    n_boot: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
    threshold: float = 0.5,
) -> pd.DataFrame:
    """Per (arm, ratio): mean/std of `metric` over seeds and the paired comparison to baseline.

    summary: one row per trained model with columns arm, ratio (a number; use 0 for arms
    without synthetic images), seed, and `metric` (higher is better for every metric here).
    Seeds are matched by value: arm seed s is compared with baseline seed s.

    Columns: arm, ratio, metric, n_seeds, mean, std; for non-baseline rows n_paired,
    diff_mean (arm - baseline), diff_ci_low/high (t interval over seeds), t_pvalue
    (scipy.stats.ttest_rel), t_note (why a value is NaN); with `predictions` (a mapping
    (arm, ratio, seed) -> prediction frame, or a callable with those arguments) also the
    patient-level paired bootstrap: boot_diff, boot_ci_low/high, boot_pvalue, boot_n_skipped.
    verdict: "helped" / "hurt" when the t interval and (if computed) the bootstrap interval
    both exclude 0 on that side, "no evidence of a difference" otherwise,
    INSUFFICIENT with fewer than MIN_SEEDS matched seeds (no interval over seeds); the baseline row
    says "baseline". verdict_basis names the intervals used.
    """
    need = {"arm", "ratio", "seed", metric} - set(summary.columns)
    if need:
        raise ValueError(f"summary lacks column(s) {', '.join(sorted(need))}")
    if summary["ratio"].isna().any():
        raise ValueError(
            "summary ratio must be a number for every row (0 for arms without synthetic)"
        )
    if summary.duplicated(["arm", "ratio", "seed"]).any():
        raise ValueError("summary has several rows for one (arm, ratio, seed)")
    base = summary[summary["arm"] == baseline]
    if base.empty:
        raise ValueError(
            f"baseline arm {baseline!r} not in summary arms {sorted(set(summary.arm))}"
        )
    if base["ratio"].nunique() != 1:
        raise ValueError(f"baseline arm {baseline!r} must have one ratio")
    base_ratio = float(base["ratio"].iloc[0])
    base_by_seed = base.set_index("seed")[metric].astype(float)

    rows = []
    groups = sorted(summary.groupby(["arm", "ratio"]), key=lambda kv: (kv[0][0] != baseline, kv[0]))
    for (arm, ratio), grp in groups:
        values = grp[metric].astype(float)
        row: dict[str, Any] = {
            "arm": arm,
            "ratio": float(ratio),
            "metric": metric,
            "n_seeds": len(grp),
            "mean": float(values.mean()),
            "std": float(values.std(ddof=1)) if len(grp) > 1 else math.nan,
        }
        if arm == baseline:
            rows.append(row | {"verdict": "baseline", "verdict_basis": ""})
            continue
        by_seed = grp.set_index("seed")[metric].astype(float)
        row |= paired_difference(
            (arm, float(ratio), by_seed),
            (baseline, base_ratio, base_by_seed),
            metric,
            predictions,
            n_boot=n_boot,
            seed=seed,
            alpha=alpha,
            threshold=threshold,
        )
        rows.append(row)
    columns = [
        "arm",
        "ratio",
        "metric",
        "n_seeds",
        "mean",
        "std",
        "n_paired",
        "diff_mean",
        "diff_ci_low",
        "diff_ci_high",
        "t_pvalue",
        "t_note",
        "boot_diff",
        "boot_ci_low",
        "boot_ci_high",
        "boot_pvalue",
        "boot_n_skipped",
        "verdict",
        "verdict_basis",
    ]
    return pd.DataFrame(rows).reindex(columns=columns)
