"""The swav extractor: ImageNet SwAV ResNet-50 pooled features, the paper's preprocessing, its
weights file read with torch.load(weights_only=True) and checked by sha256.

No weights can be downloaded here, so a checkpoint in the published layout (a state dict whose
keys carry DataParallel's "module." prefix, with SwAV's projection head and prototypes beside the
backbone, saved in the pre-1.6 torch format of 2020) is made with random weights.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from torch import nn

from cxrlib.scoring.features import ExtractorSources, make_extractor
from cxrlib.scoring.swav import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    SWAV_DIM,
    SWAV_SIZE,
    SwavExtractor,
    fetch_swav_weights,
    load_swav_state_dict,
    sha256_record,
    swav_input,
)
from cxrlib.weights import WeightsError, file_sha256


def make_swav_checkpoint(path: Path, seed: int = 0) -> nn.Module:
    """Save a random ResNet-50 laid out as the SwAV release; return it (fc: the identity)."""
    torch.manual_seed(seed)
    backbone = torchvision.models.resnet50(weights=None)
    backbone.fc = nn.Identity()
    backbone.eval()
    heads = {
        "projection_head": nn.Sequential(
            nn.Linear(2048, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Linear(64, 16)
        ),
        "prototypes": nn.Linear(16, 30, bias=False),
    }
    state = {f"module.{k}": v for k, v in backbone.state_dict().items()}
    for name, head in heads.items():
        state |= {f"module.{name}.{k}": v for k, v in head.state_dict().items()}
    torch.save(state, path, _use_new_zipfile_serialization=False)
    return backbone


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, nn.Module]:
    path = tmp_path_factory.mktemp("swav") / "swav_800ep_pretrain.pth.tar"
    return path, make_swav_checkpoint(path)


def _images(n: int, size: int, channels: int = 1, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    gray = rng.integers(0, 256, (n, 1, size, size), dtype=np.uint8)
    return torch.from_numpy(np.repeat(gray, channels, axis=1))


def test_features_are_the_pooled_input_of_fc_as_studiogan_hooks_it(checkpoint) -> None:
    path, _ = checkpoint
    extractor = SwavExtractor(path, file_sha256(path))
    images = _images(3, 64)
    features = extractor(images)
    assert features.shape == (3, SWAV_DIM) and features.dtype == torch.float32
    # the reference: torchvision's ResNet-50 with the checkpoint, its fc kept, its input hooked
    reference = torchvision.models.resnet50(weights=None)
    state = torch.load(path, weights_only=True)
    state = {k.removeprefix("module."): v for k, v in state.items()}
    missing, unexpected = reference.load_state_dict(state, strict=False)
    assert set(missing) == {"fc.weight", "fc.bias"}
    assert {k.split(".")[0] for k in unexpected} == {"projection_head", "prototypes"}
    hooked = []
    reference.fc.register_forward_pre_hook(lambda _m, inputs: hooked.append(inputs[0]))
    with torch.no_grad():
        reference.eval()(swav_input(images))
    torch.testing.assert_close(features, hooked[0], rtol=1e-5, atol=1e-5)


def test_input_is_pil_bicubic_on_float_pixels_then_imagenet_normalised() -> None:
    images = _images(2, 50, channels=3, seed=1)  # R = G = B, as every image scored here
    x = swav_input(images)
    assert x.shape == (2, 3, SWAV_SIZE, SWAV_SIZE)
    for i in range(2):
        for c in range(3):
            channel = images[i, c].numpy().astype(np.float32)
            resized = Image.fromarray(channel, mode="F").resize((224, 224), Image.BICUBIC)
            expected = (np.asarray(resized) / 255.0 - IMAGENET_MEAN[c]) / IMAGENET_STD[c]
            np.testing.assert_allclose(x[i, c].numpy(), expected, rtol=1e-5, atol=1e-5)
    # gray images give the same input as their 3-channel copies
    torch.testing.assert_close(swav_input(images[:, :1]), x)
    with pytest.raises(ValueError, match="uint8"):
        swav_input(images.float())


def test_the_checkpoint_must_be_pinned_or_recorded_and_match(checkpoint, tmp_path: Path) -> None:
    path, _ = checkpoint
    copy = tmp_path / path.name
    copy.write_bytes(path.read_bytes())
    with pytest.raises(WeightsError, match=rf"metrics\.swav_sha256.*sha256sum {copy}"):
        SwavExtractor(copy)  # neither a pin nor a record of the fetch
    sha256_record(copy).write_text(f"{file_sha256(copy)}  {copy.name}\n")
    assert SwavExtractor(copy).dim == SWAV_DIM  # the recorded sha256
    with pytest.raises(WeightsError, match=r"pinned \(metrics\.swav_sha256\)"):
        SwavExtractor(copy, "0" * 64)  # a pin wins over the record
    with copy.open("r+b") as fh:  # the file changed after it was fetched
        fh.seek(-100, os.SEEK_END)
        fh.write(b"\xff" * 100)
    with pytest.raises(WeightsError, match=r"has sha256 .*pinned \(.*\.sha256\).*swav_sha256"):
        SwavExtractor(copy)
    with pytest.raises(ValueError, match=r"metrics\.swav_weights or the fetch_swav_weights rule"):
        make_extractor("swav", ExtractorSources())


class _RunsCode:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_files_that_would_run_code_or_hold_another_network_are_refused(tmp_path: Path) -> None:
    hostile = tmp_path / "hostile.pth.tar"
    marker = tmp_path / "ran"
    payload = _RunsCode()
    payload.marker = marker
    hostile.write_bytes(pickle.dumps({"module.conv1.weight": payload}, protocol=2))
    with pytest.raises(WeightsError, match=r"hostile\.pth\.tar.*nothing in it was run") as info:
        load_swav_state_dict(hostile)
    assert not marker.exists()
    assert "weights_only` set to `False`" not in str(info.value)  # torch's advice: run it
    assert "objects other than tensors" in str(info.value)
    other = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), other)
    sha256_record(other).write_text(file_sha256(other))
    with pytest.raises(WeightsError, match=r"resnet18\.pth do not fit a ResNet-50 backbone"):
        SwavExtractor(other)
    text = tmp_path / "page.pth.tar"
    text.write_text("<html>404</html>")
    with pytest.raises(WeightsError, match=r"cannot read .*page\.pth\.tar as the SwAV"):
        load_swav_state_dict(text)


def test_fetch_records_the_sha256_and_removes_what_is_no_checkpoint(
    checkpoint, tmp_path: Path
) -> None:
    path, _ = checkpoint
    target = tmp_path / "weights" / "swav" / path.name
    digest = fetch_swav_weights(path.as_uri(), target)
    assert target.read_bytes() == path.read_bytes()
    assert sha256_record(target).read_text().split()[0] == digest == file_sha256(path)
    wrong = tmp_path / "not-a-checkpoint.pth.tar"
    wrong.write_bytes(b"PK\x03\x04 truncated zip")
    other_target = tmp_path / "other" / "swav.pth.tar"
    with pytest.raises(WeightsError, match="cannot read"):
        fetch_swav_weights(wrong.as_uri(), other_target)
    assert not other_target.exists() and not sha256_record(other_target).exists()
    with pytest.raises(WeightsError, match="expected 00000000"):
        fetch_swav_weights(path.as_uri(), tmp_path / "pinned" / path.name, "00000000")
