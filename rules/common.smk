# Shared names and input functions. Any logic longer than a line lives here or in cxrlib.

import math
import os
import uuid
from functools import lru_cache
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.logging import logger
from snakemake.sourcecache import infer_source_file

SPLITS = ["train", "val", "test"]
# One id per snakemake invocation, inherited by its jobs (also on SLURM: --export=ALL): a
# training job's retry then knows a failure of this invocation that retrying cannot fix
# (cxrlib.train.survival.attempt_guard).
os.environ.setdefault("CXR_SNAKEMAKE_RUN", uuid.uuid4().hex[:12])


def get_data_root():
    """The folder prepare_data reads: the generated phantoms, or the configured data.root.

    A missing data.root fails here, before any job is submitted, with the path and the fix.
    """
    if config["data"]["source"] == "phantom":
        return "results/data/phantom"
    root = Path(config["data"]["root"])
    if not root.is_dir():
        raise WorkflowError(
            f"data.root {root} does not exist (resolved: {root.resolve()}). Download the Kaggle "
            "'Chest X-Ray Images (Pneumonia)' release, unpack it and set data.root (in "
            "config.yaml or with --config 'data={root: PATH}') to the folder holding train/ and "
            "test/; or try the demo: --configfile overlays/demo.yaml."
        )
    from cxrlib.data.layout import DataError, check_root

    try:
        # train/ and test/ there (or the folder below that has them), and the GANs' class
        check_root(root, config["data"]["synthetic_class"])
    except DataError as exc:
        raise WorkflowError(str(exc)) from None
    return str(root)


def get_data_root_input(wildcards):
    """prepare_data's input: the phantom folder (a workflow output), or nothing for a
    data.root of one's own (checked here, read through params)."""
    root = get_data_root()
    return {"root": root} if config["data"]["source"] == "phantom" else {}


@lru_cache(maxsize=None)
def get_data_tree_signature():
    """Hash of every file reachable from data.root (path, size, mtime): a parameter of
    prepare_data, so changing any file reruns it (Snakemake itself only compares the mtime
    of the root folder). Constant for phantoms, which are a workflow output."""
    if config["data"]["source"] == "phantom":
        return "phantom"
    from cxrlib.data.layout import tree_signature

    return tree_signature(Path(get_data_root()), config["data"]["follow_links"])


# ---------------------------------------------------------------- per-rule threads and resources

RESOURCES_FILE = "profiles/default/resources.yaml"


@lru_cache(maxsize=None)
def rule_requests():
    """The per-rule requests of RESOURCES_FILE (see its header), as a RuleRequests. Read
    once; a malformed file fails at DAG build naming the key."""
    from cxrlib.cluster import load_rule_requests

    try:
        return load_rule_requests(Path(workflow.basedir) / RESOURCES_FILE)
    except ValueError as exc:
        raise WorkflowError(str(exc)) from exc


def get_threads(rule):
    """Threads (CPUs) of `rule`'s jobs; a profile's set-threads still overrides them."""
    return rule_requests().threads(rule)


def get_retries(rule):
    """Retries of `rule`'s failed jobs from RESOURCES_FILE (training rules: enough attempts
    to span many time limits), else None: the profile's `retries`. Only the scheduling
    snakemake retries: inside a cluster job (the executor's job step runs this Snakefile
    again) a retry would rerun the rule in the same allocation, past the time limit it just
    stopped for (seen on the test SLURM: attempts without progress until it was killed).
    """
    if not workflow.is_main_process:
        return 0
    return rule_requests().retries(rule)


def check_rule_requests():
    """Every rule RESOURCES_FILE names exists (a typo would leave a rule at the defaults),
    and no profile's default mem_mb_per_cpu silently replaces the rules' mem_mb."""
    try:
        rule_requests().check_rules([rule.name for rule in workflow.rules])
    except ValueError as exc:
        raise WorkflowError(str(exc)) from exc
    defaults = workflow.resource_settings.default_resources
    per_cpu = defaults.get("mem_mb_per_cpu") if defaults is not None else None
    # snakemake lists the key with the value None when no profile sets it
    per_cpu = getattr(per_cpu, "value", per_cpu)
    if per_cpu is not None and workflow.is_main_process:
        # The SLURM plugin submits --mem-per-cpu, not --mem, when a job has both.
        logger.warning(
            f"default-resources mem_mb_per_cpu ({per_cpu}) replaces "
            f"every rule's mem_mb ({RESOURCES_FILE}) on SLURM: jobs get threads x that, e.g. "
            "train_stylegan2ada asks for 32000 MB. Remove mem_mb_per_cpu from your profile's "
            "default-resources, or set it per rule under set-resources."
        )


