"""StyleGAN2-ADA run settings (`stylegan2ada.settings` in the config): presets, checks, and
the snapshot boundaries (kimg) and file names known before training.

Torch-free: the workflow reads these at DAG build (cxrlib.plan), where importing torch
would cost seconds on every `snakemake` call and every cluster job. The presets follow the ADA
paper (Karras et al. 2020b, appendix on training configurations); the table is in
`cxrlib.stylegan2ada.trainer`'s docstring.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal

from cxrlib.file_kinds import network_file_kind
from cxrlib.jobs.resume import ResumeContract
from cxrlib.settings import BOOLEAN_HINT, NUMBER_HINT

PRESETS: tuple[str, ...] = ("auto", "paper256")
START_FILES = (
    "give one of this project's StyleGAN2-ADA snapshots (.pt), a finished run's "
    "state/networks.pt or an official StyleGAN2-ADA / StyleGAN3 network pickle (.pkl)"
)
AUGMENT_MODES: tuple[str, ...] = ("ada", "fixed", "off")


@dataclass(frozen=True)
class StyleGanSettings:
    """One StyleGAN2-ADA run, every value resolved (preset values filled in).

    Build it with `stylegan_settings(dict)`, which fills the preset's values for keys that
    are missing or None and checks everything (`ema_rampup: 0` in a config turns the ramp-up
    off; it is stored as None).
    """

    preset: str = "auto"  # "auto" | "paper256": where unset values come from
    resolution: int = 256  # px, square, power of two 32..1024
    channels: int = 1  # 1 (grayscale) or 3 (the gray image repeated)
    total_kimg: float = 25000.0  # training length in thousands of real images shown
    snapshot_kimg: float = 200.0  # snapshot (and grid) interval, thousands of images
    tick_kimg: float = 4.0  # logging interval (one train_log.csv row), thousands of images
    gpus: int = 1  # GPUs the auto preset plans for (batch and mbstd group depend on it)
    batch_size: int = 16  # images per step (all GPUs together)
    gamma: float = 0.8192  # R1 weight
    lr: float = 0.0025  # Adam learning rate, G and D
    ema_kimg: float = 5.0  # half-life of the generator EMA, thousands of images
    ema_rampup: float | None = 0.05  # EMA half-life <= this x images shown; None: no ramp
    mapping_layers: int = 2  # depth of the mapping network
    channel_base: int = 16384  # feature maps at resolution r: min(channel_base // r, max)
    channel_max: int = 512
    mbstd_group: int = 4  # minibatch-std group size; must divide the per-GPU batch
    z_dim: int = 512  # latent width
    w_dim: int = 512  # intermediate latent width
    num_fp16_res: int = 4  # top resolutions in bfloat16 (CUDA only)
    style_mixing_prob: float = 0.9
    r1_interval: int = 16  # D steps between R1 steps
    pl_interval: int = 4  # G steps between path-length steps
    pl_weight: float = 2.0  # path-length weight (0: off)
    pl_decay: float = 0.01  # decay of the path-length running mean
    pl_batch_shrink: int = 2  # path-length batch = batch_size // this
    augment: str = "ada"  # "ada" | "fixed" (p held at augment_p) | "off"
    augment_p: float = 0.0  # initial (ada) or fixed p
    ada_target: float = 0.6  # r_t that ADA holds
    ada_kimg: float = 500.0  # thousands of images for p to move by 1
    ada_interval: int = 4  # steps between p updates
    seed: int = 0
    grid_size: int = 4  # snapshot grids show grid_size x grid_size images
    grid_psi: float = 1.0  # truncation of the grid images
    # Transfer learning: the file the run starts from (None: random init): one of our
    # snapshots, a finished run's networks.pt, or an official StyleGAN2-ADA / StyleGAN3
    # network pickle (read without running its code: cxrlib.stylegan2ada.official). The workflow
    # resolves a name in `stylegan2ada.pretrained` to its fetched file.
    resume_from: str | None = None

    @property
    def total_steps(self) -> int:
        """Steps to show total_kimg thousand images (the last step may overshoot)."""
        return max(1, math.ceil(self.total_kimg * 1000 / self.batch_size - 1e-9))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def generator_kwargs(self) -> dict[str, Any]:
        """Constructor arguments of the Generator (stored in every snapshot)."""
        return {
            "z_dim": self.z_dim, "w_dim": self.w_dim, "resolution": self.resolution,
            "channels": self.channels, "channel_base": self.channel_base,
            "channel_max": self.channel_max, "mapping_layers": self.mapping_layers,
            "num_fp16_res": self.num_fp16_res,
        }  # fmt: skip

    def discriminator_kwargs(self) -> dict[str, Any]:
        """Constructor arguments of the Discriminator. Its group counts per GPU."""
        return {
            "resolution": self.resolution, "channels": self.channels,
            "channel_base": self.channel_base, "channel_max": self.channel_max,
            "mbstd_group": self.mbstd_group, "num_fp16_res": self.num_fp16_res,
        }  # fmt: skip


# Keys whose value comes from the preset when the config leaves them out or sets None.
_PRESET_KEYS = (
    "batch_size", "gamma", "lr", "ema_kimg", "ema_rampup", "mapping_layers",
    "channel_base", "channel_max", "mbstd_group",
)  # fmt: skip


def preset_values(
    preset: str, resolution: int, gpus: int = 1, batch_size: int | None = None
) -> dict[str, Any]:
    """The preset's values of `_PRESET_KEYS` (table in the module docstring).

    For `auto`, a given `batch_size` replaces the automatic one in the values derived from it
    (gamma, ema_kimg, mbstd_group), as the paper's formulas are written in terms of the batch.
    """
    if preset == "auto":
        batch = batch_size or max(min(gpus * min(4096 // resolution, 32), 64), gpus)
        fmaps = 1.0 if resolution >= 512 else 0.5
        return {
            "batch_size": batch,
            "gamma": 0.0002 * resolution**2 / batch,
            "lr": 0.002 if resolution >= 1024 else 0.0025,
            "ema_kimg": batch * 10 / 32,
            "ema_rampup": 0.05,
            "mapping_layers": 2,
            "channel_base": int(fmaps * 32768),
            "channel_max": 512,
            "mbstd_group": min(batch // gpus, 4),
        }
    if preset == "paper256":
        return {
            "batch_size": 64,
            "gamma": 1.0,
            "lr": 0.0025,
            "ema_kimg": 20.0,
            "ema_rampup": None,
            "mapping_layers": 8,
            "channel_base": 16384,
            "channel_max": 512,
            "mbstd_group": 8,
        }
    raise ValueError(f"stylegan2ada preset must be one of {', '.join(PRESETS)}, not {preset!r}")


_INT_KEYS = {
    "resolution", "channels", "gpus", "batch_size", "mapping_layers", "channel_base",
    "channel_max", "mbstd_group", "z_dim", "w_dim", "num_fp16_res", "r1_interval",
    "pl_interval", "pl_batch_shrink", "ada_interval", "seed", "grid_size",
}  # fmt: skip
_STR_KEYS = {"preset", "augment"}
_OPTIONAL_STR_KEYS = {"resume_from"}


def _coerce(name: str, value: Any) -> Any:
    """Type check one value: ints must be ints, numbers numbers (no bools, no strings)."""
    if name in _OPTIONAL_STR_KEYS:
        if value is not None and not (isinstance(value, str) and value):
            raise ValueError(f"stylegan2ada {name} must be a file path or null, got {value!r}")
        return None if value is None else str(value)
    if name in _STR_KEYS:
        if not isinstance(value, str):
            hint = f"; {BOOLEAN_HINT}" if isinstance(value, bool) else ""
            raise ValueError(f"stylegan2ada {name} must be a string, got {value!r}{hint}")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        kind = "an integer" if name in _INT_KEYS else "a number"
        hint = f"; {NUMBER_HINT}" if isinstance(value, str) else ""
        raise ValueError(
            f"stylegan2ada {name} must be {kind}, got {value!r} ({type(value).__name__}){hint}"
        )
    if name in _INT_KEYS:
        if float(value) != int(value):
            raise ValueError(f"stylegan2ada {name} must be an integer, got {value!r}")
        return int(value)
    if not math.isfinite(value):
        raise ValueError(f"stylegan2ada {name} must be finite, got {value!r}")
    return float(value)


def stylegan_settings(d: dict[str, Any]) -> StyleGanSettings:
    """A config dict -> StyleGanSettings: unknown keys fail; missing or None keys of
    `_PRESET_KEYS` take the preset's value, other missing keys the dataclass default."""
    known = [f.name for f in fields(StyleGanSettings)]
    unknown = sorted(set(d) - set(known))
    if unknown:
        raise ValueError(
            f"unknown stylegan2ada setting(s) {', '.join(unknown)}; known: {', '.join(known)}"
        )
    given = {k: v for k, v in d.items() if not (k in _PRESET_KEYS and v is None)}
    values = {k: _coerce(k, v) for k, v in given.items()}
    preset = values.get("preset", "auto")
    resolution = values.get("resolution", StyleGanSettings.resolution)
    gpus = values.get("gpus", StyleGanSettings.gpus)
    if gpus < 1:
        raise ValueError(f"stylegan2ada gpus must be >= 1, got {gpus}")
    _check_resolution(resolution)
    merged = {**preset_values(preset, resolution, gpus, values.get("batch_size")), **values}
    if merged["ema_rampup"] == 0:
        merged["ema_rampup"] = None  # 0 in a config: no ramp-up (None there means "preset")
    s = StyleGanSettings(**merged)
    _validate(s)
    return s


