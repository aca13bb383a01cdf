"""Real-to-real reference floors: real train vs val, train vs test, half vs half."""

from pathlib import Path

import pandas as pd

from cxrlib.io import write_csv
from cxrlib.logs import job_logging
from cxrlib.scoring.reference import real_reference_table, reference_settings

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
