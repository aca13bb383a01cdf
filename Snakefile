# The chest X-ray GAN study: preprocessing, GAN training and sweeps, scoring, classification.
# A table of contents: the stages live in rules/*.smk, the logic in cxrlib/.


from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config.yaml"


validate(config, "schemas/config.schema.yaml")


report: "report/workflow.rst"


include: "rules/common.smk"


wildcard_constraints:
    split="|".join(SPLITS),


include: "rules/data.smk"


rule all:
    default_target: True
    input:
        get_final_output(),
