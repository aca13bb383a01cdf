"""FID/KID/precision/recall and diversity of one GAN snapshot, per extractor and real split."""

from pathlib import Path

from cxrlib.device import setup_torch
from cxrlib.io import write_csv
from cxrlib.logs import job_logging
from cxrlib.scoring.features import ExtractorSources
from cxrlib.scoring.features import optional_path as _optional_path
from cxrlib.scoring.score import score_settings, score_snapshot

with job_logging(snakemake.log[0]):
    inp, params, wc = snakemake.input, snakemake.params, snakemake.wildcards
    device = setup_torch(snakemake.threads)
    metrics = params.metrics
    sources = ExtractorSources(
        inception_weights=_optional_path(inp, "inception"),
        inception_sha256=metrics["inception_sha256"],
        domain_model=_optional_path(inp, "domain"),
        xrv_weights=_optional_path(inp, "xrv"),
        xrv_sha256=metrics.get("xrv_sha256", ""),  # a score key only where xrv is enabled
    )
    real = {
        (extractor, split): Path(inp[f"real_{extractor}_{split}"])
        for extractor in metrics["extractors"]
        for split in metrics["references"]
    }
    scores = score_snapshot(
        Path(inp.snapshots) / f"{wc.snapshot}.pt",
        real,
        sources,
        score_settings(metrics),
        label=params.label,
        device=device,
    )
    write_csv(scores, snakemake.output[0])
