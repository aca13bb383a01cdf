# Data: synthetic phantoms (demo/tests), checking and preparing every image, data QC figures.


# Plots take seconds: on a cluster they run on the login node instead of waiting in the queue.
localrules:
    data_qc,


rule make_phantom:
    output:
        directory("results/data/phantom"),
    log:
        "logs/make_phantom.log",
    benchmark:
        "results/benchmarks/make_phantom.tsv"
    conda:
        "../envs/cxr.yaml"
    threads: get_threads("make_phantom")
    resources:
        **get_resources("make_phantom"),
    params:
        phantom=config["data"]["phantom"],
    script:
        "../scripts/make_phantom.py"


# data.root checked while the Snakefile is read: a clean error, naming the fix, before any
# job is planned (its tree is hashed only when prepare_data is planned).
get_data_root()


rule prepare_data:
    input:
        # the phantom folder when generated; a data.root of one's own is read through params
        # (Snakemake takes braces in an input path for wildcards; the tree parameter below
        # reruns the job when any file in it changes)
        unpack(get_data_root_input),
    output:
        manifest="results/data/manifest.csv",
        rejected=report(
            "results/data/rejected.csv",
            caption="../report/data_rejected.rst",
            category="Data",
            labels={"table": "rejected files"},
        ),
        class_counts=report(
            "results/data/class_counts.csv",
            caption="../report/data_class_counts_table.rst",
            category="Data",
            labels={"table": "class counts"},
        ),
        collisions=report(
            "results/data/patient_collisions.csv",
            caption="../report/data_collisions.rst",
            category="Data",
            labels={"table": "patient ID collisions"},
        ),
        histograms="results/data/qc/intensity_histograms.csv",
        prepared=directory("results/data/prepared"),
        cache=expand("results/data/cache/{split}.npz", split=SPLITS),
        provenance="results/data/provenance.json",
    log:
        "logs/prepare_data.log",
        # rejected.csv again: a failed job's outputs are deleted, its logs kept
        rejected="logs/prepare_data.rejected.csv",
    benchmark:
        "results/benchmarks/prepare_data.tsv"
    conda:
        "../envs/cxr.yaml"
    threads: get_threads("prepare_data")
    resources:
        **get_resources("prepare_data"),
    params:
        root=lambda wildcards: get_data_root(),  # a function's value is not formatted
        data=config["data"],
        preprocess=config["preprocess"],
        # hashed when this job is planned, not each time the Snakefile is read (every
        # cluster job reads it again)
        tree=get_data_tree_signature,
    script:
        "../scripts/prepare_data.py"


rule data_qc:
    input:
        manifest="results/data/manifest.csv",
        class_counts="results/data/class_counts.csv",
        histograms="results/data/qc/intensity_histograms.csv",
        cache=expand("results/data/cache/{split}.npz", split=SPLITS),
    output:
        counts=report(
            "results/data/qc/class_counts.png",
            caption="../report/data_class_counts.rst",
            category="Data",
            labels={"figure": "class counts"},
        ),
        examples=report(
            "results/data/qc/examples.png",
            caption="../report/data_examples.rst",
            category="Data",
            labels={"figure": "example images"},
        ),
        histograms=report(
            "results/data/qc/intensity_histograms.png",
            caption="../report/data_histograms.rst",
            category="Data",
            labels={"figure": "intensity histograms"},
        ),
    log:
        "logs/data_qc.log",
    benchmark:
        "results/benchmarks/data_qc.tsv"
    conda:
        "../envs/cxr.yaml"
    threads: get_threads("data_qc")
    resources:
        **get_resources("data_qc"),
    params:
        examples_per_class=config["report"]["examples_per_class"],
        source=config["data"]["source"],
        normalisation=config["preprocess"]["normalisation"],
    script:
        "../scripts/data_qc.py"
