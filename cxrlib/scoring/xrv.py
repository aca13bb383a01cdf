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
training script), in the pre-1.6 (non-zip) torch format. The fetch_xrv_weights rule downloads
it on the login node and checks it against a pinned sha256 before anything reads it. It is
then read as data, never run (`load_xrv_state_dict`), by torch's own restricted unpickler (the
one behind `torch.load(weights_only=True)`), with the model's classes allowlisted as inert
stand-ins (`torch.serialization.safe_globals`): records of their pickled attributes that
refuse to be called. The tensors in the records' parameter and buffer dictionaries are copied
into a DenseNet this module builds itself (`build_xrv_densenet`) after their names, shapes,
dtypes and values are checked.
"""

from __future__ import annotations

import io
import logging
import os
import pickletools
import re
import reprlib
import struct
import sys
import warnings
import zipfile
from collections.abc import Mapping
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
# - zip (torch >= 1.6): <prefix>/data.pkl (the object), <prefix>/data/<key> (raw bytes, stored
#   uncompressed); storages are persistent ids ('storage', <torch.XStorage>, key, location, numel).
# A module pickles as NEWOBJ (cls.__new__(cls), no arguments) then BUILD (its __dict__).
# torch.load(weights_only=True) reads the zip format with the stand-ins allowlisted; it refuses
# the legacy format's module persistent ids, so for that format this module hands each pickle
# to the same restricted unpickler (torch._weights_only_unpickler) with its own persistent_load.

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
_MAX_MODULE_DEPTH = 16  # DenseNet-121 nests 4 deep
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # torch.serialization.MAGIC_NUMBER
_LEGACY_PROTOCOL = 1001  # torch.serialization.PROTOCOL_VERSION
_ZIP_MAGIC = b"PK\x03\x04"


class _Refused(Exception):
    """Something in the file the reader will not make; the message says what was found."""


_REPR = reprlib.Repr()  # short reprs of what the file holds, for messages
_REPR.maxstring = _REPR.maxother = 60


def _short(value: object) -> str:
    return _REPR.repr(value)


class _ModuleRecord:
    """One module of the file as data: its class's dotted name and its pickled __dict__.

    The restricted unpickler resolves each allowed class name to a subclass of this
    (`_MODULE_RECORDS`), so nothing of the real class runs. torch.save writes a module as
    NEWOBJ (`cls.__new__(cls)`, no arguments) and BUILD (its __dict__): __new__ takes no
    arguments and __setstate__ keeps the dict, once. A pickle that calls the class instead
    (REDUCE, `cls(*args)`), as a file that wants the real constructor to run would, is refused.
    """

    class_name: ClassVar[str] = ""

    def __new__(cls, *args: object, **kwargs: object) -> _ModuleRecord:
        if args or kwargs:
            raise _Refused(
                f"it calls {cls.class_name} with arguments {_short(args)}"
                f"{_short(kwargs) if kwargs else ''} (torch.save passes none: the file asks "
                "for the real constructor to run)"
            )
        return super().__new__(cls)

    def __init__(self, *args: object, **kwargs: object) -> None:
        # reached only by a call of the class (REDUCE); NEWOBJ calls __new__ alone
        raise _Refused(
            f"it calls {self.class_name}() (pickle REDUCE); torch.save never calls a module's class"
        )

    def __setstate__(self, state: object) -> None:
        if "state" in self.__dict__:
            raise _Refused(f"it sets the state of a {self.class_name} twice")
        if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
            raise _Refused(
                f"the state of a {self.class_name} is a {type(state).__name__}, not the dict "
                "of its attributes"
            )
        self.__dict__["state"] = dict(state)


def _dotted(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


_MODULE_RECORDS: dict[str, type[_ModuleRecord]] = {
    _dotted(c): type(c.__qualname__, (_ModuleRecord,), {"class_name": _dotted(c)})
    for c in _MODEL_CLASSES
}
_ROOT_RECORD = _MODULE_RECORDS[_dotted(xrv.models.DenseNet)]
_STAND_INS = [(record, name) for name, record in _MODULE_RECORDS.items()]


# The globals a torch.save file of the DenseNet (or its state dict) names, and nothing else:
# torch's restricted unpickler would also allow other tensor rebuilders, bytearray, codecs
# and tensor constructors, each of which a file could make allocate what it asks for.
_ALLOWED_GLOBALS = frozenset({
    *_MODULE_RECORDS,
    "collections.OrderedDict",
    "__builtin__.set",  # protocol 2's name of builtins.set (a module's buffer-name set)
    "builtins.set",
    "torch._utils._rebuild_tensor_v2",
    "torch._utils._rebuild_parameter",
    *(f"torch.{t}Storage" for t in ("Float", "Double", "Half", "BFloat16", "Long", "Int",
                                    "Short", "Char", "Byte", "Bool")),
})  # fmt: skip
_MAX_PICKLE_BYTES = 512 * 2**10  # each pickle; the release's object pickle is ~0.2 MB


def _checked_pickle(f: io.BytesIO, respell: bool = False) -> io.BytesIO:
    """The next pickle of f, checked before any unpickler reads it; f is left after it.

    cxrlib.pickle_scan walks it (memo indices, nesting and hashing work, protocols 0-3 only,
    lengths past the data); it must end within _MAX_PICKLE_BYTES and name only
    _ALLOWED_GLOBALS. With `respell` (the legacy object pickle), each module persistent id
    ('module', cls, file, source) is spelled ('storage', cls, file, source): torch's restricted
    unpickler hands only 'storage' ids to persistent_load, which tells the two apart by their
    length. torch.save writes the word once, right after the MARK of the first module id and
    before that module's class (a GLOBAL); the others fetch it from the memo.
    """
    start = f.tell()
    window = io.BytesIO(bytes(f.getbuffer()[start : start + _MAX_PICKLE_BYTES]))
    try:
        scan_pickle(window, _Refused, max_protocol=3)
    except _Refused:
        if len(window.getbuffer()) == _MAX_PICKLE_BYTES:
            raise _Refused(
                f"a pickle that does not end within {_MAX_PICKLE_BYTES} bytes (the release "
                "file's longest is ~0.2 MB) or is malformed"
            ) from None
        raise
    ops = list(pickletools.genops(window))
    ends = [pos for _, _, pos in ops[1:]] + [window.tell()]
    out = bytearray()
    for i, ((op, arg, pos), end) in enumerate(zip(ops, ends, strict=True)):
        if op.name in ("GLOBAL", "INST"):
            name = str(arg).replace(" ", ".")
            if name not in _ALLOWED_GLOBALS:
                raise _Refused(
                    f"it refers to {name[:120]}, which is not part of torchxrayvision's DenseNet"
                )
        if respell and op.name == "BINUNICODE" and arg == "module" and _opens_module_id(ops, i):
            out += b"X" + struct.pack("<I", 7) + b"storage"
        else:
            out += window.getbuffer()[pos:end]
    f.seek(start + window.tell())
    return io.BytesIO(bytes(out))


def _opens_module_id(ops: list[tuple[Any, Any, int]], i: int) -> bool:
    """ops[i] (the word 'module') follows a MARK and precedes, past its memo entry, the
    GLOBAL of one of the DenseNet's classes: the first module persistent id."""
    j = i + 1
    while j < len(ops) and ops[j][0].name in ("BINPUT", "LONG_BINPUT", "PUT"):
        j += 1
    return (
        i > 0
        and j < len(ops)
        and ops[i - 1][0].name == "MARK"
        and ops[j][0].name == "GLOBAL"
        and str(ops[j][1]).replace(" ", ".") in _MODULE_RECORDS
    )


