"""The synthetic phantoms: layout, names, patients, determinism and a real, lung-only signal.

The phantoms are the demo and test data of the whole study, so these tests pin down what the
later stages rely on: the Kaggle layout and file names (patient IDs parse, no patient in two
splits), byte-identical output for one spec whatever the worker count, and a disease signal that
exists, sits in the lungs and nowhere else.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cxrlib.data.phantom import (
    LABELS,
    Anatomy,
    PhantomSpec,
    make_phantom_dataset,
    render_radiograph,
    sample_anatomy,
)

PATIENT_PATTERNS = (
    re.compile(r"^(?:NORMAL2-)?(?P<pid>IM-\d+)-\d+"),
    re.compile(r"^(?P<pid>person\d+)_(?:bacteria|virus)_\d+"),
)

COUNTS = {
    "train": {"NORMAL": 9, "PNEUMONIA": 11},
    "val": {"NORMAL": 2, "PNEUMONIA": 3},
    "test": {"NORMAL": 5, "PNEUMONIA": 6},
}
SPEC = PhantomSpec(counts=COUNTS, size_px=(96, 160), seed=3, max_images_per_patient=3)
# Small enough for several runs per test session.
TINY = PhantomSpec(
    counts={"train": {"NORMAL": 4, "PNEUMONIA": 4}, "test": {"NORMAL": 2, "PNEUMONIA": 3}},
    size_px=(64, 96),
    seed=11,
)


def patient_id(path: Path) -> str:
    """The patient ID as the pipeline parses it (first matching pattern wins)."""
    for pattern in PATIENT_PATTERNS:
        match = pattern.search(path.name)
        if match:
            return match.group("pid")
    raise AssertionError(f"{path.name} matches no patient-ID pattern")


def read_tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    root = tmp_path_factory.mktemp("phantom")
    return root, make_phantom_dataset(root, SPEC)


# --------------------------------------------------------------------------------------------
# Data set
# --------------------------------------------------------------------------------------------


def test_layout_and_exact_counts(dataset: tuple[Path, list[Path]]) -> None:
    root, paths = dataset
    for split, per_label in COUNTS.items():
        for label in LABELS:
            files = sorted((root / split / label).iterdir())
            assert len(files) == per_label[label], (split, label)
            assert all(f.suffix == ".jpeg" for f in files)
    images = sorted(p for p in root.rglob("*.jpeg"))
    assert paths == images
    assert paths == sorted(paths)
    assert {p.name for p in root.iterdir() if p.is_file()} == {"PHANTOM_README.txt"}


def test_file_names_carry_patient_ids_of_the_right_scheme(
    dataset: tuple[Path, list[Path]],
) -> None:
    _, paths = dataset
    for path in paths:
        pid = patient_id(path)
        if path.parent.name == "NORMAL":
            assert pid.startswith("IM-"), path.name
        else:
            assert pid.startswith("person"), path.name
    assert len({p.name for p in paths}) == len(paths)


def test_no_patient_in_two_splits_or_labels(dataset: tuple[Path, list[Path]]) -> None:
    _, paths = dataset
    places: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for path in paths:
        places[patient_id(path)].add((path.parent.parent.name, path.parent.name))
    assert all(len(where) == 1 for where in places.values()), {
        pid: where for pid, where in places.items() if len(where) > 1
    }


def test_some_patients_have_several_images(dataset: tuple[Path, list[Path]]) -> None:
    _, paths = dataset
    per_patient: dict[str, int] = defaultdict(int)
    for path in paths:
        per_patient[patient_id(path)] += 1
    assert max(per_patient.values()) > 1
    assert max(per_patient.values()) <= SPEC.max_images_per_patient
    # Most patients have a single image, as in the real release.
    assert sum(n == 1 for n in per_patient.values()) > len(per_patient) / 2


def test_image_sizes_within_range(dataset: tuple[Path, list[Path]]) -> None:
    _, paths = dataset
    low, high = SPEC.size_px
    shapes = set()
    for path in paths:
        with Image.open(path) as image:
            width, height = image.size
            assert image.format == "JPEG"
        assert low <= width <= high and low <= height <= high, (path.name, image.size)
        assert 0.8 - 1e-9 <= width / height <= 1.25 + 1e-9
        shapes.add((height, width))
    assert len(shapes) > 1


def test_readme_says_synthetic(dataset: tuple[Path, list[Path]]) -> None:
    root, _ = dataset
    text = (root / "PHANTOM_README.txt").read_text(encoding="utf-8")
    assert "synthetic" in text.lower()
    assert f"seed: {SPEC.seed}" in text
    assert "train/NORMAL: 9" in text


def test_same_spec_gives_identical_bytes_whatever_the_worker_count(tmp_path: Path) -> None:
    make_phantom_dataset(tmp_path / "a", TINY)
    make_phantom_dataset(tmp_path / "b", TINY)
    make_phantom_dataset(tmp_path / "c", TINY, workers=2)
    first = read_tree(tmp_path / "a")
    assert len(first) == 14
    assert first == read_tree(tmp_path / "b")
    assert first == read_tree(tmp_path / "c")


def test_another_seed_gives_other_images(tmp_path: Path) -> None:
    make_phantom_dataset(tmp_path / "a", TINY)
    other = PhantomSpec(counts=TINY.counts, size_px=TINY.size_px, seed=TINY.seed + 1)
    make_phantom_dataset(tmp_path / "b", other)
    assert read_tree(tmp_path / "a") != read_tree(tmp_path / "b")


def test_test_shift_redraws_only_the_test_images_with_the_same_plan(tmp_path: Path) -> None:
    """test_shift renders test/ with other acquisition settings and leaves train/ (and the
    file names, patients and sizes) exactly as without it; 0 is the default, byte for byte."""
    make_phantom_dataset(tmp_path / "plain", TINY)
    make_phantom_dataset(tmp_path / "zero", PhantomSpec(**{**TINY.__dict__, "test_shift": 0.0}))
    make_phantom_dataset(tmp_path / "shift", PhantomSpec(**{**TINY.__dict__, "test_shift": 1.0}))
    plain, shifted = read_tree(tmp_path / "plain"), read_tree(tmp_path / "shift")
    assert read_tree(tmp_path / "zero") == plain
    images = [name for name in plain if name.endswith(".jpeg")]
    assert sorted(images) == sorted(n for n in shifted if n.endswith(".jpeg"))
    for name in images:
        same = plain[name] == shifted[name]
        assert same == (not name.startswith("test/")), name
        with Image.open(tmp_path / "plain" / name) as a, Image.open(tmp_path / "shift" / name) as b:
            assert a.size == b.size
    assert "test_shift: 1.0" in shifted["PHANTOM_README.txt"].decode()


def test_shifted_pose_survives_histogram_equalisation() -> None:
    """The shift is not a monotone grey-level map (which equalisation would undo): after
    equalising both, the shifted film still differs clearly from the plain one."""
    from cxrlib.data.phantom import _render

    def equalised(shift: float) -> np.ndarray:
        rng = np.random.default_rng(4)
        pixels = _render(rng, 160, 160, None, sample_anatomy(np.random.default_rng(5)), shift)
        ranks = np.argsort(np.argsort(pixels.ravel(), kind="stable"), kind="stable")
        return (ranks / ranks.size).reshape(pixels.shape)

    plain, shifted = equalised(0.0), equalised(1.0)
    assert np.abs(plain - shifted).mean() > 0.1
    assert np.array_equal(plain, equalised(0.0))  # the shift draws nothing from the generator


@pytest.mark.parametrize(("fraction", "expected"), [(1.0, {"RGB"}), (0.0, {"L"})])
def test_rgb_fraction(tmp_path: Path, fraction: float, expected: set[str]) -> None:
    spec = PhantomSpec(counts=TINY.counts, size_px=TINY.size_px, rgb_fraction=fraction)
    modes = set()
    for path in make_phantom_dataset(tmp_path, spec):
        with Image.open(path) as image:
            modes.add(image.mode)
            if image.mode == "RGB":
                r, g, b = (np.asarray(c, dtype=int) for c in image.split())
                # Grey saved as colour: channels equal up to JPEG chroma rounding.
                assert np.abs(r - g).max() <= 3 and np.abs(g - b).max() <= 3
    assert modes == expected


def test_label_with_zero_count_still_gets_its_folder(tmp_path: Path) -> None:
    spec = PhantomSpec(
        counts={"train": {"NORMAL": 2}, "test": {"NORMAL": 1, "PNEUMONIA": 1}}, size_px=(64, 64)
    )
    paths = make_phantom_dataset(tmp_path, spec)
    assert len(paths) == 4
    assert (tmp_path / "train" / "PNEUMONIA").is_dir()


@pytest.mark.parametrize(
    "spec",
    [
        PhantomSpec(counts={"train": {"COVID": 1}}),
        PhantomSpec(counts={"train": {"NORMAL": -1}}),
        PhantomSpec(counts={"train": {"NORMAL": 1}}, size_px=(200, 100)),
        PhantomSpec(counts={"train": {"NORMAL": 1}}, max_images_per_patient=0),
        PhantomSpec(counts={"train": {"NORMAL": 1}}, rgb_fraction=1.5),
        PhantomSpec(counts={"train": {"NORMAL": 1}}, test_shift=-0.5),
        PhantomSpec(counts={"train": {"NORMAL": 1}}, test_shift=2.0),
    ],
)
def test_invalid_spec_is_rejected(tmp_path: Path, spec: PhantomSpec) -> None:
    with pytest.raises(ValueError):
        make_phantom_dataset(tmp_path, spec)


# --------------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------------


def render(seed: int, diseased: bool, size: tuple[int, int] = (128, 128)) -> np.ndarray:
    return render_radiograph(np.random.default_rng([seed]), *size, diseased).astype(np.float64)


def lung_fields(image: np.ndarray) -> np.ndarray:
    """Boxes that lie inside both lung fields whatever the pose."""
    h, w = image.shape
    rows = slice(int(0.35 * h), int(0.55 * h))
    return np.concatenate(
        [image[rows, int(0.2 * w) : int(0.35 * w)], image[rows, int(0.65 * w) : int(0.8 * w)]],
        axis=1,
    )


def test_render_shape_and_type() -> None:
    for height, width in [(64, 64), (120, 150), (300, 256)]:
        image = render_radiograph(np.random.default_rng(0), height, width, True)
        assert image.shape == (height, width)
        assert image.dtype == np.uint8
        assert image.std() > 10


def test_render_is_deterministic_and_takes_the_anatomy() -> None:
    anatomy = sample_anatomy(np.random.default_rng(4))
    assert isinstance(anatomy, Anatomy)
    first = render_radiograph(np.random.default_rng(5), 96, 96, False, anatomy)
    again = render_radiograph(np.random.default_rng(5), 96, 96, False, anatomy)
    other = render_radiograph(np.random.default_rng(5), 96, 96, False)
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


def test_anatomy_mediastinum_brighter_than_lungs_and_corners() -> None:
    for seed in range(12):
        image = render(seed, diseased=False)
        h, w = image.shape
        column = image[int(0.3 * h) : int(0.6 * h), int(0.47 * w) : int(0.53 * w)].mean()
        corners = np.concatenate([image[:8, :8], image[:8, -8:]]).mean()
        assert column > lung_fields(image).mean() + 40, seed
        assert column > corners + 80, seed


def test_normal_images_vary() -> None:
    images = [render(100 + seed, diseased=False) for seed in range(8)]
    differences = [np.abs(images[i] - images[j]).mean() for i in range(8) for j in range(i + 1, 8)]
    assert min(differences) > 5


def test_disease_adds_opacity_in_the_lungs_only() -> None:
    """Same generator state with and without disease: only the lungs may change, and get denser.

    The corners (air outside the body), the neck at the top and the abdomen at the bottom must be
    equal in both renders, so nothing but the lungs can tell the classes apart.
    """
    lung_gain = []
    for seed in range(20):
        normal = render(200 + seed, diseased=False)
        diseased = render(200 + seed, diseased=True)
        change = diseased - normal
        assert change.sum() > 0, seed
        # Resampling may ring by a grey level or two next to an opacity, never more.
        assert change.min() >= -4, seed
        outside_lungs = (
            change[:6, :],
            change[-6:, :],
            change[:12, :12],
            change[:12, -12:],
            change[-12:, :12],
            change[-12:, -12:],
        )
        assert not any(part.any() for part in outside_lungs), seed
        lung_gain.append(lung_fields(diseased).mean() - lung_fields(normal).mean())
    assert np.mean(lung_gain) > 5
    assert sum(g > 0.5 for g in lung_gain) >= 15


def exposure_normalised_lung_density(image: np.ndarray) -> float:
    """Lung brightness relative to air (0) and mediastinum (1), so exposure cancels out."""
    h, w = image.shape
    column = image[int(0.3 * h) : int(0.6 * h), int(0.47 * w) : int(0.53 * w)].mean()
    air = np.concatenate([image[:8, :8], image[:8, -8:]]).mean()
    return float((lung_fields(image).mean() - air) / (column - air))


def test_pneumonia_lungs_denser_in_independent_images() -> None:
    """Unpaired, over 40 patients per class, the lung fields are denser with pneumonia.

    Only on average: a crude box statistic must not separate the classes well, or the classifier
    task would be trivial; the opacities are local and vary in strength.
    """
    normal = [exposure_normalised_lung_density(render(300 + s, False)) for s in range(40)]
    diseased = [exposure_normalised_lung_density(render(400 + s, True)) for s in range(40)]
    assert np.mean(diseased) > np.mean(normal) + 0.02
