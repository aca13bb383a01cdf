"""A generator run's folder of state: the resume state, the snapshots and grids written while it
trains, and the publishing of its finished files into the declared outputs. Written once here
for every generator (cxrlib.dcgan.trainer, cxrlib.stylegan2ada.trainer; a new one's trainer
uses it the same way).

The folder is undeclared (`results/<model>/<run>/state/`), so it survives a failed or killed
attempt. A run:
1. `open()`s it: an attempt that never saved state leaves no stale snapshots behind, and a
   restart whose snapshot schedule asks for snapshots of the part already trained is refused
   (cxrlib.jobs.resume: they can no longer be made);
2. trains with `cxrlib.jobs.survival.run_resumable(trainer, total, folder.store, ...)`,
   writing its snapshots into `folder.path / "snapshots"` as it goes;
3. `publish()`es when finished: the final state is kept (raising the run's length later
   continues it), then every finished file is hard-linked into the declared outputs.

In a data-parallel run only the first process writes (`writer=False` for the others: they
read the shared state and write nothing).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from cxrlib.io import publish_file
from cxrlib.jobs.resume import missing_snapshots, refuse_missing_snapshots
from cxrlib.jobs.survival import StateStore

SCRATCH = ("snapshots", "grids")  # what a run writes into its folder while it trains


class _ReadOnlyStateStore(StateStore):
    """The state store of a data-parallel process other than the first: reads the shared
    state, never writes (the first process saves the same state)."""

    def save(self, state: dict[str, Any], step: int) -> None:
        pass

    def record(self, event: str) -> None:
        pass

    def clear(self) -> None:
        pass

    def check_room(self, state: dict[str, Any]) -> None:
        pass


class RunFolder:
    """The state folder of one generator run."""

    def __init__(
        self,
        path: str | Path,
        *,
        what: str,  # the run in messages: "dcgan run baseline"
        schedule: Sequence[tuple[str, float]] = (),  # (snapshot file name, position) in order
        schedule_key: str = "",  # the setting that spaces the snapshots, named if refused
        writer: bool = True,  # False in data-parallel processes other than the first
    ):
        self.path = Path(path)
        self.what = what
        self.schedule = list(schedule)
        self.schedule_key = schedule_key
        self.writer = writer
        self.store = StateStore(self.path) if writer else _ReadOnlyStateStore(self.path)

    @property
    def snapshots(self) -> Path:
        return self.path / "snapshots"

    def open(self) -> bool:
        """Ready the folder for an attempt; True when a saved state will be resumed.

        Without a saved state, files of an earlier attempt that never saved one are removed
        (not ours to keep, and maybe stale). With one, its snapshot schedule is checked
        (ResumeRefused naming `schedule_key` and the missing files)."""
        if self.writer:
            self.path.mkdir(parents=True, exist_ok=True)
        saved = self.store.record_of_state()
        if saved is None:
            if self.writer and not self.store.exists():
                for sub in SCRATCH:
                    shutil.rmtree(self.path / sub, ignore_errors=True)
            return False
        refuse_missing_snapshots(
            missing_snapshots(self.schedule, float(saved.get("done") or 0.0), self.snapshots),
            self.schedule_key,
            self.path,
            what=self.what,
        )
        return True

    def publish(
        self,
        final_state: dict[str, Any],
        step: int,
        files: Iterable[tuple[Path, Path]],
        *,
        event: str = "",
    ) -> None:
        """Keep the finished state (a kill while publishing costs nothing; a longer run
        continues from it), then hard-link each (file in the folder, declared output)."""
        if not self.writer:
            return
        self.store.save(final_state, step)
        for source, target in files:
            publish_file(source, target)
        if event:
            self.store.record(event)
