"""The cluster side users meet: per-rule requests (profiles/default/resources.yaml), the
profiles that `snakemake --profile slurm` combines, and the `slurm` profile installer."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cxrlib.cluster import find_profile, install_profile, load_rule_requests
from tests.conftest import ROOT, copy_workflow, run_snakemake

REQUESTS = load_rule_requests(ROOT / "profiles/default/resources.yaml")

RESOURCES = ROOT / "profiles/default/resources.yaml"
GPU_RULES = {
    "train_dcgan", "train_stylegan2ada", "generate_samples", "real_features",
    "score_snapshot", "train_domain_extractor", "train_classifier",
}  # fmt: skip
TRAINING = {
    "train_dcgan", "train_stylegan2ada", "train_generator", "train_domain_extractor",
    "train_classifier",
}  # fmt: skip


def test_the_projects_requests_per_rule() -> None:
    requests = load_rule_requests(RESOURCES)
    for rule in GPU_RULES:
        assert requests.resources(rule)["gpu"] == 1, rule
    assert "gpu" not in requests.resources("prepare_data")
    # every rule gets memory and a time limit, named or by default
    for rule in ("data_qc", "headline", *GPU_RULES):
        assert requests.resources(rule)["mem_mb"] >= 1000 and requests.resources(rule)["runtime"]
    # training spans many time limits; other rules take the profile's retries
    assert {r for r in requests.rules if requests.retries(r)} == TRAINING
    assert requests.retries("prepare_data") is None
    assert "retries" not in requests.resources("train_dcgan")
    assert requests.threads("prepare_data") == 8 and requests.threads("data_qc") == 1


def test_the_workflow_profile_sets_nothing_a_users_profile_would_lose() -> None:
    """Snakemake takes a key set by both profiles from the workflow profile whole: so it sets
    no resources, threads, executor or retries (those stay the user's)."""
    keys = set(yaml.safe_load((ROOT / "profiles/default/config.yaml").read_text()))
    assert not keys & {"default-resources", "set-resources", "set-threads", "executor",
                       "retries", "jobs", "resources"}  # fmt: skip


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("rules: {prepare_data: {mem_mb: lots}}", "rules.prepare_data.mem_mb must be an integer"),
        ("rules: {train_dcgan: {gpu: -1}}", "rules.train_dcgan.gpu must be an integer >= 0"),
        ("default: {threads: 0}", "default.threads must be an integer >= 1"),
        ("set-resources: {}", "unknown top-level key(s) set-resources"),
        ("rules: [a, b]", "rules must map rule names"),
    ],
)
def test_bad_requests_name_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "resources.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=str(path)) as info:
        load_rule_requests(path)
    assert message in str(info.value)


def _dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path, Path]:
    home, site, cwd = tmp_path / "home", tmp_path / "site", tmp_path / "project"
    for d in (home, site, cwd):
        d.mkdir()
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_DIRS", str(site))
    return home, site, cwd


