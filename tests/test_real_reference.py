"""Real-to-real floors: equal to a direct computation, patient-disjoint seeded halves, the shift
flag (fires with a train/test shift, never without), and every place that shows a score."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import docutils.core
import docutils.utils
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cxrlib.data.figures import plot_real_distances
from cxrlib.io import write_npz
from cxrlib.report.headline import headline_section
from cxrlib.report.headline_tables import (
    format_model_rows,
    generated_vs_test_sentence,
    model_notes,
    model_rows,
)
from cxrlib.report.pages import tables_page
from cxrlib.scoring.feasibility import NOT_COMPUTABLE
from cxrlib.scoring.fidelity import score_features
from cxrlib.scoring.figures import floor_lines, plot_sweep
from cxrlib.scoring.reference import (
    COMPARISONS,
    HALF_A,
    HALF_B,
    REFERENCE_COLUMNS,
    RealReferenceError,
    attach_floors,
    judge_shift,
    patient_halves,
    patient_warnings,
    real_reference_table,
    shift_findings,
    shift_sentence,
)
from cxrlib.scoring.score import ScoreSettings
from cxrlib.scoring.sweep import build_sweep

SETTINGS = ScoreSettings(kid_subsets=20, kid_subset_size=50, prc_neighborhood=3, seed=7)
DIM = 8


def _patients(n_images: int, rng: np.random.Generator, prefix: str) -> list[str]:
    """Patient IDs with 1-3 images each, as the Kaggle release has."""
    ids: list[str] = []
    while len(ids) < n_images:
        ids += [f"{prefix}{len(ids)}"] * int(rng.integers(1, 4))
    return ids[:n_images]


def _features(n: int, rng: np.random.Generator, offset: float = 0.0) -> np.ndarray:
    return (rng.normal(size=(n, DIM)) + offset).astype(np.float32)


def _write_study(
    root: Path, test_offset: float, seed: int = 0, sizes: tuple[int, int, int] = (240, 60, 80)
) -> tuple[dict[tuple[str, int, str], Path], pd.DataFrame, dict[str, np.ndarray]]:
    """real_features files of one extractor at 32 px and the manifest that names their rows;
    the test images' features are shifted by `test_offset` in every dimension."""
    rng = np.random.default_rng(seed)
    files, rows, arrays = {}, [], {}
    for split, n in zip(("train", "val", "test"), sizes, strict=True):
        feats = _features(n, rng, test_offset if split == "test" else 0.0)
        patients = _patients(n, rng, f"{split}-p")
        paths = [f"data/{split}/NORMAL/img{i}.jpeg" for i in range(n)]
        files[("cxr", 32, split)] = root / f"{split}_32px.npz"
        write_npz(files[("cxr", 32, split)], features=feats, paths=np.array(paths))
        rows += [
            {"path": p, "split": split, "label": "NORMAL", "patient_id": pid}
            for p, pid in zip(paths, patients, strict=True)
        ]
        arrays[split] = feats
    return files, pd.DataFrame(rows), arrays


# ------------------------------------------------------------------------------------ floors


