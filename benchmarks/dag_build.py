"""DAG build time of a large study: `snakemake -n` (dry run) wall time.

    python benchmarks/dag_build.py --repeats 3 --cores 4 [--profile 30] [--cluster-profile]

The study at cluster scale: 5 classifier seeds x 4 ratios x 20 snapshots x 2 models, both
extractors (Inception weights left to the fetch_weights rule), data from a folder in the
Kaggle layout. The workflow is copied into a scratch directory (as tests/conftest.py does) with
a tiny data.root there (one small PNG per split and class: a dry run only needs the folder to
exist) and a config overlay; `python -m snakemake -n --cores N --configfile config.yaml
overlay.yaml` is then run `--repeats` times with this interpreter and PYTHONPATH at the
repository. Prints each run's wall time, `dag_build_s=<median>` and the job count from the
dry run's summary, and for scale the wall time of `python -m snakemake --version` (interpreter
start and snakemake's imports, no workflow). `--profile K` adds one run under cProfile and
prints its K most expensive calls by cumulative time and the calls made in rules/*.smk.
`--cluster-profile` times the dry run users type on the login node instead:
`snakemake --profile slurm -n` with the project's profile installed (`python -m
cxrlib.cluster install`) in a scratch $XDG_CONFIG_HOME.
"""

from __future__ import annotations

import argparse
import os
import pstats
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
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
)
CLASSES = ("NORMAL", "PNEUMONIA")

# 5 seeds x 4 ratios x 20 snapshots x 2 models; the rest as config.yaml has it.
OVERLAY = {
    "data": {"source": "folder", "root": "data/chest_xray"},
    "dcgan": {"settings": {"epochs": 200, "snapshot_every_epochs": 10}},
    "stylegan2ada": {"settings": {"total_kimg": 4000, "snapshot_kimg": 200}},
    "metrics": {"extractors": ["inception", "cxr"], "inception_weights": None},
    "classifier": {
        "seeds": [0, 1, 2, 3, 4],
        "ratios": ["0.25", "0.5", "1.0", "balance"],
        "models": ["dcgan", "stylegan2ada"],
    },
}


def copy_workflow(dest: Path) -> Path:
    """Copy the workflow files (not results, logs or caches) into `dest`."""
    for name in WORKFLOW_FILES:
        src, target = ROOT / name, dest / name
        if src.is_dir():
            shutil.copytree(src, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, target)
    return dest


def make_fake_kaggle_root(root: Path) -> Path:
    """train/ and test/ with one 64 px grayscale PNG per class: enough for the dry run."""
    for split in ("train", "test"):
        for label in CLASSES:
            folder = root / split / label
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((64, 64), 128, dtype=np.uint8)).save(
                folder / "IM-0001-0001.png"
            )
    return root


def setup(workdir: Path) -> Path:
    """The scratch workflow with its data folder and overlay; returns the overlay's path."""
    copy_workflow(workdir)
    make_fake_kaggle_root(workdir / OVERLAY["data"]["root"])
    overlay = workdir / "overlay_large_study.yaml"
    overlay.write_text(yaml.safe_dump(OVERLAY, sort_keys=False))
    return overlay


CLUSTER = False  # --cluster-profile: through `--profile slurm` (set in main)


def snakemake_command(overlay: Path, cores: int) -> list[str]:
    where = ["--profile", "slurm"] if CLUSTER else ["--cores", str(cores)]
    return ["-m", "snakemake", "-n", *where, "--configfile", "config.yaml", overlay.name]


def run_timed(args: list[str], workdir: Path) -> tuple[float, str]:
    """Run `python <args>` in `workdir`; wall seconds and combined output. Fails loudly."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    if CLUSTER:
        env["XDG_CONFIG_HOME"] = str(workdir / "user-config")
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, *args], cwd=workdir, env=env, capture_output=True, text=True, timeout=1800
    )
    seconds = time.perf_counter() - start
    output = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise SystemExit(f"python {' '.join(args)} failed ({proc.returncode}):\n{output[-6000:]}")
    return seconds, output


def job_count(output: str) -> int:
    """The `total` row of the dry run's job stats table."""
    match = re.search(r"^total\s+(\d+)\s*$", output, flags=re.MULTILINE)
    if match is None:
        raise SystemExit(f"no job stats 'total' row in the dry run output:\n{output[-3000:]}")
    return int(match.group(1))


def job_table(output: str) -> str:
    """The dry run's per-rule job counts, as snakemake printed them."""
    match = re.search(r"^Job stats:\n(.*?^total\s+\d+\s*$)", output, flags=re.MULTILINE | re.DOTALL)
    return match.group(1) if match else ""


def profile(overlay: Path, cores: int, workdir: Path, top: int) -> None:
    """One dry run under cProfile: the `top` calls by cumulative time, and rules/*.smk calls."""
    stats_file = workdir / "dag_build.prof"
    seconds, _ = run_timed(
        ["-m", "cProfile", "-o", str(stats_file), *snakemake_command(overlay, cores)], workdir
    )
    print(f"\nprofiled run: {seconds:.2f} s (cProfile overhead included)")
    stats = pstats.Stats(str(stats_file))
    stats.sort_stats("cumulative").print_stats(top)
    print("calls in the workflow's rules (*.smk) by cumulative time:")
    stats.print_stats(r"\.smk", 25)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cores", type=int, default=4)
    parser.add_argument("--profile", type=int, default=0, metavar="K", help="print K top calls")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    parser.add_argument(
        "--cluster-profile", action="store_true", help="dry run as `snakemake --profile slurm -n`"
    )
    args = parser.parse_args()
    global CLUSTER
    CLUSTER = args.cluster_profile

    workdir = Path(tempfile.mkdtemp(prefix="dag_build_"))
    try:
        overlay = setup(workdir)
        if CLUSTER:
            run_timed(["-m", "cxrlib.cluster", "install", "--account", "a", "--partition", "p"],
                      workdir)  # fmt: skip
        print(f"scratch workflow: {workdir}  loadavg_start={os.getloadavg()[0]:.2f}", flush=True)
        startup, _ = run_timed(["-m", "snakemake", "--version"], workdir)
        print(f"snakemake --version: {startup:.2f} s", flush=True)
        times, jobs, output = [], None, ""
        for i in range(args.repeats):
            seconds, output = run_timed(snakemake_command(overlay, args.cores), workdir)
            times.append(seconds)
            jobs = job_count(output)
            print(f"run {i}: {seconds:.2f} s, {jobs} jobs, loadavg {os.getloadavg()[0]:.2f}")
        print(job_table(output))
        print(f"dag_build_s={statistics.median(times):.2f} jobs={jobs}")
        if args.profile:
            profile(overlay, args.cores, workdir, args.profile)
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
