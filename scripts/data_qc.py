"""Data QC figures for the report: class counts, example images, intensity histograms."""

from pathlib import Path

from cxrlib.data.figures import plot_class_counts, plot_examples, plot_histograms
from cxrlib.logs import job_logging

with job_logging(snakemake.log[0]):
    inp, out, params = snakemake.input, snakemake.output, snakemake.params
    synthetic = params.source == "phantom"
    plot_class_counts(Path(inp.class_counts), Path(out.counts), synthetic=synthetic)
    plot_examples(
        [Path(p) for p in inp.cache],
        Path(out.examples),
        params.examples_per_class,
        synthetic=synthetic,
    )
    plot_histograms(
        Path(inp.histograms), Path(out.histograms), params.normalisation, synthetic=synthetic
    )
