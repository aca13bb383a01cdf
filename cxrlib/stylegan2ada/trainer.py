"""StyleGAN2-ADA training: losses, lazy regularisation, EMA, ADA, snapshots; resumable.

Written from the papers (Karras et al. 2020a, StyleGAN2; 2020b, ADA), not from their code.

One training step (`StyleGan2AdaTrainer.train_step`) on one minibatch of `batch_size` reals:
1. G step: non-saturating logistic loss softplus(-D(aug(G(z)))), style mixing with
   probability `style_mixing_prob` (per image, crossover layer uniform in 1..num_ws-1);
2. every `pl_interval` steps, a separate G step on the path-length penalty
   (||J_w^T y||_2 - a)^2, y ~ N(0, I)/sqrt(H W), a the running mean of the lengths (decay
   `pl_decay`), on batch_size / `pl_batch_shrink` images, weighted `pl_weight * pl_interval`;
3. D step: softplus(D(aug(G(z)))) + softplus(-D(aug(x))), fakes and reals in one forward;
4. every `r1_interval` steps, a separate D step on R1 = ||grad_x D(aug(x))||^2 of the reals,
   weighted `gamma / 2 * r1_interval` ("lazy regularisation": the penalty scaled by its
   interval, as often as 1/interval);
5. EMA of G into G_ema with half-life `ema_kimg` thousand images, ramped up as
   min(ema_kimg, `ema_rampup` * images shown so far);
6. every `ada_interval` steps, ADA moves the augmentation probability p by
   sign(r_t - target) * batch * interval / (ada_kimg * 1000), r_t = E[sign(D(real))].
Both Adam optimisers (betas (0, 0.99), eps 1e-8) take the lazy-regularisation correction of the
StyleGAN2 paper: with a regularisation step every k steps there are k + 1 updates per k
minibatches, so lr *= c and betas **= c with c = k / (k + 1).

Presets (`auto` follows the ADA paper's description of its automatic configuration, appendix
on training configurations; `paper256` is its FFHQ/LSUN 256x256 setting), for resolution res
and `gpus` GPUs:

| key            | auto                                          | paper256 |
|----------------|-----------------------------------------------|----------|
| batch_size     | max(min(gpus * min(4096 // res, 32), 64), gpus) | 64     |
| gamma (R1)     | 0.0002 * res^2 / batch_size                   | 1        |
| lr (G and D)   | 0.002 if res >= 1024 else 0.0025              | 0.0025   |
| ema_kimg       | batch_size * 10 / 32                          | 20       |
| ema_rampup     | 0.05                                          | none     |
| mapping_layers | 2                                             | 8        |
| mbstd_group    | min(batch_size // gpus, 4)                    | 8        |
| channel_base   | 32768 * fmaps, fmaps = 1 if res >= 512 else 0.5 | 16384 (fmaps 0.5) |
| channel_max    | 512                                           | 512      |
So auto at 256 px on one GPU: batch 16, gamma 0.8192, lr 0.0025, ema 5 kimg, mbstd 4,
mapping 2, channel_base 16384. Regularisation is common to both: R1 every 16 D steps, path
length every 4 G steps (weight 2, decay 0.01, batch shrink 2), style mixing 0.9, ADA target
0.6 adjusted over 500 kimg every 4 steps.

Reproducibility: everything random draws from one `torch.Generator` kept in the resume state:
latents, style-mixing draws and real-image indices directly, and per step a seed for torch's
global RNG (noise inputs, the path-length noise; ADA draws from forks of it). A resumed run is
bitwise equal to an uninterrupted one on the CPU.

Data parallel (one process per GPU, e.g. under torchrun): initialise torch.distributed before
calling `train_stylegan2ada` with `device=f"cuda:{local_rank}"` and `gpus` = world size. Each
process trains on its contiguous share of every batch; gradients, the w average, the
path-length mean and ADA's r_t statistics are averaged over processes, and every process
draws the whole batch's latents and noise and keeps its rows, so the result equals one process
with the whole batch up to float summation order (tests/test_stylegan2.py, gloo on the CPU).
ADA's augmentations are drawn per process. Only the first process writes files. The stop
decision (signal, deadline) is collective: every STOP_CHECK_STEPS steps the processes agree
(`cxrlib.jobs.survival.agree_to_stop`), so all stop after the same step and the first saves
the state; no process is left waiting in a collective (tests/test_distributed.py).

Snapshots: at kimg 0 (the initial generator, for "improves on its initial snapshot"), every
`snapshot_kimg` and at `total_kimg`. Progress is counted in images shown, batch_size per
step, which need not divide snapshot_kimg * 1000: the snapshot for boundary K is taken after
the first step at which images shown >= K * 1000, and is named by K (`snapshot_name`), so the
file names are known before training (`snapshot_kimgs`) and the stored `progress["kimg"]`
is K too (`progress["kimg_shown"]` is the exact count).

Why one module of about 800 lines: the training step, its lazy regularisation, EMA, ADA's
controller and the presets table are one algorithm from one paper pair; the networks,
augmentations and the run folder live in their own modules.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
import torch.nn.functional as F
from PIL import Image

from cxrlib.io import atomic_path, write_atomic, write_csv
from cxrlib.jobs.resume import (
    data_fingerprint,
)
from cxrlib.jobs.run_folder import RunFolder
from cxrlib.jobs.survival import run_resumable
from cxrlib.logs import format_eta
from cxrlib.snapshot import save_snapshot
from cxrlib.stylegan2ada.networks import Discriminator, Generator
from cxrlib.stylegan2ada.settings import (
    RESUME_CONTRACT,
    StyleGanSettings,
    snapshot_kimgs,
    snapshot_name,
    snapshot_step,
    stylegan_settings,
)
from cxrlib.stylegan2ada.start import (
    MODEL_NAME,
    NETWORKS_FILE,
    NETWORKS_FORMAT,
    load_error,
    start_networks,
)
from cxrlib.weights import file_sha256

log = logging.getLogger(__name__)

LOG_COLUMNS = (
    "kimg", "step", "loss_g", "loss_d", "r1", "pl", "ada_p", "ada_rt", "seconds", "s_per_kimg",
)  # fmt: skip


# --------------------------------------------------------------------------------------------
# Data.


def prepare_images(
    images: np.ndarray, resolution: int, channels: int, device: str | torch.device = "cpu"
) -> torch.Tensor:
    """uint8 (N, H, W) -> float32 (N, channels, resolution, resolution) in [-1, 1] on device.

    Resized once (antialiased bilinear) when the size differs; gray repeated for RGB. The
    whole set stays on the device: a few thousand 256 px images are a few hundred MB.
    """
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 3:
        got = getattr(images, "dtype", type(images).__name__), getattr(images, "shape", None)
        raise ValueError(f"expected uint8 images (N, H, W), got {got}")
    if len(images) < 1:
        raise ValueError("no training images")
    out = []
    for i in range(0, len(images), 256):  # chunks: the float copy at full size can be large
        x = torch.from_numpy(images[i : i + 256]).float().unsqueeze(1)
        if x.shape[-2:] != (resolution, resolution):
            x = F.interpolate(x, size=(resolution, resolution), mode="bilinear",
                              align_corners=False, antialias=True)  # fmt: skip
        out.append((x / 127.5 - 1.0).clamp(-1.0, 1.0))
    x = torch.cat(out)
    if channels == 3:
        x = x.expand(-1, 3, -1, -1)
    return x.contiguous().to(device)


# --------------------------------------------------------------------------------------------
# The trainer.


@dataclass(frozen=True)
class _Latents:
    """One batch's latents, this process's rows (see `StyleGan2AdaTrainer._latents`)."""

    z: torch.Tensor  # (n, z_dim)
    z2: torch.Tensor  # (n, z_dim) style-mixing partner
    cutoff: torch.Tensor  # (n,) first layer taking z2's w; num_ws: not mixed
    any_mixed: bool  # any image of the whole batch mixed
    noise_rows: tuple[int, int, int] | None  # rows of the whole batch's noise (None: 1 process)


def _first_line(exc: BaseException) -> str:
    """The first line of an exception's message, or its type when the message is empty."""
    lines = str(exc).splitlines()
    return lines[0] if lines and lines[0].strip() else type(exc).__name__