def test_floors_equal_a_direct_computation(tmp_path: Path) -> None:
    files, manifest, arrays = _write_study(tmp_path, test_offset=0.0)
    table = real_reference_table(files, manifest.sample(frac=1, random_state=1), SETTINGS)
    assert list(table.columns) == REFERENCE_COLUMNS
    assert [tuple(p) for p in table[["set_a", "set_b"]].to_numpy()] == list(COMPARISONS)
    assert (table.extractor == "cxr").all() and (table.resolution == 32).all()
    train_ids = manifest.loc[manifest.split == "train", "patient_id"].to_numpy()
    half_a, half_b = patient_halves(train_ids, SETTINGS.seed)
    sets = {**arrays, HALF_A: arrays["train"][half_a], HALF_B: arrays["train"][half_b]}
    for row in table.itertuples():
        direct = score_features(
            sets[row.set_b],  # the reference, torch-fidelity's input 2
            sets[row.set_a],  # in the generated images' place
            kid_subsets=SETTINGS.kid_subsets,
            kid_preferred_subset_size=SETTINGS.kid_subset_size,
            prc_neighborhood=SETTINGS.prc_neighborhood,
            dc_neighborhood=SETTINGS.dc_neighborhood,
            seed=SETTINGS.seed,
        )
        assert (row.n_a, row.n_b) == (len(sets[row.set_a]), len(sets[row.set_b]))
        for column in ("fid", "kid_mean", "kid_std", "precision", "recall", "density", "coverage"):
            assert getattr(row, column) == pytest.approx(getattr(direct, column), rel=1e-6)
        assert getattr(row, NOT_COMPUTABLE) == ""
    # precision/recall are not symmetric: the CSV's order is the generated-image order
    swapped = score_features(arrays["test"], arrays["train"], prc_neighborhood=3)
    assert table.iloc[1].precision == pytest.approx(swapped.precision)


def test_halves_are_patient_disjoint_seeded_balanced_and_order_free() -> None:
    rng = np.random.default_rng(3)
    ids = np.array(_patients(101, rng, "p"))
    a, b = patient_halves(ids, seed=5)
    assert sorted([*a, *b]) == list(range(len(ids)))
    assert not set(ids[a]) & set(ids[b])  # no patient in both halves
    assert abs(len(a) - len(b)) <= 3  # at most one patient's images apart
    again = patient_halves(ids, seed=5)
    assert np.array_equal(a, again[0]) and np.array_equal(b, again[1])
    other = patient_halves(ids, seed=6)
    assert set(ids[other[0]]) != set(ids[a])
    order = rng.permutation(len(ids))  # the same patients in another row order
    shuffled = patient_halves(ids[order], seed=5)
    assert {frozenset(ids[order][h]) for h in shuffled} == {frozenset(ids[a]), frozenset(ids[b])}
    single_a, single_b = patient_halves(["only"] * 4, seed=0)
    assert len(single_a) == 4 and len(single_b) == 0


def test_tiny_sets_give_nan_with_the_reason_and_a_missing_manifest_row_is_named(
    tmp_path: Path,
) -> None:
    files, manifest, _ = _write_study(tmp_path, 0.0, sizes=(40, 1, 3))
    table = real_reference_table(files, manifest, SETTINGS, label="NORMAL").set_index("set_b")
    assert math.isnan(table.loc["val", "fid"])
    assert table.loc["val", NOT_COMPUTABLE].startswith("FID: val/NORMAL has 1 image")
    assert math.isfinite(table.loc["test", "fid"]) and math.isnan(table.loc["test", "recall"])
    assert "precision/recall: test/NORMAL has 3 images" in table.loc["test", NOT_COMPUTABLE]
    assert math.isnan(table.loc["test", "density"]) and math.isnan(table.loc["test", "coverage"])
    assert "density/coverage: test/NORMAL has 3 images" in table.loc["test", NOT_COMPUTABLE]
    with pytest.raises(RealReferenceError, match="no manifest entry"):
        real_reference_table(files, manifest[manifest.split != "train"], SETTINGS)


# ------------------------------------------------------------------------------ the shift flag


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_flag_fires_with_a_train_test_shift_and_never_without(tmp_path: Path, seed: int) -> None:
    plain_files, manifest, _ = _write_study(tmp_path / "plain", 0.0, seed)
    shift_files, shift_manifest, _ = _write_study(tmp_path / "shift", 1.5, seed)
    plain = shift_findings(real_reference_table(plain_files, manifest, SETTINGS), 3.0)
    shifted = shift_findings(real_reference_table(shift_files, shift_manifest, SETTINGS), 3.0)
    assert [f.flagged for f in plain] == [False]
    assert [f.flagged for f in shifted] == [True]
    finding = shifted[0]
    assert finding.fid_train_test > 3 * max(finding.fid_train_val, finding.fid_halves)
    text = shift_sentence(finding)
    assert text.startswith("The test images differ from the training images (cxr features, 32")
    assert f"FID {finding.fid_train_test:.1f} between real train and real test" in text
    assert "what the real training images score, not against 0" in text
    assert shift_sentence(plain[0]).startswith("The test images are about as far")


