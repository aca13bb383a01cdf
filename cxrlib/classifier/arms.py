"""Collecting the classifier runs of every arm into the study's summary and comparison tables."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from cxrlib.classifier.metrics import INSUFFICIENT, METRICS, compare_arms, paired_difference

# The count-matched control arm (cxrlib.classifier.mixing "oversampled"); its name is the
# plan's (cxrlib.plan.study.CONTROL_ARM), written here too: the classifier stage imports no plan.
CONTROL_ARM = "real_oversampled"

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
    order = {"real": 0, "real_classic": 1, CONTROL_ARM: 2}
    summary = pd.DataFrame(rows)
    summary["_order"] = summary.arm.map(lambda a: order.get(a, 3))
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
    return with_control(comparison, frame, predictions, n_boot=n_boot, seed=seed)


# Columns of a synthetic arm's comparison with the count-matched control at its ratio.
CONTROL_COLUMNS = (
    "control_diff_mean", "control_diff_ci_low", "control_diff_ci_high", "control_boot_ci_low",
    "control_boot_ci_high", "control_boot_pvalue", "control_verdict", "reading",
)  # fmt: skip


def control_reading(verdict_real: str, verdict_control: str) -> str:
    """A synthetic arm in one phrase, from its verdicts against real-only and against the
    count-matched control (the same number of duplicated real images)."""
    if verdict_control == "helped":
        return "synthetic beat duplication"
    if verdict_control == "hurt":
        return "duplication beat synthetic"
    if verdict_control == INSUFFICIENT or verdict_real == INSUFFICIENT:
        return "too few seeds to tell"
    if verdict_real == "helped":
        return "synthetic only matched duplication"
    return "no evidence either way"


def with_control(
    comparison: pd.DataFrame,
    frame: pd.DataFrame,
    predictions: dict,
    *,
    n_boot: int,
    seed: int = 0,
    metric: str = "auroc",
) -> pd.DataFrame:
    """`comparison` with each synthetic arm also compared with the control arm
    (CONTROL_ARM) at the same ratio, paired by seed and by test patient (CONTROL_COLUMNS;
    empty for arms without a control)."""
    out = comparison.copy()
    for column in CONTROL_COLUMNS:
        out[column] = "" if column in ("control_verdict", "reading") else math.nan
    control = frame[frame.arm == CONTROL_ARM]
    for i, row in out.iterrows():
        if row.arm in ("real", "real_classic", CONTROL_ARM):
            continue
        base = control[np.isclose(control.ratio, row.ratio)]
        if base.empty:
            continue
        arm_rows = frame[(frame.arm == row.arm) & np.isclose(frame.ratio, row.ratio)]
        result = paired_difference(
            (row.arm, float(row.ratio), arm_rows.set_index("seed")[metric].astype(float)),
            (CONTROL_ARM, float(base.ratio.iloc[0]), base.set_index("seed")[metric].astype(float)),
            metric,
            predictions,
            n_boot=n_boot,
            seed=seed,
        )
        out.loc[i, "control_diff_mean"] = result["diff_mean"]
        out.loc[i, "control_diff_ci_low"] = result["diff_ci_low"]
        out.loc[i, "control_diff_ci_high"] = result["diff_ci_high"]
        out.loc[i, "control_boot_ci_low"] = result.get("boot_ci_low", math.nan)
        out.loc[i, "control_boot_ci_high"] = result.get("boot_ci_high", math.nan)
        out.loc[i, "control_boot_pvalue"] = result.get("boot_pvalue", math.nan)
        out.loc[i, "control_verdict"] = result["verdict"]
        out.loc[i, "reading"] = control_reading(str(row.verdict), result["verdict"])
    return out