# Resume state of each training rule's runs, in an undeclared folder that survives a failed job.
STATE_DIRS = {
    "train_dcgan": "results/dcgan/{run}/state",
    "train_stylegan2ada": "results/stylegan2ada/{run}/state",
    "train_classifier": "results/classifier/{arm}/ratio{ratio}/seed{seed}/state",
    "train_domain_extractor": "results/metrics/domain_extractor/state",
}
_told_futile = set()


def get_resources(name):
    """Resources of rule `name`'s jobs (mem_mb, runtime, gpu, ...), given at the level of the rule
    itself, so a profile's default-resources fill other keys and its set-resources override
    these. A training rule's runtime and mem_mb depend on the attempt: a retry of a job
    whose last attempt in this snakemake run failed for a reason retrying cannot fix (it
    fails at once, cxrlib.train.attempts) asks for the smallest request, not another long
    GPU job."""
    resources = rule_requests().resources(name)
    if name not in STATE_DIRS:
        return resources
    from cxrlib.train.attempts import FUTILE_REQUEST

    for key in FUTILE_REQUEST:
        if key in resources:
            resources[key] = _request_of_attempt(name, key, resources[key])
    return resources


def _request_of_attempt(name, key, value):
    def request(wildcards, attempt):
        if attempt == 1 or not workflow.is_main_process:
            return value
        from cxrlib.train.attempts import FUTILE_REQUEST, recorded_failure

        state = STATE_DIRS[name].format(**dict(wildcards.items()))
        failure = recorded_failure(state, os.environ.get("CXR_SNAKEMAKE_RUN"))
        if failure is None:
            return value  # a stop at the time limit (or a kill): worth the full request
        if state not in _told_futile:
            _told_futile.add(state)
            logger.warning(
                f"{name} ({state}) failed in this snakemake run for a reason a retry cannot "
                f"fix ({failure}); its remaining retries fail at once and ask for "
                f"{FUTILE_REQUEST['runtime']} minutes and {FUTILE_REQUEST['mem_mb']} MB. Fix "
                "it, then run snakemake again."
            )
        return min(value, FUTILE_REQUEST[key])

    return request


HEADLINE_PAGE = "results/report/workflow.rst"


def get_final_output():
    """What `snakemake` builds by default: every stage's tables and figures, the runtimes and
    the report's front page with the headline results."""
    return [
        *get_study_outputs(),
        "results/benchmarks/runtime_by_rule.png",
        HEADLINE_PAGE,
    ]


def get_headline_inputs(wildcards):
    """The tables the front page summarises (see cxrlib/report/headline.py), with the
    real-to-real floors where some GAN run is scored, and each run's chosen samples (the
    summary figure)."""
    inputs = get_run_tables()
    if get_floor_resolutions():
        inputs["real_reference"] = REAL_REFERENCE
    inputs["samples"] = [
        folder
        for model in STAGED_MODELS
        if model_enabled(model)
        for folder in chosen_samples(model)
    ]
    return inputs


def get_run_tables():
    """Per GAN run of the study: its sweep table and the memorisation audit of the snapshot
    that feeds the classifier (`use_snapshot`)."""
    sweeps, audits = [], []
    for model in STAGED_MODELS:
        if not model_enabled(model):
            continue
        choice = config[model]["use_snapshot"]
        for run in get_model_runs(model):
            sweeps.append(f"results/{model}/{run}/sweep.csv")
            audits.append(
                f"results/metrics/memorisation/{model}/{run}/{choice}/summary.json"
            )
    return {"sweeps": sweeps, "memorisation": audits}


def report_text():
    """The report's front page: the generated one (study text plus headline results) once the
    `headline` rule has written it, else the bare study description. Paths are relative to the
    Snakefile's folder, as the `report:` directive reads them."""
    generated = Path(HEADLINE_PAGE).resolve()
    if generated.is_file():
        return os.path.relpath(generated, workflow.basedir)
    return "report/workflow.rst"


def use_generated_report_text():
    """After a successful run: point the report at the front page the run may just have
    written (`report:` was read at parse time, before the page existed)."""
    generated = Path(HEADLINE_PAGE).resolve()
    if generated.is_file():
        workflow.report_text = infer_source_file(str(generated))


REPORT = "results/report.html"