def test_flag_uses_the_larger_computable_baseline_and_says_when_it_cannot_judge() -> None:
    # the numbers: 1,067 vs 2.3 (val) and 4.8 (halves)
    kaggle = judge_shift(1067.0, 2.3, 4.8, 3.0, extractor="cxr", resolution=64)
    assert kaggle.flagged and kaggle.ratio == pytest.approx(1067 / 4.8)
    text = shift_sentence(kaggle)
    assert "FID 1,067 between real train and real test images vs 2.3 for held-out" in text
    assert "4.8 between two halves" in text and "222 times the larger" in text
    assert judge_shift(12.0, 4.1, 4.8, 3.0).flagged is False  # 2.5x: farther, not flagged
    assert "farther" in shift_sentence(judge_shift(12.0, 4.1, 4.8, 3.0))
    assert judge_shift(30.0, math.nan, 4.8, 3.0).flagged is True  # val too small: halves alone
    unknown = judge_shift(math.nan, 2.0, 3.0, 3.0, extractor="cxr", resolution=32)
    assert unknown.flagged is None
    assert shift_sentence(unknown).startswith("The train/test distance could not be judged")
    assert judge_shift(5.0, math.nan, math.nan, 3.0).flagged is None
    with pytest.raises(ValueError, match="shift_factor"):
        judge_shift(1.0, 1.0, 1.0, 0.0)


# ------------------------------------------------------------------- where the scores are shown


def _floors() -> pd.DataFrame:
    rows = [
        ("train", "val", 2.3, 0.001),
        ("train", "test", 1067.0, 0.9),
        (HALF_A, HALF_B, 4.8, 0.002),
    ]
    return pd.DataFrame(
        [
            {"extractor": "cxr", "resolution": 64, "set_a": a, "set_b": b, "fid": fid,
             "kid_mean": kid, "precision": 0.7, "recall": 0.6, "density": 0.98,
             "coverage": 0.95, NOT_COMPUTABLE: ""}
            for a, b, fid, kid in rows
        ]
    )  # fmt: skip


def _scores(train_fids: list[float], test_fids: list[float]) -> pd.DataFrame:
    rows = []
    for epoch, (train, test) in enumerate(zip(train_fids, test_fids, strict=True), start=1):
        for reference, fid in (("train", train), ("test", test)):
            rows.append(
                {"model": "dcgan", "run": "baseline", "snapshot": f"epoch{epoch:04d}",
                 "epoch": epoch, "kimg": np.nan, "extractor": "cxr", "reference": reference,
                 "fid": fid, "kid_mean": fid / 1000, "kid_std": 0.0, "precision": 0.5,
                 "recall": 0.5, "density": 0.4, "coverage": 0.3, "diversity_ratio": 0.9,
                 NOT_COMPUTABLE: ""}
            )  # fmt: skip
    return pd.DataFrame(rows)


def test_scores_carry_the_floor_of_their_reference() -> None:
    scores = attach_floors(
        _scores([1.5, 3.1], [1058.0, 1144.0]), _floors(), {("dcgan", "baseline"): 64}
    )
    train = scores[scores.reference == "train"]
    test = scores[scores.reference == "test"]
    assert (train.real_floor == f"{HALF_A} vs {HALF_B}").all() and (
        train.real_floor_fid == 4.8
    ).all()
    assert (test.real_floor == "train vs test").all() and (test.real_floor_fid == 1067.0).all()
    assert train.below_real_floor.tolist() == [True, True]  # 1.5 and 3.1 < 4.8
    assert test.below_real_floor.tolist() == [True, False]  # 1,058 < 1,067 < 1,144
    assert (scores.resolution == 64).all()
    other = attach_floors(_scores([1.0], [2.0]), _floors(), {("dcgan", "baseline"): 32})
    assert other.real_floor_fid.isna().all() and not other.below_real_floor.any()


