"""Feature extractors by name, and the declared real-feature files every scoring job reuses.

Four feature spaces: "inception" (torch-fidelity's InceptionV3 pool features, the published
standard, from a sha256-checked local file), "cxr" (the penultimate layer of a CXR classifier
the workflow trains on the real training split), "xrv" (torchxrayvision's DenseNet-121
trained on pooled public CXR data sets, from a sha256-checked local file; cxrlib.scoring.xrv)
and "swav" (ImageNet SwAV ResNet-50, the space that tracked radiologists best in Woodland et
al. 2024; cxrlib.scoring.swav).
Real images are brought to the generator's resolution before extraction, so real and generated
images pass through exactly the same resize path into each extractor: a FID at 64 px compares
64 px images with 64 px images.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from cxrlib.data.cache import load_split
from cxrlib.io import write_npz
from cxrlib.scoring.fidelity import array_batches, extract_features, inception_extractor

EXTRACTORS = ("inception", "cxr", "xrv", "swav")
Extractor = Callable[[torch.Tensor], torch.Tensor | tuple[torch.Tensor, ...]]


@dataclass(frozen=True)
class ExtractorSources:
    """Where each extractor's weights are; an extractor without its file cannot be made."""

    inception_weights: Path | None = None
    inception_sha256: str = ""
    domain_model: Path | None = None
    xrv_weights: Path | None = None
    xrv_sha256: str = ""  # "" = the published file's (cxrlib.scoring.xrv.XRV_SHA256)
    swav_weights: Path | None = None
    swav_sha256: str = ""  # "" = the one recorded when it was fetched (cxrlib.scoring.swav)


def make_extractor(name: str, sources: ExtractorSources, device: str = "cpu") -> Extractor:
    """The named extractor, on `device`, in eval mode; errors name the missing file and the fix."""
    if name == "inception":
        if sources.inception_weights is None:
            raise ValueError(
                "the inception extractor needs metrics.inception_weights or the fetch_weights rule"
            )
        extractor = inception_extractor(sources.inception_weights, sources.inception_sha256)
        return extractor.to(device).eval()
    if name == "cxr":
        if sources.domain_model is None:
            raise ValueError("the cxr extractor needs the train_domain_extractor rule's model")
        from cxrlib.scoring.domain import DomainExtractor

        return DomainExtractor(sources.domain_model, device)
    if name == "xrv":
        if sources.xrv_weights is None:
            raise ValueError(
                "the xrv extractor needs metrics.xrv_weights or the fetch_xrv_weights rule"
            )
        from cxrlib.scoring.xrv import XRV_SHA256, XrvExtractor

        return XrvExtractor(sources.xrv_weights, sources.xrv_sha256 or XRV_SHA256, device)
    if name == "swav":
        if sources.swav_weights is None:
            raise ValueError(
                "the swav extractor needs metrics.swav_weights or the fetch_swav_weights rule"
            )
        from cxrlib.scoring.swav import SwavExtractor

        return SwavExtractor(sources.swav_weights, sources.swav_sha256, device)
    raise ValueError(f"unknown extractor {name!r}; known: {', '.join(EXTRACTORS)}")


def resize_uint8(images: np.ndarray, size: int, batch_size: int = 256) -> np.ndarray:
    """uint8 (N, H, W) -> uint8 (N, size, size), antialiased bilinear, in batches.

    Used for real images only: generated images come out at their resolution already.
    """
    if images.ndim != 3:
        raise ValueError(f"expected (N, H, W) images, got shape {images.shape}")
    if images.shape[1:] == (size, size):
        return images
    out = np.empty((len(images), size, size), dtype=np.uint8)
    for start in range(0, len(images), batch_size):
        chunk = torch.from_numpy(images[start : start + batch_size]).float().unsqueeze(1)
        small = F.interpolate(chunk, size=(size, size), mode="bilinear", antialias=True)
        out[start : start + batch_size] = small.round().clamp(0, 255).to(torch.uint8)[:, 0]
    return out


def real_images(cache: Path, label: str, resolution: int) -> tuple[np.ndarray, np.ndarray]:
    """The real images of one class and split at `resolution`, and their source paths."""
    split = load_split(cache)
    if label not in split.label_names:
        raise ValueError(
            f"class {label!r} (data.synthetic_class) is not in {cache} "
            f"(classes: {', '.join(split.label_names)}); set data.synthetic_class to one of them"
        )
    keep = split.labels == split.label_names.index(label)
    return resize_uint8(split.images[keep], resolution), split.paths[keep]


def write_real_features(
    cache: Path,
    label: str,
    resolution: int,
    extractor_name: str,
    sources: ExtractorSources,
    target: Path,
    *,
    batch_size: int = 64,
    device: str = "cpu",
) -> int:
    """Extract and save one (extractor, split, resolution)'s real features; returns the count."""
    images, paths = real_images(cache, label, resolution)
    extractor = make_extractor(extractor_name, sources, device)
    features = extract_features(extractor, array_batches(images, batch_size), device)
    write_npz(
        target,
        features=features.astype(np.float32),
        paths=paths.astype(str),
        extractor=np.array(extractor_name),
        resolution=np.array(resolution),
    )
    return len(features)


def load_real_features(path: str | Path) -> np.ndarray:
    """Features (N, D) float32 from a real_features file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; run the real_features rule first")
    with np.load(path, allow_pickle=False) as npz:
        return npz["features"]


def optional_path(named: object, name: str) -> Path | None:
    """A named Snakemake input as a Path, or None when the rule did not declare it.

    (`name in snakemake.input` tests the file list, not the names, hence getattr.)
    """
    value = getattr(named, name, None)
    return None if value is None else Path(value)
