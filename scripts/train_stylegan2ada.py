"""Train one StyleGAN2-ADA run; resumes from its state folder after a kill or a time limit.

Given several GPUs (resources gpu: N), it trains data-parallel, one process per GPU.
"""

from pathlib import Path

from cxrlib.data.cache import load_split
from cxrlib.device import setup_torch
from cxrlib.jobs.distributed import launch, usable_gpus
from cxrlib.jobs.survival import attempt_guard, slurm_job_end_time
from cxrlib.logs import job_logging
from cxrlib.stylegan2ada.pretrained import check_pinned
from cxrlib.stylegan2ada.trainer import train_worker

with job_logging(snakemake.log[0]), attempt_guard(snakemake.params.state):
    params = snakemake.params
    if params.start_pin:  # a published network (stylegan2ada.pretrained) with its sha256
        check_pinned(snakemake.input.start, **params.start_pin)
    device = setup_torch(snakemake.threads)
    images = load_split(snakemake.input.cache).of_label(params.label)
    world = usable_gpus(int(snakemake.resources.get("gpu", 0) or 0))
    launch(
        train_worker,
        world,
        Path(params.state),
        images,
        dict(params.settings),
        snakemake.wildcards.run,
        Path(params.out_dir),
        Path(params.state),
        device,
        slurm_job_end_time(),
    )
