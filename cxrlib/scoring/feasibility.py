"""Which metrics a set of images is large enough for: said at DAG build, and while scoring.

Every score compares two sets of feature vectors: the real images of `data.synthetic_class` in
one reference split (`metrics.references`) and the generated samples (`metrics.n_fake`). Each
metric needs a minimum number of images in *each* set:

- FID: >= 2. It fits a Gaussian (mean, covariance) to each set; one image has no covariance
  (np.cov divides by n - 1 = 0, the matrix is NaN and its square root raises
  ``LinAlgError: Array must not contain infs or NaNs``).
- KID: >= 2. Its unbiased MMD estimate averages kernels over pairs of distinct images in each
  subset; the subset size shrinks to the smaller set (cxrlib.scoring.fidelity.kid_subset_size),
  never below 2.
- precision/recall: > k = `metrics.prc_neighborhood`. Each image's manifold radius is the
  distance to its k-th nearest *other* image of the same set (torch-fidelity asks for the
  (k+1)-th smallest distance, itself included; with fewer images ``kthvalue(): selected number
  k out of range``).
- density/coverage: > k = `metrics.dc_neighborhood` real images (each real image's ball reaches
  its k-th nearest *other* real image; cxrlib.scoring.density), >= 1 generated image (density
  is a mean over them). Only the reals' balls are used, so the generated set needs no more.
- diversity ratio: >= 2 in each set (a mean distance over pairs).

A metric a set is too small for is not an error: the score tables hold NaN there and say why in
their `not_computable` column (`format_reasons`, read back by `parse_reasons`), and the rest
of the row is scored. At DAG build, `check_references` finds the too-small reference splits
before any job runs (from the phantom config, or from an earlier run's class_counts.csv) and
returns one warning naming each split, its count, what each metric needs and the fix; and
`best_refusal` says when `use_snapshot: best` cannot be resolved (no train or val reference FID
can be computed against), so that sample generation is refused at DAG build, naming the key.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from cxrlib.plan.generators import generator_names
from cxrlib.scoring.density import DC_NEIGHBORHOOD

# The score tables' column holding why some of a row's metrics are NaN ("" when none are).
NOT_COMPUTABLE = "not_computable"
# Reference splits the best snapshot may be chosen against, in order of preference. Never
# test: choosing on the test images would leave the test FID no longer a held-out check.
SELECTION_REFERENCES = ("train", "val")
FIX = (
    "add images of that class to the split, drop the split from metrics.references, or lower "
    "metrics.prc_neighborhood (precision/recall) or metrics.dc_neighborhood (density/coverage)"
)
_ENTRY_SEPARATOR = " | "


@dataclass(frozen=True)
class Requirement:
    """What one metric needs of each set of images."""

    name: str  # as the reasons name it: "FID", "KID", "precision/recall", "diversity ratio"
    columns: tuple[str, ...]  # the score-table columns it fills
    minimum: int  # images per set, at least
    why: str  # the reason for that minimum, in a few words
    # What the generated set needs where less than `minimum` (None: `minimum`), and why.
    generated_minimum: int | None = None
    generated_why: str = ""


def requirements(
    prc_neighborhood: int, dc_neighborhood: int = DC_NEIGHBORHOOD
) -> tuple[Requirement, ...]:
    """The minimum set sizes of every metric, for precision/recall's k = `prc_neighborhood`
    and density/coverage's k = `dc_neighborhood` (each >= 1)."""
    k = int(prc_neighborhood)
    if k < 1:
        raise ValueError(f"metrics.prc_neighborhood must be >= 1, got {prc_neighborhood}")
    k_dc = int(dc_neighborhood)
    if k_dc < 1:
        raise ValueError(f"metrics.dc_neighborhood must be >= 1, got {dc_neighborhood}")
    return (
        Requirement("FID", ("fid",), 2, "a covariance needs 2 images"),
        Requirement("KID", ("kid_mean", "kid_std", "kid_subset_size"), 2, "its subsets need pairs"),
        Requirement(
            "precision/recall",
            ("precision", "recall"),
            k + 1,
            f"more than metrics.prc_neighborhood = {k}: each image's {k} nearest other images",
        ),
        Requirement(
            "density/coverage",
            ("density", "coverage"),
            k_dc + 1,
            f"more than metrics.dc_neighborhood = {k_dc}: each real image's {k_dc} nearest "
            "other real images",
            generated_minimum=1,
            generated_why="density is a mean over the generated images",
        ),
        Requirement("diversity ratio", ("diversity_ratio",), 2, "a pair of images"),
    )


