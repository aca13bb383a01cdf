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

from pathlib import Path

RUN_ENV = "CXR_SNAKEMAKE_RUN"  # one id per snakemake invocation
EVENTS_FILE = "events.log"
# What a retry that can only fail asks the scheduler for: minutes, MB. Enough to start the
# job, read events.log and exit with the earlier error.
FUTILE_REQUEST = {"runtime": 5, "mem_mb": 1000}


def failure_line(run_id: str | None, error: str) -> str:
    """The events.log entry of a failure retrying cannot fix, in snakemake run `run_id`."""
    return f"failed in snakemake run {run_id or '-'}: {error}"


def recorded_failure(state_dir: str | Path, run_id: str | None) -> str | None:
    """The error of the failure that ended the last attempt in the run's `state_dir`, when that
    attempt belonged to snakemake run `run_id` and failed for a reason retrying cannot fix;
    None otherwise (no id, no log, or the last event was an interruption or a resume)."""
    if not run_id:
        return None
    events = Path(state_dir) / EVENTS_FILE
    try:
        lines = events.read_text(errors="replace").splitlines()
    except OSError:
        return None
    mark = f" failed in snakemake run {run_id}: "
    if lines and mark in lines[-1]:
        return lines[-1].split(mark, 1)[1]
    return None
