"""Sweep tables: one row per snapshot, the best snapshot marked and the collapse epoch found."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cxrlib.io import write_csv
from cxrlib.scoring.diversity import detect_collapse
from cxrlib.scoring.feasibility import NOT_COMPUTABLE, SELECTION_REFERENCES, parse_reasons
from cxrlib.scoring.reference import attach_floors, floor_label, format_fid, read_reference

log = logging.getLogger(__name__)


NEAR_COPY_COLUMNS = ("near_copy_share", "heldout_near_copy_rate", "near_copy_limit")


class NoBestSnapshot(ValueError):
    """No snapshot of a run could be chosen as best; the message names the config key to change."""


def read_scores(paths: Iterable[str | Path]) -> pd.DataFrame:
    """The per-snapshot score tables, concatenated. Tables written before scores said why a
    metric was not computable get an empty NOT_COMPUTABLE column, those written before the
    near-copy share NaN there."""
    frames = [pd.read_csv(p) for p in paths]
    if not frames:
        raise ValueError("no score files given")
    scores = pd.concat(frames, ignore_index=True)
    if NOT_COMPUTABLE not in scores:
        scores[NOT_COMPUTABLE] = ""
    scores[NOT_COMPUTABLE] = scores[NOT_COMPUTABLE].fillna("").astype(str)
    for column in NEAR_COPY_COLUMNS:  # tables scored before the near-copy share
        if column not in scores:
            scores[column] = np.nan
    return scores


def not_computable_lines(scores: pd.DataFrame, metrics: Iterable[str] | None = None) -> list[str]:
    """One line per (extractor, reference, metric) with NaN scores, for logs and figures:
    "cxr vs test: precision/recall: test/NORMAL has 2 images, needs >= 4 (...)". `metrics`
    limits the lines to those metric names ("FID", "KID", "precision/recall", ...)."""
    if NOT_COMPUTABLE not in scores or scores.empty:
        return []
    wanted = None if metrics is None else set(metrics)
    lines = []
    for (extractor, reference), rows in scores.groupby(["extractor", "reference"], sort=True):
        for text in dict.fromkeys(rows[NOT_COMPUTABLE].fillna("").astype(str)):
            lines += [
                f"{extractor} vs {reference}: {name}: {detail}"
                for name, detail in parse_reasons(text).items()
                if wanted is None or name in wanted
            ]
    return list(dict.fromkeys(lines))


def _selection(
    sweep: pd.DataFrame, extractor: str, references: Sequence[str]
) -> tuple[str | None, str]:
    """The first of `references` against which some snapshot has a finite FID in `extractor`'s
    space, and how the choice reads ("lowest FID against train (cxr features)"); or (None,
    why none could be used)."""
    skipped = []
    for reference in references:
        rows = sweep[(sweep.extractor == extractor) & (sweep.reference == reference)]
        if rows.empty:
            skipped.append(f"{reference} is not in metrics.references")
            continue
        if np.isfinite(rows.fid.to_numpy(float)).any():
            note = f" ({'; '.join(skipped)})" if skipped else ""
            return reference, f"lowest FID against {reference} ({extractor} features){note}"
        reasons = [parse_reasons(t).get("FID") for t in rows.get(NOT_COMPUTABLE, [])]
        detail = next((r for r in reasons if r), "FID is NaN for every snapshot")
        skipped.append(f"FID against {reference} is not computable: {detail}")
    return None, "; ".join(skipped)


def build_sweep(
    scores: pd.DataFrame,
    *,
    progress: str,
    selection_extractor: str,
    selection_references: Sequence[str] = SELECTION_REFERENCES,
    collapse_ratio: float = 0.5,
    collapse_patience: int = 1,
    max_near_copy_share: float | None = None,
) -> pd.DataFrame:
    """Scores of one run -> the sweep table.

    `progress` is the column that orders snapshots ("epoch" or "kimg"). `best` marks, in every
    row of that snapshot, the snapshot with the lowest FID in `selection_extractor`'s space
    against the first of `selection_references` (train, then val; never test) for which FID
    could be computed; `best_by` says which, or why no snapshot is marked (every reference too
    small, or absent from the scores): then `best` is False everywhere, a warning is logged, and
    `best_snapshot` raises naming the key to change. NaN FIDs are never chosen.
    `collapse_{progress}` is where the samples' diversity, in each extractor's space against
    that same reference, stays below `collapse_ratio` of the real images' (same for every row
    of an extractor; NaN when never, or when no diversity ratio could be computed); snapshots
    whose ratio is NaN are left out of the detection.
    Scores carrying their real floors (cxrlib.scoring.reference.attach_floors) keep them; the
    choice is logged, and a warning says when the best snapshot's FID is below the floor of
    the reference it was chosen against (closer to those images than real images are to each
    other: a case for the memorisation audit).
    A snapshot whose near-copy share in the selection space is above its limit
    (`max_near_copy_share`, or with None the held-out real rate's bound in `near_copy_limit`,
    cxrlib.memorisation.share) is never chosen: `near_copy_skipped` marks it in every row and
    `best_by` names it; when every snapshot with a FID is skipped, none is best. A NaN share
    or limit skips nothing.
    Raises ValueError when `selection_extractor` has no scores at all.
    """
    sweep = scores.sort_values([progress, "extractor", "reference"]).reset_index(drop=True)
    if NOT_COMPUTABLE not in sweep:
        sweep[NOT_COMPUTABLE] = ""
    if not (sweep.extractor == selection_extractor).any():
        raise ValueError(
            f"no scores for extractor {selection_extractor!r} "
            f"(scored: {', '.join(sorted(sweep.extractor.astype(str).unique()))})"
        )
    reference, best_by = _selection(sweep, selection_extractor, selection_references)
    sweep["best"] = False
    copying = _mark_near_copies(sweep, selection_extractor, max_near_copy_share)
    chosen = sweep[
        (sweep.extractor == selection_extractor)
        & (sweep.reference == reference)
        & np.isfinite(sweep.fid.to_numpy(float))
        & ~sweep.near_copy_skipped
    ]
    if reference is not None and chosen.empty:
        reference, best_by = None, f"every snapshot with a FID copies: {copying}"
    elif copying:
        best_by += f"; not chosen, near-copying: {copying}"
    if reference is None:
        best_by = f"none: {best_by}"
        log.warning("no best snapshot: %s", best_by)
    else:
        best_row = chosen.loc[chosen.fid.idxmin()]
        sweep["best"] = sweep.snapshot == best_row["snapshot"]
        if reference != selection_references[0]:
            log.warning("best snapshot by %s", best_by)
        log.info("best snapshot %s: %s, FID %.4g", best_row["snapshot"], best_by, best_row.fid)
        warn_below_floor(best_row)
    sweep["best_by"] = best_by
    sweep[f"collapse_{progress}"] = np.nan
    sweep["collapsed"] = False
    for extractor, rows in sweep[sweep.reference == reference].groupby("extractor"):
        rows = rows[np.isfinite(rows.diversity_ratio.to_numpy(float))].sort_values(progress)
        if rows.empty:
            continue
        at = detect_collapse(
            rows[progress].tolist(),
            rows.diversity_ratio.tolist(),
            threshold=collapse_ratio,
            patience=collapse_patience,
        )
        if at is not None:
            mask = sweep.extractor == extractor
            sweep.loc[mask, f"collapse_{progress}"] = at
            sweep.loc[mask, "collapsed"] = sweep.loc[mask, progress] >= at
    add_space_agreement(sweep, selection_extractor, reference)
    for line in not_computable_lines(sweep):
        log.warning("not computable (NaN in the table): %s", line)
    return sweep


def _mark_near_copies(sweep: pd.DataFrame, extractor: str, limit: float | None) -> str:
    """Set `near_copy_skipped` (in place) on every row of the snapshots whose near-copy share
    in `extractor`'s space is above `limit` (None: each row's near_copy_limit); return them
    in words ("epoch0008 (share 0.31 > limit 0.09)"; "" when none)."""
    if limit is not None and not (0 <= float(limit) <= 1):
        raise ValueError(f"metrics.memorisation.max_near_copy_share must be 0-1, got {limit}")
    for column in NEAR_COPY_COLUMNS:
        if column not in sweep:
            sweep[column] = np.nan
    rows = sweep[sweep.extractor == extractor].drop_duplicates("snapshot")
    if not np.isfinite(rows.near_copy_share.to_numpy(float)).any():
        log.warning(
            "no near-copy share in %s's scores (scored before the share existed, or not "
            "computable: see the not_computable column): the best snapshot is chosen by FID "
            "alone. To score it: snakemake --forcerun score_snapshot with this run's command",
            extractor,
        )
    share = rows.near_copy_share.to_numpy(float)
    bound = rows.near_copy_limit.to_numpy(float) if limit is None else np.full(len(rows), limit)
    over = np.isfinite(share) & np.isfinite(bound) & (share > bound)
    skipped = rows.snapshot[over].tolist()
    sweep["near_copy_skipped"] = sweep.snapshot.isin(skipped)
    return ", ".join(
        f"{name} (share {s:.3g} > limit {b:.3g})"
        for name, s, b in zip(rows.snapshot[over], share[over], bound[over], strict=True)
    )


def add_space_agreement(sweep: pd.DataFrame, selection: str, reference: str | None) -> None:
    """Do the feature spaces agree on the snapshots? For each extractor, in place:
    `best_in_space` (the snapshot with the lowest FID against `reference` in that space) and
    `tau_vs_selection` (Kendall's tau between that space's snapshot ranking by FID and the
    selection space's: 1 = the same order, 0 = unrelated, -1 = reversed; NaN with fewer than
    2 snapshots scored in both). Feature spaces disagree on medical images (Woodland et al.
    2024, MICCAI): the tables say where, instead of trusting one space silently."""
    from scipy.stats import kendalltau

    sweep["best_in_space"] = ""
    sweep["tau_vs_selection"] = np.nan
    if reference is None:
        return
    rows = sweep[(sweep.reference == reference) & np.isfinite(sweep.fid.to_numpy(float))]
    fid = rows.pivot_table(index="snapshot", columns="extractor", values="fid", aggfunc="first")
    for extractor in fid.columns:
        mask = sweep.extractor == extractor
        sweep.loc[mask, "best_in_space"] = str(fid[extractor].idxmin())
        if selection in fid.columns:
            both = fid[[selection, extractor]].dropna()
            if len(both) >= 2:
                tau = kendalltau(both[selection], both[extractor]).statistic
                sweep.loc[mask, "tau_vs_selection"] = float(tau)


def space_agreement_sentence(sweep: pd.DataFrame) -> str:
    """The spaces' agreement on a run's best snapshot in words: "" with one space; "the
    feature spaces agree on the best snapshot (Kendall tau ...)", or "inception picks kimg X,
    cxr picks kimg Y"."""
    if "best_in_space" not in sweep:
        return ""
    picks = sweep[sweep.best_in_space.astype(str) != ""].drop_duplicates("extractor")[
        ["extractor", "best_in_space", "tau_vs_selection"]
    ]
    if len(picks) < 2:
        return ""
    chosen_by = str(sweep.best_by.iloc[0]) if "best_by" in sweep and len(sweep) else ""
    taus = [
        f"{r.extractor} {float(r.tau_vs_selection):+.2f}"
        for r in picks.itertuples()
        if np.isfinite(float(r.tau_vs_selection)) and f"({r.extractor} features)" not in chosen_by
    ]
    tau_text = (
        f" (Kendall tau with the selection space's snapshot ranking: {', '.join(taus)})"
        if taus
        else ""
    )
    if picks.best_in_space.nunique() == 1:
        return f"the feature spaces agree on the best snapshot{tau_text}"
    named = ", ".join(f"{r.extractor} picks {r.best_in_space}" for r in picks.itertuples())
    return f"the feature spaces disagree: {named}{tau_text}"


