"""prepare_dataset on a folder holding every kind of good and bad file: nothing is lost."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cxrlib.data.cache import load_split
from cxrlib.data.layout import DataError
from cxrlib.data.prepare import DataSettings, PrepareOutputs, prepare_dataset
from cxrlib.data.preprocess import PreprocessSettings
from tests.imagefiles import jpeg_bytes, save, textured, write_dicom

SETTINGS = DataSettings(val_fraction=0.25, min_train_images_per_class=3)
PRE = PreprocessSettings(size=32)


def _good_folder(root: Path, n_train: int = 8, n_test: int = 3) -> None:
    """A small Kaggle-like folder: NORMAL IM-xxxx patients, PNEUMONIA personN patients."""
    seed = 0
    for split, n in (("train", n_train), ("test", n_test)):
        for i in range(n):
            seed += 1
            pid = 100 * (split == "test") + i
            save(
                root / split / "NORMAL" / f"IM-{pid:04d}-0001.jpeg",
                Image.fromarray(textured(seed)),
                "JPEG",
                quality=92,
            )
            seed += 1
            save(
                root / split / "PNEUMONIA" / f"person{pid}_bacteria_{seed}.jpeg",
                Image.fromarray(textured(seed)),
                "JPEG",
                quality=92,
            )
    # a second image of one training patient
    save(root / "train" / "NORMAL" / "IM-0000-0002.jpeg", Image.fromarray(textured(999)), "JPEG")
    save(root / "val" / "NORMAL" / "IM-0500-0001.jpeg", Image.fromarray(textured(500)), "JPEG")
    save(
        root / "val" / "PNEUMONIA" / "person500_virus_1.jpeg",
        Image.fromarray(textured(501)),
        "JPEG",
    )


def _bad_and_odd_files(root: Path) -> dict[str, str]:
    """Write every awkward kind; return {file name: expected fate ("accept" or a reason word)}."""
    n = root / "train" / "NORMAL"
    p = root / "train" / "PNEUMONIA"
    t = root / "test" / "NORMAL"
    fates: dict[str, str] = {}
    good = jpeg_bytes(textured(2000))
    (n / "IM-0900-0001.jpeg").write_bytes(good[: len(good) // 2])
    fates["IM-0900-0001.jpeg"] = "truncated"
    corrupt = bytearray(good)
    corrupt[2:40] = b"\x00" * 38  # destroys the JPEG headers
    (n / "IM-0901-0001.jpeg").write_bytes(bytes(corrupt))
    fates["IM-0901-0001.jpeg"] = "reject"
    (n / "IM-0902-0001.jpeg").write_bytes(b"")
    fates["IM-0902-0001.jpeg"] = "empty"
    (n / "IM-0903-0001.jpeg").write_text("<html>404 Not Found</html>")
    fates["IM-0903-0001.jpeg"] = "reject"
    save(n / "IM-0904-0001.png", Image.fromarray(textured(2001)), "GIF")
    fates["IM-0904-0001.png"] = "gif"
    # accepted odd formats
    sixteen = (textured(2002).astype(np.uint16) * 257).astype(np.uint16)
    save(n / "IM-0905-0001.png", Image.fromarray(sixteen), "PNG")
    fates["IM-0905-0001.png"] = "accept"
    rgba = np.dstack([textured(2003)] * 3 + [np.full((96, 112), 255, np.uint8)])
    save(n / "IM-0906-0001.png", Image.fromarray(rgba, "RGBA"), "PNG")
    fates["IM-0906-0001.png"] = "accept"
    save(n / "IM-0907-0001.jpeg", Image.fromarray(textured(2004)).convert("CMYK"), "JPEG")
    fates["IM-0907-0001.jpeg"] = "accept"
    save(n / "IM-0908-0001.png", Image.fromarray(textured(2005)).convert("P"), "PNG")
    fates["IM-0908-0001.png"] = "accept"
    write_dicom(p / "person900_bacteria_1.dcm", textured(2006).astype(np.uint16) * 16)
    fates["person900_bacteria_1.dcm"] = "accept"
    write_dicom(
        p / "person901_bacteria_2.dcm",
        textured(2007).astype(np.uint16) * 16,
        photometric="MONOCHROME1",
    )
    fates["person901_bacteria_2.dcm"] = "accept"
    # duplicates: same split (collapsed), across splits (leaves test), across labels (ambiguous)
    dup = Image.fromarray(textured(3000))
    save(n / "IM-0910-0001.png", dup, "PNG")
    save(n / "IM-0911-0001.png", dup, "PNG")
    fates["IM-0910-0001.png"] = "accept"
    fates["IM-0911-0001.png"] = "same split"
    leak = Image.fromarray(textured(3001))
    save(n / "IM-0912-0001.png", leak, "PNG")
    save(t / "IM-0913-0001.png", leak, "PNG")
    fates["IM-0912-0001.png"] = "accept"
    fates["IM-0913-0001.png"] = "leak"
    both = Image.fromarray(textured(3002))
    save(n / "IM-0914-0001.png", both, "PNG")
    save(p / "person914_virus_1.png", both, "PNG")
    fates["IM-0914-0001.png"] = "ambiguous"
    fates["person914_virus_1.png"] = "ambiguous"
    save(n / "IM-0915-0001.png", Image.fromarray(np.full((96, 96), 7, np.uint8)), "PNG")
    fates["IM-0915-0001.png"] = "blank"
    save(n / "IM-0916-0001.png", Image.fromarray(textured(4, (20, 20))), "PNG")
    fates["IM-0916-0001.png"] = "small"
    (n / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    fates[".DS_Store"] = "system"
    return fates


@pytest.fixture
def messy(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    root = tmp_path / "data"
    _good_folder(root)
    return root, _bad_and_odd_files(root)


def test_every_file_is_accounted_for_with_the_right_fate(messy, tmp_path: Path) -> None:
    root, fates = messy
    out = PrepareOutputs.under(tmp_path / "out")
    manifest = prepare_dataset(root, out, SETTINGS, PRE, threads=1)
    rejected = pd.read_csv(out.rejected)
    all_files = sorted(str(p) for p in root.rglob("*") if p.is_file())
    listed = sorted([*manifest["path"], *rejected["path"]])
    assert listed == all_files  # every file exactly once
    reasons = dict(
        zip(rejected["path"].map(lambda s: Path(s).name), rejected["reason"], strict=True)
    )
    for name, fate in fates.items():
        if fate == "accept":
            assert name in set(manifest["path"].map(lambda s: Path(s).name)), name
        elif fate != "reject":
            assert fate in reasons[name].lower(), (name, reasons[name])
        else:
            assert name in reasons
    sixteen = manifest[manifest["path"].str.endswith("IM-0905-0001.png")].iloc[0]
    assert sixteen["bit_depth"] == 16
    dicom = manifest[manifest["format"] == "DICOM"]
    assert set(dicom["mode"]) == {"MONOCHROME1", "MONOCHROME2"}
    assert "SECRET" not in out.manifest.read_text() and "Doe" not in out.manifest.read_text()


def test_outputs_agree_with_each_other(messy, tmp_path: Path) -> None:
    root, _ = messy
    out = PrepareOutputs.under(tmp_path / "out")
    manifest = prepare_dataset(root, out, SETTINGS, PRE, threads=1)
    assert set(manifest["split"]) == {"train", "val", "test"}
    # no patient in train and val; the carve took whole patients
    tv = manifest[manifest["split"] != "test"]
    assert (tv.groupby("patient_id")["split"].nunique() == 1).all()
    for split, group in manifest.groupby("split"):
        arrays = load_split(out.cache_dir / f"{split}.npz")
        assert arrays.images.shape == (len(group), 32, 32) and arrays.images.dtype == np.uint8
        assert list(arrays.paths) == list(group.sort_values("cache_index")["path"])
        for row in group.itertuples():
            png = np.asarray(Image.open(row.prepared_path))
            assert np.array_equal(png, arrays.images[row.cache_index])
            assert Path(row.prepared_path).parent == out.prepared_dir / split / row.label
        assert [arrays.label_names[i] for i in arrays.labels] == list(
            group.sort_values("cache_index")["label"]
        )
    counts = pd.read_csv(out.class_counts)
    assert counts["n_images"].sum() == len(manifest)
    hist = pd.read_csv(out.histograms)
    after = hist[hist["stage"] == "after"]
    assert after["count"].sum() == len(manifest) * 32 * 32


def test_parallel_run_gives_identical_outputs(messy, tmp_path: Path) -> None:
    root, _ = messy
    one = PrepareOutputs.under(tmp_path / "one")
    two = PrepareOutputs.under(tmp_path / "two")
    m1 = prepare_dataset(root, one, SETTINGS, PRE, threads=1)
    m2 = prepare_dataset(root, two, SETTINGS, PRE, threads=2)
    pd.testing.assert_frame_equal(
        m1.drop(columns="prepared_path"), m2.drop(columns="prepared_path")
    )
    assert one.rejected.read_text() == two.rejected.read_text()
    for split in ("train", "val", "test"):
        a, b = (
            load_split(one.cache_dir / f"{split}.npz"),
            load_split(two.cache_dir / f"{split}.npz"),
        )
        assert np.array_equal(a.images, b.images)


def test_too_little_data_stops_naming_the_class(tmp_path: Path) -> None:
    root = tmp_path / "data"
    _good_folder(root, n_train=2, n_test=1)
    with pytest.raises(DataError, match="train/PNEUMONIA") as info:
        prepare_dataset(
            root,
            PrepareOutputs.under(tmp_path / "out"),
            DataSettings(min_train_images_per_class=5),
            PRE,
        )
    assert "min_train_images_per_class" in str(info.value)


def test_class_with_only_bad_files_stops_the_run(tmp_path: Path) -> None:
    root = tmp_path / "data"
    _good_folder(root)
    for f in (root / "test" / "PNEUMONIA").iterdir():
        f.write_bytes(b"broken")
    with pytest.raises(DataError, match="test/PNEUMONIA: 0 usable"):
        prepare_dataset(root, PrepareOutputs.under(tmp_path / "out"), SETTINGS, PRE)


def test_most_frequent_reasons_count_variants_of_one_fault_together() -> None:
    from cxrlib.data.prepare import _common_reasons

    rejected = pd.DataFrame(
        {
            "path": [f"f{i}" for i in range(6)],
            "reason": [
                "cannot read image: image file is truncated (12 bytes not processed)",
                "cannot read image: image file is truncated (40 bytes not processed)",
                "cannot read image: image file is truncated (7 bytes not processed)",
                "not an image file",
                "not an image file",
                "empty file (0 bytes)",
            ],
        }
    )
    text = _common_reasons(rejected)
    assert text.startswith(
        "Most frequent reasons: 3 x 'cannot read image: image file is truncated "
        "(N bytes not processed)'; 2 x 'not an image file'; 1 x 'empty file (0 bytes)'"
    )
