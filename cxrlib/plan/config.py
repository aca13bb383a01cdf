"""The config as people write it, read as they mean it: before the schema validates it, YAML 1.1's
surprises are undone or named, and paths mean what they mean in a shell.

- Numbers: PyYAML (YAML 1.1, what Snakemake reads configs with) reads `3e-4` as the *string*
  "3e-4" (its floats need a dot: `3.0e-4`). Every such string in a config value becomes the
  float it spells (`NUMBER`), wherever it is, so `lr: 3e-4` works in every section.
- Booleans: YAML 1.1 reads `off`, `no`, `yes`, `on` (any case) as booleans. Where the schema
  wants a string (`augment: off`, `normalisation: none`...), a boolean is refused naming the
  key and the fix: quote the word.
- Paths: `~` and `$VARS` in the config's paths (`PATH_KEYS`, and every run's `resume_from`)
  are expanded as a shell would, so `data.root: ~/data/chest_xray` is the folder in your home.
- Digits where the schema wants text (`swav_sha256: 12345678`): YAML read a number; refused
  with "quote it" (a leading 0 may already be lost to YAML's octal).
- `.nan` and `.inf` are refused everywhere: a schema's minimum and maximum let NaN through.
- Then the schema: a value it refuses is named by its dotted key with the fix (the range, the
  allowed words, "a share: 5% is 0.05"), not as a schema dump.

`normalise` is called by the Snakefile before `validate` (schemas/config.schema.yaml).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from cxrlib.plan.errors import PlanError

# A number YAML 1.1 leaves as a string: an exponent without a dot ("3e-4", "1E+5", "-2e3").
NUMBER = re.compile(r"^[-+]?(\d+|\d*\.\d+|\d+\.)[eE][-+]?\d+$")
# Values that are text whatever they look like (hashes, addresses, names).
TEXT_KEYS = ("sha256", "url", "name", "run", "use_snapshot")
# Config paths (section, key) holding file or folder paths.
PATH_KEYS = (
    ("data", "root"),
    ("metrics", "weights_dir"),
    ("metrics", "inception_weights"),
    ("metrics", "xrv_weights"),
    ("metrics", "swav_weights"),
)
BOOLEAN_WORDS = "off/on, no/yes, false/true, n/y"


def _expand(value: Any) -> Any:
    """~ and $VARS of a path value as a shell expands them (other values as they are)."""
    return os.path.expandvars(os.path.expanduser(value)) if isinstance(value, str) else value


def _numbers(value: Any, key: str = "") -> Any:
    """`value` with YAML 1.1's exponent strings turned into floats, recursively."""
    if isinstance(value, Mapping):
        return {k: _numbers(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_numbers(v, key) for v in value]
    if isinstance(value, str) and not key.endswith(TEXT_KEYS) and NUMBER.match(value.strip()):
        return float(value)
    return value


def _type_allows_bool(schema: Mapping[str, Any]) -> bool:
    kinds = schema.get("type")
    kinds = [kinds] if isinstance(kinds, str) else list(kinds or [])
    if "enum" in schema:
        return any(isinstance(v, bool) for v in schema["enum"])
    return not kinds or "boolean" in kinds


def _resolve(schema: Mapping[str, Any], root: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        node: Any = root
        for part in ref[2:].split("/"):
            node = node[part]
        return node
    return schema


def _kinds(schema: Mapping[str, Any]) -> list[str]:
    kinds = schema.get("type")
    return [kinds] if isinstance(kinds, str) else list(kinds or [])


def _booleans(value: Any, schema: Mapping[str, Any], root: Mapping[str, Any], path: str) -> None:
    """Refuse what YAML 1.1 read otherwise than meant: a boolean where the schema wants no
    boolean (a word read as one), a number where it wants only text (digits read as one), and
    NaN or infinity anywhere."""
    schema = _resolve(schema, root)
    key = path.rsplit(".", 1)[-1]
    if isinstance(value, bool):
        if not _type_allows_bool(schema):
            raise PlanError(
                f"{path} is {str(value).lower()}: YAML reads the words {BOOLEAN_WORDS} as "
                f"booleans. Quote the word you meant, e.g. {key}: 'off'"
            )
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise PlanError(f"{path} must be a finite number, got {value} (YAML's .nan or .inf)")
    if isinstance(value, int | float) and _kinds(schema) == ["string"]:
        raise PlanError(
            f"{path} is the number {value}: YAML reads digits as a number. Quote the text you "
            f"meant, e.g. {key}: '{value}' (with every digit as written)"
        )
    if isinstance(value, Mapping):
        properties = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            sub = properties.get(key, extra if isinstance(extra, Mapping) else {})
            _booleans(item, sub or {}, root, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for i, item in enumerate(value):
            _booleans(item, schema["items"], root, f"{path}[{i}]")


def normalise(config: dict[str, Any], schema: Mapping[str, Any]) -> dict[str, Any]:
    """The config as its author meant it (module docstring), changed in place and returned.

    Raises PlanError for a boolean where the schema wants a word."""
    config.update(_numbers(config))
    for section, key in PATH_KEYS:
        if isinstance(config.get(section), dict) and key in config[section]:
            config[section][key] = _expand(config[section][key])
    for model in ("stylegan2ada",):
        section = config.get(model)
        if not isinstance(section, dict):
            continue
        parts = [section.get("settings"), *(section.get("runs") or {}).values()]
        for part in parts:
            if isinstance(part, dict) and isinstance(part.get("resume_from"), str):
                part["resume_from"] = _expand(part["resume_from"])
    classifier = (config.get("classifier") or {}).get("settings")
    if isinstance(classifier, dict) and classifier.get("weights") not in (None, "imagenet"):
        classifier["weights"] = _expand(classifier["weights"])
    _booleans(config, schema, schema, "")
    check_schema(config, schema)
    return config


def _fix(error: Any) -> str:
    """What to write instead, for a jsonschema error."""
    node, value = error.schema, error.instance
    if error.validator == "type":
        words = {"number": "a number", "integer": "a whole number", "string": "text",
                 "boolean": "true or false", "null": "null (unquoted)", "array": "a list",
                 "object": "a section of keys"}  # fmt: skip
        wanted = ", or ".join(words.get(kind, kind) for kind in _kinds(node))
        hint = ""
        if isinstance(value, str) and value.strip().endswith("%"):
            hint = " (a share is written as a fraction: 5% is 0.05)"
        return f"write {wanted}{hint}"
    if error.validator in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        low = node.get("minimum", node.get("exclusiveMinimum", "-inf"))
        high = node.get("maximum", node.get("exclusiveMaximum", "inf"))
        return f"use a value from {low} to {high}"
    if error.validator == "enum":
        return "use one of " + ", ".join(str(v) for v in node["enum"])
    if error.validator == "additionalProperties":
        return (
            "check the key's spelling against config.yaml, where every key is shown (a new "
            "generator's section is described in schemas/config.schema.yaml first: "
            "docs/development.md)"
        )
    return "see the key's comment in config.yaml"


def check_schema(config: Mapping[str, Any], schema: Mapping[str, Any]) -> None:
    """Refuse the first value the schema refuses, named by its dotted key with the fix
    (PlanError). Missing keys are the schema's own business (Snakemake's validate fills
    their defaults)."""
    import jsonschema

    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = [e for e in validator.iter_errors(config) if e.validator != "required"]
    if not errors:
        return
    error = jsonschema.exceptions.best_match(errors)
    path = ".".join(str(p) for p in error.absolute_path) or "the config"
    raise PlanError(f"{path}: {error.message}. Fix: {_fix(error)}")


def normalise_file(config: dict[str, Any], schema_path: str | Path) -> dict[str, Any]:
    """`normalise` against the schema in `schema_path` (YAML)."""
    return normalise(config, yaml.safe_load(Path(schema_path).read_text()))
