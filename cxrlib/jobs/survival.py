"""Training jobs that survive SLURM: resume state saved on a timer and on signals.

A cluster job can end at any moment: its time limit (SLURM sends SIGTERM, then SIGKILL after
KillWait), a `--signal` warning shortly before (SIGUSR1 here), preemption, a node failure.
Snakemake deletes a failed job's declared outputs, so resume state lives in an undeclared folder
(`results/<model>/<run>/state/`) that survives the failure. `--retries` starts the job again, it
finds the state and carries on; the finished run equals an uninterrupted one (bitwise on CPU
when the trainer keeps all its randomness in the state, as ours do).

Signals alone are not enough under Snakemake's SLURM executor: SLURM signals only a job step's
main process, which there is the inner `snakemake` of the job-step wrapper, not the rule's
Python (measured on the real SLURM of tests/slurm: the rule got no SIGTERM, only SIGKILL 30 s
after the limit; `--signal` killed the wrapper itself). So a job also reads its own end time
from SLURM (`squeue -o %e`) and stops cleanly a margin before it.

The pieces:
- `StopFlag`: turns SIGTERM/SIGUSR1 into a flag the loop checks between steps (never stop in
  the middle of an optimiser update: that state could not be resumed exactly);
- `slurm_job_end_time`: the unix time at which SLURM will end this job (None outside SLURM);
- `StateStore`: atomic `torch.save` of the state dict, loaded with `weights_only=True`;
- `run_resumable`: the loop that ties them to any `Resumable` trainer. In a data-parallel run
  (torch.distributed initialised, several processes) the stop decision is collective: every
  `stop_check_every` steps the processes all-reduce (max) "a signal arrived" and "the deadline
  is near", so all stop after the same step even when only one got the signal or read the
  clock a moment later; none is left waiting in a collective until SLURM kills the job.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

import torch
import torch.distributed as dist

from cxrlib.io import atomic_path, write_failure, write_json
from cxrlib.jobs.attempts import RUN_ENV, failure_line, record_failure, recorded_failure
from cxrlib.jobs.resume import RECORD_FILE, ResumeContract, check_resume, read_record

log = logging.getLogger(__name__)

# Exit status of a job that stopped on a signal after saving its state: EX_TEMPFAIL, "try
# again later". Non-zero, so Snakemake counts the attempt as failed and --retries resubmits.
EXIT_INTERRUPTED = 75
DEFAULT_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)
STATE_FILE = "state.pt"


class JobInterrupted(SystemExit):
    """Raised after the state was saved because a stop signal arrived; exits with 75."""

    def __init__(self, signame: str, step: int):
        super().__init__(EXIT_INTERRUPTED)
        self.signame = signame
        self.step = step

    def __str__(self) -> str:
        return f"stopped by {self.signame} at step {self.step}; state saved, rerun to resume"


class StateNotSaved(RuntimeError):
    """The resume state cannot be written (a full or read-only disk): the message says where,
    how much it needs and the fix. Retrying cannot help until space is freed."""


def state_bytes(state: Any) -> int:
    """Bytes of the tensors in a (nested) state dict: about the size of its saved file."""
    if isinstance(state, torch.Tensor):
        return state.numel() * state.element_size()
    if isinstance(state, dict):
        return sum(state_bytes(v) for v in state.values())
    if isinstance(state, list | tuple):
        return sum(state_bytes(v) for v in state)
    return 0


class RepeatedFailure(RuntimeError):
    """A retry of an attempt that failed for a reason retrying cannot change."""


@contextlib.contextmanager
def attempt_guard(state_dir: str | Path, run_id: str | None = None) -> Iterator[None]:
    """One attempt of a training job.

    Only a stop at a time limit or a signal (JobInterrupted) is worth another attempt: any
    other failure (a refused resume, an unreadable state, a crash) is written to the run's
    events.log with the id of the snakemake invocation (`run_id`, default: $CXR_SNAKEMAKE_RUN,
    inherited by every job of that invocation), and a retry within the same invocation that
    finds it there fails at once, before any work, repeating the message (the training rules
    retry many times, for time limits). Running snakemake again always tries afresh.
    """
    run_id = run_id if run_id is not None else os.environ.get(RUN_ENV)
    earlier = recorded_failure(state_dir, run_id)
    if earlier is not None:
        raise RepeatedFailure(
            f"not repeating this run's earlier failure ({earlier}); fix it, then run "
            "snakemake again"
        )
    try:
        yield
    except JobInterrupted:
        raise
    except Exception as exc:
        first = str(exc).splitlines()[0] if str(exc) else ""
        line = failure_line(run_id, f"{type(exc).__name__}: {first}")
        try:
            written = record_failure(state_dir, line)
        except OSError as unwritable:
            log.error("could not record this failure anywhere (%s): %s", unwritable, line)
        else:
            if written.parent != Path(state_dir):
                log.error(
                    "the run's folder %s cannot be written: this failure is recorded in %s",
                    state_dir, written,
                )  # fmt: skip
        raise


class NoProgressError(RuntimeError):
    """An attempt reached its time limit before a single step: retrying cannot help."""


class StopFlag:
    """Context manager: SIGTERM/SIGUSR1/SIGINT set a flag instead of killing the process.

    The previous handlers come back on exit. Only the main thread may install handlers, which
    is where training loops run.
    """

    def __init__(self, signals: Iterable[signal.Signals] = DEFAULT_SIGNALS):
        self._signals = tuple(signals)
        self._previous: dict[signal.Signals, Any] = {}
        self.received: str | None = None

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.received is None:
            # The log line is the evidence, in a SLURM log, that the signal reached Python.
            log.warning("received %s: will save state and stop after the current step", name)
        self.received = name

    def __enter__(self) -> StopFlag:
        for sig in self._signals:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    @property
    def requested(self) -> bool:
        return self.received is not None


class StateStore:
    """The resume state of one training run, in `folder/state.pt` (+ a readable state.json)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.path = self.folder / STATE_FILE

    def exists(self) -> bool:
        return self.path.is_file()

    def load(self) -> dict[str, Any] | None:
        """The saved state, or None when the run has not saved one yet."""
        if not self.exists():
            return None
        try:
            return torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as exc:  # a state that cannot be read must not be silently ignored
            raise RuntimeError(
                f"cannot load resume state {self.path} ({exc}); delete the folder "
                f"{self.folder} to restart this run from scratch"
            ) from exc

    def save(self, state: dict[str, Any], step: int) -> None:
        """Write the state atomically: a kill, or a disk filling up, during the write leaves the
        previous one intact (the half-written temporary file is removed).

        `state.json` beside it says when, and carries the state's resume record (its
        "resume" entry, see cxrlib.jobs.resume) for the DAG build to read without torch.
        Raises StateNotSaved (the reason and the fix) when the file system refuses the write.
        """
        try:
            with atomic_path(self.path) as tmp:
                torch.save(state, tmp)
        except (OSError, RuntimeError) as exc:  # torch.save reports a full disk as either
            raise StateNotSaved(self._cannot_save(exc, state_bytes(state))) from exc
        write_json(
            {
                "step": step,
                "saved_at_unix": time.time(),
                "pid": os.getpid(),
                "resume": state.get("resume"),
            },
            self.folder / RECORD_FILE,
        )

    def check_room(self, state: dict[str, Any]) -> None:
        """StateNotSaved at once when the folder cannot hold one more copy of `state` (it is
        written beside the previous one, then renamed): training that could never save its
        state would be lost whole at the first time limit."""
        self.folder.mkdir(parents=True, exist_ok=True)
        need = state_bytes(state)
        free = shutil.disk_usage(self.folder).free
        if free < need * 1.1 + 16 * 2**20:
            raise StateNotSaved(self._cannot_save(OSError("not enough room"), need))

    def _cannot_save(self, exc: BaseException, need: int) -> str:
        return (
            f"cannot save the resume state: {write_failure(self.path, exc, need)}. Free space "
            "there or point results/ at a larger file system, then run snakemake again (the "
            "last good state, if any, is kept)"
        )

    def record_of_state(self) -> dict[str, Any] | None:
        """The saved state's resume record, from state.json (None: no state saved)."""
        return read_record(self.folder)

    def record(self, event: str) -> None:
        """Append a line to `events.log`: the run's history of resumes and interruptions.

        The job's own log is replaced on each attempt; this file keeps every attempt's story.
        """
        self.folder.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        with open(self.folder / "events.log", "a") as fh:
            fh.write(f"{stamp} pid={os.getpid()} {event}\n")

    def clear(self) -> None:
        """Remove the state (after the final outputs are written)."""
        self.path.unlink(missing_ok=True)
        (self.folder / RECORD_FILE).unlink(missing_ok=True)


