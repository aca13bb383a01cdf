"""Inputs as people have them (issue 24): class folders named otherwise, YAML as YAML 1.1 reads
it, paths with ~, keys the workflow would ignore, failures no retry can fix when the disk is
full, deleted published snapshots, and extended runs that keep their earlier scores."""

from __future__ import annotations

import errno
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from cxrlib.jobs.attempts import RUN_ENV, fallback_record, recorded_failure
from cxrlib.jobs.survival import StateNotSaved, StateStore, attempt_guard
from cxrlib.plan import PlanError, Study
from cxrlib.plan.checks import positive_class
from cxrlib.plan.config import normalise
from cxrlib.snapshot import SnapshotError, read_snapshot, save_snapshot
from tests.conftest import run_snakemake
from tests.test_plan import DEMO, load_config

TEST_CONFIG = ("--configfile", "tests/config/test.yaml")


def _schema() -> dict:
    import yaml

    from tests.conftest import ROOT

    return yaml.safe_load((ROOT / "schemas" / "config.schema.yaml").read_text())


# ------------------------------------------------------------------ class names


def _config_with(**data: object) -> dict:
    config = load_config(DEMO)
    config["data"].update(data)
    return config


@pytest.mark.parametrize(
    ("classes", "synthetic", "configured", "expected"),
    [
        (["NORMAL", "PNEUMONIA"], "NORMAL", None, "PNEUMONIA"),
        (["Normal", "Pneumonia"], "Normal", None, "Pneumonia"),  # the issue's example
        (["COVID", "NORMAL"], "NORMAL", None, "COVID"),
        (["NORMAL", "PNEUMONIA"], "PNEUMONIA", None, "NORMAL"),
        (["NORMAL", "PNEUMONIA"], "PNEUMONIA", "PNEUMONIA", "PNEUMONIA"),  # either may be
        (["pneumonia"], "pneumonia", None, None),  # one class: GAN stages only
    ],
)
def test_the_positive_class_comes_from_the_data_and_the_config(
    classes: list[str], synthetic: str, configured: str | None, expected: str | None
) -> None:
    config = _config_with(synthetic_class=synthetic, positive_class=configured)
    assert positive_class(config, classes) == expected


def test_a_positive_class_not_in_train_names_the_classes_and_the_case_fix() -> None:
    config = _config_with(synthetic_class="Normal", positive_class="PNEUMONIA")
    with pytest.raises(PlanError, match=r"not a class of train/ \(Normal, Pneumonia\).*"
                       r"set data.positive_class: Pneumonia"):  # fmt: skip
        positive_class(config, ["Normal", "Pneumonia"])


def test_more_than_two_classes_are_refused_rather_than_folded_into_negative() -> None:
    config = _config_with(synthetic_class="Normal")
    classes = ["COVID", "Lung_Opacity", "Normal", "Viral Pneumonia"]  # COVID-19 Radiography
    with pytest.raises(PlanError, match=r"train/ holds 4 classes .* Keep two class folders"):
        positive_class(config, classes)


def test_a_one_class_study_runs_the_gan_stages_without_a_classifier(tmp_path: Path) -> None:
    root = tmp_path / "data"
    for split in ("train", "test"):
        (root / split / "NORMAL").mkdir(parents=True)
    config = _config_with(source="folder", root=str(root))
    config["metrics"]["extractors"] = ["inception"]
    study = Study(config)
    assert study.classes == ["NORMAL"] and not study.with_classifier
    outputs = study.final_outputs()
    assert "results/dcgan/baseline/sweep.csv" in outputs
    assert not any(o.startswith("results/classifier/") for o in outputs)
    assert "comparison" not in study.headline_inputs()
    config["metrics"]["extractors"] = ["cxr"]
    with pytest.raises(PlanError, match=r"one class \(NORMAL\).*extractors: \[inception\]"):
        Study(config).score_inputs("dcgan", "baseline", "epoch0050")


