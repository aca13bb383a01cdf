"""Writing a snapshot's synthetic images as PNGs plus an index, for the audit and the classifier."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from cxrlib.classifier.mixing import synthetic_needed
from cxrlib.io import write_csv
from cxrlib.scoring.fidelity import to_uint8_rgb
from cxrlib.snapshot import load_generator, read_snapshot, sample_options

log = logging.getLogger(__name__)

INDEX_COLUMNS = ["file", "label", "model", "run", "snapshot", "seed", "index"]


def samples_for_arms(
    n_images: int, class_counts: Path, label: str, ratios: Sequence[str | float]
) -> int:
    """How many samples to write: `samples.n_images`, raised to what the classifier arms draw.

    An arm at ratio r adds round(r x real training images of `label`) synthetic images
    ("balance": enough to even the classes), known only once the data stage has counted the
    classes (`class_counts`: results/data/class_counts.csv). Writing that many here means a
    lowered `samples.n_images` can never fail an arm hours later; the raise is logged.
    """
    counts = pd.read_csv(class_counts)
    train = counts[counts["split"] == "train"]
    needed = synthetic_needed(
        dict(zip(train["label"], train["n_images"], strict=True)), label, ratios
    )
    if not needed or max(needed.values()) <= n_images:
        return n_images
    ratio, most = max(needed.items(), key=lambda item: item[1])
    log.warning(
        "samples.n_images %d raised to %d: the classifier arm at ratio %s adds %d synthetic %s "
        "images (%s). Set samples.n_images >= %d to make this explicit.",
        n_images,
        most,
        ratio,
        most,
        label,
        ", ".join(f"{r}: {n}" for r, n in needed.items()),
        most,
    )
    return most


@torch.no_grad()
def write_samples(
    snapshot: Path,
    out_dir: Path,
    n_images: int,
    *,
    label: str,
    seed: int,
    truncation_psi: float = 1.0,
    batch_size: int = 64,
    device: str = "cpu",
) -> pd.DataFrame:
    """Sample `n_images` (seeded) and write `out_dir/{label}/{i:06d}.png` plus `out_dir/index.csv`.

    Grayscale PNG (8-bit): the classifier and audit read the same pixels the scoring saw. The
    index is written last, so a folder with an index is complete.
    """
    payload = read_snapshot(snapshot)
    generator = load_generator(snapshot, device)
    rng = torch.Generator().manual_seed(seed)
    options = sample_options(payload["model"], truncation_psi)
    folder = out_dir / label
    folder.mkdir(parents=True, exist_ok=True)
    rows, done = [], 0
    while done < n_images:
        size = min(batch_size, n_images - done)
        images = to_uint8_rgb(generator.sample(size, rng, **options).cpu())
        gray = images[:, 0].numpy()  # channels are equal for grayscale output
        if images.shape[1] == 3:
            gray = np.asarray(images.float().mean(dim=1).round().to(torch.uint8))
        for i, pixels in enumerate(gray):
            name = f"{label}/{done + i:06d}.png"
            Image.fromarray(pixels, mode="L").save(out_dir / name)
            rows.append(
                {
                    "file": name,
                    "label": label,
                    "model": payload["model"],
                    "run": payload.get("run", ""),
                    "snapshot": Path(snapshot).stem,
                    "seed": seed,
                    "index": done + i,
                }
            )
        done += size
    index = pd.DataFrame(rows, columns=INDEX_COLUMNS)
    write_csv(index, out_dir / "index.csv")
    log.info("wrote %d samples of %s to %s", n_images, snapshot, out_dir)
    return index


def load_samples(folder: Path) -> tuple[np.ndarray, pd.DataFrame]:
    """uint8 (N, H, W) images of a samples folder and its index, in index order."""
    index_path = Path(folder) / "index.csv"
    if not index_path.is_file():
        raise FileNotFoundError(f"{index_path} missing: rerun generate_samples for {folder}")
    index = pd.read_csv(index_path)
    images = np.stack([np.asarray(Image.open(Path(folder) / f).convert("L")) for f in index.file])
    return images, index
