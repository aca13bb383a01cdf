"""Published networks a StyleGAN2-ADA run starts from (transfer learning), fetched on the login
node: `stylegan2ada.pretrained.<name>: {url, sha256}` in the config.

NVIDIA publishes no checksums for its StyleGAN2-ADA pickles. Unlike the Inception file, which
torch-fidelity unpickles with code execution and so must match a pinned sha256, these pickles
are only ever read by the restricted unpickler of `cxrlib.stylegan2ada.official`, which runs no code
from the file. So an empty sha256 is allowed: the fetch logs the file's sha256 and the config
line that pins it, and a pinned sha256 is checked like any weights file.
"""

from __future__ import annotations

import logging
from pathlib import Path

from cxrlib.file_kinds import container_kind, describe_head, read_head
from cxrlib.weights import WeightsError, fetch_weights, file_sha256

log = logging.getLogger(__name__)


def fetch_pretrained(name: str, url: str, target: str | Path, sha256: str = "") -> str:
    """Download network `name` from `url` to `target` (atomically); returns its sha256.

    Raises WeightsError when the download fails or a pinned `sha256` (full, or a prefix of
    at least 8 hex digits) does not match.
    """
    pinned = (sha256 or "").strip().lower()
    if pinned and len(pinned) < 8:
        raise WeightsError(
            f"stylegan2ada.pretrained.{name}.sha256 {sha256!r} is too short to identify a file: "
            "give at least 8 hex digits, or the full sha256, or leave it empty"
        )
    fix = (
        f"run `snakemake --cores 1 {target}` on a machine with internet (clusters' login nodes "
        f"usually have it: if this is one, it has none), or download "
        f"stylegan2ada.pretrained.{name}.url yourself and set the run's resume_from to the file"
    )
    digest = fetch_weights(url, target, pinned, fix=fix)
    kind = _looks_like(Path(target))
    if kind is not None:
        Path(target).unlink()
        raise WeightsError(
            f"stylegan2ada.pretrained.{name}: {url} gave {kind}, not a network pickle (a login "
            f"or error page, or a moved file?): check the url. To fix: {fix}"
        )
    if not pinned:
        log.warning(
            "stylegan2ada.pretrained.%s has no sha256 to check; the file fetched has sha256 %s. "
            "To pin it (reproducible runs; a changed file is then refused), set in your "
            "config:\n  stylegan2ada:\n    pretrained:\n      %s:\n        sha256: %s",
            name, digest, name, digest,
        )  # fmt: skip
    return digest


def _looks_like(path: Path) -> str | None:
    """None for a file that starts like a network file (a pickle of protocol 2-5 or a
    torch.save file); else what it looks like instead."""
    head = read_head(path)
    if container_kind(head[:16]) != "other":
        return None
    return describe_head(head)


def check_pinned(path: str | Path, name: str, sha256: str) -> None:
    """A fetched network file against its pinned `stylegan2ada.pretrained.<name>.sha256`
    (full or a prefix of 8+ hex digits; empty: nothing to check), in the training job before
    the file is read: a file put there by hand, or fetched before the pin was set, is
    refused when it is not the pinned one. Raises WeightsError naming both digests."""
    pinned = (sha256 or "").strip().lower()
    if not pinned:
        return
    actual = file_sha256(path)
    if not actual.startswith(pinned):
        raise WeightsError(
            f"{path} has sha256 {actual}, but stylegan2ada.pretrained.{name}.sha256 pins "
            f"{pinned}: it is not the pinned file. Delete it to fetch the pinned one again "
            f"(`snakemake --cores 1 {path}` on the login node), or pin the file you mean"
        )
