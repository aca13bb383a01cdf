"""Where a job's tensors live and how many CPU threads torch may use."""

from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)


def setup_torch(threads: int) -> str:
    """Pin torch's intra-op threads to the job's allocation and return the device to use.

    Torch defaults to every core of the node; on a shared node (or under `--cores 2` with two
    jobs at once) that oversubscribes the CPU. The device is the first GPU when one is
    visible (SLURM sets CUDA_VISIBLE_DEVICES to the job's GPUs), else the CPU.
    """
    torch.set_num_threads(max(1, int(threads)))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    name = torch.cuda.get_device_name(0) if device == "cuda" else "cpu"
    log.info("torch %s on %s (%s), %d CPU threads", torch.__version__, device, name, threads)
    return device
