"""A chest-X-ray-aware feature extractor for FID/KID: the trained classifier's penultimate layer.

Inception features were learnt on photographs; distances in them say little about whether a
synthetic radiograph has the anatomy and texture of a real one. The classifier trained on the
real training split (real-only arm) has learnt features that separate radiographs by what is in
the lungs; its global-pooled penultimate layer (512-d for resnet18, 2048-d for resnet50) is a
second, domain-aware space for the same torch-fidelity formulas.

`DomainExtractor` has the interface cxrlib.scoring.fidelity.extract_features expects: called on
uint8 (N, 3, H, W) (or (N, 1, H, W)) images, it returns float features (N, D). Inputs are made
gray, resized to the classifier's image size (bilinear, antialiased) and normalised exactly as
in training (the same `to_model_input` and the normalisation buffers saved with the model).
"""

from __future__ import annotations

from pathlib import Path

import torch

from cxrlib.classifier.networks import load_classifier, to_float, to_model_input


class DomainExtractor:
    """Penultimate-layer features of a trained CXR classifier; `name` = "cxr-<arch>"."""

    def __init__(self, model_path: str | Path, device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        self.model, payload = load_classifier(model_path, self.device)
        self.arch: str = payload["arch"]
        self.image_size: int = int(payload["image_size"])
        self.name = "cxr-" + self.arch
        self.dim: int = int(self.model.net.fc.in_features)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (N, 3|1, H, W) -> float32 features (N, D) on the extractor's device."""
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] not in (1, 3):
            raise ValueError(
                f"expected uint8 (N, 1|3, H, W) images, got {images.dtype} {tuple(images.shape)}"
            )
        x = to_float(to_model_input(images.to(self.device), self.image_size))
        out = self.model.features(x).float()
        assert out.shape == (images.shape[0], self.dim), out.shape
        return out
