"""Training sets of the classifier arms: real images, plus synthetic ones at a ratio.

Only the training split ever receives synthetic images: validation (model selection) and test
(evaluation) stay real, so an arm's numbers are about real X-rays.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cxrlib.classifier.trainer import add_synthetic, label_index, load_synthetic
from cxrlib.data.cache import SplitArrays

log = logging.getLogger(__name__)


def resolve_ratio(ratio: str | float, train_labels: np.ndarray, synthetic_index: int) -> float:
    """A configured ratio as a number; "balance" = enough synthetic images to even the classes.

    With 1,341 NORMAL and 3,875 PNEUMONIA training images, balance adds 2,534 NORMAL: ratio
    (3875 - 1341) / 1341 = 1.89. Zero when the synthetic class is already the larger one.
    """
    return ratio_value(ratio, np.bincount(train_labels).tolist(), synthetic_index)


def ratio_value(ratio: str | float, counts: Sequence[int], synthetic_index: int) -> float:
    """`resolve_ratio` from per-class training counts (index = class index)."""
    if str(ratio) != "balance":
        value = float(ratio)
        if value < 0:
            raise ValueError(f"ratio must be >= 0 or 'balance', got {ratio}")
        return value
    own = int(counts[synthetic_index])
    largest_other = max(int(c) for i, c in enumerate(counts) if i != synthetic_index)
    return max(0.0, (largest_other - own) / own)


def synthetic_needed(
    train_counts: Mapping[str, int], synthetic_class: str, ratios: Sequence[str | float]
) -> dict[str, int]:
    """{ratio as configured: synthetic images of `synthetic_class` its arm draws}.

    The same arithmetic as `add_synthetic`: round(ratio x real training images of the class),
    with "balance" resolved from the counts. `train_counts`: class -> real training images
    (results/data/class_counts.csv, split train). Raises KeyError naming a missing class.
    """
    if synthetic_class not in train_counts:
        raise KeyError(
            f"data.synthetic_class {synthetic_class!r} is not a training class "
            f"({', '.join(sorted(train_counts))})"
        )
    names = sorted(train_counts)
    counts = [int(train_counts[n]) for n in names]
    k = names.index(synthetic_class)
    return {str(r): round(ratio_value(r, counts, k) * counts[k]) for r in ratios}


def mix_training_set(
    train: SplitArrays,
    added: str,
    ratio: str | float,
    synthetic_class: str,
    seed: int,
    samples_dir: Path | None = None,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """(images uint8 (N, H, W), labels (N,), composition) of an arm's training set.

    `added`: what the arm adds to the real training images:
    - "none": nothing (real, real_classic);
    - "synthetic": images of `synthetic_class` from `samples_dir` (a generate_samples folder:
      index.csv + PNGs), round(ratio x real images of the class), drawn without replacement;
    - "oversampled": the count-matched control: as many extra images of `synthetic_class`
      drawn with replacement from the *real* training images of that class, so a synthetic
      arm's gain can be told from "more images of the class" (Pink et al. 2026).
    The composition (counts per class, what was added, the numeric ratio) is saved beside the
    model so the report can show what each arm trained on.
    """
    k = label_index(train.label_names, synthetic_class)
    counts_real = {name: int((train.labels == i).sum()) for i, name in enumerate(train.label_names)}
    value = 0.0 if added == "none" else resolve_ratio(ratio, train.labels, k)
    if added == "none":
        images, labels = train.images, train.labels
    elif added == "synthetic":
        if samples_dir is None:
            raise ValueError("a synthetic arm needs its samples folder")
        syn_images, syn_labels, _ = load_synthetic(samples_dir / "index.csv", train.images.shape[1])
        wrong = sorted(set(syn_labels) - {synthetic_class})
        if wrong:
            raise ValueError(f"{samples_dir} holds labels {wrong}, expected {synthetic_class} only")
        images, labels = add_synthetic(
            (train.images, train.labels), train.label_names, (syn_images, syn_labels), value, seed
        )
    elif added == "oversampled":
        pool = np.flatnonzero(train.labels == k)
        want = round(value * len(pool))
        pick = np.sort(np.random.default_rng(seed).choice(pool, size=want, replace=True))
        images = np.concatenate([train.images, train.images[pick]])
        labels = np.concatenate([train.labels, train.labels[pick]])
    else:
        raise ValueError(f"unknown addition {added!r}: none, synthetic or oversampled")
    n_added = len(images) - len(train.images)
    composition = {
        "real": counts_real,
        "synthetic_class": synthetic_class,
        "added": added,
        # the column the tables read: images added to the class (synthetic or duplicated)
        "synthetic_added": n_added,
        "ratio": str(ratio),
        "ratio_value": value,
        "samples": str(samples_dir) if samples_dir else None,
    }
    log.info("training set: real %s + %d %s %s", counts_real, n_added, added, synthetic_class)
    return images, labels, composition
