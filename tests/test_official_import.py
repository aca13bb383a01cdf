"""Official StyleGAN2-ADA network pickles: read without running their code, mapped onto our
networks so that they compute the same function, refused clearly when they cannot be.

The official files are built here from stand-ins (tests/official_format.py) that pickle
exactly as the official persistent classes do and whose module_src writes a marker file if
anything executes it; every test checks the marker never appears.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import subprocess
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cxrlib.stylegan2ada import networks as sg
from cxrlib.stylegan2ada import official as off
from cxrlib.stylegan2ada import official_pickle as op
from cxrlib.stylegan2ada.settings import StyleGanSettings
from tests import official_format as of

# The run that matches the stand-ins' defaults (32 px, widths 32/32/16/8, z = w = 16).
RUN = StyleGanSettings(
    resolution=32, channels=1, channel_base=256, channel_max=32, mapping_layers=2, z_dim=16,
    w_dim=16, mbstd_group=4, batch_size=4,
)  # fmt: skip
ATOL = 1e-5


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def marker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The official module names installed; fails the test if module_src ever ran."""
    path = tmp_path / "module_src_was_run"
    of.install(monkeypatch, path)
    yield path
    assert not path.exists(), "module_src from the pickle was executed"


def kwargs(**changes) -> tuple[dict, dict]:
    s = dataclasses.replace(RUN, **changes)
    return s.generator_kwargs(), s.discriminator_kwargs()


def our_networks(
    result: off.ProjectNetworks, **changes
) -> tuple[sg.Generator, sg.Generator, sg.Discriminator]:
    gk, dk = kwargs(**changes)
    nets = sg.Generator(**gk), sg.Generator(**gk), sg.Discriminator(**dk)
    for net, state in zip(nets, (result.G, result.G_ema, result.D), strict=True):
        net.load_state_dict(state)  # strict: every name and shape
        net.eval().requires_grad_(False)
    return nets


def standard_file(tmp_path: Path, protocol: int = 3, **net_kwargs) -> tuple[Path, ...]:
    g_ema = of.official_generator(**net_kwargs)
    g = of.official_generator(seed=5, **net_kwargs)
    d = of.official_discriminator(freeze_layers=2)  # two layers stored as buffers
    path = of.write_official_pickle(tmp_path / "net.pkl", protocol, G=g, D=d, G_ema=g_ema)
    return path, g, g_ema, d