# What a FID below each reference's floor means, in words.
_BELOW = {
    "train": "closer to the training images than two halves of the real training patients are "
    "to each other",
    "val": "closer to the validation images than the real training images are",
    "test": "closer to the test images than the real training images are",
}


def below_floor_warning(row: Mapping) -> str | None:
    """The warning for a best snapshot's score row whose FID is below its real floor, or None.

    `row` needs model, run, snapshot, extractor, reference, fid, real_floor, real_floor_fid,
    below_real_floor (rows without floors give None).
    """
    if not bool(row.get("below_real_floor", False)):
        return None
    set_a, _, set_b = str(row["real_floor"]).partition(" vs ")
    meaning = _BELOW.get(str(row["reference"]), f"closer to the {row['reference']} images")
    return (
        f"best snapshot {row['snapshot']}: FID {format_fid(float(row['fid']))} against "
        f"{row['reference']} ({row['extractor']} features) is below the "
        f"{floor_label(set_a, set_b)} floor {format_fid(float(row['real_floor_fid']))}: "
        f"{meaning}. Look at the memorisation audit (results/metrics/memorisation/"
        f"{row['model']}/{row['run']}/). The half-vs-half floor carries the larger "
        "small-sample bias of half-size sets, so a value a little below it is no proof of "
        "copying by itself."
    )


