# Report pages built from the other stages' results: per-rule runtimes.


localrules:
    runtime_report,


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
    params:
        synthetic=config["data"]["source"] == "phantom",
    script:
        "../scripts/runtime_report.py"
