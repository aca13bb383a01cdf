"""Stand-ins for the official StyleGAN2-ADA networks, for tests/test_official_import.py.

Written here from the published formulas (Karras et al. 2020a/b) and the facts of the official
pickle format (NVlabs/stylegan2-ada-pytorch, NVIDIA Source Code License-NC; no code copied):

- classes named and structured like `training.networks` (FullyConnectedLayer, Conv2dLayer,
  MappingNetwork, SynthesisLayer, ToRGBLayer, SynthesisBlock, SynthesisNetwork, Generator,
  DiscriminatorBlock, MinibatchStdLayer, DiscriminatorEpilogue, Discriminator): the same
  parameter/buffer names, attributes (weight_gain as numpy float64, architecture, ...) and
  `_init_kwargs` with `dnnlib.util.EasyDict`s;
- their pickle reduces through `torch_utils.persistence._reconstruct_persistent_obj(meta)`
  with meta = {type, version, module_src, class_name, state}; the reconstructor here does what
  the official one does (exec module_src), and `module_src` writes a marker file when run, so
  a test can tell whether any reader executed it;
- their forward passes follow the official conventions, computed the slow, obvious way
  (per-sample loops, zero-insertion upsampling, the generic upfirdn2d -> conv -> downsample
  path of conv2d_resample), independent of cxrlib.stylegan2ada.networks's fast paths.
`install(monkeypatch, marker)` registers the fake modules `torch_utils.persistence`,
`dnnlib.util` and `training.networks` in sys.modules for one test.
"""

from __future__ import annotations

import copy
import math
import pickle
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

PERSISTENCE_VERSION = 6
LRELU_GAIN = float(np.sqrt(2.0))
_STATE: dict[str, str] = {"module_src": "raise RuntimeError('install() was not called')\n"}


# --------------------------------------------------------------------------------------------
# The fake official modules.


class EasyDict(dict):
    """dnnlib.util.EasyDict: a dict with attribute access."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError as exc:
            raise AttributeError(name) from exc

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value


EasyDict.__module__ = "dnnlib.util"


def _reconstruct_persistent_obj(meta: dict[str, Any]) -> Any:
    """What the official reconstructor does: exec module_src, then rebuild the object."""
    module = types.ModuleType("_imported_module_standin")
    exec(meta["module_src"], module.__dict__)  # the trap: writes the marker file
    cls = getattr(sys.modules[__name__], meta["class_name"])
    obj = cls.__new__(cls)
    obj.__dict__.update(meta["state"])
    return obj


_reconstruct_persistent_obj.__module__ = "torch_utils.persistence"


def module_source(marker: Path) -> str:
    """A module_src that leaves `marker` behind if anything runs it."""
    return f"import pathlib\npathlib.Path({str(marker)!r}).write_text('module_src was run')\n"


def install(monkeypatch: pytest.MonkeyPatch, marker: Path) -> None:
    """Register the official module names in sys.modules (undone by monkeypatch)."""
    _STATE["module_src"] = module_source(marker)
    mods = {
        name: types.ModuleType(name)
        for name in (
            "torch_utils",
            "torch_utils.persistence",
            "dnnlib",
            "dnnlib.util",
            "training",
            "training.networks",
        )
    }
    mods["torch_utils"].persistence = mods["torch_utils.persistence"]  # type: ignore[attr-defined]
    mods["torch_utils.persistence"]._reconstruct_persistent_obj = _reconstruct_persistent_obj  # type: ignore[attr-defined]
    mods["dnnlib"].util = mods["dnnlib.util"]  # type: ignore[attr-defined]
    mods["dnnlib.util"].EasyDict = EasyDict  # type: ignore[attr-defined]
    mods["training"].networks = mods["training.networks"]  # type: ignore[attr-defined]
    for cls in PERSISTENT_CLASSES:
        setattr(mods["training.networks"], cls.__name__, cls)
    for name, mod in mods.items():
        monkeypatch.setitem(sys.modules, name, mod)


class Persistent(nn.Module):
    """Pickles like an official persistent class: reconstructor + meta, state = __dict__."""

    def record_init(self, args: dict[str, Any]) -> None:
        """Keep the constructor's arguments (`locals()` on entry), as the official classes do."""
        self._init_args = ()
        skip = ("self", "__class__")
        self._init_kwargs = copy.deepcopy({k: v for k, v in args.items() if k not in skip})

    def __reduce__(self) -> tuple[Any, ...]:
        meta = {
            "type": "class",
            "version": PERSISTENCE_VERSION,
            "module_src": _STATE["module_src"],
            "class_name": type(self).__name__,
            "state": dict(self.__dict__),
        }
        return (_reconstruct_persistent_obj, (meta,), None)


