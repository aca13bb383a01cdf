"""Mode collapse: do a generator's samples stay as varied as the real images?

A collapsing GAN maps many latent vectors to one or a few images. FID rises when that happens,
but FID mixes fidelity and diversity into one number; a direct diversity measure says which of
the two went wrong and when. Here diversity is measured in the same feature space as FID (or in
pixels, beside it) and always relative to the real images, because absolute distances mean
nothing across extractors:

- `pairwise_diversity`: the mean Euclidean distance between two samples (the spread of the set).
  Robust and comparable at any n, since the mean over pairs is an unbiased estimate of the
  expected distance between two draws. It falls towards 0 when everything collapses to one
  image; for a collapse onto k distinct modes it only falls to about (1 - 1/k) of the spread
  between the modes, so it sees severe collapse, not partial.
- `nearest_neighbour_diversity`: the mean distance from each sample to its nearest other sample.
  Samples that fall into the same mode are near-duplicates, so this falls towards 0 for a
  collapse onto a few modes too. It depends on n (more samples sit closer), hence ratios are
  always taken at the same n for the fake and the real set.

`diversity_ratio` divides a fake set's diversity by the real set's at the same n: ~1 for a
healthy generator, -> 0 for a collapsed one. `detect_collapse` turns a ratio series over
training snapshots into the epoch where collapse began.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd

from cxrlib.memorisation.audit import nearest_neighbours, resize_float

Statistic = Literal["pairwise", "nearest"]

# Rows per block of the pairwise distance matrix: (block, n) float64 stays small at n = 1,000.
_BLOCK = 256


class NoRealDiversity(ValueError):
    """The real set has no spread (all its feature vectors equal): no ratio can be formed."""


def _subsample(features: np.ndarray, n: int, seed: int) -> np.ndarray:
    """`n` rows drawn without replacement by a seeded generator (all rows, in order, if fewer)."""
    features = np.asarray(features)
    if features.ndim != 2:
        raise ValueError(f"features must be (N, D), got shape {features.shape}")
    if len(features) < 2:
        raise ValueError(f"diversity needs at least 2 samples, got {len(features)}")
    if n < 2:
        raise ValueError(f"diversity needs n >= 2 samples, got max_n={n}")
    if n >= len(features):
        return features
    rows = np.random.default_rng(seed).choice(len(features), size=n, replace=False)
    return features[np.sort(rows)]


def pairwise_diversity(features: np.ndarray, max_n: int = 1000, seed: int = 0) -> float:
    """Mean Euclidean distance over all pairs i < j of (at most `max_n`) rows of (N, D) features.

    Rows beyond `max_n` are subsampled with `seed`, so repeated calls agree; the cost is
    O(max_n^2 D), computed in blocks of rows.
    """
    x = _subsample(features, max_n, seed).astype(np.float64)
    sq = np.einsum("nd,nd->n", x, x)
    total = 0.0
    for start in range(0, len(x), _BLOCK):
        block = x[start : start + _BLOCK]
        d2 = sq[start : start + len(block), None] + sq[None, :] - 2.0 * (block @ x.T)
        dist = np.sqrt(np.maximum(d2, 0.0))
        # Only pairs with j > i: each unordered pair once, never a sample with itself.
        rows = np.arange(start, start + len(block))[:, None]
        total += float(dist[np.arange(len(x))[None, :] > rows].sum())
    n = len(x)
    return total / (n * (n - 1) / 2)


def nearest_neighbour_diversity(features: np.ndarray, max_n: int = 1000, seed: int = 0) -> float:
    """Mean Euclidean distance from each of (at most `max_n`) rows to its nearest other row."""
    x = _subsample(features, max_n, seed)
    ids = np.arange(len(x))
    # Each row is its own group, which excludes the row itself and nothing else.
    _, dist = nearest_neighbours(x, x, 1, query_groups=ids, ref_groups=ids)
    return float(dist[:, 0].mean())


_STATISTICS = {"pairwise": pairwise_diversity, "nearest": nearest_neighbour_diversity}


def diversity_ratio(
    fake_features: np.ndarray,
    real_features: np.ndarray,
    max_n: int = 1000,
    seed: int = 0,
    statistic: Statistic = "pairwise",
) -> float:
    """Diversity of the fake features over that of the real ones, both at the same n.

    n = min(len(fake), len(real), max_n), so the nearest-neighbour statistic (which shrinks as
    n grows) compares like with like. ~1: as varied as the real images; -> 0: collapsed.

    Raises ValueError when a set has fewer than 2 rows (no pair: see
    cxrlib.scoring.feasibility), NoRealDiversity when every real row is the same.
    """
    if statistic not in _STATISTICS:
        raise ValueError(f"statistic must be one of {sorted(_STATISTICS)}, got {statistic!r}")
    n = min(len(fake_features), len(real_features), max_n)
    measure = _STATISTICS[statistic]
    real = measure(real_features, n, seed)
    if real <= 0:
        raise NoRealDiversity("the real features have no diversity (all identical); cannot compare")
    return measure(fake_features, n, seed) / real


def pixel_features(images: np.ndarray, size: int = 32) -> np.ndarray:
    """uint8 (N, H, W) images as (N, size*size) float32 in [0, 1], antialiased downsample.

    For a pixel-space diversity beside the feature-space one: a coarse size ignores detector
    noise (which would make every pair of images look different) and keeps the anatomy.
    """
    return (resize_float(images, size) / 255.0).reshape(len(images), -1)


def pixel_diversity_ratio(
    fake_images: np.ndarray,
    real_images: np.ndarray,
    size: int = 32,
    max_n: int = 1000,
    seed: int = 0,
    statistic: Statistic = "pairwise",
) -> float:
    """`diversity_ratio` on downsampled pixels; both sets go to `size` px whatever their size."""
    return diversity_ratio(
        pixel_features(fake_images, size), pixel_features(real_images, size), max_n, seed, statistic
    )


def _check_series(epochs: Sequence[float], ratios: Sequence[float]) -> np.ndarray:
    """Validate one ratio per snapshot in training order; return the ratios as floats."""
    e = np.asarray(epochs, dtype=float)
    r = np.asarray(ratios, dtype=float)
    if e.shape != r.shape or e.ndim != 1 or len(e) == 0:
        raise ValueError(f"need equal-length 1-d epochs and ratios, got {e.shape}, {r.shape}")
    if np.any(np.diff(e) <= 0):
        raise ValueError("epochs must be strictly increasing (one ratio per snapshot, in order)")
    if not np.all(np.isfinite(r)):
        raise ValueError("ratios must be finite")
    return r


def detect_collapse(
    epochs: Sequence[int] | Sequence[float],
    ratios: Sequence[float],
    threshold: float = 0.5,
    patience: int = 1,
) -> int | float | None:
    """The epoch (the element of `epochs`) at which mode collapse began, or None if it never did.

    `epochs` may be epochs (DCGAN) or kimg (StyleGAN2-ADA); `ratios` are `diversity_ratio`s of
    the snapshots, in training order.

    Rule: find the best snapshot (highest ratio, the first one if tied). After it, the first
    snapshot that starts a run of `patience` consecutive snapshots all below `threshold` is
    where collapse began; its epoch is returned. If even the best snapshot is below the
    threshold, the generator never reached the real images' diversity and the first epoch is
    returned (collapsed from the start).

    Why after the best point: a generator starts out near-constant (every latent gives the same
    blur), so low ratios early in training are warm-up, not collapse; collapse is diversity
    that had been reached and was lost. Why `patience`: one low snapshot can be a noisy
    estimate or a transient the GAN recovers from; demanding several in a row trades a delay
    of patience - 1 snapshots for fewer false alarms. A drop in the last patience - 1 snapshots
    is not yet reported (too little evidence).
    """
    if patience < 1:
        raise ValueError(f"patience must be >= 1, got {patience}")
    r = _check_series(epochs, ratios)
    best = int(np.argmax(r))
    if r[best] < threshold:
        return _epoch_at(epochs, 0)
    below = r < threshold
    for i in range(best + 1, len(r) - patience + 1):
        if below[i : i + patience].all():
            return _epoch_at(epochs, i)
    return None


def _epoch_at(epochs: Sequence[int] | Sequence[float], i: int) -> int | float:
    """The i-th epoch as a plain Python number (int stays int), ready for JSON."""
    return np.asarray(epochs)[i].item()


def collapse_table(
    epochs: Sequence[int] | Sequence[float],
    ratios: Sequence[float],
    threshold: float = 0.5,
    patience: int = 1,
) -> pd.DataFrame:
    """Per snapshot: epoch, ratio, below_threshold (the plain per-snapshot flag) and collapsed
    (at or after the epoch `detect_collapse` reports), for the sweep table and plots."""
    r = _check_series(epochs, ratios)
    onset = detect_collapse(epochs, ratios, threshold, patience)
    epochs_arr = np.asarray(epochs)
    return pd.DataFrame(
        {
            "epoch": epochs_arr,
            "diversity_ratio": r,
            "below_threshold": r < threshold,
            "collapsed": np.zeros(len(r), bool) if onset is None else epochs_arr >= onset,
        }
    )
