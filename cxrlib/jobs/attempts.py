"""Which attempts of a training job are worth making: the record of a failure that retrying
cannot fix, read by the job itself (`cxrlib.jobs.survival.attempt_guard`) and by the workflow
when it submits a retry (cxrlib.plan.requests). Torch-free: the workflow reads it in the
scheduling snakemake, for every retry it submits.

A training attempt that fails for any reason but a stop at a time limit or a signal (a refused
resume, an unreadable state, a crash, no progress within the time limit) appends
`... failed in snakemake run <id>: <error>` to the run's `state/events.log`, where `<id>` is
the snakemake invocation's (`$CXR_SNAKEMAKE_RUN`, set once per snakemake call by
cxrlib.plan.requests.ensure_run_id and inherited by every job, on SLURM too). Snakemake
resubmits a failed job whatever the reason; a retry of the same invocation that finds such a
line last fails at once, and the workflow submits it with the smallest request
(FUTILE_REQUEST) instead of another day-long GPU job. Running snakemake again (a new id)
always tries afresh.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

RUN_ENV = "CXR_SNAKEMAKE_RUN"  # one id per snakemake invocation
EVENTS_FILE = "events.log"
# What a retry that can only fail asks the scheduler for: minutes, MB. Enough to start the
# job, read events.log and exit with the earlier error.
FUTILE_REQUEST = {"runtime": 5, "mem_mb": 1000}


def failure_line(run_id: str | None, error: str) -> str:
    """The events.log entry of a failure retrying cannot fix, in snakemake run `run_id`."""
    return f"failed in snakemake run {run_id or '-'}: {error}"


def fallback_record(state_dir: str | Path) -> Path:
    """Where a failure is recorded when the run's own folder cannot be written (its disk is
    full: exactly the failure to record): a file per run folder under the user's cache
    ($XDG_CACHE_HOME, default ~/.cache), on clusters a home directory the login node and the
    compute nodes share, and rarely on the file system that filled up."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    key = hashlib.sha256(str(Path(state_dir).resolve()).encode()).hexdigest()[:16]
    return cache / "cxr-workflow" / "failures" / f"{key}.log"


def record_failure(state_dir: str | Path, line: str) -> Path:
    """Append `line` (a `failure_line`, time-stamped) to the run's events.log, or, when that
    cannot be written (a full or read-only disk), to its `fallback_record`. Returns the file
    written; OSError when neither can be."""
    stamped = f"{time.strftime('%Y-%m-%dT%H:%M:%S')} pid={os.getpid()} {line}\n"
    for path in (Path(state_dir) / EVENTS_FILE, fallback_record(state_dir)):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a") as fh:
                fh.write(stamped)
            return path
        except OSError as exc:
            error = exc
    raise error


def _last_failure(path: Path, run_id: str) -> str | None:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return None
    mark = f" failed in snakemake run {run_id}: "
    if lines and mark in lines[-1]:
        return lines[-1].split(mark, 1)[1]
    return None


def recorded_failure(state_dir: str | Path, run_id: str | None) -> str | None:
    """The error of the failure that ended the last attempt in the run's `state_dir`, when that
    attempt belonged to snakemake run `run_id` and failed for a reason retrying cannot fix;
    None otherwise (no id, no log, or the last event was an interruption or a resume). The
    run's events.log is read first, then its `fallback_record` (a failure recorded while the
    run's disk was full)."""
    if not run_id:
        return None
    return _last_failure(Path(state_dir) / EVENTS_FILE, run_id) or _last_failure(
        fallback_record(state_dir), run_id
    )