def _load_pickle(f: io.BytesIO) -> Any:
    """The next plain-data pickle of f (checked), by torch's restricted unpickler."""
    return torch._weights_only_unpickler.Unpickler(_checked_pickle(f), encoding="utf-8").load()


def _read_legacy(raw: bytes) -> object:
    """The legacy format's object, its storages made from the file's bytes."""
    f = io.BytesIO(raw)
    if _load_pickle(f) != _LEGACY_MAGIC:
        raise _Refused("it is not a torch.save file (neither the zip nor the legacy format)")
    if (version := _load_pickle(f)) != _LEGACY_PROTOCOL:
        raise _Refused(f"legacy torch.save protocol {_short(version)}, not {_LEGACY_PROTOCOL}")
    sys_info = _load_pickle(f)
    if not isinstance(sys_info, dict) or sys_info.get("little_endian") is not True:
        raise _Refused(f"not written on a little-endian machine (sys_info {_short(sys_info)})")
    # Each storage is a bytearray of its declared size, filled once the pickle is read: a
    # storage over it cannot grow (torch.frombuffer's never do), so torch refuses a view past
    # its end. Declared sizes are summed against what the file holds before each is allocated.
    buffers: dict[str, tuple[bytearray, torch.dtype]] = {}
    typed: dict[str, torch.TypedStorage] = {}
    pickled = _checked_pickle(f, respell=True)

    def persistent_load(pid: object) -> object:
        kind = pid[0] if isinstance(pid, tuple) and pid else None
        if kind == "storage" and len(pid) == 4:  # a module id (_checked_pickle respelled it)
            if isinstance(pid[1], type) and issubclass(pid[1], _ModuleRecord):
                return pid[1]
        elif kind == "storage" and len(pid) == 6 and pid[5] is None:
            storage_type, key, _, numel = pid[1:5]
            dtype = getattr(storage_type, "dtype", None)
            if isinstance(key, str) and isinstance(dtype, torch.dtype) and type(numel) is int:
                if key not in typed:
                    if numel < 0:
                        raise _Refused(f"storage {_short(key)} declares {numel} elements")
                    declared = sum(len(b) for b, _ in buffers.values()) + numel * dtype.itemsize
                    if declared > len(raw) - f.tell():
                        raise _Refused(
                            f"its storages declare {declared} bytes of tensors or more, more "
                            f"bytes than the file holds ({len(raw)}); nothing allocated"
                        )
                    buf = bytearray(numel * dtype.itemsize)
                    buffers[key] = (buf, dtype)
                    # an empty storage as 1 byte over nothing: non-growable all the same
                    flat = torch.frombuffer(buf or bytearray(1), dtype=torch.uint8)[: len(buf)]
                    typed[key] = torch.TypedStorage(
                        wrap_storage=flat.untyped_storage(), dtype=dtype, _internal=True
                    )
                if typed[key].dtype != dtype or len(buffers[key][0]) != numel * dtype.itemsize:
                    raise _Refused(f"storage {key} is declared twice, differently")
                return typed[key]
        raise _Refused(f"a persistent id {_short(pid)} that torch.save does not write")

    unpickler = torch._weights_only_unpickler.Unpickler(pickled, encoding="utf-8")
    unpickler.persistent_load = persistent_load
    root = unpickler.load()
    keys = _load_pickle(f)
    if not isinstance(keys, list) or sorted(keys) != sorted(buffers):
        raise _Refused("its list of storage keys does not match the storages the object uses")
    for key in keys:
        buf, dtype = buffers[key]
        (numel,) = struct.unpack("<q", f.read(8).ljust(8, b"\0"))
        data = f.read(len(buf))
        if numel * dtype.itemsize != len(buf) or len(data) != len(buf):
            raise _Refused(f"storage {key} holds {len(data)} bytes, declared {len(buf)}")
        buf[:] = data
    return root


