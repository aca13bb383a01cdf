"""Sweep tables: one row per snapshot, the best snapshot marked and the collapse epoch found."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from cxrlib.metrics.diversity import detect_collapse


def read_scores(paths: Iterable[str | Path]) -> pd.DataFrame:
    frames = [pd.read_csv(p) for p in paths]
    if not frames:
        raise ValueError("no score files given")
    return pd.concat(frames, ignore_index=True)


def build_sweep(
    scores: pd.DataFrame,
    *,
    progress: str,
    selection_extractor: str,
    selection_reference: str = "train",
    collapse_ratio: float = 0.5,
    collapse_patience: int = 1,
) -> pd.DataFrame:
    """Scores of one run -> the sweep table.

    `progress` is the column that orders snapshots ("epoch" or "kimg"). `best` marks, in every
    row of that snapshot, the snapshot with the lowest FID against the real `selection_reference`
    images in `selection_extractor`'s space (the one sample generation uses for "best").
    `collapse_epoch` is where the samples' diversity, in each extractor's space against the
    training images, stays below `collapse_ratio` of the real images' (same for every row of an
    extractor; NaN when never).
    """
    sweep = scores.sort_values([progress, "extractor", "reference"]).reset_index(drop=True)
    chosen = sweep[
        (sweep.extractor == selection_extractor) & (sweep.reference == selection_reference)
    ]
    if chosen.empty:
        raise ValueError(
            f"no scores for extractor {selection_extractor!r} against {selection_reference!r}"
        )
    best_snapshot = chosen.loc[chosen.fid.idxmin(), "snapshot"]
    sweep["best"] = sweep.snapshot == best_snapshot
    sweep[f"collapse_{progress}"] = np.nan
    sweep["collapsed"] = False
    for extractor, rows in sweep[sweep.reference == selection_reference].groupby("extractor"):
        rows = rows.sort_values(progress)
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
    return sweep


def best_snapshot(sweep: pd.DataFrame) -> str:
    names = sweep.loc[sweep.best, "snapshot"].unique()
    if len(names) != 1:
        raise ValueError(f"sweep table marks {len(names)} best snapshots, expected 1")
    return str(names[0])


def sweep_from_config(
    score_paths: Iterable[str | Path], progress: str, metrics: dict
) -> pd.DataFrame:
    """The sweep table of one run from its score files and the `metrics` config section (the
    selection space is the first extractor, as sample generation's "best" uses)."""
    return build_sweep(
        read_scores(score_paths),
        progress=progress,
        selection_extractor=metrics["extractors"][0],
        collapse_ratio=metrics["collapse_diversity_ratio"],
        collapse_patience=metrics["collapse_patience"],
    )
