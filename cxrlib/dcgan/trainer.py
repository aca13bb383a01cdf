"""DCGAN training: the study's baseline GAN, resumable, reproducible from settings + seed.

One step is one minibatch update of D, then of G (the DCGAN tutorial's loop): D learns real
images against `real_label` and `G(z)` against 0; G then learns to make D call `G(z)` real
(the non-saturating loss), reusing the same `G(z)`. An epoch is `floor(N / batch_size)`
steps over a fresh permutation (the last partial batch is dropped: BN statistics of a tiny
batch are noise).

Reproducibility and resume. Every random draw (weight init, fixed grid noise, shuffles, z)
comes from one CPU `torch.Generator` whose state is part of the trainer state, so a run killed
and resumed from `StateStore` equals an uninterrupted one bit for bit on the CPU.

Outputs. Snakemake deletes the declared outputs of a failed job, so while training the
snapshots and grids live in the undeclared state folder and the per-epoch log in the trainer
state; only a finished run publishes them into the output folder (`published_files`).

Speed (measured with benchmarks/dcgan_step.py): channels_last tensors, bf16 autocast for the
convolutions (losses, BN statistics and Adam stay fp32), D's weights frozen during G's update
(the tutorial's loop computed their gradients there and threw them away), fused Adam.
torch.compile was measured slower on the CPU and is not used.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from cxrlib.dcgan.networks import Discriminator, Generator, init_weights
from cxrlib.dcgan.settings import (
    RESUME_CONTRACT,
    DcganSettings,
    grid_name,
    snapshot_epochs,
    snapshot_name,
)
from cxrlib.dcgan.settings import SettingsError as SettingsError  # re-exported, with:
from cxrlib.dcgan.settings import dcgan_settings as dcgan_settings
from cxrlib.dcgan.settings import published_files as published_files
from cxrlib.io import write_atomic, write_csv
from cxrlib.jobs.resume import data_fingerprint
from cxrlib.jobs.run_folder import RunFolder
from cxrlib.jobs.survival import run_resumable
from cxrlib.logs import format_eta
from cxrlib.snapshot import save_snapshot

log = logging.getLogger(__name__)

LOG_COLUMNS = (
    "epoch",
    "step",
    "loss_d",
    "loss_g",
    "d_real",
    "d_fake",
    "seconds",
    "images_per_s",
)
_METRICS = ("loss_d", "loss_g", "d_real", "d_fake")


class NonFiniteLossError(RuntimeError):
    """A loss became NaN or infinite: training stops, the last saved state is kept."""


def resolve_device(device: str | torch.device) -> torch.device:
    """`"auto"` -> cuda when available, else cpu; anything else as torch reads it."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def use_bf16(flag: bool | str, device: torch.device) -> bool:
    """Whether to autocast to bf16: `"auto"` where bf16 is native (emulated bf16 is slow)."""
    if flag != "auto":
        return bool(flag)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        # oneDNN's check for AVX512-BF16 / AMX: without them bf16 convolutions are slower than fp32
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return False


def prepare_images(
    images: np.ndarray,
    image_size: int,
    channels: int,
    device: str | torch.device = "cpu",
    channels_last: bool = True,
) -> torch.Tensor:
    """uint8 (N, H, W) -> float32 (N, channels, S, S) in [-1, 1] on `device`, made once.

    Antialiased bilinear resize to S = `image_size` (chunked: the float copy of all full-size
    images would not fit comfortably), 0..255 -> -1..1, gray repeated for 3 channels.
    """
    if images.dtype != np.uint8 or images.ndim != 3:
        raise ValueError(f"images must be uint8 (N, H, W), got {images.dtype} {images.shape}")
    n = len(images)
    out = torch.empty(n, 1, image_size, image_size)
    for start in range(0, n, 256):
        chunk = torch.from_numpy(np.ascontiguousarray(images[start : start + 256]))
        chunk = chunk.unsqueeze(1).float()
        if chunk.shape[-2:] != (image_size, image_size):
            chunk = F.interpolate(
                chunk, size=(image_size, image_size), mode="bilinear", antialias=True
            )
        out[start : start + 256] = chunk
    out = (out / 127.5 - 1.0).clamp_(-1.0, 1.0).repeat(1, channels, 1, 1)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    return out.to(device).contiguous(memory_format=memory_format)


@contextlib.contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """No weight gradients for `module` inside the block (input gradients still flow)."""
    module.requires_grad_(False)
    try:
        yield
    finally:
        module.requires_grad_(True)


