"""DCGAN: model and init, settings, training steps, exact resume, published files, plots."""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch import nn

from cxrlib.dcgan import trainer as train_module
from cxrlib.dcgan.figures import plot_training_curves
from cxrlib.dcgan.networks import Discriminator, Generator
from cxrlib.dcgan.trainer import (
    LOG_COLUMNS,
    DcganSettings,
    DcganTrainer,
    NonFiniteLossError,
    SettingsError,
    dcgan_settings,
    prepare_images,
    published_files,
    snapshot_epochs,
    tile,
    train_dcgan,
    use_bf16,
)
from cxrlib.jobs.survival import EXIT_INTERRUPTED, JobInterrupted, StateStore, run_resumable
from cxrlib.scoring.figures import plot_grids_across_epochs, plot_sweep
from cxrlib.snapshot import load_generator, read_snapshot

# Tiny: 32 px, width 8, 40 images of batch 8 -> 5 steps per epoch.
TINY = {
    "image_size": 32,
    "ngf": 8,
    "ndf": 8,
    "epochs": 3,
    "batch_size": 8,
    "snapshot_every_epochs": 2,
    "grid_size": 16,
}


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny convolutions on a shared 2-core machine: one thread is faster and steadier."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _images(n: int = 40, side: int = 48, seed: int = 0) -> np.ndarray:
    """uint8 (n, side, side): a bright disc of random position on a dark noisy background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:side, :side]
    out = rng.integers(0, 40, (n, side, side)).astype(np.uint8)
    for img in out:
        cy, cx = rng.integers(side // 4, 3 * side // 4, 2)
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < (side // 5) ** 2] = 220
    return out


def _settings(**overrides) -> DcganSettings:
    return dcgan_settings({**TINY, **overrides})


def _trainer(settings: DcganSettings, images: np.ndarray | None = None) -> DcganTrainer:
    images = _images() if images is None else images
    data = prepare_images(images, settings.image_size, settings.channels)
    return DcganTrainer(data, settings)


# ---- model ----------------------------------------------------------------------------------


@pytest.mark.parametrize("image_size", [32, 64])
@pytest.mark.parametrize("channels", [1, 3])
def test_shapes(image_size: int, channels: int) -> None:
    G = Generator(nz=16, ngf=4, channels=channels, image_size=image_size)
    D = Discriminator(ndf=4, channels=channels, image_size=image_size)
    x = G(torch.randn(5, 16, 1, 1))
    assert x.shape == (5, channels, image_size, image_size)
    assert x.abs().max() <= 1
    assert D(x).shape == (5,)
    with pytest.raises(ValueError, match="z must be"):
        G(torch.randn(5, 16))
    with pytest.raises(ValueError, match="images must be"):
        D(torch.randn(5, channels, image_size // 2, image_size // 2))


def test_the_64px_network_is_the_tutorials() -> None:
    """nz 100, ngf = ndf = 64: the DCGAN tutorial's layers and parameter counts."""
    G, D = Generator(), Discriminator()
    convs = [m for m in G.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert [(m.in_channels, m.out_channels) for m in convs] == [
        (100, 512),
        (512, 256),
        (256, 128),
        (128, 64),
        (64, 1),
    ]
    assert sum(p.numel() for p in G.parameters()) == 3_574_656
    assert sum(p.numel() for p in D.parameters()) == 2_763_520
    assert isinstance(G.main[-1], nn.Tanh)
    # D: no BN after the first conv, BN after the middle ones, LeakyReLU(0.2), no sigmoid layer
    assert isinstance(D.main[1], nn.LeakyReLU) and D.main[1].negative_slope == 0.2
    assert sum(isinstance(m, nn.BatchNorm2d) for m in D.modules()) == 3
    assert isinstance(D.main[-1], nn.Conv2d)
    assert Generator(image_size=128)(torch.randn(1, 100, 1, 1)).shape == (1, 1, 128, 128)


@torch.no_grad()
def test_init_statistics() -> None:
    G = Generator()
    weights = torch.cat(
        [m.weight.flatten() for m in G.modules() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)]
    )
    assert abs(weights.mean()) < 1e-3 and weights.std() == pytest.approx(0.02, rel=0.02)
    bns = [m for m in Discriminator().modules() if isinstance(m, nn.BatchNorm2d)]
    scale = torch.cat([m.weight for m in bns])
    assert scale.mean() == pytest.approx(1.0, abs=3e-3) and scale.std() == pytest.approx(
        0.02, rel=0.1
    )
    assert all(torch.count_nonzero(m.bias) == 0 for m in bns)
    assert all(m.bias is None for m in G.modules() if isinstance(m, nn.ConvTranspose2d))


