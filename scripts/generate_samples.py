"""Synthetic images of one snapshot (or the run's best one) as PNGs plus index.csv."""

from pathlib import Path

import pandas as pd

from cxrlib.device import setup_torch
from cxrlib.logs import job_logging
from cxrlib.samples import samples_for_arms, write_samples
from cxrlib.scoring.sweep import best_snapshot

with job_logging(snakemake.log[0]):
    inp, params, wc = snakemake.input, snakemake.params, snakemake.wildcards
    device = setup_torch(snakemake.threads)
    name = wc.snapshot
    if name == "best":
        sweep = pd.read_csv(inp.sweep)
        name = best_snapshot(sweep)
    samples = params.samples
    n_images = samples_for_arms(
        samples["n_images"], Path(inp.class_counts), params.label, params.arm_ratios
    )
    write_samples(
        Path(inp.snapshots) / f"{name}.pt",
        Path(snakemake.output[0]),
        n_images,
        label=params.label,
        seed=samples["seed"],
        truncation_psi=samples["truncation_psi"],
        device=device,
    )
