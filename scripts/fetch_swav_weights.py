"""Download the SwAV ResNet-50 checkpoint (login node: needs internet), check that it reads as
the backbone, and record its sha256 beside it (upstream publishes none)."""

from cxrlib.logs import job_logging
from cxrlib.scoring.swav import fetch_swav_weights

with job_logging(snakemake.log[0]):
    params = snakemake.params
    fetch_swav_weights(params.url, snakemake.output.weights, params.sha256)
