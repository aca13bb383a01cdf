"""Real-to-real reference floors: how far real images are from each other in each feature space.

A FID of 1,100 between generated and real test images reads as a bad generator, unless the real
training images are themselves 1,100 away from the real test images. Every generated-vs-real
score therefore needs the matching real-vs-real distance beside it, computed with the same
formulas (torch-fidelity's, through `cxrlib.scoring.fidelity.score_features`), the same
settings and the same feature files as the scores:

- real train vs real val (held-out training patients): as far as new patients of the training
  distribution are; the floor of a score against val;
- real train vs real test: the floor of a score against test (a generator that reproduced the
  training distribution exactly would score about this against the test images);
- train half vs half: the training patients split in two seeded, patient-disjoint halves of
  about equal image counts; the floor of a score against train. Each half has half the images,
  so this FID carries the larger small-sample bias of half-size sets (FID is biased upwards by
  about tr(cov) x (1/n_a + 1/n_b); Chong & Forsyth 2020): a generator scoring a little below it
  with thousands of samples is not by itself proof of copying.

`set_a` takes the generated images' place in torch-fidelity (its input 1: precision is the
share of set_a inside set_b's manifold, recall the share of set_b inside set_a's), `set_b` the
reference's. FID: Heusel et al. 2017; KID: Binkowski et al. 2018; precision/recall:
Kynkaanniemi et al. 2019; density/coverage: Naeem et al. 2020 (set_a counted in set_b's
k-NN balls, set_b the reference side; for two sets of one distribution density has expectation
1 at any size, only its spread growing as the sets shrink, and coverage has expectation
1 - C(n_b - 1, k) / C(n_a + n_b - 1, k), 1 - 2^-k for n_a = n_b: Naeem et al. 2020, section 3.2,
so coverage floors at other sizes than the scores' differ a little: compare at like sizes).

The shift flag: the test images are "much farther" from the training images than held-out
training patients are when FID(train, test) > `shift_factor` x max(FID(train, val),
FID(half, half)); the larger of the two same-distribution distances is used so that the flag
never fires on small-sample noise alone.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from cxrlib.scoring.feasibility import NOT_COMPUTABLE, format_reasons, parse_reasons
from cxrlib.scoring.features import load_real_features
from cxrlib.scoring.fidelity import score_features
from cxrlib.scoring.settings import ScoreSettings

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
HALF_A, HALF_B = "train_half_a", "train_half_b"
# (set_a, set_b) of every comparison, in table order.
COMPARISONS: tuple[tuple[str, str], ...] = (("train", "val"), ("train", "test"), (HALF_A, HALF_B))
# The floor of a score against each reference split: the real-vs-real comparison whose sets
# stand where the generated set and that reference stand.
FLOOR_OF: dict[str, tuple[str, str]] = {
    "train": (HALF_A, HALF_B),
    "val": ("train", "val"),
    "test": ("train", "test"),
}
REFERENCE_COLUMNS = [
    "extractor",
    "resolution",
    "set_a",
    "set_b",
    "n_a",
    "n_b",
    "fid",
    "kid_mean",
    "kid_std",
    "precision",
    "recall",
    "density",
    "coverage",
    NOT_COMPUTABLE,
]
# Up to this ratio FID(train, test) / max(FID(train, val), FID(half, half)) reads "about as
# far" in words; above it "farther", and above metrics.shift_factor it is flagged.
NEAR = 1.5
# Columns added to score tables (sweeps, summary) by `attach_floors`.
# real_floor_<score>: the floor comparison's value of each score (FLOOR_SCORES).
FLOOR_SCORES = ("fid", "kid_mean", "precision", "recall", "density", "coverage")
FLOOR_COLUMNS = ["resolution", "real_floor", *(f"real_floor_{s}" for s in FLOOR_SCORES)]
_PHRASES = {
    ("train", "val"): "real train vs val",
    ("train", "test"): "real train vs test",
    (HALF_A, HALF_B): "real train half vs half",
}


def reference_settings(metrics: Mapping[str, object]) -> ScoreSettings:
    """The `config["metrics"]` values the floors are computed with: those of the scores (KID
    subsets and subset size, precision/recall's and density/coverage's k, the seed, which also
    splits the halves)."""
    return ScoreSettings(
        seed=int(metrics["seed"]),
        kid_subsets=int(metrics["kid_subsets"]),
        kid_subset_size=int(metrics["kid_subset_size"]),
        prc_neighborhood=int(metrics["prc_neighborhood"]),
        dc_neighborhood=int(metrics["dc_neighborhood"]),
    )


class RealReferenceError(ValueError):
    """The feature files and the manifest do not fit together; the message says how."""


def floor_label(set_a: str, set_b: str) -> str:
    """How a comparison reads in figures and sentences: "real train half vs half"."""
    return _PHRASES.get((set_a, set_b), f"real {set_a} vs {set_b}")


def patient_halves(patient_ids: Sequence[str], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Row indices (into `patient_ids`) of two patient-disjoint halves of one split.

    Patients are shuffled with `np.random.default_rng(seed)` (same IDs + same seed = same
    halves, whatever their order in the input) and dealt one by one to the half with fewer
    images so far, so the halves hold about equal numbers of images (they differ by at most the
    largest patient's count). Fewer than 2 patients: the second half is empty.
    """
    ids = np.asarray(patient_ids).astype(str)
    patients, counts = np.unique(ids, return_counts=True)  # sorted: input order does not matter
    order = np.random.default_rng(seed).permutation(len(patients))
    sizes = [0, 0]
    side = {}
    for i in order:
        half = 0 if sizes[0] <= sizes[1] else 1
        side[patients[i]] = half
        sizes[half] += int(counts[i])
    halves = np.array([side[p] for p in ids], dtype=int)
    return np.flatnonzero(halves == 0), np.flatnonzero(halves == 1)


