"""The workflow on a cluster: per-rule requests, and the `slurm` profile that users type.

Users type `snakemake --profile slurm` on the login node. Snakemake (>= 8) reads two kinds of
profile there: a global one found by name (`slurm`) in the working directory, then in
`~/.config/snakemake/` ($XDG_CONFIG_HOME), then in `/etc/xdg/snakemake/` ($XDG_CONFIG_DIRS):
the site's or the user's settings (executor, account, partition, qos, jobs, retries); and the
workflow profile `profiles/default/`, loaded automatically. A key that both set is taken from
the workflow profile whole (`default-resources` and `set-resources` included), so this project
keeps its per-rule requests out of both profiles' keys: they live in
`profiles/default/resources.yaml` and reach each rule as its own `threads:` and `resources:`,
the lowest layer, which every profile's `default-resources` and `set-resources` refine key by
key. Nothing either side sets is erased.

Where a user has no `slurm` profile, `install_profile` (`make cluster-profile`, or
`python -m cxrlib.cluster install --account A --partition P`) writes the project's template
(`profiles/slurm/config.yaml`) to `~/.config/snakemake/slurm/`; where one exists anywhere
Snakemake looks, it is left alone and `python -m cxrlib.cluster show` says which file
`--profile slurm` reads and what it sets for sbatch.

This module imports neither torch nor snakemake at import time: the DAG build reads it.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import yaml

PROFILE_NAME = "slurm"
PROFILE_FILES = ("config.yaml", "profile.yaml")
# Resource keys with a fixed meaning and type (anything else is passed through to Snakemake).
_INT_KEYS = {"threads": 1, "retries": 0, "mem_mb": 1, "runtime": 1, "gpu": 0, "disk_mb": 1}
# Keys that are rule settings, not resources.
_RULE_KEYS = ("threads", "retries")
# Keys of a global profile that the sbatch calls depend on, shown by `show`.
SBATCH_KEYS = ("slurm_account", "slurm_partition", "qos", "slurm_extra", "gpu_model")


@dataclass(frozen=True)
class RuleRequests:
    """Threads and resources per rule: `default` for every rule, `rules[name]` on top."""

    default: Mapping[str, Any]
    rules: Mapping[str, Mapping[str, Any]]
    source: Path = field(default=Path("profiles/default/resources.yaml"))

    def _merged(self, rule: str) -> dict[str, Any]:
        return {**self.default, **self.rules.get(rule, {})}

    def threads(self, rule: str) -> int:
        """CPUs of `rule`'s jobs (1 where neither the rule nor the default names any)."""
        return int(self._merged(rule).get("threads", 1))

    def resources(self, rule: str) -> dict[str, Any]:
        """Resources of `rule`'s jobs (mem_mb, runtime in minutes, gpu, ...), threads aside."""
        return {k: v for k, v in self._merged(rule).items() if k not in _RULE_KEYS}

    def retries(self, rule: str) -> int | None:
        """Retries of `rule`'s failed jobs; None: the profile's (or command line's) `retries`."""
        return self._merged(rule).get("retries")

    def check_rules(self, names: Iterable[str]) -> None:
        """Raise ValueError when the file names rules the workflow does not have (a typo
        there would silently leave a rule at the defaults)."""
        unknown = sorted(set(self.rules) - set(names))
        if unknown:
            raise ValueError(
                f"{self.source} names rule(s) the workflow does not have: "
                f"{', '.join(unknown)}; rules are: {', '.join(sorted(names))}"
            )


def _check_requests(where: str, values: Any, source: Path) -> dict[str, Any]:
    if not isinstance(values, Mapping):
        raise ValueError(f"{source}: {where} must be a mapping of resource: value, got {values!r}")
    for key, value in values.items():
        if key in _INT_KEYS:
            low = _INT_KEYS[key]
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(
                    f"{source}: {where}.{key} must be an integer >= {low}, got {value!r}"
                )
        elif not isinstance(value, str | int | float) or isinstance(value, bool):
            raise ValueError(f"{source}: {where}.{key} must be a number or a string, got {value!r}")
    return dict(values)


