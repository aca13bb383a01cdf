"""Scoring a snapshot end to end: streamed samples, a CXR-domain extractor, the sweep table and
the collapse detector on a deliberately collapsed generator and on a healthy one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from cxrlib import snapshot as snapshots
from cxrlib.classifier.networks import build_classifier, save_classifier
from cxrlib.data.phantom import render_radiograph
from cxrlib.dcgan.networks import Generator
from cxrlib.samples import load_samples, write_samples
from cxrlib.scoring.features import ExtractorSources, resize_uint8, write_real_features
from cxrlib.scoring.score import SCORE_COLUMNS, ScoreSettings, score_snapshot
from cxrlib.scoring.sweep import best_snapshot, build_sweep

pytestmark = pytest.mark.slow

SIZE = 32


class PhantomGenerator(nn.Module):
    """A 'generator' whose samples are fresh phantom radiographs: the healthy reference."""

    def __init__(self, image_size: int = SIZE):
        super().__init__()
        self.image_size = image_size
        self.dummy = nn.Parameter(torch.zeros(1))  # so it has a state dict like a network

    def sample(self, n: int, rng: torch.Generator, **options) -> torch.Tensor:
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=rng))
        images = _phantoms(n, seed, self.image_size)
        return torch.from_numpy(images).float().div(127.5).sub(1).unsqueeze(1)


def _phantoms(n: int, seed: int, size: int = SIZE) -> np.ndarray:
    rng = np.random.default_rng(seed)
    big = np.stack([render_radiograph(rng, 96, 96, False) for _ in range(n)])
    return resize_uint8(big, size)


@pytest.fixture(autouse=True)
def _register_phantom_generator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(snapshots.GENERATORS, "phantom", f"{__name__}:PhantomGenerator")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Real features of 60 NORMAL phantoms in the space of a (random-init) CXR ResNet18."""
    root = tmp_path_factory.mktemp("scoring")
    torch.manual_seed(0)
    model_path = root / "domain.pt"
    save_classifier(
        model_path,
        build_classifier("resnet18"),
        arch="resnet18",
        image_size=SIZE,
        label_names=["NORMAL", "PNEUMONIA"],
        positive_index=1,
        settings={},
    )
    images = _phantoms(60, seed=123, size=64)
    cache = root / "train.npz"
    np.savez(
        cache,
        images=images,
        labels=np.zeros(len(images), dtype=np.int64),
        label_names=np.array(["NORMAL", "PNEUMONIA"]),
        patient_ids=np.array([f"p{i}" for i in range(len(images))]),
        paths=np.array([f"train/NORMAL/p{i}.png" for i in range(len(images))]),
        sha256=np.array([str(i) for i in range(len(images))]),
    )
    sources = ExtractorSources(domain_model=model_path)
    features = root / "real_cxr_train.npz"
    n = write_real_features(cache, "NORMAL", SIZE, "cxr", sources, features)
    assert n == 60
    return {"root": root, "domain": model_path, "features": features}


def _collapsed_dcgan() -> Generator:
    """A DCGAN that ignores z: its first layer's weights are zero, so every sample is the same."""
    torch.manual_seed(1)
    generator = Generator(nz=16, ngf=8, channels=1, image_size=SIZE).eval()
    with torch.no_grad():
        generator.main[0].weight.zero_()
    return generator


def _save(path: Path, model: str, generator: nn.Module, epoch: int) -> Path:
    kwargs = generator.kwargs() if hasattr(generator, "kwargs") else {"image_size": SIZE}
    snapshots.save_snapshot(path, model, kwargs, generator, {"epoch": epoch}, "test", 0)
    return path


SETTINGS = ScoreSettings(n_fake=48, batch_size=16, kid_subsets=10, seed=0)


def test_score_row_per_extractor_and_reference(workspace: dict[str, Path]) -> None:
    snap = _save(workspace["root"] / "epoch0010.pt", "phantom", PhantomGenerator(), 10)
    sources = ExtractorSources(domain_model=workspace["domain"])
    real = {("cxr", "train"): workspace["features"], ("cxr", "test"): workspace["features"]}
    scores = score_snapshot(snap, real, sources, SETTINGS)
    assert list(scores.columns) == SCORE_COLUMNS
    assert sorted(scores.reference) == ["test", "train"] and (scores.extractor == "cxr").all()
    assert (scores.n_fake == 48).all() and (scores.n_real == 60).all()
    assert (scores.snapshot == "epoch0010").all() and (scores.epoch == 10).all()
    again = score_snapshot(snap, real, sources, SETTINGS)
    pd.testing.assert_frame_equal(scores, again)  # same seed, same numbers


