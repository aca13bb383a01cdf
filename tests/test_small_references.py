"""Scoring against reference splits too small for a metric: NaN with the reason, never a crash.

The faults (issue 13, item 5): with test/NORMAL holding 1 image, FID died in the matrix square
root (`LinAlgError: Array must not contain infs or NaNs`); with 2-3 images, precision/recall's
k-NN died (`kthvalue(): selected number k out of range`). Each is tested from its example and
from other instances of its kind (other k, a small generated set, the diversity ratio, the
best-snapshot choice, the DAG-build warning, the tables and figures downstream).
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import docutils.core
import docutils.utils
import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from snakemake.utils import validate
from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric
from torch_fidelity.metric_kid import kid_features_to_metric

from cxrlib.report.headline import headline_section
from cxrlib.report.headline_tables import format_model_rows, model_notes, model_rows
from cxrlib.report.pages import tables_page
from cxrlib.scoring.feasibility import (
    NOT_COMPUTABLE,
    SplitCount,
    best_refusal,
    check_references,
    column_reasons,
    format_reasons,
    parse_reasons,
    phantom_counts,
    recorded_counts,
    reference_warning,
    shortfalls,
)
from cxrlib.scoring.fidelity import score_features
from cxrlib.scoring.figures import plot_sweep
from cxrlib.scoring.score import (
    SUMMARY_COLUMNS,
    SUMMARY_INTRO,
    reference_diversity,
    summary_page_rows,
    summary_table,
)
from cxrlib.scoring.sweep import (
    NoBestSnapshot,
    best_or_latest,
    best_snapshot,
    build_sweep,
)

ROOT = Path(__file__).resolve().parents[1]
D = 16  # feature size of the synthetic feature vectors
N_FAKE = 24


def _features(n: int, seed: int, shift: float = 0.0) -> np.ndarray:
    """(n, D) float32 Gaussian feature vectors: what an extractor hands the metrics."""
    return (np.random.default_rng(seed).normal(size=(n, D)) + shift).astype(np.float32)


FAKE = _features(N_FAKE, seed=1, shift=0.5)


# -------------------------------------------------------------------------------- the metrics


@pytest.mark.parametrize("n_real", [1, 2, 3])
def test_a_test_split_of_one_to_three_images_is_scored_not_crashed(n_real: int) -> None:
    """The issue's example: test/NORMAL with 1-3 images and the default k = 3."""
    real = _features(n_real, seed=2)
    s = score_features(real, FAKE, kid_subsets=10, prc_neighborhood=3, real_name="test/NORMAL")
    # precision/recall need more than k = 3 images: NaN, and the reason names the split
    assert math.isnan(s.precision) and math.isnan(s.recall)
    assert s.reasons["precision/recall"].startswith(f"test/NORMAL has {n_real} image")
    assert "needs >= 4" in s.reasons["precision/recall"]
    assert "metrics.prc_neighborhood = 3" in s.reasons["precision/recall"]
    if n_real == 1:  # no covariance and no pair: FID and KID are NaN too
        assert math.isnan(s.fid) and math.isnan(s.kid_mean) and math.isnan(s.kid_std)
        assert s.kid_subset_size is None
        assert (
            s.reasons["FID"] == "test/NORMAL has 1 image, needs >= 2 (a covariance needs 2 images)"
        )
        assert "KID" in s.reasons
    else:  # FID and KID are computed, exactly as torch-fidelity computes them
        assert set(s.reasons) == {"precision/recall", "density/coverage"}
        assert math.isnan(s.density) and math.isnan(s.coverage)
        t_fake, t_real = torch.from_numpy(FAKE), torch.from_numpy(real)
        expected = fid_statistics_to_metric(
            fid_features_to_statistics(t_fake), fid_features_to_statistics(t_real), False
        )["frechet_inception_distance"]
        assert s.fid == pytest.approx(expected) and math.isfinite(s.fid)
        assert s.kid_subset_size == n_real  # shrunk to the smaller set
        kid = kid_features_to_metric(
            t_fake, t_real, kid_subsets=10, kid_subset_size=n_real, rng_seed=2020, verbose=False
        )
        assert s.kid_mean == pytest.approx(kid["kernel_inception_distance_mean"])
        assert math.isfinite(s.kid_std)