def warn_below_floor(row: Mapping) -> None:
    """Log `below_floor_warning` for the best snapshot's selection row, if any."""
    message = below_floor_warning(row)
    if message:
        log.warning("%s", message)


def best_snapshot(sweep: pd.DataFrame) -> str:
    """The snapshot `build_sweep` marked best.

    Raises NoBestSnapshot when none is marked (the message says why and names
    `<model>.use_snapshot` and metrics.references as the keys to change), ValueError when
    several are.
    """
    names = sweep.loc[sweep.best.astype(bool), "snapshot"].unique()
    if len(names) == 0:
        model = str(sweep.model.iloc[0]) if "model" in sweep and len(sweep) else "<model>"
        run = str(sweep.run.iloc[0]) if "run" in sweep and len(sweep) else "?"
        why = str(sweep.best_by.iloc[0]) if "best_by" in sweep and len(sweep) else "none marked"
        why = why.removeprefix("none: ")
        snapshots = ", ".join(dict.fromkeys(sweep.snapshot.astype(str))) if len(sweep) else ""
        fix = (
            "raise metrics.memorisation.max_near_copy_share if you accept the copying"
            if why.startswith("every snapshot with a FID copies")
            else "put train (or val) with at least 2 images of data.synthetic_class in "
            "metrics.references"
        )
        raise NoBestSnapshot(
            f"no snapshot of {model} run {run} can be chosen as best ({why}). Set "
            f"{model}.use_snapshot to one of its snapshots ({snapshots}) instead of best, or "
            f"{fix}."
        )
    if len(names) != 1:
        raise ValueError(f"sweep table marks {len(names)} best snapshots, expected 1")
    if "best_by" in sweep and len(sweep):
        log.info("best snapshot %s: %s", names[0], sweep.best_by.iloc[0])
    return str(names[0])


