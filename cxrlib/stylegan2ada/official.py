"""Official StyleGAN2-ADA / StyleGAN3 networks mapped onto this project's Generator and
Discriminator; the files are read by `cxrlib.stylegan2ada.official_pickle` (no code from them runs).

Mapping onto `cxrlib.stylegan2ada.networks` (same function, checked in tests/test_official_import.py
against a re-implementation of the official layer formulas):

| official (dotted name)                  | ours                              | conversion     |
|-----------------------------------------|-----------------------------------|----------------|
| mapping.fc{i}.{weight,bias}             | mapping.layers.{i}.*              | eq.-lr rescale |
| mapping.w_avg                           | mapping.w_avg                     | copy           |
| synthesis.b{r}.const                    | synthesis.blocks.b{r}.const       | copy           |
| synthesis.b{r}.conv{0,1}.affine.*       | synthesis.blocks.b{r}.conv*.affine| rescale        |
| synthesis.b{r}.conv0.weight             | synthesis.blocks.b{r}.conv0.weight| flipped (H, W) |
| ...conv{0,1}.{bias,noise_strength,noise_const}, conv1.weight | same names   | copy           |
| synthesis.b{r}.torgb.*                  | synthesis.blocks.b{r}.torgb.*     | rescale; luma  |
| b{r}.{fromrgb,conv0,conv1,skip}.*       | blocks.b{r}.*                     | rescale; sum   |
| b4.conv.*, b4.fc.*, b4.out.*            | conv.*, fc.*, out.*               | rescale        |
| every resample_filter buffer            | (fixed [1,3,3,1], not stored)     | checked        |

Equalised learning rate: both store raw parameters and multiply at run time, so every tensor
is converted as  ours = official * official_gain / our_gain  (gains read from the file's
`weight_gain` / `bias_gain` attributes and from our modules); with the official defaults the
factor is 1 everywhere (FullyConnectedLayer: weight randn/lr_mul, gain lr_mul/sqrt(in), bias
gain lr_mul; Conv2dLayer and ToRGB: 1/sqrt(in k^2); modulated 3x3 convs: demodulated, no gain).
The up-sampling conv0 kernels are flipped because the official layer convolves (its
`flip_weight = up == 1`) where ours correlates.

Refused, naming the difference: StyleGAN3 generators (Fourier input, alias-free layers),
conditional networks (c_dim > 0), G architectures other than 'skip' and D other than
'resnet', activations other than lrelu, missing noise inputs, other resampling filters, other
minibatch-std channel counts; and any size mismatch with the run (resolution, z/w dims,
mapping depth, per-resolution widths), naming the `stylegan2ada.settings` keys to change.
Malformed files are refused too, naming the tensor or attribute: a tensor of the wrong rank or
shape (checked before anything is computed from it), a missing, non-finite or zero gain, sizes
and constructor arguments that are not whole numbers; an error that escapes these checks
still becomes an OfficialNetworkError naming the file (`official_checks.refuse_malformed`).
Kept but noted: minibatch-std grouping (official: samples i, i+n, ...; ours: consecutive),
clamping (official: every conv output to +-256; ours: bfloat16 layers only).

Why one module of about 600 lines: the mapping table above is the contract, and every
refusal it lists is checked beside the tensor it concerns.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, NamedTuple

import torch

from cxrlib.stylegan2ada.networks import Discriminator, Generator, channels_at
from cxrlib.stylegan2ada.official_checks import (
    finite_number,
    init_kwargs_problems,
    refuse_malformed,
    short,
    whole_number,
)
from cxrlib.stylegan2ada.official_pickle import (
    SETTINGS,
    OfficialNetwork,
    OfficialNetworkError,
    OfficialNetworks,
    is_official_pickle,
    read_official_pickle,
)

LUMA_BT601 = (0.299, 0.587, 0.114)  # ITU-R BT.601 luma weights of R, G, B
_FIR_2D = torch.outer(torch.tensor([1.0, 3.0, 3.0, 1.0]), torch.tensor([1.0, 3.0, 3.0, 1.0])) / 64

__all__ = [
    "OfficialNetworkError",
    "ProjectNetworks",
    "import_official",
    "is_official_pickle",
    "official_to_project",
    "read_official_pickle",
]


class ProjectNetworks(NamedTuple):
    """State dicts for this project's Generator / Discriminator (load_state_dict, strict)."""

    G: dict[str, torch.Tensor]
    G_ema: dict[str, torch.Tensor]
    D: dict[str, torch.Tensor] | None  # None when the file holds no D
    notes: list[str]  # human-readable: what was converted and what differs; log them


