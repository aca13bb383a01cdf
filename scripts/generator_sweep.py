"""The sweep of one run of generator params.model: `cxrlib.<model>.jobs.sweep(snakemake)`
(the table with best and collapse marked, and the run's figures)."""

import importlib

from cxrlib.logs import job_logging

with job_logging(snakemake.log[0]):
    importlib.import_module(f"cxrlib.{snakemake.params.model}.jobs").sweep(snakemake)
