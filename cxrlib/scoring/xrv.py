"""A third feature space for FID/KID: torchxrayvision's DenseNet-121 trained on pooled public CXRs.

`densenet121-res224-all` (Cohen et al. 2022, torchxrayvision) was trained on NIH ChestX-ray14,
PadChest, CheXpert, MIMIC-CXR, the NIH Google labels, OpenI and the RSNA (Kaggle) pneumonia
images, to predict 18 findings. Its pooled penultimate features (1024-d, `model.features2`) are
a CXR-aware space that, unlike "cxr", is not trained on this study's own data: scores in it are
comparable across studies, as Inception's are, while knowing what a radiograph looks like.

Inputs: uint8 (N, 1|3, H, W) as cxrlib.scoring.fidelity.extract_features passes them to every
extractor (generator output in [-1, 1] already rounded to uint8 there, as torch-fidelity
does), so real and generated images take the same path from the same pixels. They are made
gray, scaled exactly as `xrv.utils.normalize(img, 255)` (to [-1024, 1024]) and resized to
224 px as the library's models resize inputs themselves (`xrv.utils.fix_resolution`:
bilinear, antialiased).

Weights: the release file is a whole pickled model (`torch.save(model)` in the library's
training script), by all signs in the pre-1.6 (non-zip) torch format: the library patches
modules saved before torch 1.6 when loading it, and its size is that format's to within 0.1%.
The fetch_xrv_weights rule downloads it on the login node and checks it against a pinned
sha256 before anything reads it. It is then read as data, never run (`load_xrv_state_dict`).
torch.load is not used: the reader parses either torch.save format itself. Each pickle is first
walked opcode by opcode, refusing what would make the unpickler allocate what the file asks for.
It is then unpickled with an unpickler whose every global is an inert stand-in. The model's
classes become records of their pickled attributes, which refuse to be called. Tensors become
records checked to lie inside their storage, and storages must match the bytes the file holds.
Nothing the file names is constructed or called. The tensors in the records' parameter and
buffer dictionaries are then copied into a DenseNet this module builds itself
(`build_xrv_densenet`), after their names, shapes, dtypes and values are checked.

Size (over the project's ~600 lines): the reader of an untrusted legacy pickle is one
promise, kept in one place; torch.load(weights_only=True) refuses this release's format (its
persistent ids name modules, not only storages), so the reader cannot be handed to torch yet.
"""

from __future__ import annotations

import io
import logging
import math
import os
import pickle
import reprlib
import struct
import sys
import warnings
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from cxrlib.pickle_scan import scan_pickle
from cxrlib.weights import XRV_FIX, WeightsError, file_sha256, state_problems

# torchxrayvision adds a process-wide "ignore every warning" filter when imported (and a few
# more); the catch_warnings block puts the process's own filters back.
with warnings.catch_warnings():
    import torchxrayvision as xrv

log = logging.getLogger(__name__)

XRV_WEIGHTS = "densenet121-res224-all"
XRV_URL: str = xrv.models.model_urls[XRV_WEIGHTS]["weights_url"]
# Upstream publishes no checksum for its release files. This is the sha256 of the 28,382,008-byte
# file as recorded independently by several projects that pin it (found in public code; none
# of them upstream). A different file is refused before it is read; metrics.xrv_sha256 in
# config.yaml carries the same value (tests/test_xrv.py checks they agree).
XRV_SHA256 = "56524913dd16a906422e8d8b66a7a5c46be1d82eb7ac012d8103776f1aa68899"
XRV_SIZE: int = xrv.models.model_urls[XRV_WEIGHTS]["input_resolution"]  # 224
XRV_DIM = 1024  # DenseNet-121's pooled features

