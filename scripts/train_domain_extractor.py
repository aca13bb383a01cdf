"""The CXR-domain feature extractor: a classifier trained once on the real training split."""

from pathlib import Path

from cxrlib.classifier.trainer import classifier_settings, train_classifier
from cxrlib.data.cache import load_split
from cxrlib.device import setup_torch
from cxrlib.jobs.survival import attempt_guard, slurm_job_end_time
from cxrlib.logs import job_logging

with job_logging(snakemake.log[0]), attempt_guard(snakemake.params.state):
    inp, out, params = snakemake.input, snakemake.output, snakemake.params
    device = setup_torch(snakemake.threads)
    train, val = load_split(inp.train), load_split(inp.val)
    if train.label_names != val.label_names:
        raise ValueError(f"train classes {train.label_names} differ from val {val.label_names}")
    # Real data only, no augmentation and no early-stopping surprises: a fixed feature space.
    settings = classifier_settings(params.settings)
    train_classifier(
        (train.images, train.labels),
        (val.images, val.labels),
        settings,
        Path(out.model),
        Path(params.state),
        history_path=Path(out.history),
        label_names=train.label_names,
        positive_label=params.positive_label,
        device=device,
        deadline=slurm_job_end_time(),
        contract="domain_extractor",
    )
