"""The report's detailed headline tables: the best snapshot of every GAN run and the classifier
arms against real-only, as rows (for results/report/headline.json) and as HTML pages that the
report shows as results of their own (category "Headline tables").

The front page (cxrlib.report.headline) says one line per stage; these pages hold the numbers
behind those lines, with what each column means, each said once.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from cxrlib.classifier.metrics import INSUFFICIENT, MIN_SEEDS, NO_EVIDENCE
from cxrlib.scoring.feasibility import NOT_COMPUTABLE, column_reasons
from cxrlib.scoring.reference import NEAR, format_fid


def _num(value: Any, digits: int = 3) -> str:
    """A number for a table cell with `digits` decimals; '–' for missing values."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return "–"
    return f"{value:.{digits}f}" if math.isfinite(value) else "–"


def _ratio(label: object, value: object) -> str:
    """How the synthetic ratio reads in a table: '–' without synthetic images, else the
    configured value ('balance' with the ratio it came to)."""
    if str(label) in ("0", "0.0", "nan", "None"):
        return "–"
    if str(label) == "balance":
        return f"balance ({_num(value, 2)})"
    return str(label)


# -- generative models -----------------------------------------------------------------------


# Cells of the model table -> (reference split, score column) they show.
_MODEL_CELLS = {
    "FID (train)": ("train", "fid"),
    "FID (test)": ("test", "fid"),
    # the real-vs-real floors beside them (cxrlib.scoring.reference.FLOOR_OF): train half vs
    # half, and real train vs real test
    "real floor (train)": ("train", "real_floor_fid"),
    "real floor (test)": ("test", "real_floor_fid"),
    "KID (train)": ("train", "kid_mean"),
    "precision": ("train", "precision"),
    "recall": ("train", "recall"),
    "density": ("train", "density"),
    "coverage": ("train", "coverage"),
    # what real images score (train half vs half): a perfect generator's values
    "real precision": ("train", "real_floor_precision"),
    "real recall": ("train", "real_floor_recall"),
    "real density": ("train", "real_floor_density"),
    "real coverage": ("train", "real_floor_coverage"),
    "diversity": ("train", "diversity_ratio"),
}


def model_rows(
    sweeps: Iterable[pd.DataFrame], memorisation: Mapping[tuple[str, str], Mapping[str, Any]]
) -> pd.DataFrame:
    """One row per model run and feature space: its best snapshot's scores.

    The best snapshot is the one the sweep marked (lowest FID against the training images in
    the selection space); FID against the test images is shown beside it as the check that the
    choice does not reward memorising the training set. Near-copies come from the memorisation
    audit of the snapshot that feeds the classifier (`use_snapshot`).

    Scores that could not be computed (a reference split too small) are NaN, and the row's
    `not computable` maps each such cell ("FID (test)") to the reason from the sweep table;
    `best by` says how the best snapshot was chosen (reference and feature space). The real
    floors ("real floor (train)": train half vs half, "real floor (test)": real train vs real
    test) come from the sweep's `real_floor_fid` (NaN for tables without floors);
    `below floor (train)` is the sweep's `below_real_floor` of the train row. A run whose
    sweep marks no best snapshot gets one row per feature space with "n/a (why)" as its best
    snapshot and no scores.
    """
    rows = []
    for sweep in sweeps:
        best = sweep[sweep.best.map(_flag)]
        model, run = str(sweep.model.iloc[0]), str(sweep.run.iloc[0])
        progress = "epoch" if "collapse_epoch" in sweep else "kimg"
        audit = memorisation.get((model, run), {})
        best_by = str(sweep.best_by.iloc[0]) if "best_by" in sweep else "lowest FID against train"
        near_copies = f"{audit['n_near_copies']} of {audit['n_fake']}" if audit else "–"
        if best.empty:
            for extractor in sorted(sweep.extractor.astype(str).unique()):
                rows.append(
                    {
                        "model": model,
                        "run": run,
                        "best snapshot": f"n/a ({best_by.removeprefix('none: ')})",
                        "features": extractor,
                        **dict.fromkeys(_MODEL_CELLS),
                        "below floor (train)": False,
                        "collapse at": "–",
                        "near-copies": near_copies,
                        "best by": best_by,
                        "not computable": {},
                    }
                )
            continue
        for extractor, rows_x in best.groupby("extractor", sort=True):
            by_ref = rows_x.set_index("reference")
            values, reasons = {}, {}
            for cell, (reference, column) in _MODEL_CELLS.items():
                if reference not in by_ref.index:
                    values[cell] = None
                    continue
                row = by_ref.loc[reference]
                values[cell] = float(row.get(column, math.nan))
                why = column_reasons(row.get(NOT_COMPUTABLE, "")).get(column)
                if why and not math.isfinite(values[cell]):
                    reasons[cell] = why
            below = "train" in by_ref.index and _flag(
                by_ref.loc["train"].get("below_real_floor", False)
            )
            collapse = sweep.loc[sweep.extractor == extractor, f"collapse_{progress}"].dropna()
            rows.append(
                {
                    "model": model,
                    "run": run,
                    "best snapshot": str(rows_x.snapshot.iloc[0]),
                    "features": str(extractor),
                    # the run's image side, px (score tables with floors carry it)
                    "resolution": _resolution(rows_x),
                    **values,
                    "below floor (train)": below,
                    "collapse at": (
                        f"{progress} {_num(collapse.iloc[0], 0 if progress == 'epoch' else 3)}"
                        if len(collapse)
                        else "none"
                    ),
                    "near-copies": near_copies,
                    "best by": best_by,
                    "not computable": reasons,
                }
            )
    return pd.DataFrame(rows)


