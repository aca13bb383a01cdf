"""ADA augmentation: identity at p = 0, exact resampling, non-leaking ops, the p controller."""

from __future__ import annotations

import io
import math
import time

import pytest
import torch

from cxrlib.stylegan2ada.augment import (
    CDF97_ANALYSIS,
    CDF97_SYNTHESIS,
    AdaController,
    AugmentPipe,
    apply_color,
    color_hue_rotate,
    color_luma_flip,
    color_saturate,
    make_augment,
    rotate2d,
    rotate90_2d,
    warp,
)

GEOMETRIC = ("xflip", "rotate90", "xint", "scale", "rotate", "aniso", "xfrac")
COLOR = ("brightness", "contrast", "lumaflip", "hue", "saturation")


def only(op: str, p: float, channels: int = 1, **kwargs: float) -> AugmentPipe:
    """A pipe with every operation off except `op`, at probability p."""
    off = {name: 0.0 for name in GEOMETRIC + COLOR}
    off[op] = 1.0
    pipe = AugmentPipe(channels, **{**off, **kwargs})
    pipe.p.fill_(p)
    return pipe


def full(p: float, channels: int = 1) -> AugmentPipe:
    extra = {"hue": 1.0, "saturation": 1.0} if channels == 3 else {}
    pipe = AugmentPipe(channels, **extra)
    pipe.p.fill_(p)
    return pipe


def changed(out: torch.Tensor, images: torch.Tensor, atol: float = 1e-5) -> torch.Tensor:
    """(N,) bool: which images the pipe altered."""
    return (out - images).abs().flatten(1).amax(dim=1) > atol


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(1234)


# --- the pipe's contract --------------------------------------------------------------------


def test_p_zero_returns_the_input_exactly() -> None:
    images = torch.randn(8, 1, 16, 16)
    pipe = AugmentPipe(1)
    assert pipe.p.shape == () and pipe.p.dtype == torch.float32 and float(pipe.p) == 0.0
    out = pipe(images)
    assert torch.equal(out, images)
    state = torch.get_rng_state()
    pipe(images)
    assert torch.equal(torch.get_rng_state(), state), "p = 0 must not draw random numbers"


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_output_has_the_input_shape_dtype_and_device(channels: int, dtype: torch.dtype) -> None:
    images = torch.rand(5, channels, 12, 20, dtype=dtype) * 2 - 1
    out = full(1.0, channels)(images)
    assert out.shape == images.shape and out.dtype == dtype and out.device == images.device
    assert torch.isfinite(out).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_runs_on_cuda_with_draws_on_the_device() -> None:
    pipe = full(1.0).cuda()
    images = torch.randn(8, 1, 32, 32, device="cuda", dtype=torch.float16)
    torch.cuda.manual_seed(3)
    out = pipe(images)
    assert out.device == images.device and out.dtype == torch.float16
    torch.cuda.manual_seed(3)
    assert torch.equal(pipe(images), out)
    ctrl = AdaController()
    ctrl.accumulate(torch.ones(64, device="cuda"))
    assert ctrl.update(pipe)[0] == pytest.approx(ctrl.step)
    assert pipe.p.device == images.device


def test_gradients_flow_to_the_input() -> None:
    images = torch.randn(6, 1, 16, 16, requires_grad=True)
    out = full(1.0)(images)
    (out * torch.randn_like(out)).sum().backward()
    assert images.grad is not None and torch.isfinite(images.grad).all()
    assert (images.grad.flatten(1).abs().sum(dim=1) > 0).all()


def test_p_one_changes_every_image() -> None:
    images = torch.randn(32, 1, 16, 16)
    assert changed(full(1.0)(images), images).all()


def test_wrong_channels_are_rejected() -> None:
    with pytest.raises(ValueError):
        AugmentPipe(channels=2)
    with pytest.raises(AssertionError):
        full(1.0, channels=1)(torch.zeros(2, 3, 8, 8))


def test_same_seed_same_augmentation() -> None:
    images = torch.randn(4, 1, 16, 16)
    torch.manual_seed(7)
    a = full(0.7)(images)
    torch.manual_seed(7)
    b = full(0.7)(images)
    assert torch.equal(a, b)


# --- resampling -----------------------------------------------------------------------------