def test_sample_draws_z_from_the_given_rng_in_eval_mode() -> None:
    G = Generator(nz=16, ngf=4, image_size=32)
    a = G.sample(6, torch.Generator().manual_seed(3))
    b = G.sample(6, torch.Generator().manual_seed(3), batch_size=4)  # chunked: same images
    assert a.shape == (6, 1, 32, 32) and a.dtype == torch.float32
    torch.testing.assert_close(a, b)
    assert G.training  # mode restored
    z = torch.randn(6, 16, 1, 1, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(a, G.eval()(z))
    assert not torch.equal(a, G.sample(6, torch.Generator().manual_seed(4)))
    with pytest.raises(TypeError, match="truncation_psi"):
        G.sample(2, torch.Generator(), truncation_psi=0.7)


# ---- settings -------------------------------------------------------------------------------


def test_default_settings_are_the_studys() -> None:
    s = dcgan_settings({})
    assert (s.image_size, s.channels, s.nz, s.ngf, s.ndf) == (64, 1, 100, 64, 64)
    assert (s.epochs, s.batch_size, s.lr, s.beta1, s.beta2) == (200, 64, 2e-4, 0.5, 0.999)
    assert snapshot_epochs(s) == list(range(10, 201, 10))


@pytest.mark.parametrize(
    ("settings", "key"),
    [
        ({"learning_rate": 1e-3}, "learning_rate"),
        ({"image_size": 48}, "image_size"),
        ({"channels": 2}, "channels"),
        ({"epochs": 0}, "epochs"),
        ({"epochs": 2.5}, "epochs"),
        ({"batch_size": 1}, "batch_size"),
        ({"lr": -1e-4}, "lr"),
        ({"beta1": 1.0}, "beta1"),
        ({"real_label": 0.3}, "real_label"),
        ({"bf16": "yes"}, "bf16"),
        ({"channels_last": 1}, "channels_last"),
        ({"ngf": True}, "ngf"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_settings_name_the_key(settings: dict, key: str) -> None:
    with pytest.raises(SettingsError, match=f"'{key}'"):
        dcgan_settings(settings)


@pytest.mark.parametrize(
    ("epochs", "every", "expected"),
    [(3, 2, [2, 3]), (4, 2, [2, 4]), (3, 10, [3]), (1, 1, [1])],
)
def test_snapshot_epochs_include_the_last(epochs: int, every: int, expected: list[int]) -> None:
    settings = dcgan_settings({"epochs": epochs, "snapshot_every_epochs": every})
    assert snapshot_epochs(settings) == expected


def test_bf16_flag() -> None:
    cpu = torch.device("cpu")
    assert use_bf16(True, cpu) and not use_bf16(False, cpu)
    assert use_bf16("auto", cpu) == bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


# ---- data and steps -------------------------------------------------------------------------


def test_prepare_images_resizes_once_to_minus_one_one() -> None:
    images = np.zeros((3, 64, 64), np.uint8)
    images[1] = 255
    images[2, :, 32:] = 255  # half black, half white
    out = prepare_images(images, 32, 3)
    assert out.shape == (3, 3, 32, 32) and out.dtype == torch.float32
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert torch.all(out[0] == -1) and torch.all(out[1] == 1)
    assert torch.equal(out[2, 0], out[2, 2])  # gray repeated
    assert out[2, 0, 0, 0] == -1 and out[2, 0, 0, -1] == 1
    with pytest.raises(ValueError, match="uint8"):
        prepare_images(images.astype(np.float32), 32, 1)


@pytest.mark.parametrize("bf16", [False, True])
def test_steps_train_d_and_change_both_networks(bf16: bool) -> None:
    """On one constant image D learns quickly to tell it from G's output."""
    settings = _settings(batch_size=16, bf16=bf16)
    trainer = _trainer(settings, np.full((32, 32, 32), 200, np.uint8))
    g0 = [p.detach().clone() for p in trainer.generator.parameters()]
    d0 = [p.detach().clone() for p in trainer.discriminator.parameters()]
    losses = [trainer.train_step()["loss_d"] for _ in range(12)]
    assert trainer.step == 12 and trainer.steps_per_epoch == 2 and len(trainer.history) == 6
    assert np.mean(losses[-3:]) < 0.75 * np.mean(losses[:3])
    for before, net in ((g0, trainer.generator), (d0, trainer.discriminator)):
        assert all(not torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))


def test_each_epoch_visits_a_fresh_permutation_and_drops_the_last_partial_batch() -> None:
    trainer = _trainer(_settings(), _images(n=43))  # 43 // 8 = 5 steps, 3 images dropped
    seen: list[torch.Tensor] = []
    for _ in range(2):
        trainer.train_step()
        seen.append(trainer.perm.clone())
        for _ in range(4):
            trainer.train_step()
    assert trainer.steps_per_epoch == 5 and [r["epoch"] for r in trainer.history] == [1, 2]
    for perm in seen:
        assert sorted(perm.tolist()) == list(range(43))
    assert not torch.equal(seen[0], seen[1])
    assert set(trainer.history[0]) == set(LOG_COLUMNS)


def test_non_finite_loss_stops_with_a_clear_error() -> None:
    settings = _settings()
    data = prepare_images(_images(), 32, 1)
    data[:] = float("nan")
    trainer = DcganTrainer(data, settings)
    with pytest.raises(NonFiniteLossError, match="non-finite loss at step 1"):
        trainer.train_step()
    assert trainer.step == 0
    with pytest.raises(NonFiniteLossError, match="not saving"):
        trainer.state_dict()  # the NaN update must never reach a saved state


# ---- resume and published files -------------------------------------------------------------


def _weights(trainer: DcganTrainer) -> list[torch.Tensor]:
    return [
        t.detach().clone()
        for net in (trainer.generator, trainer.discriminator)
        for t in net.state_dict().values()
    ]


@pytest.mark.parametrize("bf16", [False, True])
def test_killed_and_resumed_trainer_is_bitwise_identical(tmp_path: Path, bf16: bool) -> None:
    settings = _settings(bf16=bf16)
    total = settings.epochs * 5
    reference = _trainer(settings)
    run_resumable(reference, total, StateStore(tmp_path / "reference"))

    store = StateStore(tmp_path / "state")

    def kill_at_7(trainer: DcganTrainer, _metrics: dict[str, float]) -> None:
        if trainer.step == 7:  # mid-epoch 2: the permutation must come back too
            os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(JobInterrupted) as info:
        run_resumable(_trainer(settings), total, store, on_step=kill_at_7)
    assert info.value.code == EXIT_INTERRUPTED and info.value.step == 7
    resumed = _trainer(settings)
    assert run_resumable(resumed, total, store) is True
    assert resumed.step == total
    for a, b in zip(_weights(resumed), _weights(reference), strict=True):
        assert torch.equal(a, b)
    strip = [
        {k: r[k] for k in ("epoch", "loss_d", "loss_g", "d_real", "d_fake")}
        for r in resumed.history
    ]
    assert strip == [{k: r[k] for k in strip[0]} for r in reference.history]


def _published(out_dir: Path) -> set[Path]:
    return {p for p in out_dir.rglob("*") if p.is_file()}


def test_train_dcgan_publishes_exactly_the_promised_files(tmp_path: Path, caplog) -> None:
    settings = _settings()
    out, state = tmp_path / "out", tmp_path / "state"
    with caplog.at_level(logging.INFO, logger="cxrlib.dcgan.trainer"):
        train_dcgan(_images(), settings, "tiny", out, state)
    assert _published(out) == set(published_files(settings, out))
    assert [p.name for p in sorted((out / "snapshots").iterdir())] == [
        "epoch0002.pt",
        "epoch0003.pt",
    ]

    log = pd.read_csv(out / "train_log.csv")
    assert tuple(log.columns) == LOG_COLUMNS
    assert log["epoch"].tolist() == [1, 2, 3] and log["step"].tolist() == [5, 10, 15]
    assert log[["loss_d", "loss_g"]].gt(0).all().all()
    assert log[["d_real", "d_fake"]].apply(lambda c: c.between(0, 1)).all().all()
    assert (log["images_per_s"] > 0).all()

    with Image.open(out / "grids" / "epoch0003.png") as grid:  # 4 x 4 tiles of 32 px, 2 px gaps
        assert grid.size == (4 * 34 + 2, 4 * 34 + 2) and grid.mode == "L"

    # the finished state stays (a longer run continues from it), the snapshots and grids
    # published as hard links into it: no second copy on disk
    assert sorted(p.name for p in state.iterdir()) == [
        "events.log", "grids", "snapshots", "state.json", "state.pt"
    ]  # fmt: skip
    for name in ("snapshots/epoch0002.pt", "grids/epoch0003.png"):
        assert (out / name).stat().st_ino == (state / name).stat().st_ino
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("epoch ")]
    assert len(lines) == 3 and lines[0].startswith("epoch 1/3 step 5 loss_d")
    assert all("\r" not in line and "img/s" in line and "ETA" in line for line in lines)


@pytest.mark.parametrize("stop_step", [8, 10])  # mid-epoch; right after snapshot 2 was written
def test_interrupted_train_dcgan_resumes_to_identical_snapshots(
    tmp_path: Path, monkeypatch, stop_step: int
) -> None:
    settings = _settings()
    train_dcgan(_images(), settings, "tiny", tmp_path / "ref", tmp_path / "ref_state")

    original = train_module.EpochEnd.__call__

    def interrupting(self, trainer, metrics):
        original(self, trainer, metrics)
        if trainer.step == stop_step:
            os.kill(os.getpid(), signal.SIGTERM)

    out, state = tmp_path / "out", tmp_path / "state"
    monkeypatch.setattr(train_module.EpochEnd, "__call__", interrupting)
    with pytest.raises(JobInterrupted):
        train_dcgan(_images(), settings, "tiny", out, state)
    assert not out.exists()  # nothing is published before the run completes
    monkeypatch.setattr(train_module.EpochEnd, "__call__", original)
    train_dcgan(_images(), settings, "tiny", out, state)

    for epoch in snapshot_epochs(settings):
        ours = read_snapshot(out / "snapshots" / f"epoch{epoch:04d}.pt")
        ref = read_snapshot(tmp_path / "ref" / "snapshots" / f"epoch{epoch:04d}.pt")
        assert ours["progress"] == {"epoch": epoch}
        assert ours["generator"].keys() == ref["generator"].keys()
        assert all(torch.equal(ours["generator"][k], ref["generator"][k]) for k in ref["generator"])
        grid = out / "grids" / f"epoch{epoch:04d}.png"
        assert grid.read_bytes() == (tmp_path / "ref" / "grids" / grid.name).read_bytes()
    cols = ["epoch", "step", "loss_d", "loss_g", "d_real", "d_fake"]
    pd.testing.assert_frame_equal(
        pd.read_csv(out / "train_log.csv")[cols],
        pd.read_csv(tmp_path / "ref" / "train_log.csv")[cols],
    )
    assert "resumed at step" in (state / "events.log").read_text()


def test_snapshot_loads_and_samples_deterministically(tmp_path: Path) -> None:
    settings = _settings(channels=3, epochs=1)
    train_dcgan(_images(), settings, "rgb", tmp_path / "out", tmp_path / "state")
    path = tmp_path / "out" / "snapshots" / "epoch0001.pt"
    payload = read_snapshot(path)
    assert payload["model"] == "dcgan" and payload["run"] == "rgb" and payload["seed"] == 0
    assert payload["kwargs"] == {"nz": 100, "ngf": 8, "channels": 3, "image_size": 32}
    G = load_generator(path)
    a = G.sample(5, torch.Generator().manual_seed(11))
    b = load_generator(path).sample(5, torch.Generator().manual_seed(11))
    assert a.shape == (5, 3, 32, 32) and torch.equal(a, b)
    assert a.min() >= -1 and a.max() <= 1
    assert not torch.equal(a, G.sample(5, torch.Generator().manual_seed(12)))


def test_tile_lays_images_out_in_rows_of_ceil_sqrt_n() -> None:
    images = torch.linspace(-1, 1, 5).view(5, 1, 1, 1).expand(5, 1, 3, 3)  # 5 flat images
    grid = tile(images, pad=1)
    assert grid.shape == (2 * 4 + 1, 3 * 4 + 1) and grid.dtype == np.uint8  # 2 rows x 3 columns
    assert [grid[1, 1], grid[1, 5], grid[1, 9], grid[5, 1], grid[5, 5]] == [0, 64, 128, 191, 255]
    assert grid[5, 9] == 0 and grid[0].max() == 0  # empty slot and padding stay black


# ---- report ---------------------------------------------------------------------------------


def _is_png(path: Path) -> bool:
    with Image.open(path) as im:
        return im.format == "PNG" and min(im.size) > 100


def test_plots_write_pngs(tmp_path: Path) -> None:
    settings = _settings(epochs=4, snapshot_every_epochs=1)
    out = tmp_path / "out"
    train_dcgan(_images(), settings, "tiny", out, tmp_path / "state")

    plot_training_curves(pd.read_csv(out / "train_log.csv"), tmp_path / "curves.png")
    grids = {e: out / "grids" / f"epoch{e:04d}.png" for e in snapshot_epochs(settings)}
    plot_grids_across_epochs(grids, tmp_path / "grids.png", max_panels=3, synthetic=True)

    epochs = np.array([10, 20, 30, 40])
    rows = []
    for extractor, offset in (("inception", 0.0), ("cxr_resnet", 5.0)):
        fid = np.array([90.0, 40.0, 35.0, 60.0]) + offset
        for e, f in zip(epochs, fid, strict=True):
            rows.append(
                {
                    "epoch": e,
                    "extractor": extractor,
                    "fid": f,
                    "kid_mean": f / 1000,
                    "kid_std": 0.002,
                    "diversity_ratio": 1.0 - e / 100,
                    "best": f == fid.min(),
                    "collapse_epoch": 40.0 if extractor == "inception" else np.nan,
                }
            )
    plot_sweep(pd.DataFrame(rows), tmp_path / "sweep.png")
    # as cxrlib.scoring.sweep builds it: one row per reference set too
    two_refs = pd.concat([pd.DataFrame(rows).assign(reference=r) for r in ("train", "test")])
    plot_sweep(two_refs, tmp_path / "sweep_refs.png")
    no_collapse = pd.DataFrame(rows).drop(columns="collapse_epoch")
    plot_sweep(no_collapse, tmp_path / "sweep_plain.png")
    for name in ("curves", "grids", "sweep", "sweep_refs", "sweep_plain"):
        assert _is_png(tmp_path / f"{name}.png")
    with pytest.raises(ValueError, match="kid_std"):
        plot_sweep(no_collapse.drop(columns="kid_std"), tmp_path / "bad.png")
    # With density and coverage (score tables since they were added): two more panels, NaN
    # ones (too few reals for k) named under the axes like the other metrics.
    dc = two_refs.assign(density=0.9, coverage=0.6, not_computable="")
    dc.loc[dc.reference == "test", ["density", "coverage"]] = np.nan
    dc.loc[dc.reference == "test", "not_computable"] = (
        "density/coverage: test/NORMAL has 4 images, needs > 5 (metrics.dc_neighborhood)"
    )
    plot_sweep(dc, tmp_path / "sweep_dc.png")
    plain, with_dc = (Image.open(tmp_path / f"{n}.png") for n in ("sweep_refs", "sweep_dc"))
    # two more panels: a row more, at the report pane's width
    assert with_dc.size[1] > plain.size[1] * 1.2 and abs(with_dc.size[0] - plain.size[0]) < 60
    # panels side by side, not stacked: the figure is wider than tall (it fits a laptop's
    # window in the report at its width, tests/test_workflow.py checks it there)
    for figure in (plain, with_dc):
        assert figure.size[1] < figure.size[0]
