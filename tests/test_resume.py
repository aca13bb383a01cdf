"""One resume contract for every trainer (cxrlib.jobs.resume): the same table of changes
tried on DCGAN, StyleGAN2-ADA, the classifier and the domain extractor.

A state is saved part-way; a new trainer with one setting (or the data) changed is then
resumed from it: a change of the trajectory is refused before any step, naming the key with
its old and new value and the fix; a change the contract allows trains on.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from cxrlib.classifier.trainer import ClassifierTrainer
from cxrlib.dcgan.settings import RESUME_CONTRACT as DCGAN_CONTRACT
from cxrlib.dcgan.trainer import DcganTrainer, dcgan_settings, prepare_images
from cxrlib.jobs.resume import CONTRACTS, ResumeRefused, check_resume, read_record
from cxrlib.jobs.survival import StateStore, run_resumable
from cxrlib.stylegan2ada import trainer as sg
from cxrlib.stylegan2ada.settings import RESUME_CONTRACT as STYLEGAN_CONTRACT
from tests.test_classifier import LABELS, _phantoms, _tiny_settings
from tests.test_dcgan import TINY, _images, one_thread  # noqa: F401 (autouse fixture)
from tests.test_stylegan2 import tiny_images, tiny_settings


@dataclass(frozen=True)
class Subject:
    """One trainer under the contract: how to build it with changed settings or data."""

    make: Callable[[dict[str, Any], int], Any]  # (setting overrides, data variant) -> trainer
    total: Callable[[Any], int]  # the trainer's total steps
    steps_saved: int  # steps trained before the state is saved
    allowed: dict[str, Any]  # free settings and a raised length: training goes on
    lowered: dict[str, Any] | None  # the length below what was trained: refused


def _dcgan(over: dict[str, Any], variant: int) -> DcganTrainer:
    from cxrlib.jobs.resume import data_fingerprint

    s = dcgan_settings({**TINY, **over})
    images = _images(seed=variant)
    fp = data_fingerprint(images)["sha256"]
    return DcganTrainer(prepare_images(images, s.image_size, s.channels), s, data_fingerprint=fp)


def _stylegan(over: dict[str, Any], variant: int) -> sg.StyleGan2AdaTrainer:
    from cxrlib.jobs.resume import data_fingerprint

    images = tiny_images() if variant == 0 else 255 - tiny_images()
    s = tiny_settings(**over)
    x = sg.prepare_images(images, s.resolution, s.channels)
    return sg.StyleGan2AdaTrainer(x, s, data=data_fingerprint(images))


def _classifier(contract: str) -> Callable[[dict[str, Any], int], ClassifierTrainer]:
    def make(over: dict[str, Any], variant: int) -> ClassifierTrainer:
        train, val = _phantoms(variant, 4, 32), _phantoms(10 + variant, 2, 32)
        s = replace(_tiny_settings(), **over)
        return ClassifierTrainer(train, val, s, LABELS, 1, contract=contract)

    return make


SUBJECTS = {
    # 40 images / batch 8: 5 steps an epoch; 2 epochs saved
    "dcgan": Subject(
        _dcgan,
        lambda t: t.settings.epochs * t.steps_per_epoch,
        10,
        {"snapshot_every_epochs": 1, "epochs": 5},
        {"epochs": 1},
    ),
    # batch 4: 5 steps = 0.02 kimg saved
    "stylegan2ada": Subject(
        _stylegan,
        lambda t: t.settings.total_steps,
        5,
        {"snapshot_kimg": 0.01, "tick_kimg": 0.004, "total_kimg": 0.06},
        {"total_kimg": 0.01},
    ),
    "classifier": Subject(_classifier("classifier"), lambda t: t.total_steps, 3, {}, None),
    "domain_extractor": Subject(
        _classifier("domain_extractor"), lambda t: t.total_steps, 3, {}, None
    ),
}
# Trajectory settings every trainer has: each change is refused, on every trainer.
REFUSED = [("lr", 0.0007), ("batch_size", 2), ("seed", 11)]


def _saved_store(subject: Subject, tmp_path: Path) -> tuple[StateStore, Any]:
    trainer = subject.make({}, 0)
    for _ in range(subject.steps_saved):
        trainer.train_step()
    store = StateStore(tmp_path / "state")
    store.save(trainer.state_dict(), trainer.step)
    return store, trainer


def _refused(subject: Subject, store: StateStore, over: dict[str, Any], variant: int = 0):
    trainer = subject.make(over, variant)
    with pytest.raises(ResumeRefused) as info:
        run_resumable(trainer, subject.total(trainer), store, save_every_s=1e9)
    assert trainer.step == 0  # refused before any step
    assert "refused to resume" in (store.folder / "events.log").read_text()
    return str(info.value)


@pytest.mark.parametrize("name", SUBJECTS)
@pytest.mark.parametrize(("key", "value"), REFUSED)
def test_a_changed_trajectory_setting_is_refused_naming_old_and_new(
    name: str, key: str, value: Any, tmp_path: Path
) -> None:
    subject = SUBJECTS[name]
    store, first = _saved_store(subject, tmp_path)
    old = getattr(first.settings, key)
    message = _refused(subject, store, {key: value})
    assert f"  {key}: {json.dumps(old)} -> {json.dumps(value)}" in message
    assert f"delete {store.folder}/" in message and "new run name" in message
    contracts = {**CONTRACTS, "dcgan": DCGAN_CONTRACT, "stylegan2ada": STYLEGAN_CONTRACT}
    assert contracts[name].model in message


@pytest.mark.parametrize("name", SUBJECTS)
def test_other_training_data_are_refused(name: str, tmp_path: Path) -> None:
    subject = SUBJECTS[name]
    store, _ = _saved_store(subject, tmp_path)
    assert "trained on other images" in _refused(subject, store, {}, variant=1)


@pytest.mark.parametrize("name", SUBJECTS)
def test_allowed_changes_train_on_from_the_saved_step(name: str, tmp_path: Path) -> None:
    subject = SUBJECTS[name]
    store, _ = _saved_store(subject, tmp_path)
    trainer = subject.make(subject.allowed, 0)
    assert run_resumable(trainer, subject.total(trainer), store, save_every_s=1e9) is True
    assert trainer.step == subject.total(trainer) or getattr(trainer, "stopped_early", False)
    assert "resumed at step" in (store.folder / "events.log").read_text()


@pytest.mark.parametrize("name", [n for n, s in SUBJECTS.items() if s.lowered])
def test_a_length_below_what_was_trained_is_refused(name: str, tmp_path: Path) -> None:
    subject = SUBJECTS[name]
    store, _ = _saved_store(subject, tmp_path)
    (key,) = subject.lowered
    message = _refused(subject, store, subject.lowered)
    assert f"{key} is {subject.lowered[key]:g} but the run has already trained" in message


def test_classifier_epochs_shape_the_schedule_and_are_refused(tmp_path: Path) -> None:
    subject = SUBJECTS["classifier"]
    store, _ = _saved_store(subject, tmp_path)
    assert "  epochs: 3 -> 4" in _refused(subject, store, {"epochs": 4})


def test_the_record_in_state_json_is_what_the_dag_build_checks(tmp_path: Path) -> None:
    """state.json carries the same record as state.pt: the DAG build refuses from it alone."""
    store, trainer = _saved_store(SUBJECTS["dcgan"], tmp_path)
    record = read_record(store.folder)
    assert record == json.loads(json.dumps(trainer.resume_record()))
    assert record["done"] == 2.0  # epochs
    now = {"settings": {**record["settings"], "ngf": 16}}
    with pytest.raises(ResumeRefused, match="  ngf: 8 -> 16"):
        check_resume(DCGAN_CONTRACT, record, now, store.folder)
    check_resume(DCGAN_CONTRACT, record, {"settings": record["settings"]}, store.folder)
    store.clear()
    assert read_record(store.folder) is None


def test_fingerprint_sees_one_changed_pixel() -> None:
    from cxrlib.jobs.resume import data_fingerprint

    a = _images()
    b = a.copy()
    b[3, 4, 5] ^= 1
    assert data_fingerprint(a) == data_fingerprint(a.copy())
    assert data_fingerprint(a)["sha256"] != data_fingerprint(b)["sha256"]
    assert data_fingerprint(np.asfortranarray(a)) == data_fingerprint(a)


# -- extending a finished run ----------------------------------------------------------------


def _published(out: Path) -> dict[str, Any]:
    """Every published file: snapshots by their generator weights, the rest by bytes."""
    from cxrlib.snapshot import read_snapshot

    files: dict[str, Any] = {}
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        name = str(path.relative_to(out))
        files[name] = read_snapshot(path)["generator"] if path.suffix == ".pt" else None
        if path.suffix == ".png":
            files[name] = path.read_bytes()
    return files


def _same(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert a.keys() == b.keys()
    for name, value in a.items():
        if isinstance(value, dict):  # generator weights, bitwise
            assert all(torch.equal(value[k], b[name][k]) for k in value), name
        elif value is not None:
            assert value == b[name], name


def _extend(train: Callable[..., None], short: Any, long: Any, tmp_path: Path, timing: set[str]):
    """Train `short`, then the same run at `long` as Snakemake does (the outputs deleted
    first), and one uninterrupted `long` run: the results must be the same."""
    import shutil

    import pandas as pd

    out, state = tmp_path / "run/out", tmp_path / "run/state"
    train(short, out, state)
    kept = {p.name: p.stat().st_ino for p in (out / "snapshots").iterdir()}
    shutil.rmtree(out)  # Snakemake removes a job's outputs before it runs the job again
    train(long, out, state)
    train(long, tmp_path / "ref/out", tmp_path / "ref/state")
    _same(_published(out), _published(tmp_path / "ref/out"))
    a = pd.read_csv(out / "train_log.csv").drop(columns=sorted(timing))
    b = pd.read_csv(tmp_path / "ref/out/train_log.csv").drop(columns=sorted(timing))
    pd.testing.assert_frame_equal(a, b)
    # the earlier snapshots are the files of the first run, kept, not computed again
    for name, inode in kept.items():
        if (out / "snapshots" / name).exists():
            assert (out / "snapshots" / name).stat().st_ino == inode, name
    return (state / "events.log").read_text()


def test_dcgan_epochs_raised_after_it_finished_continue_it(tmp_path: Path, caplog) -> None:
    import logging

    from cxrlib.dcgan.trainer import train_dcgan

    def train(settings, out, state):
        train_dcgan(_images(), settings, "tiny", out, state, save_every_s=1e9)

    with caplog.at_level(logging.INFO, logger="cxrlib.jobs.survival"):
        events = _extend(
            train, dcgan_settings({**TINY, "epochs": 2}), dcgan_settings({**TINY, "epochs": 5}),
            tmp_path, {"seconds", "images_per_s"},
        )  # fmt: skip
    assert "resumed at step 10 (epoch 2)" in events
    assert any(r.getMessage().startswith("continuing from epoch 2") for r in caplog.records)


def test_stylegan_total_kimg_raised_after_it_finished_continues_it(tmp_path: Path) -> None:
    def train(settings, out, state):
        sg.train_stylegan2ada(tiny_images(), settings, "tiny", out, state, save_every_s=1e9)

    # 0.04 kimg = 10 steps of 4; ticks of 0.012 kimg leave a partial tick at the end
    events = _extend(
        train, tiny_settings(total_kimg=0.04, tick_kimg=0.012),
        tiny_settings(total_kimg=0.08, tick_kimg=0.012), tmp_path, {"seconds", "s_per_kimg"},
    )  # fmt: skip
    assert "resumed at step 10 (kimg 0.04)" in events


# -- through snakemake: refused at DAG build, extended by a rerun -------------------------


@pytest.mark.slow
def test_workflow_refuses_changed_settings_at_dag_build_and_extends_runs(tmp_path: Path):
    """As users meet it: the GAN runs trained by snakemake; another batch size is refused
    when the DAG is built (a dry run already), before any job, with no retry loop; a higher
    total_kimg / epochs trains on from the finished state, keeping the earlier snapshots."""
    import yaml

    from tests.conftest import copy_workflow, run_snakemake

    workdir = copy_workflow(tmp_path / "wf")
    targets = ("results/dcgan/baseline/train_log.csv", "results/stylegan2ada/ada/train_log.csv")
    config = ("--configfile", "tests/config/test.yaml")
    run_snakemake(workdir, *targets, "--cores", "2", *config)
    snap = workdir / "results/stylegan2ada/ada/snapshots/kimg000000.016.pt"
    inode = snap.stat().st_ino

    def overlay(name: str, section: str, **settings: Any) -> str:
        (workdir / name).write_text(yaml.safe_dump({section: {"settings": settings}}))
        return name

    bigger = overlay("bs8.yaml", "stylegan2ada", batch_size=8)
    refused = run_snakemake(workdir, *targets, "-n", *config, bigger, check=False)
    out = refused.stdout + refused.stderr
    assert refused.returncode != 0
    assert "cannot resume stylegan2ada run ada from results/stylegan2ada/ada/state" in out
    assert "  batch_size: 4 -> 8" in out and "delete results/stylegan2ada/ada/state/" in out
    assert not (workdir / "logs/train_stylegan2ada/ada.log").read_text().count("refused")

    longer = overlay("longer.yaml", "stylegan2ada", total_kimg=0.064)
    run_snakemake(workdir, targets[1], "--cores", "2", *config, longer)
    log = (workdir / "logs/train_stylegan2ada/ada.log").read_text()
    assert "continuing from kimg 0.032" in log
    assert snap.stat().st_ino == inode  # the earlier snapshot kept, not trained again
    names = sorted(p.stem for p in (workdir / "results/stylegan2ada/ada/snapshots").glob("*.pt"))
    assert names == ["kimg000000", "kimg000000.016", "kimg000000.032", "kimg000000.048",
                     "kimg000000.064"]  # fmt: skip

    shorter = overlay("shorter.yaml", "dcgan", epochs=2)
    refused = run_snakemake(workdir, targets[0], "-n", *config, shorter, check=False)
    assert refused.returncode != 0
    assert "epochs is 2 but the run has already trained 4 epochs" in refused.stdout


def test_an_unreadable_state_is_found_without_loading_it(tmp_path: Path) -> None:
    from cxrlib.jobs.resume import state_problem

    store, _ = _saved_store(SUBJECTS["dcgan"], tmp_path)
    assert state_problem(store.folder) is None
    data = store.path.read_bytes()
    store.path.write_bytes(data[: len(data) // 2])  # truncated
    assert "cannot be read" in state_problem(store.folder)
    store.path.write_bytes(data)
    (store.folder / "state.json").write_text("{not json")
    assert "state.json is missing or unreadable" in state_problem(store.folder)
    (store.folder / "state.json").unlink()
    assert "missing or unreadable" in state_problem(store.folder)
    assert state_problem(tmp_path / "nothing") is None