def _check_resolution(resolution: int) -> None:
    if resolution < 32 or resolution > 1024 or resolution & (resolution - 1):
        raise ValueError(
            f"stylegan2ada resolution must be a power of two in 32..1024, got {resolution}"
        )


def _validate(s: StyleGanSettings) -> None:
    def need(ok: bool, message: str) -> None:
        if not ok:
            raise ValueError(f"stylegan2ada {message}")

    need(s.channels in (1, 3), f"channels must be 1 or 3, got {s.channels}")
    need(s.total_kimg > 0, f"total_kimg must be > 0, got {s.total_kimg}")
    need(s.snapshot_kimg > 0, f"snapshot_kimg must be > 0, got {s.snapshot_kimg}")
    need(s.tick_kimg > 0, f"tick_kimg must be > 0, got {s.tick_kimg}")
    for name in ("batch_size", "mapping_layers", "channel_base", "channel_max", "mbstd_group",
                 "z_dim", "w_dim", "r1_interval", "pl_interval", "pl_batch_shrink",
                 "ada_interval", "grid_size"):  # fmt: skip
        need(getattr(s, name) >= 1, f"{name} must be >= 1, got {getattr(s, name)}")
    need(s.num_fp16_res >= 0, f"num_fp16_res must be >= 0, got {s.num_fp16_res}")
    need(
        s.batch_size % s.gpus == 0,
        f"batch_size {s.batch_size} must be a multiple of gpus {s.gpus}",
    )
    per_gpu = s.batch_size // s.gpus
    need(
        s.mbstd_group <= per_gpu and per_gpu % s.mbstd_group == 0,
        f"mbstd_group {s.mbstd_group} must divide the per-GPU batch {per_gpu}",
    )
    need(s.gamma >= 0, f"gamma must be >= 0, got {s.gamma}")
    need(s.lr > 0, f"lr must be > 0, got {s.lr}")
    need(s.ema_kimg >= 0, f"ema_kimg must be >= 0, got {s.ema_kimg}")
    need(
        s.ema_rampup is None or s.ema_rampup > 0,
        f"ema_rampup must be >= 0 (0: no ramp-up), got {s.ema_rampup}",
    )
    need(
        0 <= s.style_mixing_prob <= 1,
        f"style_mixing_prob must be in [0, 1], got {s.style_mixing_prob}",
    )
    need(s.pl_weight >= 0, f"pl_weight must be >= 0, got {s.pl_weight}")
    need(0 <= s.pl_decay <= 1, f"pl_decay must be in [0, 1], got {s.pl_decay}")
    need(
        s.augment in AUGMENT_MODES,
        f"augment must be one of {', '.join(AUGMENT_MODES)}, got {s.augment!r}",
    )
    need(0 <= s.augment_p <= 1, f"augment_p must be in [0, 1], got {s.augment_p}")
    need(0 < s.ada_target < 1, f"ada_target must be in (0, 1), got {s.ada_target}")
    need(s.ada_kimg > 0, f"ada_kimg must be > 0, got {s.ada_kimg}")
    need(s.channel_base // s.resolution >= 1, "channel_base must be >= resolution")
    need(s.seed >= 0, f"seed must be >= 0, got {s.seed}")


def snapshot_kimgs(settings: StyleGanSettings) -> list[float]:
    """The kimg boundaries that get a snapshot: 0, every snapshot_kimg, and total_kimg."""
    out = [0.0]
    j = 1
    while (k := round(j * settings.snapshot_kimg, 6)) < settings.total_kimg - 1e-9:
        out.append(k)
        j += 1
    out.append(float(settings.total_kimg))
    return out


def snapshot_name(kimg: float) -> str:
    """File stem of the snapshot at boundary `kimg`: kimg000200 (or kimg000000.500)."""
    if abs(kimg - round(kimg)) < 1e-9:
        return f"kimg{round(kimg):06d}"
    return f"kimg{kimg:010.3f}"


def snapshot_step(kimg: float, batch_size: int) -> int:
    """The step after which the snapshot of boundary `kimg` is taken: the first step at which
    step * batch_size >= kimg * 1000 images have been shown (0: before training)."""
    return max(0, math.ceil(kimg * 1000 / batch_size - 1e-9))


def check_start_file(path: str | Path) -> Literal["torch", "pickle"]:
    """What a run's `resume_from` file is by its first bytes: "torch" (a torch.save file: one
    of this project's snapshots or networks.pt) or "pickle" (read as an official network
    pickle). Cheap (no torch): the workflow calls it at DAG build, the trainer again.

    Raises FileNotFoundError for a missing file or broken link, ValueError saying what the
    file is instead (an image, a web page, a text file, an empty file, a folder, ...) and
    what to give.
    """
    try:
        return network_file_kind(path)
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"resume_from: {exc}") from None
    except (IsADirectoryError, ValueError) as exc:
        raise ValueError(f"resume_from: {exc}; {START_FILES}") from None