@pytest.mark.parametrize(
    ("k", "n_real", "computable"),
    [(1, 1, False), (1, 2, True), (5, 5, False), (5, 6, True), (3, 4, True)],
)
def test_precision_recall_need_more_images_than_the_neighbourhood(
    k: int, n_real: int, computable: bool
) -> None:
    s = score_features(_features(n_real, seed=3), FAKE, kid_subsets=5, prc_neighborhood=k)
    assert math.isfinite(s.precision) == computable == math.isfinite(s.recall)
    assert ("precision/recall" not in s.reasons) == computable
    if computable:
        assert 0.0 <= s.precision <= 1.0 and 0.0 <= s.recall <= 1.0
    else:
        assert f"needs >= {k + 1}" in s.reasons["precision/recall"]


def test_a_generated_set_no_larger_than_k_is_named_in_the_reason() -> None:
    """The other set of each pair: metrics.n_fake = 3 with k = 3 (schema allows n_fake >= 2)."""
    s = score_features(
        _features(50, seed=4),
        FAKE[:3],
        kid_subsets=5,
        prc_neighborhood=3,
        real_name="train/NORMAL",
        fake_name="the generated set (metrics.n_fake)",
    )
    assert math.isfinite(s.fid) and math.isfinite(s.kid_mean) and s.kid_subset_size == 3
    assert s.reasons["precision/recall"].startswith("the generated set (metrics.n_fake) has 3")


def test_non_finite_features_are_a_clear_error_not_a_linalg_error() -> None:
    real = _features(10, seed=5)
    real[2, 3] = np.nan
    with pytest.raises(ValueError, match="real set contain NaN"):
        score_features(real, FAKE)


@pytest.mark.parametrize("n_real", [1, 2, 3])
def test_diversity_ratio_needs_a_pair_of_real_images(n_real: int) -> None:
    real = _features(n_real, seed=6)
    value, reasons = reference_diversity(FAKE, real, {"test/NORMAL": n_real, "generated": 24})
    if n_real == 1:
        assert math.isnan(value)
        assert reasons == {
            "diversity ratio": "test/NORMAL has 1 image, needs >= 2 (a pair of images)"
        }
    else:
        assert math.isfinite(value) and value > 0 and reasons == {}


def test_identical_real_images_give_no_diversity_ratio_and_say_so() -> None:
    real = np.repeat(_features(1, seed=7), 3, axis=0)
    value, reasons = reference_diversity(FAKE, real, {"test/NORMAL": 3, "generated": 24})
    assert math.isnan(value) and "all identical" in reasons["diversity ratio"]


def test_reasons_round_trip_through_the_table_cell() -> None:
    reasons = shortfalls({"val/NORMAL": 1, "generated": 24}, prc_neighborhood=3)
    assert list(reasons) == [
        "FID", "KID", "precision/recall", "density/coverage", "diversity ratio",
    ]  # fmt: skip
    text = format_reasons(reasons)
    assert parse_reasons(text) == reasons
    by_column = column_reasons(text)
    assert set(by_column) >= {
        "fid", "kid_mean", "precision", "recall", "density", "coverage", "diversity_ratio",
    }  # fmt: skip
    assert parse_reasons("") == {} and parse_reasons(float("nan")) == {}
    assert shortfalls({"train/NORMAL": 40, "generated": 24}, prc_neighborhood=3) == {}


# -------------------------------------------------------------------------------- the sweep


def _scores(test_n: int, train_n: int | None = 40, val_n: int | None = None) -> pd.DataFrame:
    """Score rows of three DCGAN snapshots as score_snapshot writes them, the references of
    the sizes given (None = not in metrics.references); FID falls with the epoch."""
    rows = []
    sizes = {"train": train_n, "val": val_n, "test": test_n}
    for epoch, fid in ((10, 30.0), (20, 12.0), (30, 18.0)):
        for reference, n in sizes.items():
            if n is None:
                continue
            reasons = shortfalls({f"{reference}/NORMAL": n, "generated": N_FAKE}, 3)
            row = {
                "model": "dcgan", "run": "baseline", "snapshot": f"epoch{epoch:04d}",
                "epoch": epoch, "kimg": np.nan, "extractor": "cxr", "reference": reference,
                "n_real": n, "n_fake": N_FAKE, "fid": fid + (reference == "val"),
                "kid_mean": fid / 100, "kid_std": 0.01, "kid_subset_size": min(n, N_FAKE),
                "precision": 0.5, "recall": 0.4, "density": 0.8, "coverage": 0.7,
                "diversity_ratio": 0.9,
            }  # fmt: skip
            for name, columns in (
                ("FID", ["fid"]),
                ("KID", ["kid_mean", "kid_std", "kid_subset_size"]),
                ("precision/recall", ["precision", "recall"]),
                ("density/coverage", ["density", "coverage"]),
                ("diversity ratio", ["diversity_ratio"]),
            ):
                if name in reasons:
                    row.update(dict.fromkeys(columns, np.nan))
            row[NOT_COMPUTABLE] = format_reasons(reasons)
            rows.append(row)
    return pd.DataFrame(rows)


