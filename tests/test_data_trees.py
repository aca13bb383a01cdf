"""Data trees as found on real machines, through the workflow's data stage.

Each tree is built here (no download): the archive's __MACOSX copy beside the real folder,
a val/ linked to shared storage, a loop, JPEG/PNG files cut short and padded, files with bytes
after the image, and a class of DICOMs no installed decoder can read. The assertions are the
ones a user makes: the error names the right folder, every file reachable from data.root is in
manifest.csv or rejected.csv, and a run that stops leaves its rejected list behind.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image
from pydicom.encaps import encapsulate
from pydicom.uid import JPEGLosslessSV1

from cxrlib.data.layout import DataError
from cxrlib.data.prepare import DataSettings, PrepareOutputs, prepare_dataset
from cxrlib.data.preprocess import PreprocessSettings
from tests.conftest import run_snakemake
from tests.imagefiles import jpeg_bytes, save, textured, write_dicom

PRE = PreprocessSettings(size=32)
APPLE_DOUBLE = b"\x00\x05\x16\x07\x00\x02\x00\x00" + bytes(80)  # a macOS "._" file


def _good(path: Path, seed: int, fmt: str = "JPEG") -> Path:
    return save(path, Image.fromarray(textured(seed)), fmt)


def _padded(data: bytes, keep: float = 0.5) -> bytes:
    cut = int(len(data) * keep)
    return data[:cut] + bytes(len(data) - cut)


def _png_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "PNG")
    return buffer.getvalue()


def _undecodable_dicom(path: Path, seed: int) -> Path:
    """A DICOM whose JPEG Lossless pixel data is corrupt: the installed decoder (GDCM) fails."""
    write_dicom(path, textured(seed).astype(np.uint16) * 16)
    import pydicom

    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = JPEGLosslessSV1
    ds.PixelData = encapsulate([b"\xff\xd8\xff\xc3 not decodable here \xff\xd9"])
    ds.save_as(path, enforce_file_format=True)
    return path


def build_archive(base: Path) -> dict[str, Path]:
    """archive/chest_xray (the data) beside archive/__MACOSX/chest_xray, val/ linked outside.

    Returns the named places the tests look at.
    """
    archive = base / "archive"
    root = archive / "chest_xray"
    seed = 0
    for split, n in (("train", 5), ("test", 2)):
        for label, stem in (("NORMAL", "IM-{:04d}-0001"), ("PNEUMONIA", "person{}_bacteria_1")):
            for i in range(n):
                seed += 1
                pid = i + 100 * (split == "test")
                _good(root / split / label / f"{stem.format(pid)}.jpeg", seed)
                mac = archive / "__MACOSX" / "chest_xray" / split / label
                mac.mkdir(parents=True, exist_ok=True)
                (mac / f"._{stem.format(pid)}.jpeg").write_bytes(APPLE_DOUBLE)
    shared = base / "shared_val"
    for label, name in (("NORMAL", "IM-0500-0001"), ("PNEUMONIA", "person500_virus_1")):
        for i in range(2):
            _good(shared / label / f"{name}-{i}.jpeg", 500 + i + 10 * len(label))
    (root / "val").symlink_to(os.path.relpath(shared, root))  # val -> ../../shared_val
    normal = root / "train" / "NORMAL"
    (normal / "IM-0900-0001.jpeg").write_bytes(_padded(jpeg_bytes(textured(900, (240, 200)))))
    (normal / "IM-0901-0001.png").write_bytes(_padded(_png_bytes(textured(901, (240, 200)))))
    (normal / "IM-0902-0001.jpeg").write_bytes(jpeg_bytes(textured(902)) + bytes(512))
    (normal / "again").symlink_to("..")  # a loop
    return {"archive": archive, "root": root, "shared": shared}


def _reachable_files(root: Path) -> set[str]:
    """Every file path under root as the walk should see it (links followed, loops cut)."""
    out: set[str] = set()
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            dirnames[:] = []
            continue
        seen.add(real)
        for name in list(dirnames):
            target = os.path.realpath(os.path.join(dirpath, name))
            if real == target or real.startswith(target + os.sep):
                dirnames.remove(name)
                out.add(os.path.join(dirpath, name))  # the loop link itself is listed
        out.update(os.path.join(dirpath, f) for f in filenames)
    return out


def test_prepare_accounts_for_every_reachable_file(tmp_path: Path) -> None:
    places = build_archive(tmp_path)
    out = tmp_path / "out"
    manifest = prepare_dataset(
        places["root"],
        PrepareOutputs.under(out),
        DataSettings(val_source="given", min_train_images_per_class=2),
        PRE,
    )
    rejected = pd.read_csv(out / "rejected.csv")
    reasons = dict(
        zip(rejected["path"].map(lambda p: Path(p).name), rejected["reason"], strict=True)
    )
    assert set(manifest["path"]) | set(rejected["path"]) == _reachable_files(places["root"])
    val = manifest[manifest["split"] == "val"]
    assert len(val) == 4 and all("/val/" in p for p in val["path"])
    assert "truncated or padded" in reasons["IM-0900-0001.jpeg"]
    assert "truncated or padded" in reasons["IM-0901-0001.png"]
    assert "link loop" in reasons["again"]
    joined = manifest[manifest["path"].str.endswith("IM-0902-0001.jpeg")]
    assert joined["trailing_bytes"].tolist() == [512]
    assert (manifest.drop(joined.index)["trailing_bytes"] == 0).all()


@pytest.mark.parametrize("kind", ["undecodable DICOM", "padded JPEG"])
def test_nothing_usable_writes_the_rejected_list_then_stops(tmp_path: Path, kind: str) -> None:
    """Was a KeyError: 'source_split' with no rejected.csv."""
    root = tmp_path / "data"
    for i, (split, label) in enumerate(
        (s, c) for s in ("train", "test") for c in ("NORMAL", "PNEUMONIA")
    ):
        path = root / split / label / f"IM-{i:04d}-0001"
        path.parent.mkdir(parents=True, exist_ok=True)
        if kind == "undecodable DICOM":
            _undecodable_dicom(path.with_suffix(".dcm"), i)
        else:
            path.with_suffix(".jpeg").write_bytes(_padded(jpeg_bytes(textured(i, (240, 200)))))
    outputs = PrepareOutputs(
        **{**vars(PrepareOutputs.under(tmp_path / "out")), "rejected_log": tmp_path / "log.csv"}
    )
    with pytest.raises(DataError, match="too little usable data") as info:
        prepare_dataset(root, outputs, DataSettings(), PRE)
    message = str(info.value)
    assert str(root) in message and str(tmp_path / "log.csv") in message
    for target in (outputs.rejected, outputs.rejected_log):
        listed = pd.read_csv(target)
        assert len(listed) == 4
    hint = (
        "cannot decode DICOM pixel data" if kind == "undecodable DICOM" else "truncated or padded"
    )
    assert hint in message and listed["reason"].str.contains(hint, regex=False).all()


def test_too_little_data_in_one_class_leaves_the_list_too(tmp_path: Path) -> None:
    places = build_archive(tmp_path)
    for f in (places["root"] / "test" / "PNEUMONIA").iterdir():
        f.unlink()
    _undecodable_dicom(places["root"] / "test" / "PNEUMONIA" / "person300_virus_1.dcm", 3)
    outputs = PrepareOutputs(
        **{**vars(PrepareOutputs.under(tmp_path / "out")), "rejected_log": tmp_path / "log.csv"}
    )
    with pytest.raises(DataError, match="test/PNEUMONIA: 0 usable") as info:
        prepare_dataset(places["root"], outputs, DataSettings(min_train_images_per_class=2), PRE)
    assert "cannot decode DICOM pixel data" in str(info.value)  # the most frequent reasons, named
    listed = pd.read_csv(tmp_path / "log.csv")
    assert listed["path"].str.endswith("person300_virus_1.dcm").any()


# --------------------------------------------------------------------------- through snakemake


def _overlay(workdir: Path, root: Path, **data: object) -> Path:
    overlay = workdir / "tree.yaml"
    section = {"source": "folder", "root": str(root), "min_train_images_per_class": 2, **data}
    overlay.write_text(yaml.safe_dump({"data": section}))
    return overlay


def test_workflow_on_a_real_looking_tree(workflow_copy: Path, tmp_path: Path) -> None:
    places = build_archive(tmp_path / "cxr{v2}")  # braces: no wildcard to Snakemake
    target = "results/data/manifest.csv"

    # data.root one level too high: refused at DAG build (a dry run already), right folder named
    proc = run_snakemake(
        workflow_copy,
        "-n",
        target,
        "--configfile",
        str(_overlay(workflow_copy, places["archive"])),
        check=False,
    )
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert f"exists at {places['root']}: set data.root to it" in text
    assert "__MACOSX/chest_xray:" not in text and "Traceback" not in text

    # the right root: linked val read, padded files rejected, the loop listed
    run_snakemake(
        workflow_copy,
        "--cores",
        "2",
        target,
        "--configfile",
        str(_overlay(workflow_copy, places["root"], val_source="given")),
    )
    manifest = pd.read_csv(workflow_copy / target)
    rejected = pd.read_csv(workflow_copy / "results/data/rejected.csv")
    assert set(manifest["path"]) | set(rejected["path"]) == _reachable_files(places["root"])
    assert (manifest["split"] == "val").sum() == 4

    # a class of undecodable DICOMs only: the job fails, its rejected list survives in logs/
    for f in (places["root"] / "test" / "NORMAL").iterdir():
        f.unlink()
    for i in range(2):
        _undecodable_dicom(places["root"] / "test" / "NORMAL" / f"IM-07{i:02d}-0001.dcm", i)
    proc = run_snakemake(
        workflow_copy,
        "--cores",
        "2",
        target,
        "--configfile",
        str(_overlay(workflow_copy, places["root"], val_source="given")),
        check=False,
    )
    assert proc.returncode != 0
    assert "test/NORMAL: 0 usable" in (workflow_copy / "logs/prepare_data.log").read_text()
    kept = pd.read_csv(workflow_copy / "logs/prepare_data.rejected.csv")
    dicoms = kept[kept["path"].str.endswith(".dcm")]
    assert (
        len(dicoms) == 2 and dicoms["reason"].str.contains("cannot decode DICOM pixel data").all()
    )
    assert not (workflow_copy / "results/data/rejected.csv").exists()  # snakemake removed it


def test_odd_names_and_entries_do_not_stop_the_stage(tmp_path: Path) -> None:
    """A non-UTF-8 name (old archives), a pipe, a DICOM with text in RescaleSlope: each one
    is a rejected row; the stage still finishes and writes every table."""
    places = build_archive(tmp_path)
    normal = places["root"] / "train" / "NORMAL"
    (normal / "again").unlink()
    good = jpeg_bytes(textured(77))
    with open(os.fsencode(normal) + b"/IM-0077-0001-caf\xe9.jpeg", "wb") as fh:
        fh.write(good)
    os.mkfifo(normal / "IM-0078-0001.jpeg")
    dicom = write_dicom(normal / "IM-0079-0001.dcm", textured(79).astype(np.uint16) * 16)
    import pydicom

    ds = pydicom.dcmread(dicom)
    ds.RescaleSlope = "9.99"
    ds.RescaleIntercept = "0"
    ds.save_as(dicom)
    dicom.write_bytes(dicom.read_bytes().replace(b"9.99", b"1,50"))
    out = tmp_path / "out"
    prepare_dataset(
        places["root"],
        PrepareOutputs.under(out),
        DataSettings(val_source="given", min_train_images_per_class=2),
        PRE,
    )
    rejected = pd.read_csv(out / "rejected.csv").set_index("path")
    reasons = {Path(p).name: r for p, r in rejected["reason"].items()}
    assert "UTF-8" in reasons["IM-0077-0001-caf\\xe9.jpeg"]
    assert "not a regular file" in reasons["IM-0078-0001.jpeg"]
    assert "RescaleSlope" in reasons["IM-0079-0001.dcm"]