def compare(
    set_a: np.ndarray,
    set_b: np.ndarray,
    settings: ScoreSettings,
    *,
    name_a: str,
    name_b: str,
) -> dict[str, object]:
    """One table row's scores: (N_a, D) set_a in the generated images' place, (N_b, D) set_b
    in the reference's; NaN with the reason (not_computable) where a set is too small."""
    scores = score_features(
        set_b,
        set_a,
        kid_subsets=settings.kid_subsets,
        kid_preferred_subset_size=settings.kid_subset_size,
        prc_neighborhood=settings.prc_neighborhood,
        dc_neighborhood=settings.dc_neighborhood,
        seed=settings.seed,
        real_name=name_b,
        fake_name=name_a,
    )
    return {
        "n_a": len(set_a),
        "n_b": len(set_b),
        "fid": scores.fid,
        "kid_mean": scores.kid_mean,
        "kid_std": scores.kid_std,
        "precision": scores.precision,
        "recall": scores.recall,
        "density": scores.density,
        "coverage": scores.coverage,
        NOT_COMPUTABLE: format_reasons(scores.reasons),
    }


def reference_rows(
    features: Mapping[str, np.ndarray],
    train_patients: Sequence[str],
    settings: ScoreSettings,
    *,
    extractor: str,
    resolution: int,
    label: str = "",
) -> list[dict[str, object]]:
    """The three comparisons of one (extractor, resolution).

    `features` maps "train", "val", "test" to (N, D) real features of `label`'s images;
    `train_patients` holds the patient ID of each train row, in the same order (N_train,).
    """
    train = features["train"]
    if len(train_patients) != len(train):
        raise RealReferenceError(
            f"{len(train_patients)} patient IDs for {len(train)} training feature rows"
        )
    half_a, half_b = patient_halves(train_patients, settings.seed)
    sets = {**features, HALF_A: train[half_a], HALF_B: train[half_b]}
    suffix = f"/{label}" if label else ""
    names = {
        "train": f"train{suffix}",
        "val": f"val{suffix}",
        "test": f"test{suffix}",
        HALF_A: f"half A of the train{suffix} patients",
        HALF_B: f"half B of the train{suffix} patients",
    }
    rows = []
    for set_a, set_b in COMPARISONS:
        row = {
            "extractor": extractor,
            "resolution": int(resolution),
            "set_a": set_a,
            "set_b": set_b,
        }
        row.update(
            compare(sets[set_a], sets[set_b], settings, name_a=names[set_a], name_b=names[set_b])
        )
        rows.append(row)
        log.info(
            "%s %d px, %s (%d) vs %s (%d): FID %.4g, KID %.4g, precision %.3f, recall %.3f, "
            "density %.3f, coverage %.3f",
            extractor,
            resolution,
            set_a,
            row["n_a"],
            set_b,
            row["n_b"],
            row["fid"],
            row["kid_mean"],
            row["precision"],
            row["recall"],
            row["density"],
            row["coverage"],
        )
        for name, detail in parse_reasons(row[NOT_COMPUTABLE]).items():
            log.warning("%s vs %s: %s not computable (NaN): %s", set_a, set_b, name, detail)
    return rows