def write_report_after_run():
    """After a real run of the whole study (the default target): write REPORT, with the same
    config files and --config values, as `snakemake --report` does. Never after a dry run
    (Snakemake's own --report-after-run tries, and fails on the files not yet made), never
    after a run of single targets (the report needs every stage). config report.after_run:
    false turns it off."""
    import subprocess
    import sys

    if workflow.dryrun or not config["report"]["after_run"]:
        return
    if not any(job.rule.name == "all" for job in workflow.dag.targetjobs):
        return
    settings = workflow.config_settings
    command = [
        sys.executable, "-m", "snakemake", "--snakefile", str(workflow.main_snakefile),
        "--directory", os.getcwd(), "--nolock", "--report", REPORT,
    ]  # fmt: skip
    if settings.configfiles:
        command += ["--configfile", *map(str, settings.configfiles)]
    if settings.config_args:
        command += ["--config", *settings.config_args]
    logger.info(f"Writing the report {REPORT} (config report.after_run)")
    proc = subprocess.run(command, capture_output=True, text=True)
    if proc.returncode != 0:
        logger.error(
            f"the report could not be written ({proc.stderr[-2000:]}); the results are "
            f"complete: run `snakemake --report {REPORT}` with this run's config options"
        )
    else:
        logger.info(f"Report: {Path(REPORT).resolve()}")


def get_study_outputs():
    """Every stage's tables and figures (the runtime report waits for all of them)."""
    targets = [
        "results/data/manifest.csv",
        "results/data/qc/class_counts.png",
        "results/data/qc/examples.png",
        "results/data/qc/intensity_histograms.png",
    ]
    runs = get_run_tables()
    targets += runs["sweeps"] + runs["memorisation"]
    if runs["sweeps"]:
        targets.append("results/metrics/summary.csv")
    if get_floor_resolutions():
        targets += [REAL_REFERENCE, REAL_DISTANCES]
    targets.append("results/classifier/comparison.csv")
    return targets


# ---------------------------------------------------------------- models, snapshots, scoring

MODELS = ["dcgan", "stylegan2ada"]
# Models whose rules are included.
STAGED_MODELS = ["dcgan", "stylegan2ada"]


def _merged(section, run):
    """A run's settings: the section's settings with the run's overrides on top."""
    return {**config[section]["settings"], **config[section]["runs"][run]}


@lru_cache(maxsize=None)  # config is fixed for a run; input functions ask many times
def dcgan_settings_of(run):
    """Validated DcganSettings of a run; bad keys fail at DAG build, naming run and key."""
    from cxrlib.settings.dcgan import dcgan_settings

    try:
        return dcgan_settings(_merged("dcgan", run))
    except (TypeError, ValueError) as exc:
        raise WorkflowError(f"dcgan.runs.{run}: {exc}") from exc


@lru_cache(maxsize=None)
def stylegan_settings_of(run):
    """Validated StyleGanSettings of a run; bad keys fail at DAG build, naming run and key."""
    from cxrlib.settings.stylegan2ada import stylegan_settings

    merged = _merged("stylegan2ada", run)
    start = merged.get("resume_from")
    if start is not None:
        merged["resume_from"] = resolve_resume_from(run, start)
    try:
        settings = stylegan_settings(merged)
    except (TypeError, ValueError) as exc:
        raise WorkflowError(f"stylegan2ada.runs.{run}: {exc}") from exc
    published = (config["stylegan2ada"].get("pretrained") or {}).get(start) or {}
    size = published.get("resolution")
    if size is not None and size != settings.resolution:
        raise WorkflowError(
            f"stylegan2ada.runs.{run}: resume_from {start} is a {size} px network "
            f"(stylegan2ada.pretrained.{start}.resolution) but the run has resolution "
            f"{settings.resolution}: set resolution: {size} for this run, or start it from "
            "a network of its size"
        )
    return settings


def pretrained_gan_path(name):
    """Where fetch_pretrained_gan saves the published network `name` (stylegan2ada.pretrained)."""
    return f"{config['metrics']['weights_dir']}/stylegan2ada/{name}.pkl"


