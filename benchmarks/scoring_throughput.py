"""Scoring throughput: this project's scoring path against torch-fidelity's `calculate_metrics`.

    python benchmarks/scoring_throughput.py --images 200 --size 64 --snapshots 4 --threads 2

The study scores every snapshot of every run against the same real images. The workflow
computes the real features once (the real_features rule, one .npz per extractor, split and
resolution) and each snapshot's scoring job extracts only its generated images' features, then
computes FID, KID and precision/recall from the two arrays with torch-fidelity's own functions
(`cxrlib.scoring.fidelity`). `calculate_metrics` takes two image folders and extracts both
every call unless its on-disk cache is on and the real folder is given a cache name.

Both contenders run torch-fidelity's InceptionV3 ("inception-v3-compat", 2048-d pool features;
a file with the architecture's keys and random He-scaled weights is made once offline, as in
tests/test_fidelity.py: no download), so the network costs the same per image and what differs
is the data path and how often the real images pass through it. Images are `--images` phantom
radiographs (`render_radiograph`) at `--size` px: the real set, and one "generated" set per
snapshot (other phantoms with detector-like noise that shrinks from snapshot to snapshot).
Ours reads uint8 arrays (as the prepared-data cache and the generator hand them over);
torch-fidelity reads the same images from PNG folders with its DataLoader (its defaults:
`save_cpu_ram=False`, i.e. up to 4 worker processes decoding).

A sweep of `--snapshots` K snapshots is run three ways, interleaved snapshot by snapshot so that
load from other processes falls on all three alike:
  ours:        real features once (extract + write .npz), then per snapshot a scoring job as
               `score_snapshot` does it (build the verified extractor, load the real .npz,
               extract the fakes, score): N (K + 1) images through the network;
  tf, no cache: `calculate_metrics(fid, kid, prc)` per snapshot: 2 N K images;
  tf, cache:   the same with `cache=True` and `input2_cache_name` (a fresh cache root), so the
               real features are extracted on the first call and loaded after: N (K + 1).
The first snapshot alone is the single-score figure (ours: real step + first job). Extraction
throughput (images/s) counts only the time spent inside feature extraction: `extract_features`
for ours, torch-fidelity's `extract_featuresdict_from_input_id_cached` (timed by a wrapper)
for its no-cache calls. The scores of ours and of calculate_metrics are compared at the end.
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import torch
import torch_fidelity.metrics
from PIL import Image
from torch import nn
from torch_fidelity import calculate_metrics
from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
from torch_fidelity.utils import create_feature_extractor

from cxrlib.data.phantom import render_radiograph
from cxrlib.io import atomic_path, write_npz
from cxrlib.scoring.features import load_real_features
from cxrlib.scoring.fidelity import (
    FidelityScores,
    array_batches,
    extract_features,
    file_sha256,
    inception_extractor,
    kid_subset_size,
    score_features,
)

OUT = Path(__file__).resolve().parent / "out"


def make_inception_weights(path: Path) -> None:
    """An InceptionV3 state dict with torch-fidelity's keys and random but informative weights.

    The module's own init gives near-zero activations (denormal-prone, unrepresentative
    timings); He-scaled convolutions with unit batch norm keep activations O(1).
    """
    torch.manual_seed(0)
    with (
        mock.patch.object(FeatureExtractorInceptionV3, "load_state_dict"),
        mock.patch(
            "torch_fidelity.feature_extractor_inceptionv3.load_state_dict_from_url", return_value={}
        ),
    ):
        model = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            fan_in = module.in_channels * math.prod(module.kernel_size)
            nn.init.normal_(module.weight, std=math.sqrt(2.0 / fan_in))
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
            module.running_mean.zero_()
            module.running_var.fill_(1.0)
    with atomic_path(path) as tmp:
        torch.save(model.state_dict(), tmp)


def phantoms(n: int, size: int, seed: int, noise_sigma: float = 0.0) -> np.ndarray:
    """uint8 (n, size, size) phantom radiographs, half with opacities, optional Gaussian noise."""
    rng = np.random.default_rng(seed)
    images = np.stack([render_radiograph(rng, size, size, bool(i % 2)) for i in range(n)])
    if noise_sigma > 0:
        noisy = images + rng.normal(0.0, noise_sigma, images.shape)
        images = np.clip(noisy, 0, 255).astype(np.uint8)
    return images


def write_pngs(images: np.ndarray, folder: Path) -> Path:
    """One grayscale PNG per image (torch-fidelity converts to RGB on reading, as ours does)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / f"{i:05d}.png")
    return folder