# --------------------------------------------------------------------------------------------
# Reading a weights file as data. Facts about the two torch.save formats used here:
# - legacy (torch < 1.6, `_use_new_zipfile_serialization=False`): four pickles in a row (the
#   magic number, protocol 1001, a sys_info dict, the object), a pickled list of storage keys,
#   then per key an int64 element count and the storage's raw little-endian bytes. Storages are
#   persistent ids ('storage', <torch.XStorage>, key, location, numel, view_metadata=None);
#   module classes are persistent ids ('module', <class>, source_file, source);
# - zip (torch >= 1.6): <prefix>/data.pkl (the object; storages are persistent ids ('storage',
#   <torch.XStorage>, key, location, numel)), <prefix>/data/<key> (raw bytes, stored
#   uncompressed), <prefix>/byteorder ('little'), version records.
# A module pickles as NEWOBJ (cls.__new__(cls), no arguments) then BUILD (its __dict__); a
# tensor as REDUCE of torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...).
# Why not torch.load: its legacy loader allocates each storage at the size the file declares,
# before reading a byte; with weights_only=False its pickle_module hook still lets the file call
# whatever the unpickler resolves; weights_only=True cannot read the release file's modules.

# The classes the release file's modules are instances of: the network's own and the torch.nn
# layers inside it. Each is read as a record of its pickled attributes (_ModuleRecord).
_MODEL_CLASSES: tuple[type, ...] = (
    xrv.models.DenseNet,
    xrv.models._DenseBlock,
    xrv.models._DenseLayer,
    xrv.models._Transition,
    nn.Sequential,
    nn.Conv2d,
    nn.BatchNorm2d,
    nn.ReLU,
    nn.MaxPool2d,
    nn.AvgPool2d,
    nn.Linear,
)
_MAX_FILE_BYTES = 256 * 2**20  # the release file is 28 MB
_MAX_PICKLE_BYTES = 32 * 2**20  # its pickled structure is ~0.2 MB (the rest is tensor bytes)
_MAX_STORAGE_BYTES = 256 * 2**20  # all tensor bytes together (the release's: 28 MB)
_MAX_DIMS = 8
_MAX_MODULE_DEPTH = 16  # DenseNet-121 nests 4 deep
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # torch.serialization.MAGIC_NUMBER
_LEGACY_PROTOCOL = 1001  # torch.serialization.PROTOCOL_VERSION
_ZIP_MAGIC = b"PK\x03\x04"
# The storage classes a tensor record may name (as torch.<Name>), by the dtype they stand for.
_STORAGE_DTYPES: dict[str, torch.dtype] = {
    "FloatStorage": torch.float32,
    "DoubleStorage": torch.float64,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
}


class _Refused(Exception):
    """Something in the file the reader will not make; the message says what was found."""


_REPR = reprlib.Repr()  # short reprs of what the file holds, for messages
_REPR.maxstring = _REPR.maxother = 60


def _short(value: object) -> str:
    return _REPR.repr(value)


class _Inert:
    """Base of the stand-ins the unpickler hands the file (storage types, the rebuilders, the
    storage and tensor records): a pickle BUILD on one is refused, so the file cannot alter
    one once made and checked (nor the shared ones, for later loads in this process)."""

    __slots__ = ()

    def __setstate__(self, state: object) -> None:
        raise _Refused(f"it sets the state of a {type(self).__name__.strip('_')}")


class _ModuleRecord:
    """One module of the file as data: its class's dotted name and its pickled __dict__.

    find_class returns a subclass of this (one per allowed class, `_MODULE_RECORDS`) in place
    of the real class, so nothing of the real class runs. torch.save writes a module as
    NEWOBJ (`cls.__new__(cls)`, no arguments) and BUILD (its __dict__): __new__ takes no
    arguments and __setstate__ keeps the dict, once. A pickle that calls the class instead
    (REDUCE, `cls(*args)`), as a file that wants the real constructor to run would, is refused.
    """

    __slots__ = ("state",)
    class_name: ClassVar[str] = ""

    def __new__(cls, *args: object, **kwargs: object) -> _ModuleRecord:
        if args or kwargs:
            raise _Refused(
                f"it calls {cls.class_name} with arguments {_short(args)}"
                f"{_short(kwargs) if kwargs else ''} (torch.save passes none: the file asks "
                "for the real constructor to run)"
            )
        record = super().__new__(cls)
        record.state = None
        return record

    def __init__(self, *args: object, **kwargs: object) -> None:
        # reached only by a call of the class (REDUCE); NEWOBJ calls __new__ alone
        raise _Refused(
            f"it calls {self.class_name}() (pickle REDUCE); torch.save never calls a module's class"
        )

    def __setstate__(self, state: object) -> None:
        if self.state is not None:
            raise _Refused(f"it sets the state of a {self.class_name} twice")
        if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
            raise _Refused(
                f"the state of a {self.class_name} is a {type(state).__name__}, not the dict "
                "of its attributes"
            )
        self.state = dict(state)