def feature_patients(paths: Sequence[str], manifest: pd.DataFrame) -> np.ndarray:
    """Patient ID of each feature row, by its source path in results/data/manifest.csv.

    Raises RealReferenceError naming a path the manifest lacks (features and data out of step).
    """
    by_path = dict(
        zip(manifest["path"].astype(str), manifest["patient_id"].astype(str), strict=True)
    )
    missing = [p for p in map(str, paths) if p not in by_path]
    if missing:
        raise RealReferenceError(
            f"{len(missing)} feature rows have no manifest entry (first: {missing[0]}); the "
            "real_features files are older than results/data/manifest.csv: rerun them"
        )
    return np.array([by_path[str(p)] for p in paths])


def patient_warnings(
    train_paths: Sequence[str], test_paths: Sequence[str], manifest: pd.DataFrame
) -> list[str]:
    """What makes the floors less than they claim, in words (empty when nothing does).

    - Training images whose patient ID is the file name (manifest `patient_id_source`
      "stem": no data.patient_id_patterns entry matched): each counts as its own patient,
      so the "patient-disjoint" halves may share people and FID(half, half) reads low.
    - Patients with images in both train and test (results/data/patient_collisions.csv):
      FID(train, test) then reads lower than for disjoint patients.
    """
    rows = manifest.set_index(manifest["path"].astype(str))
    train = rows.loc[[str(p) for p in train_paths]]
    test = rows.loc[[str(p) for p in test_paths if str(p) in rows.index]]
    out = []
    if "patient_id_source" in train:
        unparsed = int((train["patient_id_source"].astype(str) == "stem").sum())
        if unparsed:
            out.append(
                f"{unparsed} of {len(train)} training images have no patient ID from "
                "data.patient_id_patterns (the file name stands in): the train halves are "
                "split by image for those, not by patient, so FID(half, half) may read low. "
                "Add a pattern that extracts the patient from these file names."
            )
    shared = sorted(set(train["patient_id"].astype(str)) & set(test["patient_id"].astype(str)))
    if shared:
        out.append(
            f"{len(shared)} patients have images in both train and test (first: {shared[0]}; "
            "results/data/patient_collisions.csv): FID(train, test) includes the same "
            "people on both sides and reads lower than for disjoint patients."
        )
    return out


def real_reference_table(
    files: Mapping[tuple[str, int, str], str | Path],
    manifest: pd.DataFrame,
    settings: ScoreSettings,
    *,
    label: str = "",
) -> pd.DataFrame:
    """results/metrics/real_reference.csv from the real_features files.

    `files` maps (extractor, resolution, split) to a real_features file, for every split of
    SPLITS of each (extractor, resolution). One row per comparison (COMPARISONS) and
    (extractor, resolution), columns REFERENCE_COLUMNS.
    """
    groups = sorted({(extractor, int(res)) for extractor, res, _ in files})
    rows = []
    for extractor, res in groups:
        missing = [s for s in SPLITS if (extractor, res, s) not in files]
        if missing:
            raise RealReferenceError(
                f"no real features of {', '.join(missing)} for {extractor} {res} px"
            )
        features = {s: load_real_features(files[(extractor, res, s)]) for s in SPLITS}
        paths = {}
        for split in ("train", "test"):
            with np.load(files[(extractor, res, split)], allow_pickle=False) as npz:
                paths[split] = npz["paths"].astype(str)
        patients = feature_patients(paths["train"], manifest)
        if not rows:  # the same images at every extractor and resolution: say it once
            for warning in patient_warnings(paths["train"], paths["test"], manifest):
                log.warning("%s", warning)
        rows += reference_rows(
            features, patients, settings, extractor=extractor, resolution=res, label=label
        )
    return pd.DataFrame(rows, columns=REFERENCE_COLUMNS)