def _read_zip(raw: bytes) -> object:
    """The zip format's object, by torch.load(weights_only=True) with the stand-ins; its
    data.pkl is checked as torch's own zip reader reads it (Python's zipfile can find other
    records in a crafted zip)."""
    with zipfile.ZipFile(io.BytesIO(raw)) as archive:
        if any(i.compress_type != zipfile.ZIP_STORED for i in archive.infolist()):
            raise _Refused("its zip holds compressed records (torch.save stores them)")
    reader = torch._C.PyTorchFileReader(io.BytesIO(raw))
    if "data.pkl" not in reader.get_all_records():
        raise _Refused("its zip has no data.pkl record (not a torch.save file)")
    _checked_pickle(io.BytesIO(reader.get_record("data.pkl")))
    with torch.serialization.safe_globals(_STAND_INS):
        return torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)


def _module_tensors(
    record: _ModuleRecord, prefix: str, out: dict[str, torch.Tensor], seen: set[int]
) -> None:
    """(state-dict key -> tensor) of a module record tree, read from its dictionaries."""
    where = prefix.rstrip(".") or "the model"
    if id(record) in seen or prefix.count(".") >= _MAX_MODULE_DEPTH:
        raise _Refused(f"its module tree loops or nests too deep at {where}")
    seen.add(id(record))
    state = record.__dict__.get("state") or {}
    groups = [state.get(g) for g in ("_parameters", "_buffers", "_modules")]
    if not all(isinstance(g, dict) for g in groups):
        raise _Refused(f"{where} ({record.class_name}) has no parameter/buffer/module dicts")
    params, buffers, children = groups
    skip = state.get("_non_persistent_buffers_set") or set()
    for name in [*params, *buffers, *children]:
        if not isinstance(name, str) or not name or "." in name:
            raise _Refused(f"{where} holds an entry named {_short(name)}")
    for name, tensor in [*params.items(), *((k, v) for k, v in buffers.items() if k not in skip)]:
        if tensor is not None:
            out[prefix + name] = tensor
    for name, child in children.items():
        if child is None:
            continue
        if not isinstance(child, _ModuleRecord):
            raise _Refused(f"{prefix}{name} is a {type(child).__name__}, not a module")
        _module_tensors(child, f"{prefix}{name}.", out, seen)