def test_sweep_keeps_nan_rows_and_chooses_best_against_train() -> None:
    sweep = build_sweep(_scores(test_n=1), progress="epoch", selection_extractor="cxr")
    assert best_snapshot(sweep) == "epoch0020"
    assert (sweep.best_by == "lowest FID against train (cxr features)").all()
    test = sweep[sweep.reference == "test"]
    assert test.fid.isna().all() and test[NOT_COMPUTABLE].str.contains("test/NORMAL has 1").all()
    assert sweep.collapse_epoch.isna().all()  # ratios 0.9: no collapse


@pytest.mark.parametrize("train_n", [1, None])
def test_best_falls_back_to_val_when_train_cannot_be_used(train_n: int | None) -> None:
    sweep = build_sweep(
        _scores(test_n=30, train_n=train_n, val_n=10), progress="epoch", selection_extractor="cxr"
    )
    assert best_snapshot(sweep) == "epoch0020"
    assert sweep.best_by.iloc[0].startswith("lowest FID against val (cxr features)")


@pytest.mark.parametrize(("train_n", "val_n"), [(1, 1), (None, None), (1, None)])
def test_no_best_snapshot_is_marked_and_choosing_one_names_the_key(
    train_n: int | None, val_n: int | None
) -> None:
    """Never test: with train and val unusable the sweep is still written, without a best."""
    sweep = build_sweep(
        _scores(test_n=30, train_n=train_n, val_n=val_n),
        progress="epoch",
        selection_extractor="cxr",
    )
    assert not sweep.best.any() and sweep.best_by.iloc[0].startswith("none: ")
    with pytest.raises(NoBestSnapshot, match=r"dcgan\.use_snapshot") as exc:
        best_snapshot(sweep)
    assert "epoch0010, epoch0020, epoch0030" in str(exc.value)
    assert "metrics.references" in str(exc.value)
    assert best_or_latest(sweep, "epoch")[0] == "epoch0030"


def test_nan_diversity_ratios_are_left_out_of_collapse_detection() -> None:
    scores = _scores(test_n=30)
    train = scores.reference == "train"
    scores.loc[train, "diversity_ratio"] = [0.9, np.nan, 0.1]  # collapsed at epoch 30
    sweep = build_sweep(scores, progress="epoch", selection_extractor="cxr")
    assert (sweep.collapse_epoch == 30).all()
    scores.loc[train, "diversity_ratio"] = np.nan
    assert (
        build_sweep(scores, progress="epoch", selection_extractor="cxr").collapse_epoch.isna().all()
    )


