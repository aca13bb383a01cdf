"""StyleGAN2-ADA: the network math against independent references, the training loop's
bookkeeping (presets, snapshots, logs), and a killed and resumed run against an uninterrupted
one, bit for bit."""

from __future__ import annotations

import logging
import math
import os
import signal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from cxrlib.jobs.survival import EXIT_INTERRUPTED, JobInterrupted, StateStore
from cxrlib.snapshot import load_generator, read_snapshot
from cxrlib.stylegan2ada import networks as sg
from cxrlib.stylegan2ada import trainer as tr


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny networks gain nothing from a second thread, and on a shared 2-core machine the
    OpenMP threads' spin-waiting can slow a step tenfold."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


TINY_NET = dict(z_dim=32, w_dim=32, resolution=32, channels=1, channel_base=512, channel_max=64)


def tiny_settings(**overrides) -> tr.StyleGanSettings:
    d = dict(
        resolution=32, channel_base=512, channel_max=32, z_dim=32, w_dim=32, batch_size=4,
        total_kimg=0.04, snapshot_kimg=0.02, tick_kimg=0.008, r1_interval=4, pl_interval=2,
        augment="ada", augment_p=0.2, ada_kimg=0.1, grid_size=2, seed=3,
    )  # fmt: skip
    d.update(overrides)
    return tr.stylegan_settings(d)


def tiny_images(n: int = 12, size: int = 40) -> np.ndarray:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size]
    blobs = [np.exp(-((xx - rng.uniform(8, 32)) ** 2 + (yy - 20) ** 2) / 60.0) for _ in range(n)]
    return (np.stack(blobs) * 255).astype(np.uint8)


# -- resampling and modulated convolution ---------------------------------------------------


def _fir_reference(x: np.ndarray, taps: np.ndarray, up: int, down: int, pad: tuple[int, int]):
    """1-D upfirdn along the last axis, by definition: zero insertion, pad, convolve, decimate."""
    z = np.zeros((*x.shape[:-1], x.shape[-1] * up))
    z[..., ::up] = x
    z = np.pad(z, [(0, 0)] * (x.ndim - 1) + [pad])
    out = np.apply_along_axis(lambda r: np.convolve(r, taps, mode="valid"), -1, z)
    return out[..., ::down]


@pytest.mark.parametrize(
    ("up", "down", "pad", "gain"),
    [(2, 1, (2, 1), 4.0), (1, 2, (1, 1), 1.0), (1, 1, (2, 2), 1.0), (1, 1, (1, 1), 4.0)],
)
def test_upfirdn2d_is_separable_zero_insert_filter_decimate(up, down, pad, gain) -> None:
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    f = sg.fir_filter().double()
    got = sg.upfirdn2d(x, f, up=up, down=down, padding=pad, gain=gain).numpy()
    taps = f.numpy() * math.sqrt(gain)
    ref = _fir_reference(x.numpy(), taps, up, down, pad)  # along W
    ref = np.swapaxes(_fir_reference(np.swapaxes(ref, -1, -2), taps, up, down, pad), -1, -2)
    np.testing.assert_allclose(got, ref, atol=1e-12)


def test_fast_resampling_equals_upfirdn2d_and_keeps_constants() -> None:
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    f = sg.fir_filter().double()
    up = sg.upsample2d(x, f)
    assert up.shape == (2, 3, 16, 16)
    torch.testing.assert_close(up, sg.upfirdn2d(x, f, up=2, padding=(2, 1), gain=4.0))
    assert sg.downsample2d(x, f).shape == (2, 3, 4, 4)
    ones = torch.ones(1, 1, 8, 8, dtype=torch.float64)
    # Away from the zero-padded border a constant stays the same constant (DC gain 1).
    torch.testing.assert_close(
        sg.upsample2d(ones, f)[..., 1:-1, 1:-1], torch.ones(1, 1, 14, 14).double()
    )
    torch.testing.assert_close(
        sg.downsample2d(ones, f)[..., 1:-1, 1:-1], torch.ones(1, 1, 2, 2).double()
    )


