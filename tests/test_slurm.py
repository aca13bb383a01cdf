"""The workflow on a real SLURM (tests/slurm/start.sh): submission, results, job survival.

Skipped where SLURM cannot be started (not root, not Debian); in CI (CI=true) that is a
failure instead, so these tests can never silently vanish there.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from cxrlib.data.cache import load_split
from tests.conftest import ROOT, copy_workflow, run_snakemake
from tests.toy_trainer import ToyTrainer

pytestmark = [pytest.mark.slurm, pytest.mark.slow]
ACCOUNT, PARTITION = "cxr", "debug"


def _slurm_up() -> bool:
    if shutil.which("scontrol") is None:
        return False
    ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True)
    return ping.returncode == 0 and "UP" in ping.stdout


@pytest.fixture(scope="module")
def slurm() -> None:
    """A running SLURM: started by tests/slurm/start.sh if needed (root only)."""
    if _slurm_up():
        return
    reason = "SLURM is not running and cannot be started: not root"
    if os.geteuid() == 0:
        proc = subprocess.run(
            ["bash", str(ROOT / "tests/slurm/start.sh")],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if proc.returncode == 0 and _slurm_up():
            return
        reason = f"tests/slurm/start.sh failed:\n{proc.stderr[-3000:]}"
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


def _cluster_profile(workdir: Path) -> Path:
    """profiles/slurm as a user sets it up: partition and account filled in."""
    text = (ROOT / "profiles/slurm/config.yaml").read_text()
    text = text.replace('# slurm_partition: "<partition>"', f'slurm_partition: "{PARTITION}"')
    text = text.replace('# slurm_account: "<account>"', f'slurm_account: "{ACCOUNT}"')
    assert f'slurm_account: "{ACCOUNT}"' in text, "placeholders in profiles/slurm changed"
    profile = workdir / "cluster_profile"
    profile.mkdir()
    (profile / "config.yaml").write_text(text)
    return profile


# --max-threads: this test node has 2 CPUs; a job asking for more would pend forever.
FAST_STATUS = (
    "--slurm-init-seconds-before-status-checks",
    "1",
    "--slurm-keep-successful-logs",
    "--max-threads",
    "2",
)


# The test node has no GPU: the GPU rules' `gpu` request (profiles/default) is lifted here, so
# they run on its CPUs; everything else is the profile a user runs.
GPU_RULES = (
    "train_dcgan", "train_stylegan2ada", "generate_samples", "real_features", "score_dcgan",
    "score_stylegan", "train_domain_extractor", "train_classifier",
)  # fmt: skip
NO_GPU = ("--set-resources", *(f"{rule}:gpu=0" for rule in GPU_RULES))


def test_whole_study_through_sbatch_matches_a_local_run(slurm, tmp_path: Path) -> None:
    local = copy_workflow(tmp_path / "local")
    remote = copy_workflow(tmp_path / "slurm")
    run_snakemake(local, "--cores", "2", "--configfile", "tests/config/test.yaml")
    profile = _cluster_profile(remote)
    run_snakemake(
        remote,
        "--profile",
        str(profile),
        *FAST_STATUS,
        *NO_GPU,
        "--configfile",
        "tests/config/test.yaml",
    )
    # every job went through sbatch: SLURM's own log of each rule's job is there
    submitted = ("make_phantom", "prepare_data", "train_dcgan", "score_dcgan", "train_classifier")
    for rule in (*submitted, "train_stylegan2ada", "audit_memorisation"):
        assert list((remote / "logs/slurm" / f"rule_{rule}").rglob("*.log")), rule
    for rule in ("data_qc", "dcgan_sweep", "metrics_summary", "compare_classifiers"):
        assert not (remote / "logs/slurm" / f"rule_{rule}").exists(), rule  # local rules
    a, b = local / "results", remote / "results"
    for table in ("manifest.csv", "rejected.csv", "class_counts.csv", "patient_collisions.csv"):
        pd.testing.assert_frame_equal(
            pd.read_csv(a / "data" / table), pd.read_csv(b / "data" / table)
        )
    for split in ("train", "val", "test"):
        x = load_split(a / f"data/cache/{split}.npz")
        y = load_split(b / f"data/cache/{split}.npz")
        assert np.array_equal(x.images, y.images) and np.array_equal(x.paths, y.paths)
    # the models and their scores: same seeds, same numbers, wherever the jobs ran
    for snap in sorted((a / "dcgan/baseline/snapshots").glob("*.pt")):
        x = torch.load(snap, weights_only=True)["generator"]
        y = torch.load(b / "dcgan/baseline/snapshots" / snap.name, weights_only=True)["generator"]
        assert all(torch.equal(x[k], y[k]) for k in x), snap.name
    pd.testing.assert_frame_equal(
        pd.read_csv(a / "metrics/summary.csv"), pd.read_csv(b / "metrics/summary.csv")
    )
    pd.testing.assert_frame_equal(
        pd.read_csv(a / "classifier/summary.csv"), pd.read_csv(b / "classifier/summary.csv")
    )
    # the same headline (the runtimes on the page differ), and the profile's
    # --report-after-run put the page this run just wrote into the report
    assert (b / "report/headline.json").read_text() == (a / "report/headline.json").read_text()
    assert "Headline results" in (b / "report.html").read_text(errors="replace")


def test_training_killed_at_the_time_limit_completes_under_retries(slurm, tmp_path: Path) -> None:
    workdir = tmp_path / "survival"
    workdir.mkdir()
    profile = _cluster_profile(workdir)
    env_root = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "-s",
            str(ROOT / "tests/slurm/survival.smk"),
            "--profile",
            str(profile),
            "--config",
            f"python={sys.executable}",
            *FAST_STATUS,
        ],
        cwd=workdir,
        env=env_root,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    reference = ToyTrainer()
    for _ in range(2000):
        reference.train_step()
    for mode in ("deadline", "killed"):
        weights = torch.load(workdir / f"results/toy/{mode}/weights.pt", weights_only=True)
        assert torch.equal(weights, reference.weights()), mode  # bitwise as uninterrupted
        events = (workdir / f"results/toy/{mode}/state/events.log").read_text()
        resumes = [int(s) for s in re.findall(r"resumed at step (\d+)", events)]
        assert resumes, f"{mode}: the job was never interrupted:\n{events[-2000:]}"
        if mode == "deadline":
            assert "the job's time limit" in events
        else:
            # SIGKILLed: the resume starts at the last timer save, at most one interval
            # (5 s, about 50 steps at 0.1 s a step) behind the last step logged before the kill
            assert "stopped at step" not in events
            before_kill = events[: events.index("resumed at step")]
            last_logged = max(int(s) for s in re.findall(r"pid=\d+ step (\d+)", before_kill))
            assert last_logged - resumes[0] <= 60, (last_logged, resumes[0])