class DcganTrainer:
    """The DCGAN training loop as a `Resumable` (cxrlib.jobs.survival), under the resume
    contract of cxrlib.jobs.resume (`epochs` may be raised, `snapshot_every_epochs` changed)."""

    resume_contract = RESUME_CONTRACT

    def __init__(
        self,
        images: torch.Tensor,
        settings: DcganSettings,
        device: str | torch.device = "cpu",
        data_fingerprint: str = "",
    ):
        """`images`: (N, C, S, S) in [-1, 1] on `device`, from `prepare_images`."""
        s = settings
        expected = (s.channels, s.image_size, s.image_size)
        if images.dim() != 4 or tuple(images.shape[1:]) != expected:
            raise ValueError(f"images must be (N, {expected}), got {tuple(images.shape)}")
        if len(images) < s.batch_size:
            raise ValueError(
                f"{len(images)} training images are fewer than one batch ({s.batch_size}); "
                "lower dcgan batch_size or provide more images"
            )
        self.settings = settings
        self.device = torch.device(device)
        self.images = images
        self.data_fingerprint = data_fingerprint
        self.steps_per_epoch = len(images) // s.batch_size
        self.bf16 = use_bf16(s.bf16, self.device)
        self.memory_format = torch.channels_last if s.channels_last else torch.contiguous_format

        self.rng = torch.Generator().manual_seed(s.seed)
        self.generator = Generator(s.nz, s.ngf, s.channels, s.image_size)
        self.discriminator = Discriminator(s.ndf, s.channels, s.image_size)
        init_weights(self.generator, self.rng)
        init_weights(self.discriminator, self.rng)
        for net in (self.generator, self.discriminator):
            net.to(self.device, memory_format=self.memory_format)
        # The same latents every epoch: the grids show one set of images evolving.
        self.fixed_noise = torch.randn(s.grid_size, s.nz, 1, 1, generator=self.rng)
        fused = self.device.type in ("cpu", "cuda")
        self.opt_g = torch.optim.Adam(
            self.generator.parameters(), s.lr, betas=(s.beta1, s.beta2), fused=fused
        )
        self.opt_d = torch.optim.Adam(
            self.discriminator.parameters(), s.lr, betas=(s.beta1, s.beta2), fused=fused
        )

        self.step = 0
        self.perm = torch.arange(len(images))
        self.sums = dict.fromkeys((*_METRICS, "seconds"), 0.0)  # of the current epoch
        self.history: list[dict[str, float]] = []  # one row per finished epoch (LOG_COLUMNS)

    @property
    def epoch(self) -> int:
        """Finished epochs."""
        return self.step // self.steps_per_epoch

    def _autocast(self) -> contextlib.AbstractContextManager:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    def _batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next real batch (B, C, S, S) and latents (B, nz, 1, 1), both on the device."""
        b = self.settings.batch_size
        within = self.step % self.steps_per_epoch
        if within == 0:
            self.perm = torch.randperm(len(self.images), generator=self.rng)
        index = self.perm[within * b : (within + 1) * b].to(self.device)
        real = self.images[index].contiguous(memory_format=self.memory_format)
        z = torch.randn(b, self.settings.nz, 1, 1, generator=self.rng)
        return real, z.to(self.device)

    def _update(self, real: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """One D update then one G update; returns [loss_d, loss_g, D(x), D(G(z))] (detached).

        Real and fake go through D as separate batches, so each BN sees one kind (DCGAN).
        """
        G, D = self.generator, self.discriminator
        with self._autocast():
            fake = G(z)
            logit_real = D(real).float()
            logit_fake = D(fake.detach()).float()
        # BCE with logits = the sigmoid output's BCE, computed without log(sigmoid) overflow.
        loss_d = F.binary_cross_entropy_with_logits(
            logit_real, torch.full_like(logit_real, self.settings.real_label)
        ) + F.binary_cross_entropy_with_logits(logit_fake, torch.zeros_like(logit_fake))
        self.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        self.opt_d.step()

        with frozen(D):  # G's update needs gradients through D, not of D's weights
            with self._autocast():
                logit_gen = D(fake).float()
            loss_g = F.binary_cross_entropy_with_logits(logit_gen, torch.ones_like(logit_gen))
            self.opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            self.opt_g.step()
        return torch.stack(
            [loss_d, loss_g, torch.sigmoid(logit_real).mean(), torch.sigmoid(logit_fake).mean()]
        ).detach()

    def train_step(self) -> dict[str, float]:
        """One minibatch update of D and G; returns the step's losses and mean D outputs."""
        start = time.perf_counter()
        real, z = self._batch()
        values = self._update(real, z).tolist()
        metrics = dict(zip(_METRICS, values, strict=True))
        if not all(math.isfinite(v) for v in values):
            raise NonFiniteLossError(
                f"non-finite loss at step {self.step + 1} (epoch {self.epoch + 1}): "
                f"loss_d={metrics['loss_d']}, loss_g={metrics['loss_g']}; training stopped "
                "and the last saved state kept (try a lower lr or bf16: false)"
            )
        self.step += 1
        for key, value in metrics.items():
            self.sums[key] += value
        self.sums["seconds"] += time.perf_counter() - start
        if self.step % self.steps_per_epoch == 0:
            self._close_epoch()
        return metrics

    def _close_epoch(self) -> None:
        n = self.steps_per_epoch
        seconds = self.sums["seconds"]
        row = {"epoch": self.epoch, "step": self.step}
        row |= {key: self.sums[key] / n for key in _METRICS}
        row |= {"seconds": seconds, "images_per_s": n * self.settings.batch_size / seconds}
        self.history.append(row)
        self.sums = dict.fromkeys(self.sums, 0.0)

    @torch.no_grad()
    def grid(self) -> np.ndarray:
        """The fixed-noise images tiled in a square grid, uint8 (H, W) or (H, W, 3).

        Eval mode and fp32, as a snapshot samples, so the grid shows what the snapshot makes.
        """
        G = self.generator
        G.eval()
        try:
            images = G(self.fixed_noise.to(self.device)).float().cpu()
        finally:
            G.train()
        return tile(images)

    def _check_finite(self) -> None:
        for name, net in (("generator", self.generator), ("discriminator", self.discriminator)):
            if not all(torch.isfinite(p).all() for p in net.parameters()):
                raise NonFiniteLossError(
                    f"the {name} has non-finite weights at step {self.step}; not saving them: "
                    "the last saved state is kept (try a lower lr or bf16: false)"
                )

    def resume_record(self) -> dict[str, Any]:
        """Settings, data and progress (epochs trained) for the resume contract."""
        return {
            "model": "dcgan",
            "settings": dataclasses.asdict(self.settings),
            "data": {"n_images": len(self.images), "fingerprint": self.data_fingerprint},
            "done": self.step / self.steps_per_epoch,
        }

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs to continue bit for bit (never non-finite weights)."""
        self._check_finite()
        return {
            "step": self.step,
            "resume": self.resume_record(),
            "generator": self.generator.state_dict(),
            "discriminator": self.discriminator.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "rng": self.rng.get_state(),
            "perm": self.perm.clone(),
            "fixed_noise": self.fixed_noise.clone(),
            "sums": dict(self.sums),
            "history": [dict(row) for row in self.history],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from `state_dict()` (run_resumable checks the resume contract first)."""
        self.step = int(state["step"])
        self.generator.load_state_dict(state["generator"])
        self.discriminator.load_state_dict(state["discriminator"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.rng.set_state(state["rng"])
        self.perm = state["perm"].clone()
        self.fixed_noise = state["fixed_noise"].clone()
        self.sums = {k: float(v) for k, v in state["sums"].items()}
        self.history = [dict(row) for row in state["history"]]


def tile(images: torch.Tensor, pad: int = 2) -> np.ndarray:
    """(N, C, H, W) in [-1, 1] -> one uint8 image of ceil(sqrt(N)) columns, `pad` px black gaps.

    Returns (H', W') for C = 1, (H', W', 3) for C = 3.
    """
    n, c, h, w = images.shape
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    canvas = np.zeros((rows * (h + pad) + pad, cols * (w + pad) + pad, c), np.uint8)
    pixels = ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    pixels = pixels.permute(0, 2, 3, 1).numpy()
    for i in range(n):
        r, q = divmod(i, cols)
        y, x = pad + r * (h + pad), pad + q * (w + pad)
        canvas[y : y + h, x : x + w] = pixels[i]
    return canvas[..., 0] if c == 1 else canvas


def write_png(array: np.ndarray, target: Path) -> None:
    """uint8 (H, W) or (H, W, 3) -> PNG, atomically."""
    write_atomic(target, lambda tmp: Image.fromarray(array).save(tmp, format="PNG"))


class EpochEnd:
    """`on_step` for `run_resumable`: at each epoch's end, log it and write snapshot and grid.

    Snapshots and grids go into the state folder (undeclared: survives a failed attempt). A
    resumed run that repeats an epoch rewrites the same files with the same bytes.
    """

    def __init__(self, settings: DcganSettings, run: str, work_dir: Path):
        self.settings = settings
        self.run = run
        self.work_dir = work_dir
        self.epochs = set(snapshot_epochs(settings))

    def __call__(self, trainer: DcganTrainer, _metrics: dict[str, float]) -> None:
        if trainer.step % trainer.steps_per_epoch != 0:
            return
        row = trainer.history[-1]
        epoch = int(row["epoch"])
        if epoch in self.epochs:
            save_snapshot(
                self.work_dir / "snapshots" / snapshot_name(epoch),
                model="dcgan",
                kwargs=trainer.generator.kwargs(),
                generator=trainer.generator,
                progress={"epoch": epoch},
                run=self.run,
                seed=self.settings.seed,
            )
            write_png(trainer.grid(), self.work_dir / "grids" / grid_name(epoch))
        recent = [r["seconds"] for r in trainer.history[-5:]]
        eta = (self.settings.epochs - epoch) * sum(recent) / len(recent)
        log.info(
            "epoch %d/%d step %d loss_d %.4f loss_g %.4f D(x) %.3f D(G(z)) %.3f %.1f img/s ETA %s",
            epoch,
            self.settings.epochs,
            trainer.step,
            row["loss_d"],
            row["loss_g"],
            row["d_real"],
            row["d_fake"],
            row["images_per_s"],
            format_eta(eta),
        )


def write_train_log(trainer: DcganTrainer, out_dir: Path) -> None:
    """train_log.csv of a finished run: one row per epoch (LOG_COLUMNS)."""
    settings = trainer.settings
    frame = pd.DataFrame(trainer.history, columns=list(LOG_COLUMNS))
    if len(frame) != settings.epochs:
        raise RuntimeError(f"train log has {len(frame)} epochs, expected {settings.epochs}")
    frame[["epoch", "step"]] = frame[["epoch", "step"]].astype(int)
    write_csv(frame, out_dir / "train_log.csv")


def train_dcgan(
    images: np.ndarray,
    settings: DcganSettings,
    run: str,
    out_dir: Path,
    state_dir: Path,
    *,
    device: str | torch.device = "cpu",
    save_every_s: float = 600.0,
    deadline: float | None = None,
) -> None:
    """Train one DCGAN run on uint8 (N, H, W) `images` and publish its files into `out_dir`.

    Resumes from `state_dir` when a previous attempt left state there (under the resume
    contract: cxrlib.jobs.resume); raises JobInterrupted (exit 75) after saving state on
    SIGTERM/SIGUSR1 or when the unix time `deadline` (the SLURM end time) comes close. On
    completion writes `published_files(settings, out_dir)` (snapshots and grids as hard links
    into the state folder) and keeps the finished state there, so that raising `epochs` later
    continues this run from its last epoch instead of training it again.
    """
    out_dir, state_dir = Path(out_dir), Path(state_dir)
    device = resolve_device(device)
    folder = RunFolder(
        state_dir,
        what=f"dcgan run {run}",
        schedule=[(snapshot_name(e), e) for e in snapshot_epochs(settings)],
        schedule_key="snapshot_every_epochs",
    )
    folder.open()
    data = prepare_images(
        images, settings.image_size, settings.channels, device, settings.channels_last
    )
    trainer = DcganTrainer(
        data, settings, device, data_fingerprint=data_fingerprint(images)["sha256"]
    )
    total = settings.epochs * trainer.steps_per_epoch
    log.info(
        "DCGAN run %s: %d images at %d px, %d channel(s), %d steps/epoch x %d epochs on %s "
        "(bf16 %s, channels_last %s)",
        run,
        len(images),
        settings.image_size,
        settings.channels,
        trainer.steps_per_epoch,
        settings.epochs,
        device,
        trainer.bf16,
        settings.channels_last,
    )
    store = folder.store
    try:
        run_resumable(
            trainer,
            total,
            store,
            save_every_s=save_every_s,
            on_step=EpochEnd(settings, run, state_dir),
            deadline=deadline,
        )
    except NonFiniteLossError as exc:
        store.record(f"stopped: {exc}")
        saved = f"state saved at step {store.load()['step']}" if store.exists() else "no state"
        raise NonFiniteLossError(f"{exc} ({saved} in {state_dir})") from exc
    files = [
        (state_dir / sub / name, out_dir / sub / name)
        for epoch in snapshot_epochs(settings)
        for sub, name in (("snapshots", snapshot_name(epoch)), ("grids", grid_name(epoch)))
    ]
    folder.publish(trainer.state_dict(), trainer.step, files)
    write_train_log(trainer, out_dir)
    store.record(f"finished at epoch {trainer.epoch} (step {trainer.step}); published {out_dir}")
