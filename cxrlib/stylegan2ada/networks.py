"""StyleGAN2 networks, as StyleGAN2-ADA trains them, written from the papers.

Karras et al. 2020a, "Analyzing and Improving the Image Quality of StyleGAN" (StyleGAN2), and
Karras et al. 2020b, "Training Generative Adversarial Networks with Limited Data" (ADA):

- equalised learning rate: every weight is stored N(0, 1) and scaled at run time by
  1/sqrt(fan_in), so Adam's per-parameter step is the same for every layer; the mapping
  network's layers also multiply by `lr_multiplier` (0.01), slowing it 100x;
- generator: mapping z (pixel-normalised) -> w; synthesis from a learned 4x4 constant through
  one block per resolution, each two modulated/demodulated 3x3 convolutions (the first one
  upsampling) with per-pixel noise of learned strength, and a toRGB whose outputs are summed
  over resolutions ("skip" architecture);
- discriminator: fromRGB at the top, residual blocks (both branches scaled by 1/sqrt(2)), a
  minibatch standard deviation layer, a 3x3 conv, a dense layer and the output logit;
- resampling with the [1, 3, 3, 1] FIR filter (`upfirdn2d`, plain PyTorch convolutions);
- truncation towards a running average of w (beta 0.995).

Mixed precision as in the papers' top `num_fp16_res` resolutions, here in bfloat16 (its range
needs no loss scaling), only on CUDA; elsewhere everything is float32. Activations of reduced
precision layers are clamped to +-`conv_clamp`.

Shapes: images are (N, C, H, W) float in about [-1, 1]; latents z (N, z_dim); w (N, num_ws,
w_dim), one w per style input ("ws": the same w repeated unless styles are mixed).

Why one module of about 800 lines: the generator and discriminator share their layers
(equalised-lr dense and conv layers, FIR resampling, modulated convolution), and the official
networks' import (cxrlib.stylegan2ada.official) maps onto these names in one place.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

NoiseMode = Literal["random", "const", "none"]
# (start, stop, total): draw random noise for `total` samples and use rows start:stop, so a
# batch split over data-parallel processes gets the noise the whole batch would have got.
NoiseRows = tuple[int, int, int] | None
NOISE_MODES: tuple[str, ...] = ("random", "const", "none")
LRELU_SLOPE = 0.2
LRELU_GAIN = math.sqrt(2.0)  # keeps the second moment of N(0, 1) inputs through lrelu(0.2)
FIR_TAPS = (1.0, 3.0, 3.0, 1.0)  # the papers' resampling filter (binomial, ~bilinear)
# Device types on which the top `num_fp16_res` resolutions run in bfloat16. CUDA only: on the
# CPU float32 is the default (tests add "cpu" to exercise the reduced-precision path).
REDUCED_PRECISION_DEVICES: tuple[str, ...] = ("cuda",)


# --------------------------------------------------------------------------------------------
# Plain functions: the math, testable alone.


def fir_filter(
    taps: tuple[float, ...] = FIR_TAPS, device: torch.device | None = None
) -> torch.Tensor:
    """1-D FIR filter normalised to sum 1: (K,) float32. Applied separably along H and W."""
    f = torch.tensor(taps, dtype=torch.float32, device=device)
    return f / f.sum()


def _depthwise_kernel(
    f: torch.Tensor, channels: int, gain: float, dtype: torch.dtype
) -> torch.Tensor:
    """The separable filter as one 2-D depthwise kernel (C, 1, K, K), flipped for conv2d.

    One 4x4 depthwise pass is ~3x faster on the CPU than two 1-D passes (half the memory
    traffic and one kernel launch instead of two), measured in benchmarks/stylegan2_step.py.
    """
    f2 = torch.outer(f, f).flip([0, 1]) * gain
    return f2.to(dtype).view(1, 1, *f2.shape).expand(channels, 1, *f2.shape)


def upfirdn2d(
    x: torch.Tensor,
    f: torch.Tensor,
    up: int = 1,
    down: int = 1,
    padding: tuple[int, int] = (0, 0),
    gain: float = 1.0,
) -> torch.Tensor:
    """Upsample by zero insertion, pad, filter with the separable FIR `f`, keep every `down`-th.

    x: (N, C, H, W); f: (K,) 1-D taps; padding: (before, after) on both axes (negative crops).
    Output side: (H * up + before + after - K) // down + 1. `gain` is the total 2-D gain (use
    up**2 when upsampling, so the mean of the signal is kept). Filtering is a true convolution
    (taps flipped); the papers' filter is symmetric anyway. This general form is the
    reference; the resampling helpers below compute the same without materialising zeros.
    """
    assert x.ndim == 4 and f.ndim == 1, (x.shape, f.shape)
    n, c, h, w = x.shape
    if up > 1:
        # Zero insertion: each sample followed by up-1 zeros, on both axes.
        x = x.reshape(n, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(n, c, h * up, w * up)
    p0, p1 = padding
    if p0 == p1 and p0 >= 0:
        return F.conv2d(
            x, _depthwise_kernel(f, c, gain, x.dtype), stride=down, padding=p0, groups=c
        )
    x = F.pad(x, [p0, p1, p0, p1])
    return F.conv2d(x, _depthwise_kernel(f, c, gain, x.dtype), stride=down, groups=c)


def upsample2d(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """2x FIR upsampling, (N, C, H, W) -> (N, C, 2H, 2W), pixel centres kept aligned.

    Equals upfirdn2d(x, f, up=2, padding=(2, 1), gain=4) for the 4-tap filter; computed as a
    depthwise stride-2 transposed convolution (no zeros materialised), whose `padding=1`
    crops the one extra output pixel on each side.
    """
    c = x.shape[1]
    assert f.numel() == 4, "upsample2d is written for 4-tap filters"
    # conv_transpose2d applies its kernel unflipped (a true convolution): flip it back.
    k = _depthwise_kernel(f, c, 4.0, x.dtype).flip([2, 3])
    return F.conv_transpose2d(x, k, stride=2, padding=1, groups=c)


def downsample2d(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """2x FIR downsampling, (N, C, H, W) -> (N, C, H/2, W/2), pixel centres kept aligned:
    output pixel j averages input pixels 2j-1 .. 2j+2 with weights [1, 3, 3, 1] / 8."""
    assert f.numel() == 4, "downsample2d is written for 4-tap filters"
    return upfirdn2d(x, f, down=2, padding=(1, 1))


def bias_act(
    x: torch.Tensor,
    bias: torch.Tensor | None,
    activation: Literal["lrelu", "linear"],
    gain: float = 1.0,
    clamp: float | None = None,
) -> torch.Tensor:
    """x + bias (per channel, dim 1), then lrelu(0.2) * sqrt(2) or identity, times `gain`,
    clamped to +-clamp (reduced precision layers only)."""
    if bias is not None:
        shape = [1, -1] + [1] * (x.ndim - 2)
        x = x + bias.to(x.dtype).view(shape)
    if activation == "lrelu":
        x = F.leaky_relu(x, LRELU_SLOPE)
        gain = gain * LRELU_GAIN
    if gain != 1.0:
        x = x * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return x


def _conv_up2(x: torch.Tensor, weight: torch.Tensor, groups: int, f: torch.Tensor) -> torch.Tensor:
    """2x upsample then convolve with `weight` (groups * O, I, k, k), at low resolution.

    Equivalent to `conv2d(upsample2d(x), weight, padding=k//2)` except at the one-pixel border
    (here the FIR sees the convolution's full support instead of a zero-padded crop): a
    stride-2 transposed convolution costs a quarter of a convolution at the doubled
    resolution. The transposed convolution of zero-inserted x with the flipped kernel equals
    the correlation with `weight` shifted by (k-1)/2 pixels, which the FIR's padding undoes.
    """
    o_total, i, kh, kw = weight.shape
    assert kh == kw and kh % 2 == 1, weight.shape
    o = o_total // groups
    # (g*O, I, k, k) -> (g*I, O, k, k): conv_transpose2d takes (in, out/groups, k, k).
    wt = weight.reshape(groups, o, i, kh, kw).transpose(1, 2).reshape(groups * i, o, kh, kw)
    x = F.conv_transpose2d(x, wt.flip([2, 3]), stride=2, groups=groups)
    pad = 2 - (kh - 1) // 2
    return upfirdn2d(x, f, padding=(pad, pad), gain=4.0)


def modulated_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    demodulate: bool = True,
    up: int = 1,
    resample_filter: torch.Tensor | None = None,
    fused: bool = True,
) -> torch.Tensor:
    """StyleGAN2's modulated convolution: per-sample weights w'_oik = s_i * w_oik, optionally
    demodulated to unit L2 norm over (i, k): w''_oik = w'_oik / sqrt(sum_ik w'_oik^2 + 1e-8).

    x: (N, I, H, W); weight: (O, I, k, k) (odd k, 'same' padding); styles: (N, I).
    Returns (N, O, H*up, W*up) in x's dtype; up=2 upsamples with the FIR `resample_filter`
    (default [1, 3, 3, 1]).

    `fused=True` is the paper's formulation: one grouped convolution (groups=N) with the N
    modulated kernels. `fused=False` computes the same thing by scaling x's input channels by
    the styles, convolving with the shared kernel and scaling the outputs by the
    demodulation coefficients, which is one ordinary batched convolution (faster where
    grouped convolutions are slow, and what training uses on the CPU).
    """
    n, i, h, w = x.shape
    o, i_w, kh, kw = weight.shape
    assert i_w == i and styles.shape == (n, i), (x.shape, weight.shape, styles.shape)
    assert up in (1, 2), up
    # The kernel arithmetic in float32 whatever x's dtype: demodulation sums squares.
    styles, weight = styles.float(), weight.float()
    dcoefs = demodulation_coefficients(weight, styles) if demodulate else None
    if fused:
        f = fir_filter(device=x.device) if resample_filter is None else resample_filter
        wmod = weight.unsqueeze(0) * styles.view(n, 1, i, 1, 1)
        if dcoefs is not None:
            wmod = wmod * dcoefs.view(n, o, 1, 1, 1)
        wmod = wmod.reshape(n * o, i, kh, kw).to(x.dtype)
        xg = x.reshape(1, n * i, h, w)
        if up == 1:
            out = F.conv2d(xg, wmod, padding=kh // 2, groups=n)
        else:
            out = _conv_up2(xg, wmod, groups=n, f=f)
        return out.reshape(n, o, h * up, w * up)
    out = _modulated_conv_unscaled(x, weight, styles, up, resample_filter)
    return out if dcoefs is None else out * dcoefs.to(x.dtype).view(n, o, 1, 1)


def demodulation_coefficients(weight: torch.Tensor, styles: torch.Tensor) -> torch.Tensor:
    """1 / ||s_i w_oik||_(i,k) per sample and output channel: (O, I, k, k), (N, I) -> (N, O).

    sum_ik (s_i w_oik)^2 = sum_i s_i^2 (sum_k w_oik^2): an (N, I) @ (I, O) product instead of
    materialising the N modulated kernels.
    """
    return (styles.square() @ weight.square().sum(dim=[2, 3]).t() + 1e-8).rsqrt()


def _modulated_conv_unscaled(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    up: int,
    resample_filter: torch.Tensor | None,
) -> torch.Tensor:
    """conv(x * s, weight) with optional 2x upsampling: the modulated convolution before the
    demodulation coefficients scale its outputs (they commute with the convolution)."""
    n, i = x.shape[:2]
    f = fir_filter(device=x.device) if resample_filter is None else resample_filter
    xs = x * styles.to(x.dtype).view(n, i, 1, 1)
    wd = weight.to(x.dtype)
    k = wd.shape[-1]
    return F.conv2d(xs, wd, padding=k // 2) if up == 1 else _conv_up2(xs, wd, 1, f)


def minibatch_stddev(x: torch.Tensor, group_size: int, num_channels: int = 1) -> torch.Tensor:
    """Append the minibatch standard deviation as `num_channels` extra feature maps.

    x: (N, C, H, W) -> (N, C + num_channels, H, W). Samples are split into groups of
    G = min(group_size, N) *consecutive* samples (so a batch split over processes keeps its
    groups); within a group the std over samples of each feature and pixel is averaged over
    features (C / num_channels of them) and pixels, and broadcast back to every sample of the
    group. It lets the discriminator see a lack of variety across a group.
    """
    n, c, h, w = x.shape
    g = min(group_size, n)
    if n % g != 0:
        raise ValueError(f"minibatch std: batch {n} is not a multiple of the group size {g}")
    assert c % num_channels == 0, (c, num_channels)
    y = x.float().reshape(n // g, g, num_channels, c // num_channels, h, w)
    y = y - y.mean(dim=1, keepdim=True)
    y = (y.square().mean(dim=1) + 1e-8).sqrt()  # (N/G, F, C/F, H, W)
    y = y.mean(dim=[2, 3, 4])  # (N/G, F)
    y = y.view(n // g, 1, num_channels, 1, 1).expand(n // g, g, num_channels, h, w)
    return torch.cat([x, y.reshape(n, num_channels, h, w).to(x.dtype)], dim=1)


def channels_at(resolution: int, channel_base: int, channel_max: int) -> int:
    """Feature maps at a resolution: min(channel_base // resolution, channel_max)."""
    return min(channel_base // resolution, channel_max)


def _check_resolution(resolution: int, channels: int) -> int:
    log2 = int(math.log2(resolution)) if resolution > 0 else 0
    if resolution < 32 or resolution > 1024 or 2**log2 != resolution:
        raise ValueError(f"resolution must be a power of two in 32..1024, not {resolution}")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, not {channels}")
    return log2


# --------------------------------------------------------------------------------------------
# Layers with equalised learning rate.


class EqualLinear(nn.Module):
    """Dense layer with equalised learning rate: y = act(x (W lr_mul / sqrt(in))^T + b lr_mul).

    Parameters are stored divided by lr_mul, so Adam (scale-free steps) moves the effective
    weights lr_mul times slower.
    """

    def __init__(
        self,
        in_features: int,  # input width
        out_features: int,  # output width
        activation: Literal["lrelu", "linear"] = "linear",  # nonlinearity after the bias
        bias_init: float = 0.0,  # initial effective bias (1 for style affines: start unmodulated)
        lr_multiplier: float = 1.0,  # learning-rate multiplier (0.01 in the mapping network)
    ):
        super().__init__()
        self.activation = activation
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_multiplier)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init) / lr_multiplier))
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.ndim == 2 and x.shape[1] == self.weight.shape[1], x.shape
        w = (self.weight * self.weight_gain).to(x.dtype)
        b = (self.bias * self.bias_gain).to(x.dtype)
        if self.activation == "linear":
            return torch.addmm(b.unsqueeze(0), x, w.t())
        return bias_act(x @ w.t(), b, self.activation)


