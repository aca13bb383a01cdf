"""Atomic file writes.

A SLURM job can be killed at any instant; a reader (the next job, a resumed run, Snakemake's
output check) must never see half a file. Every writer here writes a temporary file in the
target's folder and renames it into place, which is atomic on POSIX file systems.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


@contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `target`; rename it onto `target` if the block succeeds."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    # mkstemp creates 0600; give the file the permissions a plain open() would (shared results).
    os.chmod(tmp, 0o666 & ~_UMASK)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_failure(target: str | Path, exc: BaseException, need_bytes: int = 0) -> str:
    """Why a file could not be written, in words, with the room left on its file system: a
    full disk shows as OSError(ENOSPC) from plain writes, but as a RuntimeError from
    torch.save ("unexpected pos", "iostream error"), which this names as what it is."""
    folder = Path(target).parent
    try:
        free = f"{shutil.disk_usage(folder).free / 2**20:,.0f} MB free"
    except OSError:
        free = "free space unknown"
    need = f", about {need_bytes / 2**20:,.0f} MB needed" if need_bytes else ""
    reason = getattr(exc, "strerror", None) or str(exc).splitlines()[0]
    return f"cannot write {target} ({reason}; {free} there{need})"


def publish_file(src: str | Path, target: str | Path) -> None:
    """Put `src` at `target` atomically as a hard link (no second copy on disk), or as a copy
    where links are impossible (another file system).

    Trainers publish their snapshots this way from the undeclared state folder into the
    declared outputs: Snakemake deletes the outputs before it reruns a job (e.g. to extend a
    run), and the state folder's links keep the files.
    """
    src, target = Path(src), Path(target)
    if not src.is_file():
        raise FileNotFoundError(
            f"{src} is missing from the state folder; delete the state folder {src.parent.parent}"
            " to train the run again"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.link")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, target)


def write_atomic(target: str | Path, write: Callable[[Path], Any]) -> None:
    """Call `write(tmp_path)` and move the result onto `target` atomically."""
    with atomic_path(target) as tmp:
        write(tmp)


def write_csv(frame: pd.DataFrame, target: str | Path) -> None:
    """Write a frame as CSV (no index) atomically."""
    write_atomic(target, lambda tmp: frame.to_csv(tmp, index=False))


def write_json(obj: Any, target: str | Path) -> None:
    """Write JSON (sorted keys, indented, trailing newline) atomically."""
    write_atomic(
        target, lambda tmp: tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
    )


def write_npz(target: str | Path, **arrays: np.ndarray) -> None:
    """Write an uncompressed .npz atomically (uncompressed: loaded in one read, no inflate)."""

    def _save(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)

    write_atomic(target, _save)
