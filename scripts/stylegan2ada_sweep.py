"""The StyleGAN2-ADA kimg sweep: table with best and collapse marked, and its figures."""

from pathlib import Path

import pandas as pd

from cxrlib.io import write_csv
from cxrlib.logs import job_logging
from cxrlib.scoring.figures import plot_grids_across_epochs, plot_sweep
from cxrlib.scoring.reference import read_reference
from cxrlib.scoring.sweep import best_or_latest, sweep_from_config
from cxrlib.stylegan2ada.figures import plot_stylegan_curves, plot_truncation

with job_logging(snakemake.log[0]):
    inp, out, params = snakemake.input, snakemake.output, snakemake.params
    sweep = sweep_from_config(
        inp.scores,
        "kimg",
        params.metrics,
        floors=read_reference(inp.floors),
        resolution=params.resolution,
    )
    write_csv(sweep, out.sweep)
    synthetic = params.synthetic
    plot_stylegan_curves(
        pd.read_csv(inp.train_log),
        Path(out.curves),
        ada_target=params.ada_target,
        synthetic=synthetic,
    )
    grids = {float(p.stem.removeprefix("kimg")): p for p in Path(inp.grids).glob("kimg*.png")}
    plot_grids_across_epochs(
        grids,
        Path(out.grids),
        unit="kimg",
        title="StyleGAN2-ADA",
        columns=params.grid_columns,
        synthetic=synthetic,
    )
    plot_sweep(
        sweep, Path(out.sweep_plot), progress="kimg", title="StyleGAN2-ADA", synthetic=synthetic
    )
    shown, which = best_or_latest(sweep, "kimg")
    plot_truncation(
        Path(inp.snapshots) / f"{shown}.pt",
        params.psis,
        Path(out.truncation),
        which=which,
        synthetic=synthetic,
    )
