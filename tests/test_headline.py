"""The report's front page: headline numbers taken from the result tables, valid RST."""

from __future__ import annotations

import math
import re
from pathlib import Path

import docutils.core
import docutils.utils
import jinja2
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cxrlib.classifier.figures import mean_interval
from cxrlib.classifier.metrics import INSUFFICIENT, NO_EVIDENCE, compare_arms
from cxrlib.report.headline import (
    classifier_line,
    data_line,
    data_summary,
    data_uri,
    headline_section,
    model_line,
    rst_escape,
    selection_rows,
    training_course,
)
from cxrlib.report.headline_tables import (
    classifier_conclusion,
    classifier_rows,
    format_model_rows,
    model_notes,
    model_rows,
)
from cxrlib.report.pages import tables_page
from cxrlib.scoring.reference import ShiftFinding


def _sweep(model: str, run: str, progress: str, fids: list[float]) -> pd.DataFrame:
    rows = []
    for i, fid in enumerate(fids):
        for reference, offset in (("train", 0.0), ("test", 5.0)):
            rows.append(
                {
                    "model": model, "run": run, "snapshot": f"s{i}", progress: i,
                    "extractor": "cxr", "reference": reference, "fid": fid + offset,
                    "kid_mean": fid / 10, "precision": 0.5, "recall": 0.25,
                    "density": 1.2, "coverage": 0.75, "diversity_ratio": 0.9,
                    "best": fid == min(fids),
                    f"collapse_{progress}": 2 if progress == "epoch" else float("nan"),
                }
            )  # fmt: skip
    return pd.DataFrame(rows)


def _comparison(verdicts: dict[tuple[str, str], str]) -> pd.DataFrame:
    rows = [dict(arm="real", ratio=0.0, ratio_label="0", metric="auroc", n_seeds=3, mean=0.9,
                 std=0.01, verdict="baseline")]  # fmt: skip
    for (arm, label), verdict in verdicts.items():
        value = 0.97 if label == "balance" else float(label)
        rows.append(
            dict(arm=arm, ratio=value, ratio_label=label, metric="auroc", n_seeds=3, mean=0.91,
                 std=0.02, diff_mean=0.01, diff_ci_low=-0.02, diff_ci_high=0.04,
                 boot_ci_low=-0.03, boot_ci_high=0.05, verdict=verdict)
        )  # fmt: skip
    rows.append(dict(rows[1], metric="f1", verdict="helped"))  # other metrics are not the headline
    return pd.DataFrame(rows)


def test_model_rows_take_the_marked_best_snapshot_and_its_audit() -> None:
    sweeps = [_sweep("dcgan", "baseline", "epoch", [30.0, 12.5, 20.0])]
    audits = {("dcgan", "baseline"): {"n_near_copies": 3, "n_fake": 200}}
    rows = model_rows(sweeps, audits)
    assert len(rows) == 1
    row = rows.iloc[0]
    assert row["best snapshot"] == "s1"
    assert row["FID (train)"] == 12.5 and row["FID (test)"] == 17.5
    assert row["collapse at"] == "epoch 2" and row["near-copies"] == "3 of 200"


def test_classifier_rows_and_conclusion_state_only_what_the_verdicts_support() -> None:
    comparison = _comparison(
        {("real_dcgan", "0.5"): "helped", ("real_dcgan", "balance"): NO_EVIDENCE,
         ("real_stylegan2ada", "1"): INSUFFICIENT}
    )  # fmt: skip
    rows = classifier_rows(comparison)
    assert rows.arm.tolist() == ["real", "real_dcgan", "real_dcgan", "real_stylegan2ada"]
    assert rows.ratio.tolist() == ["–", "0.5", "balance (0.97)", "1"]
    text = classifier_conclusion(comparison)
    assert "helped AUROC for real_dcgan (ratio 0.5)" in text
    assert "hurt" not in text.split("A verdict")[0]
    assert "1 arm(s) have too few seeds for a verdict (3 seed(s); a verdict needs" in text
    assert "The other 1 arm(s) show no evidence" in text

    quiet = classifier_conclusion(_comparison({("real_dcgan", "0.5"): NO_EVIDENCE}))
    assert "helped" not in quiet and quiet.startswith("All 1 arm(s) show no evidence")


