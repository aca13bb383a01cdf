"""Classifier metrics, patient-level bootstrap CIs, the paired comparison of arms, the plots."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.metrics import average_precision_score, roc_auc_score

from cxrlib.classifier.figures import (
    mean_interval,
    plot_confusion,
    plot_metric_vs_ratio,
    plot_roc,
)
from cxrlib.classifier.metrics import (
    INSUFFICIENT,
    METRICS,
    NO_EVIDENCE,
    binary_metrics,
    bootstrap_ci,
    compare_arms,
    metrics_table,
    paired_bootstrap,
    patient_resamples,
    weighted_metrics,
)

# y:      0    0    0    1     1    1
# score: .1   .4   .6   .35   .8   .9
# Pairs (pos > neg): .35 beats .1 only; .8 and .9 beat all three -> AUROC 7/9.
# At 0.5: TP = 2 (.8, .9), FN = 1 (.35), FP = 1 (.6), TN = 2.
# Ranked down: .9 P, .8 P, .6 N, .4 N, .35 P, .1 N -> precision at each positive 1, 1, 3/5.
HAND_Y = np.array([0, 0, 0, 1, 1, 1])
HAND_S = np.array([0.1, 0.4, 0.6, 0.35, 0.8, 0.9])
HAND = {
    "accuracy": 4 / 6,
    "balanced_accuracy": 2 / 3,
    "auroc": 7 / 9,
    "auprc": (1 + 1 + 3 / 5) / 3,
    "f1": 2 * 2 / (2 * 2 + 1 + 1),
    "sensitivity": 2 / 3,
    "specificity": 2 / 3,
}


def test_binary_metrics_match_hand_computed_values() -> None:
    got = binary_metrics(HAND_Y, HAND_S)
    assert got == pytest.approx(HAND)
    # weighted (vectorised) version with unit weights gives the same numbers
    unit = weighted_metrics(np.ones((1, 6)), HAND_Y, HAND_S)
    assert {m: float(v[0]) for m, v in unit.items()} == pytest.approx(HAND)


def test_threshold_and_ties() -> None:
    # a threshold of 0.3 makes every positive positive: sensitivity 1, specificity 1/3
    got = binary_metrics(HAND_Y, HAND_S, threshold=0.3)
    assert got["sensitivity"] == 1.0 and got["specificity"] == pytest.approx(1 / 3)
    # a tie between a positive and a negative counts one half
    tied = binary_metrics([0, 1, 0, 1], [0.5, 0.5, 0.1, 0.9])
    assert tied["auroc"] == pytest.approx((1 + 1 + 1 + 0.5) / 4)
    w = weighted_metrics(np.ones((1, 4)), np.array([0, 1, 0, 1]), np.array([0.5, 0.5, 0.1, 0.9]))
    assert w["auroc"][0] == pytest.approx(tied["auroc"])


def test_one_class_leaves_class_metrics_undefined() -> None:
    got = binary_metrics([1, 1, 1], [0.2, 0.7, 0.9])
    assert got["accuracy"] == pytest.approx(2 / 3)
    assert all(math.isnan(got[m]) for m in METRICS if m != "accuracy")


def test_weighted_metrics_equal_sklearn_on_explicitly_resampled_data() -> None:
    rng = np.random.default_rng(3)
    n = 40
    y = rng.integers(0, 2, n)
    scores = np.round(rng.uniform(size=n) * 0.6 + 0.4 * y, 1)  # rounded: many ties
    weights = rng.integers(0, 3, (25, n)).astype(float)  # zeros: images left out
    fast = weighted_metrics(weights, y, scores)
    for b, w in enumerate(weights):
        idx = np.repeat(np.arange(n), w.astype(int))
        slow = binary_metrics(y[idx], scores[idx])
        for m in METRICS:
            assert fast[m][b] == pytest.approx(slow[m], abs=1e-12), (m, b)
    # and the direct scikit-learn calls for the rank metrics
    idx = np.repeat(np.arange(n), weights[0].astype(int))
    assert fast["auroc"][0] == pytest.approx(roc_auc_score(y[idx], scores[idx]))
    assert fast["auprc"][0] == pytest.approx(average_precision_score(y[idx], scores[idx]))


def test_patient_resamples_keep_a_patients_images_together() -> None:
    groups = np.array(["a", "a", "b", "c", "c", "c"])
    rng = np.random.default_rng(0)
    w = np.concatenate(list(patient_resamples(groups, 600, rng, chunk=250)))
    assert w.shape == (600, 6)
    assert (w[:, 0] == w[:, 1]).all() and (w[:, 3] == w[:, 4]).all() and (w[:, 4] == w[:, 5]).all()
    # three patients drawn per resample: the patient multiplicities sum to 3
    assert (w[:, 0] + w[:, 2] + w[:, 3] == 3).all()
    # each patient drawn once on average
    assert w[:, 2].mean() == pytest.approx(1.0, abs=0.1)


def _clustered_dataset(
    rng: np.random.Generator, n_patients: int, mu: float, sd_patient: float, sd_image: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Binormal scores; a patient has 1-3 images sharing a patient effect (correlated)."""
    label = rng.integers(0, 2, n_patients)
    label[:2] = (0, 1)  # both classes always present
    effect = rng.normal(0, sd_patient, n_patients)
    sizes = rng.integers(1, 4, n_patients)
    pid = np.repeat(np.arange(n_patients), sizes)
    y = label[pid]
    scores = mu * y + effect[pid] + rng.normal(0, sd_image, len(pid))
    return y, scores, pid