def _modconv_reference(x, weight, styles, demodulate: bool, up: int) -> torch.Tensor:
    """Per sample: build the modulated (and demodulated) kernel, convolve. For up=2, zero-pad
    generously, upsample by definition (zero insertion + FIR), convolve, crop back."""
    f = sg.fir_filter().double()
    outs = []
    for i in range(x.shape[0]):
        w = weight * styles[i].view(1, -1, 1, 1)
        if demodulate:
            w = w / (w.square().sum(dim=[1, 2, 3], keepdim=True) + 1e-8).sqrt()
        xi = x[i : i + 1]
        if up == 1:
            outs.append(F.conv2d(xi, w, padding=1))
        else:
            h = xi.shape[-1]
            u = sg.upfirdn2d(F.pad(xi, [2, 2, 2, 2]), f, up=2, padding=(2, 1), gain=4.0)
            outs.append(F.conv2d(u, w, padding=1)[..., 4 : 4 + 2 * h, 4 : 4 + 2 * h])
    return torch.cat(outs)


@pytest.mark.parametrize("up", [1, 2])
@pytest.mark.parametrize("demodulate", [True, False])
@pytest.mark.parametrize("fused", [True, False])
def test_modulated_conv2d_equals_per_sample_loop(up: int, demodulate: bool, fused: bool) -> None:
    torch.manual_seed(0)
    x = torch.randn(3, 5, 6, 6, dtype=torch.float64)
    weight = torch.randn(4, 5, 3, 3, dtype=torch.float64)
    styles = torch.randn(3, 5, dtype=torch.float64)
    got = sg.modulated_conv2d(
        x, weight, styles, demodulate=demodulate, up=up, fused=fused,
        resample_filter=sg.fir_filter().double(),
    )  # fmt: skip
    # The function computes kernels in float32 whatever x's dtype: float32-level agreement.
    ref = _modconv_reference(x, weight, styles, demodulate, up)
    assert got.shape == (3, 4, 6 * up, 6 * up)
    torch.testing.assert_close(got, ref.to(got.dtype), rtol=1e-5, atol=1e-5)


def test_discriminator_downsampling_conv_is_blur_then_strided_conv() -> None:
    """The fused stride-2 conv equals: full-resolution conv of the blurred image, every 2nd px."""
    torch.manual_seed(0)
    conv = sg.EqualConv2d(3, 4, 3, down=2, activation="linear", bias=False).double()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    w = conv.weight * conv.weight_gain
    blurred = sg.upfirdn2d(x, sg.fir_filter().double(), padding=(2, 2))  # (9, 9): centres at k-.5
    ref = F.conv2d(blurred, w)[..., ::2, ::2]
    torch.testing.assert_close(conv(x), ref)


# -- statistics at initialisation -------------------------------------------------------------


def test_demodulation_and_equalised_lr_give_unit_second_moment() -> None:
    """On white N(0, 1) input, one demodulated layer or one equalised conv/dense layer keeps
    the second moment at ~1 (lrelu * sqrt(2) keeps it too), whatever the fan-in."""
    torch.manual_seed(0)
    for fan_in in (16, 256):
        x = torch.randn(64, fan_in, 8, 8)
        styles = torch.randn(64, fan_in) + 1.0
        y = sg.modulated_conv2d(x, torch.randn(32, fan_in, 3, 3), styles)
        assert 0.9 < y.square().mean().sqrt() < 1.1
        conv = sg.EqualConv2d(fan_in, 32, 3)
        assert 0.9 < conv(x).square().mean().sqrt() < 1.1
        dense = sg.EqualLinear(fan_in, 256, activation="lrelu", lr_multiplier=0.01)
        assert 0.9 < dense(torch.randn(512, fan_in)).square().mean().sqrt() < 1.1


