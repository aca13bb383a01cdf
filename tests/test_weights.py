"""fetch_weights: a verified file appears atomically, or nothing appears and the error says why."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision

from cxrlib.classifier.networks import build_classifier
from cxrlib.scoring.fidelity import WeightsError, file_sha256
from cxrlib.weights import IMAGENET_URLS, fetch_weights, published_sha256_prefix


def _source(tmp_path: Path) -> Path:
    src = tmp_path / "published.pth"
    src.write_bytes(b"weights" * 1000)
    return src


def test_fetch_verifies_and_writes_the_file(tmp_path: Path) -> None:
    src = _source(tmp_path)
    target = tmp_path / "weights" / "inception.pth"
    digest = fetch_weights(src.as_uri(), target, file_sha256(src)[:8])
    assert target.read_bytes() == src.read_bytes()
    assert digest == file_sha256(src)


def test_wrong_sha256_leaves_no_file(tmp_path: Path) -> None:
    src = _source(tmp_path)
    target = tmp_path / "weights" / "inception.pth"
    with pytest.raises(WeightsError, match="not the published file"):
        fetch_weights(src.as_uri(), target, "00000000")
    assert not target.exists()
    assert not list(target.parent.glob("*")), "a partial or temporary file was left behind"


def test_unreachable_url_names_the_offline_fix(tmp_path: Path) -> None:
    target = tmp_path / "inception.pth"
    with pytest.raises(WeightsError, match=r"metrics\.inception_weights") as info:
        fetch_weights((tmp_path / "missing.pth").as_uri(), target, "6726825d")
    assert "login node" in str(info.value)
    assert not target.exists()


def test_imagenet_weights_are_fetched_checked_and_load_into_the_classifier(tmp_path: Path) -> None:
    """The classifier's ImageNet path: a torchvision-style file (its name carries its sha256
    prefix) fetched, checked, then loaded by build_classifier (here a file made in the test)."""
    torch.manual_seed(0)
    state = torchvision.models.resnet18(weights=None).state_dict()
    staged = tmp_path / "staged.pth"
    torch.save(state, staged)
    named = tmp_path / f"resnet18-{file_sha256(staged)[:8]}.pth"
    staged.rename(named)
    target = tmp_path / "weights" / "imagenet" / "resnet18.pth"
    fetch_weights(named.as_uri(), target, published_sha256_prefix(named.as_uri()))
    model = build_classifier("resnet18", target)
    conv = model.state_dict()
    key = next(k for k in conv if k.endswith("layer1.0.conv1.weight"))
    assert torch.equal(conv[key], state["layer1.0.conv1.weight"])


def test_published_urls_carry_their_sha256_prefix() -> None:
    assert published_sha256_prefix(IMAGENET_URLS["resnet50"]) == "0676ba61"
    assert published_sha256_prefix(IMAGENET_URLS["resnet18"]) == "f37072fd"
    with pytest.raises(ValueError, match="no sha256 prefix"):
        published_sha256_prefix("https://example.org/weights.pth")
