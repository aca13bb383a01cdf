"""All snapshots' scores of every model in one table: results/metrics/summary.csv."""

from cxrlib.io import write_csv
from cxrlib.logs import job_logging
from cxrlib.metrics.score import SUMMARY_COLUMNS
from cxrlib.metrics.sweep import read_scores

with job_logging(snakemake.log[0]):
    scores = read_scores(snakemake.input)
    write_csv(scores[SUMMARY_COLUMNS], snakemake.output[0])
