"""benchmarks/gpu_check.py --tiny runs every GPU stage's checks on the CPU and reports them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

STAGES = (
    "dcgan",
    "stylegan2ada",
    "classifier",
    "score/inception",
    "score/cxr",
    "generate/stylegan2ada",
    "generate/dcgan",
)
TRAINED = ("dcgan", "stylegan2ada", "classifier")
UNITS = {"stylegan2ada": "s/kimg"}


def _run(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_tiny_check_passes_every_stage_on_the_cpu(tmp_path: Path) -> None:
    out = tmp_path / "check.json"
    proc = _run("--tiny", "--device", "cpu", "--threads", "1", "--out", str(out))
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-6000:]
    report = json.loads(out.read_text())
    rows = {r["stage"]: r for r in report["rows"]}
    assert tuple(rows) == STAGES
    for stage, row in rows.items():
        assert row["status"] == "ok", row
        assert row["snapshot"].startswith("ok"), row
        assert row["value"] > 0 and row["unit"] == UNITS.get(stage, "img/s"), row
        assert row["peak MiB"] == "-", row  # no GPU memory figure on a CPU
        if stage in TRAINED:
            assert row["finite"] == "ok" and row["resume"] == "ok (bitwise)", row
            assert row["losses"] != "-", row
    assert rows["score/inception"]["finite"] == "ok"
    assert "skipped" not in rows["score/inception"]["note"]
    # The printed table: environment above it, one line per stage, the verdict last.
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("python ") and "torch " in lines[0] and "cuDNN" in lines[0]
    assert any(line.startswith("TF32: ") for line in lines)
    header = next(i for i, line in enumerate(lines) if line.startswith("stage "))
    assert [line.split(" | ")[0].strip() for line in lines[header + 2 : header + 9]] == list(STAGES)
    assert lines[-1].endswith("all ok")


@pytest.mark.slow
def test_full_check_refuses_a_cpu() -> None:
    proc = _run("--device", "cpu")
    assert proc.returncode == 2
    assert "--tiny" in proc.stderr and "GPU" in proc.stderr


def test_cuda_speed_settings_are_set_for_gpu_jobs() -> None:
    """configure_cuda (called by setup_torch on CUDA and by gpu_check) turns TF32 and the
    cuDNN autotuner on; the flags are plain settings, so this runs without a GPU."""
    import torch

    from cxrlib.device import configure_cuda

    before = (
        torch.backends.cuda.matmul.allow_tf32,
        torch.backends.cudnn.allow_tf32,
        torch.backends.cudnn.benchmark,
    )
    try:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.benchmark = False
        assert configure_cuda() == {
            "tf32_matmul": True, "tf32_cudnn": True, "cudnn_benchmark": True,
        }  # fmt: skip
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.benchmark
    finally:
        (
            torch.backends.cuda.matmul.allow_tf32,
            torch.backends.cudnn.allow_tf32,
            torch.backends.cudnn.benchmark,
        ) = before