def requirement(name: str, prc_neighborhood: int) -> Requirement:
    """The Requirement called `name` (one of `requirements`' names)."""
    for req in requirements(prc_neighborhood):
        if req.name == name:
            return req
    known = ", ".join(r.name for r in requirements(prc_neighborhood))
    raise ValueError(f"no metric {name!r}; known: {known}")


def _images(n: int, exact: bool = True) -> str:
    return f"{'' if exact else 'about '}{n} image{'' if n == 1 else 's'}"


def shortfalls(
    sets: Mapping[str, int],
    prc_neighborhood: int,
    metrics: Iterable[str] | None = None,
    *,
    dc_neighborhood: int = DC_NEIGHBORHOOD,
    generated: str | None = None,
) -> dict[str, str]:
    """Why each metric that some set is too small for cannot be computed.

    `sets`: image count per set, named as the reason should name it (e.g. {"test/NORMAL": 2,
    "the generated set": 5000}). Returns metric name -> detail, e.g. {"precision/recall":
    "test/NORMAL has 2 images, needs >= 4 (more than metrics.prc_neighborhood = 3: ...)"}; the
    first set too small is named. Metrics every set is large enough for are absent, so an empty
    dict means everything is computable. `metrics` limits the check to those names.
    `generated` names the set of `sets` in the generated images' place, judged by a metric's
    `generated_minimum` where it has one (density/coverage need only reals beyond k).
    """
    wanted = None if metrics is None else set(metrics)
    out = {}
    for req in requirements(prc_neighborhood, dc_neighborhood):
        if wanted is not None and req.name not in wanted:
            continue
        for name, n in sets.items():
            minimum, why = req.minimum, req.why
            if name == generated and req.generated_minimum is not None:
                minimum, why = req.generated_minimum, req.generated_why
            if int(n) < minimum:
                out[req.name] = f"{name} has {_images(int(n))}, needs >= {minimum} ({why})"
                break
    return out


def format_reasons(reasons: Mapping[str, str]) -> str:
    """metric name -> detail as one `not_computable` cell: "FID: ... | KID: ..." ("" if none)."""
    return _ENTRY_SEPARATOR.join(f"{name}: {detail}" for name, detail in reasons.items())


def parse_reasons(text: object) -> dict[str, str]:
    """A `not_computable` cell back to metric name -> detail (NaN, None or "" -> {})."""
    if text is None or (isinstance(text, float) and math.isnan(text)) or not str(text).strip():
        return {}
    out = {}
    for entry in str(text).split(_ENTRY_SEPARATOR):
        name, _, detail = entry.partition(": ")
        out[name.strip()] = detail.strip()
    return out


def column_reasons(text: object, prc_neighborhood: int = 1) -> dict[str, str]:
    """A `not_computable` cell as score column -> detail ({"precision": ..., "recall": ...})."""
    by_name = {req.name: req.columns for req in requirements(prc_neighborhood)}
    out = {}
    for name, detail in parse_reasons(text).items():
        for column in by_name.get(name, (name,)):
            out[column] = detail
    return out


# --------------------------------------------------------------------------------------------
# At DAG build: the reference splits' sizes, known before any job runs
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SplitCount:
    """Images of the synthetic class in one split; `exact` False for an estimate."""

    n: int
    exact: bool = True


