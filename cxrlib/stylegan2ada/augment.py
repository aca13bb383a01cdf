"""Adaptive discriminator augmentation (ADA): the augmentation pipe and the controller of p.

Karras et al. 2020, "Training Generative Adversarial Networks with Limited Data" (written from
the paper, not from its code). With few real images the discriminator D memorises them; ADA
augments every image D sees, reals and fakes alike, each operation applied with probability
p * multiplier, and a controller raises p while D overfits.

The generator never learns to produce augmented images as long as every operation is
*non-leaking*: the augmented distribution must still determine the clean one. Each operation
here is applied with probability p * multiplier < 1 and draws its parameter from a
distribution under which "no change" stays the most likely outcome (a flip happens with
probability p/2 < 1/2; rot90 leaves the image alone with probability 1 - 3p/4, more than any
one rotation), or from a continuous distribution whose mixture with the identity is invertible.

Operations, the paper's 'bgc' set, in this order:
- pixel blitting: x-flip, rotation by a multiple of 90 degrees, integer translation (up to
  `xint_max` of the image size);
- general geometric: isotropic scaling (2^N(0, scale_std)), pre-rotation (uniform, at most
  `rotate_max` * pi), anisotropic scaling (2^N(0, aniso_std) in x, its inverse in y),
  post-rotation, fractional translation (N(0, xfrac_std) of the image size). The two rotations
  each happen with probability 1 - sqrt(1 - p), so that at least one happens with probability p;
- colour: brightness (+N(0, brightness_std)), contrast (x 2^N(0, contrast_std)), luma flip,
  hue rotation (uniform, at most `hue_max` * pi), saturation (x 2^N(0, saturation_std)).

All geometric operations of one image compose into one 3x3 homogeneous matrix, applied once
(`warp`): reflect padding wide enough for the transformed extent (no black corners, which D
could use to tell augmented images apart), then 2x upsampling, bilinear sampling at 2x, and
2x downsampling. The paper does the 2x resampling with an orthogonal wavelet (sym6); here the
biorthogonal Cohen-Daubechies-Feauveau 9/7 pair (the JPEG 2000 wavelet) is used instead: its
filters are symmetric, so maps that send the pixel grid onto itself (flips, 90-degree
rotations, integer shifts) are exact, and biorthogonal, so downsampling undoes upsampling and
the identity warp returns the image unchanged (both are tested). The 7-tap synthesis filter
interpolates for the upsampling; the 9-tap analysis filter is the low-pass before decimation
that keeps the frequencies a warp moves above the Nyquist limit from aliasing back.

All colour operations compose into one affine colour matrix per image, applied once. For RGB
it is the paper's 4x4 matrix on homogeneous (r, g, b, 1); the luma axis is v = (1, 1, 1)/sqrt(3).
For grayscale (one channel) it is a 2x2 matrix acting on (x, 1), i.e. x -> a x + b:
- brightness adds b, contrast multiplies by c, exactly as for RGB;
- luma flip is the paper's reflection I - 2 v v^T with v = (1): x -> -x, the negative image,
  inverted about mid-gray 0 of the [-1, 1] range (a fixed pixel-wise map, not an inversion
  about each image's mean, which would not be a colour matrix and would depend on content);
- hue is a rotation about the luma axis and saturation scales what is orthogonal to it; a gray
  image lies on that axis, so both would be the identity: they are disabled for channels == 1.

Images are (N, C, H, W) floats in about [-1, 1]; random draws come from torch's global RNG on
the images' device (seed it for reproducibility). At p == 0 `AugmentPipe` returns its input
unchanged, and images whose drawn transform is the identity are not resampled.
"""

from __future__ import annotations

import logging
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

log = logging.getLogger(__name__)

# CDF 9/7 low-pass filters (centre tap in the middle). Analysis: sums to 1, the anti-alias
# filter before 2x decimation. Synthesis: its even and odd taps each sum to 1, the
# interpolator after zero insertion. Together sum_k a[k] s[k + 2m] = delta(m): biorthogonal.
CDF97_ANALYSIS: tuple[float, ...] = (
    0.026748757410810,
    -0.016864118442875,
    -0.078223266528990,
    0.266864118442875,
    0.602949018236360,
    0.266864118442875,
    -0.078223266528990,
    -0.016864118442875,
    0.026748757410810,
)
CDF97_SYNTHESIS: tuple[float, ...] = (
    -0.091271763114250,
    -0.057543526228500,
    0.591271763114250,
    1.115087052456994,
    0.591271763114250,
    -0.057543526228500,
    -0.091271763114250,
)
# Reach of each filter in pixels of the 2x grid.
_UP_RADIUS = len(CDF97_SYNTHESIS) // 2  # 3
_DOWN_RADIUS = len(CDF97_ANALYSIS) // 2  # 4
# Extra input pixels padded beyond what the sampling grid reaches, so that the zero-padded
# edge of the upsampling convolution (1.5 px) never reaches a sampled point.
_PAD_MARGIN = 2

