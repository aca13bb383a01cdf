"""Near-copy share of every scored snapshot, in feature space, beside what fresh real images show.

The full audit (cxrlib.memorisation.audit) runs on the chosen snapshot's samples, pixels (SSIM)
included. Memorisation grows with training on small sets (Akbar et al. 2025, MLST 6(1), on the
same Kaggle release; Dar et al., arXiv 2402.01054), so the snapshot the classifier uses must not be
the one that copies: this module measures every scored snapshot cheaply, from the features its
scoring job has computed anyway, with the audit's feature rule:

- threshold: the `quantile` (metrics.memorisation.feature_quantile) of the real-to-real nearest
  distances among the training images, images of the same patient excluded;
- share: the fraction of generated images nearer to a training image than that.

What share means "copies"? Fresh real images are the yardstick. The training patients are split
into two patient-disjoint halves (cxrlib.scoring.reference.patient_halves, as for the real
floors), and the same rule, with the threshold of the first half, is applied to the images of the
second against the first: the rate at which real images of patients never seen are flagged, i.e.
what a generator that copies nothing reaches. The limit a snapshot may not exceed
(metrics.memorisation.max_near_copy_share; null = this) is that rate's one-sided 95 %
Clopper-Pearson upper bound, so a small half does not make the limit a coin toss (0 of 30
flagged: limit 0.095; 2 of 600: 0.011).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from cxrlib.memorisation.audit import nearest_neighbours
from cxrlib.scoring.reference import patient_halves

CONFIDENCE = 0.95  # of the upper bound on the held-out real rate


@dataclass(frozen=True)
class NearCopyShare:
    """One snapshot's near-copy share in one feature space, with its yardstick.

    share: fraction (0-1) of generated images nearer to a training image than `threshold`
    (feature units, Euclidean); heldout_rate: the same rule's rate for the `n_heldout` images of
    the second patient half against the first; limit: its upper bound, the share above which
    the snapshot counts as copying (NaN: none computable, `reason` says why).
    """

    share: float
    threshold: float
    heldout_rate: float
    n_heldout: int
    limit: float
    reason: str = ""


def rate_upper_bound(flagged: int, n: int, confidence: float = CONFIDENCE) -> float:
    """One-sided Clopper-Pearson upper bound on a rate from `flagged` of `n` (NaN for n = 0)."""
    if n <= 0:
        return math.nan
    if flagged >= n:
        return 1.0
    return float(stats.beta.ppf(confidence, flagged + 1, n - flagged))


def _threshold(features: np.ndarray, groups: np.ndarray, quantile: float) -> float:
    """The `quantile` of the nearest-neighbour distances among `features`, each image's own
    patient excluded (NaN when fewer than 2 patients)."""
    if len(np.unique(groups)) < 2:
        return math.nan
    _, nearest = nearest_neighbours(features, features, 1, query_groups=groups, ref_groups=groups)
    return float(np.quantile(nearest[:, 0], quantile))


def near_copy_share(
    fake: np.ndarray,
    train: np.ndarray,
    train_groups: np.ndarray,
    *,
    quantile: float,
    seed: int = 0,
) -> NearCopyShare:
    """The near-copy share of `fake` (M, D) against `train` (N, D) features (patients
    `train_groups`, N), with the held-out real rate of patient-disjoint halves of `train`
    (halves drawn with `seed`) and its upper bound as the limit.

    Degenerate inputs give NaNs with the reason (never an error): training images of fewer than
    2 patients (no threshold), halves too small for a threshold of their own (no limit).
    """
    if fake.ndim != 2 or train.ndim != 2 or len(train_groups) != len(train):
        raise ValueError(
            f"need (M, D) and (N, D) features and N patient ids, got {fake.shape}, "
            f"{train.shape} and {len(train_groups)}"
        )
    groups = np.asarray(train_groups).astype(str)
    threshold = _threshold(train, groups, quantile)
    if not math.isfinite(threshold):
        return NearCopyShare(
            math.nan, math.nan, math.nan, 0, math.nan,
            f"the training images come from {len(np.unique(groups))} patient(s); the "
            "real-to-real threshold needs at least 2",
        )  # fmt: skip
    _, to_train = nearest_neighbours(fake, train, 1)
    share = float(np.mean(to_train[:, 0] < threshold))
    half_a, half_b = patient_halves(groups, seed)
    threshold_a = _threshold(train[half_a], groups[half_a], quantile)
    if not len(half_b) or not math.isfinite(threshold_a):
        return NearCopyShare(
            share, threshold, math.nan, 0, math.nan,
            "the training images' patients are too few to split into two halves with a "
            "threshold each: no limit (set metrics.memorisation.max_near_copy_share)",
        )  # fmt: skip
    _, held = nearest_neighbours(train[half_b], train[half_a], 1)
    flagged = int(np.sum(held[:, 0] < threshold_a))
    return NearCopyShare(
        share=share,
        threshold=threshold,
        heldout_rate=flagged / len(half_b),
        n_heldout=len(half_b),
        limit=rate_upper_bound(flagged, len(half_b)),
    )