def phantom_counts(data: Mapping[str, Any]) -> dict[str, SplitCount]:
    """Per split, the synthetic class's images the phantom data set of `config["data"]` yields.

    Test (and val with `val_source: given`) are the configured counts exactly. With `val_source:
    carve` val is carved from train + val by whole patients until it holds `val_fraction` of
    them (cxrlib.data.splits.carve_validation), so val and train are estimates: val at least
    ceil(val_fraction x pool), train the rest.
    """
    label = data["synthetic_class"]
    counts = data["phantom"]["counts"]
    given = {split: int(counts.get(split, {}).get(label, 0)) for split in ("train", "val", "test")}
    out = {"test": SplitCount(given["test"])}
    if data.get("val_source", "carve") == "given":
        out["train"], out["val"] = SplitCount(given["train"]), SplitCount(given["val"])
        return out
    pool = given["train"] + given["val"]
    fraction = float(data.get("val_fraction", 0.0))
    val = 0 if fraction <= 0 or pool < 2 else min(pool - 1, math.ceil(fraction * pool))
    out["train"], out["val"] = SplitCount(pool - val, exact=False), SplitCount(val, exact=False)
    return out


def recorded_counts(class_counts_csv: str | Path, label: str) -> dict[str, SplitCount] | None:
    """Per split, `label`'s images in an earlier run's class_counts.csv (columns split, label,
    n_images); None when the file is absent or unreadable (nothing known yet)."""
    path = Path(class_counts_csv)
    if not path.is_file():
        return None
    try:
        table = pd.read_csv(path)
        rows = table[table["label"].astype(str) == str(label)]
        return {str(r.split): SplitCount(int(r.n_images)) for r in rows.itertuples()}
    except (OSError, ValueError, KeyError, AttributeError, pd.errors.ParserError):
        return None


@dataclass(frozen=True)
class SmallReference:
    """A reference split too small for some metrics: which, and what each needs."""

    split: str
    label: str
    count: SplitCount
    missing: tuple[Requirement, ...]  # the metrics it is too small for

    def describe(self, prc_neighborhood: int, dc_neighborhood: int = DC_NEIGHBORHOOD) -> str:
        """One line: the split, its count, each metric it is too small for and what is scored."""
        needs = "; ".join(f"{r.name} needs >= {r.minimum} ({r.why})" for r in self.missing)
        missing = {r.name for r in self.missing}
        scored = [
            r.name for r in requirements(prc_neighborhood, dc_neighborhood) if r.name not in missing
        ]
        outcome = (
            f"those are written as NaN with the reason in the not_computable column, "
            f"{', '.join(scored)} scored as usual"
            if scored
            else "every score against it is NaN, with the reason in the not_computable column"
        )
        where = f"{self.split}/{self.label}"
        return f"{where} has {_images(self.count.n, self.count.exact)}: {needs}; {outcome}."


def small_references(
    counts: Mapping[str, SplitCount],
    references: Sequence[str],
    label: str,
    prc_neighborhood: int,
    dc_neighborhood: int = DC_NEIGHBORHOOD,
) -> list[SmallReference]:
    """The splits of `references` too small for at least one metric, in the order given.

    A split missing from `counts` is not judged (nothing known about it).
    """
    out = []
    for split in references:
        if split not in counts:
            continue
        count = counts[split]
        missing = tuple(
            r for r in requirements(prc_neighborhood, dc_neighborhood) if count.n < r.minimum
        )
        if missing:
            out.append(SmallReference(split, label, count, missing))
    return out


def selection_reference(
    counts: Mapping[str, SplitCount], references: Sequence[str]
) -> tuple[str | None, str]:
    """The split the best snapshot will be chosen against (lowest FID), and a note why.

    The first of SELECTION_REFERENCES that is in `references` and has the images FID needs; a
    split absent from `counts` is assumed large enough. (None, why) when there is none.
    """
    fid = requirement("FID", 1)
    skipped = []
    for split in SELECTION_REFERENCES:
        if split not in references:
            skipped.append(f"{split} is not in metrics.references")
        elif split in counts and counts[split].n < fid.minimum:
            skipped.append(f"{split} has {_images(counts[split].n, counts[split].exact)}")
        else:
            note = f"; {', '.join(skipped)}" if skipped else ""
            return split, f"lowest FID against {split}{note}"
    return None, "; ".join(skipped) + f" (FID needs >= {fid.minimum} images)"


