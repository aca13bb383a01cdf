"""Transfer learning through the workflow: a StyleGAN2-ADA run starts from a network pickle in
the official format, fetched by the local rule fetch_pretrained_gan, read without running the
file's code, and its kimg-0 snapshot is exactly the imported generator."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from cxrlib.models.official import import_official
from cxrlib.models.snapshot import read_snapshot
from cxrlib.settings.stylegan2ada import stylegan_settings
from tests import official_format as off
from tests.conftest import run_snakemake

pytestmark = pytest.mark.slow
TEST_CONFIG = ("--configfile", "tests/config/test.yaml")
# tests/config/test.yaml's StyleGAN2-ADA sizes, in the official constructors' terms
SIZES = {"resolution": 32, "channel_base": 512, "channel_max": 32}


def _official_rgb_pickle(path: Path, marker: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An RGB network pickle in the official format, sized for the test study's 1-channel run."""
    off.install(monkeypatch, marker)
    g = off.official_generator(img_channels=3, z_dim=32, w_dim=32, mapping_layers=2, **SIZES)
    d = off.official_discriminator(img_channels=3, mbstd_group=4, **SIZES)
    return off.write_official_pickle(path, G=g, G_ema=g, D=d)


def test_a_run_starts_from_a_fetched_official_pickle(
    workflow_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "module_src_ran"
    published = _official_rgb_pickle(tmp_path / "net.pkl", marker, monkeypatch)
    (workflow_copy / "transfer.yaml").write_text(
        "stylegan2ada:\n"
        "  pretrained:\n"
        f"    tiny: {{url: {published.as_uri()}}}\n"  # no sha256: fetched, logged, to pin
        "  runs:\n"
        "    ada: {resume_from: tiny}\n"
        "metrics:\n  weights_dir: resources/weights\n"
    )
    target = "results/stylegan2ada/ada/train_log.csv"
    run_snakemake(workflow_copy, target, "--cores", "2", *TEST_CONFIG, "transfer.yaml")

    fetched = workflow_copy / "resources/weights/stylegan2ada/tiny.pkl"
    assert fetched.read_bytes() == published.read_bytes()
    digest = hashlib.sha256(published.read_bytes()).hexdigest()
    fetch_log = (workflow_copy / "logs/fetch_pretrained_gan/tiny.log").read_text()
    assert f"sha256: {digest}" in fetch_log  # the config line that pins it
    assert not marker.exists(), "the pickle's module_src was run"

    log = (workflow_copy / "logs/train_stylegan2ada/ada.log").read_text()
    assert "official networks from tiny.pkl" in log and "starting from" in log
    assert "luminance" in log.lower() or "luma" in log.lower()  # RGB -> gray, said
    # the run's initial generator (kimg 0) is the imported G_ema, exactly
    settings = stylegan_settings(
        {"preset": "auto", "resolution": 32, "batch_size": 4, "channel_base": 512,
         "channel_max": 32, "mapping_layers": 2, "z_dim": 32, "w_dim": 32}
    )  # fmt: skip
    want = import_official(fetched, settings.generator_kwargs(), settings.discriminator_kwargs())
    snap = read_snapshot(workflow_copy / "results/stylegan2ada/ada/snapshots/kimg000000.pt")
    got = snap["generator"]
    assert set(got) == set(want.G_ema)
    assert all(torch.equal(got[k], want.G_ema[k]) for k in got)

    # Starting that run from another file now would change its trajectory: refused at DAG
    # build, naming the key, before any job runs.
    other = workflow_copy / "other.yaml"
    other.write_text("stylegan2ada:\n  runs:\n    ada: {resume_from: null}\n")
    proc = run_snakemake(
        workflow_copy, "-n", target, "--cores", "1", *TEST_CONFIG, "transfer.yaml",
        "other.yaml", check=False,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "resume_from" in proc.stdout + proc.stderr


def test_a_missing_start_file_fails_at_dag_build_naming_it(workflow_copy: Path) -> None:
    (workflow_copy / "missing.yaml").write_text(
        "stylegan2ada:\n  runs:\n    ada: {resume_from: nets/nothere.pkl}\n"
    )
    proc = run_snakemake(
        workflow_copy, "-n", "--cores", "1", *TEST_CONFIG, "missing.yaml", check=False
    )
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "resume_from nets/nothere.pkl is neither a file nor a name in" in text
