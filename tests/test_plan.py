"""The workflow's policy without snakemake (cxrlib.plan): the study's outputs, generators and
arms of a config, what retries ask for, and the checks at DAG build."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import types
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from snakemake.utils import validate

from cxrlib.jobs.attempts import RUN_ENV, failure_line
from cxrlib.plan import PlanError, Study, paths
from cxrlib.plan.generators import INTERFACE, display_name, generator_names, planning_module
from cxrlib.plan.requests import attempt_requests
from tests.conftest import ROOT


def load_config(*overlays: str | dict[str, Any]) -> dict[str, Any]:
    """config.yaml with overlays merged in (as --configfile does), validated, defaults filled."""

    def merge(base: dict, extra: dict) -> dict:
        out = copy.deepcopy(base)
        for key, value in extra.items():
            both = isinstance(value, dict) and isinstance(out.get(key), dict)
            out[key] = merge(out[key], value) if both else value
        return out

    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    for overlay in overlays:
        extra = (
            yaml.safe_load((ROOT / overlay).read_text()) if isinstance(overlay, str) else overlay
        )
        config = merge(config, extra)
    validate(config, str(ROOT / "schemas" / "config.schema.yaml"))
    return config


DEMO = "overlays/demo.yaml"


def test_the_plan_imports_no_torch_and_no_snakemake() -> None:
    code = (
        "import sys, cxrlib.plan, cxrlib.plan.checks, cxrlib.plan.requests, cxrlib.plan.report\n"
        "from cxrlib.plan.generators import planning_module\n"
        "planning_module('dcgan'); planning_module('stylegan2ada')\n"
        "heavy = {'torch', 'torchvision', 'sklearn', 'snakemake'} & set(sys.modules)\n"
        "print(sorted(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_generators_are_the_config_sections_with_runs_and_their_planning_interface() -> None:
    config = load_config(DEMO)
    assert generator_names(config) == ["dcgan", "stylegan2ada"]
    for name in generator_names(config):
        module = planning_module(name)
        assert all(hasattr(module, key) for key in INTERFACE)
    study = Study(config)
    assert study.display_name("stylegan2ada") == "StyleGAN2-ADA"
    assert study.snapshots("dcgan", "baseline") == [f"epoch{e:04d}" for e in range(50, 301, 50)]
    assert study.snapshots("stylegan2ada", "ada") == [f"kimg{k:06d}" for k in range(0, 21, 4)]
    assert study.resolution("dcgan", "baseline") == 64
    assert study.resolution("stylegan2ada", "ada") == 32
    assert study.floor_resolutions() == [32, 64]


def test_a_section_that_looks_like_a_generator_needs_its_library_folder() -> None:
    config = load_config(DEMO)
    config["nosuchgan"] = {"settings": {}, "runs": {"a": {}}, "use_snapshot": "best"}
    study = Study(config)
    assert study.generators == ["dcgan", "stylegan2ada", "nosuchgan"]
    with pytest.raises(PlanError, match=r"cxrlib/nosuchgan/settings.py does not exist"):
        study.snapshots("nosuchgan", "a")


def test_a_new_generator_is_planned_from_its_settings_module_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What a contributor adds in cxrlib/<name>/settings.py is all the plan needs: outputs,
    scoring inputs, the classifier arm and the state folder follow."""
    from cxrlib.jobs.resume import ResumeContract

    toy = types.ModuleType("cxrlib.toygan.settings")
    toy.DISPLAY_NAME, toy.PROGRESS, toy.SCHEDULE_KEY = "Toy GAN", "epoch", "every"
    toy.RESUME_CONTRACT = ResumeContract("toygan", frozenset({"every"}), length="epochs")
    toy.run_settings = lambda merged: types.SimpleNamespace(**{"epochs": 4, "every": 2, **merged})
    toy.snapshots = lambda s: [(f"epoch{i:04d}", float(i)) for i in range(s.every, s.epochs + 1, 2)]
    toy.resolution = lambda s: 32
    toy.resume_settings = lambda s, saved: vars(s)
    toy.grid_columns = lambda s: 4
    monkeypatch.setitem(sys.modules, "cxrlib.toygan", types.ModuleType("cxrlib.toygan"))
    monkeypatch.setitem(sys.modules, "cxrlib.toygan.settings", toy)
    config = load_config(DEMO)
    config["toygan"] = {"settings": {"epochs": 4}, "runs": {"tiny": {}}, "use_snapshot": "best"}
    config["classifier"]["models"] = ["dcgan", "stylegan2ada", "toygan"]
    study = Study(config)
    study.check_classifier_models()
    assert study.snapshots("toygan", "tiny") == ["epoch0002", "epoch0004"]
    assert "results/toygan/tiny/sweep.csv" in study.final_outputs()
    assert study.sweep_scores("toygan", "tiny") == [
        "results/toygan/tiny/scores/epoch0002.csv",
        "results/toygan/tiny/scores/epoch0004.csv",
    ]
    assert study.score_inputs("toygan", "tiny", "epoch0002")["real_cxr_train"] == (
        "results/metrics/real_features/cxr/train_32px.npz"
    )
    assert ("real_toygan", "balance") in study.classifier_arms()
    assert "real_toygan" in study.arm_names()
    assert study.state_template("train_toygan") == "results/toygan/{run}/state"
    assert study.generator_settings("toygan", "tiny")["epochs"] == 4
    assert study.grid_columns("toygan", "tiny") == 4
    # its rules' params, and its training rule's requests without an entry of its own
    assert study.generator_params("toygan") == {
        "model": "toygan", "display_name": "Toy GAN", "progress": "epoch",
    }  # fmt: skip
    listed = {"train_dcgan", "train_generator"}
    assert study.requests_rule("train_toygan", listed) == "train_generator"
    assert study.requests_rule("train_dcgan", {"train_dcgan"}) == "train_dcgan"
    assert study.requests_rule("train_classifier", set()) == "train_classifier"
    assert display_name("toygan") == "Toy GAN" and display_name("gone") == "gone"
    toy.PROGRESS = "step"  # the score tables have an epoch and a kimg column, nothing else
    with pytest.raises(PlanError, match=r"PROGRESS is 'step'.*one of epoch, kimg"):
        planning_module("toygan")
    with pytest.raises(PlanError, match="no entry for train_toygan and no train_generator"):
        study.requests_rule("train_toygan", {"train_dcgan"} - {"train_generator"})
    config["oversampled"] = config.pop("toygan")  # its arm would be the control's name
    with pytest.raises(PlanError, match="named 'oversampled' would make its classifier arm"):
        Study(config).check_classifier_models()
    config.pop("oversampled")
    config["classifier"]["models"] = ["dcgan", "toygann"]
    with pytest.raises(PlanError, match=r"classifier\.models names 'toygann'.*generators: dcgan"):
        Study(config).check_classifier_models()


