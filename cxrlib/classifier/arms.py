"""Collecting the classifier runs of every arm into the study's summary and comparison tables."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from cxrlib.classifier.metrics import METRICS, compare_arms

RUN_PATH = re.compile(r"(?P<arm>[^/]+)/ratio(?P<ratio>[^/]+)/seed(?P<seed>\d+)/[^/]+$")


def run_key(path: str | Path) -> tuple[str, str, int]:
    """(arm, ratio label, seed) from results/classifier/{arm}/ratio{ratio}/seed{seed}/<file>."""
    match = RUN_PATH.search(Path(path).as_posix())
    if match is None:
        raise ValueError(f"{path} is not inside results/classifier/ARM/ratioR/seedS/")
    return match["arm"], match["ratio"], int(match["seed"])


def build_summary(
    metrics_files: Sequence[str | Path], compositions: Sequence[str | Path]
) -> pd.DataFrame:
    """One row per trained model: arm, ratio (label), ratio_value, seed, n_synthetic, and every
    metric with its patient-level bootstrap CI (<metric>, <metric>_ci_low, <metric>_ci_high).
    """
    composition = {run_key(p): json.loads(Path(p).read_text()) for p in compositions}
    rows = []
    for path in metrics_files:
        key = run_key(path)
        table = pd.read_csv(path).set_index("metric")
        comp = composition[key]
        row = {
            "arm": key[0],
            "ratio": key[1],
            "ratio_value": float(comp["ratio_value"]),
            "seed": key[2],
            "n_synthetic": int(comp["synthetic_added"]),
        }
        for metric in METRICS:
            row[metric] = float(table.loc[metric, "value"])
            row[f"{metric}_ci_low"] = float(table.loc[metric, "ci_low"])
            row[f"{metric}_ci_high"] = float(table.loc[metric, "ci_high"])
        rows.append(row)
    order = {"real": 0, "real_classic": 1}
    summary = pd.DataFrame(rows)
    summary["_order"] = summary.arm.map(lambda a: order.get(a, 2))
    return (
        summary.sort_values(["_order", "arm", "ratio_value", "seed"])
        .drop(columns="_order")
        .reset_index(drop=True)
    )


def build_comparison(
    summary: pd.DataFrame, prediction_files: Sequence[str | Path], n_boot: int, seed: int = 0
) -> pd.DataFrame:
    """compare_arms on AUROC against the real-only arm, with the paired test-set bootstrap."""
    predictions = {}
    labels = dict(
        zip(zip(summary.arm, summary.ratio_value, strict=True), summary.ratio, strict=True)
    )
    for path in prediction_files:
        arm, ratio, s = run_key(path)
        value = summary.loc[(summary.arm == arm) & (summary.ratio == ratio), "ratio_value"].iloc[0]
        predictions[(arm, float(value), s)] = pd.read_csv(path, dtype={"patient_id": str})
    frame = summary.drop(columns="ratio").rename(columns={"ratio_value": "ratio"})
    comparison = compare_arms(frame, "real", "auroc", predictions, n_boot=n_boot, seed=seed)
    comparison.insert(
        2,
        "ratio_label",
        [labels.get((a, r), "") for a, r in zip(comparison.arm, comparison.ratio, strict=True)],
    )
    return comparison
