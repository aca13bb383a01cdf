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
import yaml

from cxrlib.cluster import load_rule_requests
from cxrlib.data.cache import load_split
from tests.conftest import ROOT, copy_workflow, run_snakemake
from tests.toy_trainer import ToyTrainer

# One file, so one xdist worker (--dist loadfile): these tests share the test cluster's 2 CPUs
# and run one after another while the other worker runs the rest of the suite.
pytestmark = [pytest.mark.slurm, pytest.mark.slow]
# The test cluster's defaults are partition debug and account cxr (tests/slurm/start.sh): the
# studies below ask for the others, so a lost -p or -A shows in sacct.
ACCOUNT, PARTITION = "cxrstudy", "gpu"
DEFAULT_ACCOUNT, DEFAULT_PARTITION = "cxr", "debug"
REQUESTS = load_rule_requests(ROOT / "profiles/default/resources.yaml")
# The test node has 2 CPUs and ~21 GB: a job asking for more is refused at submission, so the
# user's profile lowers the big requests, as it would on a cluster of small nodes.
SMALL_NODE = {
    "train_stylegan2ada": {"mem_mb": 6000},
    "train_classifier": {"mem_mb": 6000},
    "train_domain_extractor": {"mem_mb": 6000},
}


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


def _user(tmp_path: Path) -> dict[str, str]:
    """A user's environment with their own (empty) config folders: what `--profile slurm`
    finds there is what the test put there, never this machine's."""
    home, site = tmp_path / "user-config", tmp_path / "site-config"
    home.mkdir(exist_ok=True)
    site.mkdir(exist_ok=True)
    return {"XDG_CONFIG_HOME": str(home), "XDG_CONFIG_DIRS": str(site)}


def _install_project_profile(env: dict[str, str]) -> str:
    """`make cluster-profile ACCOUNT=... PARTITION=...` as a user runs it (its command)."""
    proc = subprocess.run(
        [sys.executable, "-m", "cxrlib.cluster", "install",
         "--account", ACCOUNT, "--partition", PARTITION],
        env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=True,
    )  # fmt: skip
    return proc.stdout


def _site_profile(env: dict[str, str], extra: dict | None = None) -> Path:
    """A profile named slurm the user already has, as sites write them."""
    profile = {
        "executor": "slurm",
        "jobs": 4,
        "retries": 0,
        "latency-wait": 10,
        "default-resources": {
            "slurm_account": ACCOUNT,
            "slurm_partition": PARTITION,
            "qos": "normal",
        },
        "set-resources": SMALL_NODE,
        **(extra or {}),
    }
    path = Path(env["XDG_CONFIG_HOME"]) / "snakemake/slurm/config.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(yaml.safe_dump(profile))
    return path


# The plugin's first status check after 1 s (not 40), SLURM's own log of every job kept (it
# names the job's rule), and --max-threads: this test node has 2 CPUs.
FAST_STATUS = (
    "--slurm-init-seconds-before-status-checks",
    "1",
    "--slurm-keep-successful-logs",
    "--max-threads",
    "2",
)


def _minutes(limit: str) -> int:
    """sacct's Timelimit ([D-]HH:MM:SS) in minutes."""
    days, _, clock = limit.rpartition("-")
    h, m, sec = (int(x) for x in clock.split(":"))
    return int(days or 0) * 1440 + h * 60 + m + (sec > 0)


def _mem_mb(value: str) -> int:
    units = {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024**2}
    return round(float(value[:-1]) * units[value[-1]])


