"""Train one classifier (arm, ratio, seed): real images, plus synthetic ones in GAN arms; then
predict the real test set with the final model."""

from pathlib import Path

from cxrlib.classifier.mixing import mix_training_set
from cxrlib.classifier.trainer import classifier_settings, evaluate_split, train_classifier
from cxrlib.data.cache import load_split
from cxrlib.device import setup_torch
from cxrlib.io import write_csv, write_json
from cxrlib.jobs.survival import attempt_guard, slurm_job_end_time
from cxrlib.logs import job_logging

with job_logging(snakemake.log[0]), attempt_guard(snakemake.params.state):
    inp, out, params = snakemake.input, snakemake.output, snakemake.params
    device = setup_torch(snakemake.threads)
    train, val = load_split(inp.train), load_split(inp.val)
    synthetic = getattr(inp, "synthetic", None)
    images, labels, composition = mix_training_set(
        train,
        params.settings["added"],
        params.settings["ratio"],
        params.synthetic_class,
        seed=int(snakemake.wildcards.seed),
        samples_dir=Path(synthetic) if synthetic else None,
    )
    write_json(composition, out.composition)
    train_classifier(
        (images, labels),
        (val.images, val.labels),
        classifier_settings(params.settings["settings"]),
        Path(out.model),
        Path(params.state),
        history_path=Path(out.history),
        label_names=train.label_names,
        positive_label=params.positive_label,
        device=device,
        deadline=slurm_job_end_time(),
    )
    write_csv(evaluate_split(Path(out.model), load_split(inp.test), device), out.predictions)