AUGMENT_MODES: tuple[str, ...] = ("ada", "fixed", "off")


# --- matrices -------------------------------------------------------------------------------
# Geometric matrices act on centred pixel coordinates (x - cx, y - cy, 1): x to the right,
# y down, centre c = ((W - 1)/2, (H - 1)/2). Each builder takes (N,) tensors, returns (N, 3, 3).


def _stack_matrix(rows: list[list[Tensor | float]], like: Tensor) -> Tensor:
    """Build an (N, k, k) matrix from a k x k nested list of (N,) tensors and scalars."""
    n = like.shape[0]

    def column(v: Tensor | float) -> Tensor:
        if isinstance(v, Tensor):
            return v.to(like.dtype)
        return torch.full((n,), v, dtype=like.dtype, device=like.device)

    return torch.stack([torch.stack([column(v) for v in row], dim=-1) for row in rows], dim=-2)


def translate2d(tx: Tensor, ty: Tensor) -> Tensor:
    """Translation by (tx, ty) pixels; (N,) each -> (N, 3, 3)."""
    return _stack_matrix([[1.0, 0.0, tx], [0.0, 1.0, ty], [0.0, 0.0, 1.0]], tx)


def scale2d(sx: Tensor, sy: Tensor) -> Tensor:
    """Scaling by sx along x and sy along y about the image centre; (N,) each -> (N, 3, 3)."""
    return _stack_matrix([[sx, 0.0, 0.0], [0.0, sy, 0.0], [0.0, 0.0, 1.0]], sx)


def rotate2d(theta: Tensor) -> Tensor:
    """Rotation by theta radians about the image centre; (N,) -> (N, 3, 3)."""
    c, s = torch.cos(theta), torch.sin(theta)
    return _stack_matrix([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]], theta)


def rotate90_2d(k: Tensor) -> Tensor:
    """Rotation by k * 90 degrees, entries exact (cos/sin of float pi/2 are not); (N,) int."""
    k = torch.remainder(k, 4)
    cos = torch.tensor([1.0, 0.0, -1.0, 0.0], device=k.device)[k]
    sin = torch.tensor([0.0, 1.0, 0.0, -1.0], device=k.device)[k]
    return _stack_matrix([[cos, -sin, 0.0], [sin, cos, 0.0], [0.0, 0.0, 1.0]], cos)


def _color_eye(n: int, channels: int, device: torch.device) -> Tensor:
    """(N, C + 1, C + 1) identity colour matrices on homogeneous (x_1 .. x_C, 1)."""
    return torch.eye(channels + 1, device=device).expand(n, -1, -1).clone()


def _embed_linear(linear: Tensor) -> Tensor:
    """(N, C, C) linear colour map -> (N, C + 1, C + 1) homogeneous matrix."""
    n, c, _ = linear.shape
    out = torch.zeros(n, c + 1, c + 1, dtype=linear.dtype, device=linear.device)
    out[:, :c, :c] = linear
    out[:, c, c] = 1.0
    return out


def color_translate(b: Tensor, channels: int) -> Tensor:
    """Add b (N,) to every channel: brightness."""
    m = _color_eye(b.shape[0], channels, b.device)
    m[:, :channels, channels] = b[:, None]
    return m


def color_scale(c: Tensor, channels: int) -> Tensor:
    """Multiply every channel by c (N,) about 0, mid-gray of [-1, 1]: contrast."""
    eye = torch.eye(channels, device=c.device)
    return _embed_linear(c[:, None, None] * eye)


def luma_axis(channels: int, device: torch.device | None = None) -> Tensor:
    """The unit gray axis (1, ..., 1)/sqrt(C), (C,)."""
    return torch.full((channels,), 1.0 / math.sqrt(channels), device=device)


