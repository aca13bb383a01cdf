"""DCGAN run settings (`dcgan.settings` in the config), checks, and the snapshot epochs and
file names known before training.

Torch-free: the workflow reads these at DAG build (cxrlib.plan), where importing torch
would cost seconds on every `snakemake` call and every cluster job.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cxrlib.jobs.resume import ResumeContract
from cxrlib.settings import NUMBER_HINT

IMAGE_SIZES = (32, 64, 128)  # px: the generator's depth is fixed per size
CHANNELS = (1, 3)  # grayscale, or the gray image repeated as RGB


class SettingsError(ValueError):
    """A DCGAN setting is unknown or out of range; the message names the key."""


@dataclass(frozen=True)
class DcganSettings:
    """One DCGAN run, as the study configures it (defaults: the DCGAN paper and tutorial)."""

    image_size: int = 64  # px, side of generated and (resized) real images: 32, 64 or 128
    channels: int = 1  # 1 = grayscale, 3 = the gray image repeated (the study's RGB variant)
    nz: int = 100  # latent dimension
    ngf: int = 64  # generator width (feature maps of its last hidden layer)
    ndf: int = 64  # discriminator width (feature maps of its first layer)
    epochs: int = 200  # passes over the training images
    batch_size: int = 64  # images per step (real and fake batches each)
    lr: float = 2e-4  # Adam learning rate, both networks
    beta1: float = 0.5  # Adam beta1
    beta2: float = 0.999  # Adam beta2
    real_label: float = 1.0  # D's target for real images; < 1 = one-sided label smoothing
    seed: int = 0  # seeds init, grid noise, shuffles and z
    snapshot_every_epochs: int = 10  # snapshot + grid every this many epochs (and the last)
    grid_size: int = 64  # images in the fixed-noise grid (64 -> 8x8)
    bf16: bool | str = "auto"  # bf16 autocast: "auto" = where the hardware has native bf16
    channels_last: bool = True  # NHWC memory format (faster convolutions on CPU and GPU)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            _check(f.name, getattr(self, f.name))


def _check(key: str, value: Any) -> None:
    """Raise SettingsError naming `key` when `value` is of the wrong type or out of range."""

    def fail(expected: str) -> None:
        hint = f"; {NUMBER_HINT}" if isinstance(value, str) and key != "bf16" else ""
        raise SettingsError(f"dcgan setting {key!r} must be {expected}, got {value!r}{hint}")

    is_int = isinstance(value, int) and not isinstance(value, bool)
    is_num = isinstance(value, int | float) and not isinstance(value, bool)
    if key == "image_size" and not (is_int and value in IMAGE_SIZES):
        fail(f"one of {', '.join(map(str, IMAGE_SIZES))}")
    elif key == "channels" and not (is_int and value in CHANNELS):
        fail("1 (grayscale) or 3 (gray repeated as RGB)")
    elif key in ("nz", "ngf", "ndf", "epochs", "snapshot_every_epochs", "grid_size"):
        if not (is_int and value >= 1):
            fail("an integer >= 1")
    elif key == "batch_size" and not (is_int and value >= 2):
        fail("an integer >= 2 (batch norm needs a batch)")
    elif key == "seed" and not (is_int and value >= 0):
        fail("an integer >= 0")
    elif key == "lr" and not (is_num and 0 < value < 1):
        fail("a number in (0, 1)")
    elif key in ("beta1", "beta2") and not (is_num and 0 <= value < 1):
        fail("a number in [0, 1)")
    elif key == "real_label" and not (is_num and 0.5 < value <= 1):
        fail("a number in (0.5, 1] (1 = no label smoothing)")
    elif key == "bf16" and not (value == "auto" or isinstance(value, bool)):
        fail('"auto", true or false')
    elif key == "channels_last" and not isinstance(value, bool):
        fail("true or false")


def dcgan_settings(d: Mapping[str, Any]) -> DcganSettings:
    """Settings from a config mapping; unknown keys and bad values raise SettingsError."""
    known = [f.name for f in dataclasses.fields(DcganSettings)]
    unknown = sorted(set(d) - set(known))
    if unknown:
        raise SettingsError(
            f"unknown dcgan setting(s) {', '.join(map(repr, unknown))}; known: {', '.join(known)}"
        )
    return DcganSettings(**dict(d))


def snapshot_epochs(settings: DcganSettings) -> list[int]:
    """Epochs (1-based) with a snapshot and a grid: every `snapshot_every_epochs`, and the last."""
    every = settings.snapshot_every_epochs
    epochs = list(range(every, settings.epochs + 1, every))
    if not epochs or epochs[-1] != settings.epochs:
        epochs.append(settings.epochs)
    return epochs


def snapshot_name(epoch: int) -> str:
    return f"epoch{epoch:04d}.pt"


def grid_name(epoch: int) -> str:
    return f"epoch{epoch:04d}.png"


def published_files(settings: DcganSettings, out_dir: str | Path) -> list[Path]:
    """Every file a finished run writes into `out_dir`: snapshots, grids, train_log.csv."""
    out_dir = Path(out_dir)
    epochs = snapshot_epochs(settings)
    return [
        *(out_dir / "snapshots" / snapshot_name(e) for e in epochs),
        *(out_dir / "grids" / grid_name(e) for e in epochs),
        out_dir / "train_log.csv",
    ]


# -- the planning interface (cxrlib.plan.generators) --------------------------------------------

DISPLAY_NAME = "DCGAN"
PROGRESS = "epoch"
SCHEDULE_KEY = "snapshot_every_epochs"
RESUME_CONTRACT = ResumeContract(
    "dcgan", frozenset({"snapshot_every_epochs"}), length="epochs", unit="epochs"
)


def run_settings(merged: Mapping[str, Any]) -> DcganSettings:
    return dcgan_settings(merged)


def snapshots(settings: DcganSettings) -> list[tuple[str, float]]:
    """(stem, epoch) of every snapshot of the run: ("epoch0010", 10.0), ..."""
    return [(Path(snapshot_name(e)).stem, float(e)) for e in snapshot_epochs(settings)]


def resolution(settings: DcganSettings) -> int:
    return settings.image_size


def resume_settings(settings: DcganSettings, saved: Mapping[str, Any]) -> dict[str, Any]:
    return dataclasses.asdict(settings)


def grid_columns(settings: DcganSettings) -> int:
    """Images per row of the run's fixed-noise grids (square: ceil(sqrt(grid_size)))."""
    return math.ceil(math.sqrt(settings.grid_size))