def _state_dict(root: object) -> dict[str, torch.Tensor]:
    """The file's tensors by state-dict key, from a whole DenseNet or a state dict; each must
    be a contiguous block of its storage, as torch.save writes parameters (a view with a
    stride of 0 or overlapping strides reads elements more than once)."""
    if isinstance(root, _ModuleRecord):
        if type(root) is not _ROOT_RECORD:
            raise _Refused(f"it holds a {root.class_name}, not torchxrayvision's DenseNet")
        out: dict[str, torch.Tensor] = {}
        _module_tensors(root, "", out, set())
    elif isinstance(root, dict) and all(isinstance(k, str) for k in root):
        out = dict(root)
    else:
        raise _Refused(
            f"it holds a {type(root).__name__}, not torchxrayvision's DenseNet or its state dict"
        )
    for name, tensor in out.items():
        if type(tensor) not in (torch.Tensor, torch.nn.Parameter):
            raise _Refused(f"{name} is a {type(tensor).__name__}, not a tensor")
        if tensor.device.type != "cpu" or tensor.layout != torch.strided:
            raise _Refused(f"{name} is a {tensor.layout} tensor on {tensor.device}, not a CPU one")
        if torch.Tensor.is_neg(tensor) or torch.Tensor.is_conj(tensor):
            raise _Refused(f"{name} carries a negation or conjugation flag")
        if not torch.Tensor.is_contiguous(tensor):
            raise _Refused(
                f"{name} is not a contiguous block of its storage (size {tuple(tensor.shape)}, "
                f"stride {tensor.stride()}): it reads elements more than once or skips some"
            )
    return {name: torch.Tensor.detach(tensor) for name, tensor in out.items()}


def _torch_refusal(exc: Exception) -> str:
    """torch's restricted unpickler's refusal in a line, without its advice to allowlist the
    global or load with weights_only=False (either would let the file run code)."""
    text = str(exc)
    if found := re.search(r"GLOBAL (\S+) (?:was not|whose module)", text):
        return f"it refers to {found[1]}, which is not part of torchxrayvision's DenseNet"
    if "WeightsUnpickler error:" in text:  # torch.load's wrapping: keep the error's own line
        text = text.split("WeightsUnpickler error:", 1)[1].strip()
    if any(m in text for m in ("not resizable", "out of bounds for storage", "size calculation")):
        return "a tensor view reads outside its storage"
    return f"torch's restricted unpickler refused it ({text.strip().splitlines()[0][:200]})"


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
    try:
        actual = file_sha256(path)
    except OSError as exc:
        raise WeightsError(
            f"cannot read the xrv weights file {path} ({exc.strerror or exc})"
        ) from None
    if not actual.startswith(expected):
        raise WeightsError(
            f"the xrv weights file {path} has sha256 {actual}, expected {expected_sha256} "
            f"(metrics.xrv_sha256): it is not the {XRV_WEIGHTS} release file (truncated, "
            "corrupt or another model). Delete it and run `snakemake fetch_xrv_weights` again, "
            "or point metrics.xrv_weights at the right file"
        )
    return actual


def _check_is_file(path: Path) -> None:
    try:
        is_dir, is_file = path.is_dir(), path.is_file()
    except OSError as exc:  # a name too long, a folder that cannot be entered
        raise WeightsError(
            f"cannot reach the xrv weights file {path} ({exc.strerror or exc}); {XRV_FIX}"
        ) from None
    if is_dir:
        raise WeightsError(
            f"the xrv weights file {path} is a directory; point metrics.xrv_weights at the "
            f"file itself, or {XRV_FIX}"
        )
    if not is_file:
        raise WeightsError(
            f"the xrv weights file {path} does not exist or is not a regular file; {XRV_FIX} "
            f"(the published file: {XRV_URL})"
        )


def load_xrv_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of an xrv DenseNet file by state-dict key, read without running anything.

    Accepts the release format (a whole pickled `xrv.models.DenseNet`, pre-1.6 torch format),
    the same saved by a newer torch (zip format), or a state dict of either format. Each
    pickle is walked first (`cxrlib.pickle_scan`), then read by torch's restricted unpickler
    (`torch.load(weights_only=True)`'s), with only the model's own classes allowlisted, as
    stand-ins that keep their pickled attributes and refuse to be called. Storages are made
    from the file's bytes at their declared sizes (summed against the file's size first), and
    cannot grow: a tensor view past its storage's end is refused by torch. Tensors come from
    the records' _parameters and _buffers (non-persistent buffers left out). They are not
    checked against the DenseNet here (`build_xrv_densenet` does). Call `verify_xrv_weights`
    first.
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
        with torch.serialization.safe_globals(_STAND_INS):
            root = _read_zip(raw) if raw.startswith(_ZIP_MAGIC) else _read_legacy(raw)
        return _state_dict(root)
    except _Refused as exc:
        reason = str(exc)
    except OSError as exc:
        raise WeightsError(
            f"cannot read the xrv weights file {path} ({exc.strerror or exc})"
        ) from None
    except Exception as exc:  # whatever the file's bytes make torch's readers raise
        reason = _torch_refusal(exc)
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
