"""GAN snapshots: one file format shared by every generator, so sampling and scoring are generic.

A snapshot is a plain dict saved with `torch.save` and loaded with `weights_only=True` (no
pickled classes: a snapshot from a shared folder cannot run code). It holds the generator's
constructor arguments next to its weights, so a scoring or sampling job rebuilds the network
without knowing which run or config produced it.

    {"format": 1, "model": "dcgan" | "stylegan2ada", "kwargs": {...}, "generator": state_dict,
     "progress": {"epoch": 40} or {"kimg": 200.0}, "run": "baseline", "seed": 0}

Every generator class registered here has `sample(n, rng, **options) -> (n, C, H, W)` float
in [-1, 1], drawing its latents from `rng` (a `torch.Generator` on the CPU), so the same seed
gives the same images on any device.
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from cxrlib.io import atomic_path, publish_file, write_failure

log = logging.getLogger(__name__)

FORMAT = 1
# model name -> "module:Class" of its generator, where it is not the convention's
# cxrlib.<model>.networks:Generator (imported lazily: no import cycles).
GENERATORS: dict[str, str] = {}


def generator_class(model: str) -> type[nn.Module] | None:
    """The generator class of `model` (GENERATORS, else cxrlib.<model>.networks.Generator), or
    None for a name no generator has."""
    module_name, class_name = GENERATORS.get(model, f"cxrlib.{model}.networks:Generator").split(":")
    if not model.replace("_", "").isalnum() and model not in GENERATORS:
        return None
    try:
        return getattr(importlib.import_module(module_name), class_name, None)
    except ModuleNotFoundError:
        return None


class Sampler(Protocol):
    def sample(self, n: int, rng: torch.Generator, **options: Any) -> torch.Tensor: ...


class SnapshotError(Exception):
    """A snapshot file is missing or unreadable; the message names the file and the fix."""


def save_snapshot(
    path: str | Path,
    model: str,
    kwargs: dict[str, Any],
    generator: nn.Module,
    progress: dict[str, float | int],
    run: str,
    seed: int,
) -> None:
    """Write a snapshot atomically (a killed job never leaves half a file behind)."""
    if generator_class(model) is None:
        raise ValueError(f"unknown model {model!r}: no cxrlib.{model}.networks.Generator")
    state = {k: v.detach().cpu().clone() for k, v in generator.state_dict().items()}
    payload = {
        "format": FORMAT,
        "model": model,
        "kwargs": dict(kwargs),
        "generator": state,
        "progress": dict(progress),
        "run": run,
        "seed": int(seed),
    }
    try:
        with atomic_path(path) as tmp:
            torch.save(payload, tmp)
    except (OSError, RuntimeError) as exc:  # torch.save reports a full disk as either
        raise SnapshotError(
            f"{write_failure(path, exc)}: free space there, then run snakemake again"
        ) from exc


def restore_snapshot(path: Path) -> None:
    """Put a published snapshot that was deleted (to free space, say) back from its run's
    state folder, where training keeps every snapshot (results/<model>/<run>/state/snapshots/,
    hard links: deleting the published one frees nothing). SnapshotError with the commands
    that train the run again when the state's copy is gone too."""
    run_dir = path.parent.parent
    kept = run_dir / "state" / "snapshots" / path.name
    if path.parent.name == "snapshots" and kept.is_file():
        publish_file(kept, path)
        log.warning("snapshot %s was missing: restored from %s", path, kept)
        return
    if path.parent.name != "snapshots":
        raise SnapshotError(f"snapshot {path} does not exist; run the GAN's training rule first")
    model = run_dir.parent.name
    raise SnapshotError(
        f"snapshot {path} is missing, and so is its copy in {kept.parent}: train the run again. "
        f"Delete its state folder (rm -r {run_dir / 'state'}), then run snakemake with "
        f"-R train_{model} added to this run's command"
    )


def read_snapshot(path: str | Path) -> dict[str, Any]:
    """The snapshot dict, checked for the fields every consumer relies on."""
    path = Path(path)
    if not path.is_file():
        restore_snapshot(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for truncated or foreign files
        raise SnapshotError(
            f"snapshot {path} cannot be read ({exc}); it is truncated or not a snapshot of "
            "this workflow: delete it and rerun its training rule"
        ) from exc
    missing = {"format", "model", "kwargs", "generator", "progress"} - set(payload)
    if missing or generator_class(str(payload.get("model"))) is None:
        raise SnapshotError(
            f"snapshot {path} lacks {sorted(missing) or 'a known model name'}; it was not "
            "written by this workflow's training rules"
        )
    return payload


def build_generator(model: str, kwargs: dict[str, Any]) -> nn.Module:
    cls = generator_class(model)
    if cls is None:
        raise SnapshotError(f"no generator of model {model!r} (cxrlib.{model}.networks.Generator)")
    return cls(**kwargs)


def load_generator(path: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """The snapshot's generator in eval mode on `device`, ready for `sample(n, rng)`."""
    payload = read_snapshot(path)
    generator = build_generator(payload["model"], payload["kwargs"])
    generator.load_state_dict(payload["generator"])
    return generator.to(device).eval().requires_grad_(False)


def sample_options(model: str, truncation_psi: float = 1.0) -> dict[str, Any]:
    """Sampling options a model understands: truncation exists for StyleGAN's w space only."""
    return {"truncation_psi": float(truncation_psi)} if model == "stylegan2ada" else {}