def test_sweep_warns_when_the_best_snapshot_is_below_the_half_vs_half_floor(
    caplog: pytest.LogCaptureFixture,
) -> None:
    scores = attach_floors(
        _scores([1.5, 3.1], [1058.0, 1144.0]), _floors(), {("dcgan", "baseline"): 64}
    )
    with caplog.at_level(logging.INFO, logger="cxrlib.scoring.sweep"):
        sweep = build_sweep(scores, progress="epoch", selection_extractor="cxr")
    assert sweep.loc[sweep.best, "snapshot"].unique().tolist() == ["epoch0001"]
    assert (sweep.best_by == "lowest FID against train (cxr features)").all()
    text = caplog.text
    assert "best snapshot epoch0001: lowest FID against train (cxr features)" in text
    assert (
        "FID 1.5 against train (cxr features) is below the real train half vs half floor 4.8"
        in text
    )
    assert "memorisation audit (results/metrics/memorisation/dcgan/baseline/)" in text
    caplog.clear()
    above = attach_floors(
        _scores([6.0, 7.0], [1058.0, 1144.0]), _floors(), {("dcgan", "baseline"): 64}
    )
    with caplog.at_level(logging.WARNING, logger="cxrlib.scoring.sweep"):
        build_sweep(above, progress="epoch", selection_extractor="cxr")
    assert "below the real" not in caplog.text


def test_sweep_figure_draws_a_labelled_floor_per_reference(tmp_path: Path) -> None:
    sweep = build_sweep(
        attach_floors(
            _scores([1.5, 3.1], [1058.0, 1144.0]), _floors(), {("dcgan", "baseline"): 64}
        ),
        progress="epoch",
        selection_extractor="cxr",
    )
    lines = floor_lines(sweep)
    assert [(f["reference"], f["fid"]) for f in lines] == [("test", 1067.0), ("train", 4.8)]
    # density and coverage panels get their floors too
    assert [(f["density"], f["coverage"]) for f in lines] == [(0.98, 0.95)] * 2
    assert (sweep["real_floor_precision"] == 0.7).all() and (
        sweep["real_floor_recall"] == 0.6
    ).all()
    assert [f["label"] for f in lines] == [
        "real train vs test (cxr) = 1,067",
        "real train half vs half (cxr) = 4.8",
    ]
    plot_sweep(sweep, tmp_path / "sweep.png", synthetic=True)
    assert Image.open(tmp_path / "sweep.png").size[0] > 200
    assert floor_lines(sweep.drop(columns=["real_floor_fid"])) == []


