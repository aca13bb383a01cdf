"""The report's front page: the study description plus headline results from the result tables."""

import json
from pathlib import Path

import pandas as pd

from cxrlib.io import write_atomic
from cxrlib.logs import job_logging
from cxrlib.metrics.features import optional_path
from cxrlib.metrics.reference import read_reference, shift_findings
from cxrlib.report.headline import (
    classifier_conclusion,
    classifier_rows,
    data_summary,
    headline_record,
    headline_section,
    model_rows,
    read_memorisation,
    write_front_page,
)

with job_logging(snakemake.log[0]):
    inp, out = snakemake.input, snakemake.output
    data = data_summary(pd.read_csv(inp.class_counts), pd.read_csv(inp.rejected))
    models = model_rows(
        [pd.read_csv(p) for p in inp.sweeps], read_memorisation(list(inp.memorisation))
    )
    comparison = pd.read_csv(inp.comparison)
    classifier = classifier_rows(comparison)
    conclusion = classifier_conclusion(comparison)
    runtime = pd.read_csv(inp.runtime)
    floors = optional_path(inp, "real_reference")
    shift = shift_findings(read_reference(floors), snakemake.params.shift_factor) if floors else []
    section = headline_section(
        data, models, classifier, conclusion, runtime, shift, snakemake.params.phantom_test_shift
    )
    write_front_page(Path(inp.template), section, Path(out.page))
    record = headline_record(data, models, classifier, conclusion, shift)
    write_atomic(out.record, lambda tmp: tmp.write_text(json.dumps(record, indent=2) + "\n"))