@pytest.mark.slow
def test_class_folders_named_otherwise_reach_the_classifier(workflow_copy: Path) -> None:
    """The issue's data set: Normal/ and Pneumonia/ with data.synthetic_class: Normal. It
    failed at train_domain_extractor ("class 'PNEUMONIA' not among the labels"); now the
    domain extractor and a classifier train, scored for Pneumonia."""
    from cxrlib.data.phantom import PhantomSpec, make_phantom_dataset

    root = workflow_copy / "data"
    spec = PhantomSpec(
        seed=3,
        counts={
            "train": {"NORMAL": 24, "PNEUMONIA": 24},
            "val": {"NORMAL": 2, "PNEUMONIA": 2},
            "test": {"NORMAL": 6, "PNEUMONIA": 6},
        },
        size_px=(160, 240),
    )
    make_phantom_dataset(root, spec)
    for split in ("train", "val", "test"):
        for folder in list((root / split).iterdir()):
            folder.rename(root / split / folder.name.capitalize())
    (workflow_copy / "classes.yaml").write_text(
        "data:\n  source: folder\n  root: data\n  synthetic_class: Normal\n"
    )
    target = "results/classifier/real/ratio0/seed0/predictions.csv"
    extractor = "results/metrics/domain_extractor/model.pt"
    run_snakemake(workflow_copy, target, extractor, "--cores", "2", *TEST_CONFIG, "classes.yaml")
    predictions = pd.read_csv(workflow_copy / target)
    assert set(predictions.label) == {"Normal", "Pneumonia"}
    assert (predictions.y_true == (predictions.label == "Pneumonia")).all()
    assert (workflow_copy / "results/metrics/domain_extractor/model.pt").is_file()


# ------------------------------------------------------------------ YAML as YAML 1.1 reads it


def test_yaml_exponents_read_as_text_become_numbers_everywhere() -> None:
    config = load_config(DEMO)
    config["classifier"]["settings"]["lr"] = "3e-4"  # what PyYAML gives for lr: 3e-4
    config["dcgan"]["settings"]["lr"] = "2E-4"
    config["stylegan2ada"]["runs"]["ada"] = {"gamma": "1e1"}
    config["metrics"]["xrv_sha256"] = "1234e5678"  # text stays text where text is meant
    normalise(config, _schema())
    assert config["classifier"]["settings"]["lr"] == pytest.approx(3e-4)
    assert config["dcgan"]["settings"]["lr"] == pytest.approx(2e-4)
    assert config["stylegan2ada"]["runs"]["ada"]["gamma"] == 10.0
    assert config["metrics"]["xrv_sha256"] == "1234e5678"
    assert Study(config).classifier_settings("real", "0", "0")["settings"]["lr"] == 3e-4


@pytest.mark.parametrize(
    ("section", "key"),
    [("preprocess", "normalisation"), ("data", "follow_links"), ("data", "val_source")],
)
def test_a_word_yaml_read_as_a_boolean_is_refused_with_quote_it(section: str, key: str) -> None:
    config = load_config(DEMO)
    config[section][key] = False  # normalisation: off / no
    with pytest.raises(PlanError, match=rf"{section}.{key} is false: YAML reads .* Quote"):
        normalise(config, _schema())


def test_off_in_an_untyped_settings_section_says_quote_it() -> None:
    config = load_config(DEMO)
    config["stylegan2ada"]["settings"]["augment"] = False
    with pytest.raises(PlanError, match=r"augment must be a string, got False; YAML reads"):
        Study(config).snapshots("stylegan2ada", "ada")


@pytest.mark.parametrize(
    ("value", "said"),
    [
        ("5%", r"max_near_copy_share: '5%' is not of type .* 5% is 0\.05"),
        ("none", r"max_near_copy_share: 'none' .* null \(unquoted\)"),
        (1.5, r"max_near_copy_share: 1\.5 is greater than .* a value from 0 to 1"),
        (float("nan"), r"max_near_copy_share must be a finite number, got nan"),
    ],
)
def test_values_the_schema_refuses_are_named_with_the_fix(value: object, said: str) -> None:
    """Not Snakemake's schema dump: the dotted key, the value and what to write instead; NaN
    (which a schema's minimum and maximum let through) refused everywhere."""
    config = load_config(DEMO)
    config["metrics"]["memorisation"]["max_near_copy_share"] = value
    with pytest.raises(PlanError, match=rf"metrics\.memorisation\.{said}"):
        normalise(config, _schema())


