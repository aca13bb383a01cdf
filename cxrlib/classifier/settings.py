"""Classifier run settings (`classifier.settings` and `metrics.domain_extractor` in the
config) and their checks.

Torch-free: the workflow reads these at DAG build (cxrlib.plan), where importing torch,
torchvision and scikit-learn would cost seconds on every `snakemake` call and cluster job.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from cxrlib.settings import check_types

ARCH_NAMES = ("resnet50", "resnet18")  # cxrlib.classifier.networks.ARCHS builds these
AUGMENTS = ("none", "classic")


@dataclass(frozen=True)
class ClassifierSettings:
    """One classifier run's hyperparameters (config `classifier` section plus the seed)."""

    arch: str = "resnet50"  # "resnet50" | "resnet18"
    weights: Path | None = None  # torchvision ImageNet state dict for `arch`; None: from scratch
    image_size: int = 224  # px, square input side
    epochs: int = 20  # upper bound; early stopping may end sooner
    batch_size: int = 32
    lr: float = 1e-4  # AdamW peak learning rate (cosine to 0 over all steps)
    weight_decay: float = 1e-4  # AdamW decoupled weight decay
    class_weighted_loss: bool = True  # cross-entropy weighted by inverse class frequency
    patience: int = 5  # epochs without val improvement before stopping; 0: never stop early
    augment: str = "none"  # "none" | "classic" (rotation, shift, brightness/contrast)
    seed: int = 0
    channels_last: bool = True  # CUDA only: NHWC memory format (faster convolutions)
    amp: bool = True  # CUDA only: bfloat16 autocast

    def to_dict(self) -> dict[str, Any]:
        """Plain types only (saved inside checkpoints loaded with weights_only=True)."""
        d = asdict(self)
        d["weights"] = None if self.weights is None else str(self.weights)
        return d


def classifier_settings(d: dict[str, Any]) -> ClassifierSettings:
    """A config dict -> ClassifierSettings; missing keys take the defaults, unknown keys fail."""
    known = [f.name for f in fields(ClassifierSettings)]
    unknown = sorted(set(d) - set(known))
    if unknown:
        raise ValueError(
            f"unknown classifier setting(s) {', '.join(unknown)}; known: {', '.join(known)}"
        )
    d = dict(d)
    if d.get("weights") not in (None, ""):
        d["weights"] = Path(d["weights"])
    else:
        d["weights"] = None
    s = ClassifierSettings(**d)
    check_types("classifier", s)
    if s.arch not in ARCH_NAMES:
        raise ValueError(f"classifier arch must be one of {', '.join(ARCH_NAMES)}, got {s.arch!r}")
    if s.augment not in AUGMENTS:
        raise ValueError(
            f"classifier augment must be one of {', '.join(AUGMENTS)}, got {s.augment!r}"
        )
    for name in ("image_size", "epochs", "batch_size"):
        if int(getattr(s, name)) < 1:
            raise ValueError(f"classifier {name} must be >= 1, got {getattr(s, name)}")
    if s.image_size < 32:
        raise ValueError(
            f"classifier image_size must be >= 32 px (ResNet stride), got {s.image_size}"
        )
    if not s.lr > 0 or s.weight_decay < 0 or s.patience < 0:
        raise ValueError("classifier lr must be > 0, weight_decay >= 0 and patience >= 0")
    return s
