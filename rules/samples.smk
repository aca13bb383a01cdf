# Synthetic images of a chosen snapshot: PNGs plus an index, reused by the memorisation audit
# and by every classifier arm that adds synthetic data.


rule generate_samples:
    input:
        unpack(get_sample_inputs),
        # the classifier arms' ratios ("balance") need the real class counts
        class_counts="results/data/class_counts.csv",
    output:
        directory("results/synthetic/{model}/{run}/{snapshot}"),
    log:
        "logs/generate_samples/{model}_{run}_{snapshot}.log",
    benchmark:
        "results/benchmarks/generate_samples/{model}_{run}_{snapshot}.tsv"
    conda:
        "../envs/cxr.yaml"
    threads: get_threads("generate_samples")
    resources:
        **get_resources("generate_samples"),
    params:
        samples=config["samples"],
        label=config["data"]["synthetic_class"],
        # "best" = lowest FID against the real training images in the first extractor's space.
        extractor=config["metrics"]["extractors"][0],
        # the arms that draw from these samples: enough are written for every ratio
        arm_ratios=get_sample_ratios,
    script:
        "../scripts/generate_samples.py"
