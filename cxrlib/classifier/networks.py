"""The NORMAL vs PNEUMONIA classifier: a torchvision ResNet behind a grayscale front end.

torchvision's ResNets expect 3-channel, ImageNet-normalised input. Radiographs are grayscale,
so the front end (`CXRClassifier`) takes float (N, 1, H, W) images in [0, 1], repeats the one
channel three times (the pretrained first convolution then sees the gray image on each of its
colour inputs, which is how ImageNet weights are usually carried over to gray images; the
network keeps its published shape, so an ImageNet file loads unchanged) and normalises:
with ImageNet weights by the ImageNet mean/std they were trained with, without them by
mean 0.5 / std 0.5 (to [-1, 1]). The mean and std are buffers of the module, so they travel in
the saved state dict and a loaded model normalises exactly as it did in training.

Images enter the library as uint8; `to_model_input` is the one place that turns them into what
the network sees (gray, resized with antialiased bilinear, rounded back to uint8 so that
resizing once before training and resizing per batch at inference give the same pixels).

A trained classifier is saved as a plain dict (`save_classifier`), loadable with
`weights_only=True`:

    {"format": 1, "arch": "resnet18", "image_size": 224, "label_names": [...],
     "positive_index": 1, "settings": {...}, "state_dict": {...}}
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from cxrlib.io import atomic_path

FORMAT = 1
ARCHS: dict[str, Callable[..., nn.Module]] = {
    "resnet18": torchvision.models.resnet18,
    "resnet50": torchvision.models.resnet50,
}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ClassifierFileError(Exception):
    """A classifier or weights file is missing or is not what it claims; the message says why."""


class CXRClassifier(nn.Module):
    """A torchvision ResNet that takes gray float images in [0, 1]."""

    def __init__(
        self,
        net: nn.Module,  # a torchvision ResNet, its fc already sized to the classes
        mean: Sequence[float],  # per-channel mean subtracted after the gray->RGB repeat
        std: Sequence[float],  # per-channel std divided by after subtracting the mean
    ):
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, H, W) in [0, 1] -> (N, 3, H, W) normalised as the backbone expects."""
        if x.dim() != 4 or x.shape[1] != 1:
            raise ValueError(f"expected gray images (N, 1, H, W), got {tuple(x.shape)}")
        x = x.expand(-1, 3, -1, -1)
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features (N, D): the global-average-pooled output of the last stage."""
        n = self.net
        h = n.maxpool(n.relu(n.bn1(n.conv1(self.normalise(x)))))
        h = n.layer4(n.layer3(n.layer2(n.layer1(h))))
        return torch.flatten(n.avgpool(h), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, num_classes)."""
        return self.net.fc(self.features(x))


def build_classifier(arch: str, weights: Path | None = None, num_classes: int = 2) -> CXRClassifier:
    """A ResNet classifier for gray images; ImageNet weights from a local file if given.

    `weights` is torchvision's ImageNet state dict for `arch` (fetched elsewhere: compute nodes
    have no internet). It is loaded into the 1000-class network with strict key checking (a
    file for another architecture fails here, by name), then the fc layer is replaced by a
    freshly initialised one with `num_classes` outputs. The new layers draw from torch's global
    RNG: seed it (or fork it) around this call for a reproducible initialisation.
    """
    if arch not in ARCHS:
        raise ValueError(f"unknown classifier arch {arch!r}; known: {', '.join(ARCHS)}")
    net = ARCHS[arch](weights=None)
    if weights is not None:
        _load_imagenet(net, Path(weights), arch)
        mean, std = IMAGENET_MEAN, IMAGENET_STD
    else:
        mean, std = (0.5,) * 3, (0.5,) * 3
    net.fc = nn.Linear(net.fc.in_features, num_classes)
    return CXRClassifier(net, mean, std)


def _load_imagenet(net: nn.Module, path: Path, arch: str) -> None:
    if not path.is_file():
        raise ClassifierFileError(
            f"ImageNet weights {path} do not exist; fetch torchvision's {arch} weights on a node "
            "with internet, or set the classifier's weights to null to train from scratch"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # several exception types for truncated or pickled-code files
        raise ClassifierFileError(f"cannot load ImageNet weights {path}: {exc}") from exc
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    expected = set(net.state_dict())
    got = set(state) if isinstance(state, dict) else set()
    if got != expected:
        missing, extra = sorted(expected - got), sorted(got - expected)
        raise ClassifierFileError(
            f"{path} is not a torchvision {arch} state dict: {len(missing)} keys missing "
            f"(e.g. {missing[:3]}), {len(extra)} unexpected (e.g. {extra[:3]})"
        )
    net.load_state_dict(state)


def features(model: CXRClassifier, x: torch.Tensor) -> torch.Tensor:
    """Penultimate (global-pooled) features (N, D) of gray float images (N, 1, H, W) in [0, 1].

    D is 512 for resnet18 and 2048 for resnet50.
    """
    return model.features(x)


def to_model_input(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (N, H, W) / (N, 1, H, W) / (N, 3, H, W) -> uint8 (N, 1, size, size).

    Three channels become gray by their mean (the data are gray stored as R=G=B; a true colour
    image gets a plain average). Resizing is bilinear with antialiasing, rounded to uint8.
    """
    if images.dtype != torch.uint8:
        raise TypeError(f"expected uint8 images, got {images.dtype}")
    if images.dim() == 3:
        images = images.unsqueeze(1)
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"expected (N, H, W) or (N, 1|3, H, W) images, got {tuple(images.shape)}")
    x = images.float()
    if x.shape[1] == 3:
        x = x.mean(dim=1, keepdim=True)
    if x.shape[-2:] != (size, size):
        x = F.interpolate(
            x, size=(size, size), mode="bilinear", antialias=True, align_corners=False
        )
    return x.round().clamp(0, 255).to(torch.uint8)


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 1, H, W) -> float32 in [0, 1] (what `CXRClassifier` takes)."""
    return images.float().div_(255.0)


def save_classifier(
    path: str | Path,
    model: CXRClassifier | dict[str, torch.Tensor],
    *,
    arch: str,
    image_size: int,
    label_names: Sequence[str],
    positive_index: int,
    settings: dict[str, Any],
) -> None:
    """Write a trained classifier atomically (state dict on the CPU plus what rebuilds it)."""
    state = model.state_dict() if isinstance(model, nn.Module) else model
    payload = {
        "format": FORMAT,
        "arch": arch,
        "image_size": int(image_size),
        "label_names": [str(x) for x in label_names],
        "positive_index": int(positive_index),
        "settings": dict(settings),
        "state_dict": {k: v.detach().cpu().clone() for k, v in state.items()},
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_classifier(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[CXRClassifier, dict[str, Any]]:
    """(model in eval mode on `device`, the payload without its state dict)."""
    path = Path(path)
    if not path.is_file():
        raise ClassifierFileError(f"classifier {path} does not exist; run its training rule first")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ClassifierFileError(
            f"classifier {path} cannot be read ({exc}); delete it and rerun its training rule"
        ) from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ClassifierFileError(f"{path} is not a classifier file of this workflow")
    state = payload.pop("state_dict")
    model = build_classifier(payload["arch"], None, num_classes=len(payload["label_names"]))
    model.load_state_dict(state)  # also restores the normalisation buffers used in training
    return model.to(device).eval(), payload
