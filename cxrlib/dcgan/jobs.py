"""The DCGAN's two jobs, called by scripts/train_generator.py and scripts/generator_sweep.py
with Snakemake's job object (`job.input`, `job.output`, `job.params`, `job.wildcards`).

- `train`: one run; resumes from its state folder after a kill or a time limit;
- `sweep`: the epoch sweep: one row per snapshot and real split, best and collapse marked,
  and its figures.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pandas as pd

from cxrlib.data.cache import load_split
from cxrlib.dcgan.figures import plot_training_curves
from cxrlib.dcgan.trainer import dcgan_settings, train_dcgan
from cxrlib.device import setup_torch
from cxrlib.jobs.survival import slurm_job_end_time
from cxrlib.scoring.figures import plot_grids_across_epochs, plot_sweep
from cxrlib.scoring.sweep import write_sweep_table


def train(job: Any) -> None:
    params = job.params
    device = setup_torch(job.threads)
    images = load_split(job.input.cache).of_label(params.label)
    train_dcgan(
        images,
        dcgan_settings(params.settings),
        job.wildcards.run,
        Path(params.out_dir),
        Path(params.state),
        device=device,
        deadline=slurm_job_end_time(),
    )


def sweep(job: Any) -> None:
    inp, out, params = job.input, job.output, job.params
    table = write_sweep_table(job, "epoch")
    synthetic = params.synthetic
    plot_training_curves(pd.read_csv(inp.train_log), Path(out.curves), synthetic=synthetic)
    grids = {
        int(re.search(r"(\d+)", p.stem).group(1)): p for p in sorted(Path(inp.grids).glob("*.png"))
    }
    plot_grids_across_epochs(
        grids, Path(out.grids), columns=params.grid_columns, synthetic=synthetic
    )
    plot_sweep(table, Path(out.sweep_plot), synthetic=synthetic)
