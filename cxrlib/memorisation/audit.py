"""Memorisation audit: does a generator reproduce its training images?

A GAN trained on ~1,300 radiographs can learn to emit near-copies of some of them, which is a
privacy leak (a synthetic data set that contains a patient's film is that patient's film) and a
sign of overfitting that FID does not see: a perfect copy of the training set has FID ~0. The
audit finds, for every synthetic image, its nearest real training image twice:

- in feature space (Euclidean distance between the caller's feature vectors, Inception or a CXR
  classifier; the audit does not care which), which sees through small shifts and noise;
- in pixels, by SSIM (Wang et al. 2004, scikit-image's defaults: 7x7 uniform window, K1 0.01,
  K2 0.03, sample covariances, data range 255), which sees what a reader of the images would see.

Both are put beside a real-to-real baseline: how close each real image is to its nearest real
image of another patient. Images of one patient are excluded there because repeat films of one
person are legitimately alike; counting them would make the baseline look like memorisation.

Cost: SSIM against all N reals for all M fakes is M*N full-image comparisons (1.3 million at
1,000 x 1,341). Instead each image is compared with a few candidates: its `candidates` nearest
reals by pixel L2 on a 16 px thumbnail plus its `candidates` nearest in feature space. A copy
(exact, re-noised, slightly shifted) is the nearest real on both counts, so the preselection does
not miss it; only the SSIM of unremarkable samples may be a slight underestimate. Distances are
computed in chunks of queries: memory stays at (chunk, N) distances, never (M, N, H, W) pixels.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from cxrlib.io import write_csv, write_json

log = logging.getLogger(__name__)

# SSIM constants: scikit-image's defaults (and the SSIM paper's), for 8-bit images.
SSIM_WINDOW = 7
SSIM_K1 = 0.01
SSIM_K2 = 0.03
SSIM_DATA_RANGE = 255.0
# Side of the thumbnails on which candidates are preselected by pixel L2: coarse enough to be
# cheap (256 values an image) and to forgive a pixel of shift, fine enough to rank anatomy.
PRESCREEN_PX = 16
# Queries per chunk of a distance matrix: (chunk, N) float64 stays a few MB at N = 1,341.
_DISTANCE_CHUNK = 256
# Pixels (pairs x H x W) per SSIM batch: 0.5 MB float64 intermediates stay in cache; measured
# 1.9x faster per pair than 32 MB batches at 256 px, 2.5x at 64 px.
_SSIM_PIXELS_PER_BATCH = 1 << 16


# --------------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------------


def _as_size(size: int | tuple[int, int]) -> tuple[int, int]:
    height, width = (size, size) if isinstance(size, int) else size
    if height < 1 or width < 1:
        raise ValueError(f"size must be positive, got {size}")
    return int(height), int(width)


def _check_images(images: np.ndarray, name: str) -> None:
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(
            f"{name} must be uint8 (N, H, W) grayscale, got {images.dtype} {images.shape}"
        )


def resize_float(images: np.ndarray, size: int | tuple[int, int], chunk: int = 256) -> np.ndarray:
    """Antialiased bilinear resize of uint8 (N, H, W) to float32 (N, h, w), gray levels 0..255.

    `size` is a side length or (height, width). Antialiasing matters when shrinking a 256 px
    radiograph to 64 px: plain bilinear would sample 1 pixel in 16 and keep the detector noise.
    Done in chunks of `chunk` images so a whole split never exists as float at full size.
    """
    _check_images(images, "images")
    height, width = _as_size(size)
    out = np.empty((len(images), height, width), dtype=np.float32)
    for start in range(0, len(images), chunk):
        out[start : start + chunk] = _resize_chunk(images[start : start + chunk], height, width)
    return out


def resize_uint8(images: np.ndarray, size: int | tuple[int, int], chunk: int = 256) -> np.ndarray:
    """Antialiased bilinear resize of uint8 (N, H, W) to uint8 (N, size, size), rounded."""
    _check_images(images, "images")
    height, width = _as_size(size)
    if images.shape[1:] == (height, width):
        return images.copy()
    out = np.empty((len(images), height, width), dtype=np.uint8)
    for start in range(0, len(images), chunk):
        resized = _resize_chunk(images[start : start + chunk], height, width)
        out[start : start + chunk] = np.clip(np.rint(resized), 0, 255)
    return out


def _resize_chunk(images: np.ndarray, height: int, width: int) -> np.ndarray:
    block = torch.from_numpy(np.ascontiguousarray(images)).unsqueeze(1).float()
    if block.shape[2:] != (height, width):
        block = F.interpolate(
            block, size=(height, width), mode="bilinear", antialias=True, align_corners=False
        )
    return block.squeeze(1).numpy()


@dataclass(frozen=True)
class WindowStats:
    """What SSIM needs of each image alone, as exact integers, so pairs share the work.

    With n = 7x7 pixels per window, for every window position that lies inside the image:
    `s1` is the sum of the gray levels (int16, <= 12,495) and `v` is n * sum(x^2) - s1^2
    (int32, <= 1.6e8), i.e. n (n - 1) times the sample variance. Shapes (N, H-6, W-6).
    A pair then costs one window sum (of x*y) instead of five, and integer sums are exact,
    which keeps the result equal to scikit-image's float64 SSIM.
    """

    images: np.ndarray  # uint8 (N, H, W)
    s1: np.ndarray
    v: np.ndarray


def _window_sums(values: np.ndarray) -> np.ndarray:
    """Sums over every 7x7 window inside (B, H, W) images: float32 (B, H-6, W-6).

    For integer inputs up to 65,025 (products of two gray levels) every partial sum stays below
    2^24, so float32 holds them exactly; seven shifted adds per axis beat a cumulative sum
    (which would overflow float32's exact range) four times over.
    """
    w = SSIM_WINDOW
    values = values.astype(np.float32, copy=False)
    height = values.shape[1] - w + 1
    rows = values[:, :height].copy()
    for k in range(1, w):
        rows += values[:, k : k + height]
    width = values.shape[2] - w + 1
    sums = rows[:, :, :width].copy()
    for k in range(1, w):
        sums += rows[:, :, k : k + width]
    return sums


def _pair_batch(height: int, width: int) -> int:
    return max(1, _SSIM_PIXELS_PER_BATCH // (height * width))


def window_stats(images: np.ndarray) -> WindowStats:
    """Per-image SSIM statistics of uint8 (N, H, W) images (see `WindowStats`)."""
    _check_images(images, "images")
    if min(images.shape[1:]) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs images of at least {SSIM_WINDOW} px, got {images.shape[1:]}")
    n = SSIM_WINDOW**2
    out_shape = (len(images), images.shape[1] - SSIM_WINDOW + 1, images.shape[2] - SSIM_WINDOW + 1)
    s1 = np.empty(out_shape, dtype=np.int16)  # exact: at most 49 * 255
    v = np.empty(out_shape, dtype=np.int32)
    step = _pair_batch(*images.shape[1:])
    for start in range(0, len(images), step):
        x = images[start : start + step].astype(np.float32)
        sums = _window_sums(x).astype(np.int64)
        s1[start : start + len(x)] = sums
        v[start : start + len(x)] = n * _window_sums(x * x).astype(np.int64) - sums * sums
    return WindowStats(images, s1, v)


def _ssim_from_stats(q: WindowStats, r: WindowStats, qi: np.ndarray, ri: np.ndarray) -> np.ndarray:
    """SSIM of q.images[qi[k]] against r.images[ri[k]] for every k: float64 (K,).

    SSIM = (2 ux uy + C1)(2 cov + C2) / ((ux^2 + uy^2 + C1)(vx + vy + C2)); written in window
    sums the factors n^2 and n (n - 1) cancel, leaving integer terms plus scaled constants.
    """
    n = SSIM_WINDOW**2
    c1 = (SSIM_K1 * SSIM_DATA_RANGE) ** 2 * n * n
    c2 = (SSIM_K2 * SSIM_DATA_RANGE) ** 2 * n * (n - 1)
    out = np.empty(len(qi), dtype=np.float64)
    step = _pair_batch(*q.images.shape[1:])
    for start in range(0, len(qi), step):
        a, b = qi[start : start + step], ri[start : start + step]
        sx = q.s1[a].astype(np.float64)
        sy = r.s1[b].astype(np.float64)
        sxy = _window_sums(q.images[a].astype(np.float32) * r.images[b]).astype(np.float64)
        # Exact in float64 (every term an integer below 2^53); in place, as this loop is the
        # audit's hot spot and fresh temporaries would double its memory traffic.
        cross = sx * sy
        sxy *= n
        sxy -= cross  # n (n - 1) cov
        sxy *= 2
        sxy += c2
        cross *= 2
        cross += c1
        sx *= sx
        sy *= sy
        sx += sy
        sx += c1
        cross /= sx  # luminance term
        spread = q.v[a].astype(np.float64)
        spread += r.v[b]
        spread += c2
        sxy /= spread  # contrast-structure term
        cross *= sxy
        means = cross
        out[start : start + len(a)] = means.mean(axis=(1, 2))
    return out


def ssim_pairs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """SSIM of each pair (a[i], b[i]) of uint8 (B, H, W) images: float64 (B,).

    Equals `skimage.metrics.structural_similarity(a[i], b[i], data_range=255)` (a test checks
    it to 1e-9): scikit-image averages the SSIM map over the pixels whose 7x7 window lies
    inside the image, which are exactly the windows summed here. It is reimplemented because a
    call per pair cost 8 ms at 256 px (minutes for an audit), and the per-image half of the
    work can be shared between the ~10 pairs each image takes part in.
    """
    if a.shape != b.shape:
        raise ValueError(f"SSIM pairs need equal shapes, got {a.shape} and {b.shape}")
    index = np.arange(len(a))
    return _ssim_from_stats(window_stats(a), window_stats(b), index, index)


# --------------------------------------------------------------------------------------------
# Nearest neighbours
# --------------------------------------------------------------------------------------------


def nearest_neighbours(
    queries: np.ndarray,
    refs: np.ndarray,
    k: int,
    *,
    query_groups: np.ndarray | None = None,
    ref_groups: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The k nearest rows of `refs` (N, D) to each row of `queries` (M, D), Euclidean.

    Returns indices (M, k) int64 and distances (M, k) float64, nearest first. With groups given
    (e.g. patient IDs), a ref in the query's own group is never returned; slots with no allowed
    ref left hold index -1 and distance inf. Computed in float64 (|q|^2 + |r|^2 - 2 q.r, clipped
    at 0) chunk by chunk, so memory is (chunk, N), not (M, N).
    """
    if queries.ndim != 2 or refs.ndim != 2 or queries.shape[1] != refs.shape[1]:
        raise ValueError(f"need (M, D) and (N, D) arrays, got {queries.shape} and {refs.shape}")
    if (query_groups is None) != (ref_groups is None):
        raise ValueError("give both query_groups and ref_groups, or neither")
    k = min(k, len(refs))
    ref64 = refs.astype(np.float64)
    ref_sq = np.einsum("nd,nd->n", ref64, ref64)
    indices = np.empty((len(queries), k), dtype=np.int64)
    distances = np.empty((len(queries), k), dtype=np.float64)
    for start in range(0, len(queries), _DISTANCE_CHUNK):
        q = queries[start : start + _DISTANCE_CHUNK].astype(np.float64)
        sq = np.einsum("md,md->m", q, q)[:, None] + ref_sq[None, :] - 2.0 * (q @ ref64.T)
        sq = np.maximum(sq, 0.0)
        if query_groups is not None:
            qg = np.asarray(query_groups)[start : start + len(q)]
            sq[qg[:, None] == np.asarray(ref_groups)[None, :]] = np.inf
        part = np.argpartition(sq, k - 1, axis=1)[:, :k] if k < sq.shape[1] else None
        if part is None:
            part = np.broadcast_to(np.arange(sq.shape[1]), sq.shape)
        part_sq = np.take_along_axis(sq, part, axis=1)
        order = np.argsort(part_sq, axis=1, kind="stable")
        idx = np.take_along_axis(part, order, axis=1)
        dist = np.sqrt(np.take_along_axis(part_sq, order, axis=1))
        idx[~np.isfinite(dist)] = -1
        indices[start : start + len(q)] = idx
        distances[start : start + len(q)] = dist
    return indices, distances


def _best_ssim(
    queries: np.ndarray | WindowStats, refs: WindowStats, candidate_sets: Sequence[np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """For each query, the candidate ref with the highest SSIM: (index (M,), SSIM (M,)).

    `queries` are uint8 images (their statistics are then computed a chunk at a time, so only
    the refs' statistics are held for the whole set) or precomputed `WindowStats`.
    """
    best_idx = np.full(len(candidate_sets), -1, dtype=np.int64)
    best = np.full(len(candidate_sets), -np.inf)
    step = _DISTANCE_CHUNK
    for start in range(0, len(candidate_sets), step):
        chunk = candidate_sets[start : start + step]
        if isinstance(queries, WindowStats):
            q_stats, offset = queries, start
        else:
            q_stats, offset = window_stats(queries[start : start + step]), 0
        local = np.concatenate([np.full(len(c), i) for i, c in enumerate(chunk)]).astype(int)
        ref_idx = np.concatenate(chunk).astype(np.int64)
        scores = _ssim_from_stats(q_stats, refs, local + offset, ref_idx)
        # Sort by query, then SSIM descending; each query's first row is its best candidate.
        order = np.lexsort((-scores, local))
        first = order[np.r_[True, np.diff(local[order]) != 0]]
        best_idx[start + local[first]] = ref_idx[first]
        best[start + local[first]] = scores[first]
    return best_idx, best


def _candidates(*index_arrays: np.ndarray) -> list[np.ndarray]:
    """Per query, the union of candidate indices from several (M, k) arrays (-1 dropped)."""
    stacked = np.concatenate(index_arrays, axis=1)
    return [np.unique(row[row >= 0]) for row in stacked]


# --------------------------------------------------------------------------------------------
# The audit
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditResult:
    """What `audit` found.

    samples: one row per synthetic image: sample (its index), nearest_feature_index/_path,
        feature_distance (Euclidean, feature units), nearest_pixel_index/_path, ssim (the best
        among the candidates), near_copy, and why (by_ssim, by_feature).
    real_to_real: one row per real image: real_index, path, patient_id, the same nearest
        columns, searched among real images of other patients only (index -1, distance and
        SSIM NaN, path "" where there is no other patient).
    summary: counts, thresholds and medians (JSON-ready plain Python values; None where not
        computable, and `not_computable` saying why, "" when everything was).
    """

    samples: pd.DataFrame
    real_to_real: pd.DataFrame
    summary: dict[str, Any]


def comparison_size(fake_shape: tuple[int, int], real_shape: tuple[int, int]) -> tuple[int, int]:
    """Where pixels are compared: the generated resolution, or the real one where smaller.

    Shrinking the reals to the samples' size loses nothing the generator could have copied;
    upsampling (a 256 px sample against a 128 px cache) would add no detail, only blur that
    lowers SSIM, so then both go to the smaller size.
    """
    return min(fake_shape[0], real_shape[0]), min(fake_shape[1], real_shape[1])


def _nearest_frame(
    best_feature: tuple[np.ndarray, np.ndarray],
    best_pixel: tuple[np.ndarray, np.ndarray],
    paths: np.ndarray,
) -> dict[str, np.ndarray]:
    f_idx, f_dist = best_feature
    p_idx, p_ssim = best_pixel
    # Index -1: no allowed partner (a real image with no other patient's image): no path.
    return {
        "nearest_feature_index": f_idx,
        "nearest_feature_path": np.where(f_idx >= 0, paths[f_idx], ""),
        "feature_distance": f_dist,
        "nearest_pixel_index": p_idx,
        "nearest_pixel_path": np.where(p_idx >= 0, paths[p_idx], ""),
        "ssim": p_ssim,
    }


def _search(
    queries_px: np.ndarray | WindowStats,
    queries_thumb: np.ndarray,
    queries_feat: np.ndarray,
    refs_px: WindowStats,
    refs_thumb: np.ndarray,
    refs_feat: np.ndarray,
    candidates: int,
    groups: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Nearest ref of each query in features (index, distance) and by SSIM (index, SSIM)."""
    kw = {} if groups is None else {"query_groups": groups[0], "ref_groups": groups[1]}
    f_idx, f_dist = nearest_neighbours(queries_feat, refs_feat, candidates, **kw)
    p_idx, _ = nearest_neighbours(queries_thumb, refs_thumb, candidates, **kw)
    best_pixel = _best_ssim(queries_px, refs_px, _candidates(f_idx, p_idx))
    return (f_idx[:, 0], f_dist[:, 0]), best_pixel


def audit(
    fake_images: np.ndarray,
    fake_features: np.ndarray,
    real_images: np.ndarray,
    real_features: np.ndarray,
    real_patient_ids: Sequence[str] | np.ndarray,
    real_paths: Sequence[str] | np.ndarray,
    *,
    ssim_threshold: float = 0.95,
    feature_quantile: float = 0.01,
    candidates: int = 5,
) -> AuditResult:
    """Find each synthetic image's nearest real training image and flag near-copies.

    Inputs: fake_images uint8 (M, h, w), fake_features (M, D); real_images uint8 (N, H, W),
    real_features (N, D), real_patient_ids and real_paths (N,), all in the same order (e.g. the
    NORMAL rows of `cxrlib.data.cache.load_split`). Features come from any extractor, the same
    one for both sets. Pixels are compared at `comparison_size` (the generated resolution when
    the reals are larger), reals resized by antialiased bilinear.

    Distances: feature distance is Euclidean (L2) between feature vectors, in the extractor's
    units; pixel similarity is SSIM, the maximum over `candidates` reals preselected by pixel
    L2 on 16 px thumbnails plus the `candidates` nearest in feature space.

    A synthetic image is a near-copy when its best SSIM >= `ssim_threshold`, or when its feature
    distance is below the `feature_quantile` quantile of the real-to-real nearest distances
    (between different patients). Why that calibration: feature distances have no absolute
    scale (Inception's 2048-d pool features and a classifier's 512-d ones differ by orders of
    magnitude), but the real data say what "close" means in any space: two films of different
    people are closer than this threshold only once in 1/feature_quantile. A sample that is
    nearer to a training image than that is nearer than real anatomy normally comes, which is
    what a copy looks like, whatever the extractor. SSIM catches the pixel copies a feature
    space might blur together; features catch shifted or re-exposed copies that SSIM (which
    drops to ~0.8 for a 1 px shift) misses.

    Reading the share: under this rule about `feature_quantile` of samples from a generator that
    copies nothing are flagged by features anyway (they are as close as the closest real pairs),
    more when there are few reals: with N reals the quantile rests on N * feature_quantile
    distances (the 1% quantile of 60 is their minimum), measured 2-6% of fresh phantoms flagged
    at N = 60-150, none at N = 300. A share near `feature_quantile` is the baseline; SSIM flags
    (`by_ssim`) have no such floor.

    Small sets: with reals of fewer than two patients there is no real-to-real baseline: the
    feature threshold is None, no sample is flagged by features, the SSIM flags still are, and
    `summary["not_computable"]` says so (never an error). Raises ValueError for inputs that
    do not match, or when either set is empty.

    Memory: the reals at the comparison size plus 6 bytes a pixel of SSIM statistics (~0.6 GB
    for 1,341 reals at 256 px); time ~3 s at 64 px and ~25 s at 256 px for 1,000 x 1,341 on one
    core (measured).
    """
    _check_images(fake_images, "fake_images")
    _check_images(real_images, "real_images")
    real_paths = np.asarray(real_paths).astype(str)
    groups = np.asarray(real_patient_ids).astype(str)
    n_fake, n_real = len(fake_images), len(real_images)
    if len(fake_features) != n_fake or len(real_features) != n_real:
        raise ValueError(
            f"features do not match images: {len(fake_features)} vs {n_fake} fakes, "
            f"{len(real_features)} vs {n_real} reals"
        )
    if len(groups) != n_real or len(real_paths) != n_real:
        raise ValueError(
            f"need {n_real} patient ids and paths, got {len(groups)}, {len(real_paths)}"
        )
    if n_real == 0 or n_fake == 0:
        raise ValueError(f"nothing to audit: {n_fake} synthetic and {n_real} real images")
    if not 0.0 < feature_quantile < 1.0:
        raise ValueError(f"feature_quantile must be in (0, 1), got {feature_quantile}")
    if candidates < 1:
        raise ValueError(f"candidates must be >= 1, got {candidates}")

    size = comparison_size(fake_images.shape[1:], real_images.shape[1:])
    fake_px = resize_uint8(fake_images, size)
    real_px = resize_uint8(real_images, size)
    # Held for all reals: (N, h-6, w-6) x 6 bytes, ~0.5 GB for 1,341 images at 256 px.
    real_stats = window_stats(real_px)
    thumb = (min(PRESCREEN_PX, size[0]), min(PRESCREEN_PX, size[1]))
    fake_thumb = resize_float(fake_px, thumb).reshape(n_fake, -1)
    real_thumb = resize_float(real_px, thumb).reshape(n_real, -1)
    fake_feat = np.asarray(fake_features, dtype=np.float32)
    real_feat = np.asarray(real_features, dtype=np.float32)

    log.info("audit: %d synthetic vs %d real images at %dx%d px", n_fake, n_real, *size)
    fr_feature, fr_pixel = _search(
        fake_px, fake_thumb, fake_feat, real_stats, real_thumb, real_feat, candidates
    )
    n_patients = len(np.unique(groups))
    baseline_missing = ""
    if n_patients < 2:
        # No real image has a real image of another patient to be compared with: no baseline,
        # so no feature threshold; the SSIM flags (an absolute threshold) still stand.
        baseline_missing = (
            f"the {n_real} real training image(s) come from {n_patients} patient(s); the "
            "real-to-real baseline needs images of at least 2 patients, so no sample is "
            "flagged by feature distance (SSIM flags only)"
        )
        log.warning("audit: %s", baseline_missing)
        nowhere = (np.full(n_real, -1), np.full(n_real, np.nan))
        rr_feature, rr_pixel = nowhere, nowhere
        feature_threshold = float("nan")
    else:
        rr_feature, rr_pixel = _search(
            real_stats,
            real_thumb,
            real_feat,
            real_stats,
            real_thumb,
            real_feat,
            candidates,
            (groups, groups),
        )
        feature_threshold = float(np.quantile(rr_feature[1], feature_quantile))
    if not baseline_missing and n_real * feature_quantile < 2:
        log.warning(
            "audit: only %d real images, so the %.1f%% feature threshold is about the closest "
            "real pair's distance; expect a few %% of samples flagged by features by chance",
            n_real,
            100 * feature_quantile,
        )
    by_ssim = fr_pixel[1] >= ssim_threshold
    by_feature = fr_feature[1] < feature_threshold
    samples = pd.DataFrame(
        {"sample": np.arange(n_fake), **_nearest_frame(fr_feature, fr_pixel, real_paths)}
    )
    samples["near_copy"] = by_ssim | by_feature
    samples["by_ssim"] = by_ssim
    samples["by_feature"] = by_feature
    real_to_real = pd.DataFrame(
        {
            "real_index": np.arange(n_real),
            "path": real_paths,
            "patient_id": groups,
            **_nearest_frame(rr_feature, rr_pixel, real_paths),
        }
    )
    summary = _summary(samples, real_to_real, size, ssim_threshold, feature_quantile)
    # None rather than NaN: JSON has no NaN.
    summary["feature_threshold"] = feature_threshold if not baseline_missing else None
    summary["not_computable"] = baseline_missing
    log.info("audit: %d of %d synthetic images are near-copies", summary["n_near_copies"], n_fake)
    return AuditResult(samples=samples, real_to_real=real_to_real, summary=summary)


def _summary(
    samples: pd.DataFrame,
    real_to_real: pd.DataFrame,
    size: tuple[int, int],
    ssim_threshold: float,
    feature_quantile: float,
) -> dict[str, Any]:
    """Counts and medians; the ratio < 1 says samples sit closer to training images than real
    images of different patients sit to each other (a memorisation hint even without copies)."""
    fake_median = float(samples["feature_distance"].median())
    real_median = float(real_to_real["feature_distance"].median())  # NaN without a baseline
    real_ssim = float(real_to_real["ssim"].median())
    n_fake = len(samples)
    n_copies = int(samples["near_copy"].sum())
    return {
        "n_fake": n_fake,
        "n_real": len(real_to_real),
        "n_near_copies": n_copies,
        "share_near_copies": n_copies / n_fake if n_fake else 0.0,
        "n_near_copies_by_ssim": int(samples["by_ssim"].sum()),
        "n_near_copies_by_feature": int(samples["by_feature"].sum()),
        "ssim_threshold": float(ssim_threshold),
        "feature_quantile": float(feature_quantile),
        "feature_distance": "euclidean",
        "comparison_px": [int(size[0]), int(size[1])],
        "median_feature_distance_fake_to_real": fake_median,
        # None rather than NaN: JSON has no NaN (no real-to-real baseline, or all real images
        # identical across patients).
        "median_feature_distance_real_to_real": real_median if np.isfinite(real_median) else None,
        "feature_distance_ratio": fake_median / real_median if real_median > 0 else None,
        "median_ssim_fake_to_real": float(samples["ssim"].median()),
        "median_ssim_real_to_real": real_ssim if np.isfinite(real_ssim) else None,
    }


def write_audit(
    result: AuditResult, samples_csv: Path, real_to_real_csv: Path, summary_json: Path
) -> None:
    """Write the audit's two tables (CSV) and its summary (JSON), each atomically."""
    write_csv(result.samples, samples_csv)
    write_csv(result.real_to_real, real_to_real_csv)
    write_json(result.summary, summary_json)
