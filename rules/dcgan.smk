# DCGAN baseline: one training job per run writes every snapshot (each is scored by its own
# score_snapshot job, rules/metrics.smk); the sweep table and figures show where training
# degrades.


localrules:
    dcgan_sweep,


rule train_dcgan:
    input:
        cache="results/data/cache/train.npz",
    output:
        # A folder: the snapshot epochs depend on the run's settings (cxrlib.plan.Study.snapshots lists them).
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
        **STUDY.generator_params("dcgan"),
        settings=get_generator_settings("dcgan"),
        label=config["data"]["synthetic_class"],
        out_dir="results/dcgan/{run}",
        # Resume state: not an output, so it survives a failed (killed) job.
        state=get_state_dir("train_dcgan"),
    script:
        "../scripts/train_generator.py"


rule dcgan_sweep:
    input:
        scores=get_sweep_scores("dcgan"),
        train_log="results/dcgan/{run}/train_log.csv",
        grids="results/dcgan/{run}/grids",
        floors="results/metrics/real_reference.csv",
    output:
        sweep=report(
            "results/dcgan/{run}/sweep.csv",
            caption="../report/generator_sweep_table.rst",
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
            caption="../report/generator_grids.rst",
            category="DCGAN",
            subcategory="{run}",
            labels={"run": "{run}", "figure": "fixed-noise samples by epoch"},
        ),
        sweep_plot=report(
            "results/dcgan/{run}/figures/sweep.png",
            caption="../report/generator_sweep.rst",
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
        **STUDY.generator_params("dcgan"),
        metrics=get_sweep_metrics(),
        resolution=get_run_resolution("dcgan"),
        grid_columns=get_grid_columns("dcgan"),
        synthetic=config["data"]["source"] == "phantom",
    script:
        "../scripts/generator_sweep.py"