def color_luma_flip(i: Tensor, channels: int) -> Tensor:
    """Reflect luma (the component along the gray axis) when i (N,) is 1: I - 2 i v v^T."""
    v = luma_axis(channels, i.device)
    eye = torch.eye(channels, device=i.device)
    return _embed_linear(eye - 2.0 * i.to(v.dtype)[:, None, None] * torch.outer(v, v))


def color_hue_rotate(theta: Tensor) -> Tensor:
    """RGB rotation by theta (N,) radians about the gray axis (Rodrigues' formula)."""
    v = luma_axis(3, theta.device)
    cross = torch.tensor(
        [[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]], device=theta.device
    )
    c, s = torch.cos(theta)[:, None, None], torch.sin(theta)[:, None, None]
    eye, vv = torch.eye(3, device=theta.device), torch.outer(v, v)
    return _embed_linear(c * eye + s * cross + (1.0 - c) * vv)


def color_saturate(s: Tensor) -> Tensor:
    """RGB: keep the gray component, multiply the chroma (orthogonal to gray) by s (N,)."""
    v = luma_axis(3, s.device)
    vv = torch.outer(v, v)
    eye = torch.eye(3, device=s.device)
    return _embed_linear(vv + s[:, None, None] * (eye - vv))


# --- resampling -----------------------------------------------------------------------------


def reflect_pad(images: Tensor, left: int, right: int, top: int, bottom: int) -> Tensor:
    """Mirror images about their edge pixels by any amount (F.pad's reflect stops at size - 1).

    (N, C, H, W) -> (N, C, H + top + bottom, W + left + right); differentiable (a gather).
    """
    _, _, h, w = images.shape

    def mirror(size: int, lo: int, hi: int) -> Tensor:
        idx = torch.arange(-lo, size + hi, device=images.device)
        if size == 1:
            return torch.zeros_like(idx)
        period = 2 * (size - 1)
        idx = torch.remainder(idx, period)
        return torch.where(idx >= size, period - idx, idx)

    out = images.index_select(2, mirror(h, top, bottom))
    return out.index_select(3, mirror(w, left, right))


def _separable(taps: tuple[float, ...], like: Tensor) -> tuple[Tensor, Tensor]:
    """The 1D filter as (1, 1, k, 1) and (1, 1, 1, k) conv kernels."""
    f = torch.tensor(taps, dtype=like.dtype, device=like.device)
    return f.view(1, 1, -1, 1), f.view(1, 1, 1, -1)


def upsample2x(images: Tensor) -> Tensor:
    """Interpolate onto the 2x grid: (N, C, H, W) -> (N, C, 2H - 1, 2W - 1).

    Output pixel m sits at input position m / 2 (input pixel k is output pixel 2k). The last
    `_UP_RADIUS` output pixels on each side see zeros beyond the edge: pad before calling.
    """
    n, c, h, w = images.shape
    ky, kx = _separable(CDF97_SYNTHESIS, images)
    x = images.reshape(n * c, 1, h, w)
    # Transposed convolution with stride 2 = zero insertion followed by the filter.
    x = F.conv_transpose2d(x, ky, stride=(2, 1), padding=(_UP_RADIUS, 0))
    x = F.conv_transpose2d(x, kx, stride=(1, 2), padding=(0, _UP_RADIUS))
    return x.reshape(n, c, 2 * h - 1, 2 * w - 1)


def downsample2x(images: Tensor) -> Tensor:
    """Low-pass and decimate the 2x grid: (N, C, 2H + 7, 2W + 7) -> (N, C, H, W).

    Output pixel k is input pixel 2k + 4: the input carries the filter's reach (4 pixels of
    the 2x grid) on each side, so no padding is needed here.
    """
    n, c, h2, w2 = images.shape
    ky, kx = _separable(CDF97_ANALYSIS, images)
    x = images.reshape(n * c, 1, h2, w2)
    x = F.conv2d(x, ky, stride=(2, 1))
    x = F.conv2d(x, kx, stride=(1, 2))
    return x.reshape(n, c, x.shape[-2], x.shape[-1])


