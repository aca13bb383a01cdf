"""Data preparation throughput against merely decoding and resizing with PIL in one process.

    python benchmarks/prepare_throughput.py --images 1341 --size 1500 --threads 2

Generates a phantom folder once (cached under benchmarks/out/), then times
(a) a plain single-process PIL loop: open, convert("L"), bilinear resize to 256 px;
(b) the workflow's full preparation (decode, check, hash, histogram, equalise, resize, PNG,
    cache, splits) with `--threads` worker processes.
Prints images/s for both and their ratio. Page caches are warm for both (the folder is read
once before timing), so the figure is CPU throughput, not disk. Also prints the 1-minute load
average before each contender and the CPU time per image (this process plus its workers, from
getrusage): on a shared machine the CPU figure survives where the wall-clock ratio does not.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import time
from pathlib import Path

from PIL import Image

from cxrlib.data.phantom import PhantomSpec, make_phantom_dataset
from cxrlib.data.prepare import DataSettings, PrepareOutputs, prepare_dataset
from cxrlib.data.preprocess import PreprocessSettings

OUT = Path(__file__).resolve().parent / "out"


def _phantoms(n: int, size: int, workers: int) -> Path:
    root = OUT / f"phantom_{n}_{size}"
    if not (root / "PHANTOM_README.txt").exists():
        shutil.rmtree(root, ignore_errors=True)
        spec = PhantomSpec(
            counts={"train": {"NORMAL": n, "PNEUMONIA": 8}, "test": {"NORMAL": 8, "PNEUMONIA": 8}},
            size_px=(int(size * 0.93), int(size * 1.07)),
            seed=0,
            rgb_fraction=0.0,
        )
        make_phantom_dataset(root, spec, workers=workers)
    return root


def _plain_pil(files: list[Path], size: int) -> None:
    for path in files:
        with Image.open(path) as im:
            im.convert("L").resize((size, size), Image.Resampling.BILINEAR)


def _cpu_s() -> float:
    """User + system CPU seconds of this process and its finished children."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1341)
    parser.add_argument("--size", type=int, default=1500, help="approximate side length (px)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out-size", type=int, default=256)
    parser.add_argument(
        "--no-jpeg-draft", action="store_true", help="decode every JPEG at full resolution"
    )
    args = parser.parse_args()

    root = _phantoms(args.images, args.size, args.threads)
    files = sorted(root.glob("*/*/*.jpeg"))
    for path in files:  # warm the page cache for both contenders
        path.read_bytes()

    load_plain = os.getloadavg()[0]
    start, cpu = time.perf_counter(), _cpu_s()
    _plain_pil(files, args.out_size)
    plain = len(files) / (time.perf_counter() - start)
    plain_cpu_ms = 1000 * (_cpu_s() - cpu) / len(files)

    target = OUT / "prepared"
    shutil.rmtree(target, ignore_errors=True)
    load_ours = os.getloadavg()[0]
    start, cpu = time.perf_counter(), _cpu_s()
    prepare_dataset(
        root,
        PrepareOutputs.under(target),
        DataSettings(min_train_images_per_class=1, val_fraction=0.1, source="phantom"),
        PreprocessSettings(size=args.out_size, jpeg_draft=not args.no_jpeg_draft),
        threads=args.threads,
    )
    ours = len(files) / (time.perf_counter() - start)
    ours_cpu_ms = 1000 * (_cpu_s() - cpu) / len(files)
    print(
        f"files={len(files)} side~{args.size}px threads={args.threads} "
        f"jpeg_draft={not args.no_jpeg_draft}"
    )
    print(
        f"plain_pil_decode_resize_1proc_images_per_s={plain:.1f} "
        f"cpu_ms_per_image={plain_cpu_ms:.1f} load1={load_plain:.2f}"
    )
    print(
        f"prepare_dataset_images_per_s={ours:.1f} "
        f"cpu_ms_per_image={ours_cpu_ms:.1f} load1={load_ours:.2f}"
    )
    print(f"ratio={ours / plain:.2f}")


if __name__ == "__main__":
    main()
