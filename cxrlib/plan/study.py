"""The study a config describes: its outputs, generators and runs, scoring inputs, classifier
arms, weights files and the checks made at DAG build.

`Study(config)` is built once per `snakemake` call by rules/common.smk; its methods are what the
input functions and params of the rules return. Every method answers from the config and the
files on disk alone (no snakemake object), raising PlanError with the key and the fix.

Why one module of about 700 lines: `Study` is the one object rules/common.smk asks, and each
method is a short answer from the config; split, the planning of one stage's outputs would
be spread over files that all need the same parsed config.
"""

from __future__ import annotations

import math
import os
from collections.abc import Collection
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

from cxrlib.plan import paths
from cxrlib.plan.errors import PlanError
from cxrlib.plan.generators import (
    GENERATOR_TRAINING,
    generator_names,
    merged_settings,
    planning_module,
)

# The splits the real-vs-real floors compare (cxrlib.scoring.reference.COMPARISONS), whatever
# metrics.references lists: the same real_features rule declares the extra files.
FLOOR_SPLITS = ("train", "val", "test")

# The metrics keys each job reads, and only those (params are a rerun trigger), so passing the
# whole section would rerun every scoring job (hours of GPU) when, say, only shift_factor
# changed.
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
REFERENCE_KEYS = ("kid_subsets", "kid_subset_size", "prc_neighborhood", "dc_neighborhood", "seed")


