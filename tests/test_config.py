"""The config schema: defaults filled, unknown keys and wrong types named, overlays valid."""

import copy
from pathlib import Path

import jsonschema
import pytest
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from cxrlib.data.patients import DEFAULT_PATIENT_ID_PATTERNS
from cxrlib.data.settings import data_settings, phantom_spec, preprocess_settings

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = str(ROOT / "schemas" / "config.schema.yaml")


def _load(name: str) -> dict:
    return yaml.safe_load((ROOT / name).read_text())


def _merge(base: dict, overlay: dict) -> dict:
    """Snakemake's --configfile semantics: nested dicts are merged key by key."""
    out = copy.deepcopy(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _error_text(exc: BaseException) -> str:
    parts = [str(exc)]
    parts.extend(str(a) for a in getattr(exc, "args", ()))
    return "\n".join(parts)


@pytest.mark.parametrize("overlay", [None, "overlays/demo.yaml", "tests/config/test.yaml"])
def test_shipped_configs_validate_and_convert(overlay: str | None) -> None:
    config = _load("config.yaml")
    if overlay:
        config = _merge(config, _load(overlay))
    validate(config, SCHEMA)
    data_settings(config["data"])
    preprocess_settings(config["preprocess"])
    phantom_spec(config["data"]["phantom"])


def test_defaults_are_filled_from_the_schema() -> None:
    config: dict = {}
    validate(config, SCHEMA)
    assert config["preprocess"] == {
        "size": 256,
        "normalisation": "equalize",
        "clahe_clip_limit": 0.01,
        "clahe_kernel_fraction": 0.125,
        "jpeg_draft": True,
    }
    assert config["data"]["source"] == "folder"
    assert tuple(config["data"]["patient_id_patterns"]) == DEFAULT_PATIENT_ID_PATTERNS
    assert config["data"]["phantom"]["counts"]["train"] == {"NORMAL": 1341, "PNEUMONIA": 3875}


def test_config_yaml_patterns_match_the_library_defaults() -> None:
    assert tuple(_load("config.yaml")["data"]["patient_id_patterns"]) == DEFAULT_PATIENT_ID_PATTERNS


@pytest.mark.parametrize(
    ("config", "named"),
    [
        ({"data": {"sourse": "phantom"}}, "sourse"),
        ({"preprocess": {"size": "256"}}, "size"),
        ({"preprocess": {"normalisation": "histeq"}}, "histeq"),
        ({"data": {"val_fraction": 1.5}}, "val_fraction"),
        ({"colour": 1}, "colour"),
    ],
)
def test_bad_config_fails_naming_the_key(config: dict, named: str) -> None:
    with pytest.raises((WorkflowError, jsonschema.ValidationError)) as info:
        validate(config, SCHEMA)
    assert named in _error_text(info.value)


def test_every_schema_property_is_documented_in_config_yaml() -> None:
    """config.yaml documents every key inline: each schema key appears there with a comment."""
    schema = yaml.safe_load(Path(SCHEMA).read_text())
    text = (ROOT / "config.yaml").read_text()

    def keys(node: dict, prefix: str = ""):
        for name, sub in node.get("properties", {}).items():
            yield prefix + name
            yield from keys(sub, prefix + name + ".")

    for key in keys(schema):
        leaf = key.split(".")[-1]
        assert f"{leaf}:" in text, f"config.yaml does not show key {key}"