def test_activations_neither_vanish_nor_explode_through_the_synthesis_network() -> None:
    torch.manual_seed(0)
    g = sg.Generator(z_dim=64, w_dim=64, resolution=64, channel_base=2048, channel_max=128)
    rms: list[float] = []
    for m in g.modules():
        if isinstance(m, sg.SynthesisLayer):
            m.register_forward_hook(lambda _m, _i, o: rms.append(float(o.square().mean().sqrt())))
    with torch.no_grad():
        g(torch.randn(32, 64))
    assert len(rms) == 9  # 1 + 2 per block above 4x4
    # Upsampling smooths (second moment x ~0.4 for white input); after that it stays level.
    assert all(0.3 < r < 1.5 for r in rms), rms
    assert 0.7 < rms[-1] / rms[2] < 1.4, rms


# -- networks ----------------------------------------------------------------------------------


def test_shapes_and_gradients_reach_every_parameter() -> None:
    torch.manual_seed(0)
    g = sg.Generator(**TINY_NET, mapping_layers=2)
    d = sg.Discriminator(resolution=32, channels=1, channel_base=512, channel_max=64)
    assert g.num_ws == 2 * 5 - 2  # 2 log2(res) - 2 style inputs
    shapes: dict[str, tuple[int, ...]] = {}
    for name, block in g.synthesis.blocks.items():
        block.register_forward_hook(lambda _m, _i, o, name=name: shapes.update({name: o[0].shape}))
    img = g(torch.randn(4, 32), noise_mode="random")
    assert img.shape == (4, 1, 32, 32)
    assert shapes == {f"b{r}": (4, min(512 // r, 64), r, r) for r in (4, 8, 16, 32)}
    logits = d(img)
    assert logits.shape == (4, 1)
    (F.softplus(-logits).mean() + F.softplus(logits).mean()).backward()
    for net in (g, d):
        for name, p in net.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
            assert p.grad.abs().sum() > 0, name


def test_reduced_precision_layers_run_in_bfloat16_and_stay_close(monkeypatch) -> None:
    """The CUDA-only bfloat16 path, exercised on the CPU: the top two resolutions reduced."""
    torch.manual_seed(0)
    g = sg.Generator(**TINY_NET, mapping_layers=2, num_fp16_res=2)
    d = sg.Discriminator(resolution=32, channel_base=512, channel_max=64, num_fp16_res=2)
    z = torch.randn(4, 32)
    with torch.no_grad():
        ref_img, ref_logits = g(z, noise_mode="const"), d(g(z, noise_mode="const"))
    monkeypatch.setattr(sg, "REDUCED_PRECISION_DEVICES", ("cuda", "cpu"))
    dtypes: dict[str, torch.dtype] = {}

    def record(name: str):
        def hook(_m, _i, out) -> None:
            dtypes[name] = (out[0] if isinstance(out, tuple) else out).dtype

        return hook

    for prefix, blocks in (("G", g.synthesis.blocks), ("D", d.blocks)):
        for name, block in blocks.items():
            block.register_forward_hook(record(f"{prefix}.{name}"))
    img = g(z, noise_mode="const")
    assert img.dtype == torch.float32
    assert [dtypes[f"G.b{r}"] for r in (4, 8, 16, 32)] == [torch.float32] * 2 + [torch.bfloat16] * 2
    torch.testing.assert_close(img, ref_img, atol=0.05, rtol=0.05)
    logits = d(img)
    assert logits.dtype == torch.float32
    assert [dtypes[f"D.b{r}"] for r in (32, 16, 8)] == [torch.bfloat16] * 2 + [torch.float32]
    torch.testing.assert_close(logits, ref_logits, atol=0.05, rtol=0.05)
    logits.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in [*g.parameters(), *d.parameters()])


def test_rgb_and_shape_errors() -> None:
    g = sg.Generator(**{**TINY_NET, "channels": 3}, mapping_layers=1)
    assert g(torch.randn(2, 32)).shape == (2, 3, 32, 32)
    with pytest.raises(AssertionError):
        g(torch.randn(2, 31))
    with pytest.raises(ValueError, match="power of two"):
        sg.Generator(resolution=48)
    with pytest.raises(ValueError, match="channels"):
        sg.Discriminator(resolution=32, channels=2)


def test_minibatch_stddev_groups_consecutive_samples() -> None:
    torch.manual_seed(0)
    x = torch.randn(8, 6, 3, 3)
    out = sg.minibatch_stddev(x, group_size=4, num_channels=1)
    assert out.shape == (8, 7, 3, 3)
    torch.testing.assert_close(out[:, :6], x)
    for start in (0, 4):
        grp = x[start : start + 4]
        expected = (grp.var(dim=0, unbiased=False) + 1e-8).sqrt().mean()
        assert torch.allclose(out[start : start + 4, 6], expected.expand(4, 3, 3))
    # Group capped by the batch; two feature groups give two channels.
    assert sg.minibatch_stddev(x[:2], group_size=4).shape == (2, 7, 3, 3)
    two = sg.minibatch_stddev(x, group_size=2, num_channels=2)
    expected = (x[:2, 3:].var(dim=0, unbiased=False) + 1e-8).sqrt().mean()
    assert torch.allclose(two[0, 7], expected.expand(3, 3))
    with pytest.raises(ValueError, match="multiple"):
        sg.minibatch_stddev(x[:6], group_size=4)


def test_truncation_psi_zero_gives_the_average_w_image() -> None:
    torch.manual_seed(0)
    g = sg.Generator(**TINY_NET, mapping_layers=2).eval()
    g.mapping.w_avg.copy_(torch.randn(32))
    with torch.no_grad():
        imgs = g(torch.randn(3, 32), truncation_psi=0.0, noise_mode="const")
        ref = g.synthesis(g.mapping.w_avg.view(1, 1, -1).expand(1, g.num_ws, -1), "const")
    torch.testing.assert_close(imgs, ref.expand(3, -1, -1, -1))
    ws = g.mapping(torch.randn(5, 32), truncation_psi=0.5)
    free = g.mapping(torch.randn(5, 32))
    assert ws.shape == free.shape == (5, g.num_ws, 32)


def test_w_avg_tracks_the_mean_of_w() -> None:
    torch.manual_seed(0)
    m = sg.MappingNetwork(16, 16, num_ws=4, num_layers=2)
    z = torch.randn(64, 16)
    w = m(z)[:, 0]
    m(z, update_w_avg=True)
    torch.testing.assert_close(m.w_avg, 0.005 * w.mean(dim=0))


def test_sample_is_deterministic_in_range_and_on_the_snapshot_contract() -> None:
    torch.manual_seed(0)
    g = sg.Generator(**TINY_NET, mapping_layers=2).eval()
    a = g.sample(5, torch.Generator().manual_seed(7), batch_size=2)
    b = g.sample(5, torch.Generator().manual_seed(7))
    assert a.shape == (5, 1, 32, 32) and a.min() >= -1 and a.max() <= 1
    torch.testing.assert_close(a, b)
    rebuilt = sg.Generator(**g.init_kwargs)
    rebuilt.load_state_dict(g.state_dict())
    torch.testing.assert_close(rebuilt.eval().sample(5, torch.Generator().manual_seed(7)), a)


# -- settings ---------------------------------------------------------------------------------


def test_presets_resolve_to_the_papers_numbers() -> None:
    s = tr.stylegan_settings({"resolution": 256})
    assert (s.batch_size, s.gamma, s.lr, s.ema_kimg, s.ema_rampup) == (
        16,
        0.8192,
        0.0025,
        5.0,
        0.05,
    )
    assert (s.mapping_layers, s.mbstd_group, s.channel_base, s.channel_max) == (2, 4, 16384, 512)
    assert (s.r1_interval, s.pl_interval, s.pl_weight, s.style_mixing_prob) == (16, 4, 2.0, 0.9)
    big = tr.stylegan_settings({"resolution": 1024})
    assert (big.batch_size, big.lr, big.channel_base) == (4, 0.002, 32768)
    assert big.gamma == pytest.approx(0.0002 * 1024**2 / 4)
    multi = tr.stylegan_settings({"resolution": 64, "gpus": 8})
    assert (multi.batch_size, multi.mbstd_group, multi.ema_kimg) == (64, 4, 20.0)
    # A given batch feeds auto's formulas.
    b32 = tr.stylegan_settings({"resolution": 256, "batch_size": 32})
    assert (b32.gamma, b32.ema_kimg) == (pytest.approx(0.4096), 10.0)
    p = tr.stylegan_settings({"preset": "paper256", "resolution": 256})
    assert (p.batch_size, p.gamma, p.lr, p.ema_kimg, p.ema_rampup) == (64, 1.0, 0.0025, 20.0, None)
    assert (p.mapping_layers, p.mbstd_group, p.channel_base, p.channel_max) == (8, 8, 16384, 512)
    # Explicit values and explicit None (= preset) both work.
    o = tr.stylegan_settings({"preset": "paper256", "gamma": 2, "batch_size": None})
    assert (o.gamma, o.batch_size) == (2.0, 64)
    assert tr.stylegan_settings({"ema_rampup": 0}).ema_rampup is None
    assert tr.stylegan_settings({"ema_rampup": None}).ema_rampup == 0.05


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"learning_rate": 0.1}, "unknown stylegan2ada setting.*learning_rate"),
        ({"preset": "paper1024"}, "preset must be one of"),
        ({"resolution": 48}, "power of two"),
        ({"channels": 2}, "channels must be 1 or 3"),
        ({"batch_size": 0}, "batch_size must be >= 1"),
        ({"batch_size": 6}, "mbstd_group 4 must divide"),
        ({"augment": "always"}, "augment must be one of"),
        ({"lr": "1e-3"}, "lr must be a number"),
        ({"r1_interval": True}, "r1_interval must be an integer"),
        ({"seed": 1.5}, "seed must be an integer"),
        ({"total_kimg": float("nan")}, "total_kimg must be finite"),
        ({"ada_target": 1.5}, "ada_target must be in"),
    ],
)
def test_bad_settings_fail_clearly(change: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        tr.stylegan_settings({"resolution": 64, **change})


def test_snapshot_boundaries_and_names() -> None:
    s = tr.stylegan_settings({"resolution": 64, "total_kimg": 1000, "snapshot_kimg": 300})
    assert tr.snapshot_kimgs(s) == [0.0, 300.0, 600.0, 900.0, 1000.0]
    assert [tr.snapshot_name(k) for k in (0, 300.0, 0.5)] == [
        "kimg000000",
        "kimg000300",
        "kimg000000.500",
    ]
    # batch 32 does not divide 300 000: the first step with >= 300 000 images shown.
    assert tr.snapshot_step(300, 32) == 9375 and tr.snapshot_step(0.1, 32) == 4
    assert s.total_steps == math.ceil(1_000_000 / s.batch_size)


def test_lazy_regularisation_corrects_adam() -> None:
    s = tiny_settings(augment="off")
    t = tr.StyleGan2AdaTrainer(tr.prepare_images(tiny_images(), 32, 1), s)
    g = t.opt_g.param_groups[0]
    assert g["lr"] == pytest.approx(s.lr * 2 / 3) and g["betas"][1] == pytest.approx(
        0.99 ** (2 / 3)
    )
    assert t.opt_d.param_groups[0]["lr"] == pytest.approx(s.lr * 4 / 5)
    assert g["betas"][0] == 0.0 and g["eps"] == 1e-8


# -- the trainer --------------------------------------------------------------------------------


def test_prepare_images_resizes_scales_and_repeats_channels() -> None:
    imgs = np.zeros((3, 40, 40), np.uint8)
    imgs[1] = 255
    x = tr.prepare_images(imgs, 32, 3)
    assert x.shape == (3, 3, 32, 32) and x.dtype == torch.float32
    assert x[0].eq(-1).all() and torch.allclose(x[1], torch.ones(3, 32, 32), atol=1e-5)
    with pytest.raises(ValueError, match="uint8"):
        tr.prepare_images(imgs.astype(np.float32), 32, 1)


def test_augment_off_never_builds_the_pipe(monkeypatch: pytest.MonkeyPatch) -> None:
    import cxrlib.stylegan2ada.augment as augment

    def forbidden(*_a, **_k):
        raise AssertionError("augment='off' must not touch the augmentation pipe")

    monkeypatch.setattr(augment, "make_augment", forbidden)
    monkeypatch.setattr(augment, "AugmentPipe", forbidden)
    t = tr.StyleGan2AdaTrainer(
        tr.prepare_images(tiny_images(), 32, 1), tiny_settings(augment="off")
    )
    metrics = t.train_step()
    assert t.pipe is None and t.ada is None and metrics["ada_p"] == 0.0


def test_one_step_updates_ema_pl_mean_and_ada() -> None:
    s = tiny_settings(ema_kimg=0.0, ada_interval=1)
    t = tr.StyleGan2AdaTrainer(tr.prepare_images(tiny_images(), 32, 1), s)
    g0 = [p.detach().clone() for p in t.G.parameters()]
    m = t.train_step()
    assert all(math.isfinite(m[k]) for k in ("loss_g", "loss_d", "r1", "pl"))  # step 0 regularises
    assert any(not torch.equal(a, b) for a, b in zip(g0, t.G.parameters(), strict=True))
    # ema_kimg 0: G_ema is G.
    for a, b in zip(t.G_ema.state_dict().values(), t.G.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert t.pl_mean > 0 and t.G.mapping.w_avg.abs().sum() > 0
    assert m["ada_p"] != pytest.approx(0.2) and math.isfinite(m["ada_rt"])
    m2 = t.train_step()
    assert math.isnan(m2["r1"]) and math.isnan(m2["pl"])  # intervals 4 and 2


def test_non_finite_loss_stops_with_a_clear_error() -> None:
    t = tr.StyleGan2AdaTrainer(
        tr.prepare_images(tiny_images(), 32, 1), tiny_settings(augment="off")
    )
    with torch.no_grad():
        t.D.out.bias.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match=r"non-finite generator loss.*last saved state"):
        t.train_step()


def _run(root: Path, settings: tr.StyleGanSettings, **kwargs) -> None:
    tr.train_stylegan2ada(
        tiny_images(), settings, "tiny", root / "out", root / "state", save_every_s=1e9, **kwargs
    )


def _snapshot_weights(out: Path) -> dict[str, dict[str, torch.Tensor]]:
    return {p.name: read_snapshot(p)["generator"] for p in sorted((out / "snapshots").glob("*.pt"))}


def test_tiny_run_trains_snapshots_and_resumes_bitwise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    s = tiny_settings()
    with caplog.at_level(logging.INFO, logger="cxrlib.stylegan2ada.trainer"):
        _run(tmp_path / "a", s)
    ticks = [r.getMessage() for r in caplog.records if "ETA" in r.getMessage()]
    assert len(ticks) == 5 and ticks[-1].startswith("kimg 0.040/0.040 step 10 loss_g")
    assert not any("\r" in t or "\n" in t for t in ticks)  # one plain line per tick
    out = tmp_path / "a" / "out"
    names = [tr.snapshot_name(k) for k in tr.snapshot_kimgs(s)]
    assert names == ["kimg000000", "kimg000000.020", "kimg000000.040"]
    assert sorted(p.stem for p in (out / "snapshots").glob("*.pt")) == names
    assert sorted(p.stem for p in (out / "grids").glob("*.png")) == names
    # 2 x 2 images of 32 px, each pixel shown as 2 x 2 (tiles of GRID_MIN_TILE = 64 px)
    assert Image.open(out / "grids" / "kimg000000.png").size == (128, 128)
    logged = pd.read_csv(out / "train_log.csv")
    assert list(logged.columns) == list(tr.LOG_COLUMNS)
    assert logged["step"].tolist() == [2, 4, 6, 8, 10] and logged["kimg"].iloc[-1] == 0.04
    assert logged["ada_p"].nunique() > 1  # ADA moved p
    state = tmp_path / "a" / "state"
    # the finished state stays (raising total_kimg continues it); snapshots are hard links
    assert (state / "state.pt").exists() and (state / tr.NETWORKS_FILE).exists()
    snap = "snapshots/kimg000000.040.pt"
    assert (out / snap).stat().st_ino == (state / snap).stat().st_ino
    snap = read_snapshot(out / "snapshots" / "kimg000000.040.pt")
    assert snap["model"] == "stylegan2ada" and snap["progress"]["kimg"] == 0.04
    first = _snapshot_weights(out)["kimg000000.pt"]
    assert any(not torch.equal(first[k], v) for k, v in snap["generator"].items())
    g = load_generator(out / "snapshots" / "kimg000000.040.pt")
    assert g.sample(3, torch.Generator().manual_seed(0)).shape == (3, 1, 32, 32)

    # Killed by SIGTERM after step 5 (between two snapshots and mid-tick), then resumed.
    original = tr.StyleGan2AdaTrainer.train_step

    def step_then_kill(self):
        metrics = original(self)
        if self.step == 5:
            os.kill(os.getpid(), signal.SIGTERM)
        return metrics

    monkeypatch.setattr(tr.StyleGan2AdaTrainer, "train_step", step_then_kill)
    with pytest.raises(JobInterrupted) as info:
        _run(tmp_path / "b", s)
    assert info.value.code == EXIT_INTERRUPTED and info.value.step == 5
    assert StateStore(tmp_path / "b" / "state").load()["step"] == 5
    assert not (tmp_path / "b" / "out").exists()  # nothing published before the end
    monkeypatch.setattr(tr.StyleGan2AdaTrainer, "train_step", original)
    _run(tmp_path / "b", s)

    a, b = _snapshot_weights(out), _snapshot_weights(tmp_path / "b" / "out")
    assert a.keys() == b.keys()
    for name in a:
        for key in a[name]:
            assert torch.equal(a[name][key], b[name][key]), (name, key)
    logged_b = pd.read_csv(tmp_path / "b" / "out" / "train_log.csv")
    same = [c for c in tr.LOG_COLUMNS if c not in ("seconds", "s_per_kimg")]
    pd.testing.assert_frame_equal(logged[same], logged_b[same])
    na = torch.load(state / tr.NETWORKS_FILE, weights_only=True)
    nb = torch.load(tmp_path / "b" / "state" / tr.NETWORKS_FILE, weights_only=True)
    for part in ("G", "D", "G_ema"):
        assert all(torch.equal(na[part][k], nb[part][k]) for k in na[part]), part


def test_transfer_learning_starts_from_a_snapshot_or_networks(tmp_path: Path) -> None:
    s = tiny_settings(total_kimg=0.008, snapshot_kimg=0.008, augment="off")
    _run(tmp_path / "src", s)
    snap = tmp_path / "src" / "out" / "snapshots" / "kimg000000.008.pt"
    x = tr.prepare_images(tiny_images(), 32, 1)
    t = tr.StyleGan2AdaTrainer(x, tiny_settings(seed=9), resume_from=snap)
    weights = read_snapshot(snap)["generator"]
    assert all(torch.equal(t.G.state_dict()[k], v) for k, v in weights.items())
    nets = torch.load(tmp_path / "src" / "state" / tr.NETWORKS_FILE, weights_only=True)
    t2 = tr.StyleGan2AdaTrainer(
        x, tiny_settings(seed=9), resume_from=tmp_path / "src" / "state" / tr.NETWORKS_FILE
    )
    assert all(torch.equal(t2.D.state_dict()[k], v) for k, v in nets["D"].items())
    with pytest.raises(ValueError, match=r"\(channel_base 512 in the file, 1024 in this run\)"):
        tr.StyleGan2AdaTrainer(x, tiny_settings(channel_base=1024), resume_from=snap)
    # a file without its sizes recorded: the state dict's shapes still refuse it
    bare = tmp_path / "bare.pt"
    payload = torch.load(snap, weights_only=True)
    torch.save({**payload, "kwargs": None}, bare)
    with pytest.raises(ValueError, match=r"does not fit .*: size mismatch for "):
        tr.StyleGan2AdaTrainer(x, tiny_settings(channel_base=1024), resume_from=bare)
    with pytest.raises(FileNotFoundError):
        tr.StyleGan2AdaTrainer(x, s, resume_from=tmp_path / "missing.pt")


# -- data parallelism ---------------------------------------------------------------------------

DP_SETTINGS = dict(
    resolution=32, channel_base=512, channel_max=32, z_dim=32, w_dim=32, batch_size=8, gpus=2,
    mbstd_group=4, r1_interval=2, pl_interval=2, augment="ada", augment_p=0.0, ada_interval=4,
    ada_kimg=1.0, total_kimg=1.0, seed=5,
)  # fmt: skip
DP_STEPS = 4


def _train_and_report(settings: tr.StyleGanSettings) -> dict:
    t = tr.StyleGan2AdaTrainer(tr.prepare_images(tiny_images(), 32, 1), settings)
    metrics = [t.train_step() for _ in range(DP_STEPS)]
    return {
        "metrics": metrics, "ada_p": t.ada_p, "pl_mean": float(t.pl_mean),
        **{part: getattr(t, part).state_dict() for part in ("G", "D", "G_ema")},
    }  # fmt: skip


def _data_parallel_worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        report = _train_and_report(tr.stylegan_settings(DP_SETTINGS))
        torch.save(report, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_processes_train_like_one_up_to_float_order(tmp_path: Path) -> None:
    """gloo on the CPU: the batch split over 2 processes (gradients, w_avg, path-length mean
    and ADA's statistics averaged over both) trains as the whole batch does in one."""
    import torch.multiprocessing as mp

    mp.spawn(
        _data_parallel_worker, args=(2, str(tmp_path / "pg"), str(tmp_path)), nprocs=2, join=True
    )
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    for part in ("G", "D", "G_ema"):  # the processes agree exactly
        assert all(torch.equal(r0[part][k], r1[part][k]) for k in r0[part]), part
    one = _train_and_report(tr.stylegan_settings(DP_SETTINGS))
    for m_dp, m_one in zip(r0["metrics"], one["metrics"], strict=True):
        for key in ("loss_g", "loss_d", "r1", "pl"):
            assert m_dp[key] == pytest.approx(m_one[key], rel=1e-3, nan_ok=True), key
    # ADA saw the signs of all reals' logits (r_t after step 4), in both.
    rt = r0["metrics"][-1]["ada_rt"]
    assert math.isfinite(rt) and rt == one["metrics"][-1]["ada_rt"] and r0["ada_p"] == one["ada_p"]
    assert r0["pl_mean"] == pytest.approx(one["pl_mean"], rel=1e-4)
    for part in ("G", "D", "G_ema"):
        for key, value in one[part].items():
            torch.testing.assert_close(
                r0[part][key], value, rtol=1e-3, atol=1e-4, msg=f"{part}.{key}"
            )
