"""The report's front page: one line per stage's verdict and one summary figure, from the result
tables.

`snakemake --report` shows `report/workflow.rst` (a Jinja2 template over the config) as the
front page. The `headline` rule appends a "Headline results" section computed here from the
run's tables (data counts, the sweeps, the memorisation audits, the classifier comparison, the
runtimes) and writes the whole page to `results/report/workflow.rst`, which the Snakefile names
as the report text once it exists. Numbers are never typed by hand, so the front page cannot
disagree with the tables it summarises.

The page must fit a laptop's window: Snakemake's report centres its front page vertically
(snakemake#2782), so a page taller than the window used to open mid-text with its top out of
reach. The template carries a style that aligns tall content to the top instead, and this
section stays short (about 300 words): one line per stage; the tables behind the lines are
report results of their own (cxrlib.report.headline_tables).
"""

from __future__ import annotations

import base64
import json
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cxrlib.classifier.metrics import MIN_SEEDS, NO_EVIDENCE
from cxrlib.io import write_atomic
from cxrlib.plan.generators import display_name
from cxrlib.report.headline_tables import (
    CHANCE_AUROC,
    _flag,
    _num,
    _ratio,
    model_notes,
)
from cxrlib.scoring.reference import ShiftFinding, format_fid, shift_sentence

_RST_SPECIAL = re.compile(r"([\\`*_|<>\[\]])")

# Arms named one by one on the classifier's line; with more, only those with a verdict.
MAX_ARMS_NAMED = 4


def rst_escape(text: object) -> str:
    """Text safe inside RST (no accidental emphasis, references or substitutions) and Jinja2."""
    out = _RST_SPECIAL.sub(r"\\\1", str(text))
    # the report text is rendered by Jinja2 before docutils: never open a Jinja2 tag; a
    # literal brace is given to Jinja2 as an expression that prints it
    return re.sub(r"\{", "{{ '{' }}", out) if re.search(r"\{[{%#]", out) else out


# -- data ------------------------------------------------------------------------------------


def data_summary(class_counts: pd.DataFrame, rejected: pd.DataFrame) -> dict[str, Any]:
    """Images and patients per split and label, and how many files were rejected."""
    splits = {}
    for split, rows in class_counts.groupby("split", sort=False):
        splits[str(split)] = {
            str(r.label): {"images": int(r.n_images), "patients": int(r.n_patients)}
            for r in rows.itertuples()
        }
    return {
        "images": int(class_counts.n_images.sum()),
        "splits": splits,
        "rejected": len(rejected),
    }


def data_line(
    summary: Mapping[str, Any], shift: Sequence[ShiftFinding] = (), phantom_test_shift: float = 0
) -> str:
    """The data stage in one line: counts per split, rejected files, the train/test distance."""
    parts = []
    for split in ("train", "val", "test"):
        labels = summary["splits"].get(split, {})
        counts = " + ".join(f"{n['images']} {label}" for label, n in labels.items())
        parts.append(f"{split} {counts}")
    line = (
        f"{summary['images']} prepared images ({'; '.join(parts)}), split by patient; "
        f"{summary['rejected']} file(s) rejected."
    )
    judged = [f for f in shift if f.flagged is not None]
    if judged:
        flagged = [f for f in judged if f.flagged]
        each = "; ".join(
            f"{f.extractor}, {f.resolution} px: FID {format_fid(f.fid_train_test)}, "
            f"{f.ratio:.1f} times{' (flagged)' if f.flagged else ''}"
            for f in judged
        )
        threshold = f"flagged above {judged[0].shift_factor:g} times"
        if flagged:
            line += (
                " Test images shifted from train (train-vs-test FID against the "
                f"same-distribution distance: {each}; {threshold})"
            )
            line += (
                f"; drawn so on purpose (data.phantom.test_shift = {phantom_test_shift:g})."
                if phantom_test_shift > 0
                else "."
            )
        else:
            line += (
                " Test images are not shifted from train (train-vs-test FID against the "
                f"same-distribution distance: {each}; {threshold})."
            )
    return line


# -- generative models -----------------------------------------------------------------------