def _flag(value: Any) -> bool:
    """A table's boolean cell: True only for a true bool (NaN, None and text are not)."""
    return isinstance(value, bool | np.bool_) and bool(value)


def _resolution(rows: pd.DataFrame) -> int | None:
    """The image side (px) of a sweep's rows, None where the table does not say."""
    if "resolution" not in rows or rows["resolution"].isna().all():
        return None
    return int(rows["resolution"].dropna().iloc[0])


def _cell(value: Any, digits: int, reason: str | None) -> str:
    """A score as shown: the number, "n/a (reason)" when it could not be computed, else '–'."""
    shown = _num(value, digits)
    return f"n/a ({reason})" if shown == "–" and reason else shown


def format_model_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """The table as shown: pairs merged into one cell so that it fits beside the rule graph.

    Scores that could not be computed read "n/a (reason)"; each real floor stands beside the
    score it floors ("real floor train / test": train half vs half / real train vs test);
    "chosen by" says which reference and feature space chose the best snapshot.
    """
    reasons = (
        rows["not computable"] if "not computable" in rows else pd.Series([{}] * len(rows))
    ).map(lambda r: r if isinstance(r, Mapping) else {})

    def pair(a: str, b: str, digits: int, real: bool = False) -> list[str]:
        """ "a / b"; with `real`, "(real x / y)" after it: the real floors of both scores."""
        cells = []
        for i, (x, y, why) in enumerate(zip(rows[a], rows[b], reasons, strict=True)):
            left, right = _cell(x, digits, why.get(a)), _cell(y, digits, why.get(b))
            cell = left if left == right and left.startswith("n/a") else f"{left} / {right}"
            if real:
                fa, fb = (_num(rows[f"real {c}"].iloc[i], digits) for c in (a, b))
                if fa != "–" or fb != "–":
                    cell += f" (real {fa} / {fb})"
            cells.append(cell)
        return cells

    best_by = rows["best by"] if "best by" in rows else pd.Series([""] * len(rows))
    # tables written before these scores existed: shown as missing ('–')
    real_cells = [f"real {c}" for c in ("precision", "recall", "density", "coverage")]
    for cell in ("real floor (train)", "real floor (test)", "density", "coverage", *real_cells):
        if cell not in rows:
            rows = rows.assign(**{cell: math.nan})
    return pd.DataFrame(
        {
            "model / run": rows.model + " / " + rows.run,
            "best snapshot": rows["best snapshot"],
            "chosen by": ["–" if str(b).startswith("none") or not b else b for b in best_by],
            "features": rows.features,
            "px": [
                "–" if r is None or pd.isna(r) else str(int(r))
                for r in (rows["resolution"] if "resolution" in rows else [None] * len(rows))
            ],
            "FID train / test": pair("FID (train)", "FID (test)", 1),
            "real floor train / test": pair("real floor (train)", "real floor (test)", 1),
            "precision / recall": pair("precision", "recall", 2, real=True),
            "density / coverage": pair("density", "coverage", 2, real=True),
            "diversity": [
                _cell(v, 2, why.get("diversity"))
                for v, why in zip(rows.diversity, reasons, strict=True)
            ],
            "collapse at": rows["collapse at"],
            "near-copies": rows["near-copies"],
        }
    )


