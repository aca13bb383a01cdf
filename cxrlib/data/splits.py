"""Duplicates, patient-level validation split and train/test patient-ID collisions.

All functions take and return pandas frames with one row per accepted image and at least the
columns `path`, `source_split` (the folder it came from), `label`, `patient_id`, `sha256`.
Nothing is dropped without a row in the returned `rejected` frame saying why.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

# Which copy of a duplicate survives: training data keep it; the evaluation side loses it so it
# cannot leak a training image into validation or test.
SPLIT_PRIORITY: dict[str, int] = {"train": 0, "val": 1, "test": 2}
REJECTED_COLUMNS: list[str] = ["path", "reason"]


@dataclass(frozen=True)
class SplitResult:
    """Images with their final `split`, the rows removed (path, reason), and ID collisions."""

    images: pd.DataFrame
    rejected: pd.DataFrame
    collisions: pd.DataFrame


def _rejected(paths: list[str], reasons: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"path": paths, "reason": reasons}, columns=REJECTED_COLUMNS)


def resolve_duplicates(images: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Collapse pixel-identical images; return (kept, rejected).

    - same pixels under different labels: every copy is rejected (the label is unknowable);
    - same split: the first path (sorted) is kept, the others are collapsed into it;
    - across splits: the copy on the training side is kept, evaluation copies are removed.
    """
    order = images.assign(_prio=images["source_split"].map(SPLIT_PRIORITY).fillna(9))
    order = order.sort_values(["sha256", "_prio", "path"], kind="stable")
    paths: list[str] = []
    reasons: list[str] = []
    drop: set[str] = set()
    # Only hashes seen twice or more need a look; grouping all rows cost ~0.2 ms an image.
    repeated = order[order.duplicated("sha256", keep=False)]
    for _, group in repeated.groupby("sha256", sort=False):
        group_labels = sorted(group["label"].unique())
        if len(group_labels) > 1:
            for path in group["path"]:
                others = ", ".join(p for p in group["path"] if p != path)
                reasons.append(
                    f"pixel-identical images labelled {' and '.join(group_labels)} ({others}); "
                    "the label is ambiguous: fix or remove the wrong copy"
                )
                paths.append(path)
                drop.add(path)
            continue
        keep = group.iloc[0]
        for _, row in group.iloc[1:].iterrows():
            if row["source_split"] == keep["source_split"]:
                reason = f"pixel-identical duplicate of {keep['path']} in the same split; collapsed"
            else:
                reason = (
                    f"pixel-identical to {keep['path']} in {keep['source_split']}; removed from "
                    f"{row['source_split']} so a training image cannot leak into evaluation"
                )
            paths.append(row["path"])
            reasons.append(reason)
            drop.add(row["path"])
    kept = images[~images["path"].isin(drop)].copy()
    return kept, _rejected(paths, reasons)


def carve_validation(pool: pd.DataFrame, val_fraction: float, seed: int) -> pd.Series:
    """Pick validation patients from the training pool; return a boolean mask (True = val).

    Patients are grouped by the set of labels their images carry and shuffled with `seed`; within
    each group whole patients are moved to validation until about `val_fraction` of that group's
    images are there. So validation is stratified by class, and no patient is in two splits.
    At least one patient per group goes to validation when the group has two or more.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"data.val_fraction must be in [0, 1), not {val_fraction}")
    mask = pd.Series(False, index=pool.index)
    if val_fraction == 0.0 or pool.empty:
        return mask
    per_patient = pool.groupby("patient_id").agg(
        n=("path", "size"), labels=("label", lambda s: "|".join(sorted(set(s))))
    )
    rng = np.random.default_rng(seed)
    chosen: list[str] = []
    for labels in sorted(per_patient["labels"].unique()):
        group = per_patient[per_patient["labels"] == labels].sort_index()
        if len(group) < 2:
            continue
        order = group.index.to_numpy()[rng.permutation(len(group))]
        target = val_fraction * group["n"].sum()
        picked: list[str] = []
        taken = 0
        for pid in order:
            if taken >= target:
                break
            picked.append(pid)
            taken += int(group.at[pid, "n"])
        if taken >= group["n"].sum():  # never empty a group's training side
            taken -= int(group.at[picked.pop(), "n"])
        share = taken / group["n"].sum()
        if share > max(2 * val_fraction, val_fraction + 0.1):  # whole patients overshoot
            log.warning(
                "validation took %.0f%% of the %s training images (%d of %d patients; "
                "data.val_fraction %g): their patients are few, with many images each. Lower "
                "data.val_fraction, or give a val/ folder with data.val_source: given",
                100 * share, labels, len(picked), len(group), val_fraction,
            )  # fmt: skip
        chosen.extend(picked)
    mask[pool["patient_id"].isin(chosen)] = True
    return mask


def find_collisions(images: pd.DataFrame) -> pd.DataFrame:
    """Patient IDs that occur in more than one split: one row per (patient, split) with counts."""
    splits_per_patient = images.groupby("patient_id")["split"].nunique()
    shared = splits_per_patient[splits_per_patient > 1].index
    rows = images[images["patient_id"].isin(shared)]
    if rows.empty:
        return pd.DataFrame(columns=["patient_id", "split", "label", "n_images"])
    return rows.groupby(["patient_id", "split", "label"]).size().rename("n_images").reset_index()


def assign_splits(
    images: pd.DataFrame,
    *,
    val_source: str,
    val_fraction: float,
    seed: int,
    test_id_collisions: str,
) -> SplitResult:
    """Deduplicate, then give every image its final split.

    `val_source`: "carve" merges any given val/ folder into the training pool and carves a
    patient-level validation split from it (the Kaggle val/ holds only 16 images); "given" keeps
    the folders as they are. The test split is kept as given. Patient IDs that occur in test and
    in train/val are reported (`collisions`); with `test_id_collisions: exclude_from_train`
    those patients' images leave train/val instead, so no patient is in two splits.
    """
    if val_source not in ("carve", "given"):
        raise ValueError(f"data.val_source must be 'carve' or 'given', not {val_source!r}")
    if test_id_collisions not in ("report", "exclude_from_train"):
        raise ValueError(
            "data.test_id_collisions must be 'report' or 'exclude_from_train', "
            f"not {test_id_collisions!r}"
        )
    kept, rejected = resolve_duplicates(images)
    kept = kept.sort_values("path", kind="stable").reset_index(drop=True)
    if val_source == "carve":
        kept["split"] = kept["source_split"].replace({"val": "train"})
        pool = kept[kept["split"] == "train"]
        # Test patients never go to validation: carving them there would just move a collision.
        kept.loc[pool.index[carve_validation(pool, val_fraction, seed)], "split"] = "val"
    else:
        kept["split"] = kept["source_split"]
    test_ids = set(kept.loc[kept["split"] == "test", "patient_id"])
    if test_id_collisions == "exclude_from_train":
        leaving = (kept["split"] != "test") & kept["patient_id"].isin(test_ids)
        removed = _rejected(
            kept.loc[leaving, "path"].tolist(),
            [
                f"patient {pid} also has images in test; excluded from {split} "
                "(data.test_id_collisions: exclude_from_train)"
                for pid, split in zip(
                    kept.loc[leaving, "patient_id"], kept.loc[leaving, "split"], strict=True
                )
            ],
        )
        rejected = pd.concat([rejected, removed], ignore_index=True)
        kept = kept[~leaving].reset_index(drop=True)
    return SplitResult(images=kept, rejected=rejected, collisions=find_collisions(kept))