def warp(images: Tensor, matrices: Tensor) -> Tensor:
    """Resample each image through its 3x3 matrix, reflect-padded and anti-aliased.

    images: (N, C, H, W) float. matrices: (N, 3, 3) mapping centred *output* pixel coordinates
    to centred *input* pixel coordinates (the inverse of the transform seen on the image).
    Returns (N, C, H, W): output(q) = input(M q), input mirrored about its edges as far as
    needed, sampled bilinearly on the 2x-upsampled input and decimated back with a low-pass.
    """
    n, _, h, w = images.shape
    assert matrices.shape == (n, 3, 3), f"matrices {tuple(matrices.shape)} for {n} images"
    m = matrices.to(images.dtype)
    cx, cy = (w - 1) / 2, (h - 1) / 2
    # Output coordinates the 2x grid must cover: the image plus the decimation filter's reach.
    reach = _DOWN_RADIUS / 2
    corners = torch.tensor(
        [[sx * (cx + reach), sy * (cy + reach), 1.0] for sx in (-1, 1) for sy in (-1, 1)],
        dtype=m.dtype,
        device=m.device,
    )
    src = torch.einsum("nij,kj->nki", m, corners)
    # One sync for the batch: the padding is shared so the batch resamples as one tensor.
    lo = (-(src[..., :2].amin(dim=(0, 1)) + torch.tensor([cx, cy], device=m.device))).tolist()
    hi = (src[..., :2].amax(dim=(0, 1)) - torch.tensor([cx, cy], device=m.device)).tolist()
    pad_l = max(0, math.ceil(lo[0] - 1e-3)) + _PAD_MARGIN
    pad_t = max(0, math.ceil(lo[1] - 1e-3)) + _PAD_MARGIN
    pad_r = max(0, math.ceil(hi[0] - 1e-3)) + _PAD_MARGIN
    pad_b = max(0, math.ceil(hi[1] - 1e-3)) + _PAD_MARGIN
    up = upsample2x(reflect_pad(images, pad_l, pad_r, pad_t, pad_b))
    hu, wu = up.shape[-2:]

    # The 2x output grid: pixel j is output coordinate (j - 4)/2, i.e. 2H + 7 rows.
    ys = (torch.arange(2 * h + 2 * _DOWN_RADIUS - 1, device=m.device, dtype=m.dtype) - 4) / 2
    xs = (torch.arange(2 * w + 2 * _DOWN_RADIUS - 1, device=m.device, dtype=m.dtype) - 4) / 2
    gy, gx = torch.meshgrid(ys - cy, xs - cx, indexing="ij")
    q = torch.stack([gx, gy, torch.ones_like(gx)], dim=-1)  # (Ho, Wo, 3)
    p = torch.einsum("nij,hwj->nhwi", m, q)[..., :2]  # centred input coordinates
    # Input coordinate -> index on the upsampled padded grid -> grid_sample's [-1, 1].
    ix = 2.0 * (p[..., 0] + cx + pad_l)
    iy = 2.0 * (p[..., 1] + cy + pad_t)
    grid = torch.stack([ix / (wu - 1) * 2 - 1, iy / (hu - 1) * 2 - 1], dim=-1)
    sampled = F.grid_sample(up, grid, mode="bilinear", padding_mode="border", align_corners=True)
    return downsample2x(sampled)


def apply_color(images: Tensor, matrices: Tensor) -> Tensor:
    """Apply per-image affine colour matrices: (N, C, H, W) with (N, C + 1, C + 1)."""
    n, c = images.shape[:2]
    assert matrices.shape == (n, c + 1, c + 1), f"matrices {tuple(matrices.shape)}, images C={c}"
    m = matrices.to(images.dtype)
    out = torch.einsum("nij,njhw->nihw", m[:, :c, :c], images)
    return out + m[:, :c, c, None, None]


# --- the pipe -------------------------------------------------------------------------------


def _prob(p: float, multiplier: float) -> float:
    return min(max(p * multiplier, 0.0), 1.0)


