"""The xrv extractor: torchxrayvision's DenseNet-121 features, its input scaling, its weights file.

No weights can be downloaded here, so a file of the release's architecture and format (a whole
pickled `xrv.models.DenseNet` in the pre-1.6 torch format, its modules without the attributes
newer torch adds) is made in the test with random weights and read through the real path.
"""

from __future__ import annotations

import collections
import copyreg
import io
import os
import pickle
import re
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
import yaml

from cxrlib.data.phantom import render_radiograph
from cxrlib.scoring.features import ExtractorSources, make_extractor
from cxrlib.scoring.fidelity import array_batches, extract_features, to_uint8_rgb
from cxrlib.scoring.xrv import (
    XRV_DIM,
    XRV_SHA256,
    XRV_SIZE,
    XRV_URL,
    XRV_WEIGHTS,
    XrvExtractor,
    build_xrv_densenet,
    load_xrv_state_dict,
    verify_xrv_weights,
    xrv,
    xrv_input,
)
from cxrlib.weights import XRV_FIX, WeightsError, fetch_weights, file_sha256
from tests.test_official_import import _shared_tuple_key

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
    """fetch_xrv_weights' errors (it runs cxrlib.weights.fetch_weights with XRV_FIX)."""
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


class _Calls:
    """Unpickled by torch, this would call fn(*args) (pickle REDUCE)."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return (self.fn, self.args)


class _NewWithArguments:
    """Unpickled by torch, this would run cls.__new__(cls, *args) (pickle NEWOBJ)."""

    def __init__(self, cls, *args, state=None):
        self.cls, self.args, self.state = cls, args, state

    @property
    def __class__(self):  # pickle writes NEWOBJ only for an object of that class
        return self.cls

    def __reduce__(self):
        return (copyreg.__newobj__, (self.cls, *self.args), self.state)


# The arguments of xrv.models.DenseNet.__init__ up to cache_dir, as a file would pass them to
# have the library's own loader run torch.load(weights_only=False) on <cache_dir>/<release>.
def _densenet_arguments(cache_dir: Path) -> tuple:
    return (32, (6, 12, 24, 16), 64, 4, 0, 18, 1, XRV_WEIGHTS, str(cache_dir))


@pytest.mark.parametrize("zip_format", [False, True])
def test_a_file_that_calls_the_densenets_constructor_is_refused_and_runs_nothing(
    tmp_path: Path, zip_format: bool
) -> None:
    """The constructor escape: a file passing the allow-list by naming only xrv's DenseNet,
    called with its own weights/cache_dir so that the library's loader would unpickle a
    second file fully (here one that runs a shell command), or, alone, make directories and
    download. Refused before anything of the real class runs."""
    marker = tmp_path / "ran"
    cache = tmp_path / "cache"
    cache.mkdir()
    torch.save(_RunsCode(marker), cache / Path(XRV_URL).name)
    absent = tmp_path / "made" / "by" / "the file"
    for target in (cache, absent):
        path = tmp_path / "weights.pt"
        torch.save(
            _Calls(xrv.models.DenseNet, *_densenet_arguments(target)),
            path,
            _use_new_zipfile_serialization=zip_format,
        )
        with pytest.raises(WeightsError, match=r"calls torchxrayvision\.models\.DenseNet") as info:
            XrvExtractor(path, file_sha256(path))  # its own sha256 pinned: read it
        assert str(path) in str(info.value) and "nothing in it was run" in str(info.value)
    assert not marker.exists()
    assert sorted(p.name for p in cache.iterdir()) == [Path(XRV_URL).name]
    assert not (tmp_path / "made").exists()


@pytest.mark.parametrize("zip_format", [False, True])
def test_no_real_layer_is_constructed_whatever_the_file_asks(
    tmp_path: Path, zip_format: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """nn.Linear with 4 TiB of weights, called (REDUCE) or created with arguments (NEWOBJ),
    and a layer called with none: refused by the stand-ins, the real constructor never runs
    (it would try to allocate first)."""
    constructed = []
    monkeypatch.setattr(torch.nn.Linear, "__init__", lambda *a, **k: constructed.append(a))
    monkeypatch.setattr(torch.nn.ReLU, "__init__", lambda *a, **k: constructed.append(a))
    huge = 2**20
    cases = [
        (
            _Calls(torch.nn.Linear, huge, huge),
            r"calls torch\.nn\.modules\.linear\.Linear with arguments \(1048576, 1048576\)",
        ),
        (
            _NewWithArguments(torch.nn.Linear, huge, huge),
            r"calls torch\.nn\.modules\.linear\.Linear with arguments",
        ),
        (
            _Calls(torch.nn.ReLU),
            r"calls torch\.nn\.modules\.activation\.ReLU\(\) \(pickle REDUCE\)",
        ),
    ]
    for obj, message in cases:
        path = tmp_path / "layer.pt"
        torch.save({"w": obj}, path, _use_new_zipfile_serialization=zip_format)
        with pytest.raises(WeightsError, match=message):
            load_xrv_state_dict(path)
    assert constructed == []


def test_module_records_take_their_state_once_as_a_dict(tmp_path: Path) -> None:
    for state, message in [(5, "the state of a .*ReLU is a int"), ([1], "is a list")]:
        path = tmp_path / "state.pt"
        torch.save(_NewWithArguments(torch.nn.ReLU, state=state), path)
        with pytest.raises(WeightsError, match=message):
            load_xrv_state_dict(path)
    model = xrv.models.DenseNet(weights=None)
    model.features._modules["loop"] = model  # a cycle in the module tree
    torch.save(model, tmp_path / "loop.pt")
    with pytest.raises(WeightsError, match="loops"):
        load_xrv_state_dict(tmp_path / "loop.pt")


# A torch.save file written by hand, to declare what torch.save itself never would: tensor
# records with any view of a storage, storages of any declared size over any bytes.
class _DeclaredStorage:
    def __init__(self, key: str, numel: int):
        self.key, self.numel = key, numel


class _View:
    """Pickles as torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)."""

    def __init__(self, storage: _DeclaredStorage, offset: int, size: tuple, stride: tuple):
        self.args = (storage, offset, size, stride, False, collections.OrderedDict())

    def __reduce__(self):
        return (torch._utils._rebuild_tensor_v2, self.args)


def _write_torch_file(path: Path, obj: object, data: dict[str, bytes], zip_format: bool) -> Path:
    """obj pickled as torch.save would (storages as persistent ids), or given as pickle bytes;
    `data` as the storages' bytes (float32; the legacy format's element count = len // 4)."""

    class Pickler(pickle.Pickler):
        def persistent_id(self, o):
            if isinstance(o, _DeclaredStorage):
                record = ("storage", torch.FloatStorage, o.key, "cpu", o.numel)
                return record if zip_format else (*record, None)
            return None

    buf = io.BytesIO(obj if isinstance(obj, bytes) else b"")  # bytes: the pickle itself
    if not isinstance(obj, bytes):
        Pickler(buf, protocol=2).dump(obj)
    if zip_format:
        with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
            z.writestr("archive/data.pkl", buf.getvalue())
            z.writestr("archive/byteorder", "little")
            z.writestr("archive/version", "3\n")
            for key, raw in data.items():
                z.writestr(f"archive/data/{key}", raw)
        return path
    with path.open("wb") as f:
        info = {"protocol_version": 1001, "little_endian": True, "type_sizes": {}}
        for header in (0x1950A86A20F9469CFC6C, 1001, info):
            pickle.dump(header, f, protocol=2)
        f.write(buf.getvalue())
        pickle.dump(sorted(data), f, protocol=2)
        for key in sorted(data):
            f.write(struct.pack("<q", len(data[key]) // 4) + data[key])
    return path


_FOUR = torch.arange(4, dtype=torch.float32).numpy().tobytes()  # a storage of 4 floats


@pytest.mark.parametrize("zip_format", [False, True])
def test_tensor_views_must_lie_inside_their_storage_and_not_overlap(
    tmp_path: Path, zip_format: bool
) -> None:
    """Storages cannot grow (torch would grow a resizable one to fit a view past its end), and
    a tensor must be a contiguous block of its storage, as torch.save writes parameters."""
    storage = _DeclaredStorage("0", 4)
    ok = _write_torch_file(
        tmp_path / "ok.pt", {"w": _View(storage, 1, (2, 1), (1, 1))}, {"0": _FOUR}, zip_format
    )
    assert torch.equal(load_xrv_state_dict(ok)["w"], torch.tensor([[1.0], [2.0]]))
    for offset, size, stride, message in [
        (0, (64,), (1,), "reads outside its storage"),
        (3, (2,), (1,), "reads outside its storage"),
        (5, (1,), (1,), "reads outside its storage"),
        (0, (2, 2), (3, 1), "reads outside its storage|not a contiguous block"),
        (0, (4,), (0,), "more than once"),  # stride 0: one element read four times
        (0, (2, 2), (1, 1), "more than once"),  # overlapping strides
        (0, (2, 2), (1, 2), "more than once or skips"),  # a transposed view
        (3, (4,), (-1,), "refused it|reads outside"),  # torch takes no negative strides
        (0, (2**62,), (1,), "reads outside its storage"),
    ]:
        path = tmp_path / "view.pt"
        _write_torch_file(
            path, {"w": _View(storage, offset, size, stride)}, {"0": _FOUR}, zip_format
        )
        with pytest.raises(WeightsError, match=message):
            load_xrv_state_dict(path)


@pytest.mark.parametrize("zip_format", [False, True])
def test_storages_must_hold_the_bytes_they_declare_and_are_capped_before_allocation(
    tmp_path: Path, zip_format: bool
) -> None:
    """Declared sizes are checked against what the file holds before anything is allocated
    (legacy: by this reader; zip: by torch, against the record's size)."""
    path = tmp_path / "storage.pt"
    for numel, raw, message in [
        # 4 TiB declared, 16 bytes present
        (2**40, _FOUR, "more bytes than the file holds.*nothing allocated|record size"),
        (8, _FOUR, "holds|more bytes than the file|record size"),
        (4, _FOUR[:8], "holds|more bytes than the file|record size"),
    ]:
        storage = _DeclaredStorage("0", numel)
        obj = {"w": _View(storage, 0, (4,), (1,))}
        _write_torch_file(path, obj, {"0": raw}, zip_format)
        with pytest.raises(WeightsError, match=message):
            load_xrv_state_dict(path)


@pytest.mark.parametrize("zip_format", [False, True])
def test_pickles_that_would_make_the_unpickler_allocate_or_alter_its_stand_ins_are_refused(
    tmp_path: Path, zip_format: bool
) -> None:
    """Refused before the unpickler runs: a memo index that has CPython's unpickler allocate
    and zero 16 bytes per index (here 64 GiB, from 14 bytes), protocol 5's BYTEARRAY8 (it
    allocates its declared length first), any length past the end of the data. Refused by
    the stand-ins: a BUILD that would rewrite a shared one (a storage type's dtype, a
    rebuilder's defaults) for later loads: torch's restricted unpickler builds nothing but
    tensors, dicts and the allowlisted stand-ins."""
    path = tmp_path / "pickle.pt"
    for pickled, message in [
        (b"\x80\x02Nr" + struct.pack("<I", 2**32 - 1) + b".", "memo index 4294967295"),
        (b"\x80\x05\x96" + struct.pack("<Q", 2**40) + b"abc", "bytes in a bytearray8, but only"),
        (b"\x80\x05\x96" + struct.pack("<Q", 3) + b"abc.", r"BYTEARRAY8 \(protocol 5"),
        (_shared_tuple_key(60), r"a tuple nested \d+ deep or expanding to \d+ entries"),
        (
            b"\x80\x02ctorch\nFloatStorage\n}X\x05\x00\x00\x00dtypeK\x05sb.",
            "Can only build",
        ),
        (
            b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\nN}X\x0c\x00\x00\x00__defaults__)s\x86b.",
            "Can only build",
        ),
    ]:
        _write_torch_file(path, pickled, {}, zip_format)
        with pytest.raises(WeightsError, match=message):
            load_xrv_state_dict(path)
    view = {"w": _View(_DeclaredStorage("0", 4), 0, (4,), (1,))}
    _write_torch_file(path, view, {"0": _FOUR}, zip_format)  # the stand-ins still work
    assert torch.equal(load_xrv_state_dict(path)["w"], torch.arange(4.0))


