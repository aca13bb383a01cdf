"""Download the Inception weights (login node: needs internet) and check their sha256."""

from cxrlib.logs import job_logging
from cxrlib.weights import fetch_weights

with job_logging(snakemake.log[0]):
    fetch_weights(snakemake.params.url, snakemake.output[0], snakemake.params.sha256)
