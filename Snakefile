# The chest X-ray GAN study: preprocessing, GAN training and sweeps, scoring, classification.
# A table of contents: the stages live in rules/*.smk, the logic in cxrlib/.


from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version, validate

from cxrlib.plan import PlanError
from cxrlib.plan.config import normalise_file

min_version("9.0")


configfile: "config.yaml"


# YAML 1.1's surprises (3e-4 read as text, off as false) undone or named, ~ expanded in paths
# (cxrlib/plan/config.py); then the schema checks every key and fills the defaults.
try:
    normalise_file(config, Path(workflow.basedir) / "schemas/config.schema.yaml")
except PlanError as exc:
    raise WorkflowError(str(exc)) from None
validate(config, "schemas/config.schema.yaml")


include: "rules/common.smk"


# The study description, with the headline results once the `headline` rule has written them.
report: get_report_text()


wildcard_constraints:
    split="|".join(SPLITS),
    model="|".join(STUDY.generators),
    run="[A-Za-z0-9][A-Za-z0-9_.-]*",
    # a generator's snapshot stems: epoch0010, kimg000200, kimg000000.500 (or "best")
    snapshot="best|[a-z]+[0-9]+(\\.[0-9]+)?",
    extractor="[a-z]+",  # the names in the schema's metrics.extractors
    res="[0-9]+",
    arm="|".join(STUDY.arm_names()),
    ratio="balance|[0-9]+(\\.[0-9]+)?",
    seed="[0-9]+",
    arch="resnet18|resnet50",


include: "rules/data.smk"
include: "rules/metrics.smk"


# Each generator's training and sweep rules: rules/<section>.smk for every generator section
# of the config (dcgan, stylegan2ada; docs/development.md "Adding a generator").
for generator in STUDY.generators:
    if not Path(workflow.basedir, f"rules/{generator}.smk").is_file():
        raise WorkflowError(
            f"config section {generator!r} is a generator (settings, runs, use_snapshot) "
            f"but rules/{generator}.smk does not exist: copy rules/dcgan.smk "
            "(docs/development.md, 'Adding a generator')"
        )

    include: f"rules/{generator}.smk"


include: "rules/samples.smk"
include: "rules/classifier.smk"
include: "rules/report.smk"


# profiles/default/resources.yaml may name only rules that exist.
check_rule_requests()
# Reference splits too small for some metrics are named before any job runs.
warn_small_references()


rule all:
    default_target: True
    input:
        get_final_output(),


onsuccess:
    # A run that just wrote the front page (e.g. with --report-after-run) reports it too.
    use_generated_report_text()
    write_report_after_run()
