"""Generate the synthetic phantom data set (data.source: phantom)."""

from pathlib import Path

from cxrlib.data.phantom import make_phantom_dataset
from cxrlib.data.settings import phantom_spec
from cxrlib.logs import job_logging

with job_logging(snakemake.log[0]):
    make_phantom_dataset(
        Path(snakemake.output[0]), phantom_spec(snakemake.params.phantom), workers=snakemake.threads
    )
