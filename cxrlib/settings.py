"""What every stage's settings dataclass checks alike (torch-free): each value's type against
its field's annotation, with the messages people need for what YAML did to their words."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any

# YAML 1.1 reads these words as booleans: a word meant as text must be quoted.
BOOLEAN_HINT = "YAML reads off/on, no/yes, false/true as booleans: quote the word ('off')"
NUMBER_HINT = "write numbers unquoted, with a dot before an exponent: 3.0e-4 or 0.0003"


def _kinds(annotation: Any) -> tuple[type, ...]:
    """The plain types an annotation admits: int | None -> (int, NoneType)."""
    if isinstance(annotation, str):
        annotation = eval(annotation, {"Path": Path, **vars(typing)})
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return tuple(k for arg in typing.get_args(annotation) for k in _kinds(arg))
    if annotation is None:
        return (type(None),)
    return (annotation,)


def check_types(section: str, settings: Any) -> None:
    """ValueError naming `section` and the key when a field's value has another type than its
    annotation allows (int for int, int or float for float, bool only for bool, finite
    numbers), saying what YAML did where it explains the mistake."""
    for field in dataclasses.fields(settings):
        value = getattr(settings, field.name)
        kinds = _kinds(field.type)
        if isinstance(value, bool):
            ok = bool in kinds
        elif isinstance(value, int):
            ok = int in kinds or float in kinds
        elif isinstance(value, float):
            ok = float in kinds and math.isfinite(value)
        else:
            ok = any(isinstance(value, k) for k in kinds if k not in (int, float, bool))
        if ok:
            continue
        wanted = " or ".join(sorted({k.__name__ for k in kinds}))
        hint = ""
        if isinstance(value, bool):
            hint = f"; {BOOLEAN_HINT}"
        elif isinstance(value, str) and (int in kinds or float in kinds):
            hint = f"; {NUMBER_HINT}"
        raise ValueError(f"{section} {field.name} must be {wanted}, got {value!r}{hint}")