def _float(value: Any) -> float:
    """A table cell as a float; NaN for None or text."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def generated_vs_test_sentence(fid_test: float, floor_test: float) -> str | None:
    """How a generated-vs-test FID reads against the real train-vs-test FID, or None when
    either is NaN: below it (under 1/1.5 of it), within it (up to the floor), near it (up to
    1.5x) or beyond it."""
    if not (math.isfinite(fid_test) and math.isfinite(floor_test)) or floor_test <= 0:
        return None
    ratio = fid_test / floor_test
    shown = f"FID vs test {format_fid(fid_test)}"
    floor = f"the real train-vs-test distance (FID {format_fid(floor_test)}"  # ")" added below
    if ratio < 1 / 1.5:
        return (
            f"{shown} is below {floor}; {ratio:.2f} times it): the samples are closer to the "
            "test images than the real training images are (at small sample sizes partly "
            "FID's bias; where the test split is shifted, samples unlike the training images, "
            "blurry ones say, can land near the shifted test images), so against test this "
            "score cannot show a generator worse than its training data; judge quality "
            "against train"
        )
    if ratio <= 1.0:
        return (
            f"{shown} is within {floor}): the samples are about as close to the test images "
            "as the real training images are, which fits a good generator but does not show "
            "one; judge quality against train"
        )
    if ratio <= 1.5:
        return (
            f"{shown} is near {floor}; {ratio:.2f} times it): read it against that floor, "
            "not against 0"
        )
    return (
        f"{shown} is {ratio:.1f} times {floor}): the samples are farther from the test images "
        "than the real training images are"
    )


# Precision, recall, density and coverage all below this: samples off the real manifold.
OFF_MANIFOLD = 0.05


def off_manifold_sentence(row: Mapping[str, Any]) -> str:
    """Why precision, recall, density and coverage can all be near 0: reconciled with the
    FID when that is near its floor (FID compares only the features' mean and covariance)."""
    fid, floor = _float(row.get("FID (train)")), _float(row.get("real floor (train)"))
    base = (
        "precision, recall, density and coverage are all near 0: hardly any sample lies within "
        "the nearest-neighbour radius of a real image, nor any real image near a sample, in "
        "this feature space"
    )
    if math.isfinite(fid) and math.isfinite(floor) and floor > 0 and fid <= NEAR * floor:
        return (
            f"{base}, while FID vs train ({format_fid(fid)}) is near its real floor "
            f"({format_fid(floor)}). FID compares only the mean and covariance of the "
            "features, so the two do not conflict: the samples match the real images' feature "
            "statistics as a cloud without resembling any of them closely. Trust the zeros "
            "for how realistic single samples are."
        )
    shown = f" (FID vs train {format_fid(fid)})" if math.isfinite(fid) else ""
    return f"{base}{shown}: the samples are unlike the real images here."


def model_notes(rows: pd.DataFrame) -> list[str]:
    """One sentence per model row with something to say about its floors: the test FID
    against the real train-vs-test distance, and a best snapshot whose FID vs train is below
    the train half-vs-half floor (closer to the training images than real images are to each
    other: look at the memorisation audit)."""
    notes = []
    for row in rows.to_dict("records"):
        if str(row["best snapshot"]).startswith("n/a"):
            continue
        who = f"{row['model']} / {row['run']} ({row['features']} features)"
        test = generated_vs_test_sentence(
            _float(row.get("FID (test)")), _float(row.get("real floor (test)"))
        )
        if test:
            notes.append(f"{who}: {test}.")
        manifold = [_float(row.get(c)) for c in ("precision", "recall", "density", "coverage")]
        if all(math.isfinite(v) and 0 <= v < OFF_MANIFOLD for v in manifold):
            notes.append(f"{who}: {off_manifold_sentence(row)}")
        if row.get("below floor (train)"):
            notes.append(
                f"{who}: the best snapshot {row['best snapshot']} has FID vs train "
                f"{format_fid(float(row['FID (train)']))}, below the real train half-vs-half "
                f"floor ({format_fid(float(row['real floor (train)']))}): closer to the "
                "training images than two halves of the real training patients are to each "
                f"other. Look at the memorisation audit (near-copies: {row['near-copies']}); "
                "the floor's half-size sets carry a larger small-sample bias, so a value a "
                "little below it is no proof of copying by itself."
            )
    return notes


# -- classifier ------------------------------------------------------------------------------

# Below this mean test AUROC the real-only classifier is said to be near chance.
CHANCE_AUROC = 0.6


def _difference(mean: Any, low: Any, high: Any) -> str:
    """'0.012 (-0.020 to 0.044)'; without an interval (fewer than MIN_SEEDS seeds) says so."""
    if _num(low) == "–":
        return f"{_num(mean)} (no interval: fewer than {MIN_SEEDS} seeds)"
    return f"{_num(mean)} ({_num(low)} to {_num(high)})"


def classifier_rows(comparison: pd.DataFrame, metric: str = "auroc") -> pd.DataFrame:
    """One row per arm and ratio: mean ± sd over seeds, the paired difference, the verdict."""
    rows = []
    for r in comparison[comparison.metric == metric].itertuples():
        is_base = r.verdict == "baseline"
        rows.append(
            {
                "arm": r.arm,
                "ratio": _ratio(getattr(r, "ratio_label", r.ratio), r.ratio),
                "seeds": int(r.n_seeds),
                f"{metric.upper()} mean ± sd": f"{_num(r.mean)} ± {_num(r.std)}",
                "difference to real (95% CI over seeds)": (
                    "–" if is_base else _difference(r.diff_mean, r.diff_ci_low, r.diff_ci_high)
                ),
                "patient bootstrap 95% CI": (
                    "–"
                    if is_base or pd.isna(getattr(r, "boot_ci_low", math.nan))
                    else f"{_num(r.boot_ci_low)} to {_num(r.boot_ci_high)}"
                ),
                "verdict": r.verdict,
            }
        )
        reading = str(getattr(r, "reading", "") or "")
        if reading and reading != "nan":  # a synthetic arm with its count-matched control
            rows[-1] |= {
                "difference to duplication (95% CI over seeds)": _difference(
                    r.control_diff_mean, r.control_diff_ci_low, r.control_diff_ci_high
                ),
                "bootstrap 95% CI vs duplication": (
                    f"{_num(r.control_boot_ci_low)} to {_num(r.control_boot_ci_high)}"
                ),
                "verdict vs duplication": r.control_verdict,
                "reading": reading,
            }
    frame = pd.DataFrame(rows)
    return frame.fillna("–") if len(frame) else frame


VERDICT_RULE = (
    "A verdict needs both the interval over seeds (at least "
    f"{MIN_SEEDS} seeds) and the patient bootstrap interval to exclude zero on the same side."
)


def classifier_conclusion(comparison: pd.DataFrame, metric: str = "auroc") -> str:
    """What the comparison supports, and no more."""
    base = comparison[(comparison.metric == metric) & (comparison.verdict == "baseline")]
    chance = ""
    if metric == "auroc" and len(base) and float(base["mean"].iloc[0]) < CHANCE_AUROC:
        chance = (
            f" The real-only classifier's test AUROC ({_num(base['mean'].iloc[0])}) is near "
            "chance (0.5): at this scale it has not learnt the task, so no arm can show a "
            "difference; a larger data set, more epochs or a larger image size are needed "
            "before this comparison means anything."
        )
    rows = comparison[(comparison.metric == metric) & (comparison.verdict != "baseline")]
    if rows.empty:
        return (
            "No synthetic-data arm was trained, so nothing is compared with real-only data."
            + chance
        )

    def names(verdict: str) -> list[str]:
        picked = rows[rows.verdict == verdict]
        labels = picked.ratio_label if "ratio_label" in picked else picked.ratio
        out = []
        for arm, label, value in zip(picked.arm, labels, picked.ratio, strict=True):
            ratio = _ratio(label, value)
            out.append(arm if ratio == "–" else f"{arm} (ratio {ratio})")
        return out

    helped, hurt = names("helped"), names("hurt")
    n_seeds = int(rows.n_seeds.min())
    sentences = []
    if helped:
        sentences.append(f"Adding images helped {metric.upper()} for {', '.join(helped)}.")
    if hurt:
        sentences.append(f"It hurt {metric.upper()} for {', '.join(hurt)}.")
    insufficient = int((rows.verdict == INSUFFICIENT).sum())
    no_evidence = int((rows.verdict == NO_EVIDENCE).sum())
    if insufficient:
        sentences.append(
            f"{insufficient} arm(s) have too few seeds for a verdict ({n_seeds} seed(s); "
            f"a verdict needs at least {MIN_SEEDS})."
        )
    if no_evidence:
        sentences.append(
            f"{'The other' if helped or hurt or insufficient else 'All'} {no_evidence} arm(s) "
            f"show no evidence of a difference from real-only data at this scale "
            f"({n_seeds} seed(s) each); that is not evidence of no effect."
        )
    if "reading" in rows:
        readings = [
            f"{arm} (ratio {_ratio(label, value).split(' ')[0]}): {reading}"
            for arm, label, value, reading in zip(
                rows.arm,
                rows.ratio_label if "ratio_label" in rows else rows.ratio,
                rows.ratio,
                rows.reading.fillna(""),
                strict=True,
            )
            if reading
        ]
        if readings:
            sentences.append(
                "Against the count-matched control (the same number of extra real images of the "
                f"class, duplicated): {'; '.join(readings)}."
            )
    sentences.append(VERDICT_RULE)
    return " ".join(sentences) + chance


# -- the HTML pages --------------------------------------------------------------------------

MODELS_INTRO = (
    "The best snapshot of each run: the lowest FID against the real training images in the "
    "selection feature space (chosen by names the reference and the space), with its scores "
    "in every feature space and its FID against the held-out real test images beside it.",
    "Each FID has its real floor beside it: what real images score against the same "
    "reference in the same space (train: two patient-disjoint halves of the training images; "
    "test: the real training images against the real test images). A generated-vs-test FID "
    "at its floor is as far from the test images as the real training images are.",
    "Precision / recall and density / coverage are against the training images, in the row's "
    "feature space: density about 1 and coverage near 1 for samples spread like the real "
    "images (density above 1: samples crowd dense real regions; coverage is the share of real "
    "images with a sample among their nearest neighbours); (real ...) gives what real images "
    "score in the same comparison (two halves of the training images), the value a perfect "
    "generator reaches here, which small sets pull below 1 for precision, recall and "
    "coverage. Diversity is the samples' mean pairwise feature distance over the real "
    "images'; collapse at is where it fell below 0.5 after its most diverse snapshot (low "
    "values before that are warm-up), or the first snapshot when it never reached 0.5. "
    "Near-copies: samples of the snapshot used for the classifier that the memorisation "
    "audit flags. FIDs are comparable only within one feature space "
    "and resolution (px). Full tables: Scoring, DCGAN and StyleGAN2-ADA.",
)

CLASSIFIER_INTRO = (
    "Every arm is trained on the real training images (plus what the arm adds) and tested "
    "on the real test images only, once per seed. Mean ± sd over seeds; the difference to "
    "real-only is paired by seed (95% t interval over seeds, kept within the metric's range) "
    "and by test patient (paired bootstrap, 95% percentile interval).",
    "real_oversampled is the count-matched control: at each ratio it adds as many images of "
    "the synthetic class as the synthetic arms do, drawn with replacement from the real "
    "training images. A synthetic arm is compared with it at the same ratio, the same way: "
    "'synthetic beat duplication' when both intervals exclude zero above it, 'synthetic only "
    "matched duplication' when it beat real-only but not the control, 'no evidence either "
    "way' otherwise (Pink et al. 2026 found the control beat every synthetic arm).",
)