class Study:
    """The study of one config (validated and with defaults filled by the schema)."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        # config is fixed for a snakemake call; input functions ask the same many times
        self.run_settings = lru_cache(maxsize=None)(self._run_settings)

    # -- generators and their runs -------------------------------------------------------------

    @cached_property
    def generators(self) -> list[str]:
        """Every generator section of the config (cxrlib.plan.generators)."""
        return generator_names(self.config)

    def enabled(self, model: str) -> bool:
        """A generator is in the study when it has at least one run."""
        return bool(self.config[model]["runs"])

    @property
    def enabled_generators(self) -> list[str]:
        return [m for m in self.generators if self.enabled(m)]

    def runs(self, model: str) -> list[str]:
        return list(self.config[model]["runs"])

    def model_runs(self) -> list[tuple[str, str]]:
        """(model, run) of every run of the study."""
        return [(m, r) for m in self.enabled_generators for r in self.runs(m)]

    def _run_settings(self, model: str, run: str) -> Any:
        """A run's validated settings object; a bad key fails naming the run and the key."""
        module = planning_module(model)
        merged = merged_settings(self.config, model, run)
        start = merged.get("resume_from")
        if model == "stylegan2ada" and start is not None:
            merged["resume_from"] = self.resolve_resume_from(run, start)
        try:
            settings = module.run_settings(merged)
        except (TypeError, ValueError) as exc:
            raise PlanError(f"{model}.runs.{run}: {exc}") from exc
        if model == "stylegan2ada" and start is not None:
            self._check_pretrained_size(run, start, settings.resolution)
        return settings

    def snapshots(self, model: str, run: str) -> list[str]:
        """Snapshot stems a run writes: epochNNNN (DCGAN), kimgNNNNNN (StyleGAN2-ADA)."""
        return [stem for stem, _ in planning_module(model).snapshots(self.run_settings(model, run))]

    def resolution(self, model: str, run: str) -> int:
        """Side length (px) of a run's generated images."""
        return planning_module(model).resolution(self.run_settings(model, run))

    def grid_columns(self, model: str, run: str) -> int:
        """Images per row of a run's fixed-noise grids."""
        return int(planning_module(model).grid_columns(self.run_settings(model, run)))

    def check_snapshot(self, model: str, run: str, snapshot: str) -> None:
        names = self.snapshots(model, run)
        if snapshot not in names:
            raise PlanError(
                f"{model} run {run} writes no snapshot {snapshot}; it writes {', '.join(names)}"
            )

    def display_name(self, model: str) -> str:
        return planning_module(model).DISPLAY_NAME

    def generator_params(self, model: str) -> dict[str, str]:
        """params of a generator's rules: the model (the job scripts call
        `cxrlib.<model>.jobs`), and its name and progress unit for the report's captions."""
        planning = planning_module(model)
        return {
            "model": model,
            "display_name": planning.DISPLAY_NAME,
            "progress": planning.PROGRESS,
        }

    def requests_rule(self, rule: str, listed: Collection[str]) -> str:
        """The resources.yaml entry of `rule`'s requests: its own, or for a generator's training
        rule that has none (a generator added later) the `train_generator` entry."""
        model = rule.removeprefix("train_")
        if rule not in listed and rule.startswith("train_") and model in self.generators:
            if GENERATOR_TRAINING not in listed:
                raise PlanError(
                    f"profiles/default/resources.yaml has no entry for {rule} and no "
                    f"{GENERATOR_TRAINING} entry for it to take: a training job would ask for "
                    "no GPU; add one of them (threads, gpu, mem_mb, runtime, retries)"
                )
            return GENERATOR_TRAINING
        return rule

    def state_template(self, rule: str) -> str | None:
        """The resume-state folder of a training rule's jobs, as a template of its wildcards
        (None for rules that keep no state)."""
        if rule in paths.STATE_DIRS:
            return paths.STATE_DIRS[rule]
        model = rule.removeprefix("train_")
        if rule.startswith("train_") and model in self.generators:
            return paths.STATE.format(model=model, run="{run}")
        return None

    # -- the study's outputs -------------------------------------------------------------------

    def run_tables(self) -> dict[str, list[str]]:
        """Per run: its sweep table and the memorisation audit of the snapshot that feeds the
        classifier (`use_snapshot`)."""
        sweeps, audits = [], []
        for model, run in self.model_runs():
            choice = self.config[model]["use_snapshot"]
            sweeps.append(paths.SWEEP.format(model=model, run=run))
            audits.append(paths.AUDIT.format(model=model, run=run, snapshot=choice))
        return {"sweeps": sweeps, "memorisation": audits}

    def study_outputs(self) -> list[str]:
        """Every stage's tables and figures (the runtime report waits for all of them)."""
        targets = [
            paths.MANIFEST,
            *(
                paths.DATA_QC.format(figure=f)
                for f in ("class_counts", "examples", "intensity_histograms")
            ),
        ]
        tables = self.run_tables()
        targets += tables["sweeps"] + tables["memorisation"]
        if tables["sweeps"]:
            targets.append(paths.SUMMARY)
        if self.floor_resolutions():
            targets += [paths.REAL_REFERENCE, paths.REAL_DISTANCES]
        if self.with_classifier:
            targets.append(paths.COMPARISON)
        return targets

    def final_outputs(self) -> list[str]:
        """What `snakemake` builds by default: every stage's tables and figures, the runtimes
        and the report's front page with the headline results."""
        return [*self.study_outputs(), paths.RUNTIME_FIGURE, paths.HEADLINE_PAGE]

    def use_snapshots(self) -> dict[str, str]:
        """model -> the snapshot whose samples feed the audit and the classifier."""
        return {m: self.config[m]["use_snapshot"] for m in self.enabled_generators}

    def chosen_samples(self, model: str) -> list[str]:
        """The synthetic-image folders of a model's chosen snapshot, one per run."""
        choice = self.config[model]["use_snapshot"]
        return [paths.SAMPLES.format(model=model, run=r, snapshot=choice) for r in self.runs(model)]

    def headline_inputs(self) -> dict[str, Any]:
        """The tables the front page summarises, the real-to-real floors where some GAN run is
        scored, and each run's chosen samples (the summary figure)."""
        inputs: dict[str, Any] = dict(self.run_tables())
        if self.floor_resolutions():
            inputs["real_reference"] = paths.REAL_REFERENCE
        inputs["samples"] = [f for m in self.enabled_generators for f in self.chosen_samples(m)]
        if self.with_classifier:
            inputs["comparison"] = paths.COMPARISON
        return inputs

    # -- scoring -------------------------------------------------------------------------------

    @property
    def metrics(self) -> dict[str, Any]:
        return self.config["metrics"]

    def metrics_subset(self, keys: tuple[str, ...]) -> dict[str, Any]:
        return {key: self.metrics[key] for key in keys}

    def score_metrics(self) -> dict[str, Any]:
        """The metrics keys a snapshot's scores depend on; the xrv and swav files' sha256 only
        where they are scored, so studies without them keep their params."""
        extra = tuple(
            f"{name}_sha256" for name in ("xrv", "swav") if name in self.metrics["extractors"]
        )
        quantile = self.metrics["memorisation"]["feature_quantile"]  # the near-copy threshold
        return {**self.metrics_subset((*SCORE_KEYS, *extra)), "near_copy_quantile": quantile}

    def sweep_metrics(self) -> dict[str, Any]:
        """The metrics keys a sweep table depends on, the near-copy limit among them."""
        limit = self.metrics["memorisation"]["max_near_copy_share"]
        return {**self.metrics_subset(SWEEP_KEYS), "max_near_copy_share": limit}

    def reference_settings(self) -> dict[str, Any]:
        """The metrics keys the floors use, so floors and scores are computed alike (the shift
        flag's factor is the real_distances and headline rules' business)."""
        return self.metrics_subset(REFERENCE_KEYS)

    def shift_factor(self) -> float:
        """metrics.shift_factor, refused unless a finite number > 0 (the schema lets .nan
        and .inf through)."""
        factor = self.metrics["shift_factor"]
        if not (
            isinstance(factor, int | float)
            and not isinstance(factor, bool)
            and math.isfinite(factor)
            and factor > 0
        ):
            raise PlanError(
                f"metrics.shift_factor must be a finite number > 0, got {factor!r} (e.g. 3: "
                "flag the test split when FID(train, test) exceeds 3 times the "
                "same-distribution distances)"
            )
        return float(factor)

    def extractor_inputs(self, extractors: list[str]) -> dict[str, str]:
        """Weights files the given extractors need, as named inputs."""
        inputs = {}
        if "inception" in extractors:
            inputs["inception"] = self.inception_weights()
        if "cxr" in extractors:
            self.positive_label()  # the cxr extractor is a classifier: two classes needed
            inputs["domain"] = paths.DOMAIN_MODEL
        if "xrv" in extractors:
            inputs["xrv"] = self.xrv_weights()
        if "swav" in extractors:
            inputs["swav"] = self.swav_weights()
        return inputs

    def extractor_sha256(self, extractor: str) -> str:
        """The sha256 an extractor's weights file is checked against: metrics.<name>_sha256 for
        xrv and swav, else metrics.inception_sha256 (which cxr ignores; kept so these jobs'
        params stay as they were)."""
        return self.metrics[
            f"{extractor}_sha256" if extractor in ("xrv", "swav") else "inception_sha256"
        ]

    def audit_inputs(self) -> dict[str, str]:
        """The weights the memorisation audit's feature space needs."""
        return self.extractor_inputs([self.memorisation_extractor()])

    def memorisation_extractor(self) -> str:
        """The audit's feature space: the CXR extractor where configured (it knows the
        anatomy)."""
        extractors = self.metrics["extractors"]
        return "cxr" if "cxr" in extractors else extractors[0]

    def score_inputs(self, model: str, run: str, snapshot: str) -> dict[str, str]:
        """A run's snapshots, the real features at its resolution and the extractors' weights."""
        self.check_snapshot(model, run, snapshot)
        res = self.resolution(model, run)
        inputs = {
            "snapshots": paths.SNAPSHOTS.format(model=model, run=run),
            "train_cache": paths.CACHE.format(split="train"),  # its patient ids: near copies
            **self.extractor_inputs(self.metrics["extractors"]),
        }
        for extractor in self.metrics["extractors"]:
            for split in self.metrics["references"]:
                inputs[f"real_{extractor}_{split}"] = paths.REAL_FEATURES.format(
                    extractor=extractor, split=split, res=res
                )
        return inputs

    def run_trajectory(self, model: str, run: str) -> dict[str, Any]:
        """The settings that decide what a run's snapshots hold: all but those its resume
        contract lets change (snapshot and logging intervals) and its length. A score job's
        parameter: extending a run (a longer length) keeps its earlier snapshots, whose scores
        stay valid, while a run trained again with other settings rescored."""
        module = planning_module(model)
        contract = module.RESUME_CONTRACT
        settings = module.resume_settings(self.run_settings(model, run), {})
        return {
            k: v for k, v in settings.items() if k not in contract.free and k != contract.length
        }

    def sweep_scores(self, model: str, run: str) -> list[str]:
        return [
            paths.SCORES.format(model=model, run=run, snapshot=s)
            for s in self.snapshots(model, run)
        ]

    def all_scores(self) -> list[str]:
        return [s for model, run in self.model_runs() for s in self.sweep_scores(model, run)]

    def run_resolutions(self) -> dict[str, int]:
        """{"model/run": image side in px} of every run, for the summary's floors."""
        return {f"{m}/{r}": self.resolution(m, r) for m, r in self.model_runs()}

    def floor_resolutions(self) -> list[int]:
        """Image sides (px) the runs' images are scored at: the ones floors are needed at."""
        return sorted({self.resolution(m, r) for m, r in self.model_runs()})

    def floor_features(self) -> list[tuple[str, int, str]]:
        """(extractor, resolution, split) of every real_features file the floors read."""
        return [
            (extractor, res, split)
            for extractor in self.metrics["extractors"]
            for res in self.floor_resolutions()
            for split in FLOOR_SPLITS
        ]

    def real_reference_inputs(self) -> dict[str, str]:
        """The manifest (feature rows -> patients) and every real_features file the floors
        read, named {extractor}_{split}_{res}."""
        inputs = {"manifest": paths.MANIFEST}
        for extractor, res, split in self.floor_features():
            inputs[f"{extractor}_{split}_{res}"] = paths.REAL_FEATURES.format(
                extractor=extractor, split=split, res=res
            )
        return inputs

    def sample_inputs(self, model: str, run: str, snapshot: str) -> dict[str, str]:
        """The snapshot to sample: a named one, or for "best" the snapshots plus the sweep
        table. A "best" that no reference split can choose fails, naming the key to change."""
        folder = paths.RUN_DIR.format(model=model, run=run)
        if snapshot == "best":
            from cxrlib.scoring.feasibility import best_refusal

            refusal = best_refusal(
                self.config, paths.CLASS_COUNTS, model, self.snapshots(model, run)
            )
            if refusal:
                raise PlanError(refusal)
            return {"sweep": f"{folder}/sweep.csv", "snapshots": f"{folder}/snapshots"}
        self.check_snapshot(model, run, snapshot)
        return {"snapshots": f"{folder}/snapshots"}

    def small_references_warning(self) -> str | None:
        """A warning naming each reference split too small for some metric, or None."""
        if not self.enabled_generators:
            return None
        from cxrlib.scoring.feasibility import check_references

        return check_references(self.config, paths.CLASS_COUNTS) or None

    # -- weights files -------------------------------------------------------------------------

    def _weights_dir(self) -> str:
        return self.metrics["weights_dir"]

    def check_classifier_models(self) -> None:
        """classifier.models names generator sections only (a typo would drop an arm), and no
        generator is named so that its arm real_<name> is another arm's name."""
        clash = [g for g in self.generators if g in ("oversampled", "classic")
                 or g.startswith("classic_")]  # fmt: skip
        if clash:
            raise PlanError(
                f"a generator section named {clash[0]!r} would make its classifier arm "
                f"real_{clash[0]} another arm's name (real_oversampled, real_classic, "
                "real_classic_<model>); rename the section"
            )
        unknown = [m for m in self.config["classifier"]["models"] if m not in self.generators]
        if unknown:
            raise PlanError(
                f"classifier.models names {', '.join(map(repr, unknown))}, which is not a "
                f"generator section of the config; generators: {', '.join(self.generators)}"
            )

    def check_weights_settings(self) -> None:
        """The weights settings of every configured feature space, checked when the DAG is
        built, whichever targets are asked for: an input function's error is not shown for a
        job whose outputs exist, so a bad setting would otherwise be skipped silently."""
        files = {"inception": self.inception_weights, "xrv": self.xrv_weights,
                 "swav": self.swav_weights}  # fmt: skip
        for extractor in self.metrics["extractors"]:
            if extractor in files:
                files[extractor]()

    def _configured_file(self, key: str, url_key: str, rule: str) -> str | None:
        configured = self.metrics[key]
        if configured and Path(configured).is_dir():
            raise PlanError(
                f"metrics.{key} {configured} is a folder: set it to the weights file itself"
            )
        if configured and not Path(configured).is_file():
            raise PlanError(
                f"metrics.{key} {configured} does not exist; download {self.metrics[url_key]} "
                f"there, or set it to null so that the {rule} rule downloads it (needs internet "
                "on the machine running snakemake)"
            )
        return configured or None

    def inception_weights(self) -> str:
        """The Inception weights file: configured, or where fetch_weights puts it."""
        configured = self._configured_file("inception_weights", "inception_url", "fetch_weights")
        return configured or self.fetched_inception_weights()

    def fetched_inception_weights(self) -> str:
        """Where fetch_weights saves the Inception file: weights_dir / the URL's file name."""
        name = self.metrics["inception_url"].rsplit("/", 1)[-1]
        return str(Path(self._weights_dir()) / name)

    def xrv_weights(self) -> str:
        """The torchxrayvision DenseNet file: configured, or where fetch_xrv_weights puts it."""
        configured = self._configured_file("xrv_weights", "xrv_url", "fetch_xrv_weights")
        return configured or self.fetched_xrv_weights()

    def fetched_xrv_weights(self) -> str:
        name = self.metrics["xrv_url"].rsplit("/", 1)[-1]
        return str(Path(self._weights_dir()) / "xrv" / name)

    def swav_weights(self) -> str:
        """The SwAV ResNet-50 checkpoint: configured, or where fetch_swav_weights puts it."""
        configured = self._configured_file("swav_weights", "swav_url", "fetch_swav_weights")
        if configured and not self.metrics["swav_sha256"]:
            raise PlanError(
                f"metrics.swav_weights {configured} has no sha256 to be checked against: set "
                f"metrics.swav_sha256 to the output of `sha256sum {configured}` (upstream "
                "publishes none), or set swav_weights to null so that fetch_swav_weights "
                "downloads the file and records it"
            )
        return configured or self.fetched_swav_weights()

    def fetched_swav_weights(self) -> str:
        name = self.metrics["swav_url"].rsplit("/", 1)[-1]
        return str(Path(self._weights_dir()) / "swav" / name)

    def imagenet_weights_path(self, arch: str) -> str:
        """Where fetch_classifier_weights puts torchvision's ImageNet weights for `arch`."""
        return f"{self._weights_dir()}/imagenet/{arch}.pth"

    def imagenet_url(self, arch: str) -> str:
        from cxrlib.weights import IMAGENET_URLS

        if arch not in IMAGENET_URLS:
            raise PlanError(f"no ImageNet weights known for {arch}")
        return IMAGENET_URLS[arch]

    def pretrained_gan_path(self, name: str) -> str:
        """Where fetch_pretrained_gan saves the published network `name`."""
        return f"{self._weights_dir()}/stylegan2ada/{name}.pkl"

    def pretrained_entry(self, name: str) -> dict[str, Any]:
        pretrained = self.config["stylegan2ada"].get("pretrained") or {}
        if name not in pretrained:
            raise PlanError(
                f"no network {name!r} under stylegan2ada.pretrained ({', '.join(pretrained)})"
            )
        return pretrained[name]

    # -- StyleGAN2-ADA start files (transfer learning) -----------------------------------------

    def resolve_resume_from(self, run: str, value: Any) -> str:
        """A run's resume_from as a file path: a name in stylegan2ada.pretrained becomes the
        file fetch_pretrained_gan writes; anything else is a file that must exist now and
        start like a network file (not an image, a web page, a text file...)."""
        pretrained = self.config["stylegan2ada"].get("pretrained") or {}
        known = ", ".join(pretrained) or "none configured"
        if not isinstance(value, str) or not value:
            raise PlanError(
                f"stylegan2ada.runs.{run}: resume_from must be a name in "
                f"stylegan2ada.pretrained ({known}) or a file path, got {value!r}"
            )
        if value in pretrained:
            return self.pretrained_gan_path(value)
        from cxrlib.stylegan2ada.settings import START_FILES, check_start_file

        value = os.path.expanduser(value)  # ~/nets/x.pkl as a shell would read it
        if stylegan_run_of(value) == run:
            raise PlanError(
                f"stylegan2ada.runs.{run}: resume_from {value} is a file of this run itself; "
                "to continue it, raise its total_kimg; to start a new run from it, give that "
                "run another name"
            )
        if not Path(value).exists() and not Path(value).is_symlink():
            raise PlanError(
                f"stylegan2ada.runs.{run}: resume_from {value} is neither a file nor a name in "
                f"stylegan2ada.pretrained ({known}); {START_FILES}, or add the network's url "
                "(and sha256) under stylegan2ada.pretrained"
            )
        try:
            check_start_file(value)
        except (OSError, ValueError) as exc:
            raise PlanError(f"stylegan2ada.runs.{run}: {exc}") from None
        return value

    def _check_pretrained_size(self, run: str, start: Any, resolution: int) -> None:
        published = (self.config["stylegan2ada"].get("pretrained") or {}).get(start) or {}
        size = published.get("resolution")
        if size is not None and size != resolution:
            raise PlanError(
                f"stylegan2ada.runs.{run}: resume_from {start} is a {size} px network "
                f"(stylegan2ada.pretrained.{start}.resolution) but the run has resolution "
                f"{resolution}: set resolution: {size} for this run, or start it from a network "
                "of its size"
            )

    def stylegan_train_inputs(self, run: str) -> dict[str, str]:
        """The training split, and the file the run starts from when it has one (so a
        fetch_pretrained_gan job runs before it and a changed file reruns it); a file of
        another run brings that run's train_log.csv, so that run finishes, or reruns, first."""
        inputs = {"cache": paths.CACHE.format(split="train")}
        start = self.run_settings("stylegan2ada", run).resume_from
        if start is not None:
            inputs["start"] = start
            other = stylegan_run_of(start)
            if other in self.config["stylegan2ada"]["runs"]:
                inputs["start_run"] = f"results/stylegan2ada/{other}/train_log.csv"
        return inputs

    def start_pin(self, run: str) -> dict[str, str]:
        """{name, sha256} of the published network a run starts from when its config pins a
        sha256 (the job checks the file against it), else {}."""
        start = merged_settings(self.config, "stylegan2ada", run).get("resume_from")
        pretrained = self.config["stylegan2ada"].get("pretrained") or {}
        if not isinstance(start, str) or start not in pretrained:
            return {}
        sha256 = pretrained[start].get("sha256") or ""
        return {"name": start, "sha256": sha256} if sha256 else {}

    # -- resume contracts at DAG build ---------------------------------------------------------

    def generator_settings(self, model: str, run: str) -> dict[str, Any]:
        """A run's settings as the job gets them (a plain dict: params are compared as text);
        a saved state of the run that they may not continue fails here."""
        from cxrlib.jobs.resume import read_record
        from cxrlib.plan.checks import check_saved_state

        module = planning_module(model)
        settings = self.run_settings(model, run)
        state = paths.STATE.format(model=model, run=run)
        saved = (read_record(state) or {}).get("settings") or {}
        check_saved_state(
            module.RESUME_CONTRACT,
            state,
            module.resume_settings(settings, saved),
            f"{model} run {run}",
            [(f"{stem}.pt", position) for stem, position in module.snapshots(settings)],
            module.SCHEDULE_KEY,
        )
        return module.resume_settings(settings, {})

    # -- classifier arms -----------------------------------------------------------------------

    @property
    def synthetic_class(self) -> str:
        return self.config["data"]["synthetic_class"]

    @cached_property
    def classes(self) -> list[str]:
        """The study's classes (train/'s class folders; phantoms: NORMAL, PNEUMONIA)."""
        from cxrlib.plan.checks import study_classes

        return study_classes(self.config)

    @cached_property
    def positive(self) -> str | None:
        """data.positive_class as checked (cxrlib.plan.checks.positive_class); None: one class,
        no classifier stage."""
        from cxrlib.plan.checks import positive_class

        return positive_class(self.config, self.classes)

    @property
    def with_classifier(self) -> bool:
        """Two classes: the classifier stage (and the CXR extractor it trains) runs."""
        return self.positive is not None

    def positive_label(self) -> str:
        """The class a classifier's score stands for (data.positive_class)."""
        if self.positive is None:
            raise PlanError(
                f"train/ holds one class ({', '.join(self.classes)}): no classifier can be "
                "trained, nor the cxr extractor (a classifier's features); score with "
                "metrics.extractors: [inception] or [xrv]"
            )
        return self.positive

    def class_pair(self) -> list[str]:
        """[positive, negative] class of the classifier; [] in a one-class study."""
        if self.positive is None:
            return []
        return [self.positive, next(c for c in self.classes if c != self.positive)]

    @staticmethod
    def ratio_label(value: Any) -> str:
        """A configured ratio as its wildcard text: "balance" or a number such as "0.5"."""
        return "balance" if str(value) == "balance" else f"{float(value):g}"

    def arm_names(self) -> list[str]:
        """Every arm name the study can have (the `arm` wildcard's values)."""
        synthetic = [f"real_{m}" for m in self.generators]
        classic = [f"real_classic_{m}" for m in self.generators]
        return ["real", "real_classic", CONTROL_ARM, *synthetic, *classic]

    def classifier_arms(self) -> list[tuple[str, str]]:
        """(arm, ratio) pairs: real; real_classic; for each enabled generator in
        classifier.models real_<model> at every ratio, and with
        classifier.classic_with_synthetic also real_classic_<model>; with any such arm and
        classifier.count_matched_control the control real_oversampled at every ratio."""
        classifier = self.config["classifier"]
        arms = [("real", "0")]
        if classifier["classic_augmentation"]:
            arms.append(("real_classic", "0"))
        ratios = [self.ratio_label(r) for r in classifier["ratios"]]
        models = [m for m in classifier["models"] if m in self.generators and self.enabled(m)]
        if models and classifier["count_matched_control"]:
            arms += [(CONTROL_ARM, r) for r in ratios]
        for model in models:
            arms += [(f"real_{model}", r) for r in ratios]
            if classifier["classic_with_synthetic"]:
                arms += [(f"real_classic_{model}", r) for r in ratios]
        return arms

    def arm_model(self, arm: str) -> str | None:
        """The generator whose samples an arm adds (real_<model>, real_classic_<model>)."""
        for prefix in ("real_classic_", "real_"):
            model = arm.removeprefix(prefix)
            if arm.startswith(prefix) and model in self.generators:
                return model
        return None

    def arm_additions(self, arm: str) -> tuple[str, str]:
        """(what the arm adds: none | synthetic | oversampled, its augmentation: none |
        classic)."""
        augment = "classic" if arm == "real_classic" or arm.startswith("real_classic_") else "none"
        if arm == CONTROL_ARM:
            return "oversampled", augment
        return ("synthetic" if self.arm_model(arm) else "none"), augment

    def classifier_runs(self, filename: str) -> list[str]:
        return [
            f"{paths.CLASSIFIER_RUN.format(arm=arm, ratio=ratio, seed=seed)}/{filename}"
            for arm, ratio in self.classifier_arms()
            for seed in self.config["classifier"]["seeds"]
        ]

    def classifier_weights(self) -> str | None:
        """classifier.settings.weights: null (random init), "imagenet" (fetched), or a file."""
        settings = self.config["classifier"]["settings"]
        weights = settings.get("weights")
        if weights == "imagenet":
            return self.imagenet_weights_path(settings.get("arch", "resnet50"))
        if weights and not Path(weights).is_file():
            raise PlanError(
                f"classifier.settings.weights {weights} does not exist; set it to null, to "
                '"imagenet" (fetched on the login node by fetch_classifier_weights) or to a '
                "file"
            )
        return weights or None

    def classifier_inputs(self, arm: str) -> dict[str, str]:
        """The weights file, and the synthetic samples an arm adds: the first run's chosen
        snapshot of its model."""
        inputs = {}
        weights = self.classifier_weights()
        if weights:
            inputs["weights"] = weights
        model = self.arm_model(arm)
        if model is not None:
            inputs["synthetic"] = self.chosen_samples(model)[0]
        return inputs

    def classifier_settings(self, arm: str, ratio: str, seed: str) -> dict[str, Any]:
        """The arm's settings: config settings, its augmentation, its seed and its ratio. A
        saved state of the run that they may not continue fails here."""
        from cxrlib.classifier.settings import classifier_settings
        from cxrlib.jobs.resume import CONTRACTS
        from cxrlib.plan.checks import check_saved_state

        _refuse_overridden("classifier.settings", self.config["classifier"]["settings"])
        added, augment = self.arm_additions(arm)
        settings = {
            **self.config["classifier"]["settings"],
            "weights": self.classifier_weights(),
            "augment": augment,
            "seed": int(seed),
        }
        run = f"{arm}/ratio{ratio}/seed{seed}"
        try:
            resolved = classifier_settings(settings).to_dict()
        except ValueError as exc:
            raise PlanError(f"classifier.settings: {exc}") from exc
        check_saved_state(
            CONTRACTS["classifier"],
            f"results/classifier/{run}/state",
            resolved,
            f"classifier run {run}",
        )
        return {"settings": settings, "ratio": ratio, "added": added}

    def domain_extractor_settings(self) -> dict[str, Any]:
        """metrics.domain_extractor as the job trains it (real data only, no augmentation); a
        saved state that it may not continue fails here."""
        from cxrlib.classifier.settings import classifier_settings
        from cxrlib.jobs.resume import CONTRACTS
        from cxrlib.plan.checks import check_saved_state

        _refuse_overridden("metrics.domain_extractor", self.metrics["domain_extractor"])
        settings = {**self.metrics["domain_extractor"], "weights": None, "augment": "none"}
        try:
            resolved = classifier_settings(settings).to_dict()
        except ValueError as exc:
            raise PlanError(f"metrics.domain_extractor: {exc}") from exc
        check_saved_state(
            CONTRACTS["domain_extractor"],
            paths.DOMAIN_STATE,
            resolved,
            "the domain extractor (metrics.domain_extractor)",
        )
        return settings


