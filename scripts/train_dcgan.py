"""Train one DCGAN run; resumes from its state folder after a kill or a time limit."""

from pathlib import Path

from cxrlib.data.cache import load_split
from cxrlib.dcgan.trainer import dcgan_settings, train_dcgan
from cxrlib.device import setup_torch
from cxrlib.jobs.survival import attempt_guard, slurm_job_end_time
from cxrlib.logs import job_logging

with job_logging(snakemake.log[0]), attempt_guard(snakemake.params.state):
    params = snakemake.params
    device = setup_torch(snakemake.threads)
    images = load_split(snakemake.input.cache).of_label(params.label)
    train_dcgan(
        images,
        dcgan_settings(params.settings),
        snakemake.wildcards.run,
        Path(params.out_dir),
        Path(params.state),
        device=device,
        deadline=slurm_job_end_time(),
    )
