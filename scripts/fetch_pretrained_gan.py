"""Download a published GAN network for transfer learning (login node: needs internet)."""

from cxrlib.logs import job_logging
from cxrlib.stylegan2ada.pretrained import fetch_pretrained

with job_logging(snakemake.log[0]):
    fetch_pretrained(
        snakemake.wildcards.name, snakemake.params.url, snakemake.output[0], snakemake.params.sha256
    )
