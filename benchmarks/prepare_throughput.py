"""Data preparation throughput against merely decoding and resizing with PIL in one process.

    python benchmarks/prepare_throughput.py --images 1341 --size 1500 --threads 2

Generates a phantom folder once (cached under benchmarks/out/), then times
(a) a plain single-process PIL loop: open, convert("L"), bilinear resize to 256 px;
(b) the workflow's full preparation (decode, check, hash, histogram, equalise, resize, PNG,
    cache, splits) with `--threads` worker processes.
Prints images/s for both and their ratio. Page caches are warm for both (the folder is read
once before timing), so the figure is CPU throughput, not disk.
"""

from __future__ import annotations

import argparse
import os
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
    if not (root / "README.txt").exists():
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

    start = time.perf_counter()
    _plain_pil(files, args.out_size)
    plain = len(files) / (time.perf_counter() - start)

    target = OUT / "prepared"
    shutil.rmtree(target, ignore_errors=True)
    start = time.perf_counter()
    prepare_dataset(
        root,
        PrepareOutputs.under(target),
        DataSettings(min_train_images_per_class=1, val_fraction=0.1, source="phantom"),
        PreprocessSettings(size=args.out_size, jpeg_draft=not args.no_jpeg_draft),
        threads=args.threads,
    )
    ours = len(files) / (time.perf_counter() - start)
    print(
        f"files={len(files)} side~{args.size}px threads={args.threads} "
        f"jpeg_draft={not args.no_jpeg_draft}"
    )
    print(f"plain_pil_decode_resize_1proc_images_per_s={plain:.1f}")
    print(f"prepare_dataset_images_per_s={ours:.1f}")
    print(f"ratio={ours / plain:.2f}")


if __name__ == "__main__":
    main()
