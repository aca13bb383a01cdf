"""Features of the real images of one split, at one resolution, in one extractor's space."""

from pathlib import Path

from cxrlib.device import setup_torch
from cxrlib.logs import job_logging
from cxrlib.scoring.features import ExtractorSources, write_real_features
from cxrlib.scoring.features import optional_path as _optional_path

with job_logging(snakemake.log[0]):
    inp, params, wc = snakemake.input, snakemake.params, snakemake.wildcards
    device = setup_torch(snakemake.threads)
    # params.sha256: that of this job's extractor's weights file (inception or xrv)
    sources = ExtractorSources(
        inception_weights=_optional_path(inp, "inception"),
        inception_sha256=params.sha256,
        domain_model=_optional_path(inp, "domain"),
        xrv_weights=_optional_path(inp, "xrv"),
        xrv_sha256=params.sha256,
        swav_weights=_optional_path(inp, "swav"),
        swav_sha256=params.sha256,
    )
    write_real_features(
        Path(inp.cache),
        params.label,
        int(wc.res),
        wc.extractor,
        sources,
        Path(snakemake.output[0]),
        batch_size=params.batch_size,
        device=device,
    )