def test_tiny_reference_splits_are_scored_as_nan_with_the_reason(
    workspace: dict[str, Path],
) -> None:
    """Issue 13 item 5: real features of 1, 2 and 3 images (test/NORMAL with so few passes
    data.min_eval_images_per_class) crashed score_snapshot (LinAlgError for 1, kthvalue for
    2-3 with prc_neighborhood 3); now each row is scored as far as its set allows."""
    snap = _save(workspace["root"] / "epoch0010.pt", "phantom", PhantomGenerator(), 10)
    sources = ExtractorSources(domain_model=workspace["domain"])
    with np.load(workspace["features"]) as npz:
        all_features = npz["features"]
    real = {("cxr", "train"): workspace["features"]}
    for n, split in ((1, "val"), (2, "test"), (3, "extra")):
        path = workspace["root"] / f"real_{n}.npz"
        np.savez(path, features=all_features[:n])
        real[("cxr", split)] = path
    with np.load(workspace["root"] / "train.npz") as npz:
        patients = npz["patient_ids"]
    table = score_snapshot(snap, real, sources, SETTINGS, label="NORMAL", train_patients=patients)
    assert list(table.columns) == SCORE_COLUMNS
    scores = table.set_index("reference")
    assert scores.loc["train", "not_computable"] == ""
    assert (
        scores.loc["train", ["fid", "kid_mean", "precision", "recall", "density", "coverage"]]
        .notna()
        .all()
    )
    one = scores.loc["val"]
    assert (
        one[["fid", "kid_mean", "kid_std", "precision", "recall", "density", "coverage"]]
        .isna()
        .all()
    )
    assert pd.isna(one["diversity_ratio"])
    assert pd.isna(one["kid_subset_size"])
    assert one["not_computable"].startswith("FID: val/NORMAL has 1 image, needs >= 2")
    for split, n in (("test", 2), ("extra", 3)):
        row = scores.loc[split]
        assert np.isfinite(row[["fid", "kid_mean", "diversity_ratio"]].astype(float)).all()
        assert row["kid_subset_size"] == n
        assert row[["precision", "recall", "density", "coverage"]].isna().all()
        assert row["not_computable"] == (
            f"precision/recall: {split}/NORMAL has {n} images, needs >= 4 (more than "
            "metrics.prc_neighborhood = 3: each image's 3 nearest other images) | "
            f"density/coverage: {split}/NORMAL has {n} images, needs >= 6 (more than "
            "metrics.dc_neighborhood = 5: each real image's 5 nearest other real images)"
        )


def test_collapse_detector_flags_a_collapsed_generator_and_not_a_healthy_one(
    workspace: dict[str, Path],
) -> None:
    """A sweep whose generator is healthy up to epoch 20 and collapsed from epoch 30 on."""
    root, sources = workspace["root"], ExtractorSources(domain_model=workspace["domain"])
    real = {("cxr", "train"): workspace["features"]}
    frames = []
    for epoch in (10, 20, 30, 40):
        model, generator = (
            ("phantom", PhantomGenerator()) if epoch <= 20 else ("dcgan", _collapsed_dcgan())
        )
        snap = _save(root / f"sweep/epoch{epoch:04d}.pt", model, generator, epoch)
        frames.append(score_snapshot(snap, real, sources, SETTINGS))
    sweep = build_sweep(pd.concat(frames), progress="epoch", selection_extractor="cxr")
    ratios = sweep.set_index("epoch").diversity_ratio
    assert ratios[10] > 0.7 and ratios[20] > 0.7, ratios  # fresh phantoms: as varied as real
    assert ratios[30] < 0.05 and ratios[40] < 0.05, ratios  # one image, whatever z is
    assert (sweep.collapse_epoch == 30).all()
    assert sweep.set_index("epoch").collapsed.to_dict() == {
        10: False,
        20: False,
        30: True,
        40: True,
    }
    # the healthy snapshots are nearer the real distribution: one of them is the best
    assert best_snapshot(sweep) in {"epoch0010", "epoch0020"}
    assert sweep.fid[sweep.epoch >= 30].min() > sweep.fid[sweep.epoch <= 20].max()

    healthy_only = build_sweep(pd.concat(frames[:2]), progress="epoch", selection_extractor="cxr")
    assert healthy_only.collapse_epoch.isna().all() and not healthy_only.collapsed.any()