def best_or_latest(sweep: pd.DataFrame, progress: str) -> tuple[str, str]:
    """The best snapshot, or the latest when none could be chosen; with a note saying which
    (for figures that show one snapshot whatever happens, e.g. the truncation sweep)."""
    try:
        return best_snapshot(sweep), "best"
    except NoBestSnapshot as exc:
        latest = str(sweep.sort_values(progress).snapshot.iloc[-1])
        log.warning("%s Showing the latest snapshot instead: %s", exc, latest)
        return latest, "latest (no best: see the sweep table's best_by)"


def sweep_from_config(
    score_paths: Iterable[str | Path],
    progress: str,
    metrics: dict,
    *,
    floors: pd.DataFrame | None = None,
    resolution: int | None = None,
) -> pd.DataFrame:
    """The sweep table of one run from its score files and the `metrics` config section (the
    selection space is the first extractor, as sample generation's "best" uses), each row
    with its real floor from `floors` (results/metrics/real_reference.csv) at the run's
    `resolution` (px) when given."""
    scores = read_scores(score_paths)
    if floors is not None and resolution is not None:
        runs = scores[["model", "run"]].drop_duplicates().itertuples(index=False)
        scores = attach_floors(scores, floors, {(str(m), str(r)): int(resolution) for m, r in runs})
    return build_sweep(
        scores,
        progress=progress,
        selection_extractor=metrics["extractors"][0],
        collapse_ratio=metrics["collapse_diversity_ratio"],
        collapse_patience=metrics["collapse_patience"],
        max_near_copy_share=metrics.get("max_near_copy_share"),
    )


def write_sweep_table(job: Any, progress: str) -> pd.DataFrame:
    """A generator's sweep job's table (`sweep_from_config` of its inputs scores and floors,
    params metrics and resolution), written to its output `sweep`; returned for its figures."""
    table = sweep_from_config(
        job.input.scores,
        progress,
        job.params.metrics,
        floors=read_reference(job.input.floors),
        resolution=job.params.resolution,
    )
    write_csv(table, job.output.sweep)
    return table
