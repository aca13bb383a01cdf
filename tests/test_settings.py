"""The DAG builds without torch: settings, names and hashes the workflow reads at DAG build live
in torch-free modules (each stage's settings.py, cxrlib.weights), so `snakemake -n` on a login
node and each cluster job's own snakemake start in seconds, not the ~10 s of importing torch,
torchvision and scikit-learn."""

from __future__ import annotations

from pathlib import Path

import pytest

from cxrlib.classifier.networks import ARCHS
from cxrlib.classifier.settings import ARCH_NAMES
from cxrlib.jobs.resume import ResumeRefused, check_resume
from cxrlib.stylegan2ada.settings import RESUME_CONTRACT, stylegan_settings
from tests.conftest import ROOT, run_snakemake

HEAVY = ("torch", "torchvision", "torch_fidelity", "torchxrayvision", "sklearn")


def test_the_whole_study_dry_runs_with_the_heavy_libraries_unimportable(
    workflow_copy: Path, tmp_path: Path
) -> None:
    """A dry run of the study, with every extractor, ImageNet classifier weights and both
    GANs, where importing torch, torchvision, torch-fidelity or scikit-learn raises."""
    shadow = tmp_path / "shadow"
    for name in HEAVY:
        (shadow / name).mkdir(parents=True)
        (shadow / name / "__init__.py").write_text(
            f"raise ImportError('{name} imported while building the DAG')\n"
        )
    (workflow_copy / "everything.yaml").write_text(
        "metrics:\n"
        "  extractors: [inception, cxr, xrv, swav]\n"
        "  weights_dir: resources/weights\n"
        "classifier:\n  settings:\n    weights: imagenet\n"
    )
    proc = run_snakemake(
        workflow_copy, "-n", "--cores", "2", "--configfile", "tests/config/test.yaml",
        "everything.yaml", env={"PYTHONPATH": f"{shadow}:{ROOT}"},
    )  # fmt: skip
    out = proc.stdout + proc.stderr
    for rule in ("fetch_weights", "fetch_xrv_weights", "fetch_swav_weights",
                 "fetch_classifier_weights", "train_stylegan2ada", "score_snapshot",
                 "train_classifier"):  # fmt: skip
        assert rule in out, rule
    assert "imported while building the DAG" not in out


def test_the_torch_free_arch_names_are_the_models_that_can_be_built() -> None:
    assert set(ARCH_NAMES) == set(ARCHS)


def test_resume_from_is_a_path_or_null() -> None:
    assert stylegan_settings({}).resume_from is None
    assert stylegan_settings({"resume_from": "nets/ffhq.pkl"}).resume_from == "nets/ffhq.pkl"
    for bad in ("", 3, True, ["a.pkl"]):
        with pytest.raises(ValueError, match="resume_from must be a file path or null"):
            stylegan_settings({"resume_from": bad})


def test_a_state_saved_before_resume_from_existed_continues_and_a_new_start_is_refused(
    tmp_path: Path,
) -> None:
    """States saved before the key existed lack it: their absence means null, so they resume
    unchanged; starting that run from a file now would change its trajectory: refused."""
    contract = RESUME_CONTRACT
    settings = stylegan_settings({}).to_dict()
    old = {k: v for k, v in settings.items() if k != "resume_from"}
    saved = {"settings": old, "done": 1.0}
    check_resume(contract, saved, {"settings": settings}, tmp_path)
    with pytest.raises(ResumeRefused, match=r'resume_from: null -> "ffhq.pkl"'):
        check_resume(
            contract, saved, {"settings": {**settings, "resume_from": "ffhq.pkl"}}, tmp_path
        )