def submitted(workdir: Path) -> pd.DataFrame:
    """Every job the run submitted, as sacct records it, with its rule (from the path of
    SLURM's log of the job, <slurm-logdir>/rule_<rule>/.../<jobid>.log: logs/slurm in the
    project's profile, the plugin's .snakemake/slurm_logs in a site's)."""
    rules = {}
    for folder in (workdir / "logs/slurm", workdir / ".snakemake/slurm_logs"):
        for log in folder.rglob("*.log"):
            rules[log.stem] = log.relative_to(folder).parts[0].removeprefix("rule_")
    assert rules, "no job went through sbatch"
    fields = "JobID,Partition,Account,QOS,ReqTRES,Timelimit,State"
    out = subprocess.run(
        ["sacct", "-X", "-P", "-n", "-j", ",".join(rules), "-o", fields],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    rows = []
    for line in out.splitlines():
        job, partition, account, qos, tres, limit, state = line.split("|")
        req = dict(item.split("=", 1) for item in tres.split(",") if "=" in item)
        rows.append({
            "job": job, "rule": rules[job], "partition": partition, "account": account,
            "qos": qos, "cpus": int(req["cpu"]), "mem_mb": _mem_mb(req["mem"]),
            "gpus": int(req.get("gres/gpu", 0)), "runtime": _minutes(limit), "state": state,
        })  # fmt: skip
    assert {r["job"] for r in rows} == set(rules), "sacct lacks jobs the run submitted"
    return pd.DataFrame(rows)


def assert_requests(jobs: pd.DataFrame, overrides: dict | None = None) -> None:
    """Every job got the configured partition and account, and its rule's CPUs (threads,
    at most the node's 2), memory, time and GPUs: profiles/default/resources.yaml, refined key
    by key by the user's profile (`overrides`: its set-resources)."""
    for job in jobs.itertuples():
        want = {**REQUESTS.resources(job.rule), **(overrides or {}).get(job.rule, {})}
        got = {"partition": job.partition, "account": job.account, "cpus": job.cpus,
               "mem_mb": job.mem_mb, "runtime": job.runtime, "gpus": job.gpus}  # fmt: skip
        assert got == {
            "partition": PARTITION,
            "account": ACCOUNT,
            "cpus": min(REQUESTS.threads(job.rule), 2),
            "mem_mb": want["mem_mb"],
            "runtime": want["runtime"],
            "gpus": want.get("gpu", 0),
        }, (job.rule, job.job)


# The study's first stages: data (CPU jobs) and a GPU training job.
FIRST_STAGES = ("results/data/qc/examples.png", "results/dcgan/baseline/train_log.csv")


def test_profile_slurm_as_typed_with_the_projects_profile(slurm, tmp_path: Path) -> None:
    """No profile of the user's own: `make cluster-profile` installs the project's, and
    `snakemake --profile slurm` (dry run first, as the README says) submits with it."""
    workdir = copy_workflow(tmp_path / "wf")
    env = _user(tmp_path)
    assert "installed the cluster profile" in _install_project_profile(env)
    dry = run_snakemake(
        workdir, "--profile", "slurm", "-n", *FIRST_STAGES, "--configfile",
        "tests/config/test.yaml", env=env,
    )  # fmt: skip
    assert "train_dcgan" in dry.stdout + dry.stderr and "dry-run" in dry.stdout + dry.stderr
    assert not (workdir / "results").exists() and not (workdir / "logs/slurm").exists()
    run_snakemake(
        workdir, "--profile", "slurm", *FIRST_STAGES, *FAST_STATUS,
        "--configfile", "tests/config/test.yaml", env=env,
    )  # fmt: skip
    jobs = submitted(workdir)
    assert sorted(jobs["rule"]) == ["make_phantom", "prepare_data", "train_dcgan"]
    assert (jobs["state"] == "COMPLETED").all()
    assert_requests(jobs)
    assert jobs.set_index("rule").loc["train_dcgan", "gpus"] == 1


def test_profile_slurm_as_typed_with_the_users_own_profile(slurm, tmp_path: Path) -> None:
    """The user's (or site's) `slurm` profile is kept and read: its account, partition and
    qos reach sbatch, its set-resources refine single keys, and the project's per-rule
    threads, memory, runtime and GPUs still apply to everything else."""
    workdir = copy_workflow(tmp_path / "wf")
    env = _user(tmp_path)
    overrides = {"prepare_data": {"mem_mb": 3000}, "train_dcgan": {"runtime": 7}}
    path = _site_profile(env, {"set-resources": overrides})
    before = path.read_text()
    assert f"kept your existing profile {path}" in _install_project_profile(env)
    assert path.read_text() == before
    dry = run_snakemake(  # the whole study
        workdir, "--profile", "slurm", "-n", "--configfile", "tests/config/test.yaml", env=env
    )
    assert "This was a dry-run" in dry.stdout + dry.stderr
    assert not (workdir / "results/report.html").exists()
    run_snakemake(
        workdir, "--profile", "slurm", *FIRST_STAGES, *FAST_STATUS,
        "--configfile", "tests/config/test.yaml", env=env,
    )  # fmt: skip
    jobs = submitted(workdir)
    assert sorted(jobs["rule"]) == ["make_phantom", "prepare_data", "train_dcgan"]
    assert (jobs["qos"] == "normal").all() and (jobs["state"] == "COMPLETED").all()
    assert_requests(jobs, overrides)
    dcgan = jobs.set_index("rule").loc["train_dcgan"]
    assert (dcgan["runtime"], dcgan["mem_mb"], dcgan["gpus"]) == (7, 16000, 1)


def test_dry_run_of_the_project_profile_by_path_exits_0(tmp_path: Path) -> None:
    """`snakemake --profile profiles/slurm -n` (the profile by its path) on config.yaml as
    the study is configured (data.root set to a data folder, empty here) lists the jobs and
    exits 0, and writes no report (nothing ran)."""
    workdir = copy_workflow(tmp_path / "wf")
    for split in ("train", "test"):
        for label in ("NORMAL", "PNEUMONIA"):
            (workdir / "data/chest_xray" / split / label).mkdir(parents=True)
    dry = run_snakemake(workdir, "--profile", "profiles/slurm", "-n", env=_user(tmp_path))
    assert "train_stylegan2ada" in dry.stdout + dry.stderr
    assert not (workdir / "results").exists()


def test_trainings_outlive_their_time_limits(slurm, tmp_path: Path) -> None:
    """Two trainings with 2-minute time limits, through sbatch at the same time (one CPU each):

    - a DCGAN whose 2,000 epochs span several limits, under a profile with retries: 0: the
      training rule's own retries (profiles/default/resources.yaml) resubmit it, each attempt
      reads its end time from SLURM and stops before its limit with the state saved, and the
      next one continues, until it is done, in one snakemake run;
    - a toy trainer that ignores its end time (tests/slurm/survival.smk), so SLURM ends it
      (SIGTERM, then SIGKILL): it resumes from its last timer save, and its final weights are
      bitwise those of an uninterrupted run.
    """
    toy = tmp_path / "survival"
    toy.mkdir()
    toy_env = _user(toy)
    _site_profile(toy_env, {"retries": 3})
    toy_run = subprocess.Popen(
        [sys.executable, "-m", "snakemake", "-s", str(ROOT / "tests/slurm/survival.smk"),
         "--profile", "slurm", "--config", f"python={sys.executable}", *FAST_STATUS],
        cwd=toy, env={**os.environ, "PYTHONPATH": str(ROOT), **toy_env},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        _dcgan_across_time_limits(tmp_path)
        out, _ = toy_run.communicate(timeout=900)
    finally:
        toy_run.kill()
    assert toy_run.returncode == 0, out[-6000:]
    reference = ToyTrainer()
    for _ in range(2000):
        reference.train_step()
    weights = torch.load(toy / "results/toy/killed/weights.pt", weights_only=True)
    assert torch.equal(weights, reference.weights())  # bitwise as uninterrupted
    events = (toy / "results/toy/killed/state/events.log").read_text()
    resumes = [int(s) for s in re.findall(r"resumed at step (\d+)", events)]
    assert resumes, f"the job was never interrupted:\n{events[-2000:]}"
    # SIGKILLed: the resume starts at the last timer save, at most one interval (5 s, about
    # 50 steps at 0.1 s a step) behind the last step logged before the kill
    assert "stopped at step" not in events
    before_kill = events[: events.index("resumed at step")]
    last_logged = max(int(s) for s in re.findall(r"pid=\d+ step (\d+)", before_kill))
    assert last_logged - resumes[0] <= 60, (last_logged, resumes[0])


def _dcgan_across_time_limits(tmp_path: Path) -> None:
    """The DCGAN half of test_trainings_outlive_their_time_limits (its data prepared locally
    first: the test is about the training jobs)."""
    workdir = copy_workflow(tmp_path / "wf")
    # 2,000 epochs: 2-3 minutes of training on one idle CPU of this machine (600 took 50 s),
    # so more than one 2-minute attempt however fast the machine is, and more when loaded
    settings = {"image_size": 64, "ngf": 32, "ndf": 32, "nz": 64, "epochs": 2000,
                "snapshot_every_epochs": 500}  # fmt: skip
    (workdir / "long.yaml").write_text(yaml.safe_dump({"dcgan": {"settings": settings}}))
    config = ("--configfile", "tests/config/test.yaml", "long.yaml")
    run_snakemake(workdir, "--cores", "1", "results/data/cache/train.npz", *config)
    env = _user(tmp_path)
    # runtime 2 minutes; 4 GB: the test node's memory leaves room for the toy job beside it
    small = {"train_dcgan": {"runtime": 2, "mem_mb": 4000}}
    _site_profile(env, {"set-resources": small, "set-threads": {"train_dcgan": 1}})
    run_snakemake(
        workdir, "--profile", "slurm", "results/dcgan/baseline/train_log.csv", *FAST_STATUS,
        *config, env=env, timeout=1800,
    )  # fmt: skip
    jobs = submitted(workdir)
    training = jobs[jobs["rule"] == "train_dcgan"]
    assert len(training) >= 2, "one attempt was enough: the test proves nothing"
    assert (training["runtime"] == 2).all() and (training["partition"] == PARTITION).all()
    assert (training["mem_mb"] == 4000).all() and (training["account"] == ACCOUNT).all()
    assert training["state"].iloc[-1] == "COMPLETED"
    assert (training["state"].iloc[:-1] == "FAILED").all()  # stopped itself, exit 75: no TIMEOUT
    events = (workdir / "results/dcgan/baseline/state/events.log").read_text()
    # one attempt per job: the job step itself never retries past its limit
    assert "no progress" not in events
    assert events.count("the job's time limit") == len(training) - 1
    assert events.count("resumed at step") == len(training) - 1
    log = pd.read_csv(workdir / "results/dcgan/baseline/train_log.csv")
    assert log["epoch"].tolist() == list(range(1, 2001))


def test_a_failure_no_retry_can_fix_is_resubmitted_small(slurm, tmp_path: Path) -> None:
    """A training split that cannot be read (truncated after the data stage wrote it), a
    failure no retry can fix that only the job can find: snakemake still resubmits the job
    (the rule's own retries), but each retry fails at once and asks SLURM for 5 minutes and
    1000 MB, not for another job of the first attempt's 4 hours and 16 GB."""
    workdir = copy_workflow(tmp_path / "wf")
    resources = workdir / "profiles/default/resources.yaml"
    many = "  train_dcgan:\n    retries: 20\n"
    assert many in resources.read_text()
    resources.write_text(resources.read_text().replace(many, "  train_dcgan:\n    retries: 2\n"))
    config = ("--configfile", "tests/config/test.yaml")
    run_snakemake(workdir, "--cores", "2", "results/data/cache/train.npz", *config)
    cache = workdir / "results/data/cache/train.npz"
    cache.write_bytes(cache.read_bytes()[:1000])  # newer than its inputs: not rebuilt
    state = workdir / "results/dcgan/baseline/state"
    env = _user(tmp_path)
    _site_profile(env)
    proc = run_snakemake(
        workdir, "--profile", "slurm", "results/dcgan/baseline/train_log.csv", *FAST_STATUS,
        *config, env=env, check=False, timeout=900,
    )  # fmt: skip
    assert proc.returncode != 0
    training = submitted(workdir).query("rule == 'train_dcgan'")
    assert len(training) == 3 and (training["state"] == "FAILED").all(), training
    assert (training["partition"] == PARTITION).all() and (training["account"] == ACCOUNT).all()
    first, retries = training.iloc[0], training.iloc[1:]
    assert (first["runtime"], first["mem_mb"]) == (240, 16000)
    assert (retries["runtime"] == 5).all() and (retries["mem_mb"] == 1000).all(), training
    out = proc.stdout + proc.stderr
    assert out.count("failed in this snakemake run for a reason a retry cannot fix") == 1
    events = (state / "events.log").read_text()
    assert events.count("failed in snakemake run") == 1
    assert "train.npz cannot be read" in events and "rerun the prepare_data rule" in events


# Last in the file: by the time it runs, the other xdist worker has usually finished the local
# study it compares with (tests/conftest.py `study`), so this worker does not run it too.
def test_whole_study_through_sbatch_matches_a_local_run(slurm, study: Path, tmp_path: Path) -> None:
    """The study through sbatch gives the local run's results (`study`, tests/conftest.py:
    the same config run with --cores 2, shared with tests/test_workflow.py)."""
    local = study
    remote = copy_workflow(tmp_path / "slurm")
    env = _user(tmp_path)
    _site_profile(env)
    run_snakemake(
        remote, "--profile", "slurm", *FAST_STATUS, "--configfile", "tests/config/test.yaml",
        env=env, timeout=1800,
    )  # fmt: skip
    jobs = submitted(remote)
    assert (jobs["state"] == "COMPLETED").all()
    assert_requests(jobs, SMALL_NODE)
    # every job but the local rules' went through sbatch
    rules = set(jobs["rule"])
    for rule in ("make_phantom", "prepare_data", "train_dcgan", "score_snapshot",
                 "train_classifier", "train_stylegan2ada", "audit_memorisation"):  # fmt: skip
        assert rule in rules, rule
    assert not rules & {"data_qc", "dcgan_sweep", "metrics_summary", "compare_classifiers"}
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
    # the same headline (the runtimes on the page differ), and the report written after the
    # run (config report.after_run) shows the page this run just wrote
    assert (b / "report/headline.json").read_text() == (a / "report/headline.json").read_text()
    assert "Headline results" in (b / "report.html").read_text(errors="replace")