# The count-matched control arm: at each ratio, as many extra real images of the synthetic class
# (drawn with replacement) as the synthetic arms add (cxrlib.classifier.mixing).
CONTROL_ARM = "real_oversampled"  # the same name as cxrlib.classifier.arms.CONTROL_ARM

# Keys of a classifier settings section that the workflow sets itself, and where to say what
# you mean instead: accepted and then overwritten, they would be ignored without a word.
OVERRIDDEN = {
    "classifier.settings": {
        "augment": "each arm sets it (real_classic: classic augmentation, the others none); "
        "classifier.classic_augmentation turns the real_classic arm on or off",
        "seed": "the seeds are classifier.seeds (one run of every arm per seed)",
    },
    "metrics.domain_extractor": {
        "augment": "the domain extractor trains on the real images as they are",
        "weights": "the domain extractor starts from scratch (it must see only this study's "
        "training images)",
        "seed": None,  # honoured: listed so the message can name the honoured keys
    },
}


def _refuse_overridden(where: str, section: dict[str, Any]) -> None:
    """A key of `section` that the workflow overwrites is refused, naming what decides it."""
    for key, why in OVERRIDDEN[where].items():
        if why is not None and key in section:
            raise PlanError(f"{where}.{key} is not used: {why}. Remove it from your config")


def stylegan_run_of(path: str | Path) -> str | None:
    """The StyleGAN2-ADA run whose folder (results/stylegan2ada/<run>/) holds `path`, or None."""
    own = Path("results/stylegan2ada").resolve()
    resolved = Path(path).resolve()
    if resolved.is_relative_to(own) and resolved != own:
        return resolved.relative_to(own).parts[0]
    return None
