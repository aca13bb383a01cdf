"""Shared test helpers: the repository root and a runner for snakemake in a scratch copy."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

# Two pytest-xdist workers share 2 cores with the SLURM jobs: OpenMP threads that spin while
# waiting then slow torch 2-3 fold whenever another process is busy (measured: Inception
# features 2.2 s idle, 5.9 s beside one busy process; 4.3 s with PASSIVE). Inherited by the
# snakemake runs and their jobs, SLURM's included (sbatch exports the environment).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

ROOT = Path(__file__).resolve().parents[1]
# What a workflow run needs from the checkout; copied so tests never write into the repo.
WORKFLOW_FILES = (
    "Snakefile",
    "config.yaml",
    "rules",
    "scripts",
    "schemas",
    "profiles",
    "report",
    "envs",
    "overlays",
    "tests/config",
)


def copy_workflow(dest: Path) -> Path:
    """Copy the workflow (not results or caches) into `dest` and return it."""
    for name in WORKFLOW_FILES:
        src = ROOT / name
        target = dest / name
        if src.is_dir():
            shutil.copytree(src, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)
    return dest


def run_snakemake(
    workdir: Path,
    *args: str,
    check: bool = True,
    env: dict[str, str] | None = None,
    timeout: float = 900,
) -> subprocess.CompletedProcess:
    """Run snakemake from this interpreter's environment in `workdir`; output captured.

    `env`: variables added to the environment (e.g. XDG_CONFIG_HOME for a user's profiles).
    """
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", *args],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        pytest.fail(
            f"snakemake {' '.join(args)} failed ({proc.returncode}):\n"
            f"{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}"
        )
    return proc


@pytest.fixture
def workflow_copy(tmp_path: Path) -> Path:
    """A scratch copy of the workflow to run snakemake in."""
    return copy_workflow(tmp_path / "wf")


@pytest.fixture(scope="session")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The whole study at test scale (tests/config/test.yaml), run once per session by
    `snakemake --cores 2`: tests/test_workflow.py reads its results, tests/test_slurm.py
    compares the same study run through sbatch with it. Tests only read it (and dry-run).

    Under pytest-xdist the workers share one run: the first to ask runs it under a file lock
    in the session's common temp folder, the others wait for it and read the same folder."""
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # pytest-of-<user>/pytest-N/, above each worker's popen-gwN/
    workdir = shared / "study" / "wf"
    with (shared / "study.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not (shared / "study.done").exists():
            shutil.rmtree(workdir.parent, ignore_errors=True)  # a run that did not finish
            copy_workflow(workdir)
            # about 60 jobs: ~4 minutes on 2 free cores, more on a shared machine
            run_snakemake(
                workdir, "--cores", "2", "--configfile", "tests/config/test.yaml", timeout=2400
            )
            (shared / "study.done").touch()
    return workdir


# Collected first, in this order: under xdist (--dist loadfile) one worker starts on the SLURM
# file, the longest unit of work and mostly waiting on the scheduler, while the other starts
# on the files that need the shared local study, so it is ready before the SLURM file's
# comparison with it (its last test) asks.
_FIRST = ("test_slurm.py", "test_inputs.py", "test_workflow.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The SLURM file, then the files that use the shared study, then the rest (stable)."""
    items.sort(key=lambda item: _FIRST.index(item.path.name) if item.path.name in _FIRST else 3)


def pytest_report_header(config: pytest.Config) -> list[str]:
    """Free disk where the tests write: a full disk shows up as many unrelated errors."""
    lines = []
    for label, path in (("checkout", ROOT), ("temp", Path(tempfile.gettempdir()))):
        free_gib = shutil.disk_usage(path).free / 2**30
        warn = "  (low: the suite needs about 2 GiB)" if free_gib < 2 else ""
        lines.append(f"free disk, {label} {path}: {free_gib:.1f} GiB{warn}")
    return lines
