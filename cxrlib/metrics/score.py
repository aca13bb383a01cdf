"""Scoring a GAN snapshot: FID/KID/precision/recall and diversity per extractor and reference.

Generated images are streamed from the generator in seeded batches and every extractor sees
each batch before the next is drawn, so scoring 50,000 images at 256 px holds one batch of
images and the (N, D) feature arrays, never the images themselves. Real features come from the
declared real_features files, computed once and shared by every snapshot's job.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from cxrlib.metrics.diversity import diversity_ratio
from cxrlib.metrics.features import ExtractorSources, load_real_features, make_extractor
from cxrlib.metrics.fidelity import generator_batches, score_features, to_uint8_rgb
from cxrlib.models.snapshot import load_generator, read_snapshot, sample_options

log = logging.getLogger(__name__)

SCORE_COLUMNS = [
    "model",
    "run",
    "snapshot",
    "epoch",
    "kimg",
    "extractor",
    "reference",
    "n_real",
    "n_fake",
    "fid",
    "kid_mean",
    "kid_std",
    "kid_subset_size",
    "precision",
    "recall",
    "diversity_ratio",
]
# results/metrics/summary.csv: the same scores in the order the study's tables use (generated
# count first), without the KID subset size (a setting, recorded in each sweep table).
SUMMARY_COLUMNS = [
    *SCORE_COLUMNS[: SCORE_COLUMNS.index("n_real")],
    "n_fake",
    "n_real",
    *[c for c in SCORE_COLUMNS[SCORE_COLUMNS.index("fid") :] if c != "kid_subset_size"],
]


@dataclass(frozen=True)
class ScoreSettings:
    """`config["metrics"]` values that change the numbers (all recorded in provenance)."""

    n_fake: int = 5000
    batch_size: int = 64
    seed: int = 0
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    prc_neighborhood: int = 3
    truncation_psi: float = 1.0


def score_settings(section: Mapping) -> ScoreSettings:
    return ScoreSettings(
        n_fake=int(section["n_fake"]),
        batch_size=int(section["batch_size"]),
        seed=int(section["seed"]),
        kid_subsets=int(section["kid_subsets"]),
        kid_subset_size=int(section["kid_subset_size"]),
        prc_neighborhood=int(section["prc_neighborhood"]),
    )


@torch.no_grad()
def fake_features(
    snapshot: Path,
    extractors: Mapping[str, object],
    settings: ScoreSettings,
    device: str = "cpu",
) -> dict[str, np.ndarray]:
    """Features of `settings.n_fake` seeded samples of a snapshot, per extractor, in one pass."""
    generator = load_generator(snapshot, device)
    options = sample_options(read_snapshot(snapshot)["model"], settings.truncation_psi)
    chunks: dict[str, list[np.ndarray]] = {name: [] for name in extractors}

    def sample(n: int, rng: torch.Generator) -> torch.Tensor:
        return generator.sample(n, rng, **options)

    for batch in generator_batches(sample, settings.n_fake, settings.batch_size, settings.seed):
        images = to_uint8_rgb(batch.float()).to(device)
        for name, extractor in extractors.items():
            out = extractor(images)
            feats = out[0] if isinstance(out, tuple | list) else out
            chunks[name].append(feats.detach().float().cpu().numpy())
    return {name: np.concatenate(parts) for name, parts in chunks.items()}


def score_snapshot(
    snapshot: Path,
    real_feature_files: Mapping[tuple[str, str], Path],
    sources: ExtractorSources,
    settings: ScoreSettings,
    *,
    device: str = "cpu",
) -> pd.DataFrame:
    """One row per (extractor, reference split): the columns of SCORE_COLUMNS.

    `real_feature_files` maps (extractor, split) to a real_features file at the generator's
    resolution. Diversity is the samples' mean pairwise feature distance over that of the real
    reference images (1 = as varied as the real data; near 0 = collapsed).
    """
    payload = read_snapshot(snapshot)
    names = sorted({extractor for extractor, _ in real_feature_files})
    extractors = {name: make_extractor(name, sources, device) for name in names}
    log.info("scoring %s: %d samples, extractors %s", snapshot, settings.n_fake, names)
    fakes = fake_features(snapshot, extractors, settings, device)
    rows = []
    for (extractor, reference), path in sorted(real_feature_files.items()):
        real = load_real_features(path)
        scores = score_features(
            real,
            fakes[extractor],
            kid_subsets=settings.kid_subsets,
            kid_preferred_subset_size=settings.kid_subset_size,
            prc_neighborhood=settings.prc_neighborhood,
            seed=settings.seed,
        )
        progress = payload["progress"]
        rows.append(
            {
                "model": payload["model"],
                "run": payload.get("run", ""),
                "snapshot": Path(snapshot).stem,
                "epoch": progress.get("epoch", np.nan),
                "kimg": progress.get("kimg", np.nan),
                "extractor": extractor,
                "reference": reference,
                **{k: v for k, v in asdict(scores).items()},
                "diversity_ratio": diversity_ratio(fakes[extractor], real, seed=settings.seed),
            }
        )
        log.info(
            "%s vs real %s: FID %.3f, KID %.5f, precision %.3f, recall %.3f",
            extractor,
            reference,
            scores.fid,
            scores.kid_mean,
            scores.precision,
            scores.recall,
        )
    return pd.DataFrame(rows)[SCORE_COLUMNS]
