# Scoring: weights, the CXR-domain extractor, real features once per extractor/split/resolution,
# the per-snapshot scores of every generator, the memorisation audit and the study-wide summary.


# The fetch rules need internet: on clusters they run where snakemake runs (the login node).
# The summary and the real-to-real floors take seconds (features are computed already).
localrules:
    fetch_weights,
    fetch_classifier_weights,
    fetch_xrv_weights,
    fetch_swav_weights,
    metrics_summary,
    real_reference,
    real_distances,


rule fetch_weights:
    output:
        fetched_inception_weights(),
    log:
        "logs/fetch_weights.log",
    benchmark:
        "results/benchmarks/fetch_weights.tsv"
    conda:
        "../envs/cxr.yaml"
    threads: get_threads("fetch_weights")
    resources:
        **get_resources("fetch_weights"),
    params:
        url=config["metrics"]["inception_url"],
        sha256=config["metrics"]["inception_sha256"],
    script:
        "../scripts/fetch_weights.py"


rule fetch_classifier_weights:
    output:
        "{weights_dir}/imagenet/{arch}.pth".format(
            weights_dir=config["metrics"]["weights_dir"], arch="{arch}"
        ),
    log:
        "logs/fetch_classifier_weights/{arch}.log",
    benchmark:
        "results/benchmarks/fetch_classifier_weights/{arch}.tsv"
    conda:
        "../envs/cxr.yaml"
    threads: get_threads("fetch_classifier_weights")
    resources:
        **get_resources("fetch_classifier_weights"),
    params:
        url=get_imagenet_url,
        sha256=get_imagenet_sha256,
    script:
        "../scripts/fetch_weights.py"


# torchxrayvision's densenet121-res224-all (extractor xrv); the library itself would download
# it at run time, which compute nodes cannot.
rule fetch_xrv_weights:
    output:
        fetched_xrv_weights(),
    log:
        "logs/fetch_xrv_weights.log",
    benchmark:
        "results/benchmarks/fetch_xrv_weights.tsv"
    conda:
        "../envs/cxr.yaml"
    threads: get_threads("fetch_xrv_weights")
    resources:
        **get_resources("fetch_xrv_weights"),
    params:
        url=config["metrics"]["xrv_url"],
        sha256=config["metrics"]["xrv_sha256"],
    script:
        "../scripts/fetch_xrv_weights.py"


# The ImageNet SwAV ResNet-50 checkpoint (extractor swav). Upstream publishes no checksum: the
# rule records the sha256 of what it downloaded beside the file, and the log says how to pin it.
rule fetch_swav_weights:
    output:
        weights=fetched_swav_weights(),
        sha256=fetched_swav_weights() + ".sha256",
    log:
        "logs/fetch_swav_weights.log",
    benchmark:
        "results/benchmarks/fetch_swav_weights.tsv"
    conda:
        "../envs/cxr.yaml"
    threads: get_threads("fetch_swav_weights")
    resources:
        **get_resources("fetch_swav_weights"),
    params:
        url=config["metrics"]["swav_url"],
        sha256=config["metrics"]["swav_sha256"],
    script:
        "../scripts/fetch_swav_weights.py"


rule train_domain_extractor:
    input:
        train="results/data/cache/train.npz",
        val="results/data/cache/val.npz",
    output:
        model="results/metrics/domain_extractor/model.pt",
        history="results/metrics/domain_extractor/history.csv",
    log:
        "logs/train_domain_extractor.log",
    benchmark:
        "results/benchmarks/train_domain_extractor.tsv"
    retries: get_retries("train_domain_extractor")
    conda:
        "../envs/cxr.yaml"
    threads: get_threads("train_domain_extractor")
    resources:
        **get_resources("train_domain_extractor"),
    params:
        settings=get_domain_extractor_settings,
        positive_label=get_positive_label,
        state=get_state_dir("train_domain_extractor"),
    script:
        "../scripts/train_domain_extractor.py"


rule real_features:
    input:
        unpack(get_real_features_inputs),
        cache="results/data/cache/{split}.npz",
    output:
        "results/metrics/real_features/{extractor}/{split}_{res}px.npz",
    log:
        "logs/real_features/{extractor}_{split}_{res}px.log",
    benchmark:
        "results/benchmarks/real_features/{extractor}_{split}_{res}px.tsv"
    conda:
        "../envs/cxr.yaml"
    threads: get_threads("real_features")
    resources:
        **get_resources("real_features"),
    params:
        label=config["data"]["synthetic_class"],
        sha256=get_real_features_sha256,
        batch_size=config["metrics"]["batch_size"],
    script:
        "../scripts/real_features.py"


