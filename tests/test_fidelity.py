"""FID/KID/precision-recall: agreement with torch-fidelity and the metrics' known behaviour.

No weights can be downloaded here, so a file with the InceptionV3 architecture's keys is made
in the test (random but informative weights: BN scales 1, He-scaled convolutions; the module's
own init gives near-zero features) and loaded through the real path, sha256 check included.
"""

from __future__ import annotations

import math
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torch_fidelity import calculate_metrics
from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
from torch_fidelity.metric_kid import kid_features_to_metric

from cxrlib.data.phantom import render_radiograph
from cxrlib.scoring.fidelity import (
    WeightsError,
    array_batches,
    extract_features,
    file_sha256,
    generator_batches,
    inception_extractor,
    kid_subset_size,
    score_features,
    verify_weights,
)

pytestmark = pytest.mark.slow


def make_inception_weights(path: Path) -> None:
    """Save an InceptionV3 state dict (torch-fidelity's keys) with informative random weights."""
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
    torch.save(model.state_dict(), path)


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("weights") / "inception.pth"
    make_inception_weights(path)
    return path


@pytest.fixture(scope="module")
def extractor(weights: Path) -> FeatureExtractorInceptionV3:
    return inception_extractor(weights, expected_sha256=file_sha256(weights))


def _phantoms(n: int, seed: int, size: int = 64) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([render_radiograph(rng, size, size, bool(i % 2)) for i in range(n)])


@pytest.fixture(scope="module")
def real_images() -> np.ndarray:
    return _phantoms(48, seed=1)


@pytest.fixture(scope="module")
def real_features(extractor, real_images: np.ndarray) -> np.ndarray:
    """Inception features of real_images, extracted once for the module (~10 s on 2 CPUs)."""
    return _features(extractor, real_images)


def _noisy(images: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(images + rng.normal(0, sigma, images.shape), 0, 255).astype(np.uint8)


def _features(extractor, images: np.ndarray) -> np.ndarray:
    return extract_features(extractor, array_batches(images, batch_size=16))


def test_scores_agree_with_torch_fidelity_calculate_metrics(
    extractor, weights: Path, real_images: np.ndarray, real_features: np.ndarray, tmp_path: Path
) -> None:
    fake_images = _noisy(real_images[:40], 25.0)
    for name, images in (("real", real_images), ("fake", fake_images)):
        (tmp_path / name).mkdir()
        for i, image in enumerate(images):
            Image.fromarray(image).convert("RGB").save(tmp_path / name / f"{i:03d}.png")
    theirs = calculate_metrics(
        input1=str(tmp_path / "fake"),
        input2=str(tmp_path / "real"),
        fid=True,
        kid=True,
        prc=True,
        feature_extractor_weights_path=str(weights),
        kid_subset_size=40,
        cache=False,
        feature_extractor="inception-v3-compat",
        feature_layer_prc="2048",
        cuda=torch.cuda.is_available(),
        verbose=False,
        batch_size=16,
    )
    ours = score_features(real_features, _features(extractor, fake_images))
    assert ours.kid_subset_size == 40
    pairs = {
        "frechet_inception_distance": ours.fid,
        "kernel_inception_distance_mean": ours.kid_mean,
        "kernel_inception_distance_std": ours.kid_std,
        "precision": ours.precision,
        "recall": ours.recall,
    }
    for key, value in pairs.items():
        assert value == pytest.approx(theirs[key], rel=1e-3, abs=1e-9), key


def test_fid_of_a_set_with_itself_is_zero_and_grows_with_noise(
    extractor, real_images, real_features
) -> None:
    real = real_features
    assert abs(score_features(real, real).fid) < 1e-3
    fids, kids = [], []
    for sigma in (5.0, 20.0, 60.0):  # 24 noisy images each: half the set
        scores = score_features(real, _features(extractor, _noisy(real_images[::2], sigma)))
        fids.append(scores.fid)
        kids.append(scores.kid_mean)
    assert fids[0] < fids[1] < fids[2]
    assert kids[0] < kids[1] < kids[2]


def test_kid_of_disjoint_halves_of_one_distribution_is_unbiased(extractor) -> None:
    """KID as score_features computes it (torch-fidelity's estimator, its subset size and
    count); the halves call that estimator alone: each FID beside it costs ~3 s (sqrtm)."""
    images = _phantoms(64, seed=7)
    features = _features(extractor, images)
    rng = np.random.default_rng(0)
    kids = []

    def kid(real: np.ndarray, fake: np.ndarray) -> float:
        subset = kid_subset_size(len(real), len(fake))
        result = kid_features_to_metric(
            torch.from_numpy(fake), torch.from_numpy(real), kid_subsets=100,
            kid_subset_size=subset, rng_seed=2020, verbose=False,
        )  # fmt: skip
        return float(result["kernel_inception_distance_mean"])

    halves = features[:32], features[32:]
    assert kid(*halves) == pytest.approx(score_features(*halves).kid_mean, rel=1e-6)
    for _ in range(12):  # random disjoint halves; the estimator is unbiased, so they centre on 0
        order = rng.permutation(len(features))
        kids.append(kid(features[order[:32]], features[order[32:]]))
    spread = np.std(kids) / np.sqrt(len(kids))
    assert abs(np.mean(kids)) < 3 * spread
    shifted = score_features(features[::2], _features(extractor, _noisy(images[1::2], 60.0)))
    assert shifted.kid_mean > 10 * np.std(kids)


def test_scores_are_identical_for_the_same_seed(extractor, real_features) -> None:
    def sample(n: int, rng: torch.Generator) -> torch.Tensor:
        return torch.rand(n, 1, 64, 64, generator=rng) * 2 - 1

    real = real_features
    a = score_features(real, extract_features(extractor, generator_batches(sample, 20, 8, 3)))
    b = score_features(real, extract_features(extractor, generator_batches(sample, 20, 8, 3)))
    assert a == b


def test_generated_images_stream_in_batches() -> None:
    sizes = []

    def sample(n: int, rng: torch.Generator) -> torch.Tensor:
        sizes.append(n)
        return torch.zeros(n, 1, 8, 8)

    batches = generator_batches(sample, 5000, batch_size=64)
    first = next(batches)
    assert first.shape[0] == 64 and sizes == [64]  # lazily: one batch made so far
    assert sum(b.shape[0] for b in batches) + 64 == 5000


def test_kid_subset_size_adapts_to_small_sets() -> None:
    assert kid_subset_size(5000, 5000) == 1000
    assert kid_subset_size(300, 50) == 50


def test_weights_with_the_wrong_hash_are_refused_before_loading(tmp_path: Path) -> None:
    fake = tmp_path / "inception.pth"
    fake.write_bytes(b"not the published weights")
    with pytest.raises(WeightsError, match="download it again"):
        verify_weights(fake, "6726825d")
    with pytest.raises(WeightsError, match="fetch_weights"):
        verify_weights(tmp_path / "missing.pth", "6726825d")