def test_cluster_bootstrap_ci_covers_the_true_auroc_about_95_percent() -> None:
    """200 simulated data sets from a known binormal model, n_boot 300 (kept fast: ~2 s).

    True AUROC of an image pair from different patients: Phi(mu / sqrt(2 (sd_p^2 + sd_i^2))).
    Resampling images instead of patients ignores the within-patient correlation, so its
    interval is too narrow and covers less: the comparison shows the cluster bootstrap's point.
    """
    mu, sd_p, sd_i = 1.0, 0.9, 0.4
    truth = stats.norm.cdf(mu / math.sqrt(2 * (sd_p**2 + sd_i**2)))
    rng = np.random.default_rng(2024)
    covered_patient, covered_image, n_sims = 0, 0, 200
    for sim in range(n_sims):
        y, s, pid = _clustered_dataset(rng, 40, mu, sd_p, sd_i)
        low, high = bootstrap_ci(y, s, pid, n_boot=300, seed=sim)["auroc"]
        covered_patient += low <= truth <= high
        low, high = bootstrap_ci(y, s, np.arange(len(y)), n_boot=300, seed=sim)["auroc"]
        covered_image += low <= truth <= high
    coverage = covered_patient / n_sims
    assert 0.90 <= coverage <= 1.0, coverage
    assert covered_image < covered_patient


def test_metrics_table_reports_skipped_one_class_resamples() -> None:
    # 2 patients, one per class: about half the resamples draw one patient twice
    y = np.array([0, 0, 1, 1])
    s = np.array([0.1, 0.3, 0.7, 0.8])
    table = metrics_table(y, s, ["n", "n", "p", "p"], n_boot=400, seed=1).set_index("metric")
    assert table.loc["auroc", "value"] == 1.0
    assert 100 < table.loc["auroc", "n_skipped"] < 300
    assert table.loc["accuracy", "n_skipped"] == 0
    assert table.loc["auroc", "ci_low"] == table.loc["auroc", "ci_high"] == 1.0


# -- compare_arms --------------------------------------------------------------------------