def write_official_pickle(path: Path, protocol: int = 3, **networks: Any) -> Path:
    """pickle.dump of the official snapshot dict (default protocol 3: Python 3.7's)."""
    data = {"training_set_kwargs": EasyDict(resolution=32, use_labels=False), **networks}
    data.setdefault("augment_pipe", None)
    with open(path, "wb") as f:
        pickle.dump(data, f, protocol=protocol)
    return path


# --------------------------------------------------------------------------------------------
# The official conventions, computed the slow way.


def setup_filter() -> torch.Tensor:
    """The 2-D [1, 3, 3, 1] filter, normalised to sum 1: (4, 4)."""
    f = torch.tensor([1.0, 3.0, 3.0, 1.0])
    f2 = f[:, None] * f[None, :]
    return f2 / f2.sum()


def upfirdn2d_ref(
    x: torch.Tensor,
    f: torch.Tensor | None,
    up: int = 1,
    down: int = 1,
    pad: tuple[int, int] = (0, 0),
    gain: float = 1.0,
) -> torch.Tensor:
    """Zero-insertion upsampling, pad (before, after; negative crops), true convolution with
    f * gain, keep every down-th sample. (N, C, H, W)."""
    n, c, h, w = x.shape
    if up > 1:
        y = x.new_zeros(n, c, h * up, w * up)
        y[:, :, ::up, ::up] = x
        x = y
    p0, p1 = pad
    x = F.pad(x, [max(p0, 0), max(p1, 0), max(p0, 0), max(p1, 0)])
    x = x[:, :, max(-p0, 0) : x.shape[2] - max(-p1, 0), max(-p0, 0) : x.shape[3] - max(-p1, 0)]
    if f is not None:
        k = (f * gain).flip([0, 1]).expand(c, 1, *f.shape)
        x = F.conv2d(x, k, groups=c)
    return x[:, :, ::down, ::down] if down > 1 else x


def conv2d_resample_ref(
    x: torch.Tensor,
    w: torch.Tensor,
    f: torch.Tensor,
    up: int,
    down: int,
    padding: int,
    flip_weight: bool,
) -> torch.Tensor:
    """Official conv2d_resample, generic path: the padding grows by the filter's support
    ((fw + up - 1) // 2, (fw - up) // 2 up; (fw - down + 1) // 2, (fw - down) // 2 down),
    upsample + pad + filter, convolve (flip_weight=False: true convolution), downsample."""
    fw = f.shape[-1]
    p0 = p1 = padding
    if up > 1:
        p0, p1 = p0 + (fw + up - 1) // 2, p1 + (fw - up) // 2
    if down > 1:
        p0, p1 = p0 + (fw - down + 1) // 2, p1 + (fw - down) // 2
    x = upfirdn2d_ref(x, f if up > 1 else None, up=up, pad=(p0, p1), gain=up**2)
    x = F.conv2d(x, w if flip_weight else w.flip([2, 3]))
    return upfirdn2d_ref(x, f, down=down) if down > 1 else x


def bias_act_ref(
    x: torch.Tensor, b: torch.Tensor | None, act: str, gain: float, clamp: float | None
) -> torch.Tensor:
    """act(x + b) * gain, clamped to +-clamp; lrelu slope 0.2."""
    if b is not None:
        x = x + b.view(1, -1, *([1] * (x.ndim - 2)))
    if act == "lrelu":
        x = F.leaky_relu(x, 0.2)
    x = x * gain
    return x.clamp(-clamp, clamp) if clamp is not None else x


def act_gain(act: str) -> np.float64:
    return np.float64(np.sqrt(2.0) if act == "lrelu" else 1.0)


# --------------------------------------------------------------------------------------------
# Layers and networks, named and stored as the official ones.