def resolve_resume_from(run, value):
    """A run's resume_from as a file path: a name in stylegan2ada.pretrained becomes the file
    fetch_pretrained_gan writes; anything else is a file that must exist now and start like a
    network file (not an image, a web page, a text file...): checked before any job."""
    pretrained = config["stylegan2ada"].get("pretrained") or {}
    if not isinstance(value, str) or not value:
        raise WorkflowError(
            f"stylegan2ada.runs.{run}: resume_from must be a name in stylegan2ada.pretrained "
            f"({', '.join(pretrained) or 'none configured'}) or a file path, got {value!r}"
        )
    if value in pretrained:
        return pretrained_gan_path(value)
    from cxrlib.settings.stylegan2ada import START_FILES, check_start_file

    value = os.path.expanduser(value)  # ~/nets/x.pkl as a shell would read it
    if _stylegan_run_of(value) == run:
        raise WorkflowError(
            f"stylegan2ada.runs.{run}: resume_from {value} is a file of this run itself; to "
            "continue it, raise its total_kimg; to start a new run from it, give that run "
            "another name"
        )
    if not Path(value).exists() and not Path(value).is_symlink():
        raise WorkflowError(
            f"stylegan2ada.runs.{run}: resume_from {value} is neither a file nor a name in "
            f"stylegan2ada.pretrained ({', '.join(pretrained) or 'none configured'}); "
            f"{START_FILES}, or add the network's url (and sha256) under "
            "stylegan2ada.pretrained"
        )
    try:
        check_start_file(value)
    except (OSError, ValueError) as exc:
        raise WorkflowError(f"stylegan2ada.runs.{run}: {exc}") from None
    return value


def _stylegan_run_of(path):
    """The StyleGAN2-ADA run whose folder (results/stylegan2ada/<run>/) holds `path`, or None."""
    own = Path("results/stylegan2ada").resolve()
    resolved = Path(path).resolve()
    if resolved.is_relative_to(own) and resolved != own:
        return resolved.relative_to(own).parts[0]
    return None


def get_stylegan_train_inputs(wildcards):
    """The training split, and the file the run starts from (transfer learning) when it has
    one, so a fetch_pretrained_gan job runs before it and a changed file reruns it; a file
    of another run (results/stylegan2ada/<other>/...) brings that run's train_log.csv, so
    the other run finishes, or reruns, first."""
    inputs = {"cache": "results/data/cache/train.npz"}
    start = stylegan_settings_of(wildcards.run).resume_from
    if start is not None:
        inputs["start"] = start
        other = _stylegan_run_of(start)
        if other in config["stylegan2ada"]["runs"]:
            inputs["start_run"] = f"results/stylegan2ada/{other}/train_log.csv"
    return inputs


def get_start_pin(wildcards):
    """{name, sha256} of the published network a run starts from when its config pins a
    sha256 (the job checks the file against it), else {}."""
    start = _merged("stylegan2ada", wildcards.run).get("resume_from")
    pretrained = config["stylegan2ada"].get("pretrained") or {}
    if not isinstance(start, str) or start not in pretrained:
        return {}
    sha256 = pretrained[start].get("sha256") or ""
    return {"name": start, "sha256": sha256} if sha256 else {}


def get_pretrained_url(wildcards):
    return _pretrained_entry(wildcards.name)["url"]


def get_pretrained_sha256(wildcards):
    return _pretrained_entry(wildcards.name).get("sha256") or ""


def _pretrained_entry(name):
    pretrained = config["stylegan2ada"].get("pretrained") or {}
    if name not in pretrained:
        raise WorkflowError(
            f"no network {name!r} under stylegan2ada.pretrained ({', '.join(pretrained)})"
        )
    return pretrained[name]


def get_snapshots(model, run):
    """Snapshot names a training run writes: epochNNNN (DCGAN) or kimgNNNNNN (StyleGAN2-ADA)."""
    if model == "dcgan":
        from cxrlib.settings.dcgan import snapshot_epochs

        return [f"epoch{e:04d}" for e in snapshot_epochs(dcgan_settings_of(run))]
    from cxrlib.settings.stylegan2ada import snapshot_kimgs, snapshot_name

    return [snapshot_name(k) for k in snapshot_kimgs(stylegan_settings_of(run))]


def get_resolution(model, run):
    """Side length (px) of a run's generated images."""
    if model == "dcgan":
        return dcgan_settings_of(run).image_size
    return stylegan_settings_of(run).resolution


def get_inception_weights():
    """The Inception weights file: configured, or where fetch_weights puts it."""
    configured = config["metrics"]["inception_weights"]
    if configured:
        if not Path(configured).is_file():
            raise WorkflowError(
                f"metrics.inception_weights {configured} does not exist; download "
                f"{config['metrics']['inception_url']} there, or set it to null so that the "
                "fetch_weights rule downloads it (needs internet on the machine running snakemake)"
            )
        return configured
    return fetched_inception_weights()