def reference_warning(
    counts: Mapping[str, SplitCount],
    *,
    references: Sequence[str],
    label: str,
    prc_neighborhood: int,
    dc_neighborhood: int = DC_NEIGHBORHOOD,
    where: str,
    best_keys: Sequence[str] = (),
) -> str | None:
    """The DAG-build warning about too-small references, or None when every metric can be scored.

    `where` says where the counts come from; `best_keys` are the config keys set to "best"
    (e.g. "dcgan.use_snapshot"), which need a reference the best snapshot can be chosen against.
    """
    small = small_references(counts, references, label, prc_neighborhood, dc_neighborhood)
    chosen, why = selection_reference(counts, references)
    if not small and (chosen is not None or not best_keys):
        return None
    lines = []
    if small:
        lines.append(f"Scoring: reference split(s) too small for some metrics (counts {where}):")
        lines += [f"  - {s.describe(prc_neighborhood, dc_neighborhood)}" for s in small]
        lines.append(f"  Fix: {FIX}.")
    if chosen is None and best_keys:
        lines.append(
            f"{'  ' if small else 'Scoring: '}No best snapshot can be chosen: {why}. Sample "
            f"generation (and what needs it) for {', '.join(k + ': best' for k in best_keys)} "
            f"is refused; set {' / '.join(best_keys)} to a snapshot name, or add train (or "
            f"val) with >= 2 {label} images to metrics.references."
        )
    return "\n".join(lines)


def known_counts(
    config: Mapping[str, Any], class_counts_csv: str | Path
) -> tuple[dict[str, SplitCount] | None, str]:
    """The synthetic class's images per split as far as known before any job runs, and where
    from: the phantom config (`data.source: phantom`), else `class_counts_csv` of an earlier
    run; (None, where) when neither says (a first run on real data)."""
    data = config["data"]
    if data["source"] == "phantom":
        return phantom_counts(data), "from data.phantom.counts"
    counts = recorded_counts(class_counts_csv, data["synthetic_class"])
    return counts, f"from {class_counts_csv} of an earlier run"


def best_refusal(
    config: Mapping[str, Any],
    class_counts_csv: str | Path,
    model: str,
    snapshots: Sequence[str] = (),
) -> str | None:
    """Why `<model>.use_snapshot: best` cannot be resolved, as the error to stop on, or None.

    None when a selection reference (SELECTION_REFERENCES) is in metrics.references and not
    known to be too small for FID; `snapshots` (the run's names) are offered as the fix.
    """
    counts, where = known_counts(config, class_counts_csv)
    chosen, why = selection_reference(counts or {}, list(config["metrics"]["references"]))
    if chosen is not None:
        return None
    names = f" (one of {', '.join(snapshots)})" if snapshots else ""
    return (
        f"{model}.use_snapshot is best, but no snapshot can be chosen as best: {why} (counts "
        f"{where}). Set {model}.use_snapshot to a snapshot name{names}, or add train (or val) "
        f"with >= 2 {config['data']['synthetic_class']} images to metrics.references."
    )


def check_references(config: Mapping[str, Any], class_counts_csv: str | Path) -> str | None:
    """The warning of `reference_warning` for a whole (validated) workflow config, or None.

    Counts come from the phantom config (`data.source: phantom`), else from
    `class_counts_csv` of an earlier run; with neither (a first run on real data) no split's
    size is judged (the scoring jobs then say what they could not compute), only whether the
    best snapshot has a split to be chosen against.
    """
    metrics = config["metrics"]
    counts, where = known_counts(config, class_counts_csv)
    best_keys = [
        f"{model}.use_snapshot"
        for model in generator_names(config)
        if config[model].get("runs") and config[model].get("use_snapshot") == "best"
    ]
    return reference_warning(
        counts or {},  # unknown: only what the config alone says (no train or val referenced)
        references=list(metrics["references"]),
        label=config["data"]["synthetic_class"],
        prc_neighborhood=int(metrics["prc_neighborhood"]),
        dc_neighborhood=int(metrics["dc_neighborhood"]),
        where=where,
        best_keys=best_keys,
    )
