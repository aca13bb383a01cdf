"""All snapshots' scores of every model in one table, with their real floors: summary.csv."""

from cxrlib.io import write_csv
from cxrlib.logs import job_logging
from cxrlib.scoring.reference import read_reference
from cxrlib.scoring.score import summary_table

with job_logging(snakemake.log[0]):
    inp, params = snakemake.input, snakemake.params
    resolutions = {tuple(key.split("/", 1)): res for key, res in params.resolutions.items()}
    summary = summary_table(inp.scores, read_reference(inp.floors), resolutions)
    write_csv(summary, snakemake.output[0])