def test_wavelet_filters_are_a_biorthogonal_low_pass_pair() -> None:
    a = torch.tensor(CDF97_ANALYSIS, dtype=torch.float64)
    s = torch.tensor(CDF97_SYNTHESIS, dtype=torch.float64)
    assert torch.equal(a, a.flip(0)) and torch.equal(s, s.flip(0))  # symmetric: no phase shift
    assert a.sum().item() == pytest.approx(1.0, abs=1e-9)  # decimation keeps the mean
    # Zero insertion puts even taps on one output, odd taps on the next: both must sum to 1.
    assert s[1::2].sum().item() == pytest.approx(1.0, abs=1e-9)
    assert s[0::2].sum().item() == pytest.approx(1.0, abs=1e-9)
    for m in range(-4, 5):  # sum_k a[k] s[k + 2m] = delta(m), centres aligned
        total = float(
            sum(a[k + 4] * s[k + 2 * m + 3] for k in range(-4, 5) if -3 <= k + 2 * m <= 3)
        )
        assert total == pytest.approx(float(m == 0), abs=1e-9)


def test_identity_warp_returns_the_image() -> None:
    images = torch.randn(3, 2, 11, 14)
    out = warp(images, torch.eye(3).expand(3, 3, 3))
    torch.testing.assert_close(out, images, atol=1e-5, rtol=0)


def test_rotation_by_90_degrees_through_the_general_path_matches_rot90() -> None:
    images = torch.randn(4, 1, 12, 12)
    out = warp(images, rotate2d(torch.full((4,), math.pi / 2)))
    expected = torch.rot90(images, 1, dims=(2, 3))
    torch.testing.assert_close(out[..., 2:-2, 2:-2], expected[..., 2:-2, 2:-2], atol=1e-4, rtol=0)
    # Reflect padding of a square commutes with the rotation, so the border matches too.
    torch.testing.assert_close(out, expected, atol=1e-4, rtol=0)


def test_rot90_composed_four_times_is_the_identity() -> None:
    k = torch.ones(3, dtype=torch.long)
    step = rotate90_2d(k)
    assert torch.equal(step @ step @ step @ step, torch.eye(3).expand(3, 3, 3))
    images = torch.randn(3, 1, 10, 10)
    out = images
    for _ in range(4):
        out = warp(out, step)
    torch.testing.assert_close(out, images, atol=1e-4, rtol=0)


def test_rot90_op_gives_exact_quarter_turns_with_identity_most_likely() -> None:
    images = torch.randn(1, 1, 8, 8).expand(2000, -1, -1, -1)
    out = only("rotate90", 0.5)(images)
    turns = torch.stack([torch.rot90(images[:1], k, dims=(2, 3))[0] for k in range(4)])
    err = (out[:, None] - turns[None]).abs().flatten(2).amax(dim=2)  # (N, 4)
    assert (err.amin(dim=1) < 1e-4).all(), "every output is one exact quarter turn"
    share = torch.bincount(err.argmin(dim=1), minlength=4).double() / len(out)
    # Applied with probability p = 0.5, then k ~ U{0..3}: P(k = 0) = 1 - 3p/4, the rest p/4.
    assert share[0].item() == pytest.approx(0.625, abs=0.05)
    assert share[1:].tolist() == pytest.approx([0.125] * 3, abs=0.04)


@pytest.mark.parametrize("op", GEOMETRIC)
def test_geometric_ops_keep_a_constant_image_constant(op: str) -> None:
    # Reflect padding: no black corners or borders for D to see, even for strong zoom-out.
    images = torch.full((64, 1, 16, 12), 0.3)
    out = only(op, 1.0, scale_std=1.0, aniso_std=1.0, xfrac_std=0.5)(images)
    torch.testing.assert_close(out, images, atol=1e-5, rtol=0)


def test_xflip_is_exact_and_its_mean_is_mirror_symmetric() -> None:
    ramp = torch.linspace(-1, 1, 8).expand(1, 1, 8, 8) + 0.1 * torch.randn(1, 1, 8, 8)
    images = ramp.expand(4000, -1, -1, -1)
    out = only("xflip", 1.0)(images)
    flipped = (out - ramp.flip(3)).abs().flatten(1).amax(dim=1) < 1e-5
    kept = (out - ramp).abs().flatten(1).amax(dim=1) < 1e-5
    assert (flipped | kept).all()
    assert flipped.double().mean().item() == pytest.approx(0.5, abs=0.04)
    mean = out.mean(dim=0)
    # The flip's distribution is symmetric, so the mean image is too (up to sampling noise).
    torch.testing.assert_close(mean, mean.flip(2), atol=0.1, rtol=0)