class Payload:
    """Unpickles as fn(*args): the classic pickle exploit."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return (self.fn, self.args)


# --------------------------------------------------------------------------------------------
# Safety.


@pytest.mark.parametrize("protocol", [3, 4])
def test_file_is_a_live_trap_for_plain_pickle_but_not_for_the_reader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, protocol: int
) -> None:
    trap = tmp_path / "trap_marker"
    of.install(monkeypatch, trap)
    path, *_ = standard_file(tmp_path, protocol)
    nets = off.read_official_pickle(path)
    assert not trap.exists()
    assert set(nets.networks) == {"G", "D", "G_ema"} and nets.other_keys == ("augment_pipe",)
    assert nets.training_set_kwargs == {"resolution": 32, "use_labels": False}
    g = nets.networks["G_ema"]
    assert (
        g.class_name == "Generator"
        and g.layers["synthesis.b8.conv0"].class_name == "SynthesisLayer"
    )
    assert g.init_kwargs["mapping_kwargs"]["num_layers"] == 2
    assert isinstance(g.attr("mapping.fc0", "weight_gain"), float)  # a numpy float64 in the file
    with open(path, "rb") as f:
        pickle.load(f)  # what the official loader does: runs module_src
    assert trap.exists()


PAYLOADS = {
    "os.system": lambda m: Payload(os.system, f"touch {m}"),
    "builtins.exec": lambda m: Payload(exec, f"open({str(m)!r}, 'w').write('x')"),
    "builtins.eval": lambda m: Payload(eval, f"open({str(m)!r}, 'w').write('x')"),
    "subprocess.Popen": lambda m: Payload(subprocess.Popen, ["touch", str(m)]),
}


@pytest.mark.parametrize("kind", PAYLOADS)
@pytest.mark.parametrize("where", ["top", "nested"])
def test_payloads_are_refused_and_never_run(
    tmp_path: Path, marker: Path, kind: str, where: str
) -> None:
    hit = tmp_path / "payload_ran"
    payload = PAYLOADS[kind](hit)
    g = of.official_generator()
    if where == "top":
        path = of.write_official_pickle(tmp_path / "evil.pkl", G_ema=g, extra=payload)
    else:  # deep inside a layer's state, as an attribute
        g.synthesis.b8.conv1.payload = payload
        path = of.write_official_pickle(tmp_path / "evil.pkl", G_ema=g)
    with pytest.raises(off.OfficialNetworkError) as err:
        off.read_official_pickle(path)
    msg = str(err.value)
    fn = payload.fn
    assert str(path) in msg and f"{fn.__module__}.{fn.__qualname__}" in msg
    assert "Only these are allowed" in msg and "torch._utils._rebuild_tensor_v2" in msg
    assert "nothing from it was run" in msg
    assert not hit.exists()


def test_payload_inside_tensor_storage_bytes_is_refused(tmp_path: Path, marker: Path) -> None:
    hit = tmp_path / "payload_ran"
    storage = Payload(
        torch.storage._load_from_bytes, pickle.dumps(Payload(os.system, f"touch {hit}"))
    )
    path = of.write_official_pickle(
        tmp_path / "evil.pkl", G_ema=of.official_generator(), extra=storage
    )
    with pytest.raises(off.OfficialNetworkError, match="weights_only=True") as err:
        off.read_official_pickle(path)
    assert str(path) in str(err.value)
    assert not hit.exists()


class Record:
    """Pickles as the given reduce tuple: hand-made records of the allowed globals."""

    def __init__(self, *reduce):
        self.reduce = reduce

    def __reduce__(self):
        return self.reduce


def _meta(**changes) -> dict:
    return {"type": "class", "version": 6, "module_src": of._STATE["module_src"],
            "class_name": "Generator", "state": {}, **changes}  # fmt: skip


CRAFTED = {
    "tensor from a non-storage": (
        lambda: Record(torch._utils._rebuild_tensor_v2, ("x", 0, (1,), (1,), False, OrderedDict())),
        "malformed tensor record",
    ),
    "tensor with hooks": (
        lambda: Record(torch._utils._rebuild_tensor_v2,
                       (torch.zeros(2).storage(), 0, (2,), (1,), False, OrderedDict({0: set}))),
        "backward hooks",
    ),
    "BUILD on a persistent object": (
        lambda: Record(of._reconstruct_persistent_obj, (_meta(),), {"class_name": "x"}),
        "BUILD on a persistent object",
    ),
    "persistence version": (
        lambda: Record(of._reconstruct_persistent_obj, (_meta(version=5),)),
        "persistence version 5",
    ),
}  # fmt: skip


@pytest.mark.filterwarnings("ignore:TypedStorage is deprecated")
@pytest.mark.parametrize("case", CRAFTED)
def test_crafted_records_of_allowed_globals_are_refused(
    tmp_path: Path, marker: Path, case: str
) -> None:
    make, expected = CRAFTED[case]
    path = of.write_official_pickle(tmp_path / "crafted.pkl", G_ema=make())
    with pytest.raises(off.OfficialNetworkError) as err:
        off.read_official_pickle(path)
    assert expected in str(err.value) and str(path) in str(err.value)


def test_numpy_1_scalar_names_are_read(tmp_path: Path, marker: Path) -> None:
    """Files from 2020-2021 name numpy.core.multiarray.scalar (numpy >= 2: numpy._core)."""
    path, *_ = standard_file(tmp_path, protocol=3)
    data = path.read_bytes()
    assert b"cnumpy._core.multiarray\nscalar\n" in data
    path.write_bytes(data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    g = off.read_official_pickle(path).networks["G_ema"]
    assert g.attr("mapping.fc1", "weight_gain") == pytest.approx(0.01 / 4)


# --------------------------------------------------------------------------------------------
# The mapped networks compute the official function.


@pytest.mark.parametrize("protocol", [3, 4])
def test_mapped_networks_reproduce_the_official_outputs(
    tmp_path: Path, marker: Path, protocol: int
) -> None:
    path, g_file, g_ema_file, d_file = standard_file(tmp_path, protocol)
    assert off.is_official_pickle(path)
    gk, dk = kwargs()
    result = off.import_official(path, gk, dk)
    g, g_ema, d = our_networks(result)
    z = torch.randn(4, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        for psi in (1.0, 0.6):
            want = g_ema_file(z, truncation_psi=psi)
            assert torch.allclose(g_ema(z, psi, noise_mode="const"), want, atol=ATOL, rtol=0)
            assert torch.allclose(g(z, psi, noise_mode="const"), want, atol=ATOL, rtol=0)
        x = torch.randn(4, 1, 32, 32, generator=torch.Generator().manual_seed(2))
        assert torch.allclose(d(x), d_file(x), atol=ATOL, rtol=0)
        # g_start="G": G starts from the file's training G, G_ema from its G_ema.
        g2, g_ema2, _ = our_networks(off.import_official(path, gk, dk, g_start="G"))
        assert torch.allclose(g2(z, noise_mode="const"), g_file(z), atol=ATOL, rtol=0)
        assert torch.allclose(g_ema2(z, noise_mode="const"), g_ema_file(z), atol=ATOL, rtol=0)
    assert result.G["mapping.w_avg"].data_ptr() != result.G_ema["mapping.w_avg"].data_ptr()
    assert any("G_ema -> G_ema, G_ema -> G, D -> D" in n for n in result.notes)
    assert any("minibatch-std" in n for n in result.notes)


def test_minibatch_std_groups_differ_only_by_a_permutation(tmp_path: Path, marker: Path) -> None:
    """Official groups: samples i, i + n, ... (n = N / G); ours: consecutive samples. A
    batch of two groups reordered so that official groups become consecutive agrees."""
    path, _, _, d_file = standard_file(tmp_path)
    _, _, d = our_networks(off.import_official(path, *kwargs()))
    x = torch.randn(8, 1, 32, 32, generator=torch.Generator().manual_seed(3))
    x[4:] *= 4  # consecutive groups differ in spread, strided ones mix them
    n = 2  # groups of 4 in a batch of 8
    perm = torch.tensor([j + n * k for j in range(n) for k in range(4)])
    with torch.no_grad():
        want = d_file(x)
        assert torch.allclose(d(x[perm]), want[perm], atol=ATOL, rtol=0)
        assert not torch.allclose(d(x), want, atol=1e-3)


def test_dense_layer_gain_convention(tmp_path: Path, marker: Path) -> None:
    """Official FullyConnectedLayer: y = lrelu(x (W lr / sqrt(in))^T + b lr) sqrt(2), weight
    stored randn / lr. A file with mapping lr 0.1 imported into ours (lr 0.01) is rescaled
    (stored x10) and computes the same function."""
    g_file = of.official_generator(mapping_lr=0.1)
    path = of.write_official_pickle(tmp_path / "lr.pkl", G_ema=g_file)
    result = off.import_official(path, *kwargs())
    g = sg.Generator(**kwargs()[0])
    g.load_state_dict(result.G_ema)
    w, b = g_file.mapping.fc1.weight, g_file.mapping.fc1.bias
    x = torch.randn(5, 16)
    hand = F.leaky_relu(x @ (w * 0.1 / 16**0.5).t() + b * 0.1, 0.2) * 2**0.5
    with torch.no_grad():
        assert torch.allclose(g.mapping.layers[1](x), hand, atol=ATOL, rtol=0)
        assert torch.allclose(result.G_ema["mapping.layers.1.weight"], w * 10, rtol=1e-6)
        z = torch.randn(2, 16)
        assert torch.allclose(g(z, noise_mode="const"), g_file(z), atol=ATOL, rtol=0)


def test_conv_layer_gain_convention(tmp_path: Path, marker: Path) -> None:
    """Official Conv2dLayer: lrelu(conv(x, W / sqrt(in k^2)) + b) sqrt(2) gain; the skip
    branch: FIR-downsample, 1x1 conv, no bias, linear, gain sqrt(1/2)."""
    path, _, _, d_file = standard_file(tmp_path)
    _, _, d = our_networks(off.import_official(path, *kwargs()))
    layer = d_file.b32.conv0  # (8, 8, 3, 3), stored as buffers (frozen) in this file
    x = torch.randn(2, 8, 32, 32)
    hand = (
        F.leaky_relu(
            F.conv2d(x, layer.weight / (8 * 9) ** 0.5, padding=1) + layer.bias.view(1, -1, 1, 1),
            0.2,
        )
        * 2**0.5
    )
    skip = d_file.b32.skip.weight
    fir = of.upfirdn2d_ref(x, of.setup_filter(), down=2, pad=(1, 1))
    hand_skip = F.conv2d(fir, skip / 8**0.5) * 0.5**0.5
    with torch.no_grad():
        assert torch.allclose(d.blocks.b32.conv0(x), hand, atol=ATOL, rtol=0)
        assert torch.allclose(d.blocks.b32.skip(x, gain=0.5**0.5), hand_skip, atol=ATOL, rtol=0)


@pytest.mark.parametrize("fused", [True, False])
def test_upsampling_conv_kernels_are_flipped(fused: bool) -> None:
    """The official up-sampling layer convolves (flip_weight=False), ours correlates: the
    same function with the kernel flipped in H and W, and a different one without."""
    gen = torch.Generator().manual_seed(4)
    x, w = torch.randn(2, 4, 8, 8, generator=gen), torch.randn(3, 4, 3, 3, generator=gen)
    styles = torch.rand(2, 4, generator=gen) + 0.5
    want = of.modulated_conv_ref(x, w, styles, 2, 1, of.setup_filter(), True, False)
    ours = sg.modulated_conv2d(x, w.flip([2, 3]), styles, up=2, fused=fused)
    assert torch.allclose(ours, want, atol=ATOL, rtol=0)
    assert not torch.allclose(sg.modulated_conv2d(x, w, styles, up=2, fused=fused), want, atol=1e-2)


# --------------------------------------------------------------------------------------------
# RGB networks into a 1-channel run.


def test_rgb_networks_become_gray(tmp_path: Path, marker: Path) -> None:
    g_file = of.official_generator(img_channels=3)
    d_file = of.official_discriminator(img_channels=3)
    path = of.write_official_pickle(tmp_path / "rgb.pkl", G_ema=g_file, D=d_file)
    result = off.import_official(path, *kwargs())
    assert set(result.G) == set(sg.Generator(**kwargs()[0]).state_dict())
    _, g, d = our_networks(result)
    z = torch.randn(3, 16, generator=torch.Generator().manual_seed(5))
    x = torch.randn(4, 1, 32, 32, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        rgb = g_file(z)
        assert torch.allclose(g(z, noise_mode="const"), off.luma(rgb), atol=ATOL, rtol=0)
        assert torch.allclose(d(x), d_file(x.repeat(1, 3, 1, 1)), atol=ATOL, rtol=0)
    notes = " ".join(result.notes)
    assert "BT.601" in notes and "0.299 R + 0.587 G + 0.114 B" in notes
    assert "fromRGB weights summed" in notes and "the file has no D" not in notes


# --------------------------------------------------------------------------------------------
# Refusals.


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"resolution": 64}, ["G_ema: resolution: file 32 px, run 64", "D: resolution: file 32 px",
                              "stylegan2ada.settings.resolution: 32"]),
        ({"channel_base": 512}, ["G_ema: widths", "D: widths", "16 px: file 16, run 32",
                                 "stylegan2ada.settings.channel_base: 256, "
                                 "stylegan2ada.settings.channel_max: 32"]),
        ({"channel_max": 16}, ["4 px: file 32, run 16", "stylegan2ada.settings.channel_max: 32"]),
        ({"mapping_layers": 3, "z_dim": 8, "w_dim": 32},
         ["mapping depth: file 2 layers, run 3", "stylegan2ada.settings.mapping_layers: 2",
          "stylegan2ada.settings.z_dim: 16", "stylegan2ada.settings.w_dim: 16"]),
        ({"channels": 3}, ["1-channel images in the file, 3 in the run",
                           "stylegan2ada.settings.channels: 1"]),
    ],
)  # fmt: skip
def test_size_mismatches_are_refused_naming_the_settings(
    tmp_path: Path, marker: Path, changes: dict, expected: list[str]
) -> None:
    path, *_ = standard_file(tmp_path)
    with pytest.raises(off.OfficialNetworkError) as err:
        off.import_official(path, *kwargs(**changes))
    msg = str(err.value)
    assert str(path) in msg
    for text in expected:
        assert text in msg, (text, msg)


class SynthesisInput(of.Persistent):
    """Stand-in for StyleGAN3's Fourier-feature input layer."""

    def __init__(self):
        super().__init__()
        self.register_buffer("freqs", torch.randn(8, 2))
        self.size = np.broadcast_to(np.asarray([36, 36]), [2])  # StyleGAN3 keeps arrays
        self.sampling_rate = np.float64(16.0)


