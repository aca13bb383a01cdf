"""The near-copy share of every scored snapshot (cxrlib.memorisation.share) and the sweep's
refusal to choose a snapshot that copies (cxrlib.scoring.sweep.build_sweep)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from cxrlib.memorisation.share import near_copy_share, rate_upper_bound
from cxrlib.scoring.sweep import NoBestSnapshot, best_snapshot, build_sweep


def test_the_limit_is_the_one_sided_clopper_pearson_bound() -> None:
    # 0 of n: the bound solves (1 - p)^n = 0.05
    assert rate_upper_bound(0, 30) == pytest.approx(1 - 0.05 ** (1 / 30))
    assert rate_upper_bound(0, 30) == pytest.approx(0.095, abs=5e-4)
    # more flagged, higher bound; more images, tighter bound
    assert rate_upper_bound(2, 600) < rate_upper_bound(2, 60) < rate_upper_bound(6, 60)
    assert rate_upper_bound(2, 600) == pytest.approx(0.0105, abs=5e-4)
    assert rate_upper_bound(5, 5) == 1.0 and math.isnan(rate_upper_bound(0, 0))


def _train(patients: int = 40, per_patient: int = 2, dim: int = 16, seed: int = 0):
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(patients * per_patient, dim))
    groups = np.repeat([f"p{i}" for i in range(patients)], per_patient)
    return features, groups, rng


def test_copies_are_flagged_and_fresh_draws_stay_under_the_real_yardstick() -> None:
    train, groups, rng = _train()
    copies = train[rng.integers(0, len(train), 200)] + rng.normal(scale=1e-3, size=(200, 16))
    fresh = rng.normal(size=(200, 16))  # the same distribution, never seen
    copied = near_copy_share(copies, train, groups, quantile=0.01)
    drawn = near_copy_share(fresh, train, groups, quantile=0.01)
    assert copied.share == 1.0 and copied.reason == ""
    assert drawn.share <= drawn.limit < 0.2
    # one yardstick for both: it depends on the real data only
    assert (copied.threshold, copied.limit) == (drawn.threshold, drawn.limit)
    assert copied.n_heldout > 0 and 0 <= copied.heldout_rate <= copied.limit
    # reproducible from the seed of the patient halves
    assert near_copy_share(fresh, train, groups, quantile=0.01) == drawn


def test_too_few_patients_give_nans_with_the_reason_never_an_error() -> None:
    train, _, rng = _train(patients=4)
    one_patient = np.array(["p0"] * len(train))
    result = near_copy_share(rng.normal(size=(10, 16)), train, one_patient, quantile=0.01)
    assert math.isnan(result.share) and math.isnan(result.limit)
    assert "1 patient(s)" in result.reason
    two = np.array(["p0"] * 4 + ["p1"] * 4)
    result = near_copy_share(train[:3], train, two, quantile=0.01)
    assert result.share == 1.0 and math.isnan(result.limit)  # a share, but no yardstick
    assert "max_near_copy_share" in result.reason
    with pytest.raises(ValueError, match="patient ids"):
        near_copy_share(train, train, two[:3], quantile=0.01)


def _scores(shares: dict[str, float], limit: float = 0.1) -> pd.DataFrame:
    """Three snapshots, FID falling with training; one row each against train and test."""
    rows = []
    for i, (snapshot, share) in enumerate(shares.items()):
        common = {
            "model": "dcgan", "run": "baseline", "snapshot": snapshot, "epoch": 10 * (i + 1),
            "kimg": np.nan, "extractor": "cxr", "fid": 30.0 - 10 * i, "kid_mean": 0.1,
            "kid_std": 0.01, "diversity_ratio": 1.0, "near_copy_share": share,
            "heldout_near_copy_rate": limit / 2, "near_copy_limit": limit, "not_computable": "",
        }  # fmt: skip
        rows += [{**common, "reference": reference} for reference in ("train", "test")]
    return pd.DataFrame(rows)


def test_the_sweep_skips_copying_snapshots_and_says_so() -> None:
    scores = _scores({"epoch0010": 0.0, "epoch0020": 0.05, "epoch0030": 0.4})
    sweep = build_sweep(scores, progress="epoch", selection_extractor="cxr")
    assert best_snapshot(sweep) == "epoch0020"  # epoch0030 has the lowest FID, but copies
    skipped = sweep.groupby("snapshot").near_copy_skipped.all().to_dict()
    assert skipped == {"epoch0010": False, "epoch0020": False, "epoch0030": True}
    assert sweep.best_by.iloc[0] == (
        "lowest FID against train (cxr features); not chosen, near-copying: "
        "epoch0030 (share 0.4 > limit 0.1)"
    )
    # a limit in the config replaces the real yardstick
    strict = build_sweep(
        scores, progress="epoch", selection_extractor="cxr", max_near_copy_share=0.01
    )
    assert best_snapshot(strict) == "epoch0010"
    lenient = build_sweep(
        scores, progress="epoch", selection_extractor="cxr", max_near_copy_share=1
    )
    assert best_snapshot(lenient) == "epoch0030" and not lenient.near_copy_skipped.any()


def test_when_every_snapshot_copies_none_is_best_and_the_fix_is_named() -> None:
    scores = _scores({"epoch0010": 0.5, "epoch0020": 0.6})
    sweep = build_sweep(scores, progress="epoch", selection_extractor="cxr")
    assert not sweep.best.any()
    with pytest.raises(NoBestSnapshot) as info:
        best_snapshot(sweep)
    message = str(info.value)
    assert "every snapshot with a FID copies: epoch0010 (share 0.5 > limit 0.1)" in message
    assert "dcgan.use_snapshot" in message and "max_near_copy_share" in message


def test_scores_without_the_share_skip_nothing() -> None:
    """Tables scored before the near-copy share (no columns) or where it was not computable
    (NaN) choose by FID alone."""
    scores = _scores({"epoch0010": np.nan, "epoch0020": np.nan})
    assert best_snapshot(build_sweep(scores, progress="epoch", selection_extractor="cxr")) == (
        "epoch0020"
    )
    old = scores.drop(columns=["near_copy_share", "heldout_near_copy_rate", "near_copy_limit"])
    sweep = build_sweep(old, progress="epoch", selection_extractor="cxr")
    assert best_snapshot(sweep) == "epoch0020" and not sweep.near_copy_skipped.any()


def test_the_sweep_figure_draws_fid_against_the_near_copy_share(tmp_path) -> None:
    """A panel of its own (FID vs train over the share) where shares were scored, none for
    tables without them; the figure stays within a laptop window's proportions."""
    from PIL import Image

    from cxrlib.scoring.figures import plot_sweep

    scores = _scores({"epoch0010": 0.0, "epoch0020": 0.05, "epoch0030": 0.4})
    sweep = build_sweep(scores, progress="epoch", selection_extractor="cxr")
    plot_sweep(sweep, tmp_path / "with.png")
    old = sweep.drop(columns=["near_copy_share", "near_copy_limit", "near_copy_skipped"])
    plot_sweep(old, tmp_path / "without.png")
    with_share, without = (Image.open(tmp_path / f"{n}.png").size for n in ("with", "without"))
    assert with_share[1] > without[1]  # a row more: the FID-vs-share panel
    assert with_share[1] <= 1.1 * with_share[0]
