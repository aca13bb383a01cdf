"""Job survival: a run stopped by a signal and resumed equals an uninterrupted run, bitwise."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from cxrlib.jobs.survival import (
    EXIT_INTERRUPTED,
    JobInterrupted,
    NoProgressError,
    StateStore,
    StopFlag,
    run_resumable,
    slurm_job_end_time,
)
from tests.conftest import ROOT
from tests.toy_trainer import ToyTrainer


def _uninterrupted(steps: int) -> torch.Tensor:
    trainer = ToyTrainer()
    for _ in range(steps):
        trainer.train_step()
    return trainer.weights()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGUSR1])
def test_signal_saves_state_and_resume_is_bitwise_identical(tmp_path: Path, signum) -> None:
    store = StateStore(tmp_path / "state")

    def kill_at_17(trainer: ToyTrainer, _metrics: dict[str, float]) -> None:
        if trainer.step == 17:
            os.kill(os.getpid(), signum)

    with pytest.raises(JobInterrupted) as info:
        run_resumable(ToyTrainer(), 50, store, on_step=kill_at_17)
    assert info.value.code == EXIT_INTERRUPTED and info.value.step == 17
    assert store.load()["step"] == 17

    resumed = ToyTrainer()
    assert run_resumable(resumed, 50, store) is True
    assert resumed.step == 50
    assert torch.equal(resumed.weights(), _uninterrupted(50))


def test_timer_saves_periodically_and_a_kill_loses_at_most_one_interval(tmp_path: Path) -> None:
    ticks = iter(range(10_000))
    store = StateStore(tmp_path / "state")
    saved_steps: list[int] = []
    original_save = store.save

    def recording_save(state, step):
        saved_steps.append(step)
        original_save(state, step)

    store.save = recording_save  # type: ignore[method-assign]
    run_resumable(ToyTrainer(), 30, store, save_every_s=10, clock=lambda: float(next(ticks)))
    # the fake clock advances 1 s per call and is read once per step after the start
    assert saved_steps and all(
        b - a <= 10 for a, b in zip([0, *saved_steps], saved_steps, strict=False)
    )


def test_previous_signal_handlers_come_back() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with StopFlag() as flag:
        os.kill(os.getpid(), signal.SIGUSR1)
        assert flag.requested and flag.received == "SIGUSR1"
    assert signal.getsignal(signal.SIGTERM) is before


def test_unreadable_state_names_the_folder_to_delete(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state")
    store.folder.mkdir()
    store.path.write_bytes(b"not a checkpoint")
    with pytest.raises(RuntimeError, match="delete the folder"):
        store.load()


def test_real_process_killed_by_sigterm_resumes_to_the_same_result(tmp_path: Path) -> None:
    """A separate process, SIGTERM from outside (as SLURM sends it), then a restart."""
    state, out = tmp_path / "state", tmp_path / "weights.pt"
    cmd = [
        sys.executable,
        "-m",
        "tests.toy_trainer",
        "--state",
        str(state),
        "--out",
        str(out),
        "--steps",
        "120",
        "--sleep",
        "0.02",
        "--save-every-s",
        "0.5",
    ]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    progress = state / "progress.txt"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        text = progress.read_text() if progress.exists() else ""
        if text and int(text) >= 20:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == EXIT_INTERRUPTED, err
    assert "received SIGTERM" in err
    stopped_at = torch.load(state / "state.pt", weights_only=True)["step"]
    assert 20 <= stopped_at < 120 and not out.exists()

    again = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert f"resumed from {state / 'state.pt'} at step {stopped_at}" in again.stderr
    assert torch.equal(torch.load(out, weights_only=True), _uninterrupted(120))


def test_deadline_stops_before_the_time_limit_and_resume_is_exact(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state")
    now = [1000.0]

    def tick(trainer: ToyTrainer, _m: dict[str, float]) -> None:
        now[0] += 1.0  # each step takes one second of wall clock

    with pytest.raises(JobInterrupted) as info:
        run_resumable(
            ToyTrainer(),
            50,
            store,
            on_step=tick,
            deadline=1030.0,
            stop_margin_s=10.0,
            wall=lambda: now[0],
        )
    assert info.value.step == 20 and "time limit" in str(info.value)
    resumed = ToyTrainer()
    run_resumable(resumed, 50, store)
    assert torch.equal(resumed.weights(), _uninterrupted(50))


def test_default_margin_is_a_quarter_of_the_time_left_within_20_to_120_s(tmp_path: Path) -> None:
    def stop_step(left: float) -> int:
        store = StateStore(tmp_path / f"state{left}")
        now = [0.0]

        def tick(trainer: ToyTrainer, _m: dict[str, float]) -> None:
            now[0] += 1.0

        with pytest.raises(JobInterrupted) as info:
            run_resumable(
                ToyTrainer(), 10_000, store, on_step=tick, deadline=left, wall=lambda: now[0]
            )
        return info.value.step

    assert stop_step(60.0) == 40  # 25% would be 15 s: at least 20
    assert stop_step(200.0) == 150  # 50 s
    assert stop_step(600.0) == 480  # 150 s would be more than 120 s


def test_an_attempt_that_cannot_make_one_step_fails_plainly(tmp_path: Path) -> None:
    """Retrying an attempt whose time is gone before its first step would loop forever."""
    store = StateStore(tmp_path / "state")
    trainer = ToyTrainer()
    for _ in range(5):
        trainer.train_step()
    store.save(trainer.state_dict(), trainer.step)
    with pytest.raises(NoProgressError, match="Raise the rule's runtime"):
        run_resumable(
            ToyTrainer(), 50, store, deadline=1010.0, stop_margin_s=30.0, wall=lambda: 1000.0
        )
    assert store.load()["step"] == 5  # the state is left as it was
    assert "no progress at step 5" in (store.folder / "events.log").read_text()


def test_slurm_end_time_is_read_from_squeue(tmp_path: Path) -> None:
    fake = tmp_path / "squeue"
    fake.write_text("#!/bin/sh\necho 2030-01-02T03:04:05\n")
    fake.chmod(0o755)
    end = slurm_job_end_time({"SLURM_JOB_ID": "42"}, squeue=str(fake))
    assert time.localtime(end)[:6] == (2030, 1, 2, 3, 4, 5)
    assert slurm_job_end_time({}, squeue=str(fake)) is None
    broken = tmp_path / "broken"
    broken.write_text("#!/bin/sh\necho Unknown\n")
    broken.chmod(0o755)
    assert slurm_job_end_time({"SLURM_JOB_ID": "42"}, squeue=str(broken)) is None


def test_a_retry_never_repeats_a_failure_it_cannot_fix(tmp_path: Path) -> None:
    """The training rules retry many times (for time limits): any other failure is recorded
    and the next attempt of the same snakemake run stops at once with it; an interruption is
    retried; a new snakemake run tries again."""
    from cxrlib.jobs.survival import RepeatedFailure, attempt_guard

    state = tmp_path / "state"
    with pytest.raises(ValueError, match="bad data"), attempt_guard(state, "run1"):
        raise ValueError("bad data\nsecond line")
    assert (
        "failed in snakemake run run1: ValueError: bad data" in (state / "events.log").read_text()
    )
    ran = []
    with pytest.raises(RepeatedFailure, match="ValueError: bad data"), attempt_guard(state, "run1"):
        ran.append(True)
    assert not ran  # before any work
    with attempt_guard(state, "run2"):  # the user runs snakemake again
        ran.append(True)
    assert ran
    with pytest.raises(JobInterrupted), attempt_guard(state, "run2"):
        raise JobInterrupted("SIGTERM", 3)
    with attempt_guard(state, "run2"):  # an interruption is what retries are for
        pass