class FullyConnectedLayer(Persistent):
    def __init__(
        self,
        in_features,
        out_features,
        bias=True,
        activation="linear",
        lr_multiplier=1,
        bias_init=0,
    ):
        super().__init__()
        self.record_init(locals())
        self.activation = activation
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / np.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x):
        y = x @ (self.weight * float(self.weight_gain)).t()
        b = None if self.bias is None else self.bias * float(self.bias_gain)
        return bias_act_ref(y, b, self.activation, float(act_gain(self.activation)), None)


class Conv2dLayer(Persistent):
    def __init__(
        self,
        in_channels,
        out_channels,
        kernel_size,
        bias=True,
        activation="linear",
        up=1,
        down=1,
        conv_clamp=None,
        trainable=True,
    ):
        super().__init__()
        self.record_init(locals())
        self.activation, self.up, self.down, self.conv_clamp = activation, up, down, conv_clamp
        self.register_buffer("resample_filter", setup_filter())
        self.padding = kernel_size // 2
        self.weight_gain = 1 / np.sqrt(in_channels * kernel_size**2)
        self.act_gain = act_gain(activation)
        weight = torch.randn(out_channels, in_channels, kernel_size, kernel_size)
        b = torch.zeros(out_channels) if bias else None
        if trainable:  # frozen layers (Freeze-D) keep their weights as buffers
            self.weight = nn.Parameter(weight)
            self.bias = nn.Parameter(b) if b is not None else None
        else:
            self.register_buffer("weight", weight)
            self.register_buffer("bias", b)

    def forward(self, x, gain=1.0):
        w = self.weight * float(self.weight_gain)
        x = conv2d_resample_ref(
            x, w, self.resample_filter, self.up, self.down, self.padding, flip_weight=self.up == 1
        )
        clamp = None if self.conv_clamp is None else self.conv_clamp * gain
        return bias_act_ref(x, self.bias, self.activation, float(self.act_gain) * gain, clamp)


class MappingNetwork(Persistent):
    def __init__(
        self, z_dim, c_dim, w_dim, num_ws, num_layers=8, lr_multiplier=0.01, w_avg_beta=0.995
    ):
        super().__init__()
        self.record_init(locals())
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = z_dim, c_dim, w_dim, num_ws
        self.num_layers, self.w_avg_beta = num_layers, w_avg_beta
        widths = [z_dim] + [w_dim] * num_layers
        for i in range(num_layers):
            setattr(
                self,
                f"fc{i}",
                FullyConnectedLayer(
                    widths[i], widths[i + 1], activation="lrelu", lr_multiplier=lr_multiplier
                ),
            )
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(self, z, c=None, truncation_psi=1.0):
        x = z * (z.square().mean(dim=1, keepdim=True) + 1e-8).rsqrt()
        for i in range(self.num_layers):
            x = getattr(self, f"fc{i}")(x)
        x = x.unsqueeze(1).repeat(1, self.num_ws, 1)
        return self.w_avg + truncation_psi * (x - self.w_avg) if truncation_psi != 1 else x


def modulated_conv_ref(x, weight, styles, up, padding, f, demodulate, flip_weight, noise=None):
    """Per-sample modulated (and demodulated) kernels, one sample at a time."""
    out = []
    for i in range(x.shape[0]):
        w = weight * styles[i].view(1, -1, 1, 1)
        if demodulate:
            w = w * (w.square().sum(dim=[1, 2, 3], keepdim=True) + 1e-8).rsqrt()
        out.append(conv2d_resample_ref(x[i : i + 1], w, f, up, 1, padding, flip_weight))
    y = torch.cat(out)
    return y if noise is None else y + noise


class SynthesisLayer(Persistent):
    def __init__(
        self,
        in_channels,
        out_channels,
        w_dim,
        resolution,
        kernel_size=3,
        up=1,
        use_noise=True,
        activation="lrelu",
        conv_clamp=None,
    ):
        super().__init__()
        self.record_init(locals())
        self.resolution, self.up, self.use_noise = resolution, up, use_noise
        self.activation, self.conv_clamp = activation, conv_clamp
        self.register_buffer("resample_filter", setup_filter())
        self.padding = kernel_size // 2
        self.act_gain = act_gain(activation)
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        if use_noise:
            self.register_buffer("noise_const", torch.randn(resolution, resolution))
            self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros(out_channels))

    def forward(self, x, w):
        styles = self.affine(w)
        noise = self.noise_const * self.noise_strength if self.use_noise else None
        x = modulated_conv_ref(
            x,
            self.weight,
            styles,
            self.up,
            self.padding,
            self.resample_filter,
            True,
            self.up == 1,
            noise,
        )
        return bias_act_ref(x, self.bias, self.activation, float(self.act_gain), self.conv_clamp)


