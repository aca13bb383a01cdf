"""StyleGAN2-ADA's two jobs, called by scripts/train_generator.py and
scripts/generator_sweep.py with Snakemake's job object (`job.input`, `job.output`,
`job.params`, `job.wildcards`, `job.resources`).

- `train`: one run; resumes from its state folder after a kill or a time limit. Given several
  GPUs (resources gpu: N), it trains data-parallel, one process per GPU;
- `sweep`: the kimg sweep: table with best and collapse marked, and its figures (training
  curves, grids across kimg, the truncation trade-off of the snapshot shown).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from cxrlib.data.cache import load_split
from cxrlib.device import setup_torch
from cxrlib.jobs.distributed import launch, usable_gpus
from cxrlib.jobs.survival import slurm_job_end_time
from cxrlib.scoring.figures import plot_grids_across_epochs, plot_sweep
from cxrlib.scoring.sweep import best_or_latest, write_sweep_table
from cxrlib.stylegan2ada.figures import plot_stylegan_curves, plot_truncation
from cxrlib.stylegan2ada.pretrained import check_pinned
from cxrlib.stylegan2ada.trainer import train_worker


def train(job: Any) -> None:
    params = job.params
    if params.start_pin:  # a published network (stylegan2ada.pretrained) with its sha256
        check_pinned(job.input.start, **params.start_pin)
    device = setup_torch(job.threads)
    images = load_split(job.input.cache).of_label(params.label)
    world = usable_gpus(int(job.resources.get("gpu", 0) or 0))
    launch(
        train_worker,
        world,
        Path(params.state),
        images,
        dict(params.settings),
        job.wildcards.run,
        Path(params.out_dir),
        Path(params.state),
        device,
        slurm_job_end_time(),
    )


def sweep(job: Any) -> None:
    inp, out, params = job.input, job.output, job.params
    table = write_sweep_table(job, "kimg")
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
        table, Path(out.sweep_plot), progress="kimg", title="StyleGAN2-ADA", synthetic=synthetic
    )
    shown, which = best_or_latest(table, "kimg")
    plot_truncation(
        Path(inp.snapshots) / f"{shown}.pt",
        params.psis,
        Path(out.truncation),
        which=which,
        synthetic=synthetic,
    )
