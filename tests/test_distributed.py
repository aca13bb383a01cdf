"""The data-parallel launcher the training script uses: 2 gloo processes on the CPU train a whole
StyleGAN2-ADA run, publish its files once, and match a single process up to float order."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from cxrlib.jobs.distributed import launch, usable_gpus
from cxrlib.stylegan2ada import trainer as tr
from tests.test_stylegan2 import tiny_images

pytestmark = pytest.mark.slow

SETTINGS = dict(
    resolution=32, channel_base=512, channel_max=32, z_dim=32, w_dim=32, batch_size=8,
    mbstd_group=4, r1_interval=2, pl_interval=2, augment="off", total_kimg=0.032,
    snapshot_kimg=0.016, grid_size=4, seed=3,
)  # fmt: skip


def _run(tmp_path: Path, world: int) -> Path:
    out, state = tmp_path / f"out{world}", tmp_path / f"state{world}"
    resolved = asdict(tr.stylegan_settings(SETTINGS))
    torch.set_num_threads(1)
    launch(
        tr.train_worker, world, state, tiny_images(), resolved, "dp", out, state, "cpu", None,
        backend="gloo",
    )  # fmt: skip
    return out


def test_two_processes_publish_one_run_equal_to_a_single_process(tmp_path: Path) -> None:
    one, two = _run(tmp_path, 1), _run(tmp_path, 2)
    names = sorted(p.name for p in (one / "snapshots").glob("*.pt"))
    assert names == sorted(p.name for p in (two / "snapshots").glob("*.pt"))
    assert len(names) == 3
    for name in names:
        a = torch.load(one / "snapshots" / name, weights_only=True)["generator"]
        b = torch.load(two / "snapshots" / name, weights_only=True)["generator"]
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=1e-3, atol=1e-4, msg=key)
    assert (two / "train_log.csv").is_file()


def test_more_gpus_than_visible_falls_back_to_one_process() -> None:
    assert usable_gpus(0) == 1 and usable_gpus(1) == 1
    if not torch.cuda.is_available():
        assert usable_gpus(4) == 1


def _toy(tmp_path: Path, name: str, **kwargs) -> tuple[Path, Path]:
    from tests.toy_trainer import distributed_toy_worker

    state, out = tmp_path / name / "state", tmp_path / name / "out"
    out.mkdir(parents=True, exist_ok=True)
    spec = {"total_steps": 12, "stop_rank": -1, "stop_at_step": 0, "how": "signal",
            "stop_check_every": 1, **kwargs}  # fmt: skip
    launch(
        distributed_toy_worker, 2, state, str(state), str(out), *spec.values(),
        backend="gloo", timeout_s=30,
    )  # fmt: skip
    return state, out


@pytest.mark.parametrize(("how", "every", "stops_at"), [("signal", 1, 5), ("deadline", 4, 8)])
def test_one_process_stopping_stops_all_after_the_same_step_and_resume_finishes(
    tmp_path: Path, how: str, every: int, stops_at: int
) -> None:
    """Only the second process gets the signal (or sees the deadline) after step 5: both stop
    after the same step (the next check: every `every` steps), the first saves the state, the
    launcher exits 75 (JobInterrupted); rerun, the run finishes equal to an uninterrupted one.
    Without the collective decision the first process would wait in the gradient all-reduce
    until the 30 s collective timeout, and launch would raise that error instead."""
    from cxrlib.jobs.survival import JobInterrupted, StateStore

    with pytest.raises(JobInterrupted) as stop:
        _toy(tmp_path, "run", stop_rank=1, stop_at_step=5, how=how, stop_check_every=every)
    assert stop.value.step == stops_at and stop.value.code == 75
    expected_reason = "a stop signal to another process" if how == "signal" else "time limit"
    assert expected_reason in stop.value.signame
    state, out = tmp_path / "run" / "state", tmp_path / "run" / "out"
    assert StateStore(state).load()["step"] == stops_at and not (out / "weights.pt").exists()
    _toy(tmp_path, "run", stop_check_every=every)  # the rerun: nobody stops
    _, plain = _toy(tmp_path, "plain")
    torch.testing.assert_close(
        torch.load(out / "weights.pt"), torch.load(plain / "weights.pt"), rtol=0, atol=0
    )
