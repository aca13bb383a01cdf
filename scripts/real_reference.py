"""Real-to-real reference floors (train vs val, train vs test, half vs half) and the shift flag."""

from pathlib import Path

import pandas as pd

from cxrlib.io import write_csv
from cxrlib.logs import job_logging
from cxrlib.metrics.reference import (
    log_findings,
    real_reference_table,
    reference_settings,
    shift_findings,
)
from cxrlib.report.data_qc import plot_real_distances

with job_logging(snakemake.log[0]):
    inp, out, params = snakemake.input, snakemake.output, snakemake.params
    files = {
        (extractor, int(res), split): Path(inp[f"{extractor}_{split}_{res}"])
        for extractor, res, split in params.features
    }
    table = real_reference_table(
        files,
        pd.read_csv(inp.manifest),
        reference_settings(params.metrics),
        label=params.label,
    )
    write_csv(table, out.table)
    findings = shift_findings(table, params.metrics["shift_factor"])
    log_findings(findings)
    plot_real_distances(
        table, findings, Path(out.figure), label=params.label, synthetic=params.synthetic
    )