class CopyingGenerator(nn.Module):
    """A 'generator' whose samples are the training images themselves (memorised)."""

    TRAIN: np.ndarray = np.zeros((1, SIZE, SIZE), np.uint8)  # set by the test

    def __init__(self, image_size: int = SIZE):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))

    def sample(self, n: int, rng: torch.Generator, **options) -> torch.Tensor:
        picks = torch.randint(0, len(self.TRAIN), (n,), generator=rng).numpy()
        return torch.from_numpy(self.TRAIN[picks]).float().div(127.5).sub(1).unsqueeze(1)


def test_a_snapshot_that_copies_is_flagged_and_never_chosen_as_best(
    workspace: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 25 item 4: every scored snapshot gets its near-copy share beside the rate of fresh
    real patients' images; one that copies the training images has the lowest FID against
    train, yet is skipped by the sweep, and the next best is chosen."""
    monkeypatch.setitem(snapshots.GENERATORS, "copying", f"{__name__}:CopyingGenerator")
    with np.load(workspace["root"] / "train.npz") as npz:
        CopyingGenerator.TRAIN = resize_uint8(npz["images"], SIZE)
        patients = npz["patient_ids"]
    root, sources = workspace["root"], ExtractorSources(domain_model=workspace["domain"])
    real = {("cxr", "train"): workspace["features"]}
    frames = []
    for epoch, model, generator in (
        (10, "phantom", PhantomGenerator()),
        (20, "copying", CopyingGenerator()),
    ):
        snap = _save(root / f"copies/epoch{epoch:04d}.pt", model, generator, epoch)
        frames.append(score_snapshot(snap, real, sources, SETTINGS, train_patients=patients))
    fresh, copying = (frame.iloc[0] for frame in frames)
    assert copying.near_copy_share == 1.0  # every sample is a training image
    assert 0 <= fresh.near_copy_share <= fresh.near_copy_limit < 0.5
    assert fresh.near_copy_limit == copying.near_copy_limit  # the yardstick is the real data's
    assert 0 <= fresh.heldout_near_copy_rate <= fresh.near_copy_limit
    assert copying.fid < fresh.fid  # FID alone would choose the copies
    sweep = build_sweep(pd.concat(frames), progress="epoch", selection_extractor="cxr")
    assert best_snapshot(sweep) == "epoch0010"
    assert sweep.set_index("snapshot").near_copy_skipped.to_dict() == {
        "epoch0010": False,
        "epoch0020": True,
    }
    assert "not chosen, near-copying: epoch0020 (share 1 > limit" in sweep.best_by.iloc[0]
    # without the patients' ids there is no yardstick: NaN with the reason, nothing skipped
    table = score_snapshot(snap, real, sources, SETTINGS)
    assert table.near_copy_share.isna().all()
    assert "near-copy share: no patient id" in table.not_computable.iloc[0]


def test_samples_are_written_as_pngs_with_an_index(workspace: dict[str, Path]) -> None:
    snap = _save(workspace["root"] / "samples.pt", "phantom", PhantomGenerator(), 5)
    out = workspace["root"] / "samples"
    index = write_samples(snap, out, 20, label="NORMAL", seed=3, batch_size=8)
    images, read_back = load_samples(out)
    assert images.shape == (20, SIZE, SIZE) and images.dtype == np.uint8
    pd.testing.assert_frame_equal(index, read_back)
    assert (index.snapshot == "samples").all() and index.file.str.startswith("NORMAL/").all()
    again = write_samples(
        snap, workspace["root"] / "again", 20, label="NORMAL", seed=3, batch_size=8
    )
    assert np.array_equal(load_samples(workspace["root"] / "again")[0], images)  # seeded
    assert len(again) == 20
