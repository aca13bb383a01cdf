# Report pages built from the other stages' results: per-rule runtimes and the front page
# with the headline results (report/workflow.rst plus numbers from the result tables).


localrules:
    runtime_report,
    headline,


rule runtime_report:
    input:
        # After everything else, so every benchmark file is there.
        get_study_outputs(),
    output:
        table=report(
            "results/benchmarks/runtime_by_rule.csv",
            caption="../report/runtime_table.rst",
            category="Runtime",
            labels={"table": "runtime per rule"},
        ),
        figure=report(
            "results/benchmarks/runtime_by_rule.png",
            caption="../report/runtime_figure.rst",
            category="Runtime",
            labels={"figure": "runtime per rule"},
        ),
    log:
        "logs/runtime_report.log",
    benchmark:
        "results/benchmarks/runtime_report.tsv"
    conda:
        "../envs/cxr.yaml"
    threads: get_threads("runtime_report")
    resources:
        **get_resources("runtime_report"),
    params:
        synthetic=config["data"]["source"] == "phantom",
    script:
        "../scripts/runtime_report.py"


rule headline:
    input:
        unpack(get_headline_inputs),
        template="report/workflow.rst",
        class_counts="results/data/class_counts.csv",
        rejected="results/data/rejected.csv",
        runtime="results/benchmarks/runtime_by_rule.csv",
        # the summary figure's real rows
        train_cache="results/data/cache/train.npz",
        test_cache="results/data/cache/test.npz",
    output:
        page=HEADLINE_PAGE,
        record="results/report/headline.json",
        figure=report(
            "results/report/summary.png",
            caption="../report/headline_summary.rst",
            category="Headline tables",
            labels={"page": "summary figure"},
        ),
        models=report(
            "results/report/models.html",
            caption="../report/headline_models.rst",
            category="Headline tables",
            labels={"page": "best snapshot per GAN run"},
        ),
        classifier=report(
            "results/report/classifier.html",
            caption="../report/headline_classifier.rst",
            category="Headline tables",
            labels={"page": "classifier arms against real-only"},
        ),
    log:
        "logs/headline.log",
    benchmark:
        "results/benchmarks/headline.tsv"
    conda:
        "../envs/cxr.yaml"
    threads: get_threads("headline")
    resources:
        **get_resources("headline"),
    params:
        shift_factor=get_shift_factor(),
        phantom_test_shift=(
            config["data"]["phantom"]["test_shift"]
            if config["data"]["source"] == "phantom"
            else 0.0
        ),
        label=config["data"]["synthetic_class"],
        arch=config["classifier"]["settings"].get("arch", "resnet50"),
        use_snapshot=get_use_snapshots(),
        classes=get_class_pair,
        synthetic=config["data"]["source"] == "phantom",
    script:
        "../scripts/headline.py"
