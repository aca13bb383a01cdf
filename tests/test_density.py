"""Density and coverage (Naeem et al. 2020): equal to the authors' `prdc` package, hand-checked
tiny cases, the paper's expectations for identical distributions, NaN with the reason for sets
too small, and chunked distances equal to unchunked ones."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import prdc
import pytest
import yaml
from snakemake.utils import validate

from cxrlib.scoring.density import DC_NEIGHBORHOOD, density_coverage, real_radii
from cxrlib.scoring.feasibility import check_references, column_reasons, shortfalls
from cxrlib.scoring.fidelity import score_features

ROOT = Path(__file__).resolve().parents[1]


def _gaussian(n: int, d: int, seed: int, shift: float = 0.0) -> np.ndarray:
    return (np.random.default_rng(seed).normal(size=(n, d)) + shift).astype(np.float32)


def _clustered(n: int, d: int, seed: int, modes: list[int], spread: float = 0.3) -> np.ndarray:
    """`n` points around the listed ones of 8 fixed centres (fakes that drop modes use fewer)."""
    centres = np.random.default_rng(99).normal(scale=4.0, size=(8, d))
    rng = np.random.default_rng(seed)
    picks = rng.choice(modes, size=n)
    return (centres[picks] + spread * rng.normal(size=(n, d))).astype(np.float32)


def _oracle(real: np.ndarray, fake: np.ndarray, k: int) -> tuple[float, float]:
    """The authors' reference implementation. Given float64 arrays (the same values ours reads
    from the float32 ones): with float32 input its distances would be float32."""
    out = prdc.compute_prdc(real.astype(np.float64), fake.astype(np.float64), nearest_k=k)
    return float(out["density"]), float(out["coverage"])


# ------------------------------------------------------------------ the reference implementation

CASES = {
    "gaussian, shifted fakes": (_gaussian(300, 32, 1), _gaussian(250, 32, 2, shift=0.3)),
    "gaussian, fewer reals": (_gaussian(120, 16, 3), _gaussian(400, 16, 4)),
    "clustered, fakes drop modes": (
        _clustered(400, 8, 5, modes=list(range(8))),
        _clustered(300, 8, 6, modes=[0, 1, 2], spread=0.2),
    ),
    "clustered, fakes piled on one mode": (
        _clustered(250, 8, 7, modes=list(range(8))),
        _clustered(250, 8, 8, modes=[4], spread=0.05),
    ),
}


@pytest.mark.parametrize("k", [1, 2, 3, 5, 10])
@pytest.mark.parametrize("case", list(CASES))
def test_equal_to_the_authors_prdc(case: str, k: int) -> None:
    real, fake = CASES[case]
    density, coverage = density_coverage(real, fake, k)
    expected_density, expected_coverage = _oracle(real, fake, k)
    assert density == pytest.approx(expected_density, abs=1e-12, rel=0)
    assert coverage == pytest.approx(expected_coverage, abs=1e-12, rel=0)


def test_the_cases_are_not_trivial() -> None:
    """The oracle cases span the metrics' range: density above and below 1, coverage < 1."""
    values = {case: density_coverage(*CASES[case], 5) for case in CASES}
    assert values["clustered, fakes piled on one mode"][0] > 2  # crowding a dense real region
    assert values["clustered, fakes piled on one mode"][1] < 0.2  # 7 of 8 modes not covered
    assert values["clustered, fakes drop modes"][1] < 0.5
    assert values["gaussian, shifted fakes"][0] < 1


# ------------------------------------------------------------------------- hand-checked cases


@pytest.mark.parametrize("k", [1, 3, 5])
def test_fakes_equal_to_the_reals_have_density_and_coverage_one(k: int) -> None:
    """Each real's open ball holds itself and its k - 1 nearer neighbours: N k pairs / (k N)."""
    real = _gaussian(60, 8, 11)
    assert density_coverage(real, real.copy(), k) == (1.0, 1.0)


def test_fakes_far_from_every_real_have_density_and_coverage_zero() -> None:
    real = _gaussian(50, 4, 12)
    assert density_coverage(real, real + 1000.0, 3) == (0.0, 0.0)


def test_density_exceeds_one_for_a_fake_in_a_dense_real_region() -> None:
    """Reals at -3, -1, 1, 3 on a line and one fake at 0.

    k = 1: the balls of -1 and 1 have radius 2 and hold the fake (distance 1), those of -3 and
    3 (radius 2, distance 3) do not: density 2 / (1 x 1) = 2, coverage 2 / 4.
    k = 2: radii 4, 2, 2, 4; every ball holds the fake: density 4 / (2 x 1) = 2, coverage 1.
    """
    real = np.array([[-3.0], [-1.0], [1.0], [3.0]])
    fake = np.array([[0.0]])
    assert density_coverage(real, fake, 1) == (2.0, 0.5)
    assert density_coverage(real, fake, 2) == (2.0, 1.0)
    assert real_radii(real, 2).tolist() == [4.0, 2.0, 2.0, 4.0]


