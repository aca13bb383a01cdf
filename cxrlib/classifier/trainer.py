"""Training the NORMAL vs PNEUMONIA classifier, resumably, and using it.

One run = one arm (real only, real + classical augmentation, real + synthetic images at a
ratio) and one seed. The trainer follows `cxrlib.jobs.survival.Resumable`: a step is one
minibatch, the state holds everything that changes (model, AdamW moments, best model so far,
early-stopping counters, history), and run_resumable saves it on a timer and on signals.

Randomness: each epoch's shuffle and each step's augmentation draw from a `torch.Generator`
seeded from (seed, epoch) or (seed, step) (`derived_seed`), and the model's initial weights
from a fork of torch's global RNG seeded from `seed`. A generator that is re-created from the
step counter carries exactly the information a stored generator state would, so the resume
state needs only the counter, and a killed and resumed run is bitwise identical to an
uninterrupted one on the CPU (tests/test_classifier.py checks it). ResNets have no dropout, so
no step draws from the global RNG.

Schedule: AdamW, learning rate on a cosine from `lr` to 0 over epochs x steps_per_epoch steps.
At the end of each epoch the model is scored on the validation split (patient-disjoint from
train): loss and AUROC. The best epoch (highest val AUROC, ties broken by lower val loss) is
kept; after `patience` epochs without improvement training stops early by setting the step
counter to the total, which ends run_resumable's loop normally (the cosine schedule is then
cut short, which is what early stopping means).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from PIL import Image
from sklearn.metrics import roc_auc_score

from cxrlib.classifier.networks import (
    build_classifier,
    load_classifier,
    save_classifier,
    to_float,
    to_model_input,
)
from cxrlib.classifier.settings import ClassifierSettings
from cxrlib.classifier.settings import classifier_settings as classifier_settings  # re-exported
from cxrlib.data.cache import SplitArrays
from cxrlib.io import write_csv
from cxrlib.jobs.resume import CONTRACTS, data_fingerprint
from cxrlib.jobs.survival import StateStore, run_resumable
from cxrlib.logs import format_eta

log = logging.getLogger(__name__)

HISTORY_COLUMNS = ("epoch", "train_loss", "val_loss", "val_auroc", "lr", "seconds")
# Classic augmentation ranges (the "real + classical augmentation" arm).
ROTATION_DEG = 10.0
SHIFT_FRACTION = 0.08
BRIGHTNESS = 0.10  # added, on the [0, 1] scale
CONTRAST = 0.20  # factor drawn from [1 - CONTRAST, 1 + CONTRAST] around the image mean
# Streams of derived seeds, so that the shuffle and the augmentation never share draws.
_SHUFFLE_STREAM = 1
_AUGMENT_STREAM = 2


def derived_seed(seed: int, stream: int, index: int) -> int:
    """A 63-bit seed for draw `index` of `stream`, well mixed (no overlap between neighbours)."""
    return int(np.random.SeedSequence([seed, stream, index]).generate_state(2, np.uint64)[0] >> 1)


def classic_augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random rotation (±10°), shift (±8 % per axis), brightness and contrast jitter.

    x: float (N, 1, H, W) in [0, 1]; returns the same shape, clamped to [0, 1]. Parameters are
    drawn per image from `generator` (CPU) in a fixed order; areas moved in from outside the
    image are black, as collimated film borders are.
    """
    if x.dim() != 4:
        raise ValueError(f"expected (N, C, H, W), got {tuple(x.shape)}")
    n = x.shape[0]

    def uniform(half: float) -> torch.Tensor:
        return (torch.rand(n, generator=generator, dtype=torch.float64) * 2 - 1) * half

    angle = uniform(math.radians(ROTATION_DEG))
    # affine_grid's coordinates span [-1, 1]: a shift of f of the side is 2f there.
    tx, ty = uniform(2 * SHIFT_FRACTION), uniform(2 * SHIFT_FRACTION)
    brightness, contrast = uniform(BRIGHTNESS), 1 + uniform(CONTRAST)
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
    theta = theta.to(device=x.device, dtype=x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    view = (n, 1, 1, 1)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    c = contrast.to(x).view(view)
    b = brightness.to(x).view(view)
    return ((x - mean) * c + mean + b).clamp(0, 1)


def _cosine_lr(base: float, step: int, total: int) -> float:
    return base * 0.5 * (1 + math.cos(math.pi * min(step, total) / max(total, 1)))


def _auroc(y: np.ndarray, scores: np.ndarray) -> float:
    return float(roc_auc_score(y, scores)) if len(np.unique(y)) == 2 else float("nan")


class ClassifierTrainer:
    """Resumable trainer of one classifier run; `step` counts minibatches."""

    def __init__(
        self,
        train: tuple[np.ndarray, np.ndarray],  # uint8 (N, H, W), int labels (N,) into label_names
        val: tuple[np.ndarray, np.ndarray],  # the same for the validation split
        settings: ClassifierSettings,
        label_names: Sequence[str],  # class names; labels index into them
        positive_index: int,  # the class whose probability is the score (PNEUMONIA)
        device: str | torch.device = "cpu",
        contract: str = "classifier",  # resume contract (cxrlib.jobs.resume.CONTRACTS)
    ):
        self.settings = s = settings
        self.resume_contract = CONTRACTS[contract]
        self.data = data_fingerprint(*train, *val)
        self.label_names = tuple(label_names)
        self.positive_index = int(positive_index)
        self.device = torch.device(device)
        on_cuda = self.device.type == "cuda"
        self.amp = s.amp and on_cuda
        self.memory_format = (
            torch.channels_last if s.channels_last and on_cuda else torch.contiguous_format
        )
        k = len(self.label_names)
        self.x_train, self.y_train = self._inputs(*train, "train")
        self.x_val, self.y_val = self._inputs(*val, "val")
        counts = torch.bincount(self.y_train, minlength=k)
        if (counts == 0).any():
            missing = [self.label_names[i] for i in range(k) if counts[i] == 0]
            raise ValueError(f"the training set has no images of class(es) {', '.join(missing)}")
        # inverse frequency, normalised so a balanced set gets weight 1 per class
        weights = counts.sum() / (k * counts.double()) if s.class_weighted_loss else torch.ones(k)
        self.class_weights = weights.float().to(self.device)

        # reproducible init without touching the caller's RNG (the init draws on the CPU)
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(s.seed)
            model = build_classifier(s.arch, s.weights, num_classes=k)
        self.model = model.to(self.device, memory_format=self.memory_format).train()
        self.optimiser = torch.optim.AdamW(
            self.model.parameters(), lr=s.lr, weight_decay=s.weight_decay
        )
        self.batch_size = min(s.batch_size, len(self.x_train))
        # drop the shuffled remainder: a batch of 1 would break BatchNorm
        self.steps_per_epoch = len(self.x_train) // self.batch_size
        self.total_steps = s.epochs * self.steps_per_epoch
        self.step = 0
        self.best_state: dict[str, torch.Tensor] | None = None
        self.best_auroc = -math.inf
        self.best_loss = math.inf
        self.best_epoch = 0
        self.bad_epochs = 0
        self.stopped_early = False
        self.history: list[dict[str, float]] = []
        self._epoch_loss_sum = 0.0
        self._epoch_seconds = 0.0
        self._order_cache: tuple[int, torch.Tensor] | None = None

    def _inputs(
        self, images: np.ndarray, labels: np.ndarray, split: str
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Resize once to the model's input, kept as uint8 (N, 1, S, S) on the CPU."""
        if images.ndim != 3 or images.dtype != np.uint8:
            raise ValueError(
                f"{split} images must be uint8 (N, H, W), got {images.dtype} {images.shape}"
            )
        labels = np.asarray(labels, dtype=np.int64)
        if len(labels) != len(images) or len(images) < 2:
            raise ValueError(f"{split}: {len(images)} images and {len(labels)} labels (need >= 2)")
        if labels.min() < 0 or labels.max() >= len(self.label_names):
            raise ValueError(f"{split} labels must index into {self.label_names}")
        x = torch.cat(
            [
                to_model_input(torch.from_numpy(images[i : i + 256]), self.settings.image_size)
                for i in range(0, len(images), 256)
            ]
        )
        return x, torch.from_numpy(labels)

    # -- one step ---------------------------------------------------------------------------

    def _order(self, epoch: int) -> torch.Tensor:
        if self._order_cache is None or self._order_cache[0] != epoch:
            g = torch.Generator().manual_seed(
                derived_seed(self.settings.seed, _SHUFFLE_STREAM, epoch)
            )
            self._order_cache = (epoch, torch.randperm(len(self.x_train), generator=g))
        return self._order_cache[1]

    def _batch(self, images: torch.Tensor) -> torch.Tensor:
        x = to_float(images).to(self.device, non_blocking=True)
        return x.contiguous(memory_format=self.memory_format)

    def lr_at(self, step: int) -> float:
        return _cosine_lr(self.settings.lr, step, self.total_steps)

    def train_step(self) -> dict[str, float]:
        started = time.perf_counter()
        epoch, i = divmod(self.step, self.steps_per_epoch)
        idx = self._order(epoch)[i * self.batch_size : (i + 1) * self.batch_size]
        x = self._batch(self.x_train[idx])
        y = self.y_train[idx].to(self.device)
        if self.settings.augment == "classic":
            g = torch.Generator().manual_seed(
                derived_seed(self.settings.seed, _AUGMENT_STREAM, self.step)
            )
            x = classic_augment(x, g)
        lr = self.lr_at(self.step)
        for group in self.optimiser.param_groups:
            group["lr"] = lr
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            logits = self.model(x)
        loss = F.cross_entropy(logits.float(), y, weight=self.class_weights)
        if not torch.isfinite(loss):
            # stop before the update: the last saved state stays good
            raise FloatingPointError(
                f"non-finite classifier loss at step {self.step} (epoch {epoch + 1}); lower lr "
                "or check the inputs. The last saved state is kept"
            )
        self.optimiser.zero_grad(set_to_none=True)
        loss.backward()
        self.optimiser.step()
        self.step += 1
        value = float(loss.detach())
        self._epoch_loss_sum += value
        self._epoch_seconds += time.perf_counter() - started
        if self.step % self.steps_per_epoch == 0:
            self._end_epoch(epoch + 1, lr)
        return {"loss": value, "lr": lr}

    # -- validation and early stopping ------------------------------------------------------

    @torch.no_grad()
    def validate(self) -> tuple[float, float]:
        """(val loss (weighted as in training), val AUROC of P(positive)); NaN AUROC if 1 class."""
        self.model.eval()
        loss_sum, weight_sum, scores = 0.0, 0.0, []
        for start in range(0, len(self.x_val), 2 * self.batch_size):
            x = self._batch(self.x_val[start : start + 2 * self.batch_size])
            y = self.y_val[start : start + 2 * self.batch_size].to(self.device)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
                logits = self.model(x).float()
            w = self.class_weights[y]
            loss_sum += float((F.cross_entropy(logits, y, reduction="none") * w).sum())
            weight_sum += float(w.sum())
            scores.append(logits.softmax(1)[:, self.positive_index].cpu())
        self.model.train()
        y_pos = (self.y_val == self.positive_index).numpy().astype(int)
        return loss_sum / weight_sum, _auroc(y_pos, torch.cat(scores).numpy())

    @torch.no_grad()
    def recalibrate_batchnorm(self) -> None:
        """Recompute every BatchNorm's running mean/variance over the (unaugmented) train set.

        The running averages (momentum 0.1) trail the weights: after a few dozen fast steps
        they describe earlier networks, and the eval-mode model is badly calibrated (measured
        on the demo: train AUROC 0.89 but every score below 0.5, so accuracy and sensitivity
        at the 0.5 threshold collapse to one class). A pass in train mode with a cumulative
        average (torch.optim.swa_utils.update_bn) makes eval mode match the trained weights.
        """
        chunk = 2 * self.batch_size
        starts = range(0, len(self.x_train), chunk)
        # a last chunk of one image would break BatchNorm in train mode; it is dropped
        batches = (
            self._batch(self.x_train[i : i + chunk])
            for i in starts
            if len(self.x_train[i : i + chunk]) > 1
        )
        torch.optim.swa_utils.update_bn(batches, self.model)

    def _end_epoch(self, epoch: int, lr: float) -> None:
        started = time.perf_counter()
        self.recalibrate_batchnorm()
        val_loss, val_auroc = self.validate()
        seconds = self._epoch_seconds + time.perf_counter() - started
        row = {
            "epoch": epoch,
            "train_loss": self._epoch_loss_sum / self.steps_per_epoch,
            "val_loss": val_loss,
            "val_auroc": val_auroc,
            "lr": lr,
            "seconds": seconds,
        }
        self.history.append(row)
        self._epoch_loss_sum, self._epoch_seconds = 0.0, 0.0
        # NaN AUROC (one-class val split) ranks below any number: loss decides then
        auroc_key = val_auroc if math.isfinite(val_auroc) else -math.inf
        improved = auroc_key > self.best_auroc or (
            auroc_key == self.best_auroc and val_loss < self.best_loss
        )
        if improved:
            self.best_auroc, self.best_loss, self.best_epoch = auroc_key, val_loss, epoch
            self.best_state = {
                k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()
            }
            self.bad_epochs = 0
        else:
            self.bad_epochs += 1
        per_epoch = sum(r["seconds"] for r in self.history) / len(self.history)
        log.info(
            "epoch %d/%d: train_loss %.4f val_loss %.4f val_auroc %.4f lr %.2e (%.1f s) ETA %s%s",
            epoch,
            self.settings.epochs,
            row["train_loss"],
            val_loss,
            val_auroc,
            lr,
            seconds,
            format_eta(per_epoch * (self.settings.epochs - epoch)),
            " best" if improved else f" ({self.bad_epochs} without improvement)",
        )
        patience = self.settings.patience
        if patience and self.bad_epochs >= patience and self.step < self.total_steps:
            log.info(
                "early stop after epoch %d: no val improvement for %d epochs; best epoch %d",
                epoch,
                patience,
                self.best_epoch,
            )
            self.stopped_early = True
            self.step = self.total_steps

    # -- resume state -----------------------------------------------------------------------

    def resume_record(self) -> dict[str, Any]:
        """Settings, data (train and val) and progress (epochs) for the resume contract."""
        return {
            "model": self.resume_contract.model,
            "settings": self.settings.to_dict(),
            "data": self.data,
            "done": len(self.history),
        }

    def state_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "resume": self.resume_record(),
            "settings": self.settings.to_dict(),
            "n_train": len(self.x_train),
            "n_val": len(self.x_val),
            "model": self.model.state_dict(),
            "optimiser": self.optimiser.state_dict(),
            "best_state": self.best_state,
            "best_auroc": self.best_auroc,
            "best_loss": self.best_loss,
            "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_epochs,
            "stopped_early": self.stopped_early,
            "history": [dict(r) for r in self.history],
            "epoch_loss_sum": self._epoch_loss_sum,
            "epoch_seconds": self._epoch_seconds,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from `state_dict()` (run_resumable checks the resume contract first)."""
        self.step = int(state["step"])
        self.model.load_state_dict(state["model"])
        self.optimiser.load_state_dict(state["optimiser"])
        self.best_state = state["best_state"]
        self.best_auroc = float(state["best_auroc"])
        self.best_loss = float(state["best_loss"])
        self.best_epoch = int(state["best_epoch"])
        self.bad_epochs = int(state["bad_epochs"])
        self.stopped_early = bool(state["stopped_early"])
        self.history = [dict(r) for r in state["history"]]
        self._epoch_loss_sum = float(state["epoch_loss_sum"])
        self._epoch_seconds = float(state["epoch_seconds"])


def label_index(label_names: Sequence[str], label: str) -> int:
    """Index of a class by name (the order of classes comes from the data, never assumed)."""
    names = list(label_names)
    if label not in names:
        raise ValueError(f"class {label!r} not among the labels {names}")
    return names.index(label)


def train_classifier(
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    settings: ClassifierSettings,
    model_path: Path,
    state_dir: Path,
    *,
    history_path: Path,
    label_names: Sequence[str],
    positive_label: str = "PNEUMONIA",
    device: str | torch.device = "cpu",
    save_every_s: float = 600.0,
    deadline: float | None = None,
    contract: str = "classifier",
) -> dict[str, Any]:
    """Train one classifier run (resuming from `state_dir`), write the best model and history.

    `contract`: the resume contract's name (cxrlib.jobs.resume.CONTRACTS): "classifier", or
    "domain_extractor" for the CXR feature extractor (the same trainer, its own settings).

    train / val: (uint8 images (N, H, W), int labels (N,) indexing `label_names`). Writes
    `model_path` (see cxrlib.classifier.networks.save_classifier; the best epoch's weights) and
    `history_path` (CSV: epoch, train_loss, val_loss, val_auroc, lr, seconds), both atomically,
    then clears the resume state. `deadline`: unix time at which the job ends
    (`slurm_job_end_time()`); a stop signal or the deadline raises JobInterrupted (exit 75)
    after saving the state. Returns a summary dict (best epoch, its val AUROC and loss, ...).
    """
    pos = label_index(label_names, positive_label)
    trainer = ClassifierTrainer(train, val, settings, label_names, pos, device, contract)
    store = StateStore(state_dir)
    log.info(
        "classifier %s seed %d: %d train / %d val images, %d steps/epoch, up to %d epochs on %s",
        settings.arch,
        settings.seed,
        len(trainer.x_train),
        len(trainer.x_val),
        trainer.steps_per_epoch,
        settings.epochs,
        trainer.device,
    )
    resumed = run_resumable(
        trainer, trainer.total_steps, store, save_every_s=save_every_s, deadline=deadline
    )
    if trainer.best_state is None:  # cannot happen with epochs >= 1, but never write garbage
        raise RuntimeError("training ended without a validated epoch")
    save_classifier(
        model_path,
        trainer.best_state,
        arch=settings.arch,
        image_size=settings.image_size,
        label_names=label_names,
        positive_index=pos,
        settings=settings.to_dict(),
    )
    write_csv(pd.DataFrame(trainer.history, columns=list(HISTORY_COLUMNS)), history_path)
    store.clear()
    store.record(f"finished: best epoch {trainer.best_epoch}")
    return {
        "best_epoch": trainer.best_epoch,
        "best_val_auroc": trainer.history[trainer.best_epoch - 1]["val_auroc"],
        "best_val_loss": trainer.best_loss,
        "epochs_run": len(trainer.history),
        "stopped_early": trainer.stopped_early,
        "steps": trainer.step,
        "resumed": resumed,
        "n_train": len(trainer.x_train),
        "n_val": len(trainer.x_val),
    }


# -- using a trained classifier ------------------------------------------------------------


@torch.no_grad()
def predict(
    model_path: Path,
    images: np.ndarray,
    device: str | torch.device = "cpu",
    batch_size: int = 64,
) -> np.ndarray:
    """P(positive class) (N,) float64 for uint8 images (N, H, W), by the saved model."""
    model, payload = load_classifier(model_path, device)
    size, pos = payload["image_size"], payload["positive_index"]
    out = []
    for start in range(0, len(images), batch_size):
        batch = torch.from_numpy(np.ascontiguousarray(images[start : start + batch_size]))
        x = to_float(to_model_input(batch, size)).to(device)
        out.append(model(x).float().softmax(1)[:, pos].cpu())
    if not out:
        return np.zeros(0)
    return torch.cat(out).double().numpy()


def evaluate_split(
    model_path: Path, split: SplitArrays, device: str | torch.device = "cpu"
) -> pd.DataFrame:
    """Per-image predictions on a split: path, patient_id, label, y_true, score.

    y_true is 1 for the model's positive class (by name) and 0 otherwise; score is
    P(positive). This frame is what the metrics, the arm comparison and the plots read.
    """
    _, payload = load_classifier(model_path, "cpu")
    positive = payload["label_names"][payload["positive_index"]]
    labels = np.asarray(split.label_names)[split.labels]
    return pd.DataFrame(
        {
            "path": np.asarray(split.paths, dtype=str),
            "patient_id": np.asarray(split.patient_ids, dtype=str),
            "label": labels,
            "y_true": (labels == positive).astype(int),
            "score": predict(model_path, split.images, device),
        }
    )


# -- synthetic training images -------------------------------------------------------------


def load_synthetic(index_csv: Path, size: int) -> tuple[np.ndarray, list[str], list[str]]:
    """Synthetic images listed in `index_csv` -> (uint8 (M, size, size), labels, paths).

    The index has columns file (relative to its folder), label, model, run, snapshot, seed.
    Images are read as gray and resized (bilinear, antialiased) to `size`, the same way the
    classifier resizes its inputs.
    """
    index_csv = Path(index_csv)
    index = pd.read_csv(index_csv, dtype={"file": str, "label": str})
    missing = {"file", "label"} - set(index.columns)
    if missing:
        raise ValueError(f"{index_csv} lacks column(s) {', '.join(sorted(missing))}")
    images = np.zeros((len(index), size, size), dtype=np.uint8)
    paths = []
    for i, name in enumerate(index["file"]):
        path = index_csv.parent / name
        if not path.is_file():
            raise FileNotFoundError(f"{path} is listed in {index_csv} but does not exist")
        with Image.open(path) as im:
            gray = np.asarray(im.convert("L"))
        images[i] = to_model_input(torch.from_numpy(gray.copy())[None], size)[0, 0].numpy()
        paths.append(str(path))
    return images, index["label"].tolist(), paths


def add_synthetic(
    train: tuple[np.ndarray, np.ndarray],
    label_names: Sequence[str],
    synthetic: tuple[np.ndarray, Sequence[str]],
    ratio: float,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Real training set plus synthetic images at `ratio` synthetic : real per synthetic class.

    For each class L present in the synthetic labels, round(ratio x real images of L) synthetic
    images of L are drawn without replacement (seeded) and appended. Images must have the
    real images' size (load them with load_synthetic(index, size=real side)).
    """
    images, labels = train
    syn_images, syn_labels = synthetic
    syn_labels = np.asarray(syn_labels, dtype=str)
    if syn_images.shape[1:] != images.shape[1:]:
        raise ValueError(f"synthetic images {syn_images.shape[1:]} != real {images.shape[1:]}")
    rng = np.random.default_rng(seed)
    parts, part_labels = [images], [np.asarray(labels, dtype=np.int64)]
    for name in sorted(set(syn_labels)):
        k = label_index(label_names, name)
        want = round(ratio * int((labels == k).sum()))
        pool = np.flatnonzero(syn_labels == name)
        if want > len(pool):
            raise ValueError(
                f"ratio {ratio} needs {want} synthetic {name} images, only {len(pool)} available"
            )
        pick = np.sort(rng.choice(pool, size=want, replace=False))
        parts.append(syn_images[pick])
        part_labels.append(np.full(want, k, dtype=np.int64))
    return np.concatenate(parts), np.concatenate(part_labels)
