"""Checks made when the DAG is built, before any job is submitted: the data folder, and saved
training states against the resume contract (a refused restart fails once, at `snakemake`
time, never as a loop of failing retries)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from cxrlib.jobs.resume import (
    ResumeContract,
    ResumeRefused,
    check_resume,
    missing_snapshots,
    read_record,
    refuse_missing_snapshots,
    state_problem,
)
from cxrlib.plan import paths
from cxrlib.plan.errors import PlanError


def data_root(config: Mapping[str, Any]) -> str:
    """The folder prepare_data reads: the generated phantoms, or the configured data.root,
    checked (train/ and test/ there, or the folder below that has them, and the GANs'
    class); a missing one fails naming the path and the fixes."""
    if config["data"]["source"] == "phantom":
        return paths.PHANTOM_ROOT
    root = Path(config["data"]["root"])
    if not root.is_dir():
        raise PlanError(
            f"data.root {root} does not exist (resolved: {root.resolve()}). Download the Kaggle "
            "'Chest X-Ray Images (Pneumonia)' release, unpack it and set data.root (in "
            "config.yaml or with --config 'data={root: PATH}') to the folder holding train/ and "
            "test/; or try the demo: --configfile overlays/demo.yaml."
        )
    from cxrlib.data.layout import DataError, check_root

    try:
        check_root(root, config["data"]["synthetic_class"])
    except DataError as exc:
        raise PlanError(str(exc)) from None
    return str(root)


def data_tree_signature(config: Mapping[str, Any]) -> str:
    """Hash of every file reachable from data.root (path, size, mtime): a parameter of
    prepare_data, so changing any file reruns it (Snakemake itself only compares the mtime of
    the root folder). Constant for phantoms, which are a workflow output."""
    if config["data"]["source"] == "phantom":
        return "phantom"
    from cxrlib.data.layout import tree_signature

    return tree_signature(Path(data_root(config)), config["data"]["follow_links"])


def check_saved_state(
    contract: ResumeContract,
    state_dir: str | Path,
    settings: Mapping[str, Any],
    what: str,
    snapshots: Iterable[tuple[str, float]] = (),
    schedule_key: str = "",
) -> None:
    """A saved state in `state_dir` that these `settings` may not continue fails, naming each
    changed key (cxrlib.jobs.resume). `snapshots`: (file name, position) of the run's snapshot
    schedule; those of the part already trained must exist (`schedule_key` is named if not).
    """
    problem = state_problem(state_dir)
    if problem:
        raise PlanError(
            f"cannot resume {what}: {problem}. Delete {state_dir}/ to train it from scratch."
        )
    saved = read_record(state_dir)
    if saved is None:
        return
    try:
        check_resume(contract, saved, {"settings": settings}, state_dir, what=what)
        done = float(saved.get("done") or 0.0)
        missing = missing_snapshots(list(snapshots), done, Path(state_dir) / "snapshots")
        refuse_missing_snapshots(missing, schedule_key, state_dir, what=what)
    except ResumeRefused as exc:
        raise PlanError(str(exc)) from exc