def test_the_demo_study_plans_every_stage() -> None:
    study = Study(load_config(DEMO))
    outputs = study.final_outputs()
    for expected in (
        paths.MANIFEST, "results/dcgan/baseline/sweep.csv", "results/stylegan2ada/ada/sweep.csv",
        "results/metrics/memorisation/dcgan/baseline/best/summary.json", paths.SUMMARY,
        paths.REAL_REFERENCE, paths.COMPARISON, paths.HEADLINE_PAGE,
    ):  # fmt: skip
        assert expected in outputs
    assert study.classifier_arms() == [
        ("real", "0"), ("real_oversampled", "balance"),
        ("real_dcgan", "balance"), ("real_stylegan2ada", "balance"),
    ]  # fmt: skip
    runs = study.classifier_runs("metrics.csv")
    assert len(runs) == 4 * 3 and runs[0] == "results/classifier/real/ratio0/seed0/metrics.csv"
    assert study.classifier_inputs("real_dcgan") == {
        "synthetic": "results/synthetic/dcgan/baseline/best"
    }
    assert study.headline_inputs()["samples"] == [
        "results/synthetic/dcgan/baseline/best", "results/synthetic/stylegan2ada/ada/best",
    ]  # fmt: skip
    assert study.positive_label() == "PNEUMONIA"


