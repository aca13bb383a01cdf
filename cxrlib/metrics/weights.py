"""Fetching pretrained weights on a machine with internet, checked before anything loads them."""

from __future__ import annotations

import logging
import shutil
import urllib.request
from pathlib import Path

from cxrlib.io import atomic_path
from cxrlib.metrics.fidelity import WeightsError, verify_weights

log = logging.getLogger(__name__)


def fetch_weights(url: str, target: str | Path, expected_sha256: str, timeout_s: float = 60) -> str:
    """Download `url` to `target` atomically and check its sha256 (full or published prefix).

    The file only appears at `target` once it is complete and verified, so a half download or a
    wrong file never reaches a job that would unpickle it. Returns the full sha256.
    """
    target = Path(target)
    try:
        with atomic_path(target) as tmp:
            with urllib.request.urlopen(url, timeout=timeout_s) as response, open(tmp, "wb") as fh:
                shutil.copyfileobj(response, fh, length=1 << 20)
            digest = verify_weights(tmp, expected_sha256)
    except OSError as exc:  # URLError is an OSError: no internet, DNS, HTTP errors
        raise WeightsError(
            f"cannot download {url} ({exc}). Compute nodes often have no internet: run "
            f"`snakemake fetch_weights` on the login node, or download the file yourself and set "
            f"metrics.inception_weights to it; or drop inception from metrics.extractors"
        ) from exc
    log.info("fetched %s -> %s (sha256 %s)", url, target, digest)
    return digest


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