class EqualConv2d(nn.Module):
    """Discriminator convolution with equalised learning rate, optional FIR 2x downsampling.

    (N, in, H, W) -> (N, out, H/down, W/down). Downsampling filters first, then convolves with
    stride 2 (the convolution at full resolution would cost four times as much).
    """

    def __init__(
        self,
        in_channels: int,  # input feature maps
        out_channels: int,  # output feature maps
        kernel_size: int,  # odd, 'same' padding
        bias: bool = True,  # add a learned per-channel bias
        activation: Literal["lrelu", "linear"] = "lrelu",  # nonlinearity
        down: int = 1,  # 1 or 2
        conv_clamp: float | None = None,  # clamp outputs to +-this in reduced precision
    ):
        super().__init__()
        assert kernel_size % 2 == 1 and down in (1, 2)
        self.activation = activation
        self.down = down
        self.conv_clamp = conv_clamp
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain = 1.0 / math.sqrt(in_channels * kernel_size * kernel_size)
        self.register_buffer("resample_filter", fir_filter(), persistent=False)

    def forward(self, x: torch.Tensor, gain: float = 1.0, reduced: bool = False) -> torch.Tensor:
        assert x.ndim == 4 and x.shape[1] == self.weight.shape[1], x.shape
        # act(conv(x, w) + b) * c == act(conv(x, c w) + c b) for c > 0 (lrelu is positively
        # homogeneous): the gains ride on the weights, the bias on the convolution.
        c = gain * (LRELU_GAIN if self.activation == "lrelu" else 1.0)
        w = (self.weight * (self.weight_gain * c)).to(x.dtype)
        b = None if self.bias is None else (self.bias * c).to(x.dtype)
        k = w.shape[-1]
        f = self.resample_filter
        if self.down == 1:
            x = F.conv2d(x, w, b, padding=k // 2)
        elif k == 1:
            x = F.conv2d(downsample2d(x, f), w, b)
        else:
            # Filter with padding (K - 2) + (k - 1) in total, then a stride-2 valid convolution:
            # output pixel j is centred between input pixels 2j and 2j+1.
            pad = (f.numel() - 2 + k - 1) // 2
            x = F.conv2d(upfirdn2d(x, f, padding=(pad, pad)), w, b, stride=2)
        if self.activation == "lrelu":
            x = F.leaky_relu_(x, LRELU_SLOPE)  # the convolution's backward needs not its output
        if reduced and self.conv_clamp is not None:
            x = x.clamp(-self.conv_clamp * gain, self.conv_clamp * gain)
        return x


# --------------------------------------------------------------------------------------------
# Generator.


class MappingNetwork(nn.Module):
    """z (N, z_dim) -> ws (N, num_ws, w_dim); tracks the running mean of w for truncation."""

    def __init__(
        self,
        z_dim: int,  # latent input width
        w_dim: int,  # intermediate latent width (also the hidden width)
        num_ws: int,  # style inputs of the synthesis network (w is broadcast to each)
        num_layers: int = 8,  # dense layers (8 in StyleGAN2, 2 in ADA's auto config)
        lr_multiplier: float = 0.01,  # slows the mapping's learning rate 100x
        w_avg_beta: float = 0.995,  # decay of the running mean of w
    ):
        super().__init__()
        self.z_dim, self.w_dim, self.num_ws = z_dim, w_dim, num_ws
        self.w_avg_beta = w_avg_beta
        widths = [z_dim] + [w_dim] * num_layers
        self.layers = nn.ModuleList(
            EqualLinear(a, b, activation="lrelu", lr_multiplier=lr_multiplier)
            for a, b in itertools.pairwise(widths)
        )
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(
        self,
        z: torch.Tensor,
        truncation_psi: float = 1.0,
        update_w_avg: bool = False,
    ) -> torch.Tensor:
        assert z.ndim == 2 and z.shape[1] == self.z_dim, z.shape
        # Pixel norm: z on the sphere of radius sqrt(z_dim), whatever its sampled length.
        x = z.float() * (z.float().square().mean(dim=1, keepdim=True) + 1e-8).rsqrt()
        for layer in self.layers:
            x = layer(x)
        if update_w_avg:
            self.update_average(x.detach().mean(dim=0))
        if truncation_psi != 1.0:
            x = self.w_avg.lerp(x, truncation_psi)
        return x.unsqueeze(1).expand(-1, self.num_ws, -1)

    @torch.no_grad()
    def update_average(self, w_mean: torch.Tensor) -> None:
        """w_avg <- lerp(batch mean of w, w_avg, beta): (w_dim,) mean of the current batch
        (a data-parallel trainer passes the mean over all processes)."""
        self.w_avg.copy_(w_mean.lerp(self.w_avg, self.w_avg_beta))


class SynthesisLayer(nn.Module):
    """Modulated 3x3 conv (+ optional 2x upsampling), noise, bias, lrelu."""

    def __init__(
        self,
        in_channels: int,  # input feature maps
        out_channels: int,  # output feature maps
        w_dim: int,  # width of w, mapped to one style per input channel
        resolution: int,  # output side length (for the fixed noise map)
        up: int = 1,  # 2: upsample first
        conv_clamp: float | None = None,  # clamp outputs to +-this in reduced precision
    ):
        super().__init__()
        self.up = up
        self.resolution = resolution
        self.conv_clamp = conv_clamp
        self.affine = EqualLinear(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 3, 3))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.noise_strength = nn.Parameter(torch.zeros(()))
        # Fixed noise for deterministic sampling; a buffer, so snapshots carry it.
        self.register_buffer("noise_const", torch.randn(resolution, resolution))
        self.register_buffer("resample_filter", fir_filter(), persistent=False)
        # See modulated_conv2d: same result; the batched form (fused=False) ran 1.2-6.7x faster
        # than the grouped convolution on the CPU (forward + backward, batch 16, one thread;
        # 156 vs 1043 ms at 512 channels, 8x8).
        self.fused = False

    def forward(
        self,
        x: torch.Tensor,
        w: torch.Tensor,
        noise_mode: NoiseMode,
        reduced: bool,
        noise_rows: NoiseRows = None,
    ) -> torch.Tensor:
        styles = self.affine(w)
        n = x.shape[0]
        if self.fused:
            x = modulated_conv2d(
                x, self.weight, styles, up=self.up, resample_filter=self.resample_filter,
                fused=True,
            )  # fmt: skip
            scale = None
        else:
            x = _modulated_conv_unscaled(x, self.weight, styles, self.up, self.resample_filter)
            scale = demodulation_coefficients(self.weight.float(), styles.float())
        _, _, h, wd = x.shape
        assert h == self.resolution and wd == self.resolution, (x.shape, self.resolution)
        # The epilogue in as few passes over the activations as autograd allows:
        # lrelu(d * y + noise + b) * g == lrelu(g d * y + g noise + g b) for g > 0.
        g = LRELU_GAIN
        bias = (self.bias * g).to(x.dtype).view(1, -1, 1, 1)
        if scale is None:
            x = x * g + bias
        else:
            x = torch.addcmul(bias, x, (scale * g).to(x.dtype).view(n, -1, 1, 1))
        if noise_mode == "random":
            if noise_rows is None:
                noise = torch.randn(n, 1, h, wd, device=x.device, dtype=x.dtype)
            else:
                start, stop, total = noise_rows
                noise = torch.randn(total, 1, h, wd, device=x.device, dtype=x.dtype)[start:stop]
            x.add_(noise * (self.noise_strength * g).to(x.dtype))
        elif noise_mode == "const":
            x.add_((self.noise_const * (self.noise_strength * g)).to(x.dtype))
        x = F.leaky_relu_(x, LRELU_SLOPE)
        return x.clamp(-self.conv_clamp, self.conv_clamp) if reduced and self.conv_clamp else x