class ToRGBLayer(Persistent):
    def __init__(self, in_channels, out_channels, w_dim, kernel_size=1, conv_clamp=None):
        super().__init__()
        self.record_init(locals())
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.weight_gain = 1 / np.sqrt(in_channels * kernel_size**2)

    def forward(self, x, w):
        styles = self.affine(w) * float(self.weight_gain)
        x = modulated_conv_ref(x, self.weight, styles, 1, 0, setup_filter(), False, True)
        return bias_act_ref(x, self.bias, "linear", 1.0, self.conv_clamp)


class SynthesisBlock(Persistent):
    def __init__(
        self,
        in_channels,
        out_channels,
        w_dim,
        resolution,
        img_channels,
        is_last,
        architecture="skip",
        conv_clamp=None,
        use_fp16=False,
    ):
        super().__init__()
        self.record_init(locals())
        self.in_channels, self.w_dim, self.resolution = in_channels, w_dim, resolution
        self.img_channels, self.is_last, self.architecture = img_channels, is_last, architecture
        self.use_fp16 = use_fp16
        self.register_buffer("resample_filter", setup_filter())
        self.num_conv, self.num_torgb = 0, 0
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn(out_channels, resolution, resolution))
        else:
            self.conv0 = SynthesisLayer(
                in_channels, out_channels, w_dim, resolution, up=2, conv_clamp=conv_clamp
            )
            self.num_conv += 1
        self.conv1 = SynthesisLayer(
            out_channels, out_channels, w_dim, resolution, conv_clamp=conv_clamp
        )
        self.num_conv += 1
        self.torgb = ToRGBLayer(out_channels, img_channels, w_dim, conv_clamp=conv_clamp)
        self.num_torgb += 1

    def forward(self, x, img, ws):
        ws = list(ws.unbind(dim=1))
        if self.in_channels == 0:
            x = self.conv1(self.const.unsqueeze(0).repeat(ws[0].shape[0], 1, 1, 1), ws.pop(0))
        else:
            x = self.conv1(self.conv0(x, ws.pop(0)), ws.pop(0))
        if img is not None:
            img = upfirdn2d_ref(img, self.resample_filter, up=2, pad=(2, 1), gain=4)
        y = self.torgb(x, ws.pop(0))
        return x, (y if img is None else img + y)


