"""The generators of a study: which config sections are GAN models, and what the workflow must
know of each run before it trains (its settings, snapshot names, resolution, resume contract).

A generator is a config section with `settings`, `runs` and `use_snapshot` (`dcgan`,
`stylegan2ada`) whose library folder `cxrlib/<section>/` has a torch-free `settings.py` that
defines the names below (the planning interface). Adding a generator is that folder, a rules
file with its `train_<section>` and sweep rules, and its config section: scoring, sampling, the
memorisation audit, the classifier arm `real_<section>` and the report take it from here.

Planning interface of `cxrlib.<section>.settings`:
- `DISPLAY_NAME`: how the report names the model ("DCGAN");
- `PROGRESS`: what a snapshot's position counts: "epoch" or "kimg" (PROGRESS_UNITS);
- `SCHEDULE_KEY`: the setting that spaces the snapshots (named when a restart lacks one);
- `RESUME_CONTRACT`: its cxrlib.jobs.resume.ResumeContract;
- `run_settings(merged: dict)`: the run's settings object; ValueError/TypeError naming the key;
- `snapshots(settings)`: [(stem, position)] of every snapshot the run writes, in order
  ("epoch0010", 10.0); the file is `<stem>.pt` in the run's snapshots folder;
- `resolution(settings)`: the side (px) of its images;
- `resume_settings(settings, saved: dict)`: the settings as its resume record stores them,
  given the saved record's settings (a key the job decides for itself is taken from there);
- `grid_columns(settings)`: images per row of the run's fixed-noise grids (the figure of
  grids across training shows the first few of each).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from types import ModuleType
from typing import Any

from cxrlib.plan.errors import PlanError

INTERFACE = (
    "DISPLAY_NAME",
    "PROGRESS",
    "SCHEDULE_KEY",
    "RESUME_CONTRACT",
    "run_settings",
    "snapshots",
    "resolution",
    "resume_settings",
    "grid_columns",
)
_SECTION_KEYS = {"settings", "runs", "use_snapshot"}
# What a snapshot's position may count: the score tables have a column for each.
PROGRESS_UNITS = ("epoch", "kimg")
# The profiles/default/resources.yaml entry of a generator's training rule without its own.
GENERATOR_TRAINING = "train_generator"


def generator_names(config: Mapping[str, Any]) -> list[str]:
    """The config sections that are generators, in config order."""
    return [
        name
        for name, section in config.items()
        if isinstance(section, Mapping) and set(section) >= _SECTION_KEYS
    ]


def planning_module(name: str) -> ModuleType:
    """`cxrlib.<name>.settings`, checked to offer the planning interface."""
    try:
        module = importlib.import_module(f"cxrlib.{name}.settings")
    except ModuleNotFoundError as exc:
        raise PlanError(
            f"config section {name!r} looks like a generator (settings, runs, use_snapshot) "
            f"but cxrlib/{name}/settings.py does not exist ({exc})"
        ) from None
    missing = [key for key in INTERFACE if not hasattr(module, key)]
    if missing:
        raise PlanError(
            f"cxrlib/{name}/settings.py lacks the planning interface's {', '.join(missing)} "
            "(cxrlib/plan/generators.py lists what a generator defines)"
        )
    if module.PROGRESS not in PROGRESS_UNITS:
        raise PlanError(
            f"cxrlib/{name}/settings.py: PROGRESS is {module.PROGRESS!r}; a snapshot's position "
            f"is counted in one of {', '.join(PROGRESS_UNITS)} (the score tables' columns)"
        )
    return module


def display_name(name: str) -> str:
    """How the report names generator `name` (its DISPLAY_NAME; the name itself for a
    section without a library folder, e.g. in tables of an older run)."""
    try:
        return str(planning_module(name).DISPLAY_NAME)
    except PlanError:
        return name


def merged_settings(config: Mapping[str, Any], model: str, run: str) -> dict[str, Any]:
    """A run's settings: the section's settings with the run's overrides on top."""
    return {**config[model]["settings"], **(config[model]["runs"][run] or {})}