def test_headline_puts_each_floor_beside_its_score_and_says_what_it_means() -> None:
    sweep = build_sweep(
        attach_floors(
            _scores([1.5, 3.1], [1058.0, 1144.0]), _floors(), {("dcgan", "baseline"): 64}
        ),
        progress="epoch",
        selection_extractor="cxr",
    )
    rows = model_rows([sweep], {("dcgan", "baseline"): {"n_near_copies": 2, "n_fake": 100}})
    row = rows.iloc[0]
    assert row["real floor (train)"] == 4.8 and row["real floor (test)"] == 1067.0
    assert row["below floor (train)"]
    shown = format_model_rows(rows)
    assert shown["px"].iloc[0] == "64"  # the run's resolution
    assert shown["FID train / test"].iloc[0] == "1.5 / 1058.0"
    assert shown["real floor train / test"].iloc[0] == "4.8 / 1067.0"
    assert shown["chosen by"].iloc[0] == "lowest FID against train (cxr features)"
    notes = model_notes(rows)
    assert "FID vs test 1,058 is within the real train-vs-test distance (FID 1,067)" in notes[0]
    assert "below the real train half-vs-half floor (4.8)" in notes[1]
    assert "memorisation audit (near-copies: 2 of 100)" in notes[1]
    finding = judge_shift(1067.0, 2.3, 4.8, 3.0, extractor="cxr", resolution=64)
    data = {"images": 10, "splits": {}, "rejected": 0}
    section = headline_section(data, rows, {}, None, None, [finding])
    assert "Test images shifted from train (train-vs-test FID against the same-distribution" in (
        section
    )
    assert "cxr, 64 px: FID 1,067, 222.3 times (flagged)" in section
    assert "on purpose" not in section  # real data, or phantoms without a shift
    # phantoms shifted on purpose say so; a flagged shift is said beside the classifier too
    comparison = pd.DataFrame(
        {"arm": ["real"], "ratio": [0.0], "metric": ["auroc"], "n_seeds": [3], "mean": [0.52],
         "std": [0.15], "verdict": ["baseline"]}
    )  # fmt: skip
    phantom = headline_section(data, rows, {}, comparison, None, [finding], 1.0)
    assert "on purpose (data.phantom.test\\_shift = 1)" in phantom
    assert "tested on real test images only, the test split flagged as shifted at 64 px" in phantom
    unflagged = judge_shift(5.0, 4.0, 4.8, 3.0, extractor="cxr", resolution=64)
    plain = headline_section(data, rows, {}, comparison, None, [unflagged])
    assert "flagged as shifted" not in plain
    docutils.core.publish_parts(
        "Title\n=====\n\n" + section,
        writer="html",
        settings_overrides={"halt_level": docutils.utils.Reporter.WARNING_LEVEL},
    )
    page = tables_page("Best snapshot per run", shown, notes=notes)
    assert "is within the real train-vs-test distance" in page and "4.8 / 1067.0" in page


def test_generated_vs_test_sentence_reads_within_near_or_beyond() -> None:
    assert "is within" in generated_vs_test_sentence(1058.0, 1067.0)
    below = generated_vs_test_sentence(68.8, 141.3)
    assert below.startswith("FID vs test 68.8 is below the real train-vs-test distance (FID 141")
    assert "(FID 141; 0.49 times it)" in below and "judge quality against train" in below
    assert "is near" in generated_vs_test_sentence(1144.0, 1067.0)
    assert "3.0 times" in generated_vs_test_sentence(300.0, 100.0)
    assert generated_vs_test_sentence(math.nan, 100.0) is None


def test_real_distances_figure(tmp_path: Path) -> None:
    findings = shift_findings(_floors(), 3.0)
    plot_real_distances(_floors(), findings, tmp_path / "d.png", label="NORMAL", synthetic=True)
    assert Image.open(tmp_path / "d.png").size[0] > 300
    nan = _floors().assign(fid=[math.nan, 5.0, 4.0])
    plot_real_distances(nan, shift_findings(nan, 3.0), tmp_path / "nan.png")
    assert (tmp_path / "nan.png").is_file()


def test_floors_say_when_halves_or_train_test_share_patients() -> None:
    """File-name IDs (no pattern matched) and patients in both train and test are named:
    both make a floor read lower than its label claims."""
    manifest = pd.DataFrame(
        {
            "path": ["a/IM-1-1.jpeg", "a/IM-1-2.jpeg", "a/scan_7.png", "b/IM-1-3.jpeg", "b/t.png"],
            "patient_id": ["IM-1", "IM-1", "scan_7", "IM-1", "t"],
            "patient_id_source": ["pattern", "pattern", "stem", "pattern", "stem"],
        }
    )
    train, test = manifest.path[:3].tolist(), manifest.path[3:].tolist()
    first, second = patient_warnings(train, test, manifest)
    assert first.startswith("1 of 3 training images have no patient ID")
    assert "Add a pattern" in first
    assert second.startswith("1 patients have images in both train and test (first: IM-1")
    clean = manifest.assign(patient_id_source="pattern", patient_id=["A", "A", "B", "C", "D"])
    assert patient_warnings(train, test, clean) == []