def fetched_inception_weights():
    """Where fetch_weights saves the Inception file: weights_dir / the URL's file name."""
    name = config["metrics"]["inception_url"].rsplit("/", 1)[-1]
    return str(Path(config["metrics"]["weights_dir"]) / name)


def get_xrv_weights():
    """The torchxrayvision DenseNet file: configured, or where fetch_xrv_weights puts it."""
    configured = config["metrics"]["xrv_weights"]
    if configured:
        if not Path(configured).is_file():
            raise WorkflowError(
                f"metrics.xrv_weights {configured} does not exist; download "
                f"{config['metrics']['xrv_url']} there, or set it to null so that the "
                "fetch_xrv_weights rule downloads it (needs internet on the machine running "
                "snakemake)"
            )
        return configured
    return fetched_xrv_weights()


def fetched_xrv_weights():
    """Where fetch_xrv_weights saves the file: weights_dir/xrv / the URL's file name."""
    name = config["metrics"]["xrv_url"].rsplit("/", 1)[-1]
    return str(Path(config["metrics"]["weights_dir"]) / "xrv" / name)


def extractor_sha256(extractor):
    """The sha256 an extractor's weights file is checked against: metrics.xrv_sha256 for xrv,
    else metrics.inception_sha256 (which cxr ignores; kept so these jobs' params stay as
    they were)."""
    if extractor == "xrv":
        return config["metrics"]["xrv_sha256"]
    return config["metrics"]["inception_sha256"]


def get_extractor_inputs(extractors):
    """Weights files the given extractors need, as named inputs."""
    inputs = {}
    if "inception" in extractors:
        inputs["inception"] = get_inception_weights()
    if "cxr" in extractors:
        inputs["domain"] = "results/metrics/domain_extractor/model.pt"
    if "xrv" in extractors:
        inputs["xrv"] = get_xrv_weights()
    return inputs


def get_positive_label():
    """The class a classifier's score stands for: the class that is not synthesised."""
    return "PNEUMONIA" if config["data"]["synthetic_class"] != "PNEUMONIA" else "NORMAL"


def get_real_features_inputs(wildcards):
    return get_extractor_inputs([wildcards.extractor])


def get_real_features_sha256(wildcards):
    return extractor_sha256(wildcards.extractor)


def memorisation_extractor():
    """The audit's feature space: the CXR extractor where configured (it knows the anatomy)."""
    extractors = config["metrics"]["extractors"]
    return "cxr" if "cxr" in extractors else extractors[0]


def get_audit_inputs(wildcards):
    return get_extractor_inputs([memorisation_extractor()])


def warn_small_references():
    """Before any job runs: a warning naming each reference split (metrics.references) too
    small for FID/KID/precision/recall/density/coverage, its count, what each metric needs and
    the fix. Only a warning: such metrics are NaN with the reason, the rest as usual."""
    from cxrlib.metrics.feasibility import check_references

    if not workflow.is_main_process or not any(map(model_enabled, STAGED_MODELS)):
        return
    message = check_references(config, "results/data/class_counts.csv")
    if message:
        logger.warning(message)


def real_features_path(extractor, split, resolution):
    return f"results/metrics/real_features/{extractor}/{split}_{resolution}px.npz"


def get_score_inputs(wildcards, model):
    """A run's snapshots, the real features at its resolution and the extractors' weights."""
    if wildcards.snapshot not in get_snapshots(model, wildcards.run):
        raise WorkflowError(
            f"{model} run {wildcards.run} writes no snapshot {wildcards.snapshot}; it writes "
            + ", ".join(get_snapshots(model, wildcards.run))
        )
    res = get_resolution(model, wildcards.run)
    inputs = {
        "snapshots": f"results/{model}/{wildcards.run}/snapshots",
        **get_extractor_inputs(config["metrics"]["extractors"]),
    }
    for extractor in config["metrics"]["extractors"]:
        for split in config["metrics"]["references"]:
            inputs[f"real_{extractor}_{split}"] = real_features_path(
                extractor, split, res
            )
    return inputs


def get_dcgan_score_inputs(wildcards):
    return get_score_inputs(wildcards, "dcgan")


def get_stylegan_score_inputs(wildcards):
    return get_score_inputs(wildcards, "stylegan2ada")


# ---------------------------------------------------------------- real-to-real floors