def test_digits_where_text_is_meant_say_quote_it() -> None:
    config = load_config(DEMO)
    config["metrics"]["swav_sha256"] = 12345678  # swav_sha256: 12345678
    with pytest.raises(PlanError, match=r"metrics\.swav_sha256 is the number 12345678: .* Quote"):
        normalise(config, _schema())


def test_weights_settings_are_checked_whatever_the_target(workflow_copy: Path) -> None:
    """A configured weights file that is missing fails the DAG build even for a target that
    does not score (an input function's error is not shown for jobs whose outputs exist, so
    a finished study skipped the bad setting silently)."""
    (workflow_copy / "swav.yaml").write_text(
        "metrics:\n  extractors: [swav, cxr]\n  swav_weights: /no/such/swav.pth\n"
        f"  swav_sha256: '{'0' * 64}'\n"
    )
    proc = run_snakemake(
        workflow_copy, "-n", "results/data/manifest.csv", *TEST_CONFIG, "swav.yaml", check=False
    )
    assert proc.returncode != 0
    assert "metrics.swav_weights /no/such/swav.pth does not exist" in proc.stdout + proc.stderr
    folder = workflow_copy / "weights"
    folder.mkdir()
    config = load_config(DEMO)
    config["metrics"].update(extractors=["xrv"], xrv_weights=str(folder))
    with pytest.raises(PlanError, match=r"metrics\.xrv_weights .* is a folder"):
        Study(config).check_weights_settings()


