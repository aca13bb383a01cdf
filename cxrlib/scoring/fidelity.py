"""FID, KID and precision/recall on features, with torch-fidelity doing the mathematics.

torch-fidelity's `calculate_metrics` extracts features and computes metrics in one call, with
its own on-disk cache. The workflow needs the two halves apart: real-image features are
computed once per extractor and split, by their own rule, into a declared file, and every
snapshot's scoring job reuses them; generated images are streamed from the generator in
batches, never all held in memory. So features are extracted here, batch by batch, with
torch-fidelity's extractors, and the metrics come from torch-fidelity's own functions on those
features, so the numbers are exactly what `calculate_metrics` reports (a test checks it).
Density and coverage (Naeem et al. 2020), which torch-fidelity lacks, come from
cxrlib.scoring.density on the same features (tested against the authors' `prdc` package).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch_fidelity.feature_extractor_inceptionv3 import (
    URL_INCEPTION_V3,
    FeatureExtractorInceptionV3,
)
from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric
from torch_fidelity.metric_kid import kid_features_to_metric
from torch_fidelity.metric_prc import prc_features_to_metric

from cxrlib.scoring.density import DC_NEIGHBORHOOD, density_coverage
from cxrlib.scoring.feasibility import shortfalls
from cxrlib.weights import WeightsError as WeightsError  # re-exported, with:
from cxrlib.weights import file_sha256 as file_sha256
from cxrlib.weights import verify_weights as verify_weights

log = logging.getLogger(__name__)

# torch hub convention: the published file name carries the first 8 hex digits of its sha256.
INCEPTION_SHA256_PREFIX: str = re.search(r"-([0-9a-f]{8})\.pth$", URL_INCEPTION_V3).group(1)


def inception_extractor(
    weights_path: str | Path, expected_sha256: str = INCEPTION_SHA256_PREFIX
) -> FeatureExtractorInceptionV3:
    """torch-fidelity's InceptionV3 (2048-d pool features) from a verified local file."""
    verify_weights(weights_path, expected_sha256)
    return FeatureExtractorInceptionV3(
        "inception-v3-compat", ["2048"], feature_extractor_weights_path=str(weights_path)
    )


def to_uint8_rgb(images: torch.Tensor) -> torch.Tensor:
    """Images as the extractors want them: uint8 (N, 3, H, W).

    Accepts uint8 (N, H, W) / (N, 1, H, W) / (N, 3, H, W), or floats in [-1, 1] (generator
    output), which are mapped to 0..255 with rounding as torch-fidelity's own wrapper does.
    """
    if images.dim() == 3:
        images = images.unsqueeze(1)
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"expected (N, H, W) or (N, 1|3, H, W) images, got {tuple(images.shape)}")
    if images.dtype != torch.uint8:
        images = ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    return images.contiguous()


