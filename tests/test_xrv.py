"""The xrv extractor: torchxrayvision's DenseNet-121 features, its input scaling, its weights file.

No weights can be downloaded here, so a file of the release's architecture and format (a whole
pickled `xrv.models.DenseNet` in the pre-1.6 torch format, its modules without the attributes
newer torch adds) is made in the test with random weights and read through the real path.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
import yaml

from cxrlib.data.phantom import render_radiograph
from cxrlib.metrics.features import ExtractorSources, make_extractor
from cxrlib.metrics.fidelity import array_batches, extract_features, to_uint8_rgb
from cxrlib.metrics.weights import XRV_FIX, WeightsError, fetch_weights, file_sha256
from cxrlib.metrics.xrv import (
    XRV_DIM,
    XRV_SHA256,
    XRV_SIZE,
    XRV_URL,
    XrvExtractor,
    load_xrv_state_dict,
    xrv,
    xrv_input,
)

ROOT = Path(__file__).resolve().parents[1]
# nn.Module attributes added after torch 1.5; the 2020 release file's modules lack them.
NEWER_MODULE_ATTRIBUTES = (
    "_non_persistent_buffers_set",
    "_backward_pre_hooks",
    "_is_full_backward_hook",
    "_forward_hooks_with_kwargs",
    "_forward_hooks_always_called",
    "_forward_pre_hooks_with_kwargs",
    "_state_dict_pre_hooks",
    "_load_state_dict_post_hooks",
)


def make_xrv_weights(path: Path, seed: int = 0) -> torch.nn.Module:
    """Save a random-weight xrv DenseNet as the release file is saved; return the model.

    (torch.save of the whole module in the legacy format, as torch 1.4 wrote it, to within
    ~0.1% of the release file's 28,382,008 bytes; the zip format would be ~0.4% larger.)
    """
    torch.manual_seed(seed)
    model = xrv.models.DenseNet(weights=None)
    # BN statistics of xrv-scaled radiographs, as a trained network has (the init's 0 / 1 let
    # features grow ~100-fold over 121 layers): one pass over phantoms, at 64 px for speed.
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a plain average over the pass
    with torch.no_grad():
        model.train()(xrv_input(torch.from_numpy(_phantoms(4, 64, seed=seed))[:, None], 64))
    for norm in norms:
        norm.momentum = 0.1
    model.eval()
    old = xrv.models.DenseNet(weights=None)
    old.load_state_dict(model.state_dict())
    for module in old.modules():
        for name in NEWER_MODULE_ATTRIBUTES:
            module.__dict__.pop(name, None)
    torch.save(old, path, _use_new_zipfile_serialization=False)
    return model


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, torch.nn.Module]:
    path = tmp_path_factory.mktemp("xrv") / "densenet121-res224-all.pt"
    return path, make_xrv_weights(path)


@pytest.fixture(scope="module")
def extractor(weights: tuple[Path, torch.nn.Module]) -> XrvExtractor:
    path, _ = weights
    return XrvExtractor(path, file_sha256(path))


def _phantoms(n: int, size: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([render_radiograph(rng, size, size, bool(i % 2)) for i in range(n)])


def test_features_are_the_librarys_own_pooled_features_at_224_px(weights, extractor) -> None:
    """(N, 1024), equal to what torchxrayvision computes itself: its normalize, its own resize
    to the model's 224 px, `features2` of the model the file was saved from."""
    _, model = weights
    images = _phantoms(2, 64)  # DenseNet-121 at 224 px: ~1 s an image on a CPU core
    ours = extract_features(extractor, array_batches(images, batch_size=1))
    assert ours.shape == (2, XRV_DIM) and ours.dtype == np.float32
    assert np.isfinite(ours).all() and ours.std() > 0
    model.input_resolution = XRV_SIZE  # as weights="densenet121-res224-all" sets it
    scaled = torch.from_numpy(np.stack([xrv.utils.normalize(im, 255) for im in images]))
    with torch.no_grad():
        theirs = model.features2(scaled[:, None]).numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)


def test_input_scaling_is_exactly_the_librarys_normalize() -> None:
    """A known 224 px image (a ramp over every gray level, then a phantom): our input is
    xrv.utils.normalize(img, 255) bit for bit, gray or as R=G=B, and spans [-1024, 1024]."""
    ramp = np.tile(np.linspace(0, 255, XRV_SIZE).round().astype(np.uint8), (XRV_SIZE, 1))
    for image in (ramp, _phantoms(1, XRV_SIZE)[0]):
        expected = torch.from_numpy(xrv.utils.normalize(image, 255))[None, None]
        gray = torch.from_numpy(image)[None, None]
        assert torch.equal(xrv_input(gray), expected)
        assert torch.equal(xrv_input(gray.expand(-1, 3, -1, -1)), expected)
    scaled = xrv_input(torch.from_numpy(ramp)[None, None])
    assert scaled.min() == -1024 and scaled.max() == 1024
    # other sizes: normalized, then resized as the library's models resize their input
    small = _phantoms(2, 64, seed=1)
    expected = xrv.utils.fix_resolution(
        torch.from_numpy(np.stack([xrv.utils.normalize(im, 255) for im in small]))[:, None],
        XRV_SIZE,
        object(),
    )
    assert torch.equal(xrv_input(torch.from_numpy(small)[:, None]), expected)
    with pytest.raises(ValueError, match="uint8"):
        xrv_input(torch.zeros(1, 1, 8, 8))


