"""Scoring a GAN snapshot: FID/KID/precision/recall/density/coverage and diversity per
extractor and reference.

Generated images are streamed from the generator in seeded batches and every extractor sees
each batch before the next is drawn, so scoring 50,000 images at 256 px holds one batch of
images and the (N, D) feature arrays, never the images themselves. Real features come from the
declared real_features files, computed once and shared by every snapshot's job.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from cxrlib.scoring.diversity import NoRealDiversity, diversity_ratio
from cxrlib.scoring.feasibility import FIX, NOT_COMPUTABLE, format_reasons, shortfalls
from cxrlib.scoring.features import ExtractorSources, load_real_features, make_extractor
from cxrlib.scoring.fidelity import generator_batches, score_features, to_uint8_rgb
from cxrlib.scoring.reference import FLOOR_COLUMNS, attach_floors
from cxrlib.scoring.settings import ScoreSettings as ScoreSettings  # re-exported, with:
from cxrlib.scoring.settings import score_settings as score_settings
from cxrlib.scoring.sweep import not_computable_lines, read_scores
from cxrlib.snapshot import load_generator, read_snapshot, sample_options

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
    # Naeem et al. 2020 (cxrlib.scoring.density), k = metrics.dc_neighborhood
    "density",
    "coverage",
    "diversity_ratio",
    # Why some of the row's metrics are NaN ("" when none are): "precision/recall: test/NORMAL
    # has 2 images, needs >= 4 (...)", see cxrlib.scoring.feasibility.
    NOT_COMPUTABLE,
]
# results/metrics/summary.csv: the same scores in the order the study's tables use (generated
# count first), without the KID subset size (a setting, recorded in each sweep table).
SUMMARY_COLUMNS = [
    *SCORE_COLUMNS[: SCORE_COLUMNS.index("n_real")],
    "n_fake",
    "n_real",
    *[c for c in SCORE_COLUMNS[SCORE_COLUMNS.index("fid") :] if c != "kid_subset_size"],
]


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


def reference_diversity(
    fake: np.ndarray, real: np.ndarray, sets: Mapping[str, int], seed: int = 0
) -> tuple[float, dict[str, str]]:
    """`diversity_ratio` of (N, D) fake over (N, D) real features, or NaN with the reason.

    `sets` names the two sets with their sizes, the real set first, as in
    `feasibility.shortfalls` (the reason names the first one too small). NaN also when the
    real images are all identical.
    """
    reasons = shortfalls(sets, prc_neighborhood=1, metrics=("diversity ratio",))
    if reasons:
        return float("nan"), reasons
    try:
        return diversity_ratio(fake, real, seed=seed), {}
    except NoRealDiversity:
        name = next(iter(sets))
        return float("nan"), {"diversity ratio": f"the images of {name} are all identical"}


def score_snapshot(
    snapshot: Path,
    real_feature_files: Mapping[tuple[str, str], Path],
    sources: ExtractorSources,
    settings: ScoreSettings,
    *,
    label: str = "",
    device: str = "cpu",
) -> pd.DataFrame:
    """One row per (extractor, reference split): the columns of SCORE_COLUMNS.

    `real_feature_files` maps (extractor, split) to a real_features file at the generator's
    resolution; `label` is the class of those real images (data.synthetic_class, used to name
    the split in reasons: "test/NORMAL"). Diversity is the samples' mean pairwise feature
    distance over that of the real reference images (1 = as varied as the real data; near 0 =
    collapsed).

    A reference split too small for a metric (FID, KID and the diversity ratio need >= 2
    images, precision/recall more than `settings.prc_neighborhood`, density/coverage more than
    `settings.dc_neighborhood`) gets NaN there and the reason in the NOT_COMPUTABLE column,
    logged as a warning with the fix; never an error.
    """
    payload = read_snapshot(snapshot)
    names = sorted({extractor for extractor, _ in real_feature_files})
    extractors = {name: make_extractor(name, sources, device) for name in names}
    log.info("scoring %s: %d samples, extractors %s", snapshot, settings.n_fake, names)
    fakes = fake_features(snapshot, extractors, settings, device)
    rows = []
    for (extractor, reference), path in sorted(real_feature_files.items()):
        real = load_real_features(path)
        real_name = f"{reference}/{label}" if label else f"the real {reference} set"
        fake_name = "the generated set (metrics.n_fake)"
        scores = score_features(
            real,
            fakes[extractor],
            kid_subsets=settings.kid_subsets,
            kid_preferred_subset_size=settings.kid_subset_size,
            prc_neighborhood=settings.prc_neighborhood,
            dc_neighborhood=settings.dc_neighborhood,
            seed=settings.seed,
            real_name=real_name,
            fake_name=fake_name,
        )
        diversity, diversity_reason = reference_diversity(
            fakes[extractor],
            real,
            {real_name: len(real), fake_name: len(fakes[extractor])},
            seed=settings.seed,
        )
        reasons = {**scores.reasons, **diversity_reason}
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
                **{k: v for k, v in asdict(scores).items() if k != "reasons"},
                "diversity_ratio": diversity,
                NOT_COMPUTABLE: format_reasons(reasons),
            }
        )
        log.info(
            "%s vs real %s: FID %.3f, KID %.5f, precision %.3f, recall %.3f, density %.3f, "
            "coverage %.3f, diversity %.3f",
            extractor,
            reference,
            scores.fid,
            scores.kid_mean,
            scores.precision,
            scores.recall,
            scores.density,
            scores.coverage,
            diversity,
        )
        for name, detail in reasons.items():
            log.warning(
                "%s vs real %s: %s not computable (written as NaN): %s. Fix: %s",
                extractor,
                reference,
                name,
                detail,
                FIX,
            )
    table = pd.DataFrame(rows)[SCORE_COLUMNS]
    # An integer column with gaps where KID was not computed (plain int where it always was).
    table["kid_subset_size"] = table["kid_subset_size"].astype("Int64")
    return table


def summary_table(
    score_paths: Iterable[str | Path],
    floors: pd.DataFrame | None = None,
    resolutions: Mapping[tuple[str, str], int] | None = None,
) -> pd.DataFrame:
    """results/metrics/summary.csv: every score file's rows in SUMMARY_COLUMNS, NaN scores kept
    with their reason (NOT_COMPUTABLE), each distinct reason logged once as a warning.

    With `floors` (results/metrics/real_reference.csv) and `resolutions` ((model, run) -> px),
    each row also carries its reference's real-vs-real floor (FLOOR_COLUMNS and
    `below_real_floor`, see cxrlib.scoring.reference.attach_floors).
    """
    scores = read_scores(score_paths)
    for line in not_computable_lines(scores):
        log.warning("not computable (NaN in the summary): %s", line)
    if floors is None or resolutions is None:
        return scores[SUMMARY_COLUMNS]
    with_floors = attach_floors(scores, floors, resolutions)
    return with_floors[[*SUMMARY_COLUMNS, *FLOOR_COLUMNS, "below_real_floor"]]
