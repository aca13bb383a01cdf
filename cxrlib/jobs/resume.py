"""One resume contract for every trainer: what a restart may change, and what it may not.

A training job is started again after a kill, a time limit or a failure (`--retries`, or the
user running the same command), and sometimes after the user changed the config in between.
Every trainer (DCGAN, StyleGAN2-ADA, the classifier, the domain extractor) keeps the same
promise, written once here:

- The saved state carries a *resume record* (`resume_record()` of the trainer; also written in
  plain JSON to `state.json`, so the DAG build can read it without torch): the model, its
  settings, a fingerprint of its training data and how far it has trained (`done`, in the
  units of its length setting: epochs, kimg).
- A restart whose settings differ in a key that determines the training trajectory, or whose
  data differ, is refused before any training step, naming each changed key with its saved
  and new value and the fix (set it back, delete the state folder, or name a new run). The
  DAG build applies the same check (`check_resume`), so a refused restart fails once, at
  `snakemake` time, and never as a loop of failing retries.
- Keys that do not change the trajectory (`free`: snapshot and logging intervals) may
  change; the snapshots the new schedule places before the resumed point must then
  exist already (`missing_snapshots`), or the restart is refused naming them.
- The length key (`length`: DCGAN `epochs`, StyleGAN2-ADA `total_kimg`) may be raised, also
  after the run finished: training continues from where it stopped (extending a run). It may
  be lowered only to a point not yet passed.

Threads, devices and file locations are not settings of the trainers, so they never enter.
This module imports no torch: the DAG build uses it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RECORD_FILE = "state.json"


def data_fingerprint(*arrays: Any) -> dict[str, Any]:
    """{"n_images", "sha256"} of the training arrays (numpy; images first): a resumed run must
    see the data it started with."""
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(str((array.dtype, array.shape)).encode())
        digest.update(memoryview(array.tobytes() if not array.flags.c_contiguous else array))
    return {"n_images": len(arrays[0]) if arrays else 0, "sha256": digest.hexdigest()}


class ResumeRefused(ValueError):
    """A restart that would continue a saved run with other settings or other data."""


@dataclass(frozen=True)
class ResumeContract:
    """What a trainer's restart may change (see the module docstring)."""

    model: str  # config section named in messages: dcgan, stylegan2ada, classifier, ...
    free: frozenset[str] = frozenset()  # settings that may change: not part of the trajectory
    length: str | None = None  # training-length setting that may be raised (epochs, total_kimg)
    unit: str = "steps"  # unit of `done` and of the length setting, for messages
    # Settings added after states were saved, with the value their absence means: a state
    # saved before the key existed continues when the key keeps that value.
    added: tuple[tuple[str, Any], ...] = ()


# The classifier's contracts; each generator's is its settings module's RESUME_CONTRACT
# (cxrlib.dcgan.settings, cxrlib.stylegan2ada.settings).
CONTRACTS = {
    # The cosine schedule spans all epochs: every classifier setting shapes the trajectory.
    "classifier": ResumeContract("classifier", unit="epochs"),
    "domain_extractor": ResumeContract("metrics.domain_extractor", unit="epochs"),
}


def _fix(state_dir: Path) -> str:
    return (
        f"set them back, or delete {state_dir}/ to train from scratch with the new values, "
        "or give the new values a new run name"
    )


def _show(value: Any) -> str:
    return "(unset)" if value is _MISSING else json.dumps(value)


_MISSING = object()


def changed_settings(
    contract: ResumeContract, saved: Mapping[str, Any], now: Mapping[str, Any]
) -> list[tuple[str, Any, Any]]:
    """(key, saved value, new value) of every trajectory setting that differs."""
    out = []
    added = dict(contract.added)
    for key in sorted(set(saved) | set(now)):
        if key in contract.free or key == contract.length:
            continue
        old = saved.get(key, added.get(key, _MISSING))
        new = now.get(key, added.get(key, _MISSING))
        if old != new:
            out.append((key, old, new))
    return out