# Every generator's snapshots are scored alike: one job per snapshot, reusing the real
# features computed once per extractor, split and resolution.
rule score_snapshot:
    input:
        unpack(get_score_inputs),
    output:
        "results/{model}/{run}/scores/{snapshot}.csv",
    log:
        "logs/score_snapshot/{model}_{run}_{snapshot}.log",
    benchmark:
        "results/benchmarks/score_snapshot/{model}_{run}_{snapshot}.tsv"
    conda:
        "../envs/cxr.yaml"
    threads: get_threads("score_snapshot")
    resources:
        **get_resources("score_snapshot"),
    params:
        metrics=get_score_metrics(),
        label=config["data"]["synthetic_class"],
        run=get_run_trajectory,
    script:
        "../scripts/score_snapshot.py"


rule real_reference:
    input:
        unpack(get_real_reference_inputs),
    output:
        table=report(
            "results/metrics/real_reference.csv",
            caption="../report/real_reference.rst",
            category="Data",
            labels={"table": "real-to-real distances (floors)"},
        ),
    log:
        "logs/real_reference.log",
    benchmark:
        "results/benchmarks/real_reference.tsv"
    conda:
        "../envs/cxr.yaml"
    threads: get_threads("real_reference")
    resources:
        **get_resources("real_reference"),
    params:
        features=get_floor_features(),
        metrics=get_reference_settings(),
        label=config["data"]["synthetic_class"],
    script:
        "../scripts/real_reference.py"


rule real_distances:
    input:
        "results/metrics/real_reference.csv",
    output:
        report(
            "results/data/qc/real_distances.png",
            caption="../report/real_distances.rst",
            category="Data",
            labels={"figure": "train / val / test distances"},
        ),
    log:
        "logs/real_distances.log",
    benchmark:
        "results/benchmarks/real_distances.tsv"
    conda:
        "../envs/cxr.yaml"
    threads: get_threads("real_distances")
    resources:
        **get_resources("real_distances"),
    params:
        shift_factor=get_shift_factor(),
        label=config["data"]["synthetic_class"],
        synthetic=config["data"]["source"] == "phantom",
    script:
        "../scripts/real_distances.py"


rule metrics_summary:
    input:
        scores=get_all_scores(),
        floors="results/metrics/real_reference.csv",
    output:
        table=report(
            "results/metrics/summary.csv",
            caption="../report/metrics_summary.rst",
            category="Scoring",
            labels={"table": "all scores (CSV)"},
        ),
        page=report(
            "results/metrics/summary.html",
            caption="../report/metrics_summary.rst",
            category="Scoring",
            labels={"table": "all scores"},
        ),
    log:
        "logs/metrics_summary.log",
    benchmark:
        "results/benchmarks/metrics_summary.tsv"
    conda:
        "../envs/cxr.yaml"
    threads: get_threads("metrics_summary")
    resources:
        **get_resources("metrics_summary"),
    params:
        resolutions=get_run_resolutions(),
        synthetic=config["data"]["source"] == "phantom",
    script:
        "../scripts/metrics_summary.py"


rule audit_memorisation:
    input:
        unpack(get_audit_inputs),
        samples="results/synthetic/{model}/{run}/{snapshot}",
        cache="results/data/cache/train.npz",
    output:
        table="results/metrics/memorisation/{model}/{run}/{snapshot}/nearest.csv",
        real_to_real="results/metrics/memorisation/{model}/{run}/{snapshot}/real_to_real.csv",
        summary="results/metrics/memorisation/{model}/{run}/{snapshot}/summary.json",
        distances=report(
            "results/metrics/memorisation/{model}/{run}/{snapshot}/distances.png",
            caption="../report/memorisation_distances.rst",
            category="Memorisation",
            subcategory="{model}",
            labels={
                "run": "{run}",
                "snapshot": "{snapshot}",
                "figure": "nearest distances",
            },
        ),
        pairs=report(
            "results/metrics/memorisation/{model}/{run}/{snapshot}/closest_pairs.png",
            caption="../report/memorisation_pairs.rst",
            category="Memorisation",
            subcategory="{model}",
            labels={
                "run": "{run}",
                "snapshot": "{snapshot}",
                "figure": "closest pairs",
            },
        ),
    log:
        "logs/audit_memorisation/{model}_{run}_{snapshot}.log",
    benchmark:
        "results/benchmarks/audit_memorisation/{model}_{run}_{snapshot}.tsv"
    conda:
        "../envs/cxr.yaml"
    threads: get_threads("audit_memorisation")
    resources:
        **get_resources("audit_memorisation"),
    params:
        extractor=memorisation_extractor(),
        label=config["data"]["synthetic_class"],
        sha256=extractor_sha256(memorisation_extractor()),
        settings=config["metrics"]["memorisation"],
        synthetic=config["data"]["source"] == "phantom",
    script:
        "../scripts/audit_memorisation.py"