def test_real_floors_of_precision_to_coverage_stand_beside_the_scores() -> None:
    """What real images score (train half vs half) is shown with each pair: a perfect
    generator's values, which small sets pull below 1."""
    sweep = _sweep("dcgan", "baseline", "epoch", [30.0, 12.5]).assign(
        real_floor_precision=0.61, real_floor_recall=0.58, real_floor_density=0.97,
        real_floor_coverage=0.93, real_floor_fid=11.0,
    )  # fmt: skip
    shown = format_model_rows(model_rows([sweep], {})).iloc[0]
    assert shown["precision / recall"] == "0.50 / 0.25 (real 0.61 / 0.58)"
    assert shown["density / coverage"] == "1.20 / 0.75 (real 0.97 / 0.93)"
    older = format_model_rows(model_rows([_sweep("dcgan", "baseline", "epoch", [3.0])], {}))
    assert older.iloc[0]["density / coverage"] == "1.20 / 0.75"  # tables without floors


def test_zero_precision_to_coverage_beside_a_fid_near_its_floor_is_explained() -> None:
    sweep = _sweep("dcgan", "baseline", "epoch", [30.0, 12.5]).assign(
        precision=0.0, recall=0.0, density=0.01, coverage=0.0, real_floor_fid=11.0
    )
    notes = " ".join(model_notes(model_rows([sweep], {})))
    assert "precision, recall, density and coverage are all near 0" in notes
    assert "near its real floor (11.0)" in notes
    assert "FID compares only the mean and covariance" in notes
    far = " ".join(model_notes(model_rows([sweep.assign(real_floor_fid=2.0)], {})))
    assert "all near 0" in far and "(FID vs train 12.5): the samples are unlike" in far
    assert "near its real floor" not in far  # 12.5 is 6 times the floor: not near it
    fine = " ".join(model_notes(model_rows([_sweep("dcgan", "baseline", "epoch", [3.0])], {})))
    assert "all near 0" not in fine


def test_a_real_only_classifier_at_chance_is_said_to_be_so() -> None:
    comparison = _comparison({("real_dcgan", "0.5"): NO_EVIDENCE})
    assert "near chance" not in classifier_conclusion(comparison)  # AUROC 0.9
    comparison.loc[comparison.verdict == "baseline", "mean"] = 0.52
    text = classifier_conclusion(comparison)
    assert "test AUROC (0.520) is near chance (0.5)" in text
    assert "no arm can show a difference" in text


def test_rst_escape_keeps_names_literal() -> None:
    assert rst_escape("real_dcgan_") == r"real\_dcgan\_"
    assert rst_escape("a*b|c") == r"a\*b\|c"
    # the page goes through Jinja2 (Snakemake's report) before docutils: braces stay literal
    for name in ("{{ 7+7 }}", "a{%b", "{# c"):
        assert jinja2.Template(rst_escape(name)).render() == name


def test_a_run_chosen_on_val_without_train_scores_still_has_its_line() -> None:
    """metrics.references without train: the best snapshot is chosen on val and there is no
    FID vs train to show (the line said so instead of failing the headline job)."""
    sweep = _sweep("dcgan", "baseline", "epoch", [30.0, 12.5, 20.0])
    sweep["reference"] = sweep["reference"].replace({"train": "val"})
    sweep["best_by"] = "lowest FID against val (cxr features)"
    rows = model_rows([sweep], {})
    row = selection_rows(rows)[0]
    line = model_line(row, training_course(sweep, "cxr"))
    assert "FID vs train n/a" in line and "best at epoch 1 of 2; FID vs val then rose" in line


def test_the_course_is_read_in_the_space_that_chose_the_best_snapshot() -> None:
    inception = _sweep("dcgan", "baseline", "epoch", [300.0, 200.0, 250.0])
    inception["extractor"] = "inception"
    cxr = _sweep("dcgan", "baseline", "epoch", [3.0, 2.0, 9.0])
    sweep = pd.concat([inception, cxr], ignore_index=True)
    course = training_course(sweep, "inception")
    assert "rose to 250 (1.2 times)" in course  # inception's FID, not cxr's 9.0


def test_a_named_snapshot_and_a_collapse_are_said_on_the_line() -> None:
    sweep = _sweep("dcgan", "baseline", "epoch", [30.0, 20.0, 12.5])  # collapse at epoch 2
    rows = model_rows([sweep], {("dcgan", "baseline"): {"n_near_copies": 3, "n_fake": 48}})
    course = training_course(sweep, "cxr")
    assert course == "best at its last snapshot (epoch 2); diversity collapsed at epoch 2 " + (
        "(below 0.5 of the real images')"
    )
    line = model_line(selection_rows(rows)[0], course, used="epoch0001")
    assert "near-copies 3 of 48 in epoch0001 (use\\_snapshot" in line