def _no_noise(g) -> None:
    for layer in g.modules():
        if isinstance(layer, of.SynthesisLayer):
            del layer._buffers["noise_const"], layer._parameters["noise_strength"]
            layer.use_noise = False


def _conditional(g) -> None:
    g.c_dim = 4
    g.mapping.embed = of.FullyConnectedLayer(4, 16)


ARCHITECTURE_CHANGES = {
    "G resnet": (lambda g, d: setattr(g.synthesis.b8, "architecture", "resnet"),
                 "synthesis.b8 architecture 'resnet'; our Generator is 'skip' only"),
    "D skip": (lambda g, d: setattr(d.b16, "architecture", "skip"),
               "b16 architecture 'skip'; our Discriminator is 'resnet' only"),
    "StyleGAN3": (lambda g, d: setattr(g.synthesis, "input", SynthesisInput()),
                  "StyleGAN3 (alias-free) generator"),
    "conditional": (lambda g, d: _conditional(g), "is conditional (c_dim 4"),
    "no noise": (lambda g, d: _no_noise(g), "no tensor synthesis.b4.conv1.noise_strength"),
    "mbstd channels": (lambda g, d: setattr(d.b4.mbstd, "num_channels", 2),
                       "minibatch-std over 2 channel(s), ours 1"),
    "activation": (lambda g, d: setattr(d.b32.conv0, "activation", "relu"),
                   "b32.conv0 uses activation 'relu'; ours uses 'lrelu'"),
    "extra layer": (lambda g, d: setattr(g.synthesis.b8, "skip", of.Conv2dLayer(32, 32, 1)),
                    "has tensors of layers our network lacks: synthesis.b8.skip.bias"),
    "filter": (lambda g, d: g.synthesis.b16.conv0.resample_filter.mul_(2),
               "synthesis.b16.conv0.resample_filter is not the [1, 3, 3, 1] filter"),
}  # fmt: skip


