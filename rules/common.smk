# Short lookups for the rules: each get_<what> asks the study (cxrlib.plan, torch-free and
# unit-tested without snakemake) and turns its PlanError into a clean WorkflowError.

from functools import lru_cache, wraps
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.logging import logger
from snakemake.sourcecache import infer_source_file

from cxrlib.plan import PlanError, Study, paths
from cxrlib.plan.checks import data_root, data_tree_signature
from cxrlib.plan.generators import GENERATOR_TRAINING
from cxrlib.plan.report import generated_report_text, report_command, report_text
from cxrlib.plan.requests import attempt_requests, ensure_run_id

SPLITS = ["train", "val", "test"]
STUDY = Study(config)
ensure_run_id()
HEADLINE_PAGE = paths.HEADLINE_PAGE


def planned(function):
    """`function` with a PlanError shown as Snakemake's WorkflowError: the message alone."""

    @wraps(function)
    def call(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except PlanError as exc:
            raise WorkflowError(str(exc)) from None

    return call


def from_study(method, *fields):
    """An input function or param: `method` of the study given the job's wildcards `fields`."""
    return planned(lambda wildcards: method(*(wildcards[f] for f in fields)))


# whichever targets are asked for
planned(STUDY.check_weights_settings)()
planned(STUDY.check_classifier_models)()


# ---------------------------------------------------------------- data


@planned
def get_data_root():
    """The folder prepare_data reads; a missing data.root fails naming the fixes."""
    return data_root(config)


def get_data_root_input(wildcards):
    """prepare_data's input: the phantom folder (a workflow output), or nothing for a
    data.root of one's own (checked here, read through params)."""
    root = get_data_root()
    return {"root": root} if config["data"]["source"] == "phantom" else {}


@planned
@lru_cache(maxsize=None)
def data_tree():
    return data_tree_signature(config)


def get_data_tree_signature(wildcards):
    """prepare_data's params.tree: hashed when the job is planned (once), not each time the
    Snakefile is read (every cluster job reads it again)."""
    return data_tree()


# ---------------------------------------------------------------- threads and resources


@planned
@lru_cache(maxsize=None)
def rule_requests():
    """profiles/default/resources.yaml, read once; a malformed file fails naming the key."""
    from cxrlib.cluster import load_rule_requests

    try:
        return load_rule_requests(
            Path(workflow.basedir) / "profiles/default/resources.yaml"
        )
    except ValueError as exc:
        raise PlanError(str(exc)) from exc


def _requests_of(name):
    """resources.yaml's entry for rule `name` (a generator's training rule without one of its
    own takes train_generator's)."""
    return STUDY.requests_rule(name, rule_requests().rules)


def get_threads(name):
    """Threads (CPUs) of rule `name`'s jobs; a profile's set-threads still overrides them."""
    return rule_requests().threads(_requests_of(name))


def get_retries(name):
    """Retries from resources.yaml (training rules: enough to span many time limits), else
    the profile's. Inside a cluster job (its own snakemake) never: a retry there would rerun
    the rule in the same allocation, past the time limit it just stopped for."""
    return (
        rule_requests().retries(_requests_of(name)) if workflow.is_main_process else 0
    )


def get_resources(name):
    """Rule `name`'s resources, at the rule's level (profiles refine them key by key); a
    training rule's runtime and mem_mb depend on the attempt (cxrlib.plan.requests)."""
    resources = rule_requests().resources(_requests_of(name))
    state = STUDY.state_template(name)
    if state is None:
        return resources
    return attempt_requests(
        resources,
        name,
        state,
        main_process=workflow.is_main_process,
        warn=logger.warning,
    )


def get_state_dir(name):
    """A training rule's resume state (params.state): not an output, so it survives."""
    return STUDY.state_template(name)


@planned
def check_rule_requests():
    """resources.yaml names only rules that exist; a profile's mem_mb_per_cpu is named."""
    try:
        rule_requests().check_rules(
            [r.name for r in workflow.rules] + [GENERATOR_TRAINING]
        )
    except ValueError as exc:
        raise PlanError(str(exc)) from exc
    defaults = workflow.resource_settings.default_resources
    per_cpu = defaults.get("mem_mb_per_cpu") if defaults is not None else None
    per_cpu = getattr(
        per_cpu, "value", per_cpu
    )  # listed as None when no profile sets it
    if per_cpu is not None and workflow.is_main_process:
        logger.warning(
            f"default-resources mem_mb_per_cpu ({per_cpu}) replaces every rule's mem_mb "
            "(profiles/default/resources.yaml) on SLURM: jobs get threads x that. Remove "
            "mem_mb_per_cpu from your profile's default-resources, or set it per rule under "
            "set-resources."
        )


# ---------------------------------------------------------------- the study's outputs


get_final_output = planned(STUDY.final_outputs)
get_study_outputs = planned(STUDY.study_outputs)
get_headline_inputs = from_study(STUDY.headline_inputs)


def warn_small_references():
    """Before any job runs: each reference split too small for some metric, with the fix."""
    if workflow.is_main_process:
        message = planned(STUDY.small_references_warning)()
        if message:
            logger.warning(message)


# ---------------------------------------------------------------- lookups


def get_generator_settings(model):
    """A `train_<model>` rule's params.settings; a refused restart fails the DAG build."""
    return planned(lambda wildcards: STUDY.generator_settings(model, wildcards.run))


def get_sweep_scores(model):
    return planned(lambda wildcards: STUDY.sweep_scores(model, wildcards.run))


def get_run_resolution(model):
    return planned(lambda wildcards: STUDY.resolution(model, wildcards.run))


def get_grid_columns(model):
    return planned(lambda wildcards: STUDY.grid_columns(model, wildcards.run))


def get_ada_target(wildcards):
    return STUDY.run_settings("stylegan2ada", wildcards.run).ada_target


def get_sample_ratios(wildcards):
    """The ratios of the classifier arms that draw from these samples."""
    classifier = config["classifier"]
    return classifier["ratios"] if wildcards.model in classifier["models"] else []


def get_pretrained_sha256(wildcards):
    return STUDY.pretrained_entry(wildcards.name).get("sha256") or ""


def get_imagenet_sha256(wildcards):
    from cxrlib.weights import published_sha256_prefix

    return published_sha256_prefix(STUDY.imagenet_url(wildcards.arch))


get_run_trajectory = from_study(STUDY.run_trajectory, "model", "run")


@planned
def get_score_inputs(wildcards):
    """A snapshot's scoring inputs; the snapshots folder `ancient`: extending a run rewrites
    the folder, not the earlier snapshots in it, so their scores stand (params.run reruns
    them when the run's snapshots change: other settings)."""
    inputs = STUDY.score_inputs(wildcards.model, wildcards.run, wildcards.snapshot)
    return {**inputs, "snapshots": ancient(inputs["snapshots"])}


get_sample_inputs = from_study(STUDY.sample_inputs, "model", "run", "snapshot")
get_stylegan_train_inputs = from_study(STUDY.stylegan_train_inputs, "run")
get_start_pin = from_study(STUDY.start_pin, "run")
get_pretrained_url = planned(
    lambda wildcards: STUDY.pretrained_entry(wildcards.name)["url"]
)
get_real_features_inputs = planned(
    lambda wildcards: STUDY.extractor_inputs([wildcards.extractor])
)
get_real_features_sha256 = from_study(STUDY.extractor_sha256, "extractor")
get_audit_inputs = from_study(STUDY.audit_inputs)
get_imagenet_url = from_study(STUDY.imagenet_url, "arch")
get_real_reference_inputs = from_study(STUDY.real_reference_inputs)
get_classifier_inputs = from_study(STUDY.classifier_inputs, "arm")
get_classifier_settings = from_study(STUDY.classifier_settings, "arm", "ratio", "seed")
get_domain_extractor_settings = from_study(STUDY.domain_extractor_settings)
# values the rules read when the Snakefile is read
pretrained_gan_path = planned(STUDY.pretrained_gan_path)
get_run_resolutions = planned(STUDY.run_resolutions)
get_all_scores = planned(STUDY.all_scores)
get_score_metrics = planned(STUDY.score_metrics)
get_sweep_metrics = planned(STUDY.sweep_metrics)
get_reference_settings = planned(STUDY.reference_settings)
get_shift_factor = planned(STUDY.shift_factor)
get_floor_features = planned(STUDY.floor_features)
get_positive_label = from_study(STUDY.positive_label)
get_class_pair = from_study(STUDY.class_pair)
get_classifier_runs = planned(STUDY.classifier_runs)
get_use_snapshots = planned(STUDY.use_snapshots)
memorisation_extractor = STUDY.memorisation_extractor
extractor_sha256 = STUDY.extractor_sha256
fetched_inception_weights = STUDY.fetched_inception_weights
fetched_xrv_weights = STUDY.fetched_xrv_weights
fetched_swav_weights = STUDY.fetched_swav_weights


# ---------------------------------------------------------------- the report


def get_report_text():
    return report_text(workflow.basedir)


def use_generated_report_text():
    """After a successful run: point the report at the front page the run may just have
    written (`report:` was read at parse time, before the page existed)."""
    generated = generated_report_text()
    if generated is not None:
        workflow.report_text = infer_source_file(str(generated))


def write_report_after_run():
    """After a real run of the whole study (the default target): write the report with the
    same config as `snakemake --report` would. Never after a dry run or a run of single
    targets (the report needs every stage); config report.after_run: false turns it off.
    """
    import subprocess

    if workflow.dryrun or not config["report"]["after_run"]:
        return
    if not any(job.rule.name == "all" for job in workflow.dag.targetjobs):
        return
    settings = workflow.config_settings
    command = report_command(
        workflow.main_snakefile, settings.configfiles or (), settings.config_args or ()
    )
    logger.info(f"Writing the report {paths.REPORT} (config report.after_run)")
    proc = subprocess.run(command, capture_output=True, text=True)
    if proc.returncode != 0:
        logger.error(
            f"the report could not be written ({proc.stderr[-2000:]}); the results are "
            f"complete: run `snakemake --report {paths.REPORT}` with this run's config options"
        )
    else:
        logger.info(f"Report: {Path(paths.REPORT).resolve()}")