@torch.no_grad()
def extract_features(
    extractor: Callable[[torch.Tensor], tuple[torch.Tensor, ...]],
    batches: Iterable[torch.Tensor],
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """Features (N, D) float32 of every image in `batches`, one batch in memory at a time."""
    chunks = []
    for batch in batches:
        out = extractor(to_uint8_rgb(batch).to(device))
        features = out[0] if isinstance(out, tuple | list) else out
        chunks.append(features.detach().float().cpu().numpy())
    if not chunks:
        raise ValueError("no images to extract features from")
    return np.concatenate(chunks)


def array_batches(images: np.ndarray, batch_size: int = 64) -> Iterator[torch.Tensor]:
    """Batches of a uint8 (N, H, W) array, e.g. a split from the prepared-data cache."""
    for start in range(0, len(images), batch_size):
        yield torch.from_numpy(np.ascontiguousarray(images[start : start + batch_size]))


def generator_batches(
    sample: Callable[[int, torch.Generator], torch.Tensor],
    n_images: int,
    batch_size: int = 64,
    seed: int = 0,
) -> Iterator[torch.Tensor]:
    """Stream `n_images` from `sample(batch_size, generator)` (e.g. G(z)), seeded, in batches.

    Only one batch exists at a time, so scoring 50,000 samples needs the memory of one batch.
    """
    rng = torch.Generator().manual_seed(seed)
    done = 0
    while done < n_images:
        size = min(batch_size, n_images - done)
        yield sample(size, rng)
        done += size


@dataclass(frozen=True)
class FidelityScores:
    """FID, KID (mean, std over subsets), precision, recall, density and coverage of `fake`
    against `real`.

    A metric one of the sets is too small for (cxrlib.scoring.feasibility) is NaN, its KID
    subset size None, and `reasons` maps its name ("FID", "KID", "precision/recall",
    "density/coverage") to why.
    """

    fid: float
    kid_mean: float
    kid_std: float
    kid_subset_size: int | None
    precision: float
    recall: float
    density: float
    coverage: float
    n_real: int
    n_fake: int
    reasons: dict[str, str] = field(default_factory=dict)


def kid_subset_size(n_real: int, n_fake: int, preferred: int = 1000) -> int:
    """KID's subset size, shrunk to the smaller set when it has fewer than `preferred` images.

    torch-fidelity asserts the subset fits both sets; small demo sets would fail otherwise.
    Never below 2 (the unbiased MMD needs pairs): KID needs >= 2 images in each set, which
    `score_features` checks before asking for a subset.
    """
    return max(2, min(preferred, n_real, n_fake))


def score_features(
    real: np.ndarray,
    fake: np.ndarray,
    *,
    kid_subsets: int = 100,
    kid_preferred_subset_size: int = 1000,
    prc_neighborhood: int = 3,
    dc_neighborhood: int = DC_NEIGHBORHOOD,
    seed: int = 2020,
    real_name: str = "the real set",
    fake_name: str = "the generated set",
) -> FidelityScores:
    """All metrics from two (N, D) float feature arrays, by torch-fidelity's functions and defaults.

    Precision/recall are computed in the same feature space as FID/KID (torch-fidelity's
    `calculate_metrics` defaults to VGG16 features for them; pass `feature_layer_prc="2048"`
    with the Inception extractor there to compare). Density and coverage use the real set's
    `dc_neighborhood`-NN balls (cxrlib.scoring.density), on the same features.

    Sets too small for a metric (FID and KID need >= 2 images each, precision/recall more than
    `prc_neighborhood`, density/coverage more than `dc_neighborhood` reals and >= 1 fake) give
    NaN for that metric and a reason naming the set (`real_name`, `fake_name`, e.g.
    "test/NORMAL") in `reasons`; the other metrics are still computed.
    Raises ValueError for arrays that are not (N, D) with the same D, or hold NaN/inf.
    """
    for name, array in ((real_name, real), (fake_name, fake)):
        if array.ndim != 2:
            raise ValueError(f"features of {name} must be (N, D), got shape {array.shape}")
        if not np.isfinite(array).all():
            raise ValueError(f"features of {name} contain NaN or inf; cannot score them")
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"feature sizes differ: real {real.shape[1]}, fake {fake.shape[1]}")
    reasons = shortfalls(
        {real_name: len(real), fake_name: len(fake)},
        prc_neighborhood,
        metrics=("FID", "KID", "precision/recall", "density/coverage"),
        dc_neighborhood=dc_neighborhood,
        generated=fake_name,
    )
    nan = float("nan")
    fid = kid_mean = kid_std = precision = recall = density = coverage = nan
    subset = None
    # torch-fidelity's order: input 1 is generated, input 2 is real (precision = share of
    # generated samples inside the real manifold).
    t_fake, t_real = torch.from_numpy(fake), torch.from_numpy(real)
    if "FID" not in reasons:
        stats_fake = fid_features_to_statistics(t_fake)
        stats_real = fid_features_to_statistics(t_real)
        fid = float(
            fid_statistics_to_metric(stats_fake, stats_real, verbose=False)[
                "frechet_inception_distance"
            ]
        )
    if "KID" not in reasons:
        subset = kid_subset_size(len(real), len(fake), kid_preferred_subset_size)
        kid = kid_features_to_metric(
            t_fake,
            t_real,
            kid_subsets=kid_subsets,
            kid_subset_size=subset,
            rng_seed=seed,
            verbose=False,
        )
        kid_mean = float(kid["kernel_inception_distance_mean"])
        kid_std = float(kid["kernel_inception_distance_std"])
    if "precision/recall" not in reasons:
        prc = prc_features_to_metric(
            t_fake, t_real, prc_neighborhood=prc_neighborhood, prc_batch_size=10000, verbose=False
        )
        precision, recall = float(prc["precision"]), float(prc["recall"])
    if "density/coverage" not in reasons:
        density, coverage = density_coverage(real, fake, dc_neighborhood)
    return FidelityScores(
        fid=fid,
        kid_mean=kid_mean,
        kid_std=kid_std,
        kid_subset_size=subset,
        precision=precision,
        recall=recall,
        density=density,
        coverage=coverage,
        n_real=len(real),
        n_fake=len(fake),
        reasons=reasons,
    )
