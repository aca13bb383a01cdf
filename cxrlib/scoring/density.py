"""Density and coverage: fidelity and diversity of generated samples from k-NN balls of the reals.

Naeem, Oh, Uh, Choi and Yoo 2020, "Reliable Fidelity and Diversity Metrics for Generative
Models" (ICML), Section 3, "Density and coverage". With real features R_1..R_N, generated
(fake) features F_1..F_M, NND_k(R_i) the distance from R_i to its k-th nearest *other* real
feature and B(x, r) the ball of radius r around x:

    density  = 1 / (k M) * sum_j sum_i 1[F_j in B(R_i, NND_k(R_i))]
    coverage = 1 / N     * sum_i 1[exists j: F_j in B(R_i, NND_k(R_i))]

They answer precision and recall (Kynkaanniemi et al. 2019, beside them in every score table)
more robustly: precision asks whether a sample lies in *any* real ball, so one outlier real with
a wide ball makes poor samples count as realistic, while density counts how many real balls
hold each sample; recall is built on the samples' own balls, which outlier samples inflate,
while coverage uses the reals' balls only. Density, over k, is about 1 when the samples are
distributed like the reals, above 1 when they pile into dense real regions, towards 0 for
samples far from every real image; it is not capped at 1. Coverage is the share of real
images with at least one sample in their ball (0..1): mode dropping lowers it.

For identical distributions the paper gives E[density] = 1 and E[coverage] = 1 - (N-1)...(N-k)
/ ((M+N-1)...(M+N-k)), 1 - 2^-k for M = N large (0.97 at its recommended k = 5, which it pairs
with M = N ~ 10,000). Both are biased at small N and M (the balls are wide, and coverage's
expectation is below 1 even for a perfect generator): compare values at the same set sizes.

B is the open ball (a strict "<"), as in the authors' reference code: R_i's own k-th neighbour
lies on the boundary, outside, so a sample set equal to (distinct) reals has density exactly 1:
each ball holds its centre and the k - 1 nearer neighbours.
"""

from __future__ import annotations

import numpy as np

# k of the paper's recommendation (Section 3; metrics.dc_neighborhood's default).
DC_NEIGHBORHOOD = 5
# Real rows per block of the distance matrices: a (block, max(N, M)) float64 block is 41 MB at
# 10,000 samples, where the whole 10,000 x 10,000 matrix would be 800 MB.
CHUNK_SIZE = 512


def _squared_distances(
    a: np.ndarray, b: np.ndarray, a_sq: np.ndarray, b_sq: np.ndarray
) -> np.ndarray:
    """(len(a), len(b)) float64 squared Euclidean distances -2 a.b + |a|^2 + |b|^2, clipped at
    0 (rounding), built in place: one block in memory."""
    d2 = a @ b.T
    d2 *= -2.0
    d2 += a_sq[:, None]
    d2 += b_sq[None, :]
    return np.maximum(d2, 0.0, out=d2)


def real_radii(real: np.ndarray, k: int, chunk_size: int = CHUNK_SIZE) -> np.ndarray:
    """NND_k of each row of (N, D) float64 `real`: the distance to its k-th nearest other row.

    (N,) float64, in the features' units. Needs N > k (checked by `density_coverage`).
    """
    sq = np.einsum("ij,ij->i", real, real)
    radii = np.empty(len(real))
    # A product of a block with its own array (real @ real.T) is computed by BLAS as a
    # symmetric product (syrk), whose rounding differs from the general one (gemm) used for
    # the fakes: a fake equal to a real would then fall inside or outside the real's ball by
    # the last bit. A copy makes both the same general product.
    others = real.copy()
    for start in range(0, len(real), chunk_size):
        stop = min(start + chunk_size, len(real))
        d2 = _squared_distances(real[start:stop], others, sq[start:stop], sq)
        rows = np.arange(stop - start)
        d2[rows, start + rows] = np.inf  # a real is not its own neighbour
        radii[start:stop] = np.partition(d2, k - 1, axis=1)[:, k - 1]
    return np.sqrt(radii)


def density_coverage(
    real: np.ndarray,
    fake: np.ndarray,
    k: int = DC_NEIGHBORHOOD,
    *,
    chunk_size: int = CHUNK_SIZE,
) -> tuple[float, float]:
    """(density, coverage) of (M, D) generated features `fake` against (N, D) real features.

    Definitions above (Naeem et al. 2020, Section 3). Features of any float dtype are compared
    as float64 Euclidean distances, computed `chunk_size` real rows at a time, so memory is the
    two float64 arrays plus one (chunk_size, max(N, M)) block. Density is >= 0 (a mean count
    over k, not capped at 1), coverage in [0, 1]; both unitless.

    Raises ValueError for arrays that are not 2-D with the same D or hold NaN/inf, for k not
    an integer >= 1, for N <= k (no k-th nearest other real) and for M = 0. Duplicated real
    images have balls of radius 0, which hold nothing (an open ball): deduplicate first, as
    the data stage does for exact duplicates. `score_features` checks the set
    sizes first and writes NaN with the reason instead (cxrlib.scoring.feasibility).
    """
    if isinstance(k, bool) or not isinstance(k, int | np.integer):
        raise ValueError(f"density/coverage k must be an integer, got {k!r}")
    k = int(k)
    if k < 1:
        raise ValueError(f"density/coverage need k >= 1 nearest neighbours, got {k}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    real = np.asarray(real, dtype=np.float64)
    fake = np.asarray(fake, dtype=np.float64)
    for name, array in (("real", real), ("fake", fake)):
        if array.ndim != 2:
            raise ValueError(f"{name} features must be (N, D), got shape {array.shape}")
        if not np.isfinite(array).all():
            raise ValueError(f"{name} features contain NaN or inf")
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"feature sizes differ: real {real.shape[1]}, fake {fake.shape[1]}")
    if len(real) <= k:
        raise ValueError(
            f"density/coverage with k = {k} need more than {k} real samples, got {len(real)}"
        )
    if len(fake) == 0:
        raise ValueError("density/coverage need at least 1 generated sample, got 0")
    # Distances are translation invariant; centring on the reals' mean keeps the expansion
    # |a|^2 - 2 a.b + |b|^2 from cancelling when features share a large offset.
    centre = real.mean(axis=0)
    real, fake = real - centre, fake - centre
    radii = real_radii(real, k, chunk_size)
    real_sq = np.einsum("ij,ij->i", real, real)
    fake_sq = np.einsum("ij,ij->i", fake, fake)
    inside = 0  # pairs (i, j) with F_j in R_i's ball
    covered = 0  # reals with at least one F_j in their ball
    for start in range(0, len(real), chunk_size):
        stop = min(start + chunk_size, len(real))
        distances = np.sqrt(
            _squared_distances(real[start:stop], fake, real_sq[start:stop], fake_sq)
        )
        hits = distances < radii[start:stop, None]
        inside += int(np.count_nonzero(hits))
        covered += int(np.count_nonzero(hits.any(axis=1)))
    return inside / (k * len(fake)), covered / len(real)