def test_a_best_last_snapshot_after_a_rise_is_not_called_steady_improvement() -> None:
    """The demo's DCGAN: FID 10 at epoch 150, 50 at 250, 9 at 300: best at the end, but the
    course rose five-fold on the way, which 'no degradation' would hide."""
    sweep = _sweep("dcgan", "baseline", "epoch", [30.0, 10.0, 50.0, 9.0])
    sweep["collapse_epoch"] = float("nan")
    course = training_course(sweep, "cxr")
    assert course.startswith("best at its last snapshot (epoch 3), though FID vs train rose")
    assert "(to 50.0 at epoch 2, 5.0 times its lowest before)" in course
    assert "still improving" not in course
    steady = _sweep("dcgan", "baseline", "epoch", [30.0, 20.0, 12.0, 9.0])
    steady["collapse_epoch"] = float("nan")
    assert training_course(steady, "cxr").startswith("still improving at its last snapshot")


def test_snapshots_skipped_for_copying_are_named_on_the_line() -> None:
    sweep = _sweep("dcgan", "baseline", "epoch", [30.0, 12.5, 20.0])
    sweep["best_by"] = (
        "lowest FID against train (cxr features); not chosen, near-copying: "
        "epoch0002 (share 0.3 > limit 0.05), epoch0003 (share 0.2 > limit 0.05)"
    )
    row = selection_rows(model_rows([sweep], {}))[0]
    line = model_line(row, training_course(sweep, "cxr"))
    assert "not chosen for copying training images: epoch0002, epoch0003." in line


def test_a_nan_metric_never_becomes_an_interval_spanning_the_range() -> None:
    comparison = _comparison({("real_dcgan", "0.5"): NO_EVIDENCE}).assign(n_paired=3)
    summary = pd.DataFrame(
        {"arm": ["real"] * 3 + ["syn"] * 3, "ratio": [0.0] * 3 + [1.0] * 3,
         "seed": [0, 1, 2] * 2, "auroc": [0.9, 0.8, float("nan"), 0.7, 0.9, 0.8]}
    )  # fmt: skip
    row = compare_arms(summary).set_index("arm").loc["syn"]
    assert math.isnan(row["diff_ci_low"]) and math.isnan(row["diff_ci_high"])
    assert all(math.isnan(v) for v in mean_interval(np.array([0.9, float("nan"), 0.8]))[1:])
    comparison.loc[comparison.verdict == "baseline", "mean"] = float("nan")
    assert "not a number" in classifier_line(comparison)


def test_many_arms_name_only_those_with_a_verdict() -> None:
    verdicts = {(f"real_m{i}", "0.5"): NO_EVIDENCE for i in range(6)} | {
        ("real_dcgan", "1"): "helped"
    }
    line = classifier_line(_comparison(verdicts).assign(n_paired=3))
    assert "real\\_dcgan (ratio 1) +0.010, helped" in line
    assert "6 other arm(s) without a verdict" in line and "real\\_m0" not in line


def _render(section: str) -> str:
    return docutils.core.publish_parts(
        "Title\n=====\n\n" + section,
        writer="html",
        settings_overrides={"halt_level": docutils.utils.Reporter.WARNING_LEVEL},
    )["html_body"]


def _counts() -> pd.DataFrame:
    return pd.DataFrame(
        {"split": ["train", "train", "test", "test"], "label": ["NORMAL", "PNEUMONIA"] * 2,
         "n_images": [10, 20, 5, 5], "n_patients": [8, 15, 5, 4]}
    )  # fmt: skip


def test_headline_section_is_one_short_line_per_stage_with_the_figure(tmp_path: Path) -> None:
    """The front page fits a laptop's window: the figure, then one line per stage, each
    stage said once, well under 400 words; valid RST with the numbers."""
    data = data_summary(_counts(), pd.DataFrame({"path": ["x.txt"], "reason": ["not an image"]}))
    assert data["images"] == 40 and data["rejected"] == 1
    sweeps = [
        _sweep("dcgan", "baseline", "epoch", [50.0, 40.0, 45.0]),
        _sweep("stylegan2ada", "ada", "kimg", [50.0, 40.0]),
    ]
    models = model_rows(sweeps, {("dcgan", "baseline"): {"n_near_copies": 3, "n_fake": 200}})
    courses = {
        (str(s.model.iloc[0]), str(s.run.iloc[0])): training_course(s, "cxr") for s in sweeps
    }
    comparison = _comparison({("real_stylegan2ada", "0.5"): "hurt"})
    runtime = pd.DataFrame({"rule": ["a", "b"], "jobs": [1, 3], "total_s": [60.0, 600.0]})
    png = tmp_path / "f.png"
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(png)
    section = headline_section(
        data, models, courses, comparison, runtime, figure=data_uri(png), arch="resnet18"
    )
    html = _render(section)
    for expected in (
        "40 prepared images", "best snapshot s1", "FID vs train 40.0", "near-copies 3 of 200",
        "real-only test AUROC 0.900 ± 0.010", "real_stylegan2ada (ratio 0.5) +0.010, hurt",
        "11.0 job-minutes", "b (10.0 min over 3 job(s))", 'src="data:image/png;base64,',
        "best at epoch 1 of 2; FID vs train then rose to 45.0 (1.1 times)",
        "still improving at its last snapshot (kimg 1)",
    ):  # fmt: skip
        assert expected in html, expected
    for stage in ("Data", "DCGAN", "StyleGAN2-ADA", "Classifier", "Runtime"):
        assert html.count(f"<strong>{stage}</strong>") == 1, stage
    text = re.sub(r"data:image/png;base64,[^\n]*(\n   [^\n]*)*", "", section)
    assert len(re.findall(r"\w+", text)) < 400, text