def _lazy_adam(params: Any, lr: float, interval: int | None) -> torch.optim.Adam:
    """Adam(betas (0, 0.99), eps 1e-8) with the lazy-regularisation correction c = k/(k+1)."""
    c = interval / (interval + 1) if interval else 1.0
    return torch.optim.Adam(params, lr=lr * c, betas=(0.0**c, 0.99**c), eps=1e-8)


class StyleGan2AdaTrainer:
    """Resumable StyleGAN2-ADA training (see `cxrlib.jobs.survival.Resumable`).

    images: (N, C, R, R) float in [-1, 1] on `device` (see `prepare_images`).
    resume_from: the file to start from (transfer learning; default `settings.resume_from`):
    a snapshot (.pt of `save_snapshot`: G and G_ema), a networks file of a finished run
    (NETWORKS_FILE: G, G_ema and D), or an official StyleGAN2-ADA / StyleGAN3 network pickle
    (`cxrlib.stylegan2ada.official`: G_ema starts G and G_ema, D starts D; RGB files into 1-channel
    runs are converted exactly, and the conversion is logged). A saved resume state, once
    there, replaces this start. The ADA p starts from `augment_p`, as in the official code.
    """

    resume_contract = RESUME_CONTRACT

    def __init__(
        self,
        images: torch.Tensor,
        settings: StyleGanSettings,
        device: str | torch.device = "cpu",
        resume_from: str | Path | None = None,
        data: dict[str, Any] | None = None,  # data_fingerprint of the uint8 training images
    ):
        s = settings
        self.settings = s
        self.data = data
        self.device = torch.device(device)
        if images.ndim != 4 or images.shape[1:] != (s.channels, s.resolution, s.resolution):
            raise ValueError(
                f"images must be (N, {s.channels}, {s.resolution}, {s.resolution}), got "
                f"{tuple(images.shape)}"
            )
        self.images = images.to(self.device)
        # Data parallel when torch.distributed is initialised: one process per device, each
        # with batch_size / world images; everything else is identical in every process.
        distributed = dist.is_available() and dist.is_initialized()
        self.rank = dist.get_rank() if distributed else 0
        self.world = dist.get_world_size() if distributed else 1
        if s.batch_size % self.world or (s.batch_size // self.world) % s.mbstd_group:
            raise ValueError(
                f"batch_size {s.batch_size} must split into {self.world} equal shares that "
                f"are multiples of mbstd_group {s.mbstd_group}"
            )
        if (s.batch_size // s.pl_batch_shrink) % self.world:
            raise ValueError(
                f"the path-length batch {s.batch_size // s.pl_batch_shrink} must split into "
                f"{self.world} equal shares"
            )
        if self.world > 1 and s.gpus != self.world:
            log.warning("settings.gpus is %d but %d processes train", s.gpus, self.world)
        self._step_seed, self._aug_calls = 0, 0
        # Initial weights from a fork of the global RNG: reproducible, and the caller's RNG
        # is left alone.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(s.seed)
            self.G = Generator(**s.generator_kwargs()).to(self.device)
            self.D = Discriminator(**s.discriminator_kwargs()).to(self.device)
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        resume_from = resume_from if resume_from is not None else s.resume_from
        if resume_from is not None:
            self._transfer(Path(resume_from))
        self.opt_g = _lazy_adam(
            self.G.parameters(), s.lr, s.pl_interval if s.pl_weight > 0 else None
        )
        self.opt_d = _lazy_adam(self.D.parameters(), s.lr, s.r1_interval if s.gamma > 0 else None)
        self.pipe, self.ada = self._make_augment()
        self.rng = torch.Generator().manual_seed(s.seed)
        self.pl_mean = torch.zeros((), device=self.device)
        self.step = 0
        self.ada_rt = math.nan
        self.elapsed_s = 0.0  # training time (steps only), seconds, over all attempts
        self.log_rows: list[dict[str, float]] = []
        self._tick = self._new_tick()

    # -- construction helpers -----------------------------------------------------------------

    def _make_augment(self) -> tuple[Any, Any]:
        s = self.settings
        if s.augment == "off":
            return None, None  # nothing constructed, nothing called
        from cxrlib.stylegan2ada.augment import make_augment

        pipe, ada = make_augment(
            s.augment, s.channels, s.augment_p, target=s.ada_target, adjust_kimg=s.ada_kimg,
            batch_size=s.batch_size, interval=s.ada_interval,
        )  # fmt: skip
        return pipe.to(self.device), ada

    def _transfer(self, path: Path) -> None:
        """Load G (and G_ema, D when stored) from the run's start file
        (cxrlib.stylegan2ada.start)."""
        parts = start_networks(path, self.settings)
        for name, state in parts.items():
            try:
                getattr(self, name).load_state_dict(state)
            except RuntimeError as exc:
                raise ValueError(
                    f"cannot start from {path}: its {name} does not fit this run's settings "
                    f"(resolution, channels, channel_base/max, mapping_layers, z/w dims must "
                    f"match): {load_error(exc)}"
                ) from exc
        log.info("starting from %s (%s)", path, ", ".join(parts))

    # -- one step --------------------------------------------------------------------------

    @property
    def kimg(self) -> float:
        """Thousands of real images shown so far."""
        return self.step * self.settings.batch_size / 1000.0

    def _rows(self, total: int) -> tuple[int, int]:
        """This process's rows of a `total`-sample batch: a contiguous 1/world share."""
        n = total // self.world
        return self.rank * n, (self.rank + 1) * n

    def _latents(self, total: int) -> _Latents:
        """Latents of a `total`-sample batch (this process's rows): z, the style-mixing
        partner z2, per-image crossover layers (num_ws: not mixed).

        Every process draws the whole batch from the shared generator and keeps its rows, so
        the split changes no draw; always the same number of draws, whatever is mixed.
        """
        s, num_ws = self.settings, self.G.num_ws
        z = torch.randn(total, s.z_dim, generator=self.rng)
        z2 = torch.randn(total, s.z_dim, generator=self.rng)
        mix = torch.rand(total, generator=self.rng) < s.style_mixing_prob
        cut = torch.randint(1, num_ws, (total,), generator=self.rng)
        cutoff = torch.where(mix, cut, torch.full_like(cut, num_ws))
        lo, hi = self._rows(total)
        return _Latents(
            z[lo:hi].to(self.device), z2[lo:hi].to(self.device), cutoff[lo:hi].to(self.device),
            any_mixed=bool(mix.any()), noise_rows=(lo, hi, total) if self.world > 1 else None,
        )  # fmt: skip

    def _ws(self, lat: _Latents, update_w_avg: bool) -> torch.Tensor:
        """ws (n, num_ws, w_dim) with style mixing: layers >= cutoff take z2's w."""
        ws = self.G.mapping(lat.z)
        if update_w_avg:
            self.G.mapping.update_average(self._mean_over_processes(ws[:, 0].detach().mean(dim=0)))
        if lat.any_mixed:  # decided on the whole batch: every process builds the same graph
            ws2 = self.G.mapping(lat.z2)
            layer = torch.arange(self.G.num_ws, device=self.device)
            ws = torch.where((layer[None, :] >= lat.cutoff[:, None])[:, :, None], ws2, ws)
        return ws

    def _augment(self, images: torch.Tensor) -> torch.Tensor:
        """ADA's augmentation, drawing from a fork of the global RNG seeded per process and
        call: processes augment their rows independently, other draws stay in step."""
        if self.pipe is None:
            return images
        self._aug_calls += 1
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self._step_seed + 7919 * self._aug_calls + 104729 * self.rank)
            return self.pipe(images)

    # -- data parallelism: no-ops in a single process ---------------------------------------

    def _mean_over_processes(self, value: torch.Tensor) -> torch.Tensor:
        if self.world == 1:
            return value
        value = value.clone()
        dist.all_reduce(value)
        return value / self.world

    def _sync_gradients(self, module: torch.nn.Module) -> None:
        """Average the gradients over processes (one flat all-reduce); equal local batches make
        it the gradient of the loss averaged over the whole batch."""
        if self.world == 1:
            return
        grads = [p.grad for p in module.parameters() if p.grad is not None]
        flat = torch.cat([g.flatten() for g in grads])
        dist.all_reduce(flat)
        flat /= self.world
        offset = 0
        for g in grads:
            g.copy_(flat[offset : offset + g.numel()].view_as(g))
            offset += g.numel()

    def _gather(self, value: torch.Tensor) -> torch.Tensor:
        if self.world == 1:
            return value
        parts = [torch.empty_like(value) for _ in range(self.world)]
        dist.all_gather(parts, value.contiguous())
        return torch.cat(parts)

    def _check(self, name: str, value: torch.Tensor) -> float:
        """The value averaged over processes, as a float; non-finite stops every process."""
        v = float(self._mean_over_processes(value.detach()))
        if not math.isfinite(v):
            # Raised before the optimiser step: the last saved state stays good.
            raise FloatingPointError(
                f"non-finite {name} ({v}) at step {self.step} (kimg {self.kimg:.1f}); lower lr "
                "or raise gamma. Training stopped; the last saved state is kept"
            )
        return v

    def _optimise(self, loss: torch.Tensor, module: torch.nn.Module, opt: torch.optim.Adam) -> None:
        opt.zero_grad(set_to_none=True)
        loss.backward()
        self._sync_gradients(module)
        opt.step()

    # -- one step --------------------------------------------------------------------------

    def train_step(self) -> dict[str, float]:
        """One G step and one D step (plus their regularisation steps on their intervals)."""
        started = time.perf_counter()
        s, G, D = self.settings, self.G, self.D
        b = s.batch_size
        # Noise inputs and the path-length noise draw from the global RNG (ADA from forks).
        self._step_seed = int(torch.randint(0, 2**62, (), generator=self.rng))
        self._aug_calls = 0
        torch.manual_seed(self._step_seed)
        lo, hi = self._rows(b)
        idx = torch.randint(0, len(self.images), (b,), generator=self.rng)[lo:hi]
        reals = self.images[idx.to(self.device)]
        lat_g, lat_d = self._latents(b), self._latents(b)
        do_pl = s.pl_weight > 0 and self.step % s.pl_interval == 0
        do_r1 = s.gamma > 0 and self.step % s.r1_interval == 0
        lat_pl = self._latents(self.pl_batch) if do_pl else None

        # G: non-saturating logistic loss. D's weights need no gradients here.
        D.requires_grad_(False)
        fake = G.synthesis(self._ws(lat_g, update_w_avg=True), noise_rows=lat_g.noise_rows)
        loss_g = F.softplus(-D(self._augment(fake))).mean()
        loss_g_v = self._check("generator loss", loss_g)
        self._optimise(loss_g, G, self.opt_g)

        pl_v = math.nan
        if lat_pl is not None:
            pl_v = self._path_length_step(lat_pl)

        # D: logistic loss on fakes and reals, one forward (mbstd groups never straddle the
        # two halves: the group divides the batch).
        D.requires_grad_(True)
        with torch.no_grad():
            fake = G.synthesis(self._ws(lat_d, update_w_avg=True), noise_rows=lat_d.noise_rows)
        logits = D(self._augment(torch.cat([fake, reals])))
        n = len(reals)
        logits_fake, logits_real = logits[:n], logits[n:]
        loss_d = F.softplus(logits_fake).mean() + F.softplus(-logits_real).mean()
        loss_d_v = self._check("discriminator loss", loss_d)
        if self.ada is not None:
            self.ada.accumulate(self._gather(logits_real.detach()))
        self._optimise(loss_d, D, self.opt_d)

        r1_v = math.nan
        if do_r1:
            r1_v = self._r1_step(reals)

        self._update_ema()
        self.step += 1
        if self.ada is not None and self.step % s.ada_interval == 0:
            _, self.ada_rt = self.ada.update(self.pipe)
        self.elapsed_s += time.perf_counter() - started
        metrics = {
            "loss_g": loss_g_v, "loss_d": loss_d_v, "r1": r1_v, "pl": pl_v,
            "ada_p": self.ada_p, "ada_rt": self.ada_rt,
        }  # fmt: skip
        self._record(metrics)
        return metrics

    @property
    def pl_batch(self) -> int:
        """Images in a path-length step (all processes): batch_size // pl_batch_shrink."""
        return max(self.settings.batch_size // self.settings.pl_batch_shrink, self.world)

    def _path_length_step(self, lat: _Latents) -> float:
        """Path-length regularisation step of G; returns the mean penalty."""
        s = self.settings
        ws = self._ws(lat, update_w_avg=False)
        img = self.G.synthesis(ws, noise_rows=lat.noise_rows)
        # y ~ N(0, I) / sqrt(pixels): lengths independent of the resolution. Drawn for the
        # whole batch, this process's rows kept.
        shape = (self.pl_batch, *img.shape[1:])
        lo, hi = self._rows(self.pl_batch)
        y = torch.randn(shape, device=img.device, dtype=img.dtype)[lo:hi]
        y = y / math.sqrt(img.shape[2] * img.shape[3])
        (grad,) = torch.autograd.grad((img * y).sum(), ws, create_graph=True)
        lengths = grad.square().sum(dim=2).mean(dim=1).sqrt()  # (n,)
        batch_mean = self._mean_over_processes(lengths.mean().detach())
        pl_mean = self.pl_mean.lerp(batch_mean, s.pl_decay)
        self.pl_mean.copy_(pl_mean)
        penalty = (lengths - pl_mean).square().mean()
        value = self._check("path-length penalty", penalty)
        self._optimise(penalty * s.pl_weight * s.pl_interval, self.G, self.opt_g)
        return value

    def _r1_step(self, reals: torch.Tensor) -> float:
        """Lazy R1 step of D on the (non-augmented) reals; returns the mean penalty."""
        s = self.settings
        x = reals.detach().requires_grad_(True)
        logits = self.D(self._augment(x))
        (grad,) = torch.autograd.grad(logits.sum(), x, create_graph=True)
        penalty = grad.square().sum(dim=[1, 2, 3]).mean()
        value = self._check("R1 penalty", penalty)
        self._optimise(penalty * (s.gamma / 2) * s.r1_interval, self.D, self.opt_d)
        return value

    @torch.no_grad()
    def _update_ema(self) -> None:
        s = self.settings
        ema_nimg = s.ema_kimg * 1000
        if s.ema_rampup is not None:
            ema_nimg = min(ema_nimg, (self.step + 1) * s.batch_size * s.ema_rampup)
        beta = 0.5 ** (s.batch_size / max(ema_nimg, 1e-8))
        for p_ema, p in zip(self.G_ema.parameters(), self.G.parameters(), strict=True):
            p_ema.copy_(p.detach().lerp(p_ema, beta))
        for b_ema, b_src in zip(self.G_ema.buffers(), self.G.buffers(), strict=True):
            b_ema.copy_(b_src)

    @property
    def ada_p(self) -> float:
        return float(self.pipe.p) if self.pipe is not None else 0.0

    # -- logging ticks ---------------------------------------------------------------------

    def _new_tick(self) -> dict[str, Any]:
        return {"sums": {}, "counts": {}, "start_kimg": self.kimg, "start_s": self.elapsed_s}

    def _record(self, metrics: dict[str, float]) -> None:
        """Accumulate a step's metrics; at each tick boundary append a log row and log it."""
        tick = self._tick
        for key in ("loss_g", "loss_d", "r1", "pl"):
            if math.isfinite(metrics[key]):
                tick["sums"][key] = tick["sums"].get(key, 0.0) + metrics[key]
                tick["counts"][key] = tick["counts"].get(key, 0) + 1
        s = self.settings
        tick_index = math.floor(self.kimg / s.tick_kimg + 1e-9)
        prev_index = math.floor(tick["start_kimg"] / s.tick_kimg + 1e-9)
        # Ticks close at tick boundaries only, also at the last step: the state is then the
        # one of a longer run at this step, so extending the run continues it exactly
        # (`published_log_rows` adds the unfinished tick for the published log).
        if tick_index == prev_index:
            return
        row = self._tick_row()
        self.log_rows.append(row)
        self._tick = self._new_tick()
        self.log_progress(row)

    def log_progress(self, row: dict[str, float]) -> None:
        """One plain progress line of a log row: kimg, losses, ADA, speed, ETA."""
        s = self.settings
        left = max(s.total_kimg - self.kimg, 0.0) * row["s_per_kimg"]
        eta = format_eta(left)
        log.info(
            "kimg %.3f/%.3f step %d loss_g %.4f loss_d %.4f r1 %.4g pl %.4g ada_p %.3f ada_rt "
            "%.3f %.1f s/kimg ETA %s",
            self.kimg, s.total_kimg, self.step, row["loss_g"], row["loss_d"], row["r1"],
            row["pl"], row["ada_p"], row["ada_rt"], row["s_per_kimg"], eta,
        )  # fmt: skip

    def _tick_row(self) -> dict[str, float]:
        """The log row of the current tick (mean losses over its steps, ADA p, timing)."""
        tick = self._tick
        dk = self.kimg - tick["start_kimg"]
        ds = self.elapsed_s - tick["start_s"]
        row = {"kimg": self.kimg, "step": self.step}
        for key in ("loss_g", "loss_d", "r1", "pl"):
            n = tick["counts"].get(key, 0)
            row[key] = tick["sums"][key] / n if n else math.nan
        row.update(
            ada_p=self.ada_p, ada_rt=self.ada_rt, seconds=self.elapsed_s,
            s_per_kimg=ds / dk if dk > 0 else math.nan,
        )  # fmt: skip
        return row

    def published_log_rows(self) -> list[dict[str, float]]:
        """Every closed tick's row, plus the unfinished last tick's (train_log.csv)."""
        rows = [dict(r) for r in self.log_rows]
        if self.kimg > self._tick["start_kimg"] + 1e-12:
            rows.append(self._tick_row())
        return rows

    # -- state -----------------------------------------------------------------------------

    def resume_record(self) -> dict[str, Any]:
        """Settings, data and progress (kimg shown) for the resume contract."""
        return {
            "model": "stylegan2ada",
            "settings": self.settings.to_dict(),
            "data": self.data,
            "done": self.kimg,
        }

    def state_dict(self) -> dict[str, Any]:
        """Everything that changes during training (loads with weights_only=True)."""
        return {
            "step": self.step,
            "resume": self.resume_record(),
            "settings": self.settings.to_dict(),
            "G": self.G.state_dict(),
            "D": self.D.state_dict(),
            "G_ema": self.G_ema.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "pl_mean": self.pl_mean.detach().cpu().clone(),
            "rng": self.rng.get_state(),
            "augment": None if self.pipe is None else self.pipe.state_dict(),
            "ada": None if self.ada is None else self.ada.state_dict(),
            "ada_rt": self.ada_rt,
            "elapsed_s": self.elapsed_s,
            "log_rows": [dict(r) for r in self.log_rows],
            "tick": copy.deepcopy(self._tick),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from `state_dict()` (run_resumable checks the resume contract first)."""
        try:
            self.G.load_state_dict(state["G"])
            self.D.load_state_dict(state["D"])
            self.G_ema.load_state_dict(state["G_ema"])
        except RuntimeError as exc:
            raise ValueError(
                "the saved resume state does not fit this run's networks (settings changed?); "
                f"delete the state folder to start over: {str(exc).splitlines()[0]}"
            ) from exc
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.pl_mean.copy_(state["pl_mean"])
        self.rng.set_state(state["rng"])
        if self.pipe is not None and state.get("augment") is not None:
            self.pipe.load_state_dict(state["augment"])
        if self.ada is not None and state.get("ada") is not None:
            self.ada.load_state_dict(state["ada"], self.pipe)
        self.ada_rt = float(state["ada_rt"])
        self.elapsed_s = float(state["elapsed_s"])
        self.log_rows = [dict(r) for r in state["log_rows"]]
        self._tick = copy.deepcopy(state["tick"])
        self.step = int(state["step"])

    def networks_dict(self) -> dict[str, Any]:
        """G, D and G_ema with their constructor arguments (NETWORKS_FILE)."""
        return {
            "networks_format": NETWORKS_FORMAT,
            "G_kwargs": self.settings.generator_kwargs(),
            "D_kwargs": self.settings.discriminator_kwargs(),
            "G": self.G.state_dict(),
            "D": self.D.state_dict(),
            "G_ema": self.G_ema.state_dict(),
            "progress": {"kimg": self.kimg},
        }


# --------------------------------------------------------------------------------------------
# Snapshots, grids, the training job.


GRID_MIN_TILE = 64  # px: smaller images are enlarged (nearest neighbour) in grids to be seen


def save_grid(images: torch.Tensor, columns: int, path: str | Path) -> None:
    """(N, C, H, W) in [-1, 1] -> one PNG, `columns` images per row (gray or RGB). Images
    under GRID_MIN_TILE px are enlarged by the smallest whole factor that reaches it, each
    pixel a square block (a 32 px run's grids show 64 px tiles, nothing interpolated)."""
    factor = max(1, math.ceil(GRID_MIN_TILE / min(images.shape[-2:])))
    if factor > 1:
        images = images.repeat_interleave(factor, dim=-2).repeat_interleave(factor, dim=-1)
    n, c, h, w = images.shape
    rows = math.ceil(n / columns)
    x = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    canvas = torch.zeros(c, rows * h, columns * w, dtype=torch.uint8)
    for i in range(n):
        r, col = divmod(i, columns)
        canvas[:, r * h : (r + 1) * h, col * w : (col + 1) * w] = x[i]
    array = canvas[0].numpy() if c == 1 else canvas.permute(1, 2, 0).numpy()
    write_atomic(path, lambda tmp: Image.fromarray(array).save(tmp, format="PNG"))


class SnapshotWriter:
    """Writes G_ema snapshots and grids into `folder` (the run's state folder)."""

    def __init__(self, folder: str | Path, settings: StyleGanSettings, run: str):
        self.folder = Path(folder)
        self.settings = settings
        self.run = run
        self.by_step: dict[int, list[float]] = {}
        for k in snapshot_kimgs(settings):
            self.by_step.setdefault(snapshot_step(k, settings.batch_size), []).append(k)

    def snapshot_path(self, kimg: float) -> Path:
        return self.folder / "snapshots" / f"{snapshot_name(kimg)}.pt"

    def grid_path(self, kimg: float) -> Path:
        return self.folder / "grids" / f"{snapshot_name(kimg)}.png"

    def write_due(self, trainer: StyleGan2AdaTrainer) -> None:
        """Write the snapshots whose boundary the trainer's last step crossed."""
        for k in self.by_step.get(trainer.step, []):
            self.write(trainer, k)

    def write(self, trainer: StyleGan2AdaTrainer, kimg: float) -> None:
        s = self.settings
        save_snapshot(
            self.snapshot_path(kimg), MODEL_NAME, s.generator_kwargs(), trainer.G_ema,
            progress={"kimg": kimg, "kimg_shown": trainer.kimg, "step": trainer.step},
            run=self.run, seed=s.seed,
        )  # fmt: skip
        rng = torch.Generator().manual_seed(s.seed)  # the same latents in every grid
        images = trainer.G_ema.sample(s.grid_size**2, rng, truncation_psi=s.grid_psi)
        save_grid(images, s.grid_size, self.grid_path(kimg))
        log.info("snapshot %s (kimg %.3f)", snapshot_name(kimg), trainer.kimg)


# Data parallel: steps between collective stop checks (one small all-reduce and host sync
# each); 4 steps of a 256 px run take well under the 20-120 s kept for saving before a deadline.
STOP_CHECK_STEPS = 4


def train_stylegan2ada(
    images: np.ndarray,
    settings: StyleGanSettings,
    run: str,
    out_dir: str | Path,
    state_dir: str | Path,
    *,
    device: str | torch.device = "cpu",
    save_every_s: float = 600.0,
    deadline: float | None = None,
    resume_from: str | Path | None = None,
) -> None:
    """Train one run, resumably; publish its outputs into `out_dir` when finished.

    images: uint8 (N, H, W) training images (resized once to settings.resolution).
    While training, snapshots, grids, the log and the resume state live in `state_dir`
    (undeclared, survives a killed job); at completion they are copied into `out_dir`:
    snapshots/kimgKKKKKK.pt for K in `snapshot_kimgs(settings)`, grids/kimgKKKKKK.png and
    train_log.csv (columns LOG_COLUMNS); the published snapshots and grids are hard links
    into `state_dir`, which keeps NETWORKS_FILE (G, D, G_ema) for transfer learning
    (`resume_from`) and the finished resume state: raising total_kimg later continues the run
    from its last step (cxrlib.jobs.resume), with the earlier snapshots kept.
    A stop signal or the deadline raises `JobInterrupted` (exit 75; run again to resume).
    """
    out_dir, state_dir = Path(out_dir), Path(state_dir)
    x = prepare_images(images, settings.resolution, settings.channels, device)
    start = resume_from if resume_from is not None else settings.resume_from
    data = data_fingerprint(images)
    if start is not None and Path(start).is_file():
        # the start network is part of what the run was trained from: a resumed attempt must
        # see the same file (its path alone is in the settings; the file could be replaced)
        data["start_sha256"] = file_sha256(start)
    trainer = StyleGan2AdaTrainer(x, settings, device=device, resume_from=start, data=data)
    # Data parallel: every process holds the same state; only the first one writes files.
    main = trainer.rank == 0
    writer = SnapshotWriter(state_dir, settings, run)
    folder = RunFolder(
        state_dir,
        what=f"stylegan2ada run {run}",
        schedule=[(writer.snapshot_path(k).name, k) for k in snapshot_kimgs(settings)],
        schedule_key="snapshot_kimg",
        writer=main,
    )
    folder.open()
    store = folder.store
    log.info(
        "StyleGAN2-ADA run %s: %d images at %d px, %d steps of %d (%.1f kimg), preset %s, "
        "G %.2fM / D %.2fM parameters, device %s",
        run, len(images), settings.resolution, settings.total_steps, settings.batch_size,
        settings.total_kimg, settings.preset,
        sum(p.numel() for p in trainer.G.parameters()) / 1e6,
        sum(p.numel() for p in trainer.D.parameters()) / 1e6, device,
    )  # fmt: skip
    if main and not store.exists():
        writer.write_due(trainer)  # the initial generator: the kimg-0 snapshot

    def on_step(t: StyleGan2AdaTrainer, _metrics: dict[str, float]) -> None:
        if not main:
            return
        writer.write_due(t)
        if t.log_rows and t.log_rows[-1]["step"] == t.step:
            write_csv(
                pd.DataFrame(t.log_rows, columns=list(LOG_COLUMNS)), state_dir / "train_log.csv"
            )

    run_resumable(
        trainer, settings.total_steps, store, save_every_s=save_every_s, on_step=on_step,
        deadline=deadline, stop_check_every=STOP_CHECK_STEPS,
    )  # fmt: skip
    if not main:
        return
    # Finished: networks for transfer learning, then the finished state and the declared
    # outputs, as hard links into the state folder.
    with atomic_path(state_dir / NETWORKS_FILE) as tmp:
        torch.save(trainer.networks_dict(), tmp)
    files = [
        pair
        for k in snapshot_kimgs(settings)
        for pair in (
            (writer.snapshot_path(k), out_dir / "snapshots" / f"{snapshot_name(k)}.pt"),
            (writer.grid_path(k), out_dir / "grids" / f"{snapshot_name(k)}.png"),
        )
    ]
    folder.publish(trainer.state_dict(), trainer.step, files)
    rows = trainer.published_log_rows()
    if len(rows) > len(trainer.log_rows):  # the unfinished last tick: its line too
        trainer.log_progress(rows[-1])
    write_csv(pd.DataFrame(rows, columns=list(LOG_COLUMNS)), out_dir / "train_log.csv")
    store.record(f"finished at step {trainer.step} (kimg {trainer.kimg:.3f})")
    log.info("finished run %s at kimg %.3f (step %d)", run, trainer.kimg, trainer.step)


def train_worker(
    rank: int,
    world: int,
    images: np.ndarray,
    settings_dict: dict[str, Any],
    run: str,
    out_dir: Path,
    state_dir: Path,
    device: str,
    deadline: float | None,
) -> None:
    """One process of a (possibly data-parallel) run, as cxrlib.jobs.distributed.launch calls it.

    `settings_dict` is the run's resolved settings; `gpus` is set to the world size so each
    process takes its share of the batch.
    """
    settings = stylegan_settings({**settings_dict, "gpus": world})
    if world > 1 and device.startswith("cuda"):
        device = f"cuda:{rank}"
    train_stylegan2ada(images, settings, run, out_dir, state_dir, device=device, deadline=deadline)
