"""Per-rule runtimes of the study, from the benchmark files of every job."""

from pathlib import Path

from cxrlib.logs import job_logging
from cxrlib.report.runtime import write_runtime_report

with job_logging(snakemake.log[0]):
    out = snakemake.output
    write_runtime_report(
        Path(out.table).parent,  # results/benchmarks, where every job's benchmark file is
        Path(out.table),
        Path(out.figure),
        synthetic=snakemake.params.synthetic,
    )
