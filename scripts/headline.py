"""The report's front page (one line per stage, the summary figure) and its detailed tables."""

import json
from pathlib import Path

import pandas as pd

from cxrlib.io import write_atomic
from cxrlib.logs import job_logging
from cxrlib.plan.generators import display_name
from cxrlib.report.headline import (
    data_summary,
    data_uri,
    headline_record,
    headline_section,
    read_memorisation,
    selection_rows,
    training_course,
    write_front_page,
)
from cxrlib.report.headline_tables import (
    CLASSIFIER_INTRO,
    MODELS_INTRO,
    classifier_conclusion,
    classifier_rows,
    format_model_rows,
    model_notes,
    model_rows,
)
from cxrlib.report.pages import tables_page, write_page
from cxrlib.report.summary_figure import plot_summary, real_row, sample_row
from cxrlib.scoring.features import optional_path
from cxrlib.scoring.reference import read_reference, shift_findings
from cxrlib.scoring.sweep import space_agreement_sentence

with job_logging(snakemake.log[0]):
    inp, out, params = snakemake.input, snakemake.output, snakemake.params
    data = data_summary(pd.read_csv(inp.class_counts), pd.read_csv(inp.rejected))
    sweeps = [pd.read_csv(p) for p in inp.sweeps]
    models = model_rows(sweeps, read_memorisation(list(inp.memorisation)))
    # each run's course in the feature space that chose its best snapshot
    spaces = {(r["model"], r["run"]): str(r["features"]) for r in selection_rows(models)}
    courses = {}
    for sweep in sweeps:
        key = (str(sweep.model.iloc[0]), str(sweep.run.iloc[0]))
        if key in spaces:
            parts = (training_course(sweep, spaces[key]), space_agreement_sentence(sweep))
            courses[key] = "; ".join(part for part in parts if part)
    # a one-class study has no classifier stage
    table = optional_path(inp, "comparison")
    comparison = pd.read_csv(table) if table else None
    classifier = classifier_rows(comparison) if table else None
    conclusion = classifier_conclusion(comparison) if table else None
    floors = optional_path(inp, "real_reference")
    shift = shift_findings(read_reference(floors), params.shift_factor) if floors else []

    # the summary figure: real train | real test | each run's chosen samples
    n = 6
    label = params.label
    rows = [
        real_row(inp.train_cache, label, n, f"real train\n{label}"),
        real_row(inp.test_cache, label, n, f"real test\n{label}"),
    ]
    for folder in inp.samples:
        index = pd.read_csv(Path(folder) / "index.csv", nrows=1).iloc[0]
        name = display_name(str(index.model))
        rows.append(sample_row(folder, n, f"{name}\n{index.run}, {index.snapshot}"))
    plot_summary(
        rows,
        Path(out.figure),
        title=f"{label} images: real, and each GAN's samples (chosen snapshot)",
        synthetic=params.synthetic,
    )

    section = headline_section(
        data,
        models,
        courses,
        comparison,
        pd.read_csv(inp.runtime),
        shift,
        params.phantom_test_shift,
        figure=data_uri(out.figure),
        arch=params.arch,
        use_snapshot=params.use_snapshot,
        classes=params.classes,
    )
    write_front_page(Path(inp.template), section, Path(out.page))
    write_page(
        out.models,
        tables_page(
            "Best snapshot per GAN run",
            format_model_rows(models) if len(models) else pd.DataFrame(),
            intro=MODELS_INTRO,
            notes=model_notes(models) if len(models) else [],
            synthetic=params.synthetic,
        ),
    )
    positive = f"{params.classes[0]} vs {params.classes[1]}" if params.classes else ""
    write_page(
        out.classifier,
        tables_page(
            f"Classifier arms against real-only (test AUROC, {positive})",
            classifier,
            intro=(*CLASSIFIER_INTRO, conclusion),
            synthetic=params.synthetic,
        )
        if classifier is not None
        else tables_page(
            "Classifier arms",
            pd.DataFrame(),
            intro=("No classifier: train/ holds one class, so the study runs the GAN stages.",),
            synthetic=params.synthetic,
        ),
    )
    record = headline_record(data, models, classifier, conclusion, shift)
    write_atomic(out.record, lambda tmp: tmp.write_text(json.dumps(record, indent=2) + "\n"))