def test_install_writes_the_project_profile_with_account_and_partition(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home, _, cwd = _dirs(tmp_path, monkeypatch)
    assert find_profile(cwd=cwd) is None
    template = ROOT / "profiles/slurm/config.yaml"
    path, written = install_profile(template, account="proj42", partition="a100", cwd=cwd)
    assert written and path == home / "snakemake/slurm/config.yaml"
    assert find_profile(cwd=cwd) == path
    profile = yaml.safe_load(path.read_text())
    assert profile["executor"] == "slurm" and profile["slurm-logdir"] == "logs/slurm"
    assert profile["default-resources"] == {"slurm_account": "proj42", "slurm_partition": "a100"}
    # without values the placeholders stay comments: the cluster's defaults apply
    path.unlink()
    install_profile(template, cwd=cwd)
    assert yaml.safe_load(path.read_text())["default-resources"] is None


@pytest.mark.parametrize("where", ["home", "site"])
def test_install_never_shadows_an_existing_profile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    home, site, cwd = _dirs(tmp_path, monkeypatch)
    theirs = {"home": home, "site": site}[where] / "snakemake/slurm/config.yaml"
    theirs.parent.mkdir(parents=True)
    theirs.write_text("executor: slurm\ndefault-resources: {slurm_account: theirs}\n")
    path, written = install_profile(ROOT / "profiles/slurm/config.yaml", account="x", cwd=cwd)
    assert (path, written) == (theirs, False)
    assert "theirs" in theirs.read_text() and not (home / "snakemake/slurm/x").exists()
    if where == "site":
        assert not (home / "snakemake").exists()  # a user copy would hide the site's


def test_a_users_profile_refines_the_rules_requests_key_by_key(tmp_path: Path) -> None:
    """The layering as snakemake itself applies it (a dry run prints each job's resources):
    the user's default-resources fill keys, their set-resources override single keys of single
    rules, and the workflow's per-rule values stay where neither names them."""
    workdir = copy_workflow(tmp_path / "wf")
    home = tmp_path / "home"
    (home / "snakemake/slurm").mkdir(parents=True)
    profile = {
        "cores": 2,
        "default-resources": {"slurm_account": "acct9", "mem_mb": 1234},
        "set-resources": {"train_dcgan": {"runtime": 7}},
    }
    (home / "snakemake/slurm/config.yaml").write_text(yaml.safe_dump(profile))
    dry = run_snakemake(
        workdir, "--profile", "slurm", "-n", "results/dcgan/baseline/train_log.csv",
        "--configfile", "tests/config/test.yaml", env={"XDG_CONFIG_HOME": str(home)},
    )  # fmt: skip
    out = dry.stdout + dry.stderr
    jobs = {}
    rule = None
    for line in out.splitlines():
        if line.startswith("rule "):
            rule = line.removeprefix("rule ").rstrip(":")
        elif line.strip().startswith("resources:"):
            items = line.split("resources:", 1)[1].split(", ")
            jobs[rule] = dict(item.split("=", 1) for item in items)
    dcgan, data = jobs["train_dcgan"], jobs["prepare_data"]
    assert (dcgan["runtime"], dcgan["mem_mb"], dcgan["gpu"]) == ("7", "16000", "1")
    assert (data["runtime"], data["mem_mb"]) == ("60", "8000")
    assert dcgan["slurm_account"] == data["slurm_account"] == "acct9"
    assert jobs["make_phantom"]["mem_mb"] == "4000"


def test_a_resources_file_naming_an_unknown_rule_fails_the_dag_build(tmp_path: Path) -> None:
    workdir = copy_workflow(tmp_path / "wf")
    path = workdir / "profiles/default/resources.yaml"
    path.write_text(path.read_text().replace("  train_dcgan:\n", "  train_dcgna:\n", 1))
    proc = run_snakemake(workdir, "-n", "--configfile", "tests/config/test.yaml", check=False)
    assert proc.returncode != 0
    assert "names rule(s) the workflow does not have: train_dcgna" in proc.stdout + proc.stderr


def test_show_names_the_file_and_what_reaches_sbatch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from cxrlib.cluster import main

    home, _, cwd = _dirs(tmp_path, monkeypatch)
    monkeypatch.chdir(cwd)
    assert main(["show"]) == 1
    assert "make cluster-profile" in capsys.readouterr().out
    path = home / "snakemake/slurm/config.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(yaml.safe_dump({
        "executor": "slurm",
        "default-resources": ["slurm_account=lab7", "qos=long"],
        "set-threads": {"prepare_data": 4},
        "set-resources": {"train_stylegan2ada": {"gpu_model": "a100"}},
    }))  # fmt: skip
    assert main(["show"]) == 0
    out = capsys.readouterr().out
    for line in (f"reads {path}", "executor: slurm", "slurm_account: lab7", "qos: long",
                 "slurm_partition: (not set", "set-threads prepare_data: 4",
                 "set-resources train_stylegan2ada: {'gpu_model': 'a100'}"):  # fmt: skip
        assert line in out, line


def test_profiles_are_found_where_snakemake_finds_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from cxrlib.cluster import ProfileShadowed, main

    home, _, cwd = _dirs(tmp_path, monkeypatch)
    versioned = home / "snakemake/slurm/config.v8+.yaml"  # only a versioned file
    versioned.parent.mkdir(parents=True)
    versioned.write_text("executor: slurm\n")
    assert find_profile(cwd=cwd) == versioned
    assert install_profile(ROOT / "profiles/slurm/config.yaml", cwd=cwd) == (versioned, False)
    # a folder `slurm` in the working directory is the only place snakemake then looks
    (cwd / "slurm").mkdir()
    with pytest.raises(ProfileShadowed, match=r"holds no config\.yaml"):
        find_profile(cwd=cwd)
    monkeypatch.chdir(cwd)
    assert main(["install"]) == 1
    assert "looks only at it" in capsys.readouterr().err
    (cwd / "slurm").rmdir()
    (cwd / "slurm").write_text("#!/bin/bash\n#SBATCH -A foo\n")  # a script, not a profile
    assert main(["show"]) == 0
    assert "is not a profile" in capsys.readouterr().out


