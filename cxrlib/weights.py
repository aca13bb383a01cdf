"""Fetching pretrained weights on a machine with internet, checked before anything loads them.

Torch-free: the workflow reads the URLs and hashes at DAG build.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from cxrlib.io import atomic_path

log = logging.getLogger(__name__)


class WeightsError(Exception):
    """A weights file is missing or is not the file it claims to be; the message says the fix."""


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_weights(
    path: str | Path,
    expected_sha256: str,
    *,
    shown_as: str | Path | None = None,
    mismatch: str = "it is not the published file (corrupt or a different model): download it "
    "again",
) -> str:
    """Check a weights file's sha256 (full, or the published prefix) before anything loads it;
    `mismatch` is what a WeightsError says after the two sums when they differ.

    torch-fidelity unpickles the Inception file (`weights_only=False`): an unchecked file is
    code. Returns the full sha256.
    """
    path = Path(path)
    name = Path(shown_as) if shown_as is not None else path
    if not path.is_file():
        raise WeightsError(
            f"weights file {path} does not exist; run the fetch_weights rule on a node with "
            "internet, or set metrics.inception_weights to a downloaded copy"
        )
    actual = file_sha256(path)
    if not actual.startswith(expected_sha256.lower()):
        raise WeightsError(
            f"weights file {name} has sha256 {actual}, expected {expected_sha256}...; {mismatch}"
        )
    return actual


def fetch_weights(
    url: str,
    target: str | Path,
    expected_sha256: str,
    timeout_s: float = 60,
    *,
    fix: str | None = None,
) -> str:
    """Download `url` to `target` atomically and check its sha256 (full or published prefix).

    The file only appears at `target` once it is complete and verified, so a half download or a
    wrong file never reaches a job that would unpickle it. Returns the full sha256. `fix`: what
    the user can do when the download fails or is not the expected file (default: Inception's).
    """
    target = Path(target)
    try:
        with atomic_path(target) as tmp:
            with urllib.request.urlopen(url, timeout=timeout_s) as response, open(tmp, "wb") as fh:
                shutil.copyfileobj(response, fh, length=1 << 20)
            digest = verify_weights(tmp, expected_sha256, shown_as=f"{target} (downloaded)")
    except OSError as exc:  # URLError is an OSError: no internet, DNS, HTTP errors
        raise WeightsError(
            f"cannot download {url} ({exc}). Compute nodes often have no internet: "
            + (
                fix
                or "run `snakemake fetch_weights` on the login node, or download the file "
                "yourself and set metrics.inception_weights to it; or drop inception from "
                "metrics.extractors"
            )
        ) from exc
    except WeightsError as exc:
        if fix is None:
            raise
        raise WeightsError(f"{exc} (from {url}). To fix: {fix}") from exc
    log.info("fetched %s -> %s (sha256 %s)", url, target, digest)
    return digest


# What to do when the xrv extractor's weights (cxrlib.scoring.xrv) are missing or wrong: said by
# the fetch_xrv_weights rule and by the extractor.
XRV_FIX = (
    "run `snakemake fetch_xrv_weights` where there is internet (the login node), or download "
    "metrics.xrv_url yourself and set metrics.xrv_weights to it (metrics.xrv_sha256 is the "
    "sha256 it must have); or drop xrv from metrics.extractors"
)


# torchvision's published ImageNet weights (IMAGENET1K_V1); the 8 hex digits in each file name
# are the start of its sha256, as torch.hub checks them.
IMAGENET_URLS: dict[str, str] = {
    "resnet18": "https://download.pytorch.org/models/resnet18-f37072fd.pth",
    "resnet50": "https://download.pytorch.org/models/resnet50-0676ba61.pth",
}


def published_sha256_prefix(url: str) -> str:
    """The sha256 prefix a torch-hub style file name carries (`name-<8 hex>.pth`)."""
    stem = url.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    prefix = stem.rsplit("-", 1)[-1]
    if len(prefix) < 8 or any(c not in "0123456789abcdef" for c in prefix.lower()):
        raise ValueError(f"{url} carries no sha256 prefix in its file name (name-<hex>.pth)")
    return prefix


def state_problems(
    state: Mapping[str, Any], targets: Mapping[str, Any], short: Callable[[str], str] = str
) -> tuple[list[str], dict[str, Any]]:
    """A loaded state dict checked against a model's `targets` (name -> tensor): the problems
    in words (missing and unexpected names, the first 3 of each, `short` shortening the
    unexpected ones; tensors of another shape or dtype), and the floating-point tensors that
    match, by name, for the caller's value checks (finite, variances >= 0)."""
    problems = []
    missing = [k for k in targets if k not in state]
    unexpected = [str(k) for k in state if k not in targets]
    if missing:
        problems.append(f"{len(missing)} missing: {', '.join(missing[:3])}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected: {', '.join(map(short, unexpected[:3]))}")
    floats = {}
    for name, target in targets.items():
        value = state.get(name)
        if value is None:
            continue
        if value.shape != target.shape or value.dtype != target.dtype:
            problems.append(
                f"{name} is {value.dtype} {tuple(value.shape)}, the model's "
                f"{target.dtype} {tuple(target.shape)}"
            )
        elif value.is_floating_point():
            floats[name] = value
    return problems, floats