REAL_REFERENCE = "results/metrics/real_reference.csv"
REAL_DISTANCES = "results/data/qc/real_distances.png"
# The splits the floors compare (cxrlib.metrics.reference.COMPARISONS), whatever
# metrics.references lists: the same real_features rule declares the extra files.
FLOOR_SPLITS = ["train", "val", "test"]


def get_floor_resolutions():
    """Image sides (px) of the enabled GAN runs: the resolutions generated images are
    scored at, so the ones their floors are needed at. Empty without any GAN run."""
    return sorted(
        {
            get_resolution(model, run)
            for model in STAGED_MODELS
            if model_enabled(model)
            for run in get_model_runs(model)
        }
    )


def get_floor_features():
    """(extractor, resolution, split) of every real_features file the floors read."""
    return [
        (extractor, res, split)
        for extractor in config["metrics"]["extractors"]
        for res in get_floor_resolutions()
        for split in FLOOR_SPLITS
    ]


def get_real_reference_inputs(wildcards):
    """The manifest (feature rows -> patients, for the half-vs-half split) and every
    real_features file of get_floor_features, named {extractor}_{split}_{res}."""
    inputs = {"manifest": "results/data/manifest.csv"}
    for extractor, res, split in get_floor_features():
        inputs[f"{extractor}_{split}_{res}"] = real_features_path(extractor, split, res)
    return inputs


# The metrics keys each job reads, and only those (params are a rerun trigger), so
# passing the whole section would rerun every scoring job (hours of GPU) when, say, only
# shift_factor changed.
SCORE_KEYS = (
    "extractors",
    "references",
    "inception_sha256",
    "n_fake",
    "batch_size",
    "seed",
    "kid_subsets",
    "kid_subset_size",
    "prc_neighborhood",
    "dc_neighborhood",
)
SWEEP_KEYS = ("extractors", "collapse_diversity_ratio", "collapse_patience")
REFERENCE_KEYS = (
    "kid_subsets",
    "kid_subset_size",
    "prc_neighborhood",
    "dc_neighborhood",
    "seed",
)


def metrics_subset(keys):
    return {key: config["metrics"][key] for key in keys}


def get_score_metrics():
    """The metrics keys a snapshot's scores depend on (scripts/score_snapshot.py); the xrv
    file's sha256 only where xrv is scored, so studies without it keep their params."""
    extra = ("xrv_sha256",) if "xrv" in config["metrics"]["extractors"] else ()
    return metrics_subset((*SCORE_KEYS, *extra))


def get_sweep_metrics():
    """The metrics keys a sweep table depends on (cxrlib.metrics.sweep.sweep_from_config)."""
    return metrics_subset(SWEEP_KEYS)


def get_reference_settings():
    """The metrics keys the floors use: the scores' KID, precision/recall, density/coverage
    and seed settings, so floors and scores are computed alike (the shift flag's factor is the
    real_distances and headline rules' business: changing it reruns nothing upstream).
    """
    return metrics_subset(REFERENCE_KEYS)


def get_shift_factor():
    """metrics.shift_factor, refused at DAG build unless a finite number > 0 (the schema
    lets .nan and .inf through)."""
    factor = config["metrics"]["shift_factor"]
    if not (isinstance(factor, (int, float)) and math.isfinite(factor) and factor > 0):
        raise WorkflowError(
            f"metrics.shift_factor must be a finite number > 0, got {factor!r} (e.g. 3: "
            "flag the test split when FID(train, test) exceeds 3 times the same-distribution "
            "distances)"
        )
    return float(factor)


def get_run_resolution(wildcards, model):
    return get_resolution(model, wildcards.run)


def get_dcgan_resolution(wildcards):
    return get_run_resolution(wildcards, "dcgan")


def get_stylegan_resolution(wildcards):
    return get_run_resolution(wildcards, "stylegan2ada")


def get_run_resolutions():
    """{"model/run": image side in px} of every enabled run, for the summary's floors."""
    return {
        f"{model}/{run}": get_resolution(model, run)
        for model in STAGED_MODELS
        if model_enabled(model)
        for run in get_model_runs(model)
    }


def get_dcgan_sweep_scores(wildcards):
    return get_sweep_scores(wildcards, "dcgan")


def get_stylegan_sweep_scores(wildcards):
    return get_sweep_scores(wildcards, "stylegan2ada")


