"""Predictions of one classifier on the real test set, and its metrics with patient-level CIs."""

from pathlib import Path

from cxrlib.data.cache import load_split
from cxrlib.device import setup_torch
from cxrlib.io import write_csv
from cxrlib.logs import job_logging
from cxrlib.metrics.classification import metrics_table
from cxrlib.train.classifier import evaluate_split

with job_logging(snakemake.log[0]):
    inp, out = snakemake.input, snakemake.output
    device = setup_torch(snakemake.threads)
    predictions = evaluate_split(Path(inp.model), load_split(inp.test), device)
    write_csv(predictions, out.predictions)
    table = metrics_table(
        predictions.y_true,
        predictions.score,
        predictions.patient_id,
        n_boot=snakemake.params.n_boot,
        seed=int(snakemake.wildcards.seed),
    )
    write_csv(table, out.metrics)
