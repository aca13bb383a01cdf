# StyleGAN2-ADA: one training job per run writes every snapshot (kimg; each is scored by its own
# score_snapshot job, rules/metrics.smk); the sweep table and figures follow FID, ADA's p and
# the truncation trade-off.


# fetch_pretrained_gan needs internet: on clusters it runs where snakemake runs (the login node).
localrules:
    stylegan2ada_sweep,
    fetch_pretrained_gan,


rule fetch_pretrained_gan:
    output:
        pretrained_gan_path("{name}"),
    log:
        "logs/fetch_pretrained_gan/{name}.log",
    benchmark:
        "results/benchmarks/fetch_pretrained_gan/{name}.tsv"
    conda:
        "../envs/cxr.yaml"
    threads: get_threads("fetch_pretrained_gan")
    resources:
        **get_resources("fetch_pretrained_gan"),
    params:
        url=get_pretrained_url,
        sha256=get_pretrained_sha256,
    script:
        "../scripts/fetch_pretrained_gan.py"


rule train_stylegan2ada:
    input:
        unpack(get_stylegan_train_inputs),
    output:
        # A folder: the snapshot kimgs depend on the run's settings (cxrlib.plan.Study.snapshots lists them).
        snapshots=directory("results/stylegan2ada/{run}/snapshots"),
        log_csv="results/stylegan2ada/{run}/train_log.csv",
        grids=directory("results/stylegan2ada/{run}/grids"),
    log:
        "logs/train_stylegan2ada/{run}.log",
    benchmark:
        "results/benchmarks/train_stylegan2ada/{run}.tsv"
    retries: get_retries("train_stylegan2ada")
    conda:
        "../envs/cxr.yaml"
    threads: get_threads("train_stylegan2ada")
    resources:
        **get_resources("train_stylegan2ada"),
    params:
        **STUDY.generator_params("stylegan2ada"),
        settings=get_generator_settings("stylegan2ada"),
        # checked against the start file in the job: a file not fetched by this config
        start_pin=get_start_pin,
        label=config["data"]["synthetic_class"],
        out_dir="results/stylegan2ada/{run}",
        # Resume state: not an output, so it survives a failed (killed) job.
        state=get_state_dir("train_stylegan2ada"),
    script:
        "../scripts/train_generator.py"


rule stylegan2ada_sweep:
    input:
        scores=get_sweep_scores("stylegan2ada"),
        train_log="results/stylegan2ada/{run}/train_log.csv",
        grids="results/stylegan2ada/{run}/grids",
        floors="results/metrics/real_reference.csv",
        snapshots="results/stylegan2ada/{run}/snapshots",
    output:
        sweep=report(
            "results/stylegan2ada/{run}/sweep.csv",
            caption="../report/generator_sweep_table.rst",
            category="StyleGAN2-ADA",
            subcategory="{run}",
            labels={"run": "{run}", "table": "kimg sweep"},
        ),
        curves=report(
            "results/stylegan2ada/{run}/figures/training_curves.png",
            caption="../report/stylegan2ada_curves.rst",
            category="StyleGAN2-ADA",
            subcategory="{run}",
            labels={"run": "{run}", "figure": "losses and ADA p"},
        ),
        grids=report(
            "results/stylegan2ada/{run}/figures/grids_across_kimg.png",
            caption="../report/generator_grids.rst",
            category="StyleGAN2-ADA",
            subcategory="{run}",
            labels={"run": "{run}", "figure": "fixed-seed samples by kimg"},
        ),
        sweep_plot=report(
            "results/stylegan2ada/{run}/figures/sweep.png",
            caption="../report/generator_sweep.rst",
            category="StyleGAN2-ADA",
            subcategory="{run}",
            labels={
                "run": "{run}",
                "figure": "FID, KID, density, coverage and diversity by kimg",
            },
        ),
        truncation=report(
            "results/stylegan2ada/{run}/figures/truncation.png",
            caption="../report/stylegan2ada_truncation.rst",
            category="StyleGAN2-ADA",
            subcategory="{run}",
            labels={"run": "{run}", "figure": "truncation sweep"},
        ),
    log:
        "logs/stylegan2ada_sweep/{run}.log",
    benchmark:
        "results/benchmarks/stylegan2ada_sweep/{run}.tsv"
    conda:
        "../envs/cxr.yaml"
    threads: get_threads("stylegan2ada_sweep")
    resources:
        **get_resources("stylegan2ada_sweep"),
    params:
        **STUDY.generator_params("stylegan2ada"),
        metrics=get_sweep_metrics(),
        resolution=get_run_resolution("stylegan2ada"),
        grid_columns=get_grid_columns("stylegan2ada"),
        ada_target=get_ada_target,
        psis=config["stylegan2ada"]["truncation_psis"],
        synthetic=config["data"]["source"] == "phantom",
    script:
        "../scripts/generator_sweep.py"
