"""DCGAN training throughput: the workflow's trainer against a plain fp32 eager loop.

    python benchmarks/dcgan_step.py --steps 20 --threads 2
    python benchmarks/dcgan_step.py --steps 20 --threads 2 --baseline

Full training steps (D update, then G update) at 64x64, batch 64, nz 100, ngf = ndf = 64, one
gray channel, on synthetic images. Default: `cxrlib.dcgan.trainer.DcganTrainer` as the workflow
runs it (channels_last, bf16 autocast where native, D frozen during G's update, fused Adam).
`--baseline`: the same architecture trained the plain way (the DCGAN tutorial's loop: fp32,
contiguous tensors, no autocast, default Adam). Prints `images_per_s=<number>` (wall clock)
and, for a shared machine, the figure by process CPU time. On a machine shared with other
jobs, `--repeats R` times R blocks of `--steps` steps and reports the fastest block (as
`timeit` does: interference only ever slows a block down) and the median.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from cxrlib.dcgan.networks import Discriminator, Generator
from cxrlib.dcgan.trainer import DcganSettings, DcganTrainer, prepare_images

BATCH, SIZE, NZ, WIDTH, IMAGES = 64, 64, 100, 64, 1024


def _synthetic_images() -> np.ndarray:
    """uint8 (IMAGES, 128, 128) noise, resized once to 64 px as real data is."""
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (IMAGES, 128, 128), dtype=np.uint8)


def ours(device: str) -> Callable[[], None]:
    settings = DcganSettings(image_size=SIZE, nz=NZ, ngf=WIDTH, ndf=WIDTH, batch_size=BATCH)
    images = prepare_images(_synthetic_images(), SIZE, 1, device, settings.channels_last)
    trainer = DcganTrainer(images, settings, device)
    print(f"trainer: bf16={trainer.bf16} channels_last={settings.channels_last}")
    return lambda: trainer.train_step()


def baseline(device: str) -> Callable[[], None]:
    """The tutorial's loop: fp32, NCHW, default Adam, D's weight gradients computed in G's step."""
    torch.manual_seed(0)
    G = Generator(NZ, WIDTH, 1, SIZE).to(device)
    D = Discriminator(WIDTH, 1, SIZE).to(device)
    opt_g = torch.optim.Adam(G.parameters(), 2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), 2e-4, betas=(0.5, 0.999))
    data = prepare_images(_synthetic_images(), SIZE, 1, device, channels_last=False)
    state = {"i": 0}

    def step() -> None:
        i = state["i"] % (IMAGES // BATCH)
        state["i"] += 1
        real = data[i * BATCH : (i + 1) * BATCH]
        D.zero_grad()
        out = D(real)
        F.binary_cross_entropy_with_logits(out, torch.ones_like(out)).backward()
        fake = G(torch.randn(BATCH, NZ, 1, 1, device=device))
        out = D(fake.detach())
        F.binary_cross_entropy_with_logits(out, torch.zeros_like(out)).backward()
        opt_d.step()
        G.zero_grad()
        out = D(fake)
        loss_g = F.binary_cross_entropy_with_logits(out, torch.ones_like(out))
        loss_g.backward()
        opt_g.step()
        loss_g.item()  # a sync, as the trainer's metrics are

    return step


def _timed_block(step: Callable[[], None], steps: int, device: str) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) for `steps` steps."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="timed steps")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--baseline", action="store_true", help="plain fp32 eager loop")
    parser.add_argument("--repeats", type=int, default=1, help="timed blocks; the best is reported")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    step = baseline(args.device) if args.baseline else ours(args.device)
    for _ in range(args.warmup):
        step()
    blocks = [_timed_block(step, args.steps, args.device) for _ in range(args.repeats)]
    images = args.steps * BATCH
    label = "baseline (fp32 eager)" if args.baseline else "cxrlib DcganTrainer"
    print(
        f"{label}: {args.repeats} x {args.steps} steps, threads={torch.get_num_threads()}, "
        f"device={args.device}"
    )
    walls = sorted(images / wall for wall, _ in blocks)
    print("blocks_images_per_s=" + ",".join(f"{v:.1f}" for v in walls))
    print(f"median_images_per_s={walls[len(walls) // 2]:.1f}")
    print(f"cpu_time_images_per_s={max(images / cpu for _, cpu in blocks):.1f}")
    print(f"images_per_s={walls[-1]:.1f}")


if __name__ == "__main__":
    main()
