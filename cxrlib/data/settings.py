"""Turning validated config sections into the library's settings objects.

The schema (schemas/config.schema.yaml) has already checked types and filled defaults; these
functions only map keys to dataclass fields, so library code never indexes raw dicts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cxrlib.data.phantom import PhantomSpec
from cxrlib.data.prepare import DataSettings
from cxrlib.data.preprocess import PreprocessSettings


def data_settings(section: Mapping[str, Any]) -> DataSettings:
    """`config["data"]` -> DataSettings."""
    return DataSettings(
        val_source=section["val_source"],
        val_fraction=float(section["val_fraction"]),
        split_seed=int(section["split_seed"]),
        patient_id_patterns=tuple(section["patient_id_patterns"]),
        min_side_px=int(section["min_side_px"]),
        min_train_images_per_class=int(section["min_train_images_per_class"]),
        min_eval_images_per_class=int(section["min_eval_images_per_class"]),
        test_id_collisions=section["test_id_collisions"],
        source=section["source"],
        follow_links=section["follow_links"],
    )


def preprocess_settings(section: Mapping[str, Any]) -> PreprocessSettings:
    """`config["preprocess"]` -> PreprocessSettings."""
    return PreprocessSettings(
        size=int(section["size"]),
        normalisation=section["normalisation"],
        clahe_clip_limit=float(section["clahe_clip_limit"]),
        clahe_kernel_fraction=float(section["clahe_kernel_fraction"]),
        jpeg_draft=bool(section["jpeg_draft"]),
    )


def phantom_spec(section: Mapping[str, Any]) -> PhantomSpec:
    """`config["data"]["phantom"]` -> PhantomSpec."""
    low, high = (int(v) for v in section["size_px"])
    if low > high:
        raise ValueError(f"data.phantom.size_px must be [min, max], got [{low}, {high}]")
    return PhantomSpec(
        counts={split: dict(c) for split, c in section["counts"].items()},
        size_px=(low, high),
        seed=int(section["seed"]),
        max_images_per_patient=int(section["max_images_per_patient"]),
        rgb_fraction=float(section["rgb_fraction"]),
        test_shift=float(section.get("test_shift", 0.0)),
    )
