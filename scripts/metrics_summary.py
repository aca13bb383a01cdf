"""All snapshots' scores of every model in one table: results/metrics/summary.csv."""

from cxrlib.io import write_csv
from cxrlib.logs import job_logging
from cxrlib.metrics.score import summary_table

with job_logging(snakemake.log[0]):
    write_csv(summary_table(snakemake.input), snakemake.output[0])
