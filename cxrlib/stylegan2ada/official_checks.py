"""What an official StyleGAN2-ADA network pickle may hold, checked where it enters: the
error type, the limits, the tensor-view and plain-data checks and the file-kind messages used
by `cxrlib.stylegan2ada.official_pickle` (the reader) and `cxrlib.stylegan2ada.official` (the
mapping).

Every refusal is an OfficialNetworkError naming the file and what was wrong. The limits are
far above anything an official network holds (ffhq-1024: ~30 M weights per tensor at most,
modules nested 5 deep, a few thousand attribute values), so they only stop files built to
exhaust memory or time.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from cxrlib.file_kinds import describe_head, short  # noqa: F401 (re-exported)

MAX_TENSOR_ELEMENTS = 2**31  # one tensor; official ones are below 2^25
MAX_TENSOR_DIMS = 8  # official tensors are at most 4-D
MAX_ARRAY_ELEMENTS = 2**16  # one numpy array attribute (StyleGAN3 sizes/rates: 1-2 values)
MAX_MODULE_DEPTH = 32  # module nesting; official networks are 5 deep
MAX_PLAIN_DEPTH = 32  # nesting of attribute / _init_kwargs containers
MAX_PLAIN_VALUES = 200_000  # attribute and _init_kwargs values of one network, all together
# Errors that a malformed file can raise from code that trusts its structure; the last line of
# defence turns them into OfficialNetworkError (the original kept as __cause__).
MALFORMED = (RecursionError, AttributeError, IndexError, KeyError, TypeError, ValueError)
_PLAIN_LEAVES = (type(None), bool, int, float, complex, str, bytes)


class OfficialNetworkError(ValueError):
    """An official network pickle that is refused: unsafe, unreadable, malformed, or not
    mappable onto this run. The message names the file, what was found and what to change."""


@contextmanager
def refuse_malformed(path: Path, doing: str) -> Iterator[None]:
    """Last line of defence while `doing` something with the file at `path`: an error of the
    MALFORMED kinds escaping from code that trusted the file's structure becomes an
    OfficialNetworkError naming the file (the original stays as __cause__)."""
    try:
        yield
    except OfficialNetworkError:
        raise
    except MALFORMED as exc:
        text = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
        raise OfficialNetworkError(
            f"{path}: malformed official network file ({type(exc).__name__} while {doing}"
            f"{': ' + text if text else ''}); nothing from it was run"
        ) from exc


# --------------------------------------------------------------------------------------------
# The file itself.

# What a file is from its first bytes: cxrlib.file_kinds (describe_head, short), shared with the
# workflow's DAG-build checks and the other weights readers.


# --------------------------------------------------------------------------------------------
# Tensors.


def check_view(
    storage_numel: int, offset: Any, size: Any, stride: Any
) -> tuple[int, tuple[int, ...], tuple[int, ...]]:
    """A tensor record's view (offset, size, stride) of a storage of `storage_numel` elements,
    checked before torch sees it (torch's set_ would silently grow the storage, exposing
    uninitialised memory, and stride 0 lets a few bytes stand for gigabytes). Returns it as
    ints; raises OfficialNetworkError unless the view is contiguous, non-overlapping, inside
    the storage and at most MAX_TENSOR_ELEMENTS elements."""

    def whole(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    if not (
        whole(offset)
        and isinstance(size, tuple | list)
        and isinstance(stride, tuple | list)
        and len(size) == len(stride)
        and all(whole(v) for v in (*size, *stride))
    ):
        raise OfficialNetworkError("malformed tensor record (offset, size, stride)")
    size, stride = tuple(size), tuple(stride)
    if len(size) > MAX_TENSOR_DIMS:
        raise OfficialNetworkError(
            f"malformed tensor record: {len(size)} dimensions (at most {MAX_TENSOR_DIMS})"
        )
    if offset < 0 or min((*size, *stride), default=0) < 0:
        raise OfficialNetworkError(
            f"malformed tensor record: negative offset, size or stride ({short(offset)}, "
            f"{short(size)}, {short(stride)})"
        )
    numel = math.prod(size)
    if numel > MAX_TENSOR_ELEMENTS:
        raise OfficialNetworkError(
            f"a tensor record declares {short(numel)} elements (shape {short(size)}); this "
            f"reader accepts at most 2^31 = {MAX_TENSOR_ELEMENTS} elements per tensor"
        )
    if numel == 0:
        if offset > storage_numel:
            raise OfficialNetworkError(
                f"malformed tensor record: offset {offset} past its {storage_numel}-element storage"
            )
        return offset, size, stride
    expected = 1
    for n, s in zip(reversed(size), reversed(stride), strict=True):
        if n != 1 and s != expected:
            raise OfficialNetworkError(
                f"a tensor record is not contiguous (shape {short(size)}, strides "
                f"{short(stride)}; stride 0 or overlapping views are refused): official "
                "files store contiguous tensors"
            )
        expected *= n
    last = offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
    if last >= storage_numel:
        raise OfficialNetworkError(
            f"a tensor record's view (offset {offset}, shape {short(size)}) reaches element "
            f"{last} of a storage of {storage_numel} elements: refused (it would read memory "
            "past the data in the file)"
        )
    return offset, size, stride


def check_finite(where: str, t: torch.Tensor) -> None:
    """Refuse a tensor holding NaN or infinity: no trained official network has them."""
    bad = t.numel() - int(torch.isfinite(t).sum())
    if bad:
        raise OfficialNetworkError(
            f"{where} holds {bad} non-finite value(s) (NaN or inf) of {t.numel()}: a broken "
            "or altered network, refused"
        )


# --------------------------------------------------------------------------------------------
# Attributes and constructor arguments.


class PlainData:
    """Converts attribute values and _init_kwargs of one network into plain dicts (from
    EasyDict / OrderedDict stand-ins), lists (from lists and tuples), sets and Python scalars;
    `other(value)` converts the reader's own data objects (numpy arrays, tensors) or raises.

    Refused: a container inside itself (a cycle), nesting deeper than MAX_PLAIN_DEPTH, and more
    than MAX_PLAIN_VALUES values in all (shared lists expand: [[x] * 10] * 10 ... is 10^k
    values from a file of a few bytes); every refusal names `where`."""

    def __init__(self, other: Callable[[Any, str], Any]):
        self.other = other
        self.values = 0  # converted so far, all calls together

    def __call__(self, value: Any, where: str) -> Any:
        return self._convert(value, where, set(), 0)

    def _convert(self, value: Any, where: str, path: set[int], depth: int) -> Any:
        self.values += 1
        if self.values > MAX_PLAIN_VALUES:
            raise OfficialNetworkError(
                f"{where}: more than {MAX_PLAIN_VALUES} attribute values in one network (a "
                "structure that expands, e.g. lists shared many times): refused"
            )
        if isinstance(value, _PLAIN_LEAVES):
            return value
        if not isinstance(value, dict | list | tuple | set | frozenset):
            return self.other(value, where)
        if id(value) in path:
            raise OfficialNetworkError(f"{where}: a {type(value).__name__} contains itself")
        if depth >= MAX_PLAIN_DEPTH:
            raise OfficialNetworkError(f"{where}: nested more than {MAX_PLAIN_DEPTH} deep")
        path.add(id(value))
        try:
            if isinstance(value, dict):
                out: Any = {}
                for k, v in value.items():
                    if not isinstance(k, _PLAIN_LEAVES):
                        raise OfficialNetworkError(
                            f"{where}: a dict key is a {type(k).__name__}, not plain data"
                        )
                    out[k] = self._convert(v, f"{where}[{short(k)}]", path, depth + 1)
            elif isinstance(value, set | frozenset):
                out = set()
                for v in value:
                    if not isinstance(v, _PLAIN_LEAVES):
                        raise OfficialNetworkError(
                            f"{where}: a set holds a {type(v).__name__}, not plain data"
                        )
                    out.add(self._convert(v, where, path, depth + 1))
            else:
                out = [self._convert(v, f"{where}[{i}]", path, depth + 1)
                       for i, v in enumerate(value)]  # fmt: skip
        finally:
            path.discard(id(value))
        return out


def whole_number(value: Any, low: int, high: int) -> bool:
    """An int (not a bool) within [low, high]."""
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def finite_number(value: Any) -> bool:
    """An int or float (not a bool), finite."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return isinstance(value, int) or math.isfinite(value)