def check_saved_state(contract, state_dir, settings, what, snapshots=()):
    """The trainers' resume contract (cxrlib.train.resume) at DAG build: a saved state in
    `state_dir` that these `settings` may not continue fails here, naming each changed key,
    before any job is submitted (never as a loop of failing retries). `snapshots`: (file name,
    position) of the run's snapshot schedule; those of the part already trained must exist.
    """
    from cxrlib.train.resume import (
        CONTRACTS,
        ResumeRefused,
        check_resume,
        missing_snapshots,
        read_record,
        refuse_missing_snapshots,
        state_problem,
    )

    problem = state_problem(state_dir)
    if problem:
        raise WorkflowError(
            f"cannot resume {what}: {problem}. Delete {state_dir}/ to train it from scratch."
        )
    saved = read_record(state_dir)
    if saved is None:
        return
    try:
        check_resume(
            CONTRACTS[contract], saved, {"settings": settings}, state_dir, what=what
        )
        done = float(saved.get("done") or 0.0)
        missing = missing_snapshots(snapshots, done, Path(state_dir) / "snapshots")
        key = "snapshot_every_epochs" if contract == "dcgan" else "snapshot_kimg"
        refuse_missing_snapshots(missing, key, state_dir, what=what)
    except ResumeRefused as exc:
        raise WorkflowError(str(exc)) from exc


def get_dcgan_settings(wildcards):
    """The run's settings as a plain dict (params are compared between runs as text); a saved
    state of the run that they may not continue fails the DAG build."""
    from dataclasses import asdict

    from cxrlib.settings.dcgan import snapshot_epochs, snapshot_name

    settings = dcgan_settings_of(wildcards.run)
    check_saved_state(
        "dcgan",
        f"results/dcgan/{wildcards.run}/state",
        asdict(settings),
        f"dcgan run {wildcards.run}",
        [(snapshot_name(e), e) for e in snapshot_epochs(settings)],
    )
    return asdict(settings)


def get_stylegan_settings(wildcards):
    """As get_dcgan_settings. `gpus` is left to the job: it trains on the GPUs it gets."""
    from dataclasses import asdict

    from cxrlib.train.resume import read_record
    from cxrlib.settings.stylegan2ada import snapshot_kimgs, snapshot_name

    settings = stylegan_settings_of(wildcards.run)
    state = f"results/stylegan2ada/{wildcards.run}/state"
    saved = (read_record(state) or {}).get("settings") or {}
    check_saved_state(
        "stylegan2ada",
        state,
        {**asdict(settings), "gpus": saved.get("gpus", settings.gpus)},
        f"stylegan2ada run {wildcards.run}",
        [(f"{snapshot_name(k)}.pt", k) for k in snapshot_kimgs(settings)],
    )
    return asdict(settings)


def get_model_runs(model):
    return list(config[model]["runs"])


def get_sweep_scores(wildcards, model):
    return expand(
        "results/{model}/{run}/scores/{snapshot}.csv",
        model=model,
        run=wildcards.run,
        snapshot=get_snapshots(model, wildcards.run),
    )


def get_all_scores():
    return [
        f"results/{model}/{run}/scores/{snapshot}.csv"
        for model in STAGED_MODELS
        if model_enabled(model)
        for run in get_model_runs(model)
        for snapshot in get_snapshots(model, run)
    ]


def model_enabled(model):
    """Models in the study: those with at least one run."""
    return bool(config[model]["runs"])


def get_sample_inputs(wildcards):
    """The snapshot to sample: a named one, or for "best" every snapshot plus the sweep table.
    A "best" that no reference split can choose fails here, naming the key to change."""
    from cxrlib.metrics.feasibility import best_refusal

    folder = f"results/{wildcards.model}/{wildcards.run}"
    if wildcards.snapshot == "best":
        snapshots = get_snapshots(wildcards.model, wildcards.run)
        refusal = best_refusal(
            config, "results/data/class_counts.csv", wildcards.model, snapshots
        )
        if refusal:
            raise WorkflowError(refusal)
        return {"sweep": f"{folder}/sweep.csv", "snapshots": f"{folder}/snapshots"}
    if wildcards.snapshot not in get_snapshots(wildcards.model, wildcards.run):
        raise WorkflowError(
            f"{wildcards.model} run {wildcards.run} writes no snapshot {wildcards.snapshot}; "
            f"it writes {', '.join(get_snapshots(wildcards.model, wildcards.run))}"
        )
    return {"snapshots": f"{folder}/snapshots"}


def chosen_samples(model):
    """The synthetic-image folders of a model's chosen snapshot, one per run."""
    choice = config[model]["use_snapshot"]
    return [
        f"results/synthetic/{model}/{run}/{choice}" for run in get_model_runs(model)
    ]