def load_rule_requests(path: str | Path) -> RuleRequests:
    """Read and check a resources file (keys `default` and `rules`); ValueError names the
    file and the bad key."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from exc
    extra = sorted(set(data) - {"default", "rules"})
    if extra:
        raise ValueError(f"{path}: unknown top-level key(s) {', '.join(extra)}; use default, rules")
    default = _check_requests("default", data.get("default") or {}, path)
    rules = data.get("rules") or {}
    if not isinstance(rules, Mapping):
        raise ValueError(f"{path}: rules must map rule names to their requests")
    checked = {name: _check_requests(f"rules.{name}", v, path) for name, v in rules.items()}
    return RuleRequests(default, checked, path)


# ---------------------------------------------------------------------------- the profile


def profile_search_dirs(cwd: str | Path | None = None) -> list[Path]:
    """Where `--profile slurm` is looked for, in Snakemake's order (snakemake.cli's
    get_profile_dir): the working directory, the user's config folder ($XDG_CONFIG_HOME), the
    first site config folder ($XDG_CONFIG_DIRS)."""
    from platformdirs import AppDirs

    dirs = AppDirs("snakemake", "snakemake")
    return [Path(cwd or os.getcwd()), Path(dirs.user_config_dir), Path(dirs.site_config_dir)]


_CONFIG_NAME = re.compile(r"(?:profile|config)(?:\.v(?P<major>\d+)\+)?\.yaml")


def _profile_file(candidate: Path) -> Path | None:
    """The file Snakemake reads for a profile at `candidate` (a file, or a folder with
    config.yaml / profile.yaml / config.vN+.yaml for N <= its major version), or None."""
    if candidate.is_file():
        return candidate
    if not candidate.is_dir():
        return None
    major = int(version("snakemake").split(".")[0])
    found = {}
    for name in os.listdir(candidate):
        m = _CONFIG_NAME.fullmatch(name)
        if m and int(m.group("major") or 0) <= major:
            found[name] = int(m.group("major") or 0)
    return candidate / max(found, key=found.get) if found else None


class ProfileShadowed(ValueError):
    """`name` exists in the working directory but is no profile: Snakemake looks only there."""


def find_profile(name: str = PROFILE_NAME, cwd: str | Path | None = None) -> Path | None:
    """The config file Snakemake reads for `--profile name` (None: it finds none), as
    snakemake.cli.get_profile_dir decides: a `name` in the working directory is the only
    place looked at (ProfileShadowed if it is no profile), else the user's, then the site's
    config folder."""
    local = Path(cwd or os.getcwd()) / name
    if local.exists():
        found = _profile_file(local)
        if found is None:
            raise ProfileShadowed(
                f"{local} exists but holds no config.yaml or profile.yaml: `snakemake "
                f"--profile {name}` run here looks only at it. Rename it, or put your "
                "profile's config.yaml in it"
            )
        return found
    for folder in profile_search_dirs(cwd)[1:]:
        found = _profile_file(folder / name)
        if found is not None:
            return found
    return None


def _fill(template: str, values: Mapping[str, str | None]) -> str:
    """The template with `# key: "<...>"` placeholder lines of `values` filled in."""
    lines = []
    for line in template.splitlines():
        stripped = line.lstrip()
        for key, value in values.items():
            if value and stripped.startswith(f"# {key}:"):
                indent = line[: len(line) - len(stripped)]
                line = f"{indent}{key}: {yaml.safe_dump(value, default_style=chr(34)).strip()}"
        lines.append(line)
    return "\n".join(lines) + "\n"


_SLURM_NAME = re.compile(r"[A-Za-z0-9_.+-]+")


def gpu_rules(requests: RuleRequests) -> list[str]:
    """The rules whose jobs ask for at least one GPU (`gpu` in the requests file), sorted;
    `train_generator` (the requests of a generator's training rule without its own entry) is
    not a rule: a generator added later is named in the profile by its own rule."""
    return sorted(
        r
        for r in requests.rules
        if int(requests.resources(r).get("gpu", 0) or 0) > 0 and r != "train_generator"
    )


def _gpu_partition_block(partition: str, requests: RuleRequests) -> str:
    """A `set-resources` block sending every GPU rule's jobs to `partition`."""
    value = yaml.safe_dump(partition, default_style=chr(34)).strip()
    lines = [
        f"# The GPU rules ({requests.source.name}: gpu >= 1) to the GPU partition; the other",
        "# jobs go to default-resources' slurm_partition.",
        "set-resources:",
        *(f"  {rule}: {{slurm_partition: {value}}}" for rule in gpu_rules(requests)),
    ]
    return "\n".join(lines) + "\n"


def install_profile(
    template: str | Path,
    *,
    account: str | None = None,
    partition: str | None = None,
    gpu_partition: str | None = None,
    cwd: str | Path | None = None,
) -> tuple[Path, bool]:
    """Install the project's cluster profile as the user's `slurm` profile, unless one exists.

    `partition` is every job's (default-resources slurm_partition); `gpu_partition`, where
    given, that of the rules that ask for a GPU (set-resources), read from the requests file
    beside the template (../default/resources.yaml). Returns (the config file `--profile
    slurm` reads, whether this call wrote it). An existing profile (the user's, the site's,
    or one in `cwd`) is never changed.
    """
    for option, value in (("account", account), ("partition", partition),
                          ("gpu-partition", gpu_partition)):  # fmt: skip
        if value and not _SLURM_NAME.fullmatch(value):
            raise ValueError(
                f"--{option} {value!r}: SLURM account and partition names hold letters, "
                "digits and _ . - + only (the plugin passes them through a shell)"
            )
    existing = find_profile(PROFILE_NAME, cwd)
    if existing is not None:
        return existing, False
    from platformdirs import user_config_dir

    target = Path(user_config_dir("snakemake", "snakemake")) / PROFILE_NAME / "config.yaml"
    target.parent.mkdir(parents=True, exist_ok=True)
    text = _fill(
        Path(template).read_text(), {"slurm_account": account, "slurm_partition": partition}
    )
    if gpu_partition:
        requests = load_rule_requests(Path(template).parent.parent / "default/resources.yaml")
        text += _gpu_partition_block(gpu_partition, requests)
    tmp = target.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(target)
    return target, True


def duplicate_top_keys(text: str) -> dict[str, int]:
    """Top-level keys written more than once in a YAML mapping document (yaml.safe_load keeps
    the last silently: a second `set-resources:` pasted below the first erases it)."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return {}
    if not isinstance(node, yaml.MappingNode):
        return {}
    counts: dict[str, int] = {}
    for key, _ in node.value:
        if isinstance(key, yaml.ScalarNode):
            counts[key.value] = counts.get(key.value, 0) + 1
    return {k: n for k, n in counts.items() if n > 1}


def describe_profile(path: Path) -> list[str]:
    """Lines saying what a profile sets that reaches sbatch (for `show`)."""
    try:
        text = path.read_text()
        data = yaml.safe_load(text)
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as exc:
        return [f"cannot read {path} as a profile: {exc}"]
    twice = duplicate_top_keys(text)
    if not isinstance(data, Mapping) or not data:
        return [f"{path} is not a profile (YAML mapping of snakemake options)"]
    out = [f"executor: {data.get('executor', '(not set: jobs run on this machine!)')}"]
    out += [
        f"WARNING: {key} appears {n} times in {path}; YAML keeps only the last one: merge them"
        for key, n in twice.items()
    ]
    defaults = data.get("default-resources") or {}
    if isinstance(defaults, list):  # the `key=value` list form
        defaults = dict(item.split("=", 1) for item in defaults if "=" in item)
    for key in SBATCH_KEYS:
        if key in defaults:
            out.append(f"default-resources {key}: {defaults[key]}")
    if "slurm_account" not in defaults:
        out.append("default-resources slurm_account: (not set: the plugin guesses one)")
    if "slurm_partition" not in defaults:
        out.append("default-resources slurm_partition: (not set: the cluster's default)")
    for key in ("set-threads", "set-resources"):
        per_rule = data.get(key) or {}
        if isinstance(per_rule, list):  # the `rule:value` / `rule:key=value` list form
            out += [f"{key} {item}" for item in per_rule]
            continue
        for rule, values in per_rule.items() if isinstance(per_rule, Mapping) else ():
            out.append(f"{key} {rule}: {values}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cxrlib.cluster",
        description="Install or show the `slurm` profile that `snakemake --profile slurm` reads.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    inst = sub.add_parser("install", help="install profiles/slurm as ~/.config/snakemake/slurm")
    template = Path(__file__).parents[1] / "profiles/slurm/config.yaml"
    inst.add_argument("--template", default=str(template), help="the profile to install")
    inst.add_argument("--account", help="slurm_account for every job (sbatch -A)")
    inst.add_argument("--partition", help="slurm_partition for every job (sbatch -p)")
    inst.add_argument(
        "--gpu-partition", help="slurm_partition for the jobs that ask for a GPU (set-resources)"
    )
    sub.add_parser("show", help="which file --profile slurm reads, and what it sets")
    args = parser.parse_args(argv)
    try:
        return _run(args)
    except (ProfileShadowed, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    if args.command == "install":
        path, written = install_profile(
            args.template,
            account=args.account,
            partition=args.partition,
            gpu_partition=args.gpu_partition,
        )
        if written:
            print(f"installed the cluster profile {path} (from {args.template})")
            if not (args.account and args.partition):
                print("  set slurm_account / slurm_partition there if your cluster has no defaults")
        else:
            print(f"kept your existing profile {path}: `snakemake --profile slurm` reads it")
            if args.account or args.partition or args.gpu_partition:
                print("  --account/--partition/--gpu-partition were not applied: edit that file")
    else:
        path = find_profile()
        if path is None:
            print(
                "no `slurm` profile: `snakemake --profile slurm` will fail; run "
                "`make cluster-profile` (or python -m cxrlib.cluster install)"
            )
            return 1
        print(f"`snakemake --profile slurm` reads {path}")
    for line in describe_profile(path):
        print(f"  {line}")
    print(
        "per-rule threads, memory, runtime and GPUs: profiles/default/resources.yaml; "
        "`snakemake --profile slurm -n` lists every job with the resources it will request"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
