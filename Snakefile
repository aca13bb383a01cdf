# The chest X-ray GAN study: preprocessing, GAN training and sweeps, scoring, classification.
# A table of contents: the stages live in rules/*.smk, the logic in cxrlib/.


from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config.yaml"


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
    extractor="inception|cxr|xrv",
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