# Constructor arguments (top level or in a *_kwargs dict) that are sizes in official networks.
_WHOLE_KWARGS = {"z_dim", "c_dim", "w_dim", "img_resolution", "img_channels", "num_layers",
                 "channel_base", "channel_max", "num_fp16_res", "mbstd_group_size",
                 "mbstd_num_channels", "freeze_layers", "cmap_dim"}  # fmt: skip


def init_kwargs_problems(kwargs: dict[str, Any]) -> list[str]:
    """What is wrong with a network's constructor arguments (_init_kwargs, as plain data): the
    sizes must be whole numbers, the nested *_kwargs dicts (or None), conv_clamp a finite
    number or None, as in every official network."""
    problems = []
    groups = [("", kwargs)] + [(f"{k}.", v) for k, v in kwargs.items() if k.endswith("_kwargs")]
    for prefix, group in groups:
        if group is None:
            continue
        if not isinstance(group, dict):
            problems.append(f"_init_kwargs {prefix[:-1]} is a {type(group).__name__}, not a dict")
            continue
        for key, v in group.items():
            if key in _WHOLE_KWARGS and not whole_number(v, 0, 2**24):
                bad = f"{short(v)} ({type(v).__name__}), not a whole number"
            elif key == "conv_clamp" and v is not None and not finite_number(v):
                bad = f"{short(v)}, not a finite number or None"
            else:
                continue
            problems.append(f"_init_kwargs {prefix}{key} is {bad}: not an official network")
    return problems
