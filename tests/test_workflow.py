"""The workflow itself: the data stage run by snakemake on phantom data, and dry runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cxrlib.data.cache import load_split
from tests.conftest import run_snakemake

pytestmark = pytest.mark.slow


def test_data_stage_on_phantoms(workflow_copy: Path) -> None:
    run_snakemake(workflow_copy, "--cores", "2", "--configfile", "tests/config/test.yaml")
    data = workflow_copy / "results" / "data"
    manifest = pd.read_csv(data / "manifest.csv")
    rejected = pd.read_csv(data / "rejected.csv")
    phantom_files = sorted(
        str(p.relative_to(workflow_copy))
        for p in (data / "phantom").rglob("*")
        if p.is_file() and p.name != ".snakemake_timestamp"  # snakemake's marker, not data
    )
    assert sorted([*manifest["path"], *rejected["path"]]) == phantom_files
    # the only non-image is the phantom's README saying it is synthetic
    assert [Path(p).name for p in rejected["path"]] == ["README.txt"]
    expected = {"NORMAL": 24 + 2 + 6, "PNEUMONIA": 24 + 2 + 6}
    assert manifest.groupby("label").size().to_dict() == expected
    assert (manifest["source"] == "phantom").all()
    assert (manifest["patient_id_source"] == "pattern").all()
    # no patient in two splits (the phantom's IDs are disjoint, and the carve is by patient)
    assert (manifest.groupby("patient_id")["split"].nunique() == 1).all()
    assert pd.read_csv(data / "patient_collisions.csv").empty
    for split in ("train", "val", "test"):
        arrays = load_split(data / "cache" / f"{split}.npz")
        rows = manifest[manifest["split"] == split]
        assert arrays.images.shape == (len(rows), 64, 64)
        first = rows.sort_values("cache_index").iloc[0]
        png = np.asarray(Image.open(workflow_copy / first["prepared_path"]))
        assert np.array_equal(png, arrays.images[0])
    record = json.loads((data / "provenance.json").read_text())
    assert record["config"]["preprocess"]["size"] == 64 and record["versions"]["torch"]
    for figure in ("class_counts", "examples", "intensity_histograms"):
        assert Image.open(data / "qc" / f"{figure}.png").size[0] > 200
    for rule in ("make_phantom", "prepare_data", "data_qc"):
        assert (workflow_copy / "logs" / f"{rule}.log").exists()
        assert (workflow_copy / "results" / "benchmarks" / f"{rule}.tsv").exists()
    # nothing left to do: the run is complete and up to date
    again = run_snakemake(
        workflow_copy, "-n", "--cores", "1", "--configfile", "tests/config/test.yaml"
    )
    assert "Nothing to be done" in again.stdout + again.stderr


def test_report_is_generated(workflow_copy: Path) -> None:
    run_snakemake(workflow_copy, "--cores", "2", "--configfile", "tests/config/test.yaml")
    run_snakemake(
        workflow_copy,
        "--cores",
        "1",
        "--configfile",
        "tests/config/test.yaml",
        "--report",
        "results/report.html",
    )
    html = (workflow_copy / "results" / "report.html").read_text(errors="replace")
    assert "phantom" in html and len(html) > 10_000


def test_full_config_dry_run(workflow_copy: Path, tmp_path: Path) -> None:
    """config.yaml as a cluster user runs it: real data folder (empty here), dry run."""
    root = tmp_path / "chest_xray"
    for split in ("train", "test"):
        (root / split / "NORMAL").mkdir(parents=True)
    proc = run_snakemake(workflow_copy, "-n", "--cores", "4", "--config", f"data={{root: {root}}}")
    assert "prepare_data" in proc.stdout and "data_qc" in proc.stdout


def test_missing_data_root_fails_before_any_job_naming_path_and_fix(workflow_copy: Path) -> None:
    proc = run_snakemake(
        workflow_copy, "-n", "--cores", "1", "--config", "data={root: /no/such/folder}", check=False
    )
    assert proc.returncode != 0
    text = proc.stdout + proc.stderr
    assert "/no/such/folder" in text and "data.root" in text and "Kaggle" in text


def test_config_typo_fails_naming_the_key(workflow_copy: Path) -> None:
    (workflow_copy / "typo.yaml").write_text("preprocess:\n  sise: 64\n")
    proc = run_snakemake(
        workflow_copy,
        "-n",
        "--cores",
        "1",
        "--configfile",
        "tests/config/test.yaml",
        "typo.yaml",
        check=False,
    )
    assert proc.returncode != 0
    assert "sise" in proc.stdout + proc.stderr
