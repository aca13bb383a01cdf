"""What a StyleGAN2-ADA run starts from (`resume_from`, transfer learning): one of this
project's snapshots, a finished run's networks.pt, or an official StyleGAN2-ADA / StyleGAN3
network pickle (read by `cxrlib.stylegan2ada.official` without running its code), as state dicts
of this project's G, G_ema and D, checked before anything is loaded: what the file is, the
network sizes stored with it against the run's (each difference named), tensors only, and
finite values.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from cxrlib.snapshot import SnapshotError, read_snapshot
from cxrlib.stylegan2ada.official import import_official
from cxrlib.stylegan2ada.settings import START_FILES, StyleGanSettings, check_start_file

log = logging.getLogger(__name__)

MODEL_NAME = "stylegan2ada"  # the model name in this project's snapshots
NETWORKS_FILE = "networks.pt"  # G, D, G_ema of the finished run, for transfer learning
NETWORKS_FORMAT = 1
# Constructor arguments that set tensor shapes: they must match to start from a file.
_SHAPE_KEYS = (
    "resolution", "channels", "z_dim", "w_dim", "channel_base", "channel_max", "mapping_layers",
)  # fmt: skip

StateDicts = dict[str, dict[str, torch.Tensor]]


def start_networks(path: Path, settings: StyleGanSettings) -> StateDicts:
    """State dicts by network ("G", "G_ema", and "D" when the file has one) from the start
    file at `path`, for a run of `settings`.

    Raises FileNotFoundError for a missing file, ValueError naming the file and what is wrong
    (not a network file, another model, other network sizes, missing networks, non-finite
    values), OfficialNetworkError (a ValueError) for an official pickle that is refused.
    """
    path = Path(path)
    if check_start_file(path) == "pickle":
        nets = import_official(path, settings.generator_kwargs(), settings.discriminator_kwargs())
        for note in nets.notes:
            log.info("resume_from: %s", note)
        parts = {"G": nets.G, "G_ema": nets.G_ema}
        return parts | ({"D": nets.D} if nets.D is not None else {})
    parts, kwargs = _own_networks(path)
    _check_sizes(path, kwargs, settings)
    return parts


def load_error(exc: BaseException) -> str:
    """What load_state_dict said, in one line: its first two mismatches, not its headline."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    detail = [x for x in lines[1:] if x.startswith(("size mismatch", "Missing", "Unexpected"))]
    return "; ".join(detail[:2]) if detail else _first_line(exc)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).splitlines()
    return lines[0] if lines and lines[0].strip() else type(exc).__name__


def _check_sizes(path: Path, kwargs: Any, settings: StyleGanSettings) -> None:
    """The network sizes stored with one of this project's files against this run's:
    each difference named (a state-dict shape error would only list tensors)."""
    if not isinstance(kwargs, dict):
        return  # no sizes stored: load_state_dict still checks every shape
    ours = settings.generator_kwargs()
    differ = [
        f"{key} {kwargs[key]!r} in the file, {ours[key]!r} in this run"
        for key in _SHAPE_KEYS
        if key in kwargs and kwargs[key] != ours[key]
    ]
    if differ:
        raise ValueError(
            f"cannot start from {path}: it was trained with other network sizes "
            f"({'; '.join(differ)}). Set these in the run's stylegan2ada settings as the "
            "file has them, or start from a file of this run's sizes"
        )


def _own_networks(path: Path) -> tuple[StateDicts, Any]:
    """G, G_ema (and D) of one of this project's snapshots or networks files, and the
    generator's constructor arguments stored with them."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a pickle torch refuses, a truncated zip, not a file of ours
        text = str(exc)
        # torch's message suggests weights_only=False, which would run code from the file
        reason = (
            "it holds objects other than tensors and plain data, which are not loaded"
            if "weights_only" in text or "Unsupported global" in text
            else f"{type(exc).__name__}: {_first_line(exc)}"
        )
        raise ValueError(
            f"resume_from {path} is a torch.save file but not a readable {MODEL_NAME} "
            f"snapshot or {NETWORKS_FILE} ({reason}); {START_FILES}"
        ) from None
    if not isinstance(payload, dict):
        payload = {}
    if payload.get("model") == MODEL_NAME:
        try:
            payload = read_snapshot(path)
        except SnapshotError as exc:
            raise ValueError(f"resume_from: {exc}") from None
        # A snapshot holds G_ema only: it becomes both G and G_ema; D starts fresh.
        parts = {"G": payload["generator"], "G_ema": payload["generator"]}
        kwargs = payload.get("kwargs")
    elif payload.get("networks_format") == NETWORKS_FORMAT:
        parts = {k: payload.get(k) for k in ("G", "D", "G_ema")}
        kwargs = payload.get("G_kwargs")
    else:
        model = payload.get("model")
        what = f"a {model} snapshot" if isinstance(model, str) else "another torch.save file"
        raise ValueError(
            f"resume_from {path} is {what}, neither a {MODEL_NAME} snapshot nor a "
            f"{NETWORKS_FILE} of a finished run; {START_FILES}"
        )
    bad = [k for k, v in parts.items() if not isinstance(v, dict)]
    if bad:
        raise ValueError(
            f"resume_from {path} is without the state of {', '.join(bad)}: not a finished "
            "run's file (truncated or edited?)"
        )
    for name, state in parts.items():
        for key, value in state.items():
            if not isinstance(value, torch.Tensor):
                raise ValueError(f"resume_from {path}: {name}.{key} is not a tensor")
            if value.is_floating_point() and not torch.isfinite(value).all():
                raise ValueError(
                    f"resume_from {path}: {name}.{key} holds NaN or infinite values (a "
                    "diverged run?); start from an earlier snapshot"
                )
    return parts, kwargs