def test_sweep_figure_is_drawn_with_gaps_and_reasons(tmp_path: Path) -> None:
    sweep = build_sweep(_scores(test_n=1, val_n=2), progress="epoch", selection_extractor="cxr")
    plot_sweep(sweep, tmp_path / "sweep.png", synthetic=True)
    plot_sweep(sweep[sweep.reference == "nowhere"], tmp_path / "empty.png")
    for name in ("sweep.png", "empty.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_summary_keeps_nan_rows_with_their_reason(tmp_path: Path) -> None:
    new, old = tmp_path / "epoch0010.csv", tmp_path / "old.csv"
    _scores(test_n=2).to_csv(new, index=False)
    _scores(test_n=30).drop(columns=[NOT_COMPUTABLE]).to_csv(old, index=False)  # earlier run
    summary = summary_table([new, old])
    assert list(summary.columns) == SUMMARY_COLUMNS and NOT_COMPUTABLE in SUMMARY_COLUMNS
    small = summary[(summary.reference == "test") & (summary.n_real == 2)]
    assert small.precision.isna().all() and small.fid.notna().all()
    assert small[NOT_COMPUTABLE].str.startswith("precision/recall: test/NORMAL has 2 images").all()
    assert (summary.loc[summary.n_real != 2, NOT_COMPUTABLE] == "").all()


def test_summary_page_shows_the_reason_beside_its_empty_scores(tmp_path: Path) -> None:
    new = tmp_path / "epoch0010.csv"
    _scores(test_n=2).to_csv(new, index=False)
    rows = summary_page_rows(summary_table([new]))
    assert list(rows.columns[:6]) == ["model", "run", "snapshot", "features", "reference", "FID"]
    small = rows[rows.reference == "test"]
    assert small.precision.isna().all()
    page = tables_page("Every snapshot's scores", rows, intro=SUMMARY_INTRO)
    assert page.count("<tr") == len(rows) + 1  # header + one per row
    assert "precision/recall: test/NORMAL has 2 images" in page


# -------------------------------------------------------------------------------- the headline


def test_headline_shows_na_with_the_reason_and_stays_valid_rst() -> None:
    sweeps = [
        build_sweep(_scores(test_n=1), progress="epoch", selection_extractor="cxr"),
        build_sweep(_scores(test_n=30, train_n=1), progress="epoch", selection_extractor="cxr"),
    ]
    sweeps[1]["run"] = "tiny"
    rows = model_rows(sweeps, {})
    first = rows.iloc[0]
    assert first["best snapshot"] == "epoch0020" and first["FID (train)"] == 12.0
    assert math.isnan(first["FID (test)"])
    assert first["not computable"]["FID (test)"].startswith("test/NORMAL has 1 image")
    shown = format_model_rows(rows)
    assert shown["FID train / test"].iloc[0] == (
        "12.0 / n/a (test/NORMAL has 1 image, needs >= 2 (a covariance needs 2 images))"
    )
    # no best snapshot: the row says why instead of vanishing from the table
    assert shown["best snapshot"].iloc[1].startswith("n/a (FID against train is not computable")
    assert shown["FID train / test"].iloc[1] == "– / –"
    page = tables_page("Best snapshot per run", shown, notes=model_notes(rows))
    assert "n/a (test/NORMAL has 1 image" in page
    # the front page's line of the run without a best snapshot says why, as valid RST
    section = headline_section({"images": 1, "splits": {}, "rejected": 0}, rows, {}, None, None)
    assert "no best snapshot: n/a (FID against train is not computable" in section
    docutils.core.publish_parts(
        "Title\n=====\n\n" + section,
        writer="html",
        settings_overrides={"halt_level": docutils.utils.Reporter.WARNING_LEVEL},
    )


# -------------------------------------------------------------------------------- at DAG build


def _config(overlay: dict) -> dict:
    """config.yaml with `overlay` merged in (as --configfile does), validated, defaults filled."""

    def merge(base: dict, extra: dict) -> dict:
        out = copy.deepcopy(base)
        for key, value in extra.items():
            both = isinstance(value, dict) and isinstance(out.get(key), dict)
            out[key] = merge(out[key], value) if both else value
        return out

    config = merge(yaml.safe_load((ROOT / "config.yaml").read_text()), overlay)
    validate(config, str(ROOT / "schemas" / "config.schema.yaml"))
    return config


def _phantom(test_normal: int, val: dict | None = None, **data: object) -> dict:
    counts = {
        "train": {"NORMAL": 24, "PNEUMONIA": 24},
        "test": {"NORMAL": test_normal, "PNEUMONIA": 6},
    }
    if val is not None:
        counts["val"] = val
    return {"data": {"source": "phantom", "phantom": {"counts": counts}, **data}}


def test_dag_build_warning_names_the_split_count_needs_and_fix(tmp_path: Path) -> None:
    """The issue's example: phantom test/NORMAL = 2, allowed by min_eval_images_per_class."""
    message = check_references(_config(_phantom(2)), tmp_path / "absent.csv")
    assert message is not None
    assert "test/NORMAL has 2 images" in message
    assert "precision/recall needs >= 4" in message and "metrics.prc_neighborhood = 3" in message
    assert "FID, KID, diversity ratio scored as usual" in message
    assert "drop the split from metrics.references" in message and "add images" in message
    assert "lower metrics.prc_neighborhood" in message
    assert "best" not in message  # train is large enough to choose the best snapshot


def test_dag_build_warning_for_a_one_image_split_and_a_given_val(tmp_path: Path) -> None:
    overlay = _phantom(1, val={"NORMAL": 3, "PNEUMONIA": 3}, val_source="given")
    overlay["metrics"] = {"references": ["train", "val", "test"]}
    message = check_references(_config(overlay), tmp_path / "absent.csv")
    assert "test/NORMAL has 1 image: FID needs >= 2" in message
    assert "every score against it is NaN" in message
    assert "val/NORMAL has 3 images: precision/recall needs >= 4" in message
    # lowering both k makes val/NORMAL fine, test/NORMAL stays too small for FID
    overlay["metrics"]["prc_neighborhood"] = 2
    overlay["metrics"]["dc_neighborhood"] = 2
    message = check_references(_config(overlay), tmp_path / "absent.csv")
    assert "val/NORMAL" not in message and "test/NORMAL has 1 image" in message


def test_dag_build_warns_that_no_best_snapshot_can_be_chosen(tmp_path: Path) -> None:
    overlay = _phantom(30)
    overlay["metrics"] = {"references": ["test"]}
    message = check_references(_config(overlay), tmp_path / "absent.csv")
    assert "No best snapshot can be chosen" in message
    assert "dcgan.use_snapshot" in message and "stylegan2ada.use_snapshot" in message
    refusal = best_refusal(_config(overlay), tmp_path / "absent.csv", "dcgan", ["epoch0010"])
    assert refusal.startswith("dcgan.use_snapshot is best, but no snapshot can be chosen")
    assert "train is not in metrics.references; val is not in metrics.references" in refusal
    assert "(one of epoch0010)" in refusal
    overlay["dcgan"] = {"use_snapshot": "epoch0010"}
    overlay["stylegan2ada"] = {"use_snapshot": "kimg000200"}
    assert check_references(_config(overlay), tmp_path / "absent.csv") is None


def test_best_is_refused_only_when_no_selection_split_can_have_a_fid(tmp_path: Path) -> None:
    tiny_train = _phantom(30)
    tiny_train["data"]["phantom"]["counts"]["train"] = {"NORMAL": 1, "PNEUMONIA": 24}
    tiny_train["data"]["val_source"] = "given"
    tiny_train["data"]["phantom"]["counts"]["val"] = {"NORMAL": 5, "PNEUMONIA": 5}
    absent = tmp_path / "absent.csv"
    assert best_refusal(_config(tiny_train), absent, "dcgan") is not None  # val not referenced
    tiny_train["metrics"] = {"references": ["train", "val", "test"]}
    assert best_refusal(_config(tiny_train), absent, "dcgan") is None  # chosen against val
    # real data without an earlier run: only what the config says can be judged
    folder = _config({"data": {"source": "folder"}, "metrics": {"references": ["test"]}})
    assert "train is not in metrics.references" in best_refusal(folder, absent, "stylegan2ada")
    warning = check_references(folder, absent)
    assert warning.startswith("Scoring: No best snapshot can be chosen: train is not in")
    assert best_refusal(_config({"data": {"source": "folder"}}), absent, "dcgan") is None


def test_real_data_counts_come_from_an_earlier_run(tmp_path: Path) -> None:
    config = _config({"data": {"source": "folder"}})
    counts_csv = tmp_path / "class_counts.csv"
    assert check_references(config, counts_csv) is None  # first run: nothing known yet
    pd.DataFrame(
        {"split": ["train", "train", "val", "test", "test"],
         "label": ["NORMAL", "PNEUMONIA", "NORMAL", "NORMAL", "PNEUMONIA"],
         "n_images": [1200, 3500, 130, 3, 390], "n_patients": [900, 1100, 90, 3, 200]}
    ).to_csv(counts_csv, index=False)  # fmt: skip
    assert recorded_counts(counts_csv, "NORMAL")["test"] == SplitCount(3)
    message = check_references(config, counts_csv)
    assert f"from {counts_csv} of an earlier run" in message
    assert "test/NORMAL has 3 images: precision/recall needs >= 4" in message
    counts_csv.write_text("not,a\ncounts,table\n")
    assert check_references(config, counts_csv) is None  # unreadable: no guess


def test_phantom_counts_estimate_a_carved_val() -> None:
    data = _config(_phantom(5, val={"NORMAL": 2, "PNEUMONIA": 2}))["data"]
    counts = phantom_counts({**data, "val_fraction": 0.2})
    assert counts["test"] == SplitCount(5)
    assert counts["val"] == SplitCount(6, exact=False)  # ceil(0.2 x 26)
    assert counts["train"] == SplitCount(20, exact=False)
    given = phantom_counts({**data, "val_source": "given"})
    assert given["val"] == SplitCount(2) and given["train"] == SplitCount(24)
    message = reference_warning(
        {"val": SplitCount(2, exact=False)},
        references=["val"],
        label="NORMAL",
        prc_neighborhood=3,
        where="here",
    )
    assert "val/NORMAL has about 2 images" in message


@pytest.mark.parametrize("overlay", [None, "overlays/demo.yaml", "tests/config/test.yaml"])
def test_shipped_configs_raise_no_warning(overlay: str | None, tmp_path: Path) -> None:
    extra = yaml.safe_load((ROOT / overlay).read_text()) if overlay else {}
    assert check_references(_config(extra), tmp_path / "absent.csv") is None
