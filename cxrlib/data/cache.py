"""The per-split array cache that training jobs load in one read."""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class SplitArrays:
    """All prepared images of one split, in manifest order (split, label, path)."""

    images: np.ndarray  # (N, H, W) uint8, 0 = black
    labels: np.ndarray  # (N,) int64 indices into label_names
    label_names: tuple[str, ...]
    patient_ids: np.ndarray  # (N,) str
    paths: np.ndarray  # (N,) str: the source files
    sha256: np.ndarray  # (N,) str: hashes of the decoded source pixels

    def of_label(self, label: str) -> np.ndarray:
        """Images of one class, e.g. the NORMAL training images a GAN learns from."""
        if label not in self.label_names:
            raise KeyError(f"class {label!r} not in this split ({', '.join(self.label_names)})")
        return self.images[self.labels == self.label_names.index(label)]


def load_split(path: str | Path) -> SplitArrays:
    """Load `results/data/cache/{split}.npz` (no pickles: safe to load from anywhere).

    Raises FileNotFoundError for a missing file, ValueError naming the file for one that
    cannot be read (truncated, another format, arrays missing)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; run the prepare_data rule first")
    try:
        with np.load(path, allow_pickle=False) as npz:
            return SplitArrays(
                images=npz["images"],
                labels=npz["labels"],
                label_names=tuple(str(x) for x in npz["label_names"]),
                patient_ids=npz["patient_ids"],
                paths=npz["paths"],
                sha256=npz["sha256"],
            )
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(
            f"{path} cannot be read ({type(exc).__name__}: {str(exc)[:200]}): truncated or "
            "not written by this workflow; delete it and rerun the prepare_data rule"
        ) from exc