class ToRGB(nn.Module):
    """Modulated 1x1 conv to image channels, not demodulated (colour scale is learned)."""

    def __init__(
        self,
        in_channels: int,  # input feature maps
        out_channels: int,  # image channels
        w_dim: int,  # width of w
        conv_clamp: float | None = None,  # clamp outputs to +-this in reduced precision
    ):
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = EqualLinear(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        # Without demodulation the equalised-lr gain must be applied; on the styles is cheapest.
        self.weight_gain = 1.0 / math.sqrt(in_channels)

    def forward(self, x: torch.Tensor, w: torch.Tensor, reduced: bool) -> torch.Tensor:
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x, self.weight, styles, demodulate=False, fused=False)
        clamp = self.conv_clamp if reduced else None
        return bias_act(x, self.bias, "linear", clamp=clamp)


class SynthesisBlock(nn.Module):
    """One resolution: (x at R/2, img at R/2) -> (x at R, img at R); the first block starts
    from the learned 4x4 constant."""

    def __init__(
        self,
        in_channels: int,  # feature maps from the previous block (0: first block)
        out_channels: int,  # feature maps at this resolution
        w_dim: int,  # width of w
        resolution: int,  # side length of this block's output
        img_channels: int,  # 1 (grayscale) or 3
        use_reduced: bool,  # this block runs in bfloat16 on CUDA
        conv_clamp: float | None,  # clamp for reduced precision
    ):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.resolution = resolution
        self.use_reduced = use_reduced
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn(out_channels, 4, 4))
            self.conv0 = None
        else:
            self.conv0 = SynthesisLayer(
                in_channels, out_channels, w_dim, resolution, up=2, conv_clamp=conv_clamp
            )
        self.conv1 = SynthesisLayer(
            out_channels, out_channels, w_dim, resolution, conv_clamp=conv_clamp
        )
        self.torgb = ToRGB(out_channels, img_channels, w_dim, conv_clamp=conv_clamp)
        self.register_buffer("resample_filter", fir_filter(), persistent=False)
        self.num_conv = 1 if in_channels == 0 else 2
        self.num_ws = self.num_conv + 1  # the toRGB shares the next block's first w

    def forward(
        self,
        x: torch.Tensor | None,
        img: torch.Tensor | None,
        ws: torch.Tensor,
        noise_mode: NoiseMode,
        noise_rows: NoiseRows = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        assert ws.ndim == 3 and ws.shape[1] == self.num_ws, ws.shape
        reduced = self.use_reduced and ws.device.type in REDUCED_PRECISION_DEVICES
        dtype = torch.bfloat16 if reduced else torch.float32
        if self.conv0 is None:
            x = self.const.to(dtype).unsqueeze(0).expand(ws.shape[0], -1, -1, -1)
            x = self.conv1(x, ws[:, 0], noise_mode, reduced, noise_rows)
        else:
            assert x is not None and x.shape[1:] == (
                self.in_channels, self.resolution // 2, self.resolution // 2,
            ), x.shape  # fmt: skip
            x = self.conv0(x.to(dtype), ws[:, 0], noise_mode, reduced, noise_rows)
            x = self.conv1(x, ws[:, 1], noise_mode, reduced, noise_rows)
        y = self.torgb(x, ws[:, self.num_conv], reduced).float()
        img = y if img is None else upsample2d(img, self.resample_filter) + y
        return x, img


class SynthesisNetwork(nn.Module):
    """ws (N, num_ws, w_dim) -> image (N, C, R, R)."""

    def __init__(
        self,
        w_dim: int,  # width of w
        resolution: int,  # output side length, power of two 32..1024
        img_channels: int,  # 1 or 3
        channel_base: int = 32768,  # feature maps at resolution r: min(base // r, max)
        channel_max: int = 512,
        num_fp16_res: int = 4,  # top resolutions in reduced precision (CUDA only)
        conv_clamp: float | None = 256.0,  # clamp for reduced precision
    ):
        super().__init__()
        log2 = _check_resolution(resolution, img_channels)
        self.w_dim, self.resolution, self.img_channels = w_dim, resolution, img_channels
        self.resolutions = [2**i for i in range(2, log2 + 1)]
        reduced_from = 2 ** max(log2 + 1 - num_fp16_res, 3)
        self.blocks = nn.ModuleDict()
        for res in self.resolutions:
            in_ch = 0 if res == 4 else channels_at(res // 2, channel_base, channel_max)
            out_ch = channels_at(res, channel_base, channel_max)
            self.blocks[f"b{res}"] = SynthesisBlock(
                in_ch, out_ch, w_dim, res, img_channels,
                use_reduced=num_fp16_res > 0 and res >= reduced_from, conv_clamp=conv_clamp,
            )  # fmt: skip
        self.num_ws = sum(b.num_conv for b in self.blocks.values()) + 1

    def forward(
        self, ws: torch.Tensor, noise_mode: NoiseMode = "random", noise_rows: NoiseRows = None
    ) -> torch.Tensor:
        assert ws.ndim == 3 and ws.shape[1:] == (self.num_ws, self.w_dim), ws.shape
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, not {noise_mode!r}")
        x = img = None
        idx = 0
        for block in self.blocks.values():
            x, img = block(x, img, ws[:, idx : idx + block.num_ws], noise_mode, noise_rows)
            idx += block.num_conv
        assert img is not None
        return img


class Generator(nn.Module):
    """StyleGAN2 generator: z (N, z_dim) -> images (N, channels, resolution, resolution).

    Built from plain-python kwargs (kept in `init_kwargs`), so a snapshot can rebuild it.
    """

    def __init__(
        self,
        z_dim: int = 512,  # latent width
        w_dim: int = 512,  # intermediate latent width
        resolution: int = 256,  # output side length, power of two 32..1024
        channels: int = 1,  # image channels: 1 (grayscale) or 3
        channel_base: int = 32768,  # feature maps at resolution r: min(base // r, max)
        channel_max: int = 512,
        mapping_layers: int = 8,  # depth of the mapping network
        mapping_lr_multiplier: float = 0.01,  # the mapping learns 100x slower
        num_fp16_res: int = 4,  # top resolutions in bfloat16 (CUDA only)
        conv_clamp: float | None = 256.0,  # clamp for reduced precision layers
    ):
        super().__init__()
        self.init_kwargs: dict[str, Any] = {
            "z_dim": z_dim, "w_dim": w_dim, "resolution": resolution, "channels": channels,
            "channel_base": channel_base, "channel_max": channel_max,
            "mapping_layers": mapping_layers, "mapping_lr_multiplier": mapping_lr_multiplier,
            "num_fp16_res": num_fp16_res, "conv_clamp": conv_clamp,
        }  # fmt: skip
        self.z_dim, self.resolution, self.channels = z_dim, resolution, channels
        self.synthesis = SynthesisNetwork(
            w_dim, resolution, channels, channel_base, channel_max, num_fp16_res, conv_clamp
        )
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(
            z_dim, w_dim, self.num_ws, mapping_layers, lr_multiplier=mapping_lr_multiplier
        )

    def forward(
        self,
        z: torch.Tensor,
        truncation_psi: float = 1.0,
        noise_mode: NoiseMode = "random",
        update_w_avg: bool = False,
    ) -> torch.Tensor:
        ws = self.mapping(z, truncation_psi=truncation_psi, update_w_avg=update_w_avg)
        img = self.synthesis(ws, noise_mode=noise_mode)
        assert img.shape == (z.shape[0], self.channels, self.resolution, self.resolution)
        return img

    @torch.no_grad()
    def sample(
        self,
        n: int,
        rng: torch.Generator,
        truncation_psi: float = 1.0,
        noise_mode: NoiseMode = "const",
        batch_size: int = 32,
    ) -> torch.Tensor:
        """n images (n, C, R, R) float32 in [-1, 1] on the module's device.

        z ~ N(0, I) is drawn from `rng` on the CPU, so the same seed gives the same latents on
        any device; the noise is the stored constant (deterministic) unless noise_mode says
        otherwise ('random' draws from torch's global RNG).
        """
        device = self.mapping.w_avg.device
        z = torch.randn(n, self.z_dim, generator=rng)
        out = [
            self(z[i : i + batch_size].to(device), truncation_psi, noise_mode).clamp(-1.0, 1.0)
            for i in range(0, n, batch_size)
        ]
        return (
            torch.cat(out)
            if out
            else torch.empty(0, self.channels, self.resolution, self.resolution)
        )


# --------------------------------------------------------------------------------------------
# Discriminator.


class DiscriminatorBlock(nn.Module):
    """Residual block: (N, tmp, R, R) -> (N, out, R/2, R/2); the first one reads the image."""

    def __init__(
        self,
        in_channels: int,  # feature maps from the previous block (0: first block, reads RGB)
        tmp_channels: int,  # feature maps at this resolution
        out_channels: int,  # feature maps at half this resolution
        img_channels: int,  # 1 or 3
        resolution: int,  # input side length
        use_reduced: bool,  # bfloat16 on CUDA
        conv_clamp: float | None,  # clamp for reduced precision
    ):
        super().__init__()
        self.in_channels, self.img_channels, self.resolution = in_channels, img_channels, resolution
        self.use_reduced = use_reduced
        self.fromrgb = (
            EqualConv2d(img_channels, tmp_channels, 1, conv_clamp=conv_clamp)
            if in_channels == 0
            else None
        )
        self.conv0 = EqualConv2d(tmp_channels, tmp_channels, 3, conv_clamp=conv_clamp)
        self.conv1 = EqualConv2d(tmp_channels, out_channels, 3, down=2, conv_clamp=conv_clamp)
        self.skip = EqualConv2d(
            tmp_channels, out_channels, 1, bias=False, activation="linear", down=2
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        reduced = self.use_reduced and x.device.type in REDUCED_PRECISION_DEVICES
        dtype = torch.bfloat16 if reduced else torch.float32
        expect = self.img_channels if self.fromrgb is not None else self.in_channels
        assert x.shape[1:] == (expect, self.resolution, self.resolution), x.shape
        x = x.to(dtype)
        if self.fromrgb is not None:
            x = self.fromrgb(x, reduced=reduced)
        # Both branches scaled by 1/sqrt(2): the sum keeps the variance of its inputs.
        y = self.skip(x, gain=math.sqrt(0.5))
        x = self.conv0(x, reduced=reduced)
        x = self.conv1(x, gain=math.sqrt(0.5), reduced=reduced)
        return y + x


class Discriminator(nn.Module):
    """Residual StyleGAN2 discriminator: images (N, C, R, R) -> logits (N, 1)."""

    def __init__(
        self,
        resolution: int = 256,  # input side length, power of two 32..1024
        channels: int = 1,  # image channels
        channel_base: int = 32768,  # feature maps at resolution r: min(base // r, max)
        channel_max: int = 512,
        mbstd_group: int = 4,  # minibatch-std group size (capped by the batch)
        mbstd_channels: int = 1,  # features the std is computed over separately
        num_fp16_res: int = 4,  # top resolutions in bfloat16 (CUDA only)
        conv_clamp: float | None = 256.0,  # clamp for reduced precision layers
    ):
        super().__init__()
        log2 = _check_resolution(resolution, channels)
        self.init_kwargs: dict[str, Any] = {
            "resolution": resolution, "channels": channels, "channel_base": channel_base,
            "channel_max": channel_max, "mbstd_group": mbstd_group,
            "mbstd_channels": mbstd_channels, "num_fp16_res": num_fp16_res,
            "conv_clamp": conv_clamp,
        }  # fmt: skip
        self.resolution, self.channels = resolution, channels
        self.mbstd_group, self.mbstd_channels = mbstd_group, mbstd_channels
        reduced_from = 2 ** max(log2 + 1 - num_fp16_res, 3)
        self.blocks = nn.ModuleDict()
        for i in range(log2, 2, -1):
            res = 2**i
            self.blocks[f"b{res}"] = DiscriminatorBlock(
                0 if res == resolution else channels_at(res, channel_base, channel_max),
                channels_at(res, channel_base, channel_max),
                channels_at(res // 2, channel_base, channel_max),
                channels, res, use_reduced=num_fp16_res > 0 and res >= reduced_from,
                conv_clamp=conv_clamp,
            )  # fmt: skip
        c4 = channels_at(4, channel_base, channel_max)
        self.conv = EqualConv2d(c4 + mbstd_channels, c4, 3)
        self.fc = EqualLinear(c4 * 16, c4, activation="lrelu")
        self.out = EqualLinear(c4, 1)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        assert img.ndim == 4 and img.shape[1:] == (
            self.channels,
            self.resolution,
            self.resolution,
        ), img.shape
        x = img
        for block in self.blocks.values():
            x = block(x)
        x = minibatch_stddev(x.float(), self.mbstd_group, self.mbstd_channels)
        x = self.conv(x)
        x = self.fc(x.flatten(1))
        logits = self.out(x)
        assert logits.shape == (img.shape[0], 1), logits.shape
        return logits
