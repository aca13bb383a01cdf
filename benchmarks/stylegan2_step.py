"""Speed of full StyleGAN2-ADA training steps on random data, in seconds per kimg.

    python benchmarks/stylegan2_step.py --res 64 --batch 16 --channel-base 4096 \
        --no-reg --no-aug --steps 5 --threads 2

A step is what `StyleGan2AdaTrainer.train_step` does: a G step and a D step (fakes and reals),
plus, unless `--no-reg`, the lazy R1 (every 16) and path-length (every 4) steps, and, unless
`--no-aug`, ADA's augmentation of everything D sees at a fixed p (`--aug-p`; at p = 0 the pipe
would do nothing). Style mixing (0.9) and the EMA update are always on. `--warmup` steps run
first and are not timed (allocator and oneDNN kernel caches warm up).

Prints the wall-clock figure `s_per_kimg=<number>` (median step time x 1000 / batch), the
mean, and the process CPU time per kimg: on a shared machine the CPU time shows whether a slow
wall clock is our work or other processes' load (also printed).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from cxrlib.stylegan2ada.trainer import StyleGan2AdaTrainer, stylegan_settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--res", type=int, default=64)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--channel-base", type=int, default=4096)
    parser.add_argument("--channel-max", type=int, default=512)
    parser.add_argument("--mapping-layers", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5, help="timed steps")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--no-reg", action="store_true", help="no R1 and no path-length steps")
    parser.add_argument("--no-aug", action="store_true", help="augment='off'")
    parser.add_argument("--aug-p", type=float, default=0.3, help="fixed ADA p when augmenting")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    settings = stylegan_settings(
        {
            "resolution": args.res,
            "batch_size": args.batch,
            "channel_base": args.channel_base,
            "channel_max": args.channel_max,
            "mapping_layers": args.mapping_layers,
            "total_kimg": 1e6,
            "augment": "off" if args.no_aug else "fixed",
            "augment_p": 0.0 if args.no_aug else args.aug_p,
            **({"gamma": 0.0, "pl_weight": 0.0} if args.no_reg else {}),
        }
    )
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(max(64, args.batch), 1, args.res, args.res, generator=gen) * 2 - 1
    trainer = StyleGan2AdaTrainer(images, settings, device=args.device)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else lambda: None
    for _ in range(args.warmup):
        trainer.train_step()
    sync()
    walls, cpus = [], []
    for _ in range(args.steps):
        w, c = time.perf_counter(), time.process_time()
        trainer.train_step()
        sync()
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    per_kimg = 1000.0 / args.batch
    print(
        f"res={args.res} batch={args.batch} channel_base={args.channel_base} "
        f"reg={not args.no_reg} aug={not args.no_aug} threads={args.threads} "
        f"steps={args.steps} step_s={' '.join(f'{t:.2f}' for t in walls)}"
    )
    print(f"load_average={' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(f"mean_s_per_kimg={statistics.mean(walls) * per_kimg:.1f}")
    print(f"cpu_s_per_kimg={statistics.mean(cpus) * per_kimg:.1f}")
    print(f"s_per_kimg={statistics.median(walls) * per_kimg:.1f}")


if __name__ == "__main__":
    main()
