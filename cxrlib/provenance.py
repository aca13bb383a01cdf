"""Provenance: what produced a result, written beside it.

A number in a paper must be traceable to the code, the settings and the library versions that
made it; results trees get copied around without their logs, so the record sits next to the
output as `<output>.provenance.json` (or any path the rule names).
"""

from __future__ import annotations

import platform
import socket
import subprocess
import time
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from cxrlib.io import write_json

TRACKED_PACKAGES: tuple[str, ...] = (
    "torch",
    "torchvision",
    "torch-fidelity",
    "snakemake",
    "numpy",
    "pillow",
    "cxrlib",
)
CHECKOUT = Path(__file__).resolve().parents[1]


def git_commit(repo: Path = CHECKOUT) -> str:
    """The checkout's commit, with "-dirty" when tracked files differ; "unknown" outside git."""

    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=30
        )

    try:
        head = git("rev-parse", "HEAD")
        if head.returncode != 0:
            return "unknown"
        dirty = git("status", "--porcelain", "--untracked-files=no").stdout.strip()
        return head.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def package_versions(names: tuple[str, ...] = TRACKED_PACKAGES) -> dict[str, str]:
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def provenance(config: Mapping[str, Any], seed: int | None = None) -> dict[str, Any]:
    """The record: config section, seed, git commit, versions, host and time."""
    return {
        "config": dict(config),
        "seed": seed,
        "git_commit": git_commit(),
        "versions": {"python": platform.python_version(), **package_versions()},
        "host": socket.gethostname(),
        "created_unix": time.time(),
    }


def write_provenance(
    target: str | Path, config: Mapping[str, Any], seed: int | None = None
) -> None:
    """Write `provenance(config, seed)` as JSON to `target`, atomically."""
    write_json(provenance(config, seed), target)
