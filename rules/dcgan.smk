# DCGAN baseline: one training job per run writes every snapshot; each snapshot is scored by its
# own job; the sweep table and figures show where training degrades.


localrules:
    dcgan_sweep,


rule train_dcgan:
    input:
        cache="results/data/cache/train.npz",
    output:
        # A folder: the snapshot epochs depend on the run's settings (get_snapshots lists them).
        snapshots=directory("results/dcgan/{run}/snapshots"),
        log_csv="results/dcgan/{run}/train_log.csv",
        grids=directory("results/dcgan/{run}/grids"),
    log:
        "logs/train_dcgan/{run}.log",
    benchmark:
        "results/benchmarks/train_dcgan/{run}.tsv"
    retries: get_retries("train_dcgan")
    conda:
        "../envs/cxr.yaml"
    threads: get_threads("train_dcgan")
    resources:
        **get_resources("train_dcgan"),
    params:
        settings=get_dcgan_settings,
        label=config["data"]["synthetic_class"],
        out_dir="results/dcgan/{run}",
        # Resume state: not an output, so it survives a failed (killed) job.
        state=STATE_DIRS["train_dcgan"],
    script:
        "../scripts/train_dcgan.py"


rule score_dcgan:
    input:
        unpack(get_dcgan_score_inputs),
    output:
        "results/dcgan/{run}/scores/{snapshot}.csv",
    log:
        "logs/score_dcgan/{run}_{snapshot}.log",
    benchmark:
        "results/benchmarks/score_dcgan/{run}_{snapshot}.tsv"
    conda:
        "../envs/cxr.yaml"
    threads: get_threads("score_dcgan")
    resources:
        **get_resources("score_dcgan"),
    params:
        metrics=get_score_metrics(),
        label=config["data"]["synthetic_class"],
    script:
        "../scripts/score_snapshot.py"


rule dcgan_sweep:
    input:
        scores=get_dcgan_sweep_scores,
        train_log="results/dcgan/{run}/train_log.csv",
        grids="results/dcgan/{run}/grids",
        floors="results/metrics/real_reference.csv",
    output:
        sweep=report(
            "results/dcgan/{run}/sweep.csv",
            caption="../report/dcgan_sweep_table.rst",
            category="DCGAN",
            subcategory="{run}",
            labels={"run": "{run}", "table": "epoch sweep"},
        ),
        curves=report(
            "results/dcgan/{run}/figures/training_curves.png",
            caption="../report/dcgan_curves.rst",
            category="DCGAN",
            subcategory="{run}",
            labels={"run": "{run}", "figure": "losses and D outputs"},
        ),
        grids=report(
            "results/dcgan/{run}/figures/grids_across_epochs.png",
            caption="../report/dcgan_grids.rst",
            category="DCGAN",
            subcategory="{run}",
            labels={"run": "{run}", "figure": "fixed-noise samples by epoch"},
        ),
        sweep_plot=report(
            "results/dcgan/{run}/figures/sweep.png",
            caption="../report/dcgan_sweep.rst",
            category="DCGAN",
            subcategory="{run}",
            labels={
                "run": "{run}",
                "figure": "FID, KID, density, coverage and diversity by epoch",
            },
        ),
    log:
        "logs/dcgan_sweep/{run}.log",
    benchmark:
        "results/benchmarks/dcgan_sweep/{run}.tsv"
    conda:
        "../envs/cxr.yaml"
    threads: get_threads("dcgan_sweep")
    resources:
        **get_resources("dcgan_sweep"),
    params:
        metrics=get_sweep_metrics(),
        resolution=get_dcgan_resolution,
        synthetic=config["data"]["source"] == "phantom",
    script:
        "../scripts/dcgan_sweep.py"
