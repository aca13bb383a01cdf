"""The data-parallel launcher the training script uses: 2 gloo processes on the CPU train a whole
StyleGAN2-ADA run, publish its files once, and match a single process up to float order."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from cxrlib.train import stylegan2ada as tr
from cxrlib.train.distributed import launch, usable_gpus
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