def _finite(value: Any) -> float | None:
    """A table cell as a finite float, or None (missing, NaN, text)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _largest_rise(rows: pd.DataFrame, progress: str, factor: float = 1.5) -> tuple | None:
    """(FID, position, ratio) of the snapshot whose FID rose most above the lowest FID of the
    snapshots before it, when that ratio exceeds `factor`; else None. `rows`: one reference's
    sweep rows in training order."""
    fids = rows.fid.to_numpy(float)
    worst = None
    for i in range(1, len(fids)):
        before = fids[:i][np.isfinite(fids[:i])]
        if len(before) and np.isfinite(fids[i]) and before.min() > 0:
            ratio = fids[i] / before.min()
            if ratio > factor and (worst is None or ratio > worst[2]):
                worst = (float(fids[i]), float(rows[progress].iloc[i]), float(ratio))
    return worst


def training_course(sweep: pd.DataFrame, extractor: str) -> str:
    """Where along training the run was best, in words, in feature space `extractor` (the one
    that chose the best snapshot): still improving at its last snapshot ("training stopped
    before any degradation"), or best earlier and how far its FID rose by the last snapshot;
    and a detected mode collapse (the sweep's collapse column: diversity lost after its most
    diverse snapshot, or never reached). Empty when the sweep marks no best snapshot."""
    progress = "epoch" if "collapse_epoch" in sweep else "kimg"
    scored = sweep[sweep.extractor.astype(str) == extractor]
    best_rows = scored[scored.best.map(_flag)]
    if best_rows.empty:
        return ""
    # the reference that chose the best snapshot: train, else the first the table marks
    reference = "train" if "train" in set(best_rows.reference) else str(best_rows.reference.iloc[0])
    rows = scored[scored.reference == reference].sort_values(progress)
    best = rows[rows.best.map(_flag)]
    at, last = float(best[progress].iloc[0]), float(rows[progress].iloc[-1])
    collapse = _finite(scored.get(f"collapse_{progress}", pd.Series(dtype=float)).min())
    if at >= last:
        text = f"best at its last snapshot ({progress} {last:g})"
        rise = _largest_rise(rows, progress)
        if rise is not None:  # best at the end, but not by steady improvement
            fid, where, times = rise
            text += (
                f", though FID vs {reference} rose on the way (to {format_fid(fid)} at "
                f"{progress} {where:g}, {times:.1f} times its lowest before)"
            )
        elif collapse is None:
            text = (
                f"still improving at its last snapshot ({progress} {last:g}): training stopped "
                "before any degradation"
            )
    else:
        fid_best, fid_last = _finite(best.fid.iloc[0]), _finite(rows.fid.iloc[-1])
        text = f"best at {progress} {at:g} of {last:g}"
        if fid_best and fid_last is not None:
            text += (
                f"; FID vs {reference} then rose to {format_fid(fid_last)} "
                f"({fid_last / fid_best:.1f} times) by the last snapshot"
            )
    if collapse is not None:
        text += f"; diversity collapsed at {progress} {collapse:g} (below 0.5 of the real images')"
    return text


def model_line(row: Mapping[str, Any], course: str, used: str = "best") -> str:
    """One GAN run in one line: its best snapshot, FID against its floor, precision and recall
    against what real images score, where it was best, and, for the snapshot whose samples the
    audit and the classifier use (`used`: the config's use_snapshot), its near-copies."""
    name = display_name(str(row["model"]))
    px = _finite(row.get("resolution"))
    size = f", {int(px)} px" if px is not None else ""
    head = f"**{name}** ({rst_escape(row['run'])}{size}): "
    if str(row["best snapshot"]).startswith("n/a"):
        return head + rst_escape(f"no best snapshot: {row['best snapshot']}.")
    precision, recall = _num(row.get("precision"), 2), _num(row.get("recall"), 2)
    real_p, real_r = _num(row.get("real precision"), 2), _num(row.get("real recall"), 2)
    real = f" (real {real_p} / {real_r})" if real_p != "–" else ""
    floor = _finite(row.get("real floor (train)"))
    floor_text = f" (real floor {format_fid(floor)})" if floor is not None else ""
    fid = _finite(row.get("FID (train)"))
    text = (
        f"best snapshot {row['best snapshot']} ({row['features']} features): FID vs train "
        f"{format_fid(fid) if fid is not None else 'n/a'}{floor_text}, precision / recall "
        f"{precision} / {recall}{real}"
    )
    if course:
        text += f"; {course}"
    _, marker, skipped = str(row.get("best by", "")).partition("not chosen, near-copying: ")
    if marker:  # snapshots with a lower FID whose near-copy share was over its limit
        names = re.findall(r"(\S+) \(share", skipped)
        text += f"; not chosen for copying training images: {', '.join(names)}"
    copies = row.get("near-copies")
    of = "" if used == "best" else f" in {used} (use_snapshot: the audit's and classifier's)"
    if copies not in (None, "–"):
        text += f"; near-copies {copies}{of}"
    elif of:
        text += f"; samples for the audit and classifier from {used} (use_snapshot)"
    return head + rst_escape(text + ".")


def selection_rows(models: pd.DataFrame) -> list[dict[str, Any]]:
    """One row per run: the one in the feature space that chose its best snapshot (named in
    `best by`, "lowest FID against train (cxr features)"), else the run's first row."""
    out = []
    if models.empty:
        return out
    for _, rows in models.groupby(["model", "run"], sort=False):
        records = rows.to_dict("records")
        chosen = [r for r in records if f"({r['features']} features)" in str(r.get("best by"))]
        out.append((chosen or records)[0])
    return out


# -- classifier ------------------------------------------------------------------------------


def classifier_line(
    comparison: pd.DataFrame,
    arch: str = "",
    metric: str = "auroc",
    *,
    shifted: Sequence[int] = (),
    classes: Sequence[str] = (),
) -> str:
    """The classifier stage in one line: the real-only mean and what the arms showed;
    `shifted`: the resolutions (px) at which the test split is flagged as shifted (said
    beside the test numbers)."""
    rows = comparison[comparison.metric == metric]
    base = rows[rows.verdict == "baseline"]
    if base.empty:
        return "**Classifier**: no real-only arm was trained."
    n_seeds = int(base.n_seeds.iloc[0])
    mean, sd = _finite(base["mean"].iloc[0]), _finite(base["std"].iloc[0])
    if mean is None:
        return "**Classifier**: the real-only test AUROC is not a number (see Headline tables)."
    spread = f" ± {sd:.3f} (sd over seeds)" if sd is not None else ""
    model = f"{arch}, " if arch else ""
    if len(classes) == 2:
        model += f"{classes[0]} vs {classes[1]}, "
    tested = "tested on real test images only" + (
        f", the test split flagged as shifted at {', '.join(f'{px} px' for px in shifted)}"
        if shifted
        else ""
    )
    text = (
        f"({model}{n_seeds} seed(s), {tested}): real-only test {metric.upper()} {mean:.3f}{spread}"
    )
    if metric == "auroc" and mean < CHANCE_AUROC:
        text += " (near chance: it has not learnt the task, so no arm can show a difference)"
    arms = rows[rows.verdict != "baseline"]
    if arms.empty:
        return "**Classifier** " + rst_escape(text + "; no arm with added images was trained.")
    parts, quiet = [], 0
    for r in arms.itertuples():
        # with many arms only those with a verdict are named, the rest counted (the page stays
        # short; every arm is on the classifier arms page)
        verdicts = {str(r.verdict), str(getattr(r, "control_verdict", ""))}
        if len(arms) > MAX_ARMS_NAMED and not verdicts & {"helped", "hurt"}:
            quiet += 1
            continue
        label = _ratio(getattr(r, "ratio_label", r.ratio), r.ratio)
        name = r.arm if label == "–" else f"{r.arm} (ratio {label.split(' ')[0]})"
        verdict = "no evidence" if r.verdict == NO_EVIDENCE else str(r.verdict)
        if r.verdict == NO_EVIDENCE:
            verdict += _one_interval(r)
        diff = _finite(r.diff_mean)
        text_arm = f"{name} {diff:+.3f}, {verdict}" if diff is not None else f"{name}, {verdict}"
        control = _finite(getattr(r, "control_diff_mean", None))
        reading = str(getattr(r, "reading", "") or "")
        if control is not None and reading:  # against its count-matched control too
            text_arm += f"; {control:+.3f} vs duplication: {reading}"
        parts.append(text_arm)
    if quiet:
        parts.append(f"{quiet} other arm(s) without a verdict (Headline tables)")
    text += f". Against real-only: {'; '.join(parts)}"
    paired = arms["n_paired"] if "n_paired" in arms else arms["n_seeds"]
    if paired.fillna(0).max() < MIN_SEEDS:
        text += f" (a verdict needs at least {MIN_SEEDS} seeds)"
    elif (arms.verdict == NO_EVIDENCE).all():
        text += " (no evidence of a difference is not evidence of no effect)"
    return "**Classifier** " + rst_escape(text + ".")


def _one_interval(row: Any) -> str:
    """When only one of the two intervals excludes 0 (the verdict needs both), which one and
    on which side: the reader sees why 'no evidence' although, say, every seed was lower."""
    seeds = (_finite(row.diff_ci_low), _finite(row.diff_ci_high))
    boot = (_finite(getattr(row, "boot_ci_low", None)), _finite(getattr(row, "boot_ci_high", None)))

    def side(low: float | None, high: float | None) -> str:
        if low is not None and low > 0:
            return "above"
        if high is not None and high < 0:
            return "below"
        return ""

    if side(*boot) and not side(*seeds):
        return f" (the patient bootstrap alone puts it {side(*boot)} real-only; seeds vary)"
    if side(*seeds) and not side(*boot):
        return f" (the seeds alone put it {side(*seeds)} real-only; test patients vary)"
    return ""


# -- runtime ---------------------------------------------------------------------------------


def runtime_line(runtime: pd.DataFrame) -> str:
    total = float(runtime.total_s.sum())
    top = runtime.sort_values("total_s", ascending=False).iloc[0]
    return (
        f"**Runtime**: {int(runtime.jobs.sum())} jobs before the report, "
        f"{total / 60:.1f} job-minutes; the most expensive rule was {rst_escape(top.rule)} "
        f"({float(top.total_s) / 60:.1f} min over "
        f"{int(top.jobs)} job(s))."
    )


# -- the page --------------------------------------------------------------------------------


def data_uri(png: str | Path) -> str:
    """A PNG file as a data URI, for an image that the report must carry inside its page
    (Snakemake's own `embeddedimage` directive leaves the file path in place: its mixin's
    run() is never called, Image.run comes first in the class's MRO)."""
    return "data:image/png;base64," + base64.b64encode(Path(png).read_bytes()).decode("ascii")


def headline_section(
    data: Mapping[str, Any],
    models: pd.DataFrame,
    courses: Mapping[tuple[str, str], str],
    comparison: pd.DataFrame | None,
    runtime: pd.DataFrame | None,
    shift: Sequence[ShiftFinding] = (),
    phantom_test_shift: float = 0.0,
    *,
    figure: str | None = None,
    arch: str = "",
    use_snapshot: Mapping[str, str] | None = None,
    classes: Sequence[str] = (),
) -> str:
    """The RST 'Headline results' section: the summary figure, then one line per stage.

    `models`: rows of `headline_tables.model_rows`; `courses`: (model, run) -> its
    `training_course` sentence; `comparison`: results/classifier/comparison.csv; `shift`: the
    train/test distance findings (cxrlib.scoring.reference.shift_findings); `figure`: the
    summary figure's URI (`data_uri` of the PNG, so that the report's single file carries
    it), None for none; `use_snapshot`: model -> its config's use_snapshot ("best" if absent).
    """
    out = [".. rubric:: Headline results", ""]
    if figure:
        # docutils refuses input lines over 10,000 characters; a URI may span lines (the
        # directive strips the whitespace), so a data URI is given in lines of 96
        lines = [figure[i : i + 96] for i in range(0, len(figure), 96)]
        out += [
            f".. image:: {lines[0]}",
            *(f"   {line}" for line in lines[1:]),
            "   :width: 100%",
            "   :alt: real training and test images beside each GAN's chosen samples",
            "",
        ]
    lines = ["**Data**: " + rst_escape(data_line(data, shift, phantom_test_shift))]
    for row in selection_rows(models):
        used = (use_snapshot or {}).get(str(row["model"]), "best")
        lines.append(model_line(row, courses.get((row["model"], row["run"]), ""), used))
    if comparison is not None and len(comparison):
        lines.append(
            classifier_line(
                comparison,
                arch,
                shifted=sorted({int(f.resolution) for f in shift if f.flagged}),
                classes=classes,
            )
        )
    if runtime is not None and len(runtime):
        lines.append(runtime_line(runtime))
    out += [f"- {line}" for line in lines]
    out += [
        "",
        "Numbers in detail: **Headline tables** (left); every figure's caption is under the "
        "**i** beside it; the configuration under Workflow.",
        "",
    ]
    return "\n".join(out)


def headline_record(
    data: Mapping[str, Any],
    models: pd.DataFrame,
    classifier: pd.DataFrame | None,
    conclusion: str | None,
    shift: Sequence[ShiftFinding] = (),
) -> dict[str, Any]:
    """The same headline as plain data (results/report/headline.json), for scripts and tests."""

    def records(frame: pd.DataFrame | None) -> list[dict[str, Any]]:
        if frame is None or frame.empty:
            return []
        return json.loads(frame.to_json(orient="records"))

    return {
        "data": dict(data),
        "models": records(models),
        "classifier": records(classifier),
        "classifier_conclusion": conclusion,
        "data_shift": [
            {
                "extractor": f.extractor,
                "resolution": f.resolution,
                "fid_train_test": f.fid_train_test,
                "fid_train_val": f.fid_train_val,
                "fid_halves": f.fid_halves,
                "shift_factor": f.shift_factor,
                "flagged": f.flagged,
                "sentence": shift_sentence(f),
            }
            for f in shift
        ],
        "model_notes": model_notes(models) if len(models) else [],
    }


def write_front_page(template: Path, section: str, target: Path) -> None:
    """The hand-written study description followed by the generated section."""
    text = template.read_text(encoding="utf-8").rstrip() + "\n\n" + section.rstrip() + "\n"
    write_atomic(target, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def read_memorisation(paths: Sequence[str | Path]) -> dict[tuple[str, str], dict[str, Any]]:
    """results/metrics/memorisation/{model}/{run}/{snapshot}/summary.json -> by (model, run)."""
    out = {}
    for path in paths:
        parts = Path(path).parts
        model, run = parts[-4], parts[-3]
        out[(model, run)] = json.loads(Path(path).read_text())
    return out