# --------------------------------------------------------------------------------------------
# Mapping onto this project's networks.


_REQUIRED = object()  # _Mapper.whole: no default


class _Mapper:
    """Builds one of our state dicts from an official network, collecting problems (size
    mismatches, architecture differences) so that all are reported at once."""

    def __init__(self, net: OfficialNetwork, ours: torch.nn.Module, problems: list[str]):
        self.net, self.ours, self.problems = net, ours, problems
        self.start = len(problems)  # problems of other networks, found before
        self.modules = dict(ours.named_modules())
        self.ours_shapes = {k: v.shape for k, v in ours.state_dict().items()}
        self.out: dict[str, torch.Tensor] = {}
        self.used: set[str] = set()  # the file's tensors consumed so far

    def problem(self, text: str) -> None:
        self.problems.append(f"{self.net.name}: {text}")

    def get(self, name: str, shape: tuple[int, ...] | None = None) -> torch.Tensor | None:
        """The file's tensor `name`; None (and a problem) when absent or, given `shape`, of
        another shape: nothing is computed from a tensor of the wrong shape."""
        t = self.net.tensors.get(name)
        self.used.add(name)
        if t is None:
            self.problem(f"the file has no tensor {name} (a layer our network has)")
        elif shape is not None and tuple(t.shape) != tuple(shape):
            self.problem(f"{name} has shape {tuple(t.shape)}; ours is {tuple(shape)}")
            return None
        return t

    def shape(self, name: str) -> tuple[int, ...]:
        """The shape of our state-dict entry `name`."""
        return tuple(self.ours_shapes[name])

    def dims(self, name: str, ndim: int, what: str) -> tuple[int, ...] | None:
        """The shape of the file's tensor `name` when it has `ndim` dimensions, as the
        official `what` has; else None and a problem (read before the sizes are compared)."""
        t = self.net.tensors.get(name)
        if t is None:
            self.problem(f"the file has no tensor {name} (a layer our network has)")
            return None
        if t.ndim != ndim or 0 in t.shape:
            self.problem(
                f"{name} has shape {tuple(t.shape)}; an official {what} is {ndim}-D and "
                "not empty: a malformed or altered file"
            )
            return None
        return tuple(t.shape)

    def gain(self, layer: str, key: str) -> float | None:
        g = self.net.attr(layer, key)
        if not isinstance(g, int | float) or isinstance(g, bool):
            self.problem(f"{layer} has no numeric {key} attribute (not the official layer)")
            return None
        if not finite_number(g) or g == 0:
            self.problem(f"{layer}.{key} is {short(g)}: not a finite, nonzero gain")
            return None
        return float(g)

    def whole(self, layer: str, key: str, low: int, high: int, default: Any = _REQUIRED) -> Any:
        """Attribute `key` of `layer` when it is a whole number in [low, high] (None too when
        that is the default); the default when absent. Else None and a problem naming it."""
        v = self.net.attr(layer, key, _REQUIRED)
        if v is _REQUIRED and default is not _REQUIRED:
            return default
        if whole_number(v, low, high) or (v is None and default is None):
            return v
        self.problem(
            f"{layer or 'the network'}'s {key} attribute is "
            + ("missing" if v is _REQUIRED else f"{short(v)} ({type(v).__name__})")
            + f", not a whole number in [{low}, {high}]: not an official network"
        )
        return None

    def check_activation(self, layer: str, expected: str) -> None:
        act = self.net.attr(layer, "activation", expected)
        if act != expected:
            self.problem(f"{layer} uses activation {short(act)}; ours uses {expected!r}")

    def check_filter(self, layer: str) -> None:
        f = self.net.tensors.get(f"{layer}.resample_filter")
        self.used.add(f"{layer}.resample_filter")
        if f is not None and (f.shape != _FIR_2D.shape or not torch.allclose(f, _FIR_2D)):
            self.problem(f"{layer}.resample_filter is not the [1, 3, 3, 1] filter ours uses")

    def put(self, ours: str, value: torch.Tensor | None) -> None:
        if value is not None:
            self.out[ours] = value.detach().float().contiguous().clone()

    def dense(self, src: str, dst: str, activation: str) -> None:
        """FullyConnectedLayer -> EqualLinear: effective W = weight * weight_gain, b = bias *
        bias_gain on both sides, so ours = official * gain_official / gain_ours."""
        self.check_activation(src, activation)
        mine = self.modules[dst]
        w = self.get(f"{src}.weight", self.shape(f"{dst}.weight"))
        b = self.get(f"{src}.bias", self.shape(f"{dst}.bias"))
        wg, bg = self.gain(src, "weight_gain"), self.gain(src, "bias_gain")
        if w is not None and wg is not None:
            self.put(f"{dst}.weight", w * (wg / mine.weight_gain))
        if b is not None and bg is not None:
            self.put(f"{dst}.bias", b * (bg / mine.bias_gain))

    def conv(self, src: str, dst: str, activation: str, rgb_sum: bool = False) -> None:
        """Conv2dLayer -> EqualConv2d: W * weight_gain on both sides, bias added raw;
        `rgb_sum`: fromRGB weights summed over the input channels (gray repeated to RGB)."""
        self.check_activation(src, activation)
        self.check_filter(src)
        mine = self.modules[dst]
        shape = self.shape(f"{dst}.weight")
        if rgb_sum:  # the file's RGB input channels
            shape = (shape[0], 3, *shape[2:])
        w, wg = self.get(f"{src}.weight", shape), self.gain(src, "weight_gain")
        if w is not None and wg is not None:
            eff = w * wg
            if rgb_sum:
                eff = eff.sum(dim=1, keepdim=True)
            self.put(f"{dst}.weight", eff / mine.weight_gain)
        if mine.bias is not None:
            self.put(f"{dst}.bias", self.get(f"{src}.bias", self.shape(f"{dst}.bias")))

    def check_complete(self) -> None:
        """Every tensor of the file used (else it has a layer we lack), every tensor of ours
        filled with the right shape (after the friendly checks, a failure here is a variant
        of the format this module does not know). Tensors left out because of a problem
        already named are not listed again as missing."""
        unused = sorted(set(self.net.tensors) - self.used)
        if unused:
            self.problem(
                f"has tensors of layers our network lacks: {', '.join(unused[:8])}"
                + (f" and {len(unused) - 8} more" if len(unused) > 8 else "")
            )
        expected = self.ours.state_dict()
        missing = sorted(set(expected) - set(self.out))
        if len(self.problems) > self.start:
            missing = []  # explained by the problems named (a wrong shape, a bad gain)
        extra = sorted(set(self.out) - set(expected))
        wrong = [
            f"{k} {tuple(self.out[k].shape)} vs ours {tuple(v.shape)}"
            for k, v in expected.items()
            if k in self.out and self.out[k].shape != v.shape
        ]
        if missing or extra or wrong:
            self.problem(
                "tensors do not fit our network: "
                + "; ".join(
                    [f"missing {', '.join(missing[:6])}"] * bool(missing)
                    + [f"unexpected {', '.join(extra[:6])}"] * bool(extra)
                    + wrong[:6]
                )
            )


