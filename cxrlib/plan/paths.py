"""Where the study's results go: every path the rules, the input functions and the library agree
on, written once. Templates take `str.format` fields named like the rules' wildcards."""

from __future__ import annotations

# data
MANIFEST = "results/data/manifest.csv"
CLASS_COUNTS = "results/data/class_counts.csv"
REJECTED = "results/data/rejected.csv"
CACHE = "results/data/cache/{split}.npz"
PHANTOM_ROOT = "results/data/phantom"
DATA_QC = "results/data/qc/{figure}.png"

# generators: one folder per run
RUN_DIR = "results/{model}/{run}"
SNAPSHOTS = "results/{model}/{run}/snapshots"
SCORES = "results/{model}/{run}/scores/{snapshot}.csv"
SWEEP = "results/{model}/{run}/sweep.csv"
STATE = "results/{model}/{run}/state"
SAMPLES = "results/synthetic/{model}/{run}/{snapshot}"
AUDIT = "results/metrics/memorisation/{model}/{run}/{snapshot}/summary.json"

# scoring
REAL_FEATURES = "results/metrics/real_features/{extractor}/{split}_{res}px.npz"
DOMAIN_MODEL = "results/metrics/domain_extractor/model.pt"
DOMAIN_STATE = "results/metrics/domain_extractor/state"
SUMMARY = "results/metrics/summary.csv"
REAL_REFERENCE = "results/metrics/real_reference.csv"
REAL_DISTANCES = "results/data/qc/real_distances.png"

# classifier
CLASSIFIER_RUN = "results/classifier/{arm}/ratio{ratio}/seed{seed}"
COMPARISON = "results/classifier/comparison.csv"

# report
HEADLINE_PAGE = "results/report/workflow.rst"
REPORT = "results/report.html"
RUNTIME_FIGURE = "results/benchmarks/runtime_by_rule.png"

# Resume state of the classifier stage's training rules' runs, in an undeclared folder that
# survives a failed job (a rule's `params.state`), as wildcard templates of the rule; each
# generator's `train_<model>` rule keeps it in STATE (Study.state_template).
STATE_DIRS = {
    "train_classifier": "results/classifier/{arm}/ratio{ratio}/seed{seed}/state",
    "train_domain_extractor": DOMAIN_STATE,
}
