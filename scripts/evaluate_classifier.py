"""Metrics of one classifier on the real test set, with patient-level bootstrap CIs."""

import pandas as pd

from cxrlib.classifier.metrics import metrics_table
from cxrlib.io import write_csv
from cxrlib.logs import job_logging

with job_logging(snakemake.log[0]):
    predictions = pd.read_csv(snakemake.input.predictions, dtype={"patient_id": str})
    table = metrics_table(
        predictions.y_true,
        predictions.score,
        predictions.patient_id,
        n_boot=snakemake.params.n_boot,
        seed=int(snakemake.wildcards.seed),
    )
    write_csv(table, snakemake.output.metrics)