def _meta_model(cls: type[torch.nn.Module], kwargs: Mapping[str, Any]) -> torch.nn.Module:
    """Our network built on the meta device: names, shapes and gains without memory."""
    with torch.device("meta"):
        return cls(**kwargs)


def _count(names: Any, prefix: str) -> list[int]:
    """Sorted integers i of names '{prefix}{i}.' (e.g. mapping layers 'mapping.fc{i}.')."""
    found = set()
    for n in names:
        if n.startswith(prefix):
            head = n[len(prefix) :].split(".", 1)[0]
            if head.isascii() and head.isdigit() and len(head) <= 6:
                found.add(int(head))
    return sorted(found)


def _file_channel_settings(net: OfficialNetwork, widths: dict[int, int]) -> str:
    """The channel_base / channel_max the file was made with, as settings lines."""
    kw = net.init_kwargs
    src = kw.get("synthesis_kwargs") if isinstance(kw.get("synthesis_kwargs"), dict) else kw
    base, cmax = src.get("channel_base", kw.get("channel_base")), src.get("channel_max")
    if not isinstance(base, int) or not isinstance(cmax, int):
        cmax = max(widths.values(), default=0)
        # min(base // r, cmax) = c < cmax means base >= c r: the largest such bound.
        base = max((c * r for r, c in widths.items() if c < cmax), default=None)
        if base is not None and any(channels_at(r, base, cmax) != c for r, c in widths.items()):
            base = None
    if base is None:
        return f"{SETTINGS}.channel_max: {cmax} (channel_base: see the file's widths)"
    return f"{SETTINGS}.channel_base: {base}, {SETTINGS}.channel_max: {cmax}"


