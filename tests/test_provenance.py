"""Provenance records name the code, config, seed and library versions."""

import json
from pathlib import Path

from cxrlib.provenance import git_commit, write_provenance


def test_record_has_commit_config_seed_and_versions(tmp_path: Path) -> None:
    target = tmp_path / "x.provenance.json"
    write_provenance(target, {"lr": 2e-4, "epochs": 200}, seed=7)
    record = json.loads(target.read_text())
    assert record["config"] == {"lr": 2e-4, "epochs": 200} and record["seed"] == 7
    for package in ("torch", "torchvision", "torch-fidelity", "snakemake"):
        assert record["versions"][package][0].isdigit(), package
    assert record["git_commit"] == git_commit()


def test_commit_is_unknown_outside_git(tmp_path: Path) -> None:
    assert git_commit(tmp_path) == "unknown"


def test_commit_of_a_repository(tmp_path: Path) -> None:
    import subprocess

    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "f").write_text("a")
    git("add", "f")
    git("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "x")
    commit = git_commit(tmp_path)
    assert len(commit) == 40
    (tmp_path / "f").write_text("b")
    assert git_commit(tmp_path) == commit + "-dirty"