def test_mem_mb_per_cpu_warning_only_where_a_profile_sets_it(tmp_path: Path) -> None:
    """The installed project profile (make cluster-profile) sets no mem_mb_per_cpu, so its
    dry run says nothing of it (snakemake lists the key with the value None); a profile that
    sets it is warned, with its value."""
    workdir = copy_workflow(tmp_path / "wf")
    home = tmp_path / "home"
    env = {"XDG_CONFIG_HOME": str(home)}
    subprocess.run(
        [sys.executable, "-m", "cxrlib.cluster", "install", "--account", "a1", "--partition", "p1"],
        env={**os.environ, **env, "PYTHONPATH": str(ROOT)}, check=True, capture_output=True,
    )  # fmt: skip
    args = ("--profile", "slurm", "-n", "results/data/cache/train.npz",
            "--configfile", "tests/config/test.yaml")  # fmt: skip
    dry = run_snakemake(workdir, *args, env=env)
    assert "default-resources mem_mb_per_cpu" not in dry.stdout + dry.stderr
    profile = home / "snakemake/slurm/config.yaml"
    account = '  slurm_account: "a1"\n'
    profile.write_text(profile.read_text().replace(account, account + "  mem_mb_per_cpu: 3000\n"))
    dry = run_snakemake(workdir, *args, env=env)
    assert "mem_mb_per_cpu (3000) replaces every rule's mem_mb" in dry.stdout + dry.stderr


def test_gpu_partition_sends_only_the_gpu_rules_there(tmp_path: Path) -> None:
    """`make cluster-profile ACCOUNT=a1 PARTITION=cpu1 GPU_PARTITION=gpu1` as snakemake then
    reads it (the dry run's resources): GPU rules to gpu1, every other job to cpu1."""
    workdir = copy_workflow(tmp_path / "wf")
    home = tmp_path / "home"
    env = {"XDG_CONFIG_HOME": str(home)}
    subprocess.run(
        # -o: the install step counts as done; BIN: this interpreter's environment
        ["make", "-s", "-C", str(ROOT), "-o", ".venv/.installed", "cluster-profile",
         "ACCOUNT=a1", "PARTITION=cpu1", "GPU_PARTITION=gpu1",
         f"BIN={Path(sys.executable).parent}"],
        env={**os.environ, **env}, check=True, capture_output=True, text=True,
    )  # fmt: skip
    profile = yaml.safe_load((home / "snakemake/slurm/config.yaml").read_text())
    gpu = {r for r in REQUESTS.rules if REQUESTS.resources(r).get("gpu", 0) > 0}
    # train_generator: the requests of a generator's training rule without its own, no rule
    assert set(profile["set-resources"]) == gpu - {"train_generator"}
    assert "train_stylegan2ada" in gpu
    dry = run_snakemake(
        workdir, "--profile", "slurm", "-n", "results/dcgan/baseline/train_log.csv",
        "--configfile", "tests/config/test.yaml", env=env,
    )  # fmt: skip
    partitions = {}
    rule = None
    for line in (dry.stdout + dry.stderr).splitlines():
        if line.startswith("rule "):
            rule = line.removeprefix("rule ").rstrip(":")
        elif "slurm_partition=" in line:
            partitions[rule] = line.split("slurm_partition=", 1)[1].split(",")[0]
    assert partitions["train_dcgan"] == "gpu1"
    assert partitions["prepare_data"] == partitions["make_phantom"] == "cpu1"


@pytest.mark.parametrize("name", ["my account", "acct;rm -rf x", "p\nq", "'gpu'"])
def test_names_sbatch_cannot_take_are_refused_before_a_profile_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    home, _, cwd = _dirs(tmp_path, monkeypatch)
    with pytest.raises(ValueError, match="names hold letters, digits and"):
        install_profile(ROOT / "profiles/slurm/config.yaml", account="ok", partition=name, cwd=cwd)
    assert not (home / "snakemake").exists()


def test_show_warns_of_a_second_set_resources_that_erases_the_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """The small-node lines of docs/cluster.md pasted below the GPU_PARTITION block of the installed
    profile: the later `set-resources:` replaces the earlier one, which `show` says."""
    from cxrlib.cluster import main

    _home, _, cwd = _dirs(tmp_path, monkeypatch)
    monkeypatch.chdir(cwd)
    path, _ = install_profile(
        ROOT / "profiles/slurm/config.yaml", account="a1", partition="cpu", gpu_partition="gpu"
    )
    path.write_text(path.read_text() + "set-resources:\n  train_classifier: {mem_mb: 20000}\n")
    assert main(["show"]) == 0
    out = capsys.readouterr().out
    assert "WARNING: set-resources appears 2 times" in out and "merge them" in out