def _check_resolution(m: _Mapper, run: int) -> None:
    res_file = m.whole("", "img_resolution", 4, 2**16)
    if res_file is not None and res_file != run:
        m.problem(
            f"resolution: file {res_file} px, run {run} -> set {SETTINGS}.resolution: {res_file}"
        )


def _widths(m: _Mapper, weights: dict[int, str], what: str) -> dict[int, int]:
    """Resolution -> output channels of the named 4-D conv weights present in the file."""
    shapes = {
        r: m.dims(name, 4, f"{what} weight") for r, name in weights.items() if name in m.net.tensors
    }
    return {r: s[0] for r, s in shapes.items() if s is not None}


def _check_widths(mapper: _Mapper, widths: dict[int, int], base: int, cmax: int) -> bool:
    wrong = [
        f"{r} px: file {c}, run {channels_at(r, base, cmax)}"
        for r, c in sorted(widths.items())
        if channels_at(r, base, cmax) != c
    ]
    if wrong:
        mapper.problem(
            f"widths (feature maps per resolution) differ ({'; '.join(wrong)}) -> set "
            f"{_file_channel_settings(mapper.net, widths)}"
        )
    return not wrong


def _image_channels(mapper: _Mapper, file_channels: Any, run_channels: int) -> bool:
    """True when RGB must be folded into one channel; a 1 -> 3 channel import is refused."""
    if file_channels is None:  # absent or not a number: already a problem
        return False
    if file_channels == run_channels:
        return False
    if file_channels == 3 and run_channels == 1:
        return True
    mapper.problem(
        f"{file_channels}-channel images in the file, {run_channels} in the run -> set "
        f"{SETTINGS}.channels: {file_channels}"
    )
    return False