@pytest.mark.parametrize("case", ARCHITECTURE_CHANGES)
def test_architecture_differences_are_refused(tmp_path: Path, marker: Path, case: str) -> None:
    g, d = of.official_generator(), of.official_discriminator()
    change, expected = ARCHITECTURE_CHANGES[case]
    change(g, d)
    path = of.write_official_pickle(tmp_path / "arch.pkl", G_ema=g, D=d)
    with pytest.raises(off.OfficialNetworkError) as err:
        off.import_official(path, *kwargs())
    assert expected in str(err.value) and str(path) in str(err.value)


def test_stylegan3_discriminator_alone_can_be_mapped(tmp_path: Path, marker: Path) -> None:
    g, d = of.official_generator(), of.official_discriminator()
    g.synthesis.input = SynthesisInput()
    path = of.write_official_pickle(tmp_path / "sg3.pkl", G_ema=g, D=d)
    nets = off.read_official_pickle(path)
    assert nets.networks["G_ema"].attr("synthesis.input", "size") == [36, 36]
    with pytest.raises(off.OfficialNetworkError, match="discriminator_to_project"):
        off.official_to_project(nets, *kwargs())
    state, _ = off.discriminator_to_project(nets.networks["D"], kwargs()[1])
    ours = sg.Discriminator(**kwargs()[1])
    ours.load_state_dict(state)
    x = torch.randn(4, 1, 32, 32)
    with torch.no_grad():
        assert torch.allclose(ours(x), d(x), atol=ATOL, rtol=0)


def test_files_of_other_kinds_are_refused(tmp_path: Path, marker: Path) -> None:
    zipped = tmp_path / "networks.pt"
    torch.save({"G": {"w": torch.zeros(2)}}, zipped)
    legacy = tmp_path / "legacy.pt"
    torch.save({"G": torch.zeros(2)}, legacy, _use_new_zipfile_serialization=False)
    text = tmp_path / "notes.txt"
    text.write_text("not a network\n")
    listed = tmp_path / "list.pkl"
    listed.write_bytes(pickle.dumps([1, 2, 3]))
    no_nets = tmp_path / "dict.pkl"
    no_nets.write_bytes(pickle.dumps({"weights": [0.5]}))
    module = tmp_path / "module.pkl"
    module.write_bytes(pickle.dumps({"G": torch.nn.Linear(2, 2)}))
    cases = {
        zipped: "is a torch.save file (zip)",
        legacy: "is a torch.save file (torch_legacy)",
        text: "not a readable network pickle",
        listed: "holds a list, not the official dict",
        no_nets: "has none of G, D, G_ema",
        module: "refused to load the global torch.nn.modules.linear.Linear",
    }
    for path, expected in cases.items():
        assert off.is_official_pickle(path) == (path in (listed, no_nets, module)), path
        with pytest.raises(off.OfficialNetworkError) as err:
            off.read_official_pickle(path)
        assert expected in str(err.value) and str(path) in str(err.value), str(err.value)
    assert issubclass(off.OfficialNetworkError, ValueError)
    with pytest.raises(FileNotFoundError):
        off.read_official_pickle(tmp_path / "missing.pkl")


def test_tensorflow_pickles_are_refused_with_the_conversion_hint(
    tmp_path: Path, marker: Path
) -> None:
    """TF-era pickles hold dnnlib.tflib.network.Network objects (the official legacy.py
    converts them); their global is refused with that hint."""
    path = tmp_path / "tf.pkl"
    # protocol 2: PROTO, GLOBAL 'dnnlib.tflib.network Network', EMPTY_TUPLE, NEWOBJ, STOP.
    path.write_bytes(b"\x80\x02cdnnlib.tflib.network\nNetwork\n)\x81.")
    assert off.is_official_pickle(path)
    with pytest.raises(off.OfficialNetworkError, match=r"legacy\.py"):
        off.read_official_pickle(path)


# --------------------------------------------------------------------------------------------
# Malformed and hostile files (break-it review): every one an OfficialNetworkError naming the
# file and what is wrong, quickly and without the memory it asks for.


def _view(storage: torch.Tensor, offset: int, size: tuple, stride: tuple) -> Record:
    """A tensor record viewing `storage`'s data with the given offset, size and stride."""
    return Record(torch._utils._rebuild_tensor_v2,
                  (storage.storage(), offset, size, stride, False, OrderedDict()))  # fmt: skip


def _zero_stride(shape: tuple, dtype: torch.dtype) -> torch.Tensor:
    """A tensor of `shape` on a 1-element storage: torch pickles it in a few bytes."""
    st = torch.zeros(1, dtype=dtype).untyped_storage()
    return torch.empty(0, dtype=dtype).set_(st, 0, shape, (0,) * len(shape))


FOUR = torch.tensor([1.0, 2.0, 3.0, 4.0])
VIEWS = {
    "size past the storage": ((FOUR, 0, (64,), (1,)), "reaches element 63 of a storage of 4"),
    "offset past the storage": ((FOUR, 100, (1,), (1,)), "reaches element 100 of a storage of 4"),
    "stride 0": ((FOUR, 0, (2**28,), (0,)), "not contiguous"),
    "overlapping": ((FOUR, 0, (3, 2), (1, 1)), "not contiguous"),
    "transposed": ((FOUR, 0, (2, 2), (1, 2)), "not contiguous"),
    "negative stride": ((FOUR, 3, (4,), (-1,)), "negative offset, size or stride"),
    "negative size": ((FOUR, 0, (-1,), (1,)), "negative offset, size or stride"),
    "negative offset": ((FOUR, -1, (1,), (1,)), "negative offset, size or stride"),
    "bool size": ((FOUR, 0, (True,), (1,)), "malformed tensor record"),
    "more than 2^31 elements": ((FOUR, 0, (2**20, 2**12), (2**12, 1)), "at most 2^31"),
    "overflowing size": ((FOUR, 0, (2**40, 2**40), (2**40, 1)), "at most 2^31"),
    "9 dimensions": ((FOUR, 0, (1,) * 9, (1,) * 9), "9 dimensions"),
}  # fmt: skip