@pytest.mark.parametrize(
    ("op", "p", "expected"),
    [
        ("scale", 0.3, 0.3),
        ("aniso", 0.6, 0.6),
        ("xfrac", 0.3, 0.3),
        ("brightness", 0.3, 0.3),
        ("contrast", 0.8, 0.8),
        # Two rotations, each with probability 1 - sqrt(1 - p): at least one with probability p.
        ("rotate", 0.5, 0.5),
    ],
)
def test_share_of_transformed_images_is_p(op: str, p: float, expected: float) -> None:
    images = torch.randn(1, 1, 8, 8).expand(2000, -1, -1, -1)
    share = changed(only(op, p)(images), images).double().mean().item()
    assert share == pytest.approx(expected, abs=4 * math.sqrt(expected * (1 - expected) / 2000))


def test_multiplier_scales_the_probability() -> None:
    images = torch.randn(1, 1, 8, 8).expand(2000, -1, -1, -1)
    share = changed(only("scale", 0.8, scale=0.5)(images), images).double().mean().item()
    assert share == pytest.approx(0.4, abs=0.05)


# --- colour ---------------------------------------------------------------------------------


@pytest.mark.parametrize("channels", [1, 3])
def test_color_ops_keep_a_constant_image_constant(channels: int) -> None:
    colour = torch.tensor([0.2, -0.1, 0.4])[:channels].view(1, channels, 1, 1)
    images = colour.expand(500, channels, 6, 6)
    pipe = full(1.0, channels)
    for op in GEOMETRIC:
        setattr(pipe, op, 0.0)
    out = pipe(images)
    assert changed(out, images).float().mean() > 0.9
    spread = (out - out[..., :1, :1]).abs().amax()
    assert spread.item() < 1e-6, "a colour matrix maps every pixel alike"


def test_brightness_shifts_by_a_normal_with_the_set_std() -> None:
    images = torch.full((8000, 1, 2, 2), 0.25)
    shift = (only("brightness", 1.0)(images) - images)[:, 0, 0, 0]
    assert shift.mean().item() == pytest.approx(0.0, abs=0.01)
    assert shift.std().item() == pytest.approx(0.2, rel=0.05)


def test_contrast_scales_by_a_log_normal_with_the_set_std() -> None:
    images = torch.full((8000, 1, 2, 2), 0.5)
    log2_factor = torch.log2(only("contrast", 1.0)(images)[:, 0, 0, 0] / 0.5)
    assert log2_factor.mean().item() == pytest.approx(0.0, abs=0.02)
    assert log2_factor.std().item() == pytest.approx(0.5, rel=0.05)


def test_gray_luma_flip_is_the_negative_image_half_the_time() -> None:
    images = torch.rand(4000, 1, 4, 4) * 2 - 1
    out = only("lumaflip", 1.0)(images)
    negated = (out + images).abs().flatten(1).amax(dim=1) < 1e-6
    kept = (out - images).abs().flatten(1).amax(dim=1) < 1e-6
    assert (negated | kept).all()
    assert negated.double().mean().item() == pytest.approx(0.5, abs=0.04)


def test_grayscale_disables_hue_and_saturation() -> None:
    pipe = AugmentPipe(1, hue=1.0, saturation=1.0)
    assert pipe.hue == 0.0 and pipe.saturation == 0.0
    matrices = full(1.0).color_matrices(5, 1.0, torch.device("cpu"))
    assert matrices.shape == (5, 2, 2)
    assert torch.equal(matrices[:, 1], torch.tensor([0.0, 1.0]).expand(5, 2))  # affine on luma


def test_rgb_hue_and_saturation_leave_gray_alone_and_rotate_chroma() -> None:
    n = 64
    gray = torch.linspace(-0.8, 0.8, n).view(n, 1, 1, 1).expand(n, 3, 2, 2)
    hue = color_hue_rotate(torch.rand(n) * 2 * math.pi - math.pi)
    sat = color_saturate(torch.exp2(torch.randn(n)))
    torch.testing.assert_close(apply_color(gray, hue), gray, atol=1e-6, rtol=0)
    torch.testing.assert_close(apply_color(gray, sat), gray, atol=1e-6, rtol=0)
    rgb = torch.rand(n, 3, 2, 2) * 2 - 1
    rotated = apply_color(rgb, hue)
    # Rotation about the gray axis: luma (channel mean) and distance from gray are kept.
    torch.testing.assert_close(rotated.mean(1), rgb.mean(1), atol=1e-5, rtol=0)
    chroma = (rgb - rgb.mean(1, keepdim=True)).norm(dim=1)
    torch.testing.assert_close(
        (rotated - rotated.mean(1, keepdim=True)).norm(dim=1), chroma, atol=1e-5, rtol=0
    )
    flipped = apply_color(rgb, color_luma_flip(torch.ones(n, dtype=torch.long), 3))
    torch.testing.assert_close(flipped, rgb - 2 * rgb.mean(1, keepdim=True), atol=1e-6, rtol=0)


