"""All snapshots' scores of every model in one table, with their real floors: summary.csv, and
summary.html, the same scores as a page the report shows."""

from cxrlib.io import write_csv
from cxrlib.logs import job_logging
from cxrlib.report.pages import tables_page, write_page
from cxrlib.scoring.reference import read_reference
from cxrlib.scoring.score import SUMMARY_INTRO, summary_page_rows, summary_table

with job_logging(snakemake.log[0]):
    inp, out, params = snakemake.input, snakemake.output, snakemake.params
    resolutions = {tuple(key.split("/", 1)): res for key, res in params.resolutions.items()}
    summary = summary_table(inp.scores, read_reference(inp.floors), resolutions)
    write_csv(summary, out.table)
    page = tables_page(
        "Every snapshot's scores",
        summary_page_rows(summary),
        intro=SUMMARY_INTRO,
        synthetic=params.synthetic,
    )
    write_page(out.page, page)