# -- the planning interface (cxrlib.plan.generators) --------------------------------------------

DISPLAY_NAME = "StyleGAN2-ADA"
PROGRESS = "kimg"
SCHEDULE_KEY = "snapshot_kimg"
RESUME_CONTRACT = ResumeContract(
    "stylegan2ada",
    # grid_size / grid_psi stay: a run's grids must show one set of latents throughout
    frozenset({"snapshot_kimg", "tick_kimg"}),
    length="total_kimg",
    unit="kimg",
    added=(("resume_from", None),),
)


def run_settings(merged: dict[str, Any]) -> StyleGanSettings:
    return stylegan_settings(merged)


def snapshots(settings: StyleGanSettings) -> list[tuple[str, float]]:
    """(stem, kimg) of every snapshot of the run: ("kimg000000", 0.0), ("kimg000200", 200.0)..."""
    return [(snapshot_name(k), k) for k in snapshot_kimgs(settings)]


def resolution(settings: StyleGanSettings) -> int:
    return settings.resolution


def grid_columns(settings: StyleGanSettings) -> int:
    """Images per row of the run's grids (grid_size x grid_size)."""
    return settings.grid_size


def resume_settings(settings: StyleGanSettings, saved: dict[str, Any]) -> dict[str, Any]:
    """`gpus` is left to the job (it trains on the GPUs it gets): the saved value stands."""
    return {**asdict(settings), "gpus": saved.get("gpus", settings.gpus)}
