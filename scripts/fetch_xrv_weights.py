"""Download torchxrayvision's DenseNet weights (login node: needs internet), check their sha256."""

from cxrlib.logs import job_logging
from cxrlib.weights import XRV_FIX, fetch_weights

with job_logging(snakemake.log[0]):
    params = snakemake.params
    fetch_weights(params.url, snakemake.output[0], params.sha256, fix=XRV_FIX)