def slurm_job_end_time(env: dict[str, str] | None = None, squeue: str = "squeue") -> float | None:
    """Unix time at which SLURM ends the current job (start + time limit), or None.

    None outside a SLURM job, for jobs without a limit, or when squeue cannot answer (then the
    timer saves and any signal that does arrive are what remain).
    """
    env = dict(os.environ) if env is None else env
    job_id = env.get("SLURM_JOB_ID")
    if not job_id:
        return None
    try:
        out = subprocess.run(
            [squeue, "-h", "-j", job_id, "-o", "%e"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout.strip()
        # squeue prints local time, ISO-like: 2026-11-25T12:00:00
        return time.mktime(time.strptime(out.splitlines()[0], "%Y-%m-%dT%H:%M:%S"))
    except (OSError, subprocess.SubprocessError, ValueError, IndexError) as exc:
        log.warning("cannot read the end time of SLURM job %s (%s); relying on saves", job_id, exc)
        return None


class Resumable(Protocol):
    """What `run_resumable` needs from a trainer.

    Trainers of the workflow also have `resume_contract` (a cxrlib.jobs.resume
    ResumeContract) and `resume_record()` (their settings, data fingerprint and progress, also
    stored as the "resume" entry of `state_dict()`): `run_resumable` then refuses a saved
    state that the contract does not allow to continue, before any step.
    """

    step: int  # completed steps; the loop runs until step == total_steps

    def train_step(self) -> dict[str, float]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def check_resumed_state(trainer: Any, state: dict[str, Any], folder: Path) -> str:
    """Apply the trainer's resume contract to a saved state (ResumeRefused if not allowed);
    returns where the run continues from, in words ("epoch 12", "kimg 4.096")."""
    contract: ResumeContract | None = getattr(trainer, "resume_contract", None)
    if contract is None:
        return f"step {state.get('step')}"
    saved = state.get("resume") or {"settings": state.get("settings", {}), "data": None}
    check_resume(contract, saved, trainer.resume_record(), folder)
    unit = contract.unit.removesuffix("s")
    return f"{unit} {float(saved.get('done') or 0.0):g}"


def _world_size() -> int:
    """Processes of this run: torch.distributed's world size, 1 when not initialised."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def agree_to_stop(signalled: bool, out_of_time: bool) -> tuple[bool, bool]:
    """(any process signalled, any process out of time): one all-reduce (max) over the run.

    A collective: every process of the group must call it at the same step. On NCCL the
    flags travel as a CUDA tensor on the process's current device (gloo: the CPU); reading
    the result back is the one host sync of the check.
    """
    device = "cpu"
    if dist.get_backend() == "nccl":
        device = f"cuda:{torch.cuda.current_device()}"
    flags = torch.tensor([int(signalled), int(out_of_time)], dtype=torch.int32, device=device)
    dist.all_reduce(flags, op=dist.ReduceOp.MAX)
    any_signalled, any_out_of_time = (bool(v) for v in flags.tolist())
    return any_signalled, any_out_of_time


def run_resumable(
    trainer: Resumable,
    total_steps: int,
    store: StateStore,
    *,
    save_every_s: float = 600.0,
    on_step: Callable[[Resumable, dict[str, float]], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    deadline: float | None = None,
    stop_margin_s: float | None = None,
    wall: Callable[[], float] = time.time,
    stop_check_every: int = 1,
) -> bool:
    """Train until `trainer.step == total_steps`, resuming from `store` and saving into it.

    State is saved every `save_every_s` seconds of wall clock, and when a stop signal arrives or
    the wall clock (`wall`, unix time) passes `deadline - stop_margin_s` (use
    `slurm_job_end_time()`; the margin defaults to a quarter of the time left at the start,
    between 20 and 120 s); then `JobInterrupted` is raised, exit status 75, and the log says
    where the run will continue. An attempt stopped before it made a single step raises
    `NoProgressError` instead: more attempts of that length would never finish. At most one
    save interval of work is lost to a SIGKILL. `on_step` runs after every step (logging,
    snapshots); it must keep any state it needs in the trainer, so a resumed run repeats
    nothing and skips nothing.
    Data parallel (torch.distributed initialised with world size > 1): the stop decision is
    taken together (`agree_to_stop`) at every step where `(step - first step) %
    stop_check_every == 0` (the same steps in every process), so every process stops after
    the same step; between checks no process waits for the others (no host sync per step
    on GPUs when `stop_check_every` > 1). One process alone checks at every step.
    Returns True when this call resumed from a saved state.
    """
    if stop_check_every < 1:
        raise ValueError(f"stop_check_every must be >= 1, got {stop_check_every}")
    together = _world_size() > 1
    if stop_margin_s is None:
        left = (deadline - wall()) if deadline is not None else 0.0
        stop_margin_s = min(120.0, max(20.0, 0.25 * left))
    state = store.load()
    resumed = state is not None
    if resumed:
        try:
            where = check_resumed_state(trainer, state, store.folder)
        except ValueError as exc:
            store.record(f"refused to resume: {str(exc).splitlines()[0]}")
            raise
        trainer.load_state_dict(state)
        log.info(
            "continuing from %s (resumed from %s at step %d of %d)",
            where, store.path, trainer.step, total_steps,
        )  # fmt: skip
        store.record(f"resumed at step {trainer.step} ({where})")
    store.check_room(trainer.state_dict())
    first_step = trainer.step
    last_save = clock()
    with StopFlag() as stop:
        while trainer.step < total_steps:
            signalled = stop.requested
            out_of_time = deadline is not None and wall() >= deadline - stop_margin_s
            if together:
                if (trainer.step - first_step) % stop_check_every:
                    signalled = out_of_time = False  # decided together at the next check
                else:
                    signalled, out_of_time = agree_to_stop(signalled, out_of_time)
            if signalled or out_of_time:
                reason = stop.received or (
                    "a stop signal to another process of this run"
                    if signalled
                    else "the job's time limit"
                )
                if out_of_time and not signalled:
                    log.warning(
                        "%.0f s left before the job's time limit: saving state and stopping",
                        deadline - wall(),
                    )
                if trainer.step == first_step and out_of_time and not signalled:
                    store.record(f"no progress at step {trainer.step}: {reason}")
                    raise NoProgressError(
                        f"this attempt reached the job's time limit before its first training "
                        f"step (at step {trainer.step} of {total_steps}, {stop_margin_s:.0f} s "
                        "kept for saving): more attempts of this length would never finish. "
                        "Raise the rule's runtime (profiles/default/resources.yaml, or "
                        "set-resources in your profile)"
                    )
                store.save(trainer.state_dict(), trainer.step)
                store.record(f"stopped at step {trainer.step}: {reason}")
                log.warning(
                    "stopped by %s at step %d of %d, state saved in %s. Snakemake submits this "
                    "job again while the rule's retries last (profiles/default/resources.yaml); "
                    "after that, run the same snakemake command again: training continues from "
                    "step %d",
                    reason, trainer.step, total_steps, store.folder, trainer.step,
                )  # fmt: skip
                raise JobInterrupted(reason, trainer.step)
            metrics = trainer.train_step()
            if on_step is not None:
                on_step(trainer, metrics)
            if clock() - last_save >= save_every_s and trainer.step < total_steps:
                store.save(trainer.state_dict(), trainer.step)
                last_save = clock()
                log.info("saved resume state at step %d", trainer.step)
    return resumed
