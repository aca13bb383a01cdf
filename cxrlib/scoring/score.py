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

from cxrlib.memorisation.share import NearCopyShare, near_copy_share
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
    # cxrlib.memorisation.share, per extractor (the same in every reference's row): the share
    # of generated images nearer to a training image than metrics.memorisation.feature_quantile
    # of the real-to-real distances, the rate of fresh real patients' images under that rule,
    # and its 95 % upper bound (the limit a chosen snapshot may not exceed)
    "near_copy_share",
    "heldout_near_copy_rate",
    "near_copy_limit",
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


def _near_copies(
    fake: np.ndarray,
    train_file: Path | None,
    patients: np.ndarray | None,
    quantile: float,
    seed: int,
) -> NearCopyShare:
    """The near-copy share of `fake` against the train reference's features, or NaNs with
    the reason when the train reference or its patient ids are not given."""
    nan = float("nan")
    if train_file is None:
        why = "needs train in metrics.references (the training images copies are sought in)"
        return NearCopyShare(nan, nan, nan, 0, nan, why)
    train = load_real_features(train_file)
    if patients is None or len(patients) != len(train):
        why = f"no patient id for each of the {len(train)} training images in {train_file}"
        return NearCopyShare(nan, nan, nan, 0, nan, why)
    return near_copy_share(fake, train, patients, quantile=quantile, seed=seed)


def score_snapshot(
    snapshot: Path,
    real_feature_files: Mapping[tuple[str, str], Path],
    sources: ExtractorSources,
    settings: ScoreSettings,
    *,
    label: str = "",
    device: str = "cpu",
    train_patients: np.ndarray | None = None,
    near_copy_quantile: float = 0.01,
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

    The near-copy columns (cxrlib.memorisation.share, threshold `near_copy_quantile`) need the
    train reference and `train_patients`, the patient id of each row of its real features
    (N,); without them they are NaN with the reason.
    """
    payload = read_snapshot(snapshot)
    names = sorted({extractor for extractor, _ in real_feature_files})
    extractors = {name: make_extractor(name, sources, device) for name in names}
    log.info("scoring %s: %d samples, extractors %s", snapshot, settings.n_fake, names)
    fakes = fake_features(snapshot, extractors, settings, device)
    shares = {
        name: _near_copies(
            fakes[name], real_feature_files.get((name, "train")), train_patients,
            near_copy_quantile, settings.seed,
        )
        for name in names
    }  # fmt: skip
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
        share = shares[extractor]
        reasons = {**scores.reasons, **diversity_reason}
        if share.reason:  # a share without a yardstick names the limit, not the share
            reasons["near-copy " + ("limit" if np.isfinite(share.share) else "share")] = (
                share.reason
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
                **{k: v for k, v in asdict(scores).items() if k != "reasons"},
                "diversity_ratio": diversity,
                "near_copy_share": share.share,
                "heldout_near_copy_rate": share.heldout_rate,
                "near_copy_limit": share.limit,
                NOT_COMPUTABLE: format_reasons(reasons),
            }
        )
        log.info(
            "%s vs real %s: FID %.3f, KID %.5f, precision %.3f, recall %.3f, density %.3f, "
            "coverage %.3f, diversity %.3f, near-copy share %.3f (limit %.3f)",
            extractor,
            reference,
            scores.fid,
            scores.kid_mean,
            scores.precision,
            scores.recall,
            scores.density,
            scores.coverage,
            diversity,
            share.share,
            share.limit,
        )
        for name, detail in reasons.items():
            log.warning(
                "%s vs real %s: %s not computable (written as NaN): %s%s",
                extractor,
                reference,
                name,
                detail,
                "" if name.startswith("near-copy") else f". Fix: {FIX}",
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


# Columns of results/metrics/summary.html (name in the page -> summary.csv column), the scores a
# reader compares; the CSV keeps everything.
_PAGE_COLUMNS = {
    "model": "model",
    "run": "run",
    "snapshot": "snapshot",
    "features": "extractor",
    "reference": "reference",
    "FID": "fid",
    "real floor FID": "real_floor_fid",
    "KID": "kid_mean",
    "precision": "precision",
    "recall": "recall",
    "density": "density",
    "coverage": "coverage",
    "diversity": "diversity_ratio",
    "not computable": "not_computable",
}


def summary_page_rows(summary: pd.DataFrame) -> pd.DataFrame:
    """The rows of results/metrics/summary.html: summary.csv's scores a reader compares, sorted
    by model, run, feature space, reference and snapshot, numbers rounded to 3 decimals.

    Columns missing from `summary` (a table without real floors) are left out.
    """
    shown = {name: col for name, col in _PAGE_COLUMNS.items() if col in summary}
    page = summary[list(shown.values())].rename(columns={c: n for n, c in shown.items()})
    page = page.sort_values(["model", "run", "features", "reference", "snapshot"], kind="stable")
    return page.round(3).reset_index(drop=True)


SUMMARY_INTRO = (
    "One row per snapshot, feature space (features) and real reference split: FID and KID "
    "against the real images of the synthetic class, precision / recall and density / "
    "coverage (Naeem et al. 2020) of the generated images, and diversity, their mean pairwise "
    "feature distance over the real images' (near 0: mode collapse).",
    "The real floor FID is what real images score in the same comparison (train: two "
    "patient-disjoint halves of the training images; test: the real training images against "
    "the real test images); a generator cannot be expected below it. FIDs compare only within "
    "one feature space and resolution. summary.csv beside this page holds every column, "
    "with KID's standard deviation, set sizes and each floor's other scores.",
)
