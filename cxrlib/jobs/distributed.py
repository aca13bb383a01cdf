"""Data-parallel launch: one process per GPU of the job, joined by torch.distributed.

A training rule given several GPUs (resources `gpu: N`, which the SLURM profile turns into
`--gpus=N` on one node) starts N worker processes here instead of needing `srun`/`torchrun`
wrappers around Snakemake's script directive. The processes rendezvous through a file in the
run's state folder (on a shared file system, like the rest of the state), use NCCL on GPUs and
gloo on the CPU (tests), and each calls `fn(rank, world_size, *args)`.

Stopping: a worker that stops for a signal or the job's deadline (`JobInterrupted`, which
`run_resumable` raises in every process at the same step) ends normally after leaving a note
in the rendezvous folder, so torch's launcher never kills the first process while it saves
the state; the launcher then raises `JobInterrupted` itself (exit 75: Snakemake retries).
SIGTERM/SIGUSR1/SIGINT sent to the launcher are passed on to every worker. One node only:
multi-node runs (`srun` with one task per node) are out of scope, as one node holds the 4-8
GPUs that a 256 px StyleGAN2-ADA run can use and the rule's files live on one file system.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import signal
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from cxrlib.jobs.survival import DEFAULT_SIGNALS, JobInterrupted

log = logging.getLogger(__name__)


def usable_gpus(requested: int) -> int:
    """How many processes to start: the GPUs asked for, if that many are visible, else 1."""
    visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if requested > 1 and visible < requested:
        log.warning("%d GPUs requested but %d visible: training in one process", requested, visible)
        return 1
    return max(1, requested)


_STOPPED = "stopped.{rank}.json"  # a worker's note that it stopped (JobInterrupted)


def _worker(
    rank: int,
    world: int,
    init_file: str,
    backend: str,
    timeout_s: float | None,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
) -> None:
    timeout = {} if timeout_s is None else {"timeout": datetime.timedelta(seconds=timeout_s)}
    dist.init_process_group(
        backend, init_method=f"file://{init_file}", rank=rank, world_size=world, **timeout
    )
    try:
        if backend == "nccl":
            torch.cuda.set_device(rank)
        fn(rank, world, *args)
    except JobInterrupted as stop:
        note = Path(init_file).parent / _STOPPED.format(rank=rank)
        note.write_text(json.dumps({"signame": stop.signame, "step": stop.step}))
    finally:
        dist.destroy_process_group()


def _forward_signals(processes: list[Any]) -> dict[signal.Signals, Any]:
    """Pass the stop signals the launcher gets on to the workers; returns the old handlers."""

    def forward(signum: int, _frame: FrameType | None) -> None:
        log.warning("received %s: passing it on to the workers", signal.Signals(signum).name)
        for process in processes:
            if process.is_alive():
                os.kill(process.pid, signum)

    return {sig: signal.signal(sig, forward) for sig in DEFAULT_SIGNALS}


def launch(
    fn: Callable[..., Any],
    world_size: int,
    rendezvous_dir: Path,
    *args: Any,
    backend: str | None = None,
    timeout_s: float | None = None,
) -> None:
    """Run `fn(rank, world_size, *args)` in `world_size` processes; `fn(0, 1, *args)` inline when 1.

    `fn` must be importable (a module-level function): the workers are spawned, not forked,
    so CUDA initialises cleanly in each. Backend: NCCL when CUDA is available, else gloo.
    `timeout_s` bounds every collective (torch's default, 10-30 min, when None): a worker
    left waiting for a peer that died fails after it instead of holding the GPUs.
    Raises JobInterrupted (exit 75) when the workers stopped for a signal or the deadline;
    a worker's exception is raised by torch's launcher (ProcessRaisedException, with the
    worker's traceback), after the other workers are terminated.
    """
    if world_size <= 1:
        fn(0, 1, *args)
        return
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    rendezvous_dir.mkdir(parents=True, exist_ok=True)
    init_file = rendezvous_dir / "rendezvous"
    init_file.unlink(missing_ok=True)  # a stale file from a killed attempt would hang the join
    notes = [rendezvous_dir / _STOPPED.format(rank=rank) for rank in range(world_size)]
    for note in notes:
        note.unlink(missing_ok=True)
    log.info("data parallel: %d processes, backend %s", world_size, backend)
    context = mp.spawn(
        _worker,
        args=(world_size, str(init_file), backend, timeout_s, fn, args),
        nprocs=world_size,
        join=False,
    )
    previous = _forward_signals(context.processes)
    try:
        while not context.join():
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    stopped = [json.loads(note.read_text()) for note in notes if note.exists()]
    for note in notes:
        note.unlink(missing_ok=True)
    if stopped:
        steps = sorted({int(s["step"]) for s in stopped})
        if len(stopped) < world_size or len(steps) > 1:  # cannot happen with run_resumable
            log.warning("workers stopped unevenly: %d of %d, at steps %s", len(stopped),
                        world_size, steps)  # fmt: skip
        raise JobInterrupted(str(stopped[0]["signame"]), steps[0])