def _dotted(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


_MODULE_RECORDS: dict[str, type[_ModuleRecord]] = {
    _dotted(c): type(c.__qualname__, (_ModuleRecord,), {"__slots__": (), "class_name": _dotted(c)})
    for c in _MODEL_CLASSES
}
_ROOT_RECORD = _MODULE_RECORDS[_dotted(xrv.models.DenseNet)]


class _PlainDict(dict):
    """Stands in for collections.OrderedDict: an empty dict the pickle fills (SETITEMS)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        if args or kwargs:
            raise _Refused("it calls OrderedDict with arguments (torch.save passes none)")
        super().__init__()

    def __setstate__(self, state: object) -> None:
        # a state dict's `_metadata` (module versions): not needed, the model is built here
        if not isinstance(state, dict):
            raise _Refused(f"the state of an OrderedDict is a {type(state).__name__}")


class _StorageType(_Inert):
    """Stands in for torch.<Name>Storage in a storage record: the dtype it names."""

    __slots__ = ("dtype",)

    def __init__(self, dtype: torch.dtype):
        self.dtype = dtype


class _Storage(_Inert):
    """A storage the file declares (key, dtype, numel in elements); its bytes are read after
    the pickle and must match."""

    __slots__ = ("dtype", "key", "numel")

    def __init__(self, key: str, dtype: torch.dtype, numel: int):
        self.key, self.dtype, self.numel = key, dtype, numel

    @property
    def nbytes(self) -> int:
        return self.numel * self.dtype.itemsize


class _TensorRecord(_Inert):
    """A tensor the file declares: a view (offset, size, stride; in elements) of a storage,
    checked to lie inside it without reading any element twice (`_check_view`)."""

    __slots__ = ("offset", "size", "storage", "stride")

    def __init__(
        self, storage: _Storage, offset: int, size: tuple[int, ...], stride: tuple[int, ...]
    ):
        _check_view(storage, offset, size, stride)
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride


class _Function(_Inert):
    """Stands in for one of torch's functions the file names: calls a checking one of ours."""

    __slots__ = ("function",)

    def __init__(self, function: Callable[..., object]):
        self.function = function

    def __call__(self, *args: object) -> object:
        return self.function(*args)


def _is_int(value: object) -> bool:
    return type(value) is int  # not bool


def _check_view(storage: _Storage, offset: object, size: object, stride: object) -> None:
    """Refuse a view that reads outside its storage or reads an element twice (a stride 0 or
    overlapping strides: torch would accept both, and grow a resizable storage to fit)."""
    ok = (
        isinstance(size, tuple)
        and isinstance(stride, tuple)
        and len(size) == len(stride) <= _MAX_DIMS
        and all(_is_int(v) for v in (offset, *size, *stride))
    )
    if not ok:
        raise _Refused(f"malformed tensor record (size {_short(size)}, stride {_short(stride)})")
    where = f"a tensor (offset {offset}, size {size}, stride {stride})"
    limit = max(storage.numel, 1)
    if not 0 <= offset <= storage.numel or any(not 0 <= v <= limit for v in (*size, *stride)):
        raise _Refused(f"{where} reads outside its storage of {storage.numel} elements")
    if math.prod(size) == 0:
        return  # reads nothing
    reach = 0  # the furthest element reached by the dimensions of smaller strides
    for step, count in sorted((s, n) for n, s in zip(size, stride, strict=True) if n > 1):
        if step <= reach:
            raise _Refused(
                f"{where} reads elements of its storage more than once (stride 0 or "
                "overlapping strides)"
            )
        reach += (count - 1) * step
    if offset + reach >= storage.numel:
        raise _Refused(
            f"{where} reads outside its storage of {storage.numel} elements (past its end)"
        )


def _no_hooks(hooks: object) -> None:
    if hooks is not None and not (isinstance(hooks, dict) and not hooks):
        raise _Refused("a tensor carries backward hooks")


def _tensor_record(
    storage: object,
    storage_offset: object,
    size: object,
    stride: object,
    requires_grad: object = False,
    backward_hooks: object = None,
    metadata: object = None,
) -> _TensorRecord:
    """torch._utils._rebuild_tensor_v2's arguments, checked, as a record."""
    if not isinstance(storage, _Storage) or not isinstance(requires_grad, bool):
        raise _Refused(f"malformed tensor record (storage {type(storage).__name__})")
    _no_hooks(backward_hooks)
    if metadata:
        raise _Refused(f"a tensor carries metadata {_short(metadata)}")
    return _TensorRecord(storage, storage_offset, size, stride)  # type: ignore[arg-type]


def _parameter_record(
    data: object, requires_grad: object = False, backward_hooks: object = None, state: object = None
) -> _TensorRecord:
    """torch._utils._rebuild_parameter(_with_state)'s arguments: the parameter's tensor."""
    if not isinstance(data, _TensorRecord):
        raise _Refused(f"a parameter holds a {type(data).__name__}, not a tensor")
    _no_hooks(backward_hooks)
    if state:
        raise _Refused("a parameter carries extra attributes")
    return data


def _plain_set(items: object = ()) -> frozenset[str]:
    """builtins.set's argument (protocol 2 writes a set as set([names])): names only."""
    if not isinstance(items, list) or not all(isinstance(v, str) for v in items):
        raise _Refused(f"it makes a set of {type(items).__name__}, not of names")
    return frozenset(items)


# Every global the unpickler resolves, and what it gets instead: nothing here is the real thing.
_INERT_GLOBALS: dict[str, object] = {
    **_MODULE_RECORDS,
    "collections.OrderedDict": _PlainDict,
    "builtins.set": _Function(_plain_set),
    "__builtin__.set": _Function(_plain_set),  # how protocol-2 pickles name it
    "torch._utils._rebuild_tensor_v2": _Function(_tensor_record),
    "torch._utils._rebuild_parameter": _Function(_parameter_record),
    "torch._utils._rebuild_parameter_with_state": _Function(_parameter_record),
    **{f"torch.{name}": _StorageType(dtype) for name, dtype in _STORAGE_DTYPES.items()},
}


def _scan_pickle(f: io.BytesIO) -> None:
    """cxrlib.pickle_scan.scan_pickle (memo indices, protocol 5, truncation) before any
    unpickler reads f; torch.save writes protocol 2."""
    scan_pickle(f, _Refused)


class _PlainUnpickler(pickle.Unpickler):
    """For the legacy format's plain-data pickles (header, storage keys): no globals at all."""

    def __init__(self, file: io.BytesIO):
        _scan_pickle(file)
        super().__init__(file)

    def find_class(self, module: str, name: str) -> Any:
        raise _Refused(f"it refers to {module}.{name} where torch.save writes plain data")

    def persistent_load(self, pid: Any) -> Any:
        raise _Refused("a persistent id where torch.save writes plain data")


class _InertUnpickler(pickle.Unpickler):
    """Unpickles the file's object into stand-ins (`_INERT_GLOBALS`): module records, plain
    dicts, tensor records; collects the storages it declares in `storages`."""

    def __init__(self, file: io.BytesIO, legacy: bool):
        _scan_pickle(file)
        super().__init__(file)
        self.legacy = legacy  # the legacy format's persistent ids (module classes, 6-tuples)
        self.storages: dict[str, _Storage] = {}
        self.storage_bytes = 0  # declared so far

    def find_class(self, module: str, name: str) -> Any:
        target = _INERT_GLOBALS.get(f"{module}.{name}")
        if target is None:
            raise _Refused(
                f"it refers to {module}.{name}, which is not part of torchxrayvision's DenseNet"
            )
        return target

    def persistent_load(self, pid: Any) -> Any:
        kind = pid[0] if isinstance(pid, tuple) and pid else None
        if kind == "module" and self.legacy and len(pid) == 4:
            cls = pid[1]  # resolved by find_class: a record class or refused already
            if isinstance(cls, type) and issubclass(cls, _ModuleRecord):
                return cls
        elif kind == "storage" and len(pid) == (6 if self.legacy else 5):
            storage_type, key, location, numel = pid[1:5]
            if self.legacy and pid[5] is not None:
                raise _Refused(f"a storage view record {_short(pid[5])} (not taken here)")
            if (
                isinstance(storage_type, _StorageType)
                and isinstance(key, str)
                and 0 < len(key) <= 64
                and "/" not in key
                and isinstance(location, str)
                and _is_int(numel)
                and numel >= 0
            ):
                return self._storage(_Storage(key, storage_type.dtype, numel))
        raise _Refused(f"a persistent id {_short(pid)} that torch.save does not write")

    def _storage(self, storage: _Storage) -> _Storage:
        known = self.storages.get(storage.key)
        if known is not None:
            if (known.dtype, known.numel) != (storage.dtype, storage.numel):
                raise _Refused(f"storage {storage.key} is declared twice, differently")
            return known
        self.storage_bytes += storage.nbytes
        if self.storage_bytes > _MAX_STORAGE_BYTES:
            raise _Refused(
                f"its storages declare {self.storage_bytes} bytes or more of tensors, over the "
                f"{_MAX_STORAGE_BYTES} allowed (the release file holds 28 MB); nothing allocated"
            )
        self.storages[storage.key] = storage
        return storage


def _read_legacy(raw: bytes) -> tuple[object, dict[str, _Storage], dict[str, bytes]]:
    """The legacy format: (object of stand-ins, declared storages, their bytes by key)."""
    f = io.BytesIO(raw)
    if _PlainUnpickler(f).load() != _LEGACY_MAGIC:
        raise _Refused("it is not a torch.save file (neither the zip nor the legacy format)")
    if (version := _PlainUnpickler(f).load()) != _LEGACY_PROTOCOL:
        raise _Refused(f"legacy torch.save protocol {_short(version)}, not {_LEGACY_PROTOCOL}")
    sys_info = _PlainUnpickler(f).load()
    if not isinstance(sys_info, dict) or sys_info.get("little_endian") is not True:
        raise _Refused(f"not written on a little-endian machine (sys_info {_short(sys_info)})")
    unpickler = _InertUnpickler(f, legacy=True)
    root = unpickler.load()
    storages = unpickler.storages
    keys = _PlainUnpickler(f).load()
    if (
        not isinstance(keys, list)
        or not all(isinstance(k, str) for k in keys)
        or len(keys) != len(set(keys))
        or set(keys) != storages.keys()
    ):
        raise _Refused("its list of storage keys does not match the storages the object uses")
    available = len(raw) - f.tell() - 8 * len(keys)
    if sum(s.nbytes for s in storages.values()) > available:
        raise _Refused("its storages declare more bytes than the file holds (truncated?)")
    data: dict[str, bytes] = {}
    for key in keys:
        storage = storages[key]
        (numel,) = struct.unpack("<q", f.read(8))
        if numel != storage.numel:
            raise _Refused(f"storage {key} holds {numel} elements, declared {storage.numel}")
        data[key] = f.read(storage.nbytes)
    return root, storages, data


def _zip_entry(archive: zipfile.ZipFile, name: str, size: int | None, limit: int) -> bytes:
    """One record of a torch zip: stored (torch never compresses), of the expected size."""
    try:
        info = archive.getinfo(name)
    except KeyError:
        raise _Refused(f"its zip has no record {name}") from None
    if info.compress_type != zipfile.ZIP_STORED or info.compress_size != info.file_size:
        raise _Refused(f"its zip record {name} is compressed (torch.save stores records)")
    if (size is not None and info.file_size != size) or info.file_size > limit:
        expected = f"{size} expected" if size is not None else f"at most {limit}"
        raise _Refused(f"its zip record {name} holds {info.file_size} bytes ({expected})")
    return archive.read(info)


def _read_zip(file: io.BytesIO) -> tuple[object, dict[str, _Storage], dict[str, bytes]]:
    """The zip format: (object of stand-ins, declared storages, their bytes by key)."""
    with zipfile.ZipFile(file) as archive:
        pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            raise _Refused(f"a zip with {len(pickles)} torch data.pkl records, not 1")
        prefix = pickles[0].removesuffix("data.pkl")
        if prefix + "byteorder" in archive.namelist():
            order = _zip_entry(archive, prefix + "byteorder", None, 16)
            if order != b"little":
                raise _Refused(f"tensors of byte order {order!r}, not little-endian")
        unpickler = _InertUnpickler(
            io.BytesIO(_zip_entry(archive, prefix + "data.pkl", None, _MAX_PICKLE_BYTES)),
            legacy=False,
        )
        root = unpickler.load()
        storages = unpickler.storages
        data = {
            key: _zip_entry(archive, f"{prefix}data/{key}", s.nbytes, _MAX_STORAGE_BYTES)
            for key, s in storages.items()
        }
    return root, storages, data


def _module_records(
    record: _ModuleRecord, prefix: str, out: dict[str, _TensorRecord], seen: set[int]
) -> None:
    """(state-dict key -> tensor record) of a module record tree, read from its dictionaries."""
    where = prefix.rstrip(".") or "the model"
    if id(record) in seen or prefix.count(".") >= _MAX_MODULE_DEPTH:
        raise _Refused(f"its module tree loops or nests too deep at {where}")
    seen.add(id(record))
    state = record.state
    groups = [state.get(g) if state else None for g in ("_parameters", "_buffers", "_modules")]
    if not all(isinstance(g, dict) for g in groups):
        raise _Refused(f"{where} ({record.class_name}) has no parameter/buffer/module dicts")
    params, buffers, children = groups
    skip = state.get("_non_persistent_buffers_set") or frozenset()
    if not isinstance(skip, frozenset):
        raise _Refused(f"{where}: _non_persistent_buffers_set is a {type(skip).__name__}")
    entries = [*params.items(), *((k, v) for k, v in buffers.items() if k not in skip)]
    for name in [*params, *buffers, *children]:
        if not isinstance(name, str) or not name or "." in name:
            raise _Refused(f"{where} holds an entry named {_short(name)}")
    for name, tensor in entries:
        if tensor is None:
            continue
        if not isinstance(tensor, _TensorRecord):
            raise _Refused(f"{prefix}{name} is a {type(tensor).__name__}, not a tensor")
        if prefix + name in out:
            raise _Refused(f"{prefix}{name} is given twice")
        out[prefix + name] = tensor
    for name, child in children.items():
        if child is None:
            continue
        if not isinstance(child, _ModuleRecord):
            raise _Refused(f"{prefix}{name} is a {type(child).__name__}, not a module")
        _module_records(child, f"{prefix}{name}.", out, seen)


def _tensor_records(root: object) -> dict[str, _TensorRecord]:
    """The file's tensors by state-dict key: from a whole DenseNet or a state dict."""
    if isinstance(root, _ModuleRecord):
        if type(root) is not _ROOT_RECORD:
            raise _Refused(f"it holds a {root.class_name}, not torchxrayvision's DenseNet")
        out: dict[str, _TensorRecord] = {}
        _module_records(root, "", out, set())
        return out
    if isinstance(root, dict):
        bad = [
            k for k, v in root.items() if not isinstance(k, str) or not isinstance(v, _TensorRecord)
        ]
        if bad:
            raise _Refused(f"entries that are not tensors: {', '.join(map(_short, bad[:5]))}")
        return dict(root)
    raise _Refused(
        f"it holds a {type(root).__name__}, not torchxrayvision's DenseNet or its state dict"
    )


def _tensors(
    records: Mapping[str, _TensorRecord],
    storages: Mapping[str, _Storage],
    data: Mapping[str, bytes],
) -> dict[str, torch.Tensor]:
    """Rebuild the checked views with torch's own rebuild, on storages of the file's bytes
    (not resizable: a view past the end would fail there too, were _check_view to miss it)."""
    typed: dict[str, torch.TypedStorage] = {}
    for key, storage in storages.items():
        raw = data[key]
        if len(raw) != storage.nbytes:
            raise _Refused(f"storage {key} holds {len(raw)} bytes, declared {storage.nbytes}")
        flat = (
            torch.frombuffer(bytearray(raw), dtype=storage.dtype)
            if raw
            else torch.empty(0, dtype=storage.dtype)
        )
        typed[key] = torch.TypedStorage(
            wrap_storage=flat.untyped_storage(), dtype=storage.dtype, _internal=True
        )
    return {
        name: torch._utils._rebuild_tensor(typed[r.storage.key], r.offset, r.size, r.stride)
        for name, r in records.items()
    }


# --------------------------------------------------------------------------------------------
# The public path: verify, read, build.


def verify_xrv_weights(path: str | Path, expected_sha256: str) -> str:
    """Check the xrv weights file's sha256 (full, or a prefix of >= 8 hex digits) before
    anything reads it; returns the full sha256. Errors name the file and the fix."""
    path = Path(path)
    _check_is_file(path)
    expected = expected_sha256.strip().lower()
    if len(expected) < 8 or any(c not in "0123456789abcdef" for c in expected):
        raise WeightsError(
            f"no sha256 to check the xrv weights file {path} against (metrics.xrv_sha256 is "
            f"{expected_sha256!r}); set it to the file's sha256 (`sha256sum {path}` of a copy "
            f"you trust; the published file's is {XRV_SHA256})"
        )
    actual = file_sha256(path)
    if not actual.startswith(expected):
        raise WeightsError(
            f"the xrv weights file {path} has sha256 {actual}, expected {expected_sha256} "
            f"(metrics.xrv_sha256): it is not the {XRV_WEIGHTS} release file (truncated, "
            "corrupt or another model). Delete it and run `snakemake fetch_xrv_weights` again, "
            "or point metrics.xrv_weights at the right file"
        )
    return actual


def _check_is_file(path: Path) -> None:
    if path.is_dir():
        raise WeightsError(
            f"the xrv weights file {path} is a directory; point metrics.xrv_weights at the "
            f"file itself, or {XRV_FIX}"
        )
    if not path.is_file():
        raise WeightsError(
            f"the xrv weights file {path} does not exist; {XRV_FIX} (the published file: {XRV_URL})"
        )


def load_xrv_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of an xrv DenseNet file by state-dict key, read without running anything.

    Accepts the release format (a whole pickled `xrv.models.DenseNet`, pre-1.6 torch format),
    the same saved by a newer torch (zip format), or a state dict of either format. The file
    is parsed here, not by torch.load. Each pickle is walked first (`_scan_pickle`), then
    unpickled into inert stand-ins (`_INERT_GLOBALS`): a module becomes a record of its
    pickled attributes, a tensor a record of its view, which must lie inside its storage and
    read no element twice. Only the stand-ins of the model's own classes, OrderedDict, set,
    the tensor rebuilders and the storage types resolve; no class or function the file names
    is called. Tensors come from the records' _parameters and _buffers (non-persistent
    buffers left out), rebuilt by torch's `_rebuild_tensor` on storages made from the file's
    bytes. They are not checked against the DenseNet here (`build_xrv_densenet` does).
    Call `verify_xrv_weights` first.
    Raises WeightsError naming the file and what it holds.
    """
    path = Path(path)
    _check_is_file(path)
    try:
        if sys.byteorder != "little":
            raise _Refused("this reader assumes a little-endian machine")  # as torch's files
        with path.open("rb") as f:
            # read(n) reserves n bytes first: ask for no more than the file holds (a
            # virtual-memory limit would otherwise refuse every file)
            size = os.fstat(f.fileno()).st_size
            raw = f.read(min(size, _MAX_FILE_BYTES) + 1)
        if len(raw) > _MAX_FILE_BYTES:
            raise _Refused(f"it has over {_MAX_FILE_BYTES} bytes (the release file: 28 MB)")
        if raw.startswith(_ZIP_MAGIC):
            root, storages, data = _read_zip(io.BytesIO(raw))
        else:
            root, storages, data = _read_legacy(raw)
        return _tensors(_tensor_records(root), storages, data)
    except _Refused as exc:
        reason = str(exc)
    except Exception as exc:  # whatever the file's bytes make the parsers raise
        reason = f"{type(exc).__name__}: {exc}"
    raise WeightsError(
        f"cannot read {path} as torchxrayvision's {XRV_WEIGHTS} DenseNet: {reason}; nothing "
        f"in it was run. {XRV_FIX}"
    )


def build_xrv_densenet(state: Mapping[str, torch.Tensor], source: str | Path = "") -> nn.Module:
    """A fresh `xrv.models.DenseNet` (1 channel in, 18 findings) holding `state`, in eval mode.

    Built here with the library's defaults, not taken from the file, so its code and settings
    are the installed library's. `state` must hold exactly the model's state-dict keys, each
    of the model's shape and dtype, with finite values (and BN running variances >= 0);
    `source` (the file) names where they came from in the WeightsError otherwise.
    """
    model = xrv.models.DenseNet(weights=None)
    targets = model.state_dict(keep_vars=True)
    problems: list[str] = []
    if not isinstance(state, Mapping) or not all(torch.is_tensor(v) for v in state.values()):
        problems.append("not a mapping of names to tensors")
        state = {}
    found, floats = state_problems(state, targets, _short)
    problems += found
    problems += _value_problems(floats)
    if problems:
        raise WeightsError(
            f"the weights {f'of {source} ' if source else ''}do not fit torchxrayvision's "
            f"DenseNet-121 ({'; '.join(problems[:5])}); {XRV_FIX}"
        )
    with torch.no_grad():
        for name, target in targets.items():
            target.copy_(state[name])
    return model.eval()


def _value_problems(tensors: Mapping[str, torch.Tensor]) -> list[str]:
    """The float tensors that hold NaN/inf, or negative BN variances, by name. One pass over
    all of them first: hundreds of small per-tensor checks cost seconds on a busy CPU."""
    if not tensors:
        return []
    variances = [v.detach().reshape(-1) for n, v in tensors.items() if n.endswith("running_var")]
    finite = torch.isfinite(torch.cat([v.detach().reshape(-1) for v in tensors.values()])).all()
    if finite and (not variances or (torch.cat(variances) >= 0).all()):
        return []
    return [
        f"{n} holds NaN or infinite values"
        if not v.isfinite().all()
        else f"{n} holds negative variances"
        for n, v in tensors.items()
        if not v.isfinite().all() or (n.endswith("running_var") and (v < 0).any())
    ]


def xrv_input(images: torch.Tensor, size: int = XRV_SIZE) -> torch.Tensor:
    """uint8 (N, 1|3, H, W) -> float32 (N, 1, size, size) as torchxrayvision's models take them.

    Three channels become gray by their mean (exact for our R=G=B images). Pixel values are
    scaled as `xrv.utils.normalize(img, 255)`, the same float32 operations in the same order,
    so a 224 px image gives exactly its result; other sizes are then resized as
    `xrv.utils.fix_resolution` does inside the library's models (bilinear, antialiased).
    N >= 1 and H, W >= 1 (ValueError otherwise).
    """
    if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(
            f"expected uint8 (N, 1|3, H, W) images, got {images.dtype} {tuple(images.shape)}"
        )
    if images.shape[0] == 0 or images.shape[2] == 0 or images.shape[3] == 0:
        raise ValueError(
            f"expected at least one image of at least 1x1 px, got {tuple(images.shape)} "
            "(N, C, H, W)"
        )
    x = images.float()
    if x.shape[1] == 3:
        x = x.mean(dim=1, keepdim=True)
    x = (2 * (x / 255) - 1.0) * 1024
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True)
    return x


class XrvExtractor:
    """Pooled penultimate features (N, 1024) of torchxrayvision's densenet121-res224-all."""

    def __init__(
        self,
        weights: str | Path,
        expected_sha256: str = XRV_SHA256,
        device: str | torch.device = "cpu",
    ):
        self.device = torch.device(device)
        digest = verify_xrv_weights(weights, expected_sha256)
        state = load_xrv_state_dict(weights)
        self.model = build_xrv_densenet(state, source=weights).to(self.device)
        self.name = "xrv-" + XRV_WEIGHTS
        self.dim = XRV_DIM
        log.info("xrv extractor: %s (sha256 %s) on %s", weights, digest, self.device)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (N, 1|3, H, W) -> float32 features (N, 1024) on the extractor's device."""
        x = xrv_input(images.to(self.device))
        out = self.model.features2(x).float()
        assert out.shape == (images.shape[0], self.dim), out.shape
        return out
