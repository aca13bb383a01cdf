"""The DCGAN epoch sweep: one row per snapshot and real split, best and collapse marked, figures."""

import re
from pathlib import Path

import pandas as pd

from cxrlib.dcgan.figures import plot_training_curves
from cxrlib.io import write_csv
from cxrlib.logs import job_logging
from cxrlib.scoring.figures import plot_grids_across_epochs, plot_sweep
from cxrlib.scoring.reference import read_reference
from cxrlib.scoring.sweep import sweep_from_config

with job_logging(snakemake.log[0]):
    inp, out, params = snakemake.input, snakemake.output, snakemake.params
    sweep = sweep_from_config(
        inp.scores,
        "epoch",
        params.metrics,
        floors=read_reference(inp.floors),
        resolution=params.resolution,
    )
    write_csv(sweep, out.sweep)
    synthetic = params.synthetic
    plot_training_curves(pd.read_csv(inp.train_log), Path(out.curves), synthetic=synthetic)
    grids = {
        int(re.search(r"(\d+)", p.stem).group(1)): p for p in sorted(Path(inp.grids).glob("*.png"))
    }
    plot_grids_across_epochs(
        grids, Path(out.grids), columns=params.grid_columns, synthetic=synthetic
    )
    plot_sweep(sweep, Path(out.sweep_plot), synthetic=synthetic)
