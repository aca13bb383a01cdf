"""Data-parallel launch: one process per GPU of the job, joined by torch.distributed.

A training rule given several GPUs (resources `gpu: N`, which the SLURM profile turns into
`--gpus=N` on one node) starts N worker processes here instead of needing `srun`/`torchrun`
wrappers around Snakemake's script directive. The processes rendezvous through a file in the
run's state folder (on a shared file system, like the rest of the state), use NCCL on GPUs and
gloo on the CPU (tests), and each calls `fn(rank, world_size, *args)`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

log = logging.getLogger(__name__)


def usable_gpus(requested: int) -> int:
    """How many processes to start: the GPUs asked for, if that many are visible, else 1."""
    visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if requested > 1 and visible < requested:
        log.warning("%d GPUs requested but %d visible: training in one process", requested, visible)
        return 1
    return max(1, requested)


def _worker(
    rank: int,
    world: int,
    init_file: str,
    backend: str,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
) -> None:
    dist.init_process_group(backend, init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        if backend == "nccl":
            torch.cuda.set_device(rank)
        fn(rank, world, *args)
    finally:
        dist.destroy_process_group()


def launch(
    fn: Callable[..., Any],
    world_size: int,
    rendezvous_dir: Path,
    *args: Any,
    backend: str | None = None,
) -> None:
    """Run `fn(rank, world_size, *args)` in `world_size` processes; `fn(0, 1, *args)` inline when 1.

    `fn` must be importable (a module-level function): the workers are spawned, not forked,
    so CUDA initialises cleanly in each.
    """
    if world_size <= 1:
        fn(0, 1, *args)
        return
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    rendezvous_dir.mkdir(parents=True, exist_ok=True)
    init_file = rendezvous_dir / "rendezvous"
    init_file.unlink(missing_ok=True)  # a stale file from a killed attempt would hang the join
    log.info("data parallel: %d processes, backend %s", world_size, backend)
    mp.spawn(_worker, args=(world_size, str(init_file), backend, fn, args), nprocs=world_size)