def test_the_ball_is_open_the_kth_neighbour_lies_outside() -> None:
    """Reals 0, 1, 3 (radii 1, 1, 2 at k = 1); a fake at 1 is on the boundary of 0's ball (not
    counted) and the centre of 1's: density 1, coverage 1/3."""
    real = np.array([[0.0], [1.0], [3.0]])
    assert density_coverage(real, np.array([[1.0]]), 1) == (1.0, 1 / 3)


def test_dropping_a_mode_halves_coverage() -> None:
    """Two far-apart clusters of reals, fakes equal to one cluster: every real of that cluster
    is covered and none of the other; its balls hold k fakes each, so density stays 1."""
    left = _gaussian(30, 4, 13)
    real = np.concatenate([left, _gaussian(30, 4, 14, shift=100.0)])
    assert density_coverage(real, left, 5) == (1.0, 0.5)


def test_identical_distributions_meet_the_papers_expectations() -> None:
    """E[density] = 1 and E[coverage] = 1 - C(N-1, k) / (C(N+M-1, k)) for fakes drawn like the
    reals (Naeem et al. 2020, Section 3), here averaged over 200 draws."""
    n, m, k = 40, 30, 5
    rng = np.random.default_rng(15)
    values = np.array(
        [density_coverage(rng.normal(size=(n, 3)), rng.normal(size=(m, 3)), k) for _ in range(200)]
    )
    expected_coverage = 1 - math.comb(n - 1, k) / math.comb(n + m - 1, k)
    assert values[:, 0].mean() == pytest.approx(1.0, abs=0.03)
    assert values[:, 1].mean() == pytest.approx(expected_coverage, abs=0.01)


def test_duplicate_reals_are_each_others_neighbours() -> None:
    """The k nearest *other* reals exclude the image itself only: a duplicate is a neighbour
    at distance 0, so with k = 1 the duplicates' balls are empty, even for a fake on them."""
    real = np.array([[0.0, 0.0], [0.0, 0.0], [5.0, 0.0]])
    assert real_radii(real, 1).tolist() == [0.0, 0.0, 5.0]
    assert density_coverage(real, np.array([[0.0, 0.0]]), 1) == (0.0, 0.0)
    assert density_coverage(real, np.array([[1.0, 0.0]]), 1) == (1.0, 1 / 3)


# ------------------------------------------------------------------------------------ chunking


@pytest.mark.parametrize("chunk_size", [1, 7, 64, 299, 300, 10_000])
def test_chunked_distances_give_identical_results(chunk_size: int) -> None:
    real, fake = CASES["gaussian, shifted fakes"]
    whole = density_coverage(real, fake, 5, chunk_size=len(real))
    assert density_coverage(real, fake, 5, chunk_size=chunk_size) == whole
    # The radii agree to rounding only: BLAS sums a block's dot products in an order that
    # depends on the block's shape (a 1-row block is a matrix-vector product).
    as64 = real.astype(np.float64)
    np.testing.assert_allclose(
        real_radii(as64, 5, chunk_size), real_radii(as64, 5, len(real)), rtol=1e-12, atol=0
    )


# --------------------------------------------------------------------- too small, and errors


@pytest.mark.parametrize(
    ("k", "n_real", "computable"), [(1, 1, False), (1, 2, True), (5, 5, False), (5, 6, True)]
)
def test_too_few_reals_give_nan_with_the_reason(k: int, n_real: int, computable: bool) -> None:
    real, fake = _gaussian(n_real, 8, 16), _gaussian(20, 8, 17)
    s = score_features(
        real, fake, kid_subsets=5, prc_neighborhood=1, dc_neighborhood=k, real_name="test/NORMAL"
    )
    assert math.isfinite(s.density) == computable == math.isfinite(s.coverage)
    if computable:
        assert (s.density, s.coverage) == density_coverage(real, fake, k)
        assert "density/coverage" not in s.reasons
    else:
        assert s.reasons["density/coverage"] == (
            f"test/NORMAL has {n_real} image{'s' if n_real > 1 else ''}, needs >= {k + 1} "
            f"(more than metrics.dc_neighborhood = {k}: each real image's {k} nearest other "
            "real images)"
        )
        with pytest.raises(ValueError, match=f"need more than {k} real samples"):
            density_coverage(real, fake, k)


