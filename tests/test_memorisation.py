"""Memorisation audit: planted copies of training images are all found, fresh samples are not.

Real training images are phantoms (cxrlib.data.phantom) at 64 px, several films for some
patients; "synthetic" images are fresh phantoms plus planted copies of training images (exact,
noised by +-2 gray levels, shifted by 1 px). Features are downsampled pixels: the audit must not
depend on which extractor made them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from skimage.metrics import structural_similarity

from cxrlib.data.phantom import render_radiograph, sample_anatomy
from cxrlib.memorisation.audit import (
    AuditResult,
    audit,
    comparison_size,
    nearest_neighbours,
    resize_float,
    resize_uint8,
    ssim_pairs,
    write_audit,
)
from cxrlib.memorisation.figures import closest_pairs, plot_closest_pairs, plot_nearest_distances

SIZE = 64
N_REAL = 80
N_FRESH = 30
EXACT = (3, 17, 40, 79)
NOISED = (5, 22, 33, 50)
SHIFTED = 11


def features(images: np.ndarray) -> np.ndarray:
    """A deliberately plain extractor: 8x8 antialiased thumbnails, (N, 64) in [0, 1]."""
    return resize_float(images, 8).reshape(len(images), -1) / 255.0


@dataclass(frozen=True)
class Planted:
    reals: np.ndarray
    patient_ids: list[str]
    paths: list[str]
    fakes: np.ndarray
    source: dict[int, int]  # fake index -> index of the real image it copies
    result: AuditResult


def _reals(n: int) -> tuple[np.ndarray, list[str], list[str]]:
    """n phantom films in the Kaggle naming, 1-3 films per patient (same anatomy, new pose)."""
    images, pids, paths = [], [], []
    counts = np.random.default_rng(123)
    patient = 100
    while len(images) < n:
        anatomy = sample_anatomy(np.random.default_rng([7, patient]))
        for film in range(int(counts.integers(1, 4))):
            rng = np.random.default_rng([8, patient, film])
            images.append(render_radiograph(rng, SIZE, SIZE, False, anatomy))
            pids.append(f"IM-{patient:04d}")
            paths.append(f"train/NORMAL/IM-{patient:04d}-{film + 1:04d}.jpeg")
        patient += 1
    return np.stack(images[:n]), pids[:n], paths[:n]


def _noised(image: np.ndarray, seed: int) -> np.ndarray:
    noise = np.random.default_rng(seed).integers(-2, 3, image.shape)
    return np.clip(image.astype(int) + noise, 0, 255).astype(np.uint8)


def _shifted(image: np.ndarray) -> np.ndarray:
    """Shifted right by 1 px, the first column repeated (as a translated copy would look)."""
    out = np.roll(image, 1, axis=1)
    out[:, 0] = image[:, 0]
    return out


@pytest.fixture(scope="module")
def planted() -> Planted:
    reals, pids, paths = _reals(N_REAL)
    fresh = [
        render_radiograph(np.random.default_rng([9, i]), SIZE, SIZE, False) for i in range(N_FRESH)
    ]
    copies = [reals[i] for i in EXACT] + [_noised(reals[i], i) for i in NOISED]
    copies.append(_shifted(reals[SHIFTED]))
    sources = [*EXACT, *NOISED, SHIFTED]
    fakes = np.stack(fresh + copies)
    source = {N_FRESH + k: real for k, real in enumerate(sources)}
    result = audit(fakes, features(fakes), reals, features(reals), pids, paths)
    return Planted(reals, pids, paths, fakes, source, result)


# --------------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------------


def test_ssim_pairs_equals_scikit_image() -> None:
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (6, 40, 33), dtype=np.uint8)
    b = rng.integers(0, 256, (6, 40, 33), dtype=np.uint8)
    b[0] = a[0]  # identical
    b[1] = np.clip(a[1].astype(int) + 3, 0, 255)  # brightness shift
    a[2], b[2] = 128, 128  # flat images (variance 0)
    b[3] = 255 - a[3]  # inverted
    smooth = render_radiograph(np.random.default_rng(1), 40, 33, False)
    a[4], b[4] = smooth, _noised(smooth, 2)
    expected = [structural_similarity(x, y, data_range=255) for x, y in zip(a, b, strict=True)]
    np.testing.assert_allclose(ssim_pairs(a, b), expected, rtol=0, atol=1e-9)
    assert ssim_pairs(a[:1], b[:1])[0] == pytest.approx(1.0)


def test_resize_uint8_antialiases_and_keeps_flat_images() -> None:
    checker = (np.indices((64, 64)).sum(axis=0) % 2 * 255).astype(np.uint8)[None]
    small = resize_uint8(checker, 16)
    assert small.shape == (1, 16, 16) and small.dtype == np.uint8
    # Antialiased: a 1 px checkerboard averages to mid-grey instead of aliasing to 0 or 255.
    assert np.all(np.abs(small.astype(int) - 128) <= 1)
    flat = np.full((3, 50, 70), 77, np.uint8)
    assert np.all(resize_uint8(flat, (20, 30)) == 77)
    assert resize_uint8(flat, (50, 70)) is not flat  # same size: a copy, never the input


def test_comparison_size_is_the_generated_resolution_unless_reals_are_smaller() -> None:
    assert comparison_size((64, 64), (256, 256)) == (64, 64)
    assert comparison_size((256, 256), (128, 128)) == (128, 128)


def test_nearest_neighbours_matches_brute_force_and_excludes_groups() -> None:
    rng = np.random.default_rng(3)
    queries, refs = rng.normal(size=(300, 5)), rng.normal(size=(40, 5))
    idx, dist = nearest_neighbours(queries, refs, 3)
    brute = np.linalg.norm(queries[:, None] - refs[None], axis=2)
    np.testing.assert_array_equal(idx, np.argsort(brute, axis=1)[:, :3])
    np.testing.assert_allclose(dist, np.sort(brute, axis=1)[:, :3], atol=1e-9)
    groups = np.arange(40) // 4  # 10 groups of 4 refs; each query belongs to one
    q_groups = rng.integers(0, 10, 300)
    idx, dist = nearest_neighbours(queries, refs, 3, query_groups=q_groups, ref_groups=groups)
    assert not np.any(groups[idx] == q_groups[:, None])
    brute[groups[None, :] == q_groups[:, None]] = np.inf
    np.testing.assert_array_equal(idx[:, 0], brute.argmin(axis=1))


# --------------------------------------------------------------------------------------------
# The audit
# --------------------------------------------------------------------------------------------


def test_every_planted_copy_is_flagged_and_matched_to_its_source(planted: Planted) -> None:
    samples = planted.result.samples.set_index("sample")
    paths = np.asarray(planted.paths)
    for fake, real in planted.source.items():
        row = samples.loc[fake]
        assert row["near_copy"], f"planted copy {fake} of {paths[real]} not flagged"
        assert row["nearest_feature_path"] == paths[real]
        assert row["nearest_pixel_path"] == paths[real]
    for fake in planted.source:
        kind_exact_or_noised = fake < N_FRESH + len(EXACT) + len(NOISED)
        # Pixel copies are caught by SSIM; the shifted one (SSIM ~0.8) by its features.
        assert samples.loc[fake, "by_ssim"] == kind_exact_or_noised
        assert samples.loc[fake, "by_feature"]
    exact = samples.loc[N_FRESH : N_FRESH + len(EXACT) - 1]
    assert np.allclose(exact["ssim"], 1.0) and np.allclose(exact["feature_distance"], 0, atol=1e-6)


def test_fresh_samples_are_mostly_not_flagged(planted: Planted) -> None:
    fresh = planted.result.samples.iloc[:N_FRESH]
    # No fresh phantom looks like a pixel copy (their best SSIM is ~0.6-0.8) ...
    assert not fresh["by_ssim"].any()
    assert fresh["ssim"].max() < 0.9
    # ... and the feature rule flags about feature_quantile of them by construction, a few
    # per cent with only 80 reals (see `audit`); allow 10%.
    assert fresh["near_copy"].sum() <= 0.1 * N_FRESH
    s = planted.result.summary
    assert s["n_near_copies"] == len(planted.source) + fresh["near_copy"].sum()
    assert s["n_fake"] == N_FRESH + len(planted.source) and s["n_real"] == N_REAL


def test_real_to_real_never_pairs_an_image_with_its_own_patient(planted: Planted) -> None:
    rr = planted.result.real_to_real
    patient_of = dict(zip(planted.paths, planted.patient_ids, strict=True))
    assert (rr["nearest_feature_path"].map(patient_of) != rr["patient_id"]).all()
    assert (rr["nearest_pixel_path"].map(patient_of) != rr["patient_id"]).all()
    # Several patients have 2-3 films, so the exclusion is exercised, not vacuous.
    assert rr["patient_id"].value_counts().max() > 1


def test_a_duplicate_film_of_one_patient_is_not_a_real_to_real_match() -> None:
    reals, pids, paths = _reals(12)
    # A 13th film: an exact duplicate of film 0, once under its own patient, once not.
    images = np.concatenate([reals, reals[:1]])
    for patient, expect_copy in ((pids[0], False), ("IM-9999", True)):
        ids = [*pids, patient]
        result = audit(
            images[:2], features(images[:2]), images, features(images), ids, [*paths, "dup.jpeg"]
        )
        row = result.real_to_real.iloc[-1]
        assert (row["nearest_pixel_path"] == paths[0]) == expect_copy
        assert (row["ssim"] == pytest.approx(1.0)) == expect_copy


def test_audit_compares_at_the_generated_resolution() -> None:
    reals, pids, paths = _reals(10)
    big = np.stack([render_radiograph(np.random.default_rng([8, 0, 0]), 128, 128, False)])
    big_reals = np.concatenate([resize_uint8(reals, 128), big])
    fake = resize_uint8(big, SIZE)  # a 64 px sample that copies a 128 px training image
    result = audit(
        fake,
        features(fake),
        big_reals,
        features(big_reals),
        [*pids, "IM-9999"],
        [*paths, "big.jpeg"],
    )
    row = result.samples.iloc[0]
    assert result.summary["comparison_px"] == [SIZE, SIZE]
    assert row["near_copy"] and row["nearest_pixel_path"] == "big.jpeg" and row["ssim"] > 0.99


def test_summary_thresholds_and_medians(planted: Planted) -> None:
    s = planted.result.summary
    rr = planted.result.real_to_real["feature_distance"]
    assert s["feature_threshold"] == pytest.approx(np.quantile(rr, 0.01))
    assert s["ssim_threshold"] == 0.95 and s["feature_distance"] == "euclidean"
    assert s["median_feature_distance_real_to_real"] == pytest.approx(rr.median())
    assert s["feature_distance_ratio"] == pytest.approx(
        s["median_feature_distance_fake_to_real"] / s["median_feature_distance_real_to_real"]
    )
    assert s["share_near_copies"] == pytest.approx(s["n_near_copies"] / s["n_fake"])
    cols = {"sample", "nearest_feature_path", "feature_distance", "nearest_pixel_path", "ssim"}
    assert cols | {"near_copy"} <= set(planted.result.samples.columns)


def test_audit_rejects_mismatched_inputs(planted: Planted) -> None:
    p = planted
    with pytest.raises(ValueError, match="features do not match"):
        audit(p.fakes, features(p.fakes)[:-1], p.reals, features(p.reals), p.patient_ids, p.paths)
    with pytest.raises(ValueError, match="nothing to audit"):
        audit(p.fakes, features(p.fakes), p.reals[:0], np.zeros((0, 64)), [], [])
    with pytest.raises(ValueError, match="uint8"):
        audit(p.fakes.astype(float), features(p.fakes), p.reals, features(p.reals), [], [])


@pytest.mark.parametrize("n_real", [1, 2, 3])
def test_reals_of_one_patient_have_no_baseline_but_copies_are_still_found(
    n_real: int, tmp_path: Path
) -> None:
    """1-3 training images of one patient: no real-to-real baseline (it compares different
    patients), so no feature threshold; nearest neighbours and SSIM flags are still computed,
    the summary says what is missing, JSON and figures are written. Never an error."""
    reals, _, paths = _reals(n_real)
    fresh = render_radiograph(np.random.default_rng([9, 0]), SIZE, SIZE, False)
    fakes = np.stack([fresh, reals[0]])  # a fresh sample and an exact copy
    result = audit(fakes, features(fakes), reals, features(reals), ["IM-0100"] * n_real, paths)
    s = result.summary
    assert s["feature_threshold"] is None and s["median_ssim_real_to_real"] is None
    assert f"{n_real} real training image(s) come from 1 patient(s)" in s["not_computable"]
    assert not result.samples["by_feature"].any()
    copy = result.samples.iloc[1]
    assert copy["near_copy"] and copy["by_ssim"] and copy["nearest_pixel_path"] == paths[0]
    assert copy["nearest_feature_path"] == paths[0] and copy["feature_distance"] == 0.0
    assert s["n_near_copies"] == 1 and s["n_real"] == n_real
    assert result.real_to_real["feature_distance"].isna().all()
    assert (result.real_to_real["nearest_pixel_path"] == "").all()
    write_audit(result, tmp_path / "a.csv", tmp_path / "b.csv", tmp_path / "s.json")
    assert json.loads((tmp_path / "s.json").read_text())["feature_threshold"] is None
    plot_nearest_distances(result, tmp_path / "hist.png")
    plot_closest_pairs(result, fakes, reals, tmp_path / "pairs.png", n=2)
    assert _is_png(tmp_path / "hist.png") and _is_png(tmp_path / "pairs.png")


def test_two_patients_with_one_image_each_have_a_baseline() -> None:
    reals, pids, paths = _reals(6)
    two = [0, len(pids) - 1]  # first and last film: different patients
    assert pids[two[0]] != pids[two[1]]
    result = audit(
        reals[:1], features(reals[:1]), reals[two], features(reals[two]),
        [pids[i] for i in two], [paths[i] for i in two],
    )  # fmt: skip
    assert result.summary["not_computable"] == ""
    assert result.summary["feature_threshold"] > 0
    assert list(result.real_to_real["nearest_feature_path"]) == [paths[two[1]], paths[two[0]]]


def test_write_audit_writes_tables_and_json(planted: Planted, tmp_path: Path) -> None:
    write_audit(planted.result, tmp_path / "s.csv", tmp_path / "r.csv", tmp_path / "sum.json")
    samples = pd.read_csv(tmp_path / "s.csv")
    assert len(samples) == len(planted.fakes) and samples["near_copy"].sum() >= 9
    assert len(pd.read_csv(tmp_path / "r.csv")) == N_REAL
    summary = json.loads((tmp_path / "sum.json").read_text())
    assert summary["n_near_copies"] == planted.result.summary["n_near_copies"]


# --------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------


def _is_png(path: Path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plots_write_pngs(planted: Planted, tmp_path: Path) -> None:
    plot_nearest_distances(planted.result, tmp_path / "hist.png", synthetic=True)
    plot_closest_pairs(planted.result, planted.fakes, planted.reals, tmp_path / "pairs.png")
    by_path = dict(zip(planted.paths, planted.reals, strict=True))
    plot_closest_pairs(
        planted.result, planted.fakes, by_path, tmp_path / "feat.png", n=5, rank_by="feature"
    )
    for name in ("hist.png", "pairs.png", "feat.png"):
        assert _is_png(tmp_path / name)


def test_closest_pairs_are_the_planted_copies(planted: Planted) -> None:
    top = closest_pairs(planted.result, n=8)
    assert set(top["sample"]) <= set(planted.source)
    assert (top["ssim"].diff().dropna() <= 0).all()
    assert all(top["real_index"] == [planted.source[s] for s in top["sample"]])
