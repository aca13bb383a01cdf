"""The scoring settings (`config["metrics"]` values that change the numbers), torch-free: the
real-vs-real floors use the same ones as the scores of generated images."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from cxrlib.scoring.density import DC_NEIGHBORHOOD


@dataclass(frozen=True)
class ScoreSettings:
    """`config["metrics"]` values that change the numbers (all recorded in provenance)."""

    n_fake: int = 5000
    batch_size: int = 64
    seed: int = 0
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    prc_neighborhood: int = 3
    dc_neighborhood: int = DC_NEIGHBORHOOD
    truncation_psi: float = 1.0


def score_settings(section: Mapping) -> ScoreSettings:
    return ScoreSettings(
        n_fake=int(section["n_fake"]),
        batch_size=int(section["batch_size"]),
        seed=int(section["seed"]),
        kid_subsets=int(section["kid_subsets"]),
        kid_subset_size=int(section["kid_subset_size"]),
        prc_neighborhood=int(section["prc_neighborhood"]),
        dc_neighborhood=int(section["dc_neighborhood"]),
    )