class AugmentPipe(nn.Module):
    """ADA's 'bgc' augmentations of a batch, each applied with probability p * multiplier.

    `p` is a buffer (0-dim float32) so it moves with `.to(device)` and is saved in the state
    dict; the controller or the training loop writes it. Multipliers of 0 switch an operation
    off; the `*_std` / `*_max` arguments set its strength (units in the module docstring).
    """

    def __init__(
        self,
        channels: int = 1,  # image channels: 1 (gray) or 3 (RGB)
        xflip: float = 1.0,  # probability multiplier of the horizontal flip
        rotate90: float = 1.0,  # ... of rotation by a random multiple of 90 degrees
        xint: float = 1.0,  # ... of integer translation
        xint_max: float = 0.125,  # integer translation range, fraction of image size
        scale: float = 1.0,  # ... of isotropic scaling
        rotate: float = 1.0,  # ... of arbitrary rotation (pre and post)
        aniso: float = 1.0,  # ... of anisotropic scaling
        xfrac: float = 1.0,  # ... of fractional translation
        scale_std: float = 0.2,  # std of log2 of the isotropic scale
        rotate_max: float = 1.0,  # rotation range, fraction of pi
        aniso_std: float = 0.2,  # std of log2 of the anisotropic scale
        xfrac_std: float = 0.125,  # std of fractional translation, fraction of image size
        brightness: float = 1.0,  # ... of brightness shift
        contrast: float = 1.0,  # ... of contrast scaling
        lumaflip: float = 1.0,  # ... of luma flip (negative image)
        hue: float = 0.0,  # ... of hue rotation (RGB only)
        saturation: float = 0.0,  # ... of saturation scaling (RGB only)
        brightness_std: float = 0.2,  # std of the brightness shift, in [-1, 1] units
        contrast_std: float = 0.5,  # std of log2 of the contrast factor
        hue_max: float = 1.0,  # hue rotation range, fraction of pi
        saturation_std: float = 1.0,  # std of log2 of the saturation factor
    ):
        super().__init__()
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 (gray) or 3 (RGB), got {channels}")
        if channels == 1 and (hue or saturation):
            # A gray image lies on the luma axis: hue and saturation cannot change it.
            log.warning("hue and saturation are meaningless for 1 channel: disabled")
            hue = saturation = 0.0
        values = dict(
            xflip=xflip, rotate90=rotate90, xint=xint, xint_max=xint_max, scale=scale,
            rotate=rotate, aniso=aniso, xfrac=xfrac, scale_std=scale_std, rotate_max=rotate_max,
            aniso_std=aniso_std, xfrac_std=xfrac_std, brightness=brightness, contrast=contrast,
            lumaflip=lumaflip, hue=hue, saturation=saturation, brightness_std=brightness_std,
            contrast_std=contrast_std, hue_max=hue_max, saturation_std=saturation_std,
        )  # fmt: skip
        for name, value in values.items():
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be finite and >= 0, got {value}")
        self.channels = channels
        self.xflip, self.rotate90, self.xint, self.xint_max = xflip, rotate90, xint, xint_max
        self.scale, self.rotate, self.aniso, self.xfrac = scale, rotate, aniso, xfrac
        self.scale_std, self.rotate_max = scale_std, rotate_max
        self.aniso_std, self.xfrac_std = aniso_std, xfrac_std
        self.brightness, self.contrast, self.lumaflip = brightness, contrast, lumaflip
        self.hue, self.saturation = hue, saturation
        self.brightness_std, self.contrast_std = brightness_std, contrast_std
        self.hue_max, self.saturation_std = hue_max, saturation_std
        self.register_buffer("p", torch.zeros((), dtype=torch.float32))

    def extra_repr(self) -> str:
        return f"channels={self.channels}, p={float(self.p):.4f}"

    def forward(self, images: Tensor) -> Tensor:
        """Augment (N, C, H, W) float images in about [-1, 1]; same shape, dtype and device."""
        assert images.ndim == 4 and images.shape[1] == self.channels, (
            f"expected (N, {self.channels}, H, W), got {tuple(images.shape)}"
        )
        p = float(self.p)
        if p <= 0.0:
            return images
        n, _, h, w = images.shape
        # Resample in at least float32: half precision would blur the exact pixel-grid maps.
        x = images.to(torch.promote_types(images.dtype, torch.float32))
        geom = self.geometric_matrices(n, h, w, p, images.device)
        if geom is not None:
            eye = torch.eye(3, device=images.device)
            # Images drawn the identity transform skip the resampling: less work, exact.
            moved = (geom != eye).any(dim=2).any(dim=1).nonzero().squeeze(1)
            if moved.numel() > 0:
                x = x.index_copy(0, moved, warp(x.index_select(0, moved), geom[moved]))
        color = self.color_matrices(n, p, images.device)
        if color is not None:
            x = apply_color(x, color)
        return x.to(images.dtype)

    def geometric_matrices(
        self, n: int, h: int, w: int, p: float, device: torch.device
    ) -> Tensor | None:
        """Draw the (N, 3, 3) output -> input matrices, or None when every op is off.

        Ops are composed in the paper's order; each op's forward transform A is appended to
        the sampling matrix as its inverse, G = A_1^-1 A_2^-1 ... (images not drawn for an op
        get its identity).
        """
        g = torch.eye(3, device=device).expand(n, -1, -1)
        used = False

        def draw(multiplier: float, prob: float | None = None) -> Tensor | None:
            prob = _prob(p, multiplier) if prob is None else prob
            return torch.rand(n, device=device) < prob if prob > 0 else None

        if (mask := draw(self.xflip)) is not None:
            i = torch.randint(0, 2, (n,), device=device) * mask
            g, used = g @ scale2d(1.0 - 2.0 * i, torch.ones(n, device=device)), True
        if (mask := draw(self.rotate90)) is not None:
            k = torch.randint(0, 4, (n,), device=device) * mask
            g, used = g @ rotate90_2d(-k), True
        if (mask := draw(self.xint)) is not None:
            t = (torch.rand(n, 2, device=device) * 2 - 1) * self.xint_max * mask[:, None]
            g, used = g @ translate2d(-torch.round(t[:, 0] * w), -torch.round(t[:, 1] * h)), True
        if (mask := draw(self.scale)) is not None:
            s = torch.where(mask, torch.exp2(torch.randn(n, device=device) * self.scale_std), 1.0)
            g, used = g @ scale2d(1.0 / s, 1.0 / s), True
        # Two rotations, each with probability 1 - sqrt(1 - p'): at least one with probability p'.
        p_rot = 1.0 - math.sqrt(1.0 - _prob(p, self.rotate))
        if (mask := draw(self.rotate, p_rot)) is not None:
            theta = (torch.rand(n, device=device) * 2 - 1) * math.pi * self.rotate_max * mask
            g, used = g @ rotate2d(-theta), True
        if (mask := draw(self.aniso)) is not None:
            s = torch.where(mask, torch.exp2(torch.randn(n, device=device) * self.aniso_std), 1.0)
            g, used = g @ scale2d(1.0 / s, s), True
        if (mask := draw(self.rotate, p_rot)) is not None:
            theta = (torch.rand(n, device=device) * 2 - 1) * math.pi * self.rotate_max * mask
            g, used = g @ rotate2d(-theta), True
        if (mask := draw(self.xfrac)) is not None:
            t = torch.randn(n, 2, device=device) * self.xfrac_std * mask[:, None]
            g, used = g @ translate2d(-t[:, 0] * w, -t[:, 1] * h), True
        return g if used else None

    def color_matrices(self, n: int, p: float, device: torch.device) -> Tensor | None:
        """Draw the (N, C + 1, C + 1) colour matrices, or None when every op is off.

        Each op left-multiplies the matrix: the image goes through them in order.
        """
        c = self.channels
        m = _color_eye(n, c, device)
        used = False

        def draw(multiplier: float) -> Tensor | None:
            prob = _prob(p, multiplier)
            return torch.rand(n, device=device) < prob if prob > 0 else None

        if (mask := draw(self.brightness)) is not None:
            b = torch.randn(n, device=device) * self.brightness_std * mask
            m, used = color_translate(b, c) @ m, True
        if (mask := draw(self.contrast)) is not None:
            s = torch.where(
                mask, torch.exp2(torch.randn(n, device=device) * self.contrast_std), 1.0
            )
            m, used = color_scale(s, c) @ m, True
        if (mask := draw(self.lumaflip)) is not None:
            i = torch.randint(0, 2, (n,), device=device) * mask
            m, used = color_luma_flip(i, c) @ m, True
        if c == 3 and (mask := draw(self.hue)) is not None:
            theta = (torch.rand(n, device=device) * 2 - 1) * math.pi * self.hue_max * mask
            m, used = color_hue_rotate(theta) @ m, True
        if c == 3 and (mask := draw(self.saturation)) is not None:
            s = torch.where(
                mask, torch.exp2(torch.randn(n, device=device) * self.saturation_std), 1.0
            )
            m, used = color_saturate(s) @ m, True
        return m if used else None