def test_the_release_format_file_loads_bit_for_bit(weights) -> None:
    path, model = weights
    loaded = load_xrv_state_dict(path)
    expected = model.state_dict()
    assert loaded.keys() == expected.keys()
    assert all(
        torch.equal(loaded[k], v) and loaded[k].dtype == v.dtype for k, v in expected.items()
    )


def test_weights_that_do_not_fit_the_densenet_are_refused_naming_the_file(weights) -> None:
    """Missing or unexpected keys, another shape or dtype, NaN, negative BN variances: each
    named (two files of three faults each: building a DenseNet costs ~1 s)."""
    _, model = weights
    state = model.state_dict()
    conv, linear, norm = "features.conv0.weight", "classifier.weight", "features.norm5.weight"
    var = "features.norm0.running_var"
    nan = state[norm].clone()
    nan[0] = float("nan")
    first = {k: v for k, v in state.items() if k != conv}
    first.update({"extra": torch.zeros(1), linear: state[linear][:3]})
    second = {**state, conv: state[conv].double(), norm: nan, var: -state[var]}
    for changed, messages in [
        (first, [f"1 missing: {conv}", "1 unexpected: 'extra'", r"\(3, 1024\), the model's"]),
        (second, ["torch.float64", f"{norm} holds NaN or infinite", "negative variances"]),
    ]:
        with pytest.raises(WeightsError, match=r"the weights of /some/file\.pt do not fit") as info:
            build_xrv_densenet(changed, source="/some/file.pt")
        for message in messages:
            assert re.search(message, str(info.value)), (message, str(info.value))