@pytest.mark.filterwarnings("ignore:TypedStorage is deprecated")
@pytest.mark.parametrize("case", VIEWS)
def test_tensor_views_must_lie_inside_their_storage(
    tmp_path: Path, marker: Path, case: str
) -> None:
    """torch's set_ silently grows a storage to fit any view (uninitialised memory); the
    reader refuses views that are not contiguous, inside the storage and at most 2^31 long."""
    args, expected = VIEWS[case]
    g = of.official_generator()
    g.synthesis.b4.__dict__["_parameters"]["const"] = _view(*args)
    path = of.write_official_pickle(tmp_path / "view.pkl", G_ema=g)
    with pytest.raises(off.OfficialNetworkError) as err:
        off.import_official(path, *kwargs())
    assert expected in str(err.value) and str(path) in str(err.value), str(err.value)


@pytest.mark.filterwarnings("ignore:TypedStorage is deprecated")
def test_views_inside_a_storage_are_read(tmp_path: Path, marker: Path) -> None:
    """Contiguous views at an offset of a shared storage are fine (size-1 dims: any stride)."""
    data = torch.arange(10.0)
    g = of.official_generator()
    g.mapping.__dict__["_buffers"]["a"] = _view(data, 2, (2, 3), (3, 1))
    g.mapping.__dict__["_buffers"]["b"] = _view(data, 9, (1, 1), (7, 1))
    path = of.write_official_pickle(tmp_path / "views.pkl", G_ema=g)
    tensors = off.read_official_pickle(path).networks["G_ema"].tensors
    assert torch.equal(tensors["mapping.a"], torch.arange(2.0, 8.0).view(2, 3))
    assert torch.equal(tensors["mapping.b"], torch.tensor([[9.0]]))


def test_stride_zero_memory_bombs_are_refused_at_once(tmp_path: Path, marker: Path) -> None:
    """A 2^28-element fp16 parameter on a 2-byte storage (a ~200 KB file, 1 GiB as fp32), and a
    stride-0 fp32 affine weight the mapping used to materialise (8 GiB, 15 GB of memory)."""
    g1 = of.official_generator()
    g1.mapping.fc0._parameters["bomb"] = torch.nn.Parameter(
        _zero_stride((2**28,), torch.float16), requires_grad=False
    )
    g2 = of.official_generator()
    w = g2.synthesis.b4.conv1.affine.weight
    g2.synthesis.b4.conv1.affine._parameters["weight"] = torch.nn.Parameter(
        _zero_stride((w.shape[0], 2**26), torch.float32), requires_grad=False
    )
    for i, g in enumerate((g1, g2)):
        path = of.write_official_pickle(tmp_path / f"bomb{i}.pkl", G_ema=g)
        assert path.stat().st_size < 300_000
        start = time.perf_counter()
        with pytest.raises(off.OfficialNetworkError, match="not contiguous") as err:
            off.import_official(path, *kwargs())
        assert time.perf_counter() - start < 5 and str(path) in str(err.value)


def _laughs(depth: int, width: int = 10) -> list:
    x = [0] * width
    for _ in range(depth):
        x = [x] * width  # the same list, `width` times: width^(depth+1) values
    return x


class Node(of.Persistent):
    """A persistent module whose two children are one and the same module."""

    def __init__(self, child=None):
        super().__init__()
        if child is not None:
            self.a = self.b = child


def _dag(levels: int) -> Node:
    n = Node()
    for _ in range(levels):
        n = Node(n)
    return n


def test_exponential_structures_are_refused_quickly(tmp_path: Path, marker: Path) -> None:
    """10^7 attribute values from shared lists, 2^17 module paths from shared submodules:
    a few hundred bytes each in a file, refused in well under a second each."""
    cases = [("laughs", _laughs(6), "more than 200000 attribute values"),
             ("dag", _dag(17), "is the same module object as G_ema.mapping.dag.")]  # fmt: skip
    for name, value, expected in cases:
        g = of.official_generator()
        setattr(g.mapping, name, value)
        path = of.write_official_pickle(tmp_path / f"{name}.pkl", G_ema=g)
        start = time.perf_counter()
        with pytest.raises(off.OfficialNetworkError) as err:
            off.read_official_pickle(path)
        assert time.perf_counter() - start < 5
        assert expected in str(err.value) and str(path) in str(err.value), str(err.value)
    # Sharing that official files have is fine: G and G_ema the same object, a small list
    # referenced twice in the attributes (copied into each place).
    g = of.official_generator()
    g.synthesis.twice = [[1, 2]] * 2
    nets = off.read_official_pickle(of.write_official_pickle(tmp_path / "ok.pkl", G=g, G_ema=g))
    assert nets.networks["G"].attr("synthesis", "twice") == [[1, 2], [1, 2]]


def _self_list(g) -> None:
    loop: list = [1]
    loop.append(loop)
    g.mapping.loop = loop


def _self_dict(g) -> None:
    loop: dict = {}
    loop["me"] = loop
    g.mapping._init_kwargs["loop"] = loop


def _numpy_no_build(path: Path) -> None:
    """A numpy.ndarray made by NEWOBJ with no BUILD: the placeholder string replaced."""
    raw = path.read_bytes()
    i = raw.index(b"HALF_ARRAY_HERE") - 5  # BINUNICODE, 4-byte length, the string
    path.write_bytes(raw[:i] + b"cnumpy\nndarray\n)\x81" + raw[i + 20 :])


def _nested_module(g) -> None:
    top = g.mapping
    for i in range(40):
        child = Node()
        top._modules[f"n{i}"] = child
        top = child


