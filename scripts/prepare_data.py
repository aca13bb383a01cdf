"""Check, split and prepare every image under the data root."""

from pathlib import Path

from cxrlib.data.prepare import PrepareOutputs, prepare_dataset
from cxrlib.data.settings import data_settings, preprocess_settings
from cxrlib.logs import job_logging
from cxrlib.provenance import write_provenance

with job_logging(snakemake.log[0]):
    out = snakemake.output
    prepare_dataset(
        Path(snakemake.params.root),
        PrepareOutputs(
            manifest=Path(out.manifest),
            rejected=Path(out.rejected),
            class_counts=Path(out.class_counts),
            collisions=Path(out.collisions),
            histograms=Path(out.histograms),
            prepared_dir=Path(out.prepared),
            cache_dir=Path(out.cache[0]).parent,
            rejected_log=Path(snakemake.log.rejected),
        ),
        data_settings(snakemake.params.data),
        preprocess_settings(snakemake.params.preprocess),
        threads=snakemake.threads,
    )
    params = snakemake.params
    write_provenance(
        out.provenance,
        {"data": params.data, "preprocess": params.preprocess},
        seed=params.data["split_seed"],
    )