def test_paths_with_tilde_and_variables_mean_what_a_shell_means(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("SCRATCH", str(tmp_path / "scratch"))
    config = load_config(DEMO)
    config["data"]["root"] = "~/data/chest_xray"
    config["metrics"]["weights_dir"] = "$SCRATCH/weights"
    config["classifier"]["settings"]["weights"] = "~/nets/r50.pth"
    config["stylegan2ada"]["runs"]["ada"] = {"resume_from": "~/nets/ffhq.pkl"}
    config["metrics"]["swav_weights"] = "~/nets/swav.pth.tar"
    normalise(config, _schema())
    assert config["metrics"]["swav_weights"] == f"{tmp_path}/nets/swav.pth.tar"
    assert config["data"]["root"] == f"{tmp_path}/data/chest_xray"
    assert config["metrics"]["weights_dir"] == f"{tmp_path}/scratch/weights"
    assert config["classifier"]["settings"]["weights"] == f"{tmp_path}/nets/r50.pth"
    assert config["stylegan2ada"]["runs"]["ada"]["resume_from"] == f"{tmp_path}/nets/ffhq.pkl"


@pytest.mark.slow
def test_the_issues_examples_through_snakemake(
    workflow_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """lr: 3e-4 (a TypeError at DAG build before), data.root: ~/... (resolved inside the
    project before) and augment: off (quote it), as users type them."""
    (workflow_copy / "lr.yaml").write_text("classifier:\n  settings:\n    lr: 3e-4\n")
    run_snakemake(workflow_copy, "-n", "--cores", "1", *TEST_CONFIG, "lr.yaml")
    home = workflow_copy / "home"
    (home / "data" / "x" / "train").mkdir(parents=True)
    (workflow_copy / "root.yaml").write_text("data:\n  source: folder\n  root: ~/data/chest_xray\n")
    proc = run_snakemake(
        workflow_copy, "-n", "--cores", "1", *TEST_CONFIG, "root.yaml",
        check=False, env={"HOME": str(home)},
    )  # fmt: skip
    printed = proc.stdout + proc.stderr
    assert f"data.root {home}/data/chest_xray does not exist" in printed
    assert "/~/" not in printed
    (workflow_copy / "off.yaml").write_text("preprocess:\n  normalisation: off\n")
    proc = run_snakemake(workflow_copy, "-n", *TEST_CONFIG, "off.yaml", check=False)
    assert proc.returncode != 0
    assert "preprocess.normalisation is false" in proc.stderr + proc.stdout
    assert "normalisation: 'off'" in proc.stderr + proc.stdout


# ------------------------------------------------------------------ settings that would be ignored


@pytest.mark.parametrize(
    ("section", "key", "fix"),
    [
        ("classifier.settings", "augment", "each arm sets it"),
        ("classifier.settings", "seed", "the seeds are classifier.seeds"),
        ("metrics.domain_extractor", "weights", "the domain extractor starts from scratch"),
    ],
)
def test_a_key_the_workflow_overwrites_is_refused_naming_what_decides(
    section: str, key: str, fix: str
) -> None:
    config = load_config(DEMO)
    part, sub = section.split(".")
    config[part][sub][key] = "classic" if key == "augment" else 3
    study = Study(config)
    with pytest.raises(PlanError, match=rf"{section}.{key} is not used: {fix}"):
        if part == "classifier":
            study.classifier_settings("real", "0", "0")
        else:
            study.domain_extractor_settings()


# ------------------------------------------------------------------ full disks


def test_a_failure_is_recorded_beside_the_run_or_in_the_cache_when_it_cannot_be(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The record that stops futile retries survives the failure that caused it: when the
    run's folder cannot be written, it goes to the user's cache, and the retry finds it."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv(RUN_ENV, "run1")
    state = tmp_path / "state"
    (state / "events.log").mkdir(parents=True)  # any write to it fails, as on a full disk
    with pytest.raises(OSError, match="No space left"), attempt_guard(state):
        raise OSError(errno.ENOSPC, "No space left on device")
    assert fallback_record(state).is_file()
    assert recorded_failure(state, "run1") == "OSError: [Errno 28] No space left on device"
    assert recorded_failure(state, "run2") is None  # a new snakemake run tries afresh


def test_a_state_that_cannot_be_written_keeps_the_last_good_one(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state")
    store.save({"resume": {"done": 1}, "w": torch.ones(3)}, 1)

    def full(*args: object, **kwargs: object) -> None:
        with open(args[1], "wb") as fh:  # half a file, then the disk is full
            fh.write(b"PK\x03\x04 half")
        raise OSError(errno.ENOSPC, "No space left on device")

    real = torch.save
    torch.save = full  # type: ignore[assignment]
    try:
        with pytest.raises(StateNotSaved, match=r"No space left on device.*Free space there"):
            store.save({"resume": {"done": 2}, "w": torch.zeros(3)}, 2)
    finally:
        torch.save = real  # type: ignore[assignment]
    assert store.load()["w"].tolist() == [1.0, 1.0, 1.0]  # the last good state, intact
    assert sorted(p.name for p in store.folder.iterdir()) == ["state.json", "state.pt"]


def test_a_training_that_could_never_save_says_so_before_it_starts(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state")
    huge = {"w": torch.empty(10**15, dtype=torch.uint8, device="meta")}  # a petabyte
    with pytest.raises(StateNotSaved, match=r"about [\d,]+ MB needed"):
        store.check_room(huge)


def test_a_real_full_file_system(tmp_path: Path) -> None:
    """A 1 MB tmpfs (root only; skipped where mounting is not allowed): the attempt fails with
    the reason, nothing half-written is left, and the failure is recorded in the cache."""
    mount = tmp_path / "small"
    mount.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a small file system here: {proc.stderr.decode().strip()}")
    try:
        store = StateStore(mount / "state")
        with pytest.raises(StateNotSaved, match=r"not enough room; .* MB free there"):
            store.check_room({"w": torch.zeros(2**20)})  # 4 MB into 1 MB
        store.folder.mkdir(exist_ok=True)
        (mount / "filler").write_bytes(b"\0" * (1024 * 1024 - 64 * 1024))
        with pytest.raises(StateNotSaved, match=r"cannot save the resume state: cannot write"):
            store.save({"w": torch.zeros(2**16)}, 1)  # 256 KB
        assert not store.exists() and not list(store.folder.glob(".*tmp"))
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


# ------------------------------------------------------------------ deleted published files


def _snapshot(run_dir: Path) -> Path:
    from cxrlib.dcgan.networks import Generator

    kept = run_dir / "state" / "snapshots" / "epoch0002.pt"
    generator = Generator(image_size=32, nz=8, ngf=4, channels=1)
    save_snapshot(kept, "dcgan", generator.kwargs(), generator, {"epoch": 2}, run="r", seed=0)
    published = run_dir / "snapshots" / "epoch0002.pt"
    published.parent.mkdir(parents=True)
    os.link(kept, published)
    return published


def test_a_deleted_published_snapshot_comes_back_from_the_state_folder(tmp_path: Path) -> None:
    published = _snapshot(tmp_path / "results" / "dcgan" / "baseline")
    published.unlink()
    assert read_snapshot(published)["progress"] == {"epoch": 2}
    assert published.is_file()


def test_a_snapshot_gone_from_both_places_gives_the_commands_that_work(tmp_path: Path) -> None:
    run_dir = tmp_path / "results" / "dcgan" / "baseline"
    published = _snapshot(run_dir)
    published.unlink()
    shutil.rmtree(run_dir / "state" / "snapshots")
    with pytest.raises(SnapshotError, match=rf"rm -r {run_dir}/state.*-R train_dcgan"):
        read_snapshot(published)


@pytest.mark.slow
def test_deleted_snapshots_as_a_user_meets_them(workflow_copy: Path) -> None:
    """Delete the best snapshot's published file: sampling again restores it from state/.
    Delete its state copy too: the error's commands, typed as given, train the run again."""
    samples = "results/synthetic/dcgan/baseline/epoch0002"
    config = (*TEST_CONFIG, "only_dcgan.yaml")
    (workflow_copy / "only_dcgan.yaml").write_text("stylegan2ada:\n  runs: {}\n")
    run_snakemake(workflow_copy, samples, "--cores", "2", *config)
    published = workflow_copy / "results/dcgan/baseline/snapshots/epoch0002.pt"
    published.unlink()
    shutil.rmtree(workflow_copy / samples)
    run_snakemake(workflow_copy, samples, "--cores", "2", *config)
    assert published.is_file()
    published.unlink()
    (workflow_copy / "results/dcgan/baseline/state/snapshots/epoch0002.pt").unlink()
    shutil.rmtree(workflow_copy / samples)
    failed = run_snakemake(workflow_copy, samples, "--cores", "2", *config, check=False)
    text = failed.stdout + failed.stderr
    assert failed.returncode != 0
    state = re.search(r"rm -r (\S+/state)\)", text)
    assert state and "-R train_dcgan added to this run's command" in text, text[-3000:]
    shutil.rmtree(workflow_copy / state.group(1))  # as typed in the workflow folder
    run_snakemake(workflow_copy, samples, "--cores", "2", "-R", "train_dcgan", *config)
    assert published.is_file() and (workflow_copy / samples / "index.csv").is_file()


# ------------------------------------------------------------------ extending a run


@pytest.mark.slow
def test_extending_a_run_plans_only_the_new_snapshots_score_jobs(study: Path) -> None:
    """Raising the DCGAN's epochs (4 -> 6) continues the run; the dry run plans one scoring
    job (the new snapshot epoch0006), not one per earlier snapshot (hours at study scale)."""
    (study / "longer.yaml").write_text("dcgan:\n  settings:\n    epochs: 6\n")
    proc = run_snakemake(study, "-n", "--cores", "1", *TEST_CONFIG, "longer.yaml")
    scoring = [
        block
        for block in proc.stdout.split("\n\n")
        if block.lstrip().startswith("rule score_") or "rule score_snapshot:" in block
    ]
    planned = re.findall(r"snapshot=(\w+)", "\n".join(scoring))
    assert planned == ["epoch0006"], proc.stdout[-4000:]
    assert "train_dcgan" in proc.stdout


def test_score_jobs_rerun_when_the_runs_snapshots_change() -> None:
    """What keeps the earlier scores when a run is extended does not keep them when the run
    was trained with other settings: the score job's params hold the trajectory settings."""
    study = Study(load_config(DEMO))
    before = study.run_trajectory("dcgan", "baseline")
    assert "epochs" not in before and "snapshot_every_epochs" not in before
    longer = load_config(DEMO, {"dcgan": {"settings": {"epochs": 600}}})
    assert Study(longer).run_trajectory("dcgan", "baseline") == before
    other = load_config(DEMO, {"dcgan": {"settings": {"lr": 0.0001}}})
    assert Study(other).run_trajectory("dcgan", "baseline") != before
    assert np.isclose(Study(other).run_trajectory("dcgan", "baseline")["lr"], 1e-4)
