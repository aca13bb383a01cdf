"""A tiny but honest trainer for job-survival tests: model, Adam, dropout, seeded data stream.

Everything random lives in one torch.Generator that is part of the state, like the real
trainers, so a resumed run must reproduce an uninterrupted one bit for bit.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import nn


class ToyTrainer:
    def __init__(self, seed: int = 0, step_sleep_s: float = 0.0):
        self.generator = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        self.model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 1))
        self.optimiser = torch.optim.Adam(self.model.parameters(), lr=1e-2)
        self.target = torch.randn(8, 1, generator=self.generator)
        self.step = 0
        self.step_sleep_s = step_sleep_s

    def train_step(self) -> dict[str, float]:
        x = torch.randn(32, 8, generator=self.generator)
        # dropout draws from the global RNG: set it from our generator so it is part of the state
        torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=self.generator)))
        loss = ((self.model(x) - x @ self.target) ** 2).mean()
        self.optimiser.zero_grad()
        loss.backward()
        self._reduce_gradients()
        self.optimiser.step()
        self.step += 1
        if self.step_sleep_s:
            time.sleep(self.step_sleep_s)
        return {"loss": float(loss.detach())}

    def _reduce_gradients(self) -> None:
        """Data-parallel trainers average gradients here; one process has nothing to do."""

    def state_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "model": self.model.state_dict(),
            "optimiser": self.optimiser.state_dict(),
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step = int(state["step"])
        self.model.load_state_dict(state["model"])
        self.optimiser.load_state_dict(state["optimiser"])
        self.generator.set_state(state["generator"])

    def weights(self) -> torch.Tensor:
        return torch.cat([p.detach().flatten() for p in self.model.parameters()])


class AllReduceToyTrainer(ToyTrainer):
    """ToyTrainer whose step averages gradients over the processes, as data-parallel trainers
    do: a process that stopped alone would leave the others waiting in this all-reduce."""

    def _reduce_gradients(self) -> None:
        import torch.distributed as dist

        for p in self.model.parameters():
            dist.all_reduce(p.grad)
            p.grad /= dist.get_world_size()


def distributed_toy_worker(
    rank: int,
    world: int,
    state_dir: str,
    out_dir: str,
    total_steps: int,
    stop_rank: int,
    stop_at_step: int,
    how: str,
    stop_check_every: int,
) -> None:
    """One process of a data-parallel toy run (cxrlib.jobs.distributed.launch calls it).

    Process `stop_rank` alone, after step `stop_at_step`, gets SIGUSR1 (`how="signal"`) or
    sees the deadline pass (`how="deadline"`: its clock jumps ahead). Only rank 0 saves state
    and, when the run finishes, writes the weights to out_dir/weights.pt.
    """
    import os
    import signal
    from pathlib import Path

    from cxrlib.jobs.survival import StateStore, run_resumable

    class _ReadOnly(StateStore):
        def save(self, state: dict[str, Any], step: int) -> None:
            pass

        def record(self, event: str) -> None:
            pass

    torch.set_num_threads(1)
    trainer = AllReduceToyTrainer()
    store = StateStore(state_dir) if rank == 0 else _ReadOnly(state_dir)
    jumped = [False]

    def on_step(t: ToyTrainer, _m: dict[str, float]) -> None:
        if rank == stop_rank and t.step == stop_at_step:
            if how == "signal":
                os.kill(os.getpid(), signal.SIGUSR1)
            else:
                jumped[0] = True

    start = time.time()
    run_resumable(
        trainer, total_steps, store, on_step=on_step, save_every_s=1e9,
        deadline=start + 3600.0, stop_margin_s=60.0,
        wall=lambda: time.time() + (7200.0 if jumped[0] else 0.0),
        stop_check_every=stop_check_every,
    )  # fmt: skip
    if rank == 0:
        torch.save(trainer.weights(), Path(out_dir) / "weights.pt")


if __name__ == "__main__":  # used by the subprocess tests: train, then write final weights
    import argparse
    import logging
    from pathlib import Path

    from cxrlib.io import write_atomic
    from cxrlib.jobs.survival import StateStore, run_resumable, slurm_job_end_time

    parser = argparse.ArgumentParser()
    parser.add_argument("--state", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--sleep", type=float, default=0.0)
    parser.add_argument("--save-every-s", type=float, default=1.0)
    parser.add_argument("--stop-margin-s", type=float, default=120.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    trainer = ToyTrainer(step_sleep_s=args.sleep)
    store = StateStore(args.state)
    progress = Path(args.state) / "progress.txt"

    def on_step(t: ToyTrainer, _m: dict[str, float]) -> None:
        # Atomic: the test polls this file while the trainer writes it.
        write_atomic(progress, lambda tmp: tmp.write_text(str(t.step)))
        if t.step % 10 == 0:
            logging.info("step %d", t.step)
            store.record(f"step {t.step}")

    Path(args.state).mkdir(parents=True, exist_ok=True)
    run_resumable(
        trainer,
        args.steps,
        store,
        save_every_s=args.save_every_s,
        on_step=on_step,
        deadline=slurm_job_end_time(),
        stop_margin_s=args.stop_margin_s,
    )
    torch.save(trainer.weights(), args.out)
