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


def study_classes(config: Mapping[str, Any]) -> list[str]:
    """The study's classes: train/'s class folders (phantoms: NORMAL and PNEUMONIA)."""
    if config["data"]["source"] == "phantom":
        from cxrlib.data.phantom import LABELS

        return list(LABELS)
    from cxrlib.data.layout import train_classes

    return train_classes(Path(data_root(config)))


def positive_class(config: Mapping[str, Any], classes: list[str]) -> str | None:
    """The class a classifier's score stands for (data.positive_class), checked against the
    study's classes; None for a one-class study (GAN stages only: no classifier).

    Two classes: the configured one, or, when unset, the class that is not
    data.synthetic_class. More than two: refused (a classifier of this study separates two
    classes; folding the others into "negative" would report numbers of another question).
    """
    data = config["data"]
    configured = data.get("positive_class")
    if len(classes) > 2:
        raise PlanError(
            f"train/ holds {len(classes)} classes ({', '.join(classes)}); this study compares "
            "two (a classifier of the positive class against the other). Keep two class "
            "folders in every split (move the others out of data.root), so that no class is "
            "folded silently into 'negative'"
        )
    if len(classes) < 2:
        if configured is not None:
            raise PlanError(
                f"data.positive_class {configured!r}: train/ holds one class "
                f"({', '.join(classes)}), so there is no classifier; remove data.positive_class "
                "(a one-class study runs the GAN stages only)"
            )
        return None
    if configured is None:
        return next(c for c in classes if c != data["synthetic_class"])
    if configured not in classes:
        same = [c for c in classes if c.casefold() == str(configured).casefold()]
        fix = f"set data.positive_class: {same[0]}" if same else "name one of them"
        raise PlanError(
            f"data.positive_class {configured!r} is not a class of train/ ({', '.join(classes)});"
            f" class names are case-sensitive: {fix}"
        )
    return str(configured)


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
