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
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from cxrlib.io import atomic_path

FORMAT = 1
# model name -> "module:Class" of its generator (imported lazily: no import cycles).
GENERATORS: dict[str, str] = {
    "dcgan": "cxrlib.dcgan.networks:Generator",
    "stylegan2ada": "cxrlib.stylegan2ada.networks:Generator",
}


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
    if model not in GENERATORS:
        raise ValueError(f"unknown model {model!r}; known: {', '.join(GENERATORS)}")
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
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def read_snapshot(path: str | Path) -> dict[str, Any]:
    """The snapshot dict, checked for the fields every consumer relies on."""
    path = Path(path)
    if not path.is_file():
        raise SnapshotError(f"snapshot {path} does not exist; run the GAN's training rule first")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for truncated or foreign files
        raise SnapshotError(
            f"snapshot {path} cannot be read ({exc}); it is truncated or not a snapshot of "
            "this workflow: delete it and rerun its training rule"
        ) from exc
    missing = {"format", "model", "kwargs", "generator", "progress"} - set(payload)
    if missing or payload.get("model") not in GENERATORS:
        raise SnapshotError(
            f"snapshot {path} lacks {sorted(missing) or 'a known model name'}; it was not "
            "written by this workflow's training rules"
        )
    return payload


def build_generator(model: str, kwargs: dict[str, Any]) -> nn.Module:
    module_name, class_name = GENERATORS[model].split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
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