# --- the controller -------------------------------------------------------------------------


def test_controller_raises_p_when_d_overfits_and_lowers_it_otherwise() -> None:
    pipe = AugmentPipe(1)
    ctrl = AdaController(target=0.6, adjust_kimg=500.0, batch_size=64, interval=4)
    step = 64 * 4 / (500.0 * 1000)
    for _ in range(4):  # D sure about 90% of reals: r_t = 0.8 > 0.6
        ctrl.accumulate(torch.cat([torch.full((58, 1), 3.0), torch.full((6, 1), -1.0)]))
    p, r_t = ctrl.update(pipe)
    assert r_t == pytest.approx((58 - 6) / 64)
    assert p == pytest.approx(step) and float(pipe.p) == pytest.approx(step)
    ctrl.accumulate(torch.full((64,), 2.0))
    assert ctrl.update(pipe)[0] == pytest.approx(2 * step)
    ctrl.accumulate(torch.randn(64).abs() * -1)  # r_t = -1 < target: down
    assert ctrl.update(pipe)[0] == pytest.approx(step)
    for _ in range(3):  # floored at 0
        ctrl.accumulate(-torch.ones(64))
        p, r_t = ctrl.update(pipe)
    assert p == 0.0 and r_t == -1.0 and float(pipe.p) == 0.0


def test_controller_step_is_batch_times_interval_over_adjust_kimg_and_clamps_at_one() -> None:
    ctrl = AdaController(target=0.6, adjust_kimg=0.1, batch_size=8, interval=5)
    assert ctrl.step == pytest.approx(40 / 100)
    values = []
    for _ in range(4):
        ctrl.accumulate(torch.ones(8, 1))
        values.append(ctrl.update()[0])
    assert values == pytest.approx([0.4, 0.8, 1.0, 1.0])


def test_controller_resets_between_updates_and_skips_empty_ones() -> None:
    ctrl = AdaController()
    ctrl.accumulate(torch.ones(10))
    assert ctrl.update()[1] == 1.0
    p, r_t = ctrl.update()
    assert math.isnan(r_t) and p == ctrl.step
    ctrl.accumulate(torch.tensor([1.0, -1.0, -1.0, 0.0]))
    assert ctrl.update()[1] == pytest.approx(-0.25)


def test_controller_state_round_trips_through_torch_save() -> None:
    ctrl = AdaController(batch_size=16)
    ctrl.accumulate(torch.ones(16))
    ctrl.update()
    ctrl.accumulate(torch.tensor([1.0, -1.0, 1.0]))  # partial accumulation survives too
    buffer = io.BytesIO()
    torch.save(ctrl.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    restored, pipe = AdaController(batch_size=16), AugmentPipe(1)
    restored.load_state_dict(state, pipe)
    assert restored.state_dict() == ctrl.state_dict()
    assert float(pipe.p) == pytest.approx(ctrl.p)
    assert restored.update() == ctrl.update()


def test_make_augment_modes() -> None:
    pipe, ctrl = make_augment("ada", 1, 0.2, batch_size=32)
    assert isinstance(pipe, AugmentPipe) and isinstance(ctrl, AdaController)
    assert float(pipe.p) == pytest.approx(0.2) and ctrl.p == pytest.approx(0.2)
    assert ctrl.batch_size == 32
    pipe, ctrl = make_augment("fixed", 3, 0.5, hue=1.0)
    assert float(pipe.p) == 0.5 and ctrl is None and pipe.hue == 1.0
    assert make_augment("off", 1, 0.0) == (None, None)
    with pytest.raises(ValueError, match="mode"):
        make_augment("adaptive", 1, 0.0)
    with pytest.raises(ValueError, match="p must be"):
        make_augment("fixed", 1, 1.5)


def test_full_pipe_speed_on_cpu() -> None:
    images = torch.randn(16, 1, 64, 64)
    pipe = full(1.0)
    pipe(images)  # warm-up
    start = time.perf_counter()
    pipe(images)
    elapsed_ms = 1000 * (time.perf_counter() - start)
    print(f"AugmentPipe p=1, 16 x 1 x 64 x 64 on CPU: {elapsed_ms:.0f} ms")