def test_real_and_generated_images_of_the_same_pixels_give_identical_features(weights) -> None:
    """Real images (uint8 from the cache) and generated ones (floats in [-1, 1]) with the same
    pixels take the same path: identical features, through make_extractor."""
    path, _ = weights
    extractor = make_extractor(
        "xrv", ExtractorSources(xrv_weights=path, xrv_sha256=file_sha256(path))
    )
    real = _phantoms(2, 32, seed=2)
    generated = torch.from_numpy(real).float()[:, None] / 127.5 - 1
    assert torch.equal(to_uint8_rgb(generated)[:, 0], torch.from_numpy(real))
    from_real = extract_features(extractor, array_batches(real, batch_size=1))
    from_generated = extract_features(extractor, [generated[:1], generated[1:]])
    # (same batches: a CPU convolution's float rounding may depend on the batch size)
    assert np.array_equal(from_real, from_generated)


def test_a_file_with_another_sha256_is_refused_naming_it(weights, tmp_path: Path) -> None:
    path, _ = weights
    other = tmp_path / "other.pt"
    make_xrv_weights(other, seed=1)
    with pytest.raises(WeightsError, match=r"metrics\.xrv_sha256") as info:
        XrvExtractor(other, file_sha256(path))
    assert str(other) in str(info.value) and "fetch_xrv_weights" in str(info.value)
    with pytest.raises(WeightsError, match=re.escape(str(other))):  # the published file's sha256
        make_extractor("xrv", ExtractorSources(xrv_weights=other))
    with pytest.raises(WeightsError, match=r"metrics\.xrv_sha256"):
        XrvExtractor(path, "")


def test_a_missing_file_is_refused_naming_the_fetch_rule_and_the_config_key(
    tmp_path: Path,
) -> None:
    missing = tmp_path / "absent.pt"
    with pytest.raises(WeightsError, match="fetch_xrv_weights") as info:
        XrvExtractor(missing, XRV_SHA256)
    assert str(missing) in str(info.value) and "metrics.xrv_weights" in str(info.value)
    with pytest.raises(ValueError, match=r"metrics\.xrv_weights or the fetch_xrv_weights rule"):
        make_extractor("xrv", ExtractorSources())


def test_a_failed_or_wrong_fetch_names_the_xrv_fix(tmp_path: Path) -> None:
    """fetch_xrv_weights' errors (it runs cxrlib.metrics.weights.fetch_weights with XRV_FIX)."""
    target = tmp_path / "weights" / "xrv.pt"
    with pytest.raises(WeightsError, match="fetch_xrv_weights") as info:
        fetch_weights((tmp_path / "offline.pt").as_uri(), target, XRV_SHA256, fix=XRV_FIX)
    assert "login node" in str(info.value)
    other = tmp_path / "other.pt"
    other.write_bytes(b"not the release file")
    with pytest.raises(WeightsError, match=r"not the published file.*metrics\.xrv_sha256"):
        fetch_weights(other.as_uri(), target, XRV_SHA256, fix=XRV_FIX)
    assert not target.exists()


class _RunsCode:
    """Unpickled, this would run a shell command."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("zip_format", [False, True])
def test_files_that_would_run_code_or_hold_other_classes_are_refused(
    tmp_path: Path, zip_format: bool
) -> None:
    """Whatever its sha256, nothing but the DenseNet's own classes and tensors is unpickled."""
    marker = tmp_path / "ran"
    hostile = tmp_path / "hostile.pt"
    torch.save({"w": _RunsCode(marker)}, hostile, _use_new_zipfile_serialization=zip_format)
    with pytest.raises(WeightsError, match="cannot read"):
        load_xrv_state_dict(hostile)
    assert not marker.exists()
    other = tmp_path / "torchvision.pt"
    torch.save(torchvision.models.densenet121(), other, _use_new_zipfile_serialization=zip_format)
    with pytest.raises(WeightsError, match="torchvision"):
        load_xrv_state_dict(other)


@pytest.mark.parametrize("zip_format", [False, True])
def test_state_dicts_and_modules_saved_by_newer_torch_load_too(
    weights, tmp_path: Path, zip_format: bool
) -> None:
    _, model = weights
    expected = model.state_dict()
    for obj in (model, expected):
        path = tmp_path / "copy.pt"
        torch.save(obj, path, _use_new_zipfile_serialization=zip_format)
        loaded = load_xrv_state_dict(path)
        assert loaded.keys() == expected.keys()
        assert all(torch.equal(loaded[k], expected[k]) for k in expected)
    torch.save({"features.conv0.weight": torch.zeros(3)}, path)
    with pytest.raises(WeightsError, match="do not fit"):
        XrvExtractor(path, file_sha256(path))


def test_config_and_schema_defaults_are_the_librarys_release_file() -> None:
    config = yaml.safe_load((ROOT / "config.yaml").read_text())["metrics"]
    schema = yaml.safe_load((ROOT / "schemas/config.schema.yaml").read_text())
    defaults = schema["properties"]["metrics"]["properties"]
    assert config["xrv_url"] == defaults["xrv_url"]["default"] == XRV_URL
    assert config["xrv_sha256"] == defaults["xrv_sha256"]["default"] == XRV_SHA256
    assert config["xrv_weights"] is None
    assert "xrv" not in config["extractors"]  # the default study stays offline
    demo = yaml.safe_load((ROOT / "overlays/demo.yaml").read_text())
    assert "xrv" not in demo["metrics"]["extractors"]