def test_a_single_generated_image_still_has_density_and_coverage() -> None:
    """Only the reals' balls are used: one sample is enough, where FID, KID and precision/
    recall (which need the generated set's own neighbours) are NaN."""
    real, fake = _gaussian(30, 4, 18), _gaussian(1, 4, 19)
    s = score_features(real, fake, kid_subsets=5, fake_name="the generated set")
    assert math.isfinite(s.density) and math.isfinite(s.coverage)
    assert set(s.reasons) == {"FID", "KID", "precision/recall"}
    assert s.reasons["precision/recall"].startswith("the generated set has 1 image")


def test_an_empty_generated_set_is_named_in_the_reason() -> None:
    reasons = shortfalls(
        {"train/NORMAL": 50, "the generated set": 0}, 3, generated="the generated set"
    )
    assert reasons["density/coverage"] == (
        "the generated set has 0 images, needs >= 1 (density is a mean over the generated images)"
    )
    with pytest.raises(ValueError, match="at least 1 generated sample"):
        density_coverage(_gaussian(10, 2, 20), np.zeros((0, 2)))


def test_reasons_fill_the_density_and_coverage_columns() -> None:
    reasons = shortfalls({"val/NORMAL": 4, "generated": 100}, 3, generated="generated")
    assert list(reasons) == ["density/coverage"]
    by_column = column_reasons(f"density/coverage: {reasons['density/coverage']}")
    assert set(by_column) == {"density", "coverage"}


@pytest.mark.parametrize(
    ("real", "fake", "k", "match"),
    [
        (np.zeros((10, 2)), np.zeros((5, 3)), 5, "feature sizes differ"),
        (np.zeros(10), np.zeros((5, 1)), 5, r"must be \(N, D\)"),
        (np.full((10, 2), np.nan), np.zeros((5, 2)), 5, "NaN or inf"),
        (np.zeros((10, 2)), np.zeros((5, 2)), 0, "k >= 1"),
    ],
)
def test_bad_input_is_a_clear_error(real: np.ndarray, fake: np.ndarray, k: int, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        density_coverage(real, fake, k)


# ----------------------------------------------------------------------------- configuration


def _config(overlay: dict) -> dict:
    """config.yaml with `overlay` merged in, validated, schema defaults filled."""

    def merge(base: dict, extra: dict) -> dict:
        out = copy.deepcopy(base)
        for key, value in extra.items():
            both = isinstance(value, dict) and isinstance(out.get(key), dict)
            out[key] = merge(out[key], value) if both else value
        return out

    config = merge(yaml.safe_load((ROOT / "config.yaml").read_text()), overlay)
    validate(config, str(ROOT / "schemas" / "config.schema.yaml"))
    return config


def test_dc_neighborhood_defaults_to_the_papers_five_and_is_checked_at_dag_build(
    tmp_path: Path,
) -> None:
    config = _config({})
    assert config["metrics"]["dc_neighborhood"] == DC_NEIGHBORHOOD == 5
    without = yaml.safe_load((ROOT / "config.yaml").read_text())
    del without["metrics"]["dc_neighborhood"]
    validate(without, str(ROOT / "schemas" / "config.schema.yaml"))  # the default fills it
    assert without["metrics"]["dc_neighborhood"] == 5
    counts = {"train": {"NORMAL": 24, "PNEUMONIA": 24}, "test": {"NORMAL": 4, "PNEUMONIA": 4}}
    phantom = {"data": {"source": "phantom", "phantom": {"counts": counts}}}
    message = check_references(_config(phantom), tmp_path / "absent.csv")
    assert "test/NORMAL has 4 images: density/coverage needs >= 6" in message
    assert "FID, KID, precision/recall, diversity ratio scored as usual" in message
    assert "metrics.dc_neighborhood (density/coverage)" in message  # the fix
    phantom["metrics"] = {"dc_neighborhood": 3}
    assert check_references(_config(phantom), tmp_path / "absent.csv") is None


def test_features_with_a_large_common_offset_score_as_without_it() -> None:
    """The distance expansion cancels on big shared offsets unless centred (break-it review):
    permuted identical sets must give density 1 and coverage 1 at any offset."""
    rng = np.random.default_rng(3)
    base = rng.normal(scale=1e-3, size=(64, 16))
    for offset in (0.0, 1e3, 1e4):
        real = base + offset
        fake = real[rng.permutation(len(real))]
        assert density_coverage(real, fake, k=5) == pytest.approx((1.0, 1.0))


@pytest.mark.parametrize("k", [2.9, True, "5"])
def test_k_that_is_not_an_integer_is_refused(k: object) -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="k must be an integer"):
        density_coverage(rng.normal(size=(10, 3)), rng.normal(size=(4, 3)), k=k)  # type: ignore[arg-type]
