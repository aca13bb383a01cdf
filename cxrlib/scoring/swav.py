"""A fourth feature space for FID/KID: ImageNet SwAV ResNet-50 (Caron et al. 2020), the space whose
Fréchet distance tracked radiologists' judgement of 16 StyleGAN2 networks best in Woodland et al.
2024 (MICCAI; arXiv 2311.13717: 11 extractors, four medical modalities).

What the paper computed, here reproduced (its code: mckellwoodland/fid-med-eval, which scores with
StudioGAN's `SwAV_torch` backbone and `--post_resizer clean`):
- network: torchvision's ResNet-50 holding the SwAV 800-epoch ImageNet checkpoint
  (`swav_800ep_pretrain.pth.tar`, as `torch.hub.load("facebookresearch/swav:main", "resnet50")`
  loads it: keys without their "module." prefix; the projection head and prototypes are not part
  of the backbone and are left out);
- features: the input of the final fully connected layer, i.e. the 2048-d global average pool
  (StudioGAN hooks `fc` and keeps its input);
- preprocessing: gray images repeated to 3 channels, resized to 224 x 224 with PIL's bicubic
  filter on float32 pixels ("clean" resizing), scaled to [0, 1] and normalised with the ImageNet
  mean and standard deviation.

Weights: the checkpoint is a plain state dict, so `torch.load(weights_only=True)` reads it (no code
in the file can run) and every tensor is checked against the ResNet-50 built here. Upstream
publishes no checksum for it: the fetch_swav_weights rule records the sha256 of what it downloaded
beside the file (`<file>.sha256`), every job checks the file against metrics.swav_sha256 or, when
that is empty, against the recorded value, and the fetch log says how to pin it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
import torchvision
from PIL import Image
from torch import nn

from cxrlib.weights import WeightsError, state_problems, verify_weights

log = logging.getLogger(__name__)

SWAV_URL = "https://dl.fbaipublicfiles.com/deepcluster/swav_800ep_pretrain.pth.tar"
SWAV_SIZE = 224
SWAV_DIM = 2048
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Entries of the checkpoint that belong to SwAV's training heads, not to the backbone.
HEAD_PREFIXES = ("projection_head.", "prototypes.")
SWAV_FIX = (
    "run `snakemake fetch_swav_weights` where there is internet (the login node), or download "
    "metrics.swav_url yourself, set metrics.swav_weights to it and metrics.swav_sha256 to its "
    "`sha256sum`; or drop swav from metrics.extractors"
)


def sha256_record(weights: str | Path) -> Path:
    """Where fetch_swav_weights records the sha256 of the file it downloaded."""
    return Path(f"{weights}.sha256")


def expected_sha256(weights: str | Path, pinned: str = "") -> str:
    """The sha256 the SwAV file must have: metrics.swav_sha256 where set, else the one recorded
    when it was fetched. WeightsError naming the file and how to pin it when there is neither."""
    if pinned.strip():
        return pinned.strip().lower()
    record = sha256_record(weights)
    if record.is_file():
        return record.read_text(encoding="utf-8").split()[0].lower()
    raise WeightsError(
        f"no sha256 to check the SwAV weights file {weights} against: metrics.swav_sha256 is "
        f"empty and {record} (written by fetch_swav_weights) does not exist. Pin the file: set "
        f"metrics.swav_sha256 to the output of `sha256sum {weights}` for a copy you trust"
    )


def _load_failure(exc: Exception) -> str:
    """torch.load's refusal in a line, without its advice to load with weights_only=False
    (which would run the file's code)."""
    if "weights_only" in str(exc):
        return "it holds objects other than tensors, which torch.load(weights_only=True) refuses"
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {first[:200]}" if first else type(exc).__name__


def load_swav_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The SwAV checkpoint's backbone tensors by torchvision ResNet-50 name (no "module." prefix,
    no training heads), read with `torch.load(weights_only=True)`.

    Raises WeightsError naming the file when it is not a torch file of tensors by name.
    """
    path = Path(path)
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # whatever a malformed or hostile file makes the loader raise
        raise WeightsError(
            f"cannot read {path} as the SwAV ResNet-50 checkpoint ({_load_failure(exc)}); "
            f"nothing in it was run. {SWAV_FIX}"
        ) from exc
    if isinstance(raw, Mapping) and "state_dict" in raw and isinstance(raw["state_dict"], Mapping):
        raw = raw["state_dict"]  # a training checkpoint that wraps its weights
    if not isinstance(raw, Mapping) or not all(
        isinstance(k, str) and torch.is_tensor(v) for k, v in raw.items()
    ):
        raise WeightsError(
            f"{path} holds a {type(raw).__name__}, not the SwAV checkpoint's tensors by name. "
            f"{SWAV_FIX}"
        )
    state = {k.removeprefix("module."): v for k, v in raw.items()}
    return {k: v for k, v in state.items() if not k.startswith(HEAD_PREFIXES)}


def build_swav_resnet50(state: Mapping[str, torch.Tensor], source: str | Path = "") -> nn.Module:
    """torchvision's ResNet-50 holding `state`, its fc replaced by the identity (so it returns
    the 2048-d pooled features), in eval mode.

    `state` must hold every backbone tensor (fc excepted) of the model's shape and dtype, with
    finite values, and nothing else; WeightsError naming `source` and the first problems
    otherwise.
    """
    model = torchvision.models.resnet50(weights=None)
    model.fc = nn.Identity()
    problems, floats = state_problems(state, model.state_dict())
    problems += [
        f"{n} holds NaN or infinite values" for n, v in floats.items() if not v.isfinite().all()
    ]
    if problems:
        raise WeightsError(
            f"the weights {f'of {source} ' if source else ''}do not fit a ResNet-50 backbone "
            f"({'; '.join(problems[:5])}). {SWAV_FIX}"
        )
    model.load_state_dict(dict(state))
    return model.eval()


def swav_input(images: torch.Tensor, size: int = SWAV_SIZE) -> torch.Tensor:
    """uint8 (N, 1|3, H, W) -> float32 (N, 3, size, size), as the paper's pipeline feeds SwAV.

    Each image is made gray (the mean of 3 channels; exact for R=G=B), resized with PIL's
    bicubic filter on float32 pixels, repeated to 3 channels, scaled to [0, 1] and normalised
    with the ImageNet mean and std. ValueError for other dtypes, shapes or empty images.
    """
    if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(
            f"expected uint8 (N, 1|3, H, W) images, got {images.dtype} {tuple(images.shape)}"
        )
    if 0 in images.shape:
        raise ValueError(f"expected at least one image of at least 1x1 px, got {images.shape}")
    gray = images.float().mean(dim=1).cpu().numpy()
    resized = np.stack(
        [np.asarray(Image.fromarray(g, mode="F").resize((size, size), Image.BICUBIC)) for g in gray]
    )
    x = torch.from_numpy(resized).div_(255.0).unsqueeze(1).expand(-1, 3, -1, -1)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return ((x - mean) / std).contiguous()


class SwavExtractor:
    """Pooled features (N, 2048) of the ImageNet SwAV ResNet-50."""

    def __init__(self, weights: str | Path, sha256: str = "", device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        expected = expected_sha256(weights, sha256)
        if not Path(weights).is_file():
            raise WeightsError(f"the SwAV weights file {weights} does not exist; {SWAV_FIX}")
        source = "metrics.swav_sha256" if sha256.strip() else str(sha256_record(weights))
        digest = verify_weights(
            weights,
            expected,
            mismatch=f"the file changed since it was pinned ({source}). If you replaced it on "
            "purpose, set metrics.swav_sha256 to its new sha256; else fetch it again "
            "(`snakemake fetch_swav_weights` on the login node)",
        )
        self.model = build_swav_resnet50(load_swav_state_dict(weights), weights).to(self.device)
        self.name = "swav-resnet50-800ep"
        self.dim = SWAV_DIM
        log.info("SwAV extractor: %s (sha256 %s) on %s", weights, digest, self.device)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (N, 1|3, H, W) -> float32 features (N, 2048) on the extractor's device."""
        return self.model(swav_input(images).to(self.device)).float()


def fetch_swav_weights(url: str, target: str | Path, pinned: str = "") -> str:
    """Download the SwAV checkpoint to `target` (checked against `pinned` where set), check it
    reads as a ResNet-50 backbone, and record its sha256 beside it; returns the sha256."""
    from cxrlib.io import write_atomic
    from cxrlib.weights import fetch_weights

    digest = fetch_weights(url, target, pinned, fix=SWAV_FIX)
    try:
        build_swav_resnet50(load_swav_state_dict(target), target)
    except WeightsError:
        Path(target).unlink()  # no job may find a file that is not the checkpoint
        raise
    write_atomic(
        sha256_record(target), lambda tmp: tmp.write_text(f"{digest}  {Path(target).name}\n")
    )
    log.info(
        "SwAV weights %s: sha256 %s. Upstream publishes no checksum; to pin this file for the "
        "study, set metrics.swav_sha256: %s",
        target,
        digest,
        digest,
    )
    return digest
