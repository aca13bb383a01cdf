# Does synthetic data help a classifier? Arms x ratios x seeds, each trained and evaluated on the
# real test set, then compared with the real-only arm.


localrules:
    evaluate_classifier,
    compare_classifiers,


rule train_classifier:
    input:
        unpack(get_classifier_inputs),
        train="results/data/cache/train.npz",
        val="results/data/cache/val.npz",
        # predicted once the model is final; training and model selection never see it
        test="results/data/cache/test.npz",
    output:
        model="results/classifier/{arm}/ratio{ratio}/seed{seed}/model.pt",
        history="results/classifier/{arm}/ratio{ratio}/seed{seed}/history.csv",
        composition="results/classifier/{arm}/ratio{ratio}/seed{seed}/train_composition.json",
        predictions="results/classifier/{arm}/ratio{ratio}/seed{seed}/predictions.csv",
    log:
        "logs/train_classifier/{arm}_ratio{ratio}_seed{seed}.log",
    benchmark:
        "results/benchmarks/train_classifier/{arm}_ratio{ratio}_seed{seed}.tsv"
    retries: get_retries("train_classifier")
    conda:
        "../envs/cxr.yaml"
    threads: get_threads("train_classifier")
    resources:
        **get_resources("train_classifier"),
    params:
        settings=get_classifier_settings,
        positive_label=get_positive_label,
        synthetic_class=config["data"]["synthetic_class"],
        state=get_state_dir("train_classifier"),
    script:
        "../scripts/train_classifier.py"


# Metrics with patient-bootstrap CIs from the test predictions: torch-free and seconds long, so
# a local rule (no GPU job for a bootstrap); changing n_boot reruns only this.
rule evaluate_classifier:
    input:
        predictions="results/classifier/{arm}/ratio{ratio}/seed{seed}/predictions.csv",
    output:
        metrics="results/classifier/{arm}/ratio{ratio}/seed{seed}/metrics.csv",
    log:
        "logs/evaluate_classifier/{arm}_ratio{ratio}_seed{seed}.log",
    benchmark:
        "results/benchmarks/evaluate_classifier/{arm}_ratio{ratio}_seed{seed}.tsv"
    conda:
        "../envs/cxr.yaml"
    threads: get_threads("evaluate_classifier")
    resources:
        **get_resources("evaluate_classifier"),
    params:
        n_boot=config["classifier"]["n_boot"],
    script:
        "../scripts/evaluate_classifier.py"


rule compare_classifiers:
    input:
        metrics=get_classifier_runs("metrics.csv"),
        predictions=get_classifier_runs("predictions.csv"),
        compositions=get_classifier_runs("train_composition.json"),
    output:
        summary=report(
            "results/classifier/summary.csv",
            caption="../report/classifier_summary.rst",
            category="Classifier",
            labels={"table": "every model (arm, ratio, seed)"},
        ),
        comparison=report(
            "results/classifier/comparison.csv",
            caption="../report/classifier_comparison.rst",
            category="Classifier",
            labels={"table": "arms against real-only"},
        ),
        roc=report(
            "results/classifier/figures/roc.png",
            caption="../report/classifier_roc.rst",
            category="Classifier",
            labels={"figure": "ROC curves"},
        ),
        vs_ratio=report(
            "results/classifier/figures/auroc_vs_ratio.png",
            caption="../report/classifier_vs_ratio.rst",
            category="Classifier",
            labels={"figure": "AUROC against synthetic ratio"},
        ),
        confusion=report(
            "results/classifier/figures/confusion.png",
            caption="../report/classifier_confusion.rst",
            category="Classifier",
            labels={"figure": "confusion matrices"},
        ),
    log:
        "logs/compare_classifiers.log",
    benchmark:
        "results/benchmarks/compare_classifiers.tsv"
    conda:
        "../envs/cxr.yaml"
    threads: get_threads("compare_classifiers")
    resources:
        **get_resources("compare_classifiers"),
    params:
        n_boot=config["classifier"]["n_boot"],
        # [positive, negative] class (data.positive_class)
        classes=get_class_pair,
        synthetic=config["data"]["source"] == "phantom",
    script:
        "../scripts/compare_classifiers.py"
