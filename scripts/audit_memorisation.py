"""Memorisation audit of one snapshot's samples against the real training images."""

from pathlib import Path

from cxrlib.data.cache import load_split
from cxrlib.device import setup_torch
from cxrlib.logs import job_logging
from cxrlib.memorisation.audit import audit, write_audit
from cxrlib.memorisation.figures import plot_closest_pairs, plot_nearest_distances
from cxrlib.samples import load_samples
from cxrlib.scoring.features import ExtractorSources, make_extractor, real_images
from cxrlib.scoring.features import optional_path as _optional_path
from cxrlib.scoring.fidelity import array_batches, extract_features

with job_logging(snakemake.log[0]):
    inp, out, params = snakemake.input, snakemake.output, snakemake.params
    device = setup_torch(snakemake.threads)
    fakes, _index = load_samples(Path(inp.samples))
    # Real images at the samples' resolution: features and pixels compare like with like.
    reals, paths = real_images(Path(inp.cache), params.label, fakes.shape[1])
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
    extractor = make_extractor(params.extractor, sources, device)
    fake_features = extract_features(extractor, array_batches(fakes), device)
    real_features = extract_features(extractor, array_batches(reals), device)
    split = load_split(inp.cache)
    keep = split.labels == split.label_names.index(params.label)
    settings = params.settings
    result = audit(
        fakes,
        fake_features,
        reals,
        real_features,
        split.patient_ids[keep],
        paths,
        ssim_threshold=settings["ssim_threshold"],
        feature_quantile=settings["feature_quantile"],
    )
    result.summary["extractor"] = params.extractor
    write_audit(result, out.table, out.real_to_real, out.summary)
    plot_nearest_distances(result, Path(out.distances), synthetic=params.synthetic)
    plot_closest_pairs(
        result, fakes, reals, Path(out.pairs), n=settings["pairs_shown"], synthetic=params.synthetic
    )
