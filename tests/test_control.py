"""The count-matched control (issue 25): the real_oversampled arm's training set, each synthetic
arm compared with it at the same ratio, and the reading that says whether synthetic images
beat duplicated real ones."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cxrlib.classifier.arms import CONTROL_ARM, control_reading, with_control
from cxrlib.classifier.metrics import INSUFFICIENT, NO_EVIDENCE, binary_metrics, compare_arms
from cxrlib.classifier.mixing import mix_training_set
from cxrlib.data.cache import SplitArrays
from cxrlib.plan import Study
from cxrlib.plan.study import CONTROL_ARM as PLANNED_CONTROL
from tests.test_plan import DEMO, load_config


def _train(n_normal: int = 10, n_pneumonia: int = 25) -> SplitArrays:
    n = n_normal + n_pneumonia
    images = np.arange(n, dtype=np.uint8)[:, None, None] * np.ones((1, 4, 4), np.uint8)
    labels = np.array([0] * n_normal + [1] * n_pneumonia)
    return SplitArrays(
        images=images,
        labels=labels,
        label_names=("NORMAL", "PNEUMONIA"),
        paths=np.array([f"{i}.png" for i in range(n)]),
        patient_ids=np.array([f"p{i}" for i in range(n)]),
        sha256=np.array([f"{i:064x}" for i in range(n)]),
    )


def test_the_control_adds_duplicated_real_images_of_the_class_at_the_ratio() -> None:
    train = _train()
    images, labels, composition = mix_training_set(train, "oversampled", "balance", "NORMAL", 3)
    assert composition["added"] == "oversampled" and composition["synthetic_added"] == 15
    assert composition["ratio_value"] == pytest.approx(1.5)  # (25 - 10) / 10
    extra = images[len(train.images) :]
    assert (labels[len(train.images) :] == 0).all()
    # every added image is a copy of a real NORMAL training image
    assert set(extra[:, 0, 0]) <= set(range(10))
    again = mix_training_set(train, "oversampled", "balance", "NORMAL", 3)[0]
    assert np.array_equal(images, again)  # seeded
    half = mix_training_set(train, "oversampled", "0.5", "NORMAL", 3)[2]
    assert half["synthetic_added"] == 5
    assert mix_training_set(train, "none", "0", "NORMAL", 3)[2]["synthetic_added"] == 0


def _fixture(strength: dict[str, float], seeds: int = 5) -> tuple[pd.DataFrame, dict]:
    """Prediction frames of each arm at ratio 1 (real at 0), their metrics per seed."""
    rng = np.random.default_rng(11)
    n = 160
    test = pd.DataFrame(
        {"path": [f"i{k}" for k in range(n)], "patient_id": [f"p{k}" for k in range(n)],
         "y_true": np.arange(n) % 2}
    )  # fmt: skip
    y = test.y_true.to_numpy()
    predictions, rows = {}, []
    for arm, s in strength.items():
        ratio = 0.0 if arm == "real" else 1.0
        for seed in range(seeds):
            logit = s * (2 * y - 1) + rng.normal(0, 1.5, n)
            frame = test.assign(score=1 / (1 + np.exp(-logit)))
            predictions[(arm, ratio, seed)] = frame
            rows.append({"arm": arm, "ratio": ratio, "seed": seed,
                         **binary_metrics(frame.y_true, frame.score)})  # fmt: skip
    return pd.DataFrame(rows), predictions


def test_a_synthetic_arm_is_read_against_real_and_against_duplication() -> None:
    summary, predictions = _fixture(
        {"real": 0.5, CONTROL_ARM: 1.5, "real_better": 3.0, "real_matched": 1.5, "real_same": 0.5}
    )
    comparison = compare_arms(summary, "real", "auroc", predictions, n_boot=300)
    table = with_control(comparison, summary, predictions, n_boot=300).set_index("arm")
    assert table.loc["real_better", "reading"] == "synthetic beat duplication"
    assert table.loc["real_better", "control_diff_ci_low"] > 0
    assert table.loc["real_matched", "verdict"] == "helped"  # beats real-only ...
    assert table.loc["real_matched", "reading"] == "synthetic only matched duplication"
    assert table.loc["real_same", "reading"] in ("duplication beat synthetic",
                                                 "no evidence either way")  # fmt: skip
    assert table.loc[CONTROL_ARM, "reading"] == "" and table.loc["real", "reading"] == ""


def test_readings_from_the_two_verdicts() -> None:
    assert control_reading("helped", "helped") == "synthetic beat duplication"
    assert control_reading("helped", NO_EVIDENCE) == "synthetic only matched duplication"
    assert control_reading(NO_EVIDENCE, NO_EVIDENCE) == "no evidence either way"
    assert control_reading(INSUFFICIENT, INSUFFICIENT) == "too few seeds to tell"
    assert control_reading("hurt", "hurt") == "duplication beat synthetic"


def test_the_study_plans_the_control_at_every_ratio() -> None:
    assert PLANNED_CONTROL == CONTROL_ARM  # one name in the plan and the classifier stage
    config = load_config(DEMO, {"classifier": {"ratios": ["0.5", "balance"]}})
    study = Study(config)
    arms = study.classifier_arms()
    assert (CONTROL_ARM, "0.5") in arms and (CONTROL_ARM, "balance") in arms
    assert study.arm_additions(CONTROL_ARM) == ("oversampled", "none")
    assert study.arm_additions("real_dcgan") == ("synthetic", "none")
    assert study.classifier_inputs(CONTROL_ARM) == {}  # duplicates real images only
    both = Study(load_config(DEMO, {"classifier": {"classic_with_synthetic": True}}))
    assert ("real_classic_dcgan", "balance") in both.classifier_arms()
    assert both.arm_additions("real_classic_dcgan") == ("synthetic", "classic")
    assert both.classifier_inputs("real_classic_dcgan")["synthetic"].endswith("dcgan/baseline/best")
    off = Study(load_config(DEMO, {"classifier": {"count_matched_control": False}}))
    assert not any(arm == CONTROL_ARM for arm, _ in off.classifier_arms())


def test_feature_spaces_that_disagree_on_the_best_snapshot_are_said_to() -> None:
    """Agreement across spaces (Woodland et al. 2024): each space's best snapshot and the
    Kendall tau of its snapshot ranking with the selection space's, in the sweep table."""
    from cxrlib.scoring.sweep import build_sweep, space_agreement_sentence

    rows = []
    for i, (cxr, inception) in enumerate([(30, 5), (20, 9), (25, 2)]):
        for extractor, fid in (("cxr", cxr), ("inception", inception)):
            rows.append({"model": "dcgan", "run": "r", "snapshot": f"epoch{i:04d}", "epoch": i,
                         "extractor": extractor, "reference": "train", "fid": float(fid),
                         "diversity_ratio": 1.0})  # fmt: skip
    sweep = build_sweep(pd.DataFrame(rows), progress="epoch", selection_extractor="cxr")
    by_space = sweep.drop_duplicates("extractor").set_index("extractor")
    assert by_space.loc["cxr", "best_in_space"] == "epoch0001"
    assert by_space.loc["inception", "best_in_space"] == "epoch0002"
    assert by_space.loc["cxr", "tau_vs_selection"] == 1.0
    assert by_space.loc["inception", "tau_vs_selection"] == pytest.approx(-1 / 3)
    sentence = space_agreement_sentence(sweep)
    assert sentence.startswith("the feature spaces disagree: cxr picks epoch0001, inception")
    assert "inception -0.33" in sentence and "cxr +1.00" not in sentence
    one = build_sweep(
        pd.DataFrame([r for r in rows if r["extractor"] == "cxr"]),
        progress="epoch",
        selection_extractor="cxr",
    )
    assert space_agreement_sentence(one) == ""  # one space: nothing to compare


def test_names_with_dollar_signs_are_drawn_literally(tmp_path) -> None:
    """A class or run named with "$" (mathtext to matplotlib) never fails a figure's job, and
    log axes keep their tick labels (mathtext stays on for them)."""
    from cxrlib.data.figures import plot_class_counts
    from cxrlib.report.summary_figure import ImageRow, plot_summary

    plot_summary([ImageRow("real $\\foo$", np.zeros((2, 8, 8), np.uint8))], tmp_path / "s.png")
    counts = pd.DataFrame(
        {"split": ["train", "train"], "label": ["$bad", "ok$"], "n_images": [3, 4],
         "n_patients": [3, 4]}
    )  # fmt: skip
    counts.to_csv(tmp_path / "c.csv", index=False)
    plot_class_counts(tmp_path / "c.csv", tmp_path / "c.png")
    assert (tmp_path / "s.png").stat().st_size > 0 and (tmp_path / "c.png").stat().st_size > 0
