"""The NORMAL vs PNEUMONIA classifier: model, settings, resumable training, inference, features."""

from __future__ import annotations

import copy
import functools
import os
import signal
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torchvision
from PIL import Image
from sklearn.metrics import balanced_accuracy_score, roc_auc_score

from cxrlib.classifier.networks import (
    IMAGENET_MEAN,
    ClassifierFileError,
    build_classifier,
    features,
    load_classifier,
    save_classifier,
    to_float,
    to_model_input,
)
from cxrlib.classifier.trainer import (
    HISTORY_COLUMNS,
    ClassifierTrainer,
    add_synthetic,
    classic_augment,
    classifier_settings,
    evaluate_split,
    load_synthetic,
    predict,
    train_classifier,
)
from cxrlib.data.cache import SplitArrays
from cxrlib.data.phantom import render_radiograph
from cxrlib.jobs.survival import JobInterrupted, StateStore, run_resumable
from cxrlib.scoring.domain import DomainExtractor
from cxrlib.scoring.fidelity import array_batches, extract_features

LABELS = ("NORMAL", "PNEUMONIA")


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """Two torch threads on a 2-core machine shared with other jobs run ~10x slower than one."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@functools.cache
def _phantoms(seed: int, per_class: int, size: int, paired: bool = False):
    """uint8 (2n, size, size) phantoms, NORMAL and PNEUMONIA alternating, labels 0/1.

    paired: each patient is drawn twice from the same generator state, without and with
    opacities, so the pair differs only in the lungs' disease (what the classifier must learn).
    """
    images = []
    for i in range(per_class):
        rng = np.random.default_rng([seed, i])
        twin = copy.deepcopy(rng) if paired else rng
        images.append(render_radiograph(twin, size, size, diseased=False))
        images.append(render_radiograph(rng, size, size, diseased=True))
    return np.stack(images), np.arange(2 * per_class) % 2


def _tiny_settings(**kw):
    base = dict(arch="resnet18", image_size=32, epochs=3, batch_size=4, lr=1e-3, patience=0)
    return classifier_settings(base | kw)


# -- settings ------------------------------------------------------------------------------


def test_settings_defaults_and_unknown_keys() -> None:
    s = classifier_settings({"arch": "resnet18", "weights": None})
    assert s.arch == "resnet18" and s.weights is None and s.augment == "none"
    assert classifier_settings({"weights": "w.pth"}).weights == Path("w.pth")
    with pytest.raises(ValueError, match=r"unknown classifier setting.*learning_rate.*known: arch"):
        classifier_settings({"learning_rate": 0.1})
    with pytest.raises(ValueError, match="arch must be one of"):
        classifier_settings({"arch": "vgg16"})
    with pytest.raises(ValueError, match="augment must be one of"):
        classifier_settings({"augment": "mixup"})


# -- the model -----------------------------------------------------------------------------


def test_imagenet_weights_load_with_key_check_and_new_head(tmp_path: Path) -> None:
    torch.manual_seed(0)
    reference = torchvision.models.resnet18(weights=None)  # stands in for the fetched file
    torch.save(reference.state_dict(), tmp_path / "resnet18.pth")
    model = build_classifier("resnet18", tmp_path / "resnet18.pth", num_classes=2)
    assert torch.equal(model.net.conv1.weight, reference.conv1.weight)
    assert model.net.fc.out_features == 2
    assert torch.allclose(model.mean.flatten(), torch.tensor(IMAGENET_MEAN))
    # a file of another architecture fails by its keys, not deep inside load_state_dict
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(ClassifierFileError, match="not a torchvision resnet18 state dict"):
        build_classifier("resnet18", tmp_path / "other.pth")
    with pytest.raises(ClassifierFileError, match="do not exist"):
        build_classifier("resnet18", tmp_path / "missing.pth")


def test_gray_input_penultimate_features_and_logits() -> None:
    model = build_classifier("resnet18").eval()
    x = torch.rand(3, 1, 32, 32)
    with torch.no_grad():
        f = features(model, x)
        assert f.shape == (3, 512)
        assert torch.allclose(model.net.fc(f), model(x))
    with pytest.raises(ValueError, match=r"gray images \(N, 1, H, W\)"):
        model(torch.rand(2, 3, 32, 32))


def test_model_input_resizes_and_grays() -> None:
    flat = torch.full((2, 3, 50, 70), 77, dtype=torch.uint8)
    out = to_model_input(flat, 32)
    assert out.shape == (2, 1, 32, 32) and out.dtype == torch.uint8 and (out == 77).all()


# -- training ------------------------------------------------------------------------------


def test_classic_augment_is_seeded_and_stays_in_range() -> None:
    x = torch.rand(4, 1, 32, 32)
    a = classic_augment(x, torch.Generator().manual_seed(1))
    b = classic_augment(x, torch.Generator().manual_seed(1))
    c = classic_augment(x, torch.Generator().manual_seed(2))
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= 0 and a.max() <= 1
    assert not torch.equal(a, x)


def _weights(trainer: ClassifierTrainer) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}


def test_killed_and_resumed_run_is_bitwise_identical(tmp_path: Path) -> None:
    """Kill mid-epoch 2 (after epoch 1 was validated and kept as best), resume, compare."""
    train, val = _phantoms(0, 6, 32), _phantoms(1, 2, 32)
    settings = _tiny_settings(augment="classic")  # the augmentation's RNG must resume too

    straight = ClassifierTrainer(train, val, settings, LABELS, 1)
    while straight.step < straight.total_steps:
        straight.train_step()
    assert straight.steps_per_epoch == 3 and straight.total_steps == 9

    store = StateStore(tmp_path / "state")

    def kill_at_5(trainer: ClassifierTrainer, _m: dict[str, float]) -> None:
        if trainer.step == 5:
            os.kill(os.getpid(), signal.SIGTERM)

    first = ClassifierTrainer(train, val, settings, LABELS, 1)
    with pytest.raises(JobInterrupted):
        run_resumable(first, first.total_steps, store, on_step=kill_at_5)
    resumed = ClassifierTrainer(train, val, settings, LABELS, 1)
    assert run_resumable(resumed, resumed.total_steps, store) is True

    for name, value in _weights(straight).items():
        assert torch.equal(value, _weights(resumed)[name]), name
    assert resumed.best_epoch == straight.best_epoch
    for name, value in straight.best_state.items():
        assert torch.equal(value, resumed.best_state[name]), name
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in straight.history]
    assert strip == [{k: v for k, v in r.items() if k != "seconds"} for r in resumed.history]

    # a state written with other settings is refused, not silently mixed in
    store.save(first.state_dict(), first.step)
    other = ClassifierTrainer(train, val, replace(settings, lr=5e-4), LABELS, 1)
    with pytest.raises(ValueError, match=r"lr: 0\.001 -> 0\.0005"):
        run_resumable(other, other.total_steps, store)


def test_train_classifier_resumes_and_writes_best_model_and_history(tmp_path: Path) -> None:
    train, val = _phantoms(0, 6, 32), _phantoms(1, 2, 32)
    settings = _tiny_settings(epochs=2)
    kw = dict(label_names=LABELS)
    done = train_classifier(
        train,
        val,
        settings,
        tmp_path / "a/model.pt",
        tmp_path / "a/state",
        history_path=tmp_path / "a/history.csv",
        **kw,
    )
    assert done["epochs_run"] == 2 and not done["resumed"]
    assert not (tmp_path / "a/state/state.pt").exists()  # cleared after the outputs

    # an interrupted run of the same settings, then train_classifier picks it up
    trainer = ClassifierTrainer(train, val, settings, LABELS, 1)
    for _ in range(4):
        trainer.train_step()
    StateStore(tmp_path / "b/state").save(trainer.state_dict(), trainer.step)
    again = train_classifier(
        train,
        val,
        settings,
        tmp_path / "b/model.pt",
        tmp_path / "b/state",
        history_path=tmp_path / "b/history.csv",
        **kw,
    )
    assert again["resumed"] and again["best_epoch"] == done["best_epoch"]
    a = torch.load(tmp_path / "a/model.pt", weights_only=True)
    b = torch.load(tmp_path / "b/model.pt", weights_only=True)
    assert a["label_names"] == list(LABELS) and a["positive_index"] == 1
    assert a["settings"]["arch"] == "resnet18" and a["image_size"] == 32
    for name, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][name]), name

    history = pd.read_csv(tmp_path / "a/history.csv")
    assert list(history.columns) == list(HISTORY_COLUMNS) and list(history.epoch) == [1, 2]
    assert (history.seconds > 0).all() and history.lr.iloc[0] > history.lr.iloc[1]


def test_early_stopping_ends_the_run_and_keeps_the_best_epoch(tmp_path: Path) -> None:
    train, val = _phantoms(0, 2, 32), _phantoms(1, 2, 32)
    settings = _tiny_settings(epochs=6, patience=2)
    trainer = ClassifierTrainer(train, val, settings, LABELS, 1)
    # validation scripted: epoch 2 is best (higher AUROC), epoch 3 ties it with a higher loss
    scripted = iter([(0.7, 0.6), (0.6, 0.8), (0.65, 0.8), (0.4, 0.7), (0.3, 0.9)])
    trainer.validate = lambda: next(scripted)  # type: ignore[method-assign]
    run_resumable(trainer, trainer.total_steps, StateStore(tmp_path / "state"))
    assert trainer.stopped_early and trainer.step == trainer.total_steps
    assert len(trainer.history) == 4 and trainer.best_epoch == 2


def test_positive_class_is_found_by_name(tmp_path: Path) -> None:
    """Label order from the data decides the index: PNEUMONIA first here."""
    images, labels = _phantoms(0, 2, 32)
    names = ("PNEUMONIA", "NORMAL")
    flipped = 1 - labels
    out = train_classifier(
        (images, flipped),
        (images, flipped),
        _tiny_settings(epochs=1),
        tmp_path / "m.pt",
        tmp_path / "state",
        history_path=tmp_path / "h.csv",
        label_names=names,
    )
    assert out["epochs_run"] == 1
    _, payload = load_classifier(tmp_path / "m.pt")
    assert payload["positive_index"] == 0
    split = SplitArrays(
        images=images,
        labels=flipped,
        label_names=names,
        patient_ids=np.array([f"p{i // 2}" for i in range(len(images))]),
        paths=np.array([f"x/{i}.png" for i in range(len(images))]),
        sha256=np.array(["0"] * len(images)),
    )
    frame = evaluate_split(tmp_path / "m.pt", split)
    assert list(frame.columns) == ["path", "patient_id", "label", "y_true", "score"]
    assert (frame.y_true == (frame.label == "PNEUMONIA")).all()
    assert np.allclose(frame.score, predict(tmp_path / "m.pt", images))
    with pytest.raises(ValueError, match="not among the labels"):
        train_classifier(
            (images, labels),
            (images, labels),
            _tiny_settings(),
            tmp_path / "x.pt",
            tmp_path / "s2",
            history_path=tmp_path / "x.csv",
            label_names=("A", "B"),
        )


def test_batchnorm_statistics_describe_the_final_weights_on_the_train_set(tmp_path: Path) -> None:
    """After training, eval mode must use the statistics of the trained network, not running
    averages that trail it (they left every demo score below 0.5). The first BatchNorm's
    running mean must equal the mean of conv1's output over the train set."""
    images, labels = _phantoms(5, 8, 32)  # 16 images: two recalibration chunks of 8
    train_classifier(
        (images, labels),
        (images, labels),
        _tiny_settings(epochs=2, lr=1e-2),
        tmp_path / "m.pt",
        tmp_path / "state",
        history_path=tmp_path / "h.csv",
        label_names=LABELS,
    )
    model, _ = load_classifier(tmp_path / "m.pt")
    with torch.no_grad():
        x = to_float(to_model_input(torch.from_numpy(images), 32))
        out = model.net.conv1(model.normalise(x))
    torch.testing.assert_close(
        model.net.bn1.running_mean, out.mean(dim=(0, 2, 3)), rtol=1e-4, atol=1e-5
    )
    # cumulative average of the two chunks' unbiased batch variances
    chunk_vars = [out[i : i + 8].var(dim=(0, 2, 3)) for i in (0, 8)]
    torch.testing.assert_close(model.net.bn1.running_var, sum(chunk_vars) / 2, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_training_on_phantoms_learns_the_disease(tmp_path: Path) -> None:
    """resnet18 from scratch on 40 paired phantom patients per class at 64 px (about 15 s).

    Paired patients (the same film with and without opacities) make the disease the only thing
    that separates the classes in training. Measured here: val AUROC 0.86 after epoch 1, 0.95 by
    epoch 5. The bar is the issue's 0.8 plus a margin for other floating-point paths.
    """
    train = _phantoms(0, 40, 64, paired=True)
    val = _phantoms(1, 30, 64)
    settings = classifier_settings(
        dict(arch="resnet18", image_size=64, epochs=8, batch_size=8, lr=1e-3, seed=0)
    )
    out = train_classifier(
        train,
        val,
        settings,
        tmp_path / "m.pt",
        tmp_path / "state",
        history_path=tmp_path / "h.csv",
        label_names=LABELS,
    )
    history = pd.read_csv(tmp_path / "h.csv")
    assert out["best_val_auroc"] > 0.85, out
    # it learnt over the epochs (AUROC 0.85 on 60 images is itself far beyond luck)
    assert history.train_loss.iloc[-1] < history.train_loss.iloc[0] / 2
    assert out["best_val_auroc"] > history.val_auroc.iloc[0]
    # the saved model is the best epoch's: predict reproduces its val AUROC
    scores = predict(tmp_path / "m.pt", val[0])
    assert roc_auc_score(val[1], scores) == pytest.approx(out["best_val_auroc"], abs=1e-6)
    # and its scores are calibrated enough for the 0.5 threshold that accuracy, sensitivity
    # and specificity use (BatchNorm's running statistics match the trained weights)
    assert balanced_accuracy_score(val[1], scores > 0.5) > 0.8


# -- the domain extractor ------------------------------------------------------------------


def test_domain_extractor_gives_penultimate_features_inside_extract_features(
    tmp_path: Path,
) -> None:
    torch.manual_seed(0)
    model = build_classifier("resnet18")
    save_classifier(
        tmp_path / "m.pt",
        model,
        arch="resnet18",
        image_size=32,
        label_names=LABELS,
        positive_index=1,
        settings={},
    )
    extractor = DomainExtractor(tmp_path / "m.pt")
    assert extractor.name == "cxr-resnet18" and extractor.dim == 512
    images, _ = _phantoms(0, 3, 48)
    feats = extract_features(extractor, array_batches(images, batch_size=4))
    assert feats.shape == (6, 512) and feats.dtype == np.float32
    # 1 or 3 channels give the same features; they equal the model's own on resized input
    gray = torch.from_numpy(images).unsqueeze(1)
    assert torch.allclose(extractor(gray), extractor(gray.expand(-1, 3, -1, -1)))
    with torch.no_grad():
        direct = features(model.eval(), to_model_input(gray, 32).float() / 255)
    assert np.allclose(feats, direct.numpy(), atol=1e-5)


# -- synthetic images ----------------------------------------------------------------------


def test_load_synthetic_reads_an_index_and_resizes(tmp_path: Path) -> None:
    folder = tmp_path / "samples"
    (folder / "png").mkdir(parents=True)
    Image.fromarray(np.full((40, 40), 200, np.uint8)).save(folder / "png/a.png")
    Image.fromarray(np.full((64, 64, 3), 50, np.uint8)).save(folder / "png/b.png")  # RGB
    pd.DataFrame(
        {
            "file": ["png/a.png", "png/b.png"],
            "label": ["NORMAL", "NORMAL"],
            "model": "dcgan",
            "run": "baseline",
            "snapshot": "epoch40",
            "seed": [0, 1],
        }
    ).to_csv(folder / "index.csv", index=False)
    images, labels, paths = load_synthetic(folder / "index.csv", size=32)
    assert images.shape == (2, 32, 32) and images.dtype == np.uint8
    assert (images[0] == 200).all() and (images[1] == 50).all()
    assert labels == ["NORMAL", "NORMAL"] and paths[1] == str(folder / "png/b.png")

    real = (np.zeros((6, 32, 32), np.uint8), np.array([0, 0, 0, 0, 1, 1]))
    mixed, mixed_labels = add_synthetic(real, LABELS, (images, labels), ratio=0.5, seed=0)
    assert mixed.shape == (8, 32, 32) and list(mixed_labels) == [0, 0, 0, 0, 1, 1, 0, 0]
    with pytest.raises(ValueError, match="needs 4 synthetic NORMAL images, only 2"):
        add_synthetic(real, LABELS, (images, labels), ratio=1.0)
    (folder / "png/b.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"b\.png is listed"):
        load_synthetic(folder / "index.csv", size=32)
