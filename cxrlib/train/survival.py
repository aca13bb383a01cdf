"""Training jobs that survive SLURM: resume state saved on a timer and on signals.

A cluster job can end at any moment: its time limit (SLURM sends SIGTERM, then SIGKILL after
KillWait), a `--signal` warning shortly before (SIGUSR1 here), preemption, a node failure.
Snakemake deletes a failed job's declared outputs, so resume state lives in an undeclared folder
(`results/<model>/<run>/state/`) that survives the failure. `--retries` starts the job again, it
finds the state and carries on; the finished run equals an uninterrupted one (bitwise on CPU
when the trainer keeps all its randomness in the state, as ours do).

The pieces:
- `StopFlag`: turns SIGTERM/SIGUSR1 into a flag the loop checks between steps (never stop in
  the middle of an optimiser update: that state could not be resumed exactly);
- `StateStore`: atomic `torch.save` of the state dict, loaded with `weights_only=True`;
- `run_resumable`: the loop that ties them to any `Resumable` trainer.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

import torch

from cxrlib.io import atomic_path, write_json

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
        """Write the state atomically: a kill during the write leaves the previous one intact."""
        with atomic_path(self.path) as tmp:
            torch.save(state, tmp)
        write_json(
            {"step": step, "saved_at_unix": time.time(), "pid": os.getpid()},
            self.folder / "state.json",
        )

    def clear(self) -> None:
        """Remove the state (after the final outputs are written)."""
        self.path.unlink(missing_ok=True)
        (self.folder / "state.json").unlink(missing_ok=True)


class Resumable(Protocol):
    """What `run_resumable` needs from a trainer."""

    step: int  # completed steps; the loop runs until step == total_steps

    def train_step(self) -> dict[str, float]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def run_resumable(
    trainer: Resumable,
    total_steps: int,
    store: StateStore,
    *,
    save_every_s: float = 600.0,
    on_step: Callable[[Resumable, dict[str, float]], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> bool:
    """Train until `trainer.step == total_steps`, resuming from `store` and saving into it.

    State is saved every `save_every_s` seconds of wall clock and when a stop signal arrives
    (then `JobInterrupted` is raised, exit status 75). At most one save interval of work is
    lost to a SIGKILL. `on_step` runs after every step (logging, snapshots); it must keep any
    state it needs in the trainer, so a resumed run repeats nothing and skips nothing.
    Returns True when this call resumed from a saved state.
    """
    state = store.load()
    resumed = state is not None
    if resumed:
        trainer.load_state_dict(state)
        log.info("resumed from %s at step %d of %d", store.path, trainer.step, total_steps)
    last_save = clock()
    with StopFlag() as stop:
        while trainer.step < total_steps:
            if stop.requested:
                store.save(trainer.state_dict(), trainer.step)
                raise JobInterrupted(stop.received or "signal", trainer.step)
            metrics = trainer.train_step()
            if on_step is not None:
                on_step(trainer, metrics)
            if clock() - last_save >= save_every_s and trainer.step < total_steps:
                store.save(trainer.state_dict(), trainer.step)
                last_save = clock()
                log.info("saved resume state at step %d", trainer.step)
    return resumed
