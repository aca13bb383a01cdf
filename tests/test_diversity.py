"""Mode collapse: collapsed generators score far below the real images' diversity, healthy ones
about equal, and the collapse epoch of a training sweep is found by the documented rule."""

from __future__ import annotations

import numpy as np
import pytest

from cxrlib.data.phantom import render_radiograph
from cxrlib.scoring.diversity import (
    collapse_table,
    detect_collapse,
    diversity_ratio,
    nearest_neighbour_diversity,
    pairwise_diversity,
    pixel_diversity_ratio,
    pixel_features,
)

SIZE = 64


def _phantoms(seed: int, n: int) -> np.ndarray:
    return np.stack(
        [render_radiograph(np.random.default_rng([seed, i]), SIZE, SIZE, False) for i in range(n)]
    )


@pytest.fixture(scope="module")
def real() -> np.ndarray:
    """The 'training set': 80 NORMAL phantoms."""
    return _phantoms(1, 80)


@pytest.fixture(scope="module")
def healthy() -> np.ndarray:
    """A healthy generator: fresh draws from the real distribution."""
    return _phantoms(2, 80)


def features(images: np.ndarray) -> np.ndarray:
    """A fixed random projection of 16 px thumbnails: (N, 32), any extractor would do."""
    projection = np.random.default_rng(0).normal(size=(16 * 16, 32)) / 16
    return pixel_features(images, 16) @ projection


def _collapsed(image: np.ndarray, n: int, seed: int, spread: float = 2.0) -> np.ndarray:
    """One image plus a little noise (gray levels), n times: the generator's single mode."""
    noise = np.random.default_rng(seed).normal(0, spread, (n, *image.shape))
    return np.clip(image[None] + noise, 0, 255).astype(np.uint8)


def test_pairwise_diversity_is_the_mean_distance_over_pairs() -> None:
    x = np.random.default_rng(0).normal(size=(30, 4))
    brute = np.linalg.norm(x[:, None] - x[None], axis=2)[np.triu_indices(30, 1)].mean()
    assert pairwise_diversity(x) == pytest.approx(brute)
    nearest = np.linalg.norm(x[:, None] - x[None], axis=2) + np.diag(np.full(30, np.inf))
    assert nearest_neighbour_diversity(x) == pytest.approx(nearest.min(axis=1).mean())
    # Subsampling is seeded: same seed same value, and it only uses max_n rows.
    assert pairwise_diversity(x, max_n=10, seed=1) == pairwise_diversity(x, max_n=10, seed=1)
    assert pairwise_diversity(x, max_n=10, seed=1) != pairwise_diversity(x, max_n=10, seed=2)
    assert pairwise_diversity(np.zeros((5, 3))) == 0.0
    with pytest.raises(ValueError, match="at least 2"):
        pairwise_diversity(x[:1])


def test_healthy_generator_has_ratio_near_one(real: np.ndarray, healthy: np.ndarray) -> None:
    for statistic in ("pairwise", "nearest"):
        ratio = diversity_ratio(features(healthy), features(real), statistic=statistic)
        assert 0.85 < ratio < 1.15, (statistic, ratio)
    assert 0.85 < pixel_diversity_ratio(healthy, real) < 1.15


def test_single_mode_collapse_is_far_below_threshold(real: np.ndarray) -> None:
    fake = _collapsed(real[0], 80, seed=3)
    for statistic in ("pairwise", "nearest"):
        assert diversity_ratio(features(fake), features(real), statistic=statistic) < 0.1
    assert pixel_diversity_ratio(fake, real) < 0.1


def test_few_mode_collapse_needs_the_nearest_neighbour_statistic(real: np.ndarray) -> None:
    # Three modes: the mean pairwise distance keeps ~2/3 of the spread between the modes, while
    # samples within one mode are near-duplicates, which the nearest-neighbour statistic sees.
    fake = np.concatenate([_collapsed(real[k], 27, seed=k) for k in (0, 1, 2)])
    pairwise = diversity_ratio(features(fake), features(real), statistic="pairwise")
    nearest = diversity_ratio(features(fake), features(real), statistic="nearest")
    assert nearest < 0.1
    assert pairwise > 0.4