def read_reference(path: str | Path) -> pd.DataFrame:
    """A real_reference.csv back, `not_computable` as text ("" where all was computed)."""
    table = pd.read_csv(path)
    table[NOT_COMPUTABLE] = table[NOT_COMPUTABLE].fillna("").astype(str)
    return table


def _row(
    table: pd.DataFrame, extractor: str, resolution: int, pair: tuple[str, str]
) -> pd.Series | None:
    hit = table[
        (table.extractor.astype(str) == str(extractor))
        & (table.resolution.astype(int) == int(resolution))
        & (table.set_a == pair[0])
        & (table.set_b == pair[1])
    ]
    return None if hit.empty else hit.iloc[0]


def attach_floors(
    scores: pd.DataFrame,
    floors: pd.DataFrame | None,
    resolutions: Mapping[tuple[str, str], int],
) -> pd.DataFrame:
    """Score rows with their reference's real floor beside them (FLOOR_COLUMNS, `below_real_floor`).

    `resolutions` maps (model, run) to the run's image side (px). Each row gets the
    comparison FLOOR_OF its reference at its extractor and resolution: `real_floor` names it
    ("train_half_a vs train_half_b"), `real_floor_fid`, `real_floor_kid_mean`,
    `real_floor_precision` ... `real_floor_coverage` are its values (NaN where not
    computable or `floors` is None), `below_real_floor` is True where the row's FID is below
    the floor's (False where either is NaN).
    """
    out = scores.copy()
    res = [
        resolutions.get((str(m), str(r)), math.nan)
        for m, r in zip(out["model"], out["run"], strict=True)
    ]
    out["resolution"] = pd.array(
        [int(v) if math.isfinite(v) else pd.NA for v in map(float, res)], dtype="Int64"
    )
    labels = []
    values: dict[str, list[float]] = {score: [] for score in FLOOR_SCORES}
    for row, resolution in zip(out.itertuples(), res, strict=True):
        pair = FLOOR_OF.get(str(row.reference))
        found = None
        if pair is not None and floors is not None and math.isfinite(float(resolution)):
            found = _row(floors, row.extractor, int(resolution), pair)
        labels.append(f"{pair[0]} vs {pair[1]}" if pair else "")
        for score, column in values.items():
            value = found.get(score, math.nan) if found is not None else math.nan
            column.append(float(value) if value is not None else math.nan)
    out["real_floor"] = labels
    for score, column in values.items():
        out[f"real_floor_{score}"] = column
    fid = out["fid"].to_numpy(float)
    floor = out["real_floor_fid"].to_numpy(float)
    with np.errstate(invalid="ignore"):
        out["below_real_floor"] = np.isfinite(fid) & np.isfinite(floor) & (fid < floor)
    return out


# --------------------------------------------------------------------------------------------
# The train/test shift: a data finding
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ShiftFinding:
    """How far real test images are from real training images, against two same-distribution
    distances, in one feature space; `flagged` None when it cannot be judged (`why`)."""

    extractor: str
    resolution: int
    fid_train_test: float
    fid_train_val: float
    fid_halves: float
    shift_factor: float
    flagged: bool | None
    why: str = ""

    @property
    def baseline(self) -> float:
        """The larger computable same-distribution FID (NaN when neither is)."""
        values = [v for v in (self.fid_train_val, self.fid_halves) if math.isfinite(v)]
        return max(values) if values else math.nan

    @property
    def ratio(self) -> float:
        """FID(train, test) over `baseline`; NaN when either is NaN, inf over a zero baseline."""
        if not (math.isfinite(self.fid_train_test) and math.isfinite(self.baseline)):
            return math.nan
        return math.inf if self.baseline <= 0 else self.fid_train_test / self.baseline