def test_a_long_figure_uri_is_split_into_lines_docutils_accepts(tmp_path: Path) -> None:
    """docutils refuses input lines over 10,000 characters: a real summary figure's data URI
    is ~300,000, given in lines that the image directive joins again."""
    png = tmp_path / "noise.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 300), np.uint8)).save(png)
    uri = data_uri(png)
    assert len(uri) > 10_000
    html = _render(headline_section(data_summary(_counts(), pd.DataFrame()), pd.DataFrame(),
                                    {}, None, None, figure=uri))  # fmt: skip
    assert f'src="{uri}"' in html


def test_the_data_line_says_whether_the_test_split_is_shifted() -> None:
    data = data_summary(_counts(), pd.DataFrame())
    plain = ShiftFinding("cxr", 64, 10.0, 8.0, 6.0, 3.0, False)
    shifted = ShiftFinding("cxr", 32, 40.0, 8.0, 6.0, 3.0, True)
    assert "not shifted from train (train-vs-test FID against the same-distribution distance:" in (
        data_line(data, [plain])
    )
    assert "cxr, 64 px: FID 10.0, 1.2 times; flagged above 3 times" in data_line(data, [plain])
    line = data_line(data, [plain, shifted], phantom_test_shift=0.3)
    # every resolution said, the flagged one marked: a flag at one resolution is not hidden
    assert "cxr, 64 px: FID 10.0, 1.2 times; cxr, 32 px: FID 40.0, 5.0 times (flagged)" in line
    assert "drawn so on purpose (data.phantom.test_shift = 0.3)" in line
    assert "train 10 NORMAL + 20 PNEUMONIA; val ; test 5 NORMAL + 5 PNEUMONIA" in data_line(data)


def test_the_classifier_line_says_when_seeds_are_too_few_for_a_verdict() -> None:
    comparison = _comparison({("real_dcgan", "0.5"): INSUFFICIENT}).assign(n_paired=2)
    line = classifier_line(comparison, "resnet18")
    assert "(resnet18, 3 seed(s), tested on real test images only)" in line
    assert "real\\_dcgan (ratio 0.5) +0.010, insufficient evidence" in line
    assert "a verdict needs at least 3 seeds" in line
    comparison.loc[comparison.verdict == "baseline", "mean"] = 0.52
    assert "near chance" in classifier_line(comparison)


def test_tables_page_is_escaped_html_with_the_table_first() -> None:
    page = tables_page(
        "T <1>", pd.DataFrame({"a & b": ["<x>"]}), intro=["why <it>"], notes=["n & m"]
    )
    assert page.index("<table") < page.index("How to read this table")
    assert "T &lt;1&gt;" in page and "&lt;x&gt;" in page and "n &amp; m" in page
    assert "<x>" not in page and "<it>" not in page


def test_unknown_rst_would_fail_the_parser() -> None:
    """The strictness above is real: a broken table raises instead of rendering quietly."""
    with pytest.raises(docutils.utils.SystemMessage):
        docutils.core.publish_parts(
            "T\n=\n\n.. list-table:: x\n   :header-rows: 1\n\n   * - a\n   * - b\n     - c\n",
            writer="html",
            settings_overrides={"halt_level": docutils.utils.Reporter.WARNING_LEVEL},
        )


def test_missing_flags_in_a_table_are_not_read_as_true() -> None:
    """NaN in `best` or `below_real_floor` (an edited or merged table) is no flag: bool(NaN)
    would be True and claim a best snapshot or a value below the floor."""
    sweep = _sweep("dcgan", "baseline", "epoch", [30.0, 12.5, 20.0])
    sweep["best"] = sweep["best"].astype(object)
    sweep.loc[sweep.snapshot == "s0", "best"] = float("nan")
    sweep["below_real_floor"] = float("nan")
    rows = model_rows([sweep], {})
    assert rows["best snapshot"].tolist() == ["s1"]
    assert not rows["below floor (train)"].iloc[0]
    assert not any("below the real" in n for n in model_notes(rows))