def _test_set(rng: np.random.Generator, n_patients: int = 80) -> pd.DataFrame:
    label = np.arange(n_patients) % 2
    sizes = rng.integers(1, 3, n_patients)
    pid = np.repeat(np.arange(n_patients), sizes)
    return pd.DataFrame(
        {
            "path": [f"img{i}.png" for i in range(len(pid))],
            "patient_id": pid.astype(str),
            "y_true": label[pid],
        }
    )


def _arms_fixture(seeds: int = 5) -> tuple[pd.DataFrame, dict]:
    """real (weak), synthetic@1.0 (much stronger), same@0.5 (copies of real), worse@2.0,
    noisy@0.25 (same strength as real, other noise), single@3.0 (one seed)."""
    rng = np.random.default_rng(7)
    test = _test_set(rng)
    y = test["y_true"].to_numpy()
    strength = {"real": 1.0, "synthetic": 3.0, "worse": 0.2, "noisy": 1.0, "single": 3.0}
    ratios = {
        "real": 0.0,
        "synthetic": 1.0,
        "same": 0.5,
        "worse": 2.0,
        "noisy": 0.25,
        "single": 3.0,
    }
    predictions: dict = {}
    for seed in range(seeds):
        for arm, ratio in ratios.items():
            if arm == "single" and seed > 0:
                continue
            if arm == "same":
                scores = predictions[("real", 0.0, seed)]["score"].to_numpy()
            else:
                logit = strength[arm] * (2 * y - 1) + rng.normal(0, 1.5, len(y))
                scores = 1 / (1 + np.exp(-logit))
            predictions[(arm, ratio, seed)] = test.assign(score=scores)
    rows = [
        {"arm": a, "ratio": r, "seed": s, **binary_metrics(f.y_true, f.score)}
        for (a, r, s), f in predictions.items()
    ]
    return pd.DataFrame(rows), predictions


def test_compare_arms_verdicts_on_constructed_arms() -> None:
    summary, predictions = _arms_fixture()
    table = compare_arms(summary, "real", "auroc", predictions, n_boot=400).set_index("arm")
    assert table.loc["real", "verdict"] == "baseline"
    assert table.loc["synthetic", "verdict"] == "helped"
    assert table.loc["worse", "verdict"] == "hurt"
    assert table.loc["same", "verdict"] == NO_EVIDENCE
    assert table.loc["noisy", "verdict"] == NO_EVIDENCE
    assert table.loc["single", "verdict"] == INSUFFICIENT
    assert "1 seed(s): too few seeds for an interval" in table.loc["single", "t_note"]

    syn = table.loc["synthetic"]
    real_auc = summary[summary.arm == "real"].sort_values("seed").auroc.to_numpy()
    syn_auc = summary[summary.arm == "synthetic"].sort_values("seed").auroc.to_numpy()
    assert syn["n_seeds"] == syn["n_paired"] == 5
    assert syn["mean"] == pytest.approx(syn_auc.mean())
    assert syn["diff_mean"] == pytest.approx((syn_auc - real_auc).mean())
    assert syn["t_pvalue"] == pytest.approx(stats.ttest_rel(syn_auc, real_auc).pvalue)
    assert syn["diff_ci_low"] > 0 and syn["boot_ci_low"] > 0 and syn["boot_pvalue"] < 0.01
    # the bootstrap's point estimate is the same mean single-model difference
    assert syn["boot_diff"] == pytest.approx(syn["diff_mean"])
    # identical predictions: every resampled difference is exactly 0
    same = table.loc["same"]
    assert same["diff_mean"] == same["boot_ci_low"] == same["boot_ci_high"] == 0.0
    assert same["boot_pvalue"] == 1.0