class Stopwatch:
    """Accumulated seconds and item counts of the calls of one wrapped function."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.items = 0

    def wrap(self, fn: Callable[..., Any], count: Callable[[Any], int]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            result = fn(*args, **kwargs)
            self.seconds += time.perf_counter() - start
            self.items += count(result)
            return result

        return timed

    @property
    def per_second(self) -> float:
        return self.items / self.seconds if self.seconds > 0 else float("nan")


class Ours:
    """The workflow's path: a real_features step once, then one scoring job per snapshot."""

    def __init__(self, weights: Path, sha256: str, batch_size: int, workdir: Path) -> None:
        self.weights, self.sha256, self.batch_size = weights, sha256, batch_size
        self.real_file = workdir / "real_features.npz"
        self.extraction = Stopwatch()
        self._extract = self.extraction.wrap(extract_features, len)

    def real_step(self, real: np.ndarray) -> None:
        """The real_features rule: build the extractor, extract, write the .npz."""
        extractor = inception_extractor(self.weights, self.sha256).eval()
        features = self._extract(extractor, array_batches(real, self.batch_size))
        write_npz(self.real_file, features=features.astype(np.float32))

    def score_job(self, fake: np.ndarray) -> FidelityScores:
        """One score_snapshot job: its own extractor, the shared real features, the fakes."""
        extractor = inception_extractor(self.weights, self.sha256).eval()
        real = load_real_features(self.real_file)
        features = self._extract(extractor, array_batches(fake, self.batch_size))
        return score_features(real, features, kid_subsets=100, kid_preferred_subset_size=1000)


def torch_fidelity_scores(
    fake_dir: Path, real_dir: Path, weights: Path, batch_size: int, subset: int, cache_root: Path
) -> dict[str, float]:
    """`calculate_metrics` as tests/test_fidelity.py calls it; `cache_root` None = cache off."""
    cache = {"cache": False}
    if cache_root is not None:
        cache = {"cache": True, "cache_root": str(cache_root), "input2_cache_name": "bench_real"}
    return calculate_metrics(
        input1=str(fake_dir),
        input2=str(real_dir),
        fid=True,
        kid=True,
        prc=True,
        feature_extractor="inception-v3-compat",
        feature_layer_prc="2048",
        feature_extractor_weights_path=str(weights),
        kid_subset_size=subset,
        cuda=False,
        verbose=False,
        batch_size=batch_size,
        **cache,
    )