MALFORMED = {
    "list inside itself": (_self_list, None,
                           "G_ema.mapping attribute 'loop'[1]: a list contains itself"),
    "dict inside itself": (_self_dict, None, "_init_kwargs['loop']['me']: a dict contains itself"),
    "module inside itself": (lambda g: g.mapping._modules.__setitem__("self", g.mapping), None,
                             "G_ema.mapping.self: is the same module object as G_ema.mapping"),
    "modules 41 deep": (_nested_module, None, "modules nested more than 32 deep"),
    "numpy NEWOBJ, no BUILD": (lambda g: None, _numpy_no_build, "NEWOBJ class argument must be"),
    "numpy array, no BUILD": (
        lambda g: setattr(g.mapping, "half", Record(np._core.multiarray._reconstruct,
                                                    (np.ndarray, (0,), b"b"))),
        None, "attribute 'half': a numpy array without its data"),
    "1-D fc0 weight": (lambda g: g.mapping.fc0._parameters.__setitem__(
        "weight", torch.nn.Parameter(torch.zeros(16))), None,
        "mapping.fc0.weight has shape (16,); an official FullyConnectedLayer weight is 2-D"),
    "0-d conv1 weight": (lambda g: g.synthesis.b8.conv1._parameters.__setitem__(
        "weight", torch.nn.Parameter(torch.zeros(()))), None,
        "synthesis.b8.conv1.weight has shape (); an official SynthesisLayer weight is 4-D"),
    "0-d D conv0 weight": (None, None, "b16.conv0.weight has shape (); an official Conv2dLayer"),
    "fc0 without weight": (lambda g: g.mapping.fc0._parameters.pop("weight"), None,
                           "the file has no tensor mapping.fc0.weight"),
    "toRGB weight of another shape": (lambda g: g.synthesis.b32.torgb._parameters.__setitem__(
        "weight", torch.nn.Parameter(torch.zeros(3, 8))), None,
        "synthesis.b32.torgb.weight has shape (3, 8); ours is (1, 8, 1, 1)"),
    "dotted parameter name": (lambda g: g.mapping._parameters.__setitem__(
        "fc0.weight", torch.nn.Parameter(torch.zeros(2))), None,
        "parameter name 'fc0.weight' is not a name"),
}  # fmt: skip


@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_files_raise_official_network_errors(
    tmp_path: Path, marker: Path, case: str
) -> None:
    """Cycles, half-built arrays, tensors of the wrong rank: no RecursionError, IndexError,
    KeyError or AttributeError, but an OfficialNetworkError naming the file and the fault."""
    change_g, change_file, expected = MALFORMED[case]
    g, d = of.official_generator(), of.official_discriminator()
    if change_g is not None:
        change_g(g)
    else:  # the D case
        d.b16.conv0._parameters["weight"] = torch.nn.Parameter(torch.zeros(()))
    tsk = {"x": "HALF_ARRAY_HERE"} if change_file else {}
    path = tmp_path / "bad.pkl"
    path.write_bytes(pickle.dumps({"G_ema": g, "D": d, "training_set_kwargs": tsk}, protocol=3))
    if change_file is not None:
        change_file(path)
    with pytest.raises(off.OfficialNetworkError) as err:
        off.import_official(path, *kwargs())
    assert expected in str(err.value) and str(path) in str(err.value), str(err.value)


