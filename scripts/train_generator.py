"""Train one run of generator params.model: `cxrlib.<model>.jobs.train(snakemake)`, logged to
the rule's log; a failure a retry cannot fix is recorded in the run's state folder."""

import importlib

from cxrlib.jobs.survival import attempt_guard
from cxrlib.logs import job_logging

with job_logging(snakemake.log[0]), attempt_guard(snakemake.params.state):
    importlib.import_module(f"cxrlib.{snakemake.params.model}.jobs").train(snakemake)
