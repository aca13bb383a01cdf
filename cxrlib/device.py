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
    if device == "cuda":
        configure_cuda()
    name = torch.cuda.get_device_name(0) if device == "cuda" else "cpu"
    log.info("torch %s on %s (%s), %d CPU threads", torch.__version__, device, name, threads)
    return device


def configure_cuda() -> dict[str, bool]:
    """The CUDA speed settings every GPU job uses; returns them as logged.

    TF32 for float32 matmuls and convolutions (10-bit mantissa inputs, float32 accumulation:
    Ampere and newer run them on tensor cores; the GANs' bf16 layers are lower precision
    still) and cuDNN's autotuner (`cudnn.benchmark`: the fastest convolution algorithm per
    shape, chosen once; the shapes here are fixed per run). Neither is bitwise deterministic
    across GPUs or runs, which CUDA training is not anyway; CPU runs are unaffected.
    """
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = True
    settings = {
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
        "tf32_cudnn": torch.backends.cudnn.allow_tf32,
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
    }
    log.info("CUDA settings: %s", ", ".join(f"{k} {v}" for k, v in settings.items()))
    return settings