def test_a_study_without_generators_still_plans_the_classifier() -> None:
    config = load_config(DEMO)
    config["dcgan"]["runs"] = config["stylegan2ada"]["runs"] = {}
    config["classifier"]["classic_augmentation"] = True  # the demo leaves it out
    study = Study(config)
    assert study.model_runs() == [] and study.floor_resolutions() == []
    assert study.classifier_arms() == [("real", "0"), ("real_classic", "0")]  # no control
    assert paths.SUMMARY not in study.final_outputs()


def test_a_snapshot_a_run_does_not_write_is_refused_naming_those_it_does() -> None:
    study = Study(load_config(DEMO))
    with pytest.raises(PlanError, match=r"writes no snapshot epoch0007; it writes epoch0050"):
        study.score_inputs("dcgan", "baseline", "epoch0007")


@pytest.mark.parametrize("factor", [float("nan"), float("inf"), 0, -1, True])
def test_a_shift_factor_that_is_not_a_finite_positive_number_is_refused(factor: Any) -> None:
    study = Study(load_config(DEMO))
    study.config["metrics"]["shift_factor"] = factor
    with pytest.raises(PlanError, match=r"metrics.shift_factor must be a finite number > 0"):
        study.shift_factor()


def test_a_bad_run_setting_names_the_run(tmp_path: Path) -> None:
    study = Study(load_config(DEMO, {"dcgan": {"runs": {"wide": {"image_size": 48}}}}))
    with pytest.raises(PlanError, match=r"dcgan.runs.wide: dcgan setting 'image_size' must be"):
        study.snapshots("dcgan", "wide")


def test_a_retry_after_a_failure_no_retry_can_fix_asks_for_little(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    said: list[str] = []
    state = tmp_path / "{run}"
    requests = attempt_requests(
        {"runtime": 240, "mem_mb": 16000, "gpu": 1},
        "train_dcgan",
        str(state),
        main_process=True,
        warn=said.append,
    )
    assert requests["gpu"] == 1
    monkeypatch.setenv(RUN_ENV, "abc")
    (tmp_path / "baseline").mkdir()
    events = tmp_path / "baseline" / "events.log"
    wildcards = {"run": "baseline"}
    assert requests["runtime"](wildcards, 1) == 240
    assert requests["runtime"](wildcards, 2) == 240  # no record: a time limit, full request
    events.write_text(f"2026-12-04 10:00:00 {failure_line('abc', 'ValueError: bad data')}\n")
    assert requests["runtime"](wildcards, 2) == 5 and requests["mem_mb"](wildcards, 3) == 1000
    assert len(said) == 1 and "ValueError: bad data" in said[0]
    events.write_text(f"2026-12-04 10:00:00 {failure_line('other', 'ValueError: bad')}\n")
    assert requests["runtime"](wildcards, 2) == 240  # another snakemake call tries afresh


def test_a_saved_state_the_config_may_not_continue_fails_at_dag_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The resume contract at DAG build: a changed trajectory setting is named; a state that
    cannot be read says how to start afresh."""
    study = Study(load_config(DEMO))
    saved = study.generator_settings("dcgan", "baseline") | {"lr": 0.001}
    monkeypatch.chdir(tmp_path)
    state = Path(paths.STATE.format(model="dcgan", run="baseline"))
    state.mkdir(parents=True)
    (state / "state.pt").write_bytes(b"not a zip")
    with pytest.raises(PlanError, match=r"state.pt cannot be read .* Delete results/dcgan"):
        study.generator_settings("dcgan", "baseline")
    with zipfile.ZipFile(state / "state.pt", "w") as archive:
        archive.writestr("data.pkl", b"")
    (state / "state.json").write_text(
        json.dumps({"resume": {"model": "dcgan", "settings": saved, "done": 10}})
    )
    with pytest.raises(PlanError, match=r"lr: 0.001 -> 0.0002"):
        study.generator_settings("dcgan", "baseline")