def test_a_directory_is_named_as_one(tmp_path: Path) -> None:
    for check in (lambda p: verify_xrv_weights(p, XRV_SHA256), load_xrv_state_dict):
        with pytest.raises(WeightsError, match="is a directory"):
            check(tmp_path)


def test_no_images_or_images_of_0_px_are_a_clear_value_error() -> None:
    for shape in [(0, 1, 64, 64), (2, 1, 0, 0), (1, 3, 8, 0)]:
        with pytest.raises(ValueError, match="at least one image of at least 1x1 px"):
            xrv_input(torch.zeros(shape, dtype=torch.uint8))


@pytest.mark.parametrize("zip_format", [False, True])
def test_only_the_globals_a_densenet_file_names_are_unpickled(
    tmp_path: Path, zip_format: bool
) -> None:
    """torch's restricted unpickler would also run bytearray(n), tensor constructors, codecs and
    other tensor rebuilders, each of which can allocate what the file asks (break-it review):
    refused by name before anything is unpickled, as is a pickle longer than any the release
    holds (a set of colliding ints in it would take minutes to build)."""
    path = tmp_path / "globals.pt"
    for name, call in [
        ("builtins.bytearray", b"cbuiltins\nbytearray\nJ\x00\x00\x00\x40\x85R."),
        ("torch.FloatTensor", b"ctorch\nFloatTensor\nJ\x00\x00\x00\x40\x85R."),
        ("_codecs.encode", b"c_codecs\nencode\nX\x01\x00\x00\x00aX\x03\x00\x00\x00hex\x86R."),
        ("collections.Counter", b"ccollections\nCounter\n)R."),
        ("torch._utils._rebuild_device_tensor_from_cpu_tensor",
         b"ctorch._utils\n_rebuild_device_tensor_from_cpu_tensor\n)R."),
    ]:  # fmt: skip
        _write_torch_file(path, b"\x80\x02" + call, {}, zip_format)
        with pytest.raises(WeightsError, match=rf"refers to {re.escape(name)}, which is not"):
            load_xrv_state_dict(path)
    many = b"\x80\x02]" + b"K\x01a" * 200_000 + b"."  # a list of 200,000 ones: 600 KB
    _write_torch_file(path, many, {}, zip_format)
    with pytest.raises(WeightsError, match="does not end within"):
        load_xrv_state_dict(path)


def test_legacy_storages_cannot_grow_and_keys_are_kept(tmp_path: Path) -> None:
    """An empty storage cannot be grown by a view (it could reach 1 GB of uninitialised
    memory), and a state dict key that happens to be 'module' is not the module ids' word."""
    path = tmp_path / "empty.pt"
    _write_torch_file(
        path, {"w": _View(_DeclaredStorage("0", 0), 0, (4,), (1,))}, {"0": b""}, False
    )
    with pytest.raises(WeightsError, match="reads outside its storage"):
        load_xrv_state_dict(path)
    torch.save({"module": torch.arange(3.0)}, path, _use_new_zipfile_serialization=False)
    assert list(load_xrv_state_dict(path)) == ["module"]


def test_paths_that_cannot_be_reached_are_weights_errors(tmp_path: Path) -> None:
    long = tmp_path / ("x" * 300) / "w.pt"  # a name over the file system's 255 bytes
    for check in (lambda p: verify_xrv_weights(p, XRV_SHA256), load_xrv_state_dict):
        with pytest.raises(WeightsError, match="cannot reach"):
            check(long)
