"""The train/test shift as a data finding: its sentence in the log and the distances figure."""

from pathlib import Path

from cxrlib.data.figures import plot_real_distances
from cxrlib.logs import job_logging
from cxrlib.scoring.reference import log_findings, read_reference, shift_findings

with job_logging(snakemake.log[0]):
    params = snakemake.params
    table = read_reference(snakemake.input[0])
    findings = shift_findings(table, params.shift_factor)
    log_findings(findings)
    plot_real_distances(
        table, findings, Path(snakemake.output[0]), label=params.label, synthetic=params.synthetic
    )
