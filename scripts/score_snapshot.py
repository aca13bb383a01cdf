"""FID/KID/precision/recall and diversity of one GAN snapshot, per extractor and real split."""

from pathlib import Path

from cxrlib.data.cache import load_split
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
        swav_weights=_optional_path(inp, "swav"),
        swav_sha256=metrics.get("swav_sha256", ""),  # likewise
    )
    real = {
        (extractor, split): Path(inp[f"real_{extractor}_{split}"])
        for extractor in metrics["extractors"]
        for split in metrics["references"]
    }
    # patient ids of the train reference's rows (real_images: the class's rows in cache order)
    train = load_split(Path(inp.train_cache))
    train_patients = train.patient_ids[train.labels == train.label_names.index(params.label)]
    scores = score_snapshot(
        Path(inp.snapshots) / f"{wc.snapshot}.pt",
        real,
        sources,
        score_settings(metrics),
        label=params.label,
        device=device,
        train_patients=train_patients,
        near_copy_quantile=metrics["near_copy_quantile"],
    )
    write_csv(scores, snakemake.output[0])