def test_ratio_uses_the_same_n_for_both_sets(real: np.ndarray, healthy: np.ndarray) -> None:
    # The nearest-neighbour statistic shrinks with n; 20 fakes against 80 reals must still
    # compare like with like.
    ratio = diversity_ratio(features(healthy[:20]), features(real), statistic="nearest")
    assert 0.7 < ratio < 1.3
    unequal = nearest_neighbour_diversity(features(healthy[:20])) / nearest_neighbour_diversity(
        features(real)
    )
    assert unequal > ratio  # what comparing at different n would have reported


# --------------------------------------------------------------------------------------------
# Collapse over training
# --------------------------------------------------------------------------------------------


def _sweep(real: np.ndarray, healthy: np.ndarray) -> tuple[list[int], list[float]]:
    """Ratios of a simulated run: warm-up (near-constant output growing varied) to epoch 30,
    healthy to epoch 80, collapsed onto one mode from epoch 90 on."""
    real_f, pool = features(real), features(healthy)
    mean = pool.mean(axis=0)
    epochs = list(range(0, 160, 10))
    ratios = []
    for epoch in epochs:
        rng = np.random.default_rng(epoch)
        draw = pool[rng.choice(len(pool), 60, replace=False)]
        if epoch <= 80:
            scale = min(1.0, 0.1 + epoch / 30)  # warm-up: outputs cluster around the mean
            fake = mean + scale * (draw - mean)
        else:
            fake = pool[0] + 0.02 * rng.normal(size=draw.shape) * draw.std()
        ratios.append(diversity_ratio(fake, real_f))
    return epochs, ratios


def test_detect_collapse_finds_the_epoch_after_which_diversity_is_lost(
    real: np.ndarray, healthy: np.ndarray
) -> None:
    epochs, ratios = _sweep(real, healthy)
    assert ratios[0] < 0.5  # the warm-up is below the threshold too ...
    assert min(ratios[3:9]) > 0.9 and max(ratios[9:]) < 0.2
    # ... but lies before the best snapshot, so it is not collapse.
    assert detect_collapse(epochs, ratios) == 90
    assert detect_collapse(epochs, ratios, patience=3) == 90
    table = collapse_table(epochs, ratios)
    assert table.loc[table["collapsed"], "epoch"].tolist() == list(range(90, 160, 10))
    assert table["below_threshold"].tolist()[:3] == [True, True, False]  # warm-up


def test_healthy_run_is_not_flagged(real: np.ndarray, healthy: np.ndarray) -> None:
    epochs = [10, 20, 30, 40]
    ratios = [
        diversity_ratio(features(healthy[i : i + 40]), features(real)) for i in (0, 10, 20, 40)
    ]
    assert all(0.8 < r < 1.2 for r in ratios)
    assert detect_collapse(epochs, ratios) is None
    assert not collapse_table(epochs, ratios)["collapsed"].any()


def test_patience_ignores_a_transient_dip_and_defers_a_last_snapshot_drop() -> None:
    epochs = [0, 10, 20, 30, 40, 50]
    dip = [0.2, 1.0, 0.3, 0.9, 1.0, 0.95]
    assert detect_collapse(epochs, dip, patience=1) == 20
    assert detect_collapse(epochs, dip, patience=2) is None
    late = [0.2, 1.0, 0.9, 1.0, 0.95, 0.1]
    assert detect_collapse(epochs, late, patience=1) == 50
    assert detect_collapse(epochs, late, patience=2) is None  # one snapshot is not enough yet


def test_a_run_that_never_reaches_the_threshold_collapsed_from_the_start() -> None:
    assert detect_collapse([5, 10, 15], [0.1, 0.3, 0.2]) == 5
    assert detect_collapse([0.5, 1.0], [0.4, 0.45]) == 0.5  # kimg, not epochs: kept as given


def test_detect_collapse_rejects_bad_series() -> None:
    with pytest.raises(ValueError, match="increasing"):
        detect_collapse([0, 20, 10], [1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="equal-length"):
        detect_collapse([0, 10], [1.0])
    with pytest.raises(ValueError, match="finite"):
        detect_collapse([0, 10], [1.0, float("nan")])
    with pytest.raises(ValueError, match="patience"):
        detect_collapse([0, 10], [1.0, 1.0], patience=0)