def check_resume(
    contract: ResumeContract,
    saved: Mapping[str, Any],
    now: Mapping[str, Any],
    state_dir: str | Path,
    *,
    what: str = "",
) -> None:
    """Refuse (ResumeRefused) to continue the saved record `saved` as `now`.

    Both are resume records: {"settings": {...}, "data": {...} or None, "done": float}. A
    `now` without "data" (the DAG build, before the data are read) skips the data check.
    `what` names the run in the message ("dcgan run baseline").
    """
    state_dir = Path(state_dir)
    name = what or f"{contract.model} run"
    head = f"cannot resume {name} from {state_dir}"
    s_old, s_new = saved.get("settings") or {}, now.get("settings") or {}
    changes = changed_settings(contract, s_old, s_new)
    if changes:
        lines = "\n".join(f"  {k}: {_show(a)} -> {_show(b)}" for k, a, b in changes)
        raise ResumeRefused(
            f"{head}: its saved state was trained with other {contract.model} settings, which "
            f"would change the training trajectory (saved -> now):\n{lines}\n"
            f"Fix: {_fix(state_dir)}."
        )
    if contract.length is not None and contract.length in s_new:
        done = float(saved.get("done") or 0.0)
        length = float(s_new[contract.length])
        if length + 1e-9 < done:
            raise ResumeRefused(
                f"{head}: {contract.length} is {length:g} but the run has already trained "
                f"{done:g} {contract.unit} (a run cannot be shortened after the fact; its "
                f"snapshots so far are in {state_dir}/snapshots/). Fix: set {contract.length} "
                f"to at least {done:g} (the value the run was extended to), or delete "
                f"{state_dir}/ to train from scratch, or give the shorter run a new run name."
            )
    d_old, d_new = saved.get("data"), now.get("data")
    if d_new is not None and d_old is not None:
        start_old, start_new = d_old.get("start_sha256"), d_new.get("start_sha256")
        if start_old != start_new:
            raise ResumeRefused(
                f"{head}: it started from a network file with sha256 {start_old}, but the "
                f"start file (resume_from) now has sha256 {start_new}: the file was replaced "
                f"after the run began. Fix: restore the original file, or delete {state_dir}/ "
                "to train from the new file, or give the new start a new run name."
            )
    if d_new is not None and d_old is not None and d_old != d_new:
        raise ResumeRefused(
            f"{head}: its saved state was trained on other images (saved {json.dumps(d_old)}, "
            f"now {json.dumps(d_new)}). Fix: restore the data it was trained on, or delete "
            f"{state_dir}/ to train from scratch on the current data, or name a new run."
        )


def missing_snapshots(
    snapshots: Iterable[tuple[str, float]], done: float, folder: str | Path
) -> list[str]:
    """Snapshot files a resumed run can no longer write: those of `snapshots` ((file name,
    position in the length's units)) at or before `done` that are not in `folder`."""
    folder = Path(folder)
    return [name for name, at in snapshots if at <= done + 1e-9 and not (folder / name).is_file()]


def refuse_missing_snapshots(
    missing: list[str], key: str, state_dir: str | Path, *, what: str = ""
) -> None:
    """Raise ResumeRefused when snapshots of the part already trained are gone from
    `state_dir`/snapshots: deleted, or asked for by a changed snapshot schedule (setting
    `key`). The fix names both, with the commands that train the run again (the model's
    rule is train_<model>, <model> read from results/<model>/<run>/state)."""
    if missing:
        state_dir = Path(state_dir)
        model = state_dir.parent.parent.name
        raise ResumeRefused(
            f"cannot resume {what or 'the run'} from {state_dir}: snapshots of the part "
            f"already trained are not in {state_dir / 'snapshots'}: {', '.join(missing[:8])}"
            f"{' ...' if len(missing) > 8 else ''} (deleted, or the snapshot schedule {key} "
            f"changed since). Fix: if you changed {key}, set it back; otherwise train the run "
            f"again: delete its state folder (rm -r {state_dir}), then run snakemake with "
            f"-R train_{model} added to this run's command."
        )


def state_problem(state_dir: str | Path) -> str | None:
    """Why a saved state in `state_dir` cannot be resumed, in words (None: none saved, or a
    readable one). Cheap enough for the DAG build: state.json is parsed and state.pt's zip
    directory read (a truncated or overwritten file fails there), not the tensors."""
    import zipfile

    state_dir = Path(state_dir)
    state = state_dir / "state.pt"
    if not state.is_file():
        return None
    try:
        with zipfile.ZipFile(state) as archive:
            archive.namelist()
    except (OSError, zipfile.BadZipFile) as exc:
        return f"{state} cannot be read ({exc})"
    try:
        record = json.loads((state_dir / RECORD_FILE).read_text()).get("resume")
    except (OSError, ValueError, AttributeError) as exc:
        return f"{state_dir / RECORD_FILE} is missing or unreadable ({exc})"
    if not isinstance(record, dict) or "settings" not in record:
        return f"{state_dir / RECORD_FILE} has no resume record (written by an older version?)"
    return None


def read_record(state_dir: str | Path) -> dict[str, Any] | None:
    """The resume record of `state_dir/state.json` (None: no resumable state there)."""
    state_dir = Path(state_dir)
    path = state_dir / RECORD_FILE
    if not (state_dir / "state.pt").is_file() or not path.is_file():
        return None
    try:
        return json.loads(path.read_text()).get("resume")
    except (OSError, ValueError):
        return None