def generator_to_project(
    net: OfficialNetwork, generator_kwargs: Mapping[str, Any]
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """An official StyleGAN2(-ADA) Generator as a state dict for
    `Generator(**generator_kwargs)`, and notes. Raises OfficialNetworkError listing every
    mismatch (with the settings to change) or architecture difference."""
    problems: list[str] = []
    with refuse_malformed(net.source, f"mapping its {net.name}"):
        state, notes = _map_generator(net, generator_kwargs, problems)
    if state is None:
        raise _refusal(net.source, problems)
    return state, notes


def discriminator_to_project(
    net: OfficialNetwork, discriminator_kwargs: Mapping[str, Any]
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """An official StyleGAN2(-ADA) Discriminator (also StyleGAN3's, the same network) as a
    state dict for `Discriminator(**discriminator_kwargs)`, and notes. Raises
    OfficialNetworkError listing every mismatch or architecture difference."""
    problems: list[str] = []
    with refuse_malformed(net.source, f"mapping its {net.name}"):
        state, notes = _map_discriminator(net, discriminator_kwargs, problems)
    if state is None:
        raise _refusal(net.source, problems)
    return state, notes


def official_to_project(
    networks: OfficialNetworks,
    generator_kwargs: Mapping[str, Any],
    discriminator_kwargs: Mapping[str, Any],
    g_start: Literal["G_ema", "G"] = "G_ema",
) -> ProjectNetworks:
    """Map an official pickle's networks onto `Generator(**generator_kwargs)` and
    `Discriminator(**discriminator_kwargs)` (e.g. StyleGanSettings.generator_kwargs()).

    The file's G_ema becomes our G_ema and, with g_start='G_ema', also G's starting point;
    g_start='G' starts G from the file's training G instead (what the official `--resume`
    does). D is None when the file has none. Raises OfficialNetworkError naming the file and
    every mismatch of every network at once.
    """
    nets = networks.networks
    ema_src = "G_ema" if "G_ema" in nets else "G"
    if ema_src not in nets:
        raise OfficialNetworkError(f"{networks.path}: holds no generator (G_ema or G)")
    g_src = g_start if g_start in nets else ema_src
    problems: list[str] = []
    with refuse_malformed(networks.path, "mapping its networks"):
        g_ema, g_notes = _map_generator(nets[ema_src], generator_kwargs, problems)
        g = g_ema
        if g_src != ema_src:
            g, _ = _map_generator(nets[g_src], generator_kwargs, problems)
        d, d_notes = None, []
        if "D" in nets:
            d, d_notes = _map_discriminator(nets["D"], discriminator_kwargs, problems)
    if problems:
        raise _refusal(networks.path, problems)
    assert g is not None and g_ema is not None
    notes = [
        f"official networks from {networks.path.name}: {ema_src} -> G_ema, {g_src} -> G"
        + (", D -> D" if d is not None else "; the file has no D: D starts fresh"),
        *g_notes,
        *d_notes,
    ]
    g = {k: v.clone() for k, v in g.items()} if g is g_ema else g
    return ProjectNetworks(g, g_ema, d, notes)


def import_official(
    path: str | Path,
    generator_kwargs: Mapping[str, Any],
    discriminator_kwargs: Mapping[str, Any],
    g_start: Literal["G_ema", "G"] = "G_ema",
) -> ProjectNetworks:
    """read_official_pickle + official_to_project: the trainer's one call."""
    return official_to_project(
        read_official_pickle(path), generator_kwargs, discriminator_kwargs, g_start
    )


def _refusal(path: Path, problems: list[str]) -> OfficialNetworkError:
    return OfficialNetworkError(
        f"{path}: cannot start this run from these official networks:\n  - "
        + "\n  - ".join(problems)
        + "\nChange the settings named above (config.yaml) or use a file that matches; "
        "architecture differences cannot be mapped exactly."
    )


def _map_generator(
    net: OfficialNetwork, generator_kwargs: Mapping[str, Any], problems: list[str]
) -> tuple[dict[str, torch.Tensor] | None, list[str]]:
    """generator_to_project, appending to `problems`; None when any were found."""
    before = len(problems)
    ours = _meta_model(Generator, generator_kwargs)
    assert isinstance(ours, Generator)
    m = _Mapper(net, ours, problems)
    names = set(net.tensors)
    if net.class_name != "Generator":
        m.problem(f"is a {net.class_name}, not an official Generator")
    if "synthesis.input" in net.layers or any(
        lay.class_name == "SynthesisInput" for lay in net.layers.values()
    ):
        m.problem(
            "is a StyleGAN3 (alias-free) generator: Fourier-feature input and L*_ layers with "
            "filtered nonlinearities, no 4x4 constant or b{res} blocks; our Generator is "
            "StyleGAN2's, so no exact mapping exists (its D, StyleGAN2's, can still be mapped "
            "with discriminator_to_project)"
        )
        return None, []
    for text in init_kwargs_problems(net.init_kwargs):
        m.problem(text)
    _check_resolution(m, ours.resolution)
    c_dim = m.whole("", "c_dim", 0, 2**24, default=0)
    if c_dim or "mapping.embed" in net.layers:
        m.problem(f"is conditional (c_dim {c_dim}, a label embedding); ours is unconditional")
    fcs = _count(names, "mapping.fc")
    if len(fcs) != len(ours.mapping.layers):
        m.problem(
            f"mapping depth: file {len(fcs)} layers, run {len(ours.mapping.layers)} -> set "
            f"{SETTINGS}.mapping_layers: {len(fcs)}"
        )
    fc_shapes = [m.dims(f"mapping.fc{i}.weight", 2, "FullyConnectedLayer weight") for i in fcs]
    if fcs and None not in fc_shapes:
        z_file, w_file = fc_shapes[0][1], fc_shapes[-1][0]  # type: ignore[index]
        dims = (("z_dim", z_file, ours.z_dim), ("w_dim", w_file, ours.mapping.w_dim))
        for key, f_val, r_val in dims:
            if f_val != r_val:
                m.problem(f"{key}: file {f_val}, run {r_val} -> set {SETTINGS}.{key}: {f_val}")
        hidden = {s[0] for s in fc_shapes}  # type: ignore[index]
        if len(hidden) > 1:
            m.problem(f"mapping layer widths {sorted(hidden)} differ from w_dim; ours uses w_dim")
    blocks = _count(names, "synthesis.b")
    widths = _widths(m, {r: f"synthesis.b{r}.conv1.weight" for r in blocks}, "SynthesisLayer")
    kw = ours.init_kwargs
    _check_widths(m, widths, kw["channel_base"], kw["channel_max"])
    to_gray = _image_channels(m, m.whole("", "img_channels", 1, 4096), ours.channels)
    for r in blocks:
        arch = net.attr(f"synthesis.b{r}", "architecture", "skip")
        if arch != "skip":
            m.problem(f"synthesis.b{r} architecture {short(arch)}; our Generator is 'skip' only")
            break
    if len(problems) > before:
        return None, []

    for i in range(len(ours.mapping.layers)):
        m.dense(f"mapping.fc{i}", f"mapping.layers.{i}", "lrelu")
    m.put("mapping.w_avg", m.get("mapping.w_avg", m.shape("mapping.w_avg")))
    for r in ours.synthesis.resolutions:
        src, dst = f"synthesis.b{r}", f"synthesis.blocks.b{r}"
        m.check_filter(src)
        if r == 4:
            m.put(f"{dst}.const", m.get(f"{src}.const", m.shape(f"{dst}.const")))
        for conv in ("conv0", "conv1") if r > 4 else ("conv1",):
            s, d = f"{src}.{conv}", f"{dst}.{conv}"
            m.check_activation(s, "lrelu")
            m.check_filter(s)
            m.dense(f"{s}.affine", f"{d}.affine", "linear")
            w = m.get(f"{s}.weight", m.shape(f"{d}.weight"))
            # The official up-sampling layer convolves (its flip_weight = up == 1); ours
            # correlates, so its kernels are flipped. Demodulated: no weight gain either side.
            if w is not None and conv == "conv0":
                w = w.flip([2, 3])
            m.put(f"{d}.weight", w)
            for name in ("bias", "noise_strength", "noise_const"):
                m.put(f"{d}.{name}", m.get(f"{s}.{name}", m.shape(f"{d}.{name}")))
        s, d = f"{src}.torgb", f"{dst}.torgb"
        m.dense(f"{s}.affine", f"{d}.affine", "linear")
        w_shape, b_shape = m.shape(f"{d}.weight"), m.shape(f"{d}.bias")
        if to_gray:  # the file's toRGB layers draw 3 channels
            w_shape, b_shape = (3, *w_shape[1:]), (3,)
        w, b = m.get(f"{s}.weight", w_shape), m.get(f"{s}.bias", b_shape)
        wg = m.gain(s, "weight_gain")
        if w is not None and b is not None and wg is not None:
            eff = w * wg  # (C_img, C, 1, 1); both apply the gain to the styles: same thing
            if to_gray:
                k = torch.tensor(LUMA_BT601)
                eff = (k.view(3, 1, 1, 1) * eff).sum(0, keepdim=True)
                b = (k * b).sum(0, keepdim=True)
            m.put(f"{d}.weight", eff / m.modules[d].weight_gain)
            m.put(f"{d}.bias", b)
    m.check_complete()
    if len(problems) > before:
        return None, []
    notes = []
    if to_gray:
        notes.append(
            f"{net.name}: RGB toRGB layers combined to one luminance channel (ITU-R BT.601: "
            "0.299 R + 0.587 G + 0.114 B on weights and biases): the imported generator draws "
            "the luma of the official RGB image"
        )
    notes += _clamp_notes(net, "G")
    beta = net.attr("mapping", "w_avg_beta")
    if isinstance(beta, float) and finite_number(beta) and beta != ours.mapping.w_avg_beta:
        notes.append(
            f"{net.name}: the file tracked w_avg with beta {beta}; this run uses "
            f"{ours.mapping.w_avg_beta} from here on"
        )
    return m.out, notes


def _map_discriminator(
    net: OfficialNetwork, discriminator_kwargs: Mapping[str, Any], problems: list[str]
) -> tuple[dict[str, torch.Tensor] | None, list[str]]:
    """discriminator_to_project, appending to `problems`; None when any were found."""
    before = len(problems)
    ours = _meta_model(Discriminator, discriminator_kwargs)
    assert isinstance(ours, Discriminator)
    m = _Mapper(net, ours, problems)
    names = set(net.tensors)
    if net.class_name != "Discriminator":
        m.problem(f"is a {net.class_name}, not an official Discriminator")
    for text in init_kwargs_problems(net.init_kwargs):
        m.problem(text)
    c_dim = m.whole("", "c_dim", 0, 2**24, default=0)
    if c_dim or "mapping" in net.layers:
        m.problem(f"is conditional (c_dim {c_dim}, a label mapping); ours is unconditional")
    _check_resolution(m, ours.resolution)
    blocks = [r for r in _count(names, "b") if r > 4]
    conv_names = {r: f"b{r}.conv0.weight" for r in blocks}
    if "b4.conv.weight" in names:
        conv_names[4] = "b4.conv.weight"
    widths = _widths(m, conv_names, "Conv2dLayer")
    kw = ours.init_kwargs
    _check_widths(m, widths, kw["channel_base"], kw["channel_max"])
    from_rgb = _image_channels(m, m.whole("", "img_channels", 1, 4096), ours.channels)
    for path in [*(f"b{r}" for r in blocks), "b4"]:
        arch = net.attr(path, "architecture", "resnet")
        if arch != "resnet":
            m.problem(f"{path} architecture {short(arch)}; our Discriminator is 'resnet' only")
            break
    if "b4.mbstd" not in net.layers:
        m.problem("has no minibatch-std layer; ours always has one")
    elif (mbstd_channels := m.whole("b4.mbstd", "num_channels", 1, 4096)) is None:
        pass  # not a number: already a problem
    elif mbstd_channels != ours.mbstd_channels:
        m.problem(
            f"minibatch-std over {mbstd_channels} channel(s), ours {ours.mbstd_channels} "
            "(Discriminator(mbstd_channels); no setting exposes it)"
        )
    group = m.whole("b4.mbstd", "group_size", 1, 2**24, default=None)
    if len(problems) > before:
        return None, []

    for r in sorted(blocks, reverse=True):
        src, dst = f"b{r}", f"blocks.b{r}"
        m.check_filter(src)
        if r == ours.resolution:
            m.conv(f"{src}.fromrgb", f"{dst}.fromrgb", "lrelu", rgb_sum=from_rgb)
        m.conv(f"{src}.conv0", f"{dst}.conv0", "lrelu")
        m.conv(f"{src}.conv1", f"{dst}.conv1", "lrelu")
        m.conv(f"{src}.skip", f"{dst}.skip", "linear")
    m.conv("b4.conv", "conv", "lrelu")
    m.dense("b4.fc", "fc", "lrelu")
    m.dense("b4.out", "out", "linear")
    m.check_complete()
    if len(problems) > before:
        return None, []
    notes = []
    if from_rgb:
        notes.append(
            f"{net.name}: RGB fromRGB weights summed over the 3 input channels: exact for a "
            "gray image repeated to RGB, which is what the official D saw of a gray image"
        )
    notes.append(
        f"{net.name}: minibatch-std groups are consecutive samples here, samples i, i+n, "
        "i+2n, ... in the official code: the same statistic on shuffled batches, equal "
        "per-sample logits when the batch is one group"
        + (
            f"; group size file {group}, run {ours.mbstd_group}"
            if group != ours.mbstd_group
            else ""
        )
    )
    notes += _clamp_notes(net, "D")
    return m.out, notes


def _clamp_notes(net: OfficialNetwork, what: str) -> list[str]:
    clamps = {
        c for lay in net.layers.values() if finite_number(c := lay.attributes.get("conv_clamp"))
    }
    if not clamps:
        return []
    return [
        f"{net.name}: the official {what} clamps every convolution output to "
        f"+-{', '.join(map(str, sorted(clamps)))}; here only bfloat16 layers are clamped "
        "(identical while activations stay below it)"
    ]


def luma(rgb: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) RGB -> (N, 1, H, W) ITU-R BT.601 luma: what an imported gray G draws."""
    assert rgb.ndim == 4 and rgb.shape[1] == 3, rgb.shape
    return (torch.tensor(LUMA_BT601, dtype=rgb.dtype).view(1, 3, 1, 1) * rgb).sum(1, keepdim=True)