def max_relative_difference(ours: FidelityScores, theirs: dict[str, float]) -> float:
    pairs = {
        "frechet_inception_distance": ours.fid,
        "kernel_inception_distance_mean": ours.kid_mean,
        "precision": ours.precision,
        "recall": ours.recall,
    }
    return max(abs(v - theirs[k]) / max(abs(theirs[k]), 1e-12) for k, v in pairs.items())


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200, help="images per set (N)")
    parser.add_argument("--size", type=int, default=64, help="side length of the images (px)")
    parser.add_argument("--snapshots", type=int, default=4, help="snapshots in the sweep (K)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    if args.images < 2 or args.snapshots < 1:
        parser.error("need --images >= 2 and --snapshots >= 1")
    torch.set_num_threads(args.threads)

    weights = OUT / "scoring" / "inception_random_he.pth"
    if not weights.is_file():
        make_inception_weights(weights)
    sha256 = file_sha256(weights)
    n, k = args.images, args.snapshots
    subset = kid_subset_size(n, n)
    print(
        f"images={n} size={args.size} snapshots={k} threads={args.threads} "
        f"batch={args.batch_size} loadavg_start={os.getloadavg()[0]:.2f}",
        flush=True,
    )

    with tempfile.TemporaryDirectory(prefix="scoring_bench_") as tmp:
        work = Path(tmp)
        real = phantoms(n, args.size, seed=1)
        real_dir = write_pngs(real, work / "real")
        fakes = [phantoms(n, args.size, seed=100 + i, noise_sigma=40.0 / (i + 1)) for i in range(k)]
        fake_dirs = [write_pngs(f, work / f"fake{i}") for i, f in enumerate(fakes)]
        for path in [*real_dir.iterdir(), *(p for d in fake_dirs for p in d.iterdir())]:
            path.read_bytes()  # page cache warm for torch-fidelity's reads

        ours = Ours(weights, sha256, args.batch_size, work)
        # Time inside torch-fidelity's feature step, per mode (with the cache on, the calls
        # after the first load the real features from disk instead of extracting them).
        theirs = {"tf_nocache": Stopwatch(), "tf_cache": Stopwatch()}
        caches = {"tf_nocache": None, "tf_cache": work / "tf_cache"}
        # Warm-up, also the fixed cost every job pays once: building the extractor.
        _, build_ours = timed(lambda: inception_extractor(weights, sha256))
        _, build_tf = timed(
            lambda: create_feature_extractor(
                "inception-v3-compat",
                ["2048"],
                cuda=False,
                feature_extractor_weights_path=str(weights),
                verbose=False,
            )
        )
        with torch.no_grad():
            inception_extractor(weights, sha256).eval()(
                torch.zeros(2, 3, args.size, args.size, dtype=torch.uint8)
            )
        print(
            f"extractor build: ours {build_ours:.2f} s (sha256 check + load), "
            f"torch-fidelity {build_tf:.2f} s",
            flush=True,
        )

        totals = {"ours": 0.0, "tf_nocache": 0.0, "tf_cache": 0.0}
        _, seconds = timed(lambda: ours.real_step(real))
        totals["ours"] += seconds
        print(f"ours real_features step: {seconds:.1f} s", flush=True)
        worst = 0.0
        single: dict[str, float] = {}
        for i in range(k):
            mine, seconds = timed(lambda i=i: ours.score_job(fakes[i]))
            totals["ours"] += seconds
            line = [f"snapshot {i}: ours job {seconds:.1f} s"]
            for mode, watch in theirs.items():
                wrapped = watch.wrap(
                    torch_fidelity.metrics.extract_featuresdict_from_input_id_cached,
                    lambda d: len(next(iter(d.values()))),
                )
                with mock.patch.object(
                    torch_fidelity.metrics, "extract_featuresdict_from_input_id_cached", wrapped
                ):
                    scores, seconds = timed(
                        lambda i=i, mode=mode: torch_fidelity_scores(
                            fake_dirs[i], real_dir, weights, args.batch_size, subset, caches[mode]
                        )
                    )
                totals[mode] += seconds
                worst = max(worst, max_relative_difference(mine, scores))
                line.append(f"{mode} {seconds:.1f} s")
            if i == 0:
                single = {"ours": totals["ours"], "tf": totals["tf_nocache"]}
            line.append(f"FID {mine.fid:.2f}, loadavg {os.getloadavg()[0]:.2f}")
            print(", ".join(line), flush=True)

    print(f"ours images_per_s={ours.extraction.per_second:.2f}")
    print(f"torch_fidelity images_per_s={theirs['tf_nocache'].per_second:.2f}")
    features_s = {
        "ours": ours.extraction.seconds,
        **{mode: watch.seconds for mode, watch in theirs.items()},
    }
    for name, total in totals.items():
        print(
            f"{name}: total {total:.1f} s = features {features_s[name]:.1f} s "
            f"+ rest {total - features_s[name]:.1f} s (builds, I/O, metrics)"
        )
    print(f"single_score_s ours={single['ours']:.1f} torch_fidelity={single['tf']:.1f}")
    print(
        f"sweep_total_s ours={totals['ours']:.1f} "
        f"torch_fidelity_nocache={totals['tf_nocache']:.1f} "
        f"torch_fidelity_cache={totals['tf_cache']:.1f}"
    )
    print(
        f"sweep_ratio nocache/ours={totals['tf_nocache'] / totals['ours']:.2f} "
        f"cache/ours={totals['tf_cache'] / totals['ours']:.2f}"
    )
    print(f"scores_max_relative_difference={worst:.2e} loadavg_end={os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
