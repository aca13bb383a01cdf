"""Counts that one stage sets and another needs: consistent by construction, not after hours.

The example that failed at the end of a real run: the `real_dcgan` arm at ratio `balance`
needed 2,257 synthetic NORMAL images (1,206 real NORMAL, 3,463 PNEUMONIA after the carve) but
`samples.n_images` had been lowered to 1,000. Sampling now writes what the arms draw.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cxrlib.classifier.mixing import resolve_ratio, synthetic_needed
from cxrlib.classifier.trainer import add_synthetic
from cxrlib.samples import samples_for_arms
from tests.conftest import run_snakemake


@pytest.mark.parametrize(
    ("normal", "pneumonia"), [(1206, 3463), (1341, 3875), (10, 30), (7, 7), (30, 10)]
)
@pytest.mark.parametrize("ratio", ["0.5", "1.0", "balance", 2])
def test_needed_is_exactly_what_the_arm_draws(normal: int, pneumonia: int, ratio) -> None:
    labels = np.array([0] * normal + [1] * pneumonia)
    real = (np.zeros((len(labels), 2, 2), np.uint8), labels)
    (need,) = synthetic_needed(
        {"NORMAL": normal, "PNEUMONIA": pneumonia}, "NORMAL", [ratio]
    ).values()
    value = resolve_ratio(ratio, labels, 0)
    pool = np.zeros((need, 2, 2), np.uint8)
    images, _ = add_synthetic(real, ["NORMAL", "PNEUMONIA"], (pool, ["NORMAL"] * need), value)
    assert len(images) == len(labels) + need  # exactly enough
    if need:
        with pytest.raises(ValueError, match="only"):
            add_synthetic(real, ["NORMAL", "PNEUMONIA"], (pool[1:], ["NORMAL"] * (need - 1)), value)


def test_the_failed_runs_numbers(tmp_path: Path, caplog) -> None:
    counts = tmp_path / "class_counts.csv"
    pd.DataFrame(
        {
            "split": ["train", "train", "test", "test"],
            "label": ["NORMAL", "PNEUMONIA", "NORMAL", "PNEUMONIA"],
            "n_images": [1206, 3463, 234, 390],
            "n_patients": [1, 1, 1, 1],
        }
    ).to_csv(counts, index=False)
    with caplog.at_level(logging.WARNING):
        n = samples_for_arms(1000, counts, "NORMAL", ["0.5", "1.0", "balance"])
    assert n == 2257
    assert "samples.n_images 1000 raised to 2257" in caplog.text and "balance" in caplog.text
    assert samples_for_arms(3000, counts, "NORMAL", ["0.5", "balance"]) == 3000
    assert samples_for_arms(10, counts, "NORMAL", []) == 10  # no arm draws from them
    with pytest.raises(KeyError, match="COVID"):
        samples_for_arms(10, counts, "COVID", ["balance"])


def test_balance_arm_runs_with_few_samples_configured(workflow_copy: Path) -> None:
    """Through snakemake: 10 NORMAL vs 30 PNEUMONIA, samples.n_images 4, ratio balance."""
    overlay = workflow_copy / "imbalanced.yaml"
    overlay.write_text(
        "data:\n  phantom:\n    counts:\n"
        "      train: {NORMAL: 10, PNEUMONIA: 30}\n"
        "      val: {NORMAL: 2, PNEUMONIA: 2}\n"
        "      test: {NORMAL: 4, PNEUMONIA: 4}\n"
        "samples:\n  n_images: 4\n"
        "dcgan:\n  use_snapshot: epoch0004\n"
        "classifier:\n  models: [dcgan]\n  ratios: [balance]\n  seeds: [0]\n"
    )
    arm = "results/classifier/real_dcgan/ratiobalance/seed0"
    run_snakemake(
        workflow_copy,
        "--cores",
        "2",
        f"{arm}/model.pt",
        "--configfile",
        "tests/config/test.yaml",
        str(overlay),
    )
    composition = json.loads((workflow_copy / arm / "train_composition.json").read_text())
    counts = pd.read_csv(workflow_copy / "results/data/class_counts.csv")
    train = counts[counts["split"] == "train"].set_index("label")["n_images"]
    assert composition["synthetic_added"] == train["PNEUMONIA"] - train["NORMAL"] > 4
    index = pd.read_csv(workflow_copy / "results/synthetic/dcgan/baseline/epoch0004/index.csv")
    assert len(index) == composition["synthetic_added"]
    log = (workflow_copy / "logs/generate_samples/dcgan_baseline_epoch0004.log").read_text()
    assert "samples.n_images 4 raised to" in log