class SynthesisNetwork(Persistent):
    def __init__(
        self,
        w_dim,
        img_resolution,
        img_channels,
        channel_base=32768,
        channel_max=512,
        num_fp16_res=0,
        conv_clamp=None,
    ):
        super().__init__()
        self.record_init(locals())
        self.w_dim, self.img_resolution, self.img_channels = w_dim, img_resolution, img_channels
        log2 = int(math.log2(img_resolution))
        self.block_resolutions = [2**i for i in range(2, log2 + 1)]
        ch = {r: min(channel_base // r, channel_max) for r in self.block_resolutions}
        self.num_ws = 0
        for r in self.block_resolutions:
            block = SynthesisBlock(
                ch[r // 2] if r > 4 else 0,
                ch[r],
                w_dim,
                r,
                img_channels,
                is_last=r == img_resolution,
                conv_clamp=conv_clamp,
            )
            self.num_ws += block.num_conv + (block.num_torgb if r == img_resolution else 0)
            setattr(self, f"b{r}", block)

    def forward(self, ws):
        x = img = None
        idx = 0
        for r in self.block_resolutions:
            block = getattr(self, f"b{r}")
            x, img = block(x, img, ws[:, idx : idx + block.num_conv + block.num_torgb])
            idx += block.num_conv
        return img


class Generator(Persistent):
    def __init__(
        self,
        z_dim,
        c_dim,
        w_dim,
        img_resolution,
        img_channels,
        mapping_kwargs=None,
        synthesis_kwargs=None,
    ):
        super().__init__()
        mapping_kwargs = EasyDict(mapping_kwargs or {})
        synthesis_kwargs = EasyDict(synthesis_kwargs or {})
        self.record_init(locals())
        self.z_dim, self.c_dim, self.w_dim = z_dim, c_dim, w_dim
        self.img_resolution, self.img_channels = img_resolution, img_channels
        self.synthesis = SynthesisNetwork(w_dim, img_resolution, img_channels, **synthesis_kwargs)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim, c_dim, w_dim, self.num_ws, **mapping_kwargs)

    def forward(self, z, c=None, truncation_psi=1.0):
        return self.synthesis(self.mapping(z, c, truncation_psi))


class DiscriminatorBlock(Persistent):
    def __init__(
        self,
        in_channels,
        tmp_channels,
        out_channels,
        resolution,
        img_channels,
        first_layer_idx,
        architecture="resnet",
        conv_clamp=None,
        freeze_layers=0,
    ):
        super().__init__()
        self.record_init(locals())
        self.in_channels, self.resolution, self.img_channels = in_channels, resolution, img_channels
        self.first_layer_idx, self.architecture = first_layer_idx, architecture
        self.register_buffer("resample_filter", setup_filter())
        self.num_layers = 0

        def trainable() -> bool:
            self.num_layers += 1
            return self.first_layer_idx + self.num_layers - 1 >= freeze_layers

        if in_channels == 0:
            self.fromrgb = Conv2dLayer(
                img_channels,
                tmp_channels,
                1,
                activation="lrelu",
                trainable=trainable(),
                conv_clamp=conv_clamp,
            )
        self.conv0 = Conv2dLayer(
            tmp_channels,
            tmp_channels,
            3,
            activation="lrelu",
            trainable=trainable(),
            conv_clamp=conv_clamp,
        )
        self.conv1 = Conv2dLayer(
            tmp_channels,
            out_channels,
            3,
            activation="lrelu",
            down=2,
            trainable=trainable(),
            conv_clamp=conv_clamp,
        )
        self.skip = Conv2dLayer(
            tmp_channels, out_channels, 1, bias=False, down=2, trainable=trainable()
        )

    def forward(self, x, img):
        if self.in_channels == 0:
            x = self.fromrgb(img)
        y = self.skip(x, gain=float(np.sqrt(0.5)))
        x = self.conv1(self.conv0(x), gain=float(np.sqrt(0.5)))
        return y + x, None


class MinibatchStdLayer(Persistent):
    def __init__(self, group_size, num_channels=1):
        super().__init__()
        self.record_init(locals())
        self.group_size, self.num_channels = group_size, num_channels

    def forward(self, x):
        """Official grouping: with n = N / G groups, sample i belongs to group i % n."""
        n_total, c, h, w = x.shape
        g = min(self.group_size, n_total)
        n = n_total // g
        f = self.num_channels
        stats = torch.empty(n_total, f, dtype=x.dtype)
        for j in range(n):
            members = x[j::n].reshape(g, f, c // f, h, w)  # samples j, j + n, j + 2n, ...
            sd = (members.var(dim=0, unbiased=False) + 1e-8).sqrt()  # (F, c, H, W)
            stats[j::n] = sd.mean(dim=[1, 2, 3])
        return torch.cat([x, stats.view(n_total, f, 1, 1).expand(n_total, f, h, w)], dim=1)


class DiscriminatorEpilogue(Persistent):
    def __init__(
        self,
        in_channels,
        cmap_dim,
        resolution,
        img_channels,
        architecture="resnet",
        mbstd_group_size=4,
        mbstd_num_channels=1,
        conv_clamp=None,
    ):
        super().__init__()
        self.record_init(locals())
        self.in_channels, self.cmap_dim, self.resolution = in_channels, cmap_dim, resolution
        self.img_channels, self.architecture = img_channels, architecture
        self.mbstd = MinibatchStdLayer(mbstd_group_size, mbstd_num_channels)
        self.conv = Conv2dLayer(
            in_channels + mbstd_num_channels,
            in_channels,
            3,
            activation="lrelu",
            conv_clamp=conv_clamp,
        )
        self.fc = FullyConnectedLayer(in_channels * resolution**2, in_channels, activation="lrelu")
        self.out = FullyConnectedLayer(in_channels, 1)

    def forward(self, x):
        return self.out(self.fc(self.conv(self.mbstd(x)).flatten(1)))


class Discriminator(Persistent):
    def __init__(
        self,
        c_dim,
        img_resolution,
        img_channels,
        architecture="resnet",
        channel_base=32768,
        channel_max=512,
        num_fp16_res=0,
        conv_clamp=None,
        block_kwargs=None,
        epilogue_kwargs=None,
    ):
        super().__init__()
        block_kwargs = EasyDict(block_kwargs or {})
        epilogue_kwargs = EasyDict(epilogue_kwargs or {})
        self.record_init(locals())
        self.c_dim, self.img_resolution, self.img_channels = c_dim, img_resolution, img_channels
        log2 = int(math.log2(img_resolution))
        self.block_resolutions = [2**i for i in range(log2, 2, -1)]
        ch = {r: min(channel_base // r, channel_max) for r in [*self.block_resolutions, 4]}
        layer = 0
        for r in self.block_resolutions:
            block = DiscriminatorBlock(
                ch[r] if r < img_resolution else 0,
                ch[r],
                ch[r // 2],
                r,
                img_channels,
                layer,
                architecture=architecture,
                conv_clamp=conv_clamp,
                **block_kwargs,
            )
            layer += block.num_layers
            setattr(self, f"b{r}", block)
        self.b4 = DiscriminatorEpilogue(
            ch[4],
            0,
            4,
            img_channels,
            architecture=architecture,
            conv_clamp=conv_clamp,
            **epilogue_kwargs,
        )

    def forward(self, img, c=None):
        x = None
        for r in self.block_resolutions:
            x, _ = getattr(self, f"b{r}")(x, img)
        return self.b4(x)


PERSISTENT_CLASSES = (
    FullyConnectedLayer,
    Conv2dLayer,
    MappingNetwork,
    SynthesisLayer,
    ToRGBLayer,
    SynthesisBlock,
    SynthesisNetwork,
    Generator,
    DiscriminatorBlock,
    MinibatchStdLayer,
    DiscriminatorEpilogue,
    Discriminator,
)
for _cls in PERSISTENT_CLASSES:
    _cls.__module__ = "training.networks"


# --------------------------------------------------------------------------------------------
# Builders for tests.


def randomise(net: nn.Module, seed: int) -> nn.Module:
    """Trained-looking values where the official init leaves zeros/ones: biases, noise
    strengths, w_avg (weights are already random). Filters stay as they are."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in [*net.named_parameters(), *net.named_buffers()]:
            leaf = name.rsplit(".", 1)[-1]
            if leaf in ("bias", "noise_strength", "w_avg"):
                t.add_(0.3 * torch.randn(t.shape, generator=g))
            elif leaf in ("weight", "const", "noise_const"):
                t.copy_(torch.randn(t.shape, generator=g) * t.std().clamp_min(1e-3))
    return net.eval().requires_grad_(False)


def official_generator(
    resolution: int = 32,
    img_channels: int = 1,
    z_dim: int = 16,
    w_dim: int = 16,
    mapping_layers: int = 2,
    channel_base: int = 256,
    channel_max: int = 32,
    seed: int = 0,
    conv_clamp: float | None = 256,
    mapping_lr: float = 0.01,
) -> Generator:
    """A small official-format Generator (paper256-style kwargs), random weights."""
    torch.manual_seed(seed)
    g = Generator(
        z_dim,
        0,
        w_dim,
        resolution,
        img_channels,
        mapping_kwargs=EasyDict(num_layers=mapping_layers, lr_multiplier=mapping_lr),
        synthesis_kwargs=EasyDict(
            channel_base=channel_base,
            channel_max=channel_max,
            num_fp16_res=4,
            conv_clamp=conv_clamp,
        ),
    )
    return randomise(g, seed + 1)  # type: ignore[return-value]


def official_discriminator(
    resolution: int = 32,
    img_channels: int = 1,
    channel_base: int = 256,
    channel_max: int = 32,
    mbstd_group: int = 4,
    seed: int = 10,
    freeze_layers: int = 0,
    conv_clamp: float | None = 256,
) -> Discriminator:
    """A small official-format Discriminator, random weights."""
    torch.manual_seed(seed)
    d = Discriminator(
        0,
        resolution,
        img_channels,
        channel_base=channel_base,
        channel_max=channel_max,
        conv_clamp=conv_clamp,
        block_kwargs=EasyDict(freeze_layers=freeze_layers),
        epilogue_kwargs=EasyDict(mbstd_group_size=mbstd_group),
    )
    return randomise(d, seed + 1)  # type: ignore[return-value]