# --- the controller -------------------------------------------------------------------------


class AdaController:
    """Adjusts p from the overfitting heuristic r_t = E[sign(D(real))] (paper, section 3).

    The training loop calls `accumulate(real_logits)` after each D step on reals and
    `update(pipe)` every `interval` steps: p moves by (batch_size * interval) /
    (adjust_kimg * 1000) up when r_t > target (D is too sure about reals: overfitting), down
    when r_t < target, so p can cross [0, 1] in `adjust_kimg` thousand real images.
    """

    def __init__(
        self,
        target: float = 0.6,  # the r_t that ADA holds (paper: 0.6)
        adjust_kimg: float = 500.0,  # kimg of real images for p to move by 1
        batch_size: int = 64,  # real images per training step
        interval: int = 4,  # training steps between updates
    ):
        if not -1.0 <= target <= 1.0:
            raise ValueError(f"target must be in [-1, 1], got {target}")
        if adjust_kimg <= 0 or batch_size < 1 or interval < 1:
            raise ValueError("adjust_kimg must be > 0, batch_size and interval >= 1")
        self.target = float(target)
        self.adjust_kimg = float(adjust_kimg)
        self.batch_size = int(batch_size)
        self.interval = int(interval)
        self.p = 0.0
        self._sum: Tensor | float = 0.0  # a tensor on the logits' device: no sync per step
        self._count = 0

    @property
    def step(self) -> float:
        """Change of p per update."""
        return self.batch_size * self.interval / (self.adjust_kimg * 1000.0)

    def accumulate(self, real_logits: Tensor) -> None:
        """Add sign(D(x)) of real images, logits of any shape (one per image)."""
        self._sum = self._sum + torch.sign(real_logits.detach()).sum(dtype=torch.float64)
        self._count += real_logits.numel()

    def update(self, pipe: AugmentPipe | None = None) -> tuple[float, float]:
        """Move p by one step towards holding r_t at target, write it into `pipe.p`.

        Returns (p, r_t). With nothing accumulated since the last update, p stays and r_t is
        NaN.
        """
        if self._count == 0:
            return self.p, math.nan
        r_t = float(self._sum) / self._count
        direction = (r_t > self.target) - (r_t < self.target)
        self.p = min(max(self.p + direction * self.step, 0.0), 1.0)
        self._sum, self._count = 0.0, 0
        if pipe is not None:
            self.apply(pipe)
        return self.p, r_t

    def apply(self, pipe: AugmentPipe) -> None:
        """Write the controller's p into the pipe's buffer."""
        with torch.no_grad():
            pipe.p.fill_(self.p)

    def state_dict(self) -> dict[str, float | int]:
        """Plain numbers (loads with torch.load(weights_only=True))."""
        return {
            "p": self.p,
            "sum": float(self._sum),
            "count": self._count,
            "target": self.target,
            "adjust_kimg": self.adjust_kimg,
            "batch_size": self.batch_size,
            "interval": self.interval,
        }

    def load_state_dict(
        self, state: dict[str, float | int], pipe: AugmentPipe | None = None
    ) -> None:
        """Restore p and the partial accumulation (and write p into `pipe` when given).

        The settings come from the constructor (the run's config); a saved value that differs
        is logged, since resuming under a new config is allowed but worth seeing.
        """
        for key in ("target", "adjust_kimg", "batch_size", "interval"):
            if key in state and state[key] != getattr(self, key):
                log.warning("ADA %s was %s in the saved state, now %s", key, state[key],
                            getattr(self, key))  # fmt: skip
        self.p = float(state["p"])
        self._sum = float(state["sum"])
        self._count = int(state["count"])
        if pipe is not None:
            self.apply(pipe)


def make_augment(
    mode: str,
    channels: int,
    p: float,
    *,
    target: float = 0.6,
    adjust_kimg: float = 500.0,
    batch_size: int = 64,
    interval: int = 4,
    **pipe_kwargs: float,
) -> tuple[AugmentPipe | None, AdaController | None]:
    """The augmentation for a training mode.

    'ada': a pipe and a controller, both starting at p; 'fixed': a pipe held at p, no
    controller; 'off': neither (D sees images as they are). Extra keyword arguments go to
    `AugmentPipe` (e.g. multipliers).
    """
    if mode not in AUGMENT_MODES:
        raise ValueError(f"augment mode must be one of {AUGMENT_MODES}, got {mode!r}")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"augment p must be in [0, 1], got {p}")
    if mode == "off":
        return None, None
    pipe = AugmentPipe(channels, **pipe_kwargs)
    with torch.no_grad():
        pipe.p.fill_(p)
    if mode == "fixed":
        return pipe, None
    controller = AdaController(target, adjust_kimg, batch_size, interval)
    controller.p = float(p)
    return pipe, controller