def judge_shift(
    fid_train_test: float,
    fid_train_val: float,
    fid_halves: float,
    shift_factor: float,
    *,
    extractor: str = "",
    resolution: int = 0,
) -> ShiftFinding:
    """FID(train, test) > `shift_factor` x max(FID(train, val), FID(half, half)) -> flagged.

    A NaN same-distribution FID is left out of the max; with neither, or FID(train, test) NaN,
    `flagged` is None and `why` says what is missing.
    """
    if shift_factor <= 0:
        raise ValueError(f"metrics.shift_factor must be > 0, got {shift_factor}")
    values = [float(v) for v in (fid_train_test, fid_train_val, fid_halves)]
    finding = ShiftFinding(extractor, int(resolution), *values, float(shift_factor), None)
    why = []
    if not math.isfinite(values[0]):
        why.append("FID between real train and real test could not be computed")
    if not math.isfinite(finding.baseline):
        why.append("neither FID(train, val) nor FID(half, half) could be computed")
    if why:
        return replace(finding, why="; ".join(why))
    return replace(finding, flagged=bool(values[0] > shift_factor * finding.baseline))


def shift_findings(table: pd.DataFrame, shift_factor: float) -> list[ShiftFinding]:
    """One ShiftFinding per (extractor, resolution) of a real_reference table, sorted."""
    out = []
    groups = table[["extractor", "resolution"]].drop_duplicates().itertuples(index=False)
    for extractor, resolution in sorted((str(e), int(r)) for e, r in groups):

        def fid(pair: tuple[str, str], e: str = extractor, r: int = resolution) -> float:
            row = _row(table, e, r, pair)
            return math.nan if row is None else float(row.fid)

        out.append(
            judge_shift(
                fid(("train", "test")),
                fid(("train", "val")),
                fid((HALF_A, HALF_B)),
                shift_factor,
                extractor=extractor,
                resolution=resolution,
            )
        )
    return out


def format_fid(value: float) -> str:
    """A FID as a sentence shows it: 1,067 / 48.2 / 2.3 / 0.042; "n/a" for NaN."""
    if not math.isfinite(value):
        return "n/a"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 0.1:
        return f"{value:.1f}"
    return f"{value:.2g}"


def _times(ratio: float) -> str:
    """A ratio as words show it: 222 / 3.4 / 1.07."""
    if not math.isfinite(ratio):
        return "infinitely many" if ratio > 0 else "n/a"
    return f"{ratio:,.0f}" if ratio >= 10 else f"{ratio:.2g}" if ratio < 1 else f"{ratio:.1f}"


def shift_sentence(finding: ShiftFinding) -> str:
    """The finding in words a reader cannot misread, with the numbers.

    Flagged: "The test images differ from the training images (cxr features, 64 px): FID
    1,067 between real train and real test images vs 2.3 for held-out training patients (train
    vs val) and 4.8 between two halves of the training patients, 222 times the larger of the
    two ...". Not flagged: "about as far" (ratio up to NEAR) or "farther ...; not flagged".
    """
    where = f"{finding.extractor} features, {finding.resolution} px"
    numbers = (
        f"FID {format_fid(finding.fid_train_test)} between real train and real test images vs "
        f"{format_fid(finding.fid_train_val)} for held-out training patients (train vs val) and "
        f"{format_fid(finding.fid_halves)} between two halves of the training patients"
    )
    if finding.flagged is None:
        return f"The train/test distance could not be judged ({where}): {finding.why}."
    if finding.flagged:
        return (
            f"The test images differ from the training images ({where}): {numbers}, "
            f"{_times(finding.ratio)} times the larger of the two (flagged: above "
            f"metrics.shift_factor = {finding.shift_factor:g}). So read FID vs test against "
            f"{format_fid(finding.fid_train_test)}, what the real training images score, not "
            "against 0; a generated-vs-test FID near it fits a good generator but does not "
            "show one (judge quality against train)."
        )
    if finding.ratio <= NEAR:
        return (
            f"The test images are about as far from the training images as held-out training "
            f"patients are ({where}): {numbers} (not flagged: at most metrics.shift_factor = "
            f"{finding.shift_factor:g} times the larger of the two)."
        )
    return (
        f"The test images are farther from the training images than held-out training "
        f"patients are ({where}): {numbers}, {_times(finding.ratio)} times the larger of the "
        f"two; not flagged (the flag needs more than metrics.shift_factor = "
        f"{finding.shift_factor:g} times)."
    )


def log_findings(findings: Iterable[ShiftFinding]) -> None:
    """Each finding in the job's log: a warning when flagged, else info."""
    for finding in findings:
        (log.warning if finding.flagged else log.info)("data shift: %s", shift_sentence(finding))