# ---------------------------------------------------------------- classifier arms


def ratio_label(value):
    """A configured ratio as its wildcard text: "balance" or a number such as "0.5"."""
    return "balance" if str(value) == "balance" else f"{float(value):g}"


def get_classifier_arms():
    """(arm, ratio) pairs of the study: real, real_classic, real_<model> x ratios."""
    arms = [("real", "0")]
    if config["classifier"]["classic_augmentation"]:
        arms.append(("real_classic", "0"))
    for model in config["classifier"]["models"]:
        if model in STAGED_MODELS and model_enabled(model):
            arms += [
                (f"real_{model}", ratio_label(r))
                for r in config["classifier"]["ratios"]
            ]
    return arms


def get_classifier_runs(filename):
    return [
        f"results/classifier/{arm}/ratio{ratio}/seed{seed}/{filename}"
        for arm, ratio in get_classifier_arms()
        for seed in config["classifier"]["seeds"]
    ]


def _arm_model(arm):
    model = arm.removeprefix("real_")
    return model if model in MODELS else None


def get_classifier_inputs(wildcards):
    """The synthetic samples an arm adds: the first run's chosen snapshot of its model."""
    inputs = {}
    if classifier_weights():
        inputs["weights"] = classifier_weights()
    model = _arm_model(wildcards.arm)
    if model is not None:
        run = get_model_runs(model)[0]
        choice = config[model]["use_snapshot"]
        inputs["synthetic"] = f"results/synthetic/{model}/{run}/{choice}"
    return inputs


def imagenet_weights_path(arch):
    """Where fetch_classifier_weights puts torchvision's ImageNet weights for `arch`."""
    return f"{config['metrics']['weights_dir']}/imagenet/{arch}.pth"


def get_imagenet_url(wildcards):
    from cxrlib.metrics.weights import IMAGENET_URLS

    if wildcards.arch not in IMAGENET_URLS:
        raise WorkflowError(f"no ImageNet weights known for {wildcards.arch}")
    return IMAGENET_URLS[wildcards.arch]


def get_imagenet_sha256(wildcards):
    from cxrlib.metrics.weights import published_sha256_prefix

    return published_sha256_prefix(get_imagenet_url(wildcards))


def classifier_weights():
    """classifier.settings.weights: null (random init), "imagenet" (fetched), or a file."""
    weights = config["classifier"]["settings"].get("weights")
    arch = config["classifier"]["settings"].get("arch", "resnet50")
    if weights == "imagenet":
        return imagenet_weights_path(arch)
    if weights and not Path(weights).is_file():
        raise WorkflowError(
            f"classifier.settings.weights {weights} does not exist; set it to null, to "
            '"imagenet" (fetched on the login node by fetch_classifier_weights) or to a file'
        )
    return weights or None


def get_classifier_settings(wildcards):
    """The arm's settings: config settings, its augmentation, its seed and its ratio. A saved
    state of the run that they may not continue fails the DAG build."""
    from cxrlib.settings.classifier import classifier_settings

    settings = {
        **config["classifier"]["settings"],
        "weights": classifier_weights(),
        "augment": "classic" if wildcards.arm == "real_classic" else "none",
        "seed": int(wildcards.seed),
    }
    run = f"{wildcards.arm}/ratio{wildcards.ratio}/seed{wildcards.seed}"
    try:
        resolved = classifier_settings(settings).to_dict()
    except ValueError as exc:
        raise WorkflowError(f"classifier.settings: {exc}") from exc
    check_saved_state(
        "classifier",
        f"results/classifier/{run}/state",
        resolved,
        f"classifier run {run}",
    )
    return {"settings": settings, "ratio": wildcards.ratio}


def get_domain_extractor_settings(wildcards):
    """metrics.domain_extractor as the job trains it (real data only, no augmentation); a
    saved state that it may not continue fails the DAG build."""
    from cxrlib.settings.classifier import classifier_settings

    settings = {
        **config["metrics"]["domain_extractor"],
        "weights": None,
        "augment": "none",
    }
    try:
        resolved = classifier_settings(settings).to_dict()
    except ValueError as exc:
        raise WorkflowError(f"metrics.domain_extractor: {exc}") from exc
    check_saved_state(
        "domain_extractor",
        "results/metrics/domain_extractor/state",
        resolved,
        "the domain extractor (metrics.domain_extractor)",
    )
    return settings
