"""The classifier study's tables and figures: every run, and every arm against real-only."""

from pathlib import Path

import pandas as pd

from cxrlib.classifier.arms import build_comparison, build_summary, run_key
from cxrlib.classifier.figures import plot_confusion, plot_metric_vs_ratio, plot_roc
from cxrlib.io import write_csv
from cxrlib.logs import job_logging

with job_logging(snakemake.log[0]):
    inp, out, params = snakemake.input, snakemake.output, snakemake.params
    summary = build_summary(inp.metrics, inp.compositions)
    write_csv(summary, out.summary)
    comparison = build_comparison(summary, inp.predictions, n_boot=params.n_boot)
    write_csv(comparison, out.comparison)
    # Figures: every seed of every arm and ratio (ROC: each seed and their mean)
    by_arm = {}
    for path in sorted(inp.predictions, key=lambda p: run_key(p)[2]):
        arm, ratio, _seed = run_key(path)
        label = arm if ratio == "0" else f"{arm} (ratio {ratio})"
        by_arm.setdefault(label, []).append(pd.read_csv(path))
    positive, negative = params.classes
    classes = (negative, positive)
    plot_roc(by_arm, Path(out.roc), synthetic=params.synthetic)
    plot_confusion(by_arm, Path(out.confusion), class_names=classes, synthetic=params.synthetic)
    plot_metric_vs_ratio(
        summary.drop(columns="ratio").rename(columns={"ratio_value": "ratio"}),
        Path(out.vs_ratio),
        synthetic=params.synthetic,
    )