def test_two_seeds_give_no_interval_and_intervals_stay_inside_the_metric_range() -> None:
    """t with 1 degree of freedom (2 seeds) is 12.7: the interval spanned several times an
    AUROC difference's range (the demo printed -2.021 to 1.932). Two seeds: no interval and
    no verdict, the note says why; from 3 seeds on, an interval that would leave [-1, 1] is
    cut at the range's ends."""
    summary = pd.DataFrame(
        {"arm": ["real"] * 3 + ["syn"] * 3, "ratio": [0.0] * 3 + [1.0] * 3,
         "seed": [0, 1, 2] * 2, "auroc": [0.95, 0.05, 0.90, 0.10, 0.99, 0.2]}
    )  # fmt: skip
    two = compare_arms(summary[summary.seed < 2]).set_index("arm").loc["syn"]
    assert math.isnan(two["diff_ci_low"]) and math.isnan(two["diff_ci_high"])
    assert two["verdict"] == INSUFFICIENT and "fewer than 3 seeds" in two["verdict"]
    assert "2 seed(s): too few seeds for an interval over seeds" in two["t_note"]
    assert two["diff_mean"] == pytest.approx(((0.10 - 0.95) + (0.99 - 0.05)) / 2)
    three = compare_arms(summary).set_index("arm").loc["syn"]
    assert three["diff_ci_low"] == -1.0 and three["diff_ci_high"] == 1.0  # cut at the range
    assert three["verdict"] == NO_EVIDENCE


def test_compare_arms_without_predictions_uses_seed_t_interval_only() -> None:
    summary, _ = _arms_fixture()
    table = compare_arms(summary, metric="balanced_accuracy").set_index("arm")
    assert table.loc["synthetic", "verdict"] == "helped"
    assert table.loc["synthetic", "verdict_basis"] == "seed t interval"
    assert math.isnan(table.loc["synthetic", "boot_pvalue"])


def test_compare_arms_rejects_bad_summaries() -> None:
    summary, _ = _arms_fixture(seeds=2)
    with pytest.raises(ValueError, match="baseline arm 'none'"):
        compare_arms(summary, baseline="none")
    with pytest.raises(ValueError, match="ratio must be a number"):
        compare_arms(summary.assign(ratio=np.nan))
    with pytest.raises(ValueError, match="several rows"):
        compare_arms(pd.concat([summary, summary.iloc[:1]]))


def test_paired_bootstrap_aligns_predictions_by_path() -> None:
    _, predictions = _arms_fixture(seeds=1)
    real, syn = predictions[("real", 0.0, 0)], predictions[("synthetic", 1.0, 0)]
    shuffled = syn.sample(frac=1.0, random_state=0)
    a = paired_bootstrap([syn], [real], n_boot=200, seed=3)
    b = paired_bootstrap([shuffled], [real], n_boot=200, seed=3)
    assert a == b
    with pytest.raises(ValueError, match="same test images"):
        paired_bootstrap([syn.iloc[1:]], [real], n_boot=10)


# -- figures -------------------------------------------------------------------------------


def test_mean_interval_over_seeds_stays_in_the_metric_range() -> None:
    assert all(math.isnan(v) for v in mean_interval(np.array([0.2, 0.9]))[1:])
    mean, low, high = mean_interval(np.array([0.99, 0.2, 0.98]))
    assert mean == pytest.approx(0.7233, abs=1e-3) and low == 0.0 and high == 1.0
    mean, low, high = mean_interval(np.array([0.90, 0.91, 0.92]))
    assert 0.87 < low < 0.90 < 0.92 < high < 0.95


def test_figures_are_written(tmp_path: Path) -> None:
    summary, predictions = _arms_fixture(seeds=3)
    chosen = {
        f"{a} {r}": [predictions[(a, r, s)] for s in range(3)]
        for a, r in [("real", 0.0), ("synthetic", 1.0)]
    }
    targets = [tmp_path / name for name in ("roc.png", "ratio.png", "confusion.png")]
    plot_roc(chosen, targets[0], synthetic=True)
    plot_metric_vs_ratio(summary, targets[1], "auroc")
    plot_confusion(chosen, targets[2])
    for target in targets:
        assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