def test_last_line_of_defence_keeps_the_original_error(
    tmp_path: Path, marker: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An error a check missed, escaping from code that trusted the file (reading or mapping
    it), still becomes an OfficialNetworkError naming the file, the original as __cause__."""
    path = of.write_official_pickle(tmp_path / "net.pkl", G_ema=of.official_generator())
    nets = off.read_official_pickle(path)
    errors = (RecursionError, AttributeError, IndexError, KeyError, TypeError, ValueError)
    steps = {(op, "_network"): lambda: off.read_official_pickle(path),
             (off, "_count"): lambda: off.official_to_project(nets, *kwargs())}  # fmt: skip
    for (module, name), step in steps.items():
        for error in errors:

            def fail(*args, error=error, **kw):
                raise error("the original")

            with monkeypatch.context() as mp:
                mp.setattr(module, name, fail)
                with pytest.raises(off.OfficialNetworkError) as err:
                    step()
            msg = str(err.value)
            assert "malformed official network file" in msg and "the original" in msg, msg
            assert str(path) in msg and type(err.value.__cause__) is error


def _reader_objects() -> dict:
    """Everything of the reader's that a pickle could reach through find_class: the functions
    and classes behind the allowed globals, with their attributes."""
    out = {}
    for key, target in op._ALLOWED.items():
        for obj in (target, getattr(target, "fn", None)):
            if obj is None:
                continue
            attrs = {k: getattr(obj, k, None) for k in ("__defaults__", "__kwdefaults__",
                                                         "__code__", "__dict__")}  # fmt: skip
            if isinstance(obj, type):
                attrs["vars"] = dict(vars(obj))
            out[key, type(obj).__name__] = {k: dict(v) if isinstance(v, dict | type(vars(object)))
                                            else v for k, v in attrs.items()}  # fmt: skip
    return out


def _s(text: str) -> bytes:  # BINUNICODE
    return b"X" + len(text.encode()).to_bytes(4, "little") + text.encode()


BUILDS = {
    "on the tensor rebuild function (its __defaults__)": (
        b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\nN}" + _s("__defaults__")
        + b"(K\x01K\x02ts\x86b0}.", "BUILD on an allowed global"),
    "on the EasyDict stand-in class": (
        b"\x80\x02cdnnlib.util\nEasyDict\nN}" + _s("injected") + _s("by the file")
        + b"s\x86b0}.", "BUILD on a dict"),
    "on an OrderedDict": (
        b"\x80\x02ccollections\nOrderedDict\n)R}" + _s("x") + b"K\x01sb.", "BUILD on a dict"),
    "twice on a numpy dtype": (
        b"\x80\x02cnumpy\ndtype\n" + _s("f8") + b"\x89\x88\x87R(K\x03" + _s("<")
        + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tq\x00bh\x00b.", "second pickle BUILD"),
}  # fmt: skip


def test_build_cannot_change_the_readers_objects(tmp_path: Path, marker: Path) -> None:
    """A pickle's BUILD sets attributes on whatever is on its stack: before, a file could set
    `_rebuild_tensor.__defaults__` or `_PlainDict.injected` for the rest of the process."""
    before = _reader_objects()
    for case, (raw, expected) in BUILDS.items():
        path = tmp_path / "build.pkl"
        path.write_bytes(raw)
        with pytest.raises(off.OfficialNetworkError, match=expected) as err:
            off.read_official_pickle(path)
        assert str(path) in str(err.value), case
        assert _reader_objects() == before, case
    assert op._rebuild_tensor.__defaults__ == (False, None, None)
    assert not hasattr(op._PlainDict, "injected")
    nets = off.read_official_pickle(standard_file(tmp_path)[0])  # still reads official files
    assert set(nets.networks) == {"G", "D", "G_ema"}


@pytest.mark.filterwarnings("ignore:TypedStorage is deprecated")
def test_build_on_a_tensor_cannot_resize_it(tmp_path: Path, marker: Path) -> None:
    """BUILD on a bare tensor runs Tensor.__setstate__, an unchecked set_(storage, offset,
    size, stride): a 1-element storage viewed as 64 elements of uninitialised memory."""
    st = torch.zeros(1).storage()
    grow = Record(torch._utils._rebuild_tensor_v2, (st, 0, (1,), (1,), False, OrderedDict()),
                  (st, 0, (64,), (1,)))  # fmt: skip
    g = of.official_generator()
    g.synthesis.b4.__dict__["_parameters"]["const"] = grow
    path = of.write_official_pickle(tmp_path / "grow.pkl", G_ema=g)
    with pytest.raises(off.OfficialNetworkError, match="BUILD on a tensor"):
        off.read_official_pickle(path)


def _fill(name: str, value: float):
    """Fill the parameter or buffer `name` of a stand-in network with `value`."""

    def change(g) -> None:
        module, leaf = name.rsplit(".", 1)
        layer = g.get_submodule(module)
        t = layer._parameters.get(leaf)
        with torch.no_grad():
            (layer._buffers[leaf] if t is None else t).fill_(value)

    return change


NON_FINITE = {
    "NaN weight": (_fill("mapping.fc0.weight", float("nan")),
                   "G_ema tensor mapping.fc0.weight (a parameter) holds 256 non-finite"),
    "inf const": (_fill("synthesis.b4.const", float("inf")),
                  "G_ema tensor synthesis.b4.const (a parameter) holds 512 non-finite"),
    "-inf buffer": (_fill("synthesis.b8.conv1.noise_const", -float("inf")),
                    "G_ema tensor synthesis.b8.conv1.noise_const (a buffer) holds 64"),
    "NaN weight_gain": (lambda g: setattr(g.mapping.fc0, "weight_gain", float("nan")),
                        "mapping.fc0.weight_gain is nan: not a finite, nonzero gain"),
    "inf bias_gain": (lambda g: setattr(g.synthesis.b8.torgb.affine, "bias_gain", np.inf),
                      "synthesis.b8.torgb.affine.bias_gain is inf: not a finite, nonzero gain"),
}  # fmt: skip


@pytest.mark.parametrize("case", NON_FINITE)
def test_non_finite_weights_and_gains_are_refused(tmp_path: Path, marker: Path, case: str) -> None:
    change, expected = NON_FINITE[case]
    g = of.official_generator()
    change(g)
    path = of.write_official_pickle(tmp_path / "nan.pkl", G_ema=g)
    with pytest.raises(off.OfficialNetworkError) as err:
        off.import_official(path, *kwargs())
    msg = str(err.value)
    assert expected in msg and str(path) in msg, msg
    assert "missing" not in msg  # the consequence of a bad gain is not listed again


FILES_PEOPLE_GIVE = {
    "photo.png": (b"\x89PNG\r\n\x1a\n" + b"\0" * 64, "it looks like a PNG image"),
    "photo.jpg": (b"\xff\xd8\xff\xe0\0\x10JFIF" + b"\0" * 32, "it looks like a JPEG image"),
    "download.pkl": (b"<!DOCTYPE html>\n<html><body>Sign in</body></html>", "an HTML/XML page"),
    "lfs.pkl": (b"version https://git-lfs.github.com/spec/v1\noid sha256:ab\nsize 1\n",
                "a Git LFS pointer, not the file itself"),
    "net.pkl.gz": (b"\x1f\x8b\x08\x00" + b"\0" * 16, "gzip-compressed file (decompress it"),
    "empty.pkl": (b"", "an empty file (a failed download?)"),
    "notes.txt": (b"weights: see the paper\n", "it looks like a text file"),
    "old.pkl": (pickle.dumps({"G": 1}, protocol=0), "a pickle of protocol 0 or 1"),
}  # fmt: skip


def test_files_people_give_are_named_for_what_they_are(tmp_path: Path, marker: Path) -> None:
    for name, (raw, expected) in FILES_PEOPLE_GIVE.items():
        path = tmp_path / name
        path.write_bytes(raw)
        assert not off.is_official_pickle(path)
        with pytest.raises(off.OfficialNetworkError) as err:
            off.read_official_pickle(path)
        msg = str(err.value)
        assert expected in msg and str(path) in msg and "persistent id" not in msg, msg
        assert "PROTO opcode 0x80 and protocol 2-5" in msg
    folder = tmp_path / "net.pkl"
    folder.mkdir()
    with pytest.raises(IsADirectoryError, match="is a directory"):
        off.read_official_pickle(folder)
    (tmp_path / "link.pkl").symlink_to(tmp_path / "gone.pkl")
    with pytest.raises(FileNotFoundError, match="broken symbolic link"):
        off.read_official_pickle(tmp_path / "link.pkl")


ATTRIBUTE_TYPES = {
    "img_resolution a list": (lambda g: setattr(g, "img_resolution", [32]),
                              "img_resolution attribute is [32] (list), not a whole number"),
    "img_channels a string": (lambda g: setattr(g, "img_channels", "1"),
                              "img_channels attribute is '1' (str), not a whole number"),
    "c_dim a float": (lambda g: setattr(g, "c_dim", 0.5), "c_dim attribute is 0.5 (float)"),
    "huge resolution": (lambda g: setattr(g, "img_resolution", 10**5000),
                        "img_resolution attribute is <an int of 16610 bits>"),
    "init kwarg a string": (lambda g: g._init_kwargs["mapping_kwargs"].__setitem__(
        "num_layers", "2"), "_init_kwargs mapping_kwargs.num_layers is '2' (str), not a whole"),
    "init kwargs not a dict": (lambda g: g._init_kwargs.__setitem__("synthesis_kwargs", [1]),
                               "_init_kwargs synthesis_kwargs is a list, not a dict"),
    "conv_clamp a string": (lambda g: g._init_kwargs["synthesis_kwargs"].__setitem__(
        "conv_clamp", "256"), "_init_kwargs synthesis_kwargs.conv_clamp is '256', not a"),
}  # fmt: skip


@pytest.mark.parametrize("case", ATTRIBUTE_TYPES)
def test_attribute_and_init_kwarg_types_are_checked(
    tmp_path: Path, marker: Path, case: str
) -> None:
    """`img_resolution: [32]` used to end in "set ...resolution: [32]"; now the value is named
    as not what an official network holds."""
    change, expected = ATTRIBUTE_TYPES[case]
    g = of.official_generator()
    change(g)
    path = of.write_official_pickle(tmp_path / "types.pkl", G_ema=g)
    with pytest.raises(off.OfficialNetworkError) as err:
        off.import_official(path, *kwargs())
    msg = str(err.value)
    assert expected in msg and str(path) in msg and "settings.resolution: [" not in msg, msg


@pytest.mark.parametrize(
    ("stream", "message"),
    [
        # 7 bytes asking CPython's unpickler for a 16 GiB memo, zero-filled
        (b"\x80\x04Nr" + (2**31).to_bytes(4, "little") + b".", "memo index 2147483648"),
        (b"\x80\x05\x96" + (3).to_bytes(8, "little") + b"abc.", r"BYTEARRAY8 \(protocol 5"),
        (b"\x80\x04\x8e" + (2**40).to_bytes(8, "little") + b"ab", "malformed pickle stream"),
    ],
)
def test_pickles_that_would_make_the_unpickler_allocate_are_refused_first(
    tmp_path: Path, stream: bytes, message: str
) -> None:
    """Checked opcode by opcode before the unpickler sees the file (cxrlib.pickle_scan)."""
    path = tmp_path / "net.pkl"
    path.write_bytes(stream)
    with pytest.raises(op.OfficialNetworkError, match=message):
        op.read_official_pickle(path)


def _shared_tuple_key(levels: int) -> bytes:
    """A dict whose key is t = (t, t) nested `levels` deep through memo references: a few
    hundred bytes that the C unpickler would hash, 2^levels tuple visits, as it sets the key."""
    out = b"\x80\x04}" + b"N\x85q\x000"  # {}; t0 = (None,) into memo 0, popped
    for i in range(levels):  # t(i+1) = (t(i), t(i)) into memo i + 1, popped but the last
        out += b"h" + bytes([i]) + b"h" + bytes([i]) + b"\x86q" + bytes([i + 1])
        out += b"0" if i < levels - 1 else b""
    return out + b"K\x01s."  # {t: 1}


def test_a_shared_tuple_key_that_would_take_forever_to_hash_is_refused_first(
    tmp_path: Path,
) -> None:
    path = tmp_path / "net.pkl"
    path.write_bytes(_shared_tuple_key(60))
    started = time.perf_counter()
    with pytest.raises(
        op.OfficialNetworkError, match=r"a tuple nested \d+ deep or expanding to \d+ entries"
    ):
        op.read_official_pickle(path)
    assert time.perf_counter() - started < 5  # refused at the scan, never hashed
    # the same structure, small, is only refused later (not a network pickle at all)
    assert pickle.loads(_shared_tuple_key(3))
    path.write_bytes(_shared_tuple_key(3))
    with pytest.raises(op.OfficialNetworkError) as small:
        op.read_official_pickle(path)
    assert "expanding" not in str(small.value)


def _deep_tuple_key(depth: int) -> bytes:
    """{((((),),),...): None}: a key the C unpickler hashes by recursion, `depth` deep."""
    return b"\x80\x02}" + b")" + b"\x85" * depth + b"Ns."


def _repeated_key_set(repeats: int) -> bytes:
    """A set holding one memoised tuple of 2^19 shared entries `repeats` times: each
    insertion hashes it again (tuple hashes are not cached)."""
    big = b")" + b"2\x86" * 19  # () then (t, t) nineteen times, each a new tuple
    return b"\x80\x04" + big + b"r\x00\x00\x00\x000" + b"\x8f(" + b"h\x00" * repeats + b"\x90."


def _colliding_int_keys(n: int) -> bytes:
    """A dict of `n` int keys k * (2^61 - 1), all of which hash to 0 in CPython."""
    out = b"\x80\x02}("
    for k in range(1, n + 1):
        value = (k * (2**61 - 1)).to_bytes(10, "little", signed=True)
        out += b"\x8a" + bytes([len(value)]) + value + b"N"
    return out + b"u."


@pytest.mark.parametrize(
    ("stream", "message"),
    [
        (_deep_tuple_key(200_000), r"a tuple nested 101 deep"),  # crashed the process
        (_repeated_key_set(100), r"take over \d+ steps to hash"),
        (_colliding_int_keys(20_000), r"over 10000 dict keys or set members that are not"),
    ],
    ids=["deep", "repeated", "colliding"],
)
def test_keys_that_would_take_the_unpickler_long_or_crash_it_are_refused_first(
    tmp_path: Path, stream: bytes, message: str
) -> None:
    """Found in a break-it review: each made read_official_pickle crash or run for minutes."""
    path = tmp_path / "net.pkl"
    path.write_bytes(stream)
    started = time.perf_counter()
    with pytest.raises(op.OfficialNetworkError, match=message):
        op.read_official_pickle(path)
    assert time.perf_counter() - started < 10


def test_the_scan_passes_plain_pickles_of_every_protocol() -> None:
    """Shared and nested plain data as pickle writes it (protocols 2-4; what torch.save and
    the official code write) is never refused by the scan."""
    import io

    from cxrlib.pickle_scan import scan_pickle

    shared = ("a", 1, 2.0)
    data = {"t": (shared, shared, ((shared,),)), "l": [shared] * 50, "s": frozenset(range(100)),
            "d": {i: (i, str(i)) for i in range(2000)}, "n": None, "b": b"x" * 1000}  # fmt: skip
    for protocol in (2, 3, 4):
        scan_pickle(io.BytesIO(pickle.dumps(data, protocol=protocol)))
