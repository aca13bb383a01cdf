"""Official StyleGAN2-ADA / StyleGAN3 network pickles, read without running their code.

The published networks (e.g. `ffhq-res256-mirror-paper256-noaug.pkl`, the official
transfer-learning source `--resume=ffhq256`) are a plain `pickle.dump` of a dict
{'G', 'D', 'G_ema', 'augment_pipe', 'training_set_kwargs', ...}. Facts about that format,
learned from NVlabs/stylegan2-ada-pytorch and NVlabs/stylegan3 (NVIDIA Source Code License-NC;
nothing is copied from them):

- every network and layer is a "persistent" class: its pickle is a call of
  `torch_utils.persistence._reconstruct_persistent_obj(meta)`, meta = {'type': 'class',
  'version': 6, 'module_src': <the defining module's source>, 'class_name', 'state'}; the
  official loader `exec`s module_src. Here that global is replaced by a function that returns
  (class_name, state) as data; module_src is never run (only its sha256 is kept);
- `state` is the module's `__dict__`: '_parameters', '_buffers', '_modules' (ordered dicts),
  plain attributes (img_resolution, architecture, weight_gain as a numpy float64, ...) and
  '_init_kwargs' (nested `dnnlib.util.EasyDict`s, read here as plain dicts);
- tensors reduce through `torch._utils._rebuild_tensor_v2` / `_rebuild_parameter`, storages
  through `torch.storage._load_from_bytes(bytes)`, the bytes a legacy `torch.save` of the
  storage: loaded here with `torch.load(weights_only=True)` only.
Everything else (os.system, builtins.eval, an unknown class, a persistent id) is refused by
`SafeNetworkUnpickler.find_class` before anything is called.

What the unpickler builds is data and nothing else can change: find_class hands out stand-ins
(`_Global`), never the reader's own functions or classes, and tensors and storages come
wrapped, so a BUILD opcode (which sets attributes, or calls `Tensor.__setstate__`, an unchecked
`set_`) is refused everywhere except on numpy dtypes and arrays. The limits and checks of
`cxrlib.stylegan2ada.official_checks` apply: every tensor view contiguous and inside its storage,
at most 2^31 elements, finite; modules a tree (no cycles, no shared submodules); attribute
values bounded in nesting and number. Whatever else is wrong with a file is an
OfficialNetworkError naming it.

The mapping onto this project's networks is `cxrlib.stylegan2ada.official`.
"""

from __future__ import annotations

import hashlib
import io
import math
import pickle
import struct
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import torch

from cxrlib.file_kinds import check_regular_file, container_kind
from cxrlib.pickle_scan import scan_pickle
from cxrlib.stylegan2ada.official_checks import (
    MAX_ARRAY_ELEMENTS,
    MAX_MODULE_DEPTH,
    OfficialNetworkError,
    PlainData,
    check_finite,
    check_view,
    describe_head,
    refuse_malformed,
    short,
    whole_number,
)

SETTINGS = "stylegan2ada.settings"  # where the run's sizes are configured
PERSISTENCE_VERSION = 6  # torch_utils.persistence._version of every official release
NETWORK_KEYS = ("G", "D", "G_ema")
# struct formats of the numpy scalar types an official pickle holds (weight gains, ...).
_NUMPY_SCALARS = {
    "f2": "e", "f4": "f", "f8": "d", "i1": "b", "i2": "h", "i4": "i", "i8": "q",
    "u1": "B", "u2": "H", "u4": "I", "u8": "Q", "b1": "?",
}  # fmt: skip


# --------------------------------------------------------------------------------------------
# What the pickle decodes to.


@dataclass(frozen=True)
class PersistentObject:
    """A persistent-class instance as data: what `_reconstruct_persistent_obj(meta)` would
    have rebuilt by exec-ing meta['module_src'] (never done here)."""

    class_name: str  # e.g. 'Generator', 'SynthesisLayer'
    state: dict[str, Any]  # the module's __dict__: _parameters, _buffers, _modules, attributes
    version: int  # meta['version'] (6)
    module_src_sha256: str  # sha256 of the source the official loader would have run

    def __setstate__(self, state: Any) -> None:
        raise OfficialNetworkError("a pickle BUILD on a persistent object: refused")


@dataclass(frozen=True)
class OfficialLayer:
    """One module of an official network: its class and plain attributes (no tensors)."""

    class_name: str
    attributes: dict[str, Any]  # public attributes: architecture, weight_gain, up, ...
    init_kwargs: dict[str, Any]  # constructor keyword arguments ('_init_kwargs')


@dataclass(frozen=True)
class OfficialNetwork:
    """One network ('G', 'D' or 'G_ema') of an official pickle.

    tensors: dotted name -> tensor, parameters and buffers together (the official code keeps
    frozen layers' weights as buffers), e.g. 'synthesis.b4.conv1.affine.weight' (w_dim,) ...;
    layers: dotted module path ('' = the network itself) -> class name and attributes.
    """

    source: Path  # the file, for messages
    name: str  # 'G', 'D' or 'G_ema'
    class_name: str  # 'Generator' / 'Discriminator'
    init_kwargs: dict[str, Any]  # constructor kwargs (z_dim, mapping_kwargs, ...)
    tensors: dict[str, torch.Tensor]
    layers: dict[str, OfficialLayer]

    def attr(self, path: str, key: str, default: Any = None) -> Any:
        """Attribute `key` of the module at `path` ('' = the network), or default."""
        layer = self.layers.get(path)
        return default if layer is None else layer.attributes.get(key, default)


@dataclass(frozen=True)
class OfficialNetworks:
    """What `read_official_pickle` found: the networks present (of 'G', 'D', 'G_ema')."""

    path: Path
    networks: dict[str, OfficialNetwork]
    training_set_kwargs: dict[str, Any] | None = None
    other_keys: tuple[str, ...] = field(default=())  # e.g. ('augment_pipe',), not mapped


# --------------------------------------------------------------------------------------------
# The restricted unpickler. The unpickler never holds the reader's own functions or classes:
# find_class hands out _Global stand-ins, and every object it builds is one of the data types
# below, none of which a pickle BUILD can change (only numpy dtypes and arrays take one, once).


def _no_build(what: str) -> Callable[..., None]:
    def __setstate__(self: Any, *state: Any) -> None:
        raise OfficialNetworkError(
            f"a pickle BUILD on {what}: refused (in an official pickle BUILD only fills numpy "
            "dtypes and arrays; elsewhere it would change the reader's own objects)"
        )

    return __setstate__


class _Global:
    """What find_class returns for an allowed global: calls `fn` (REDUCE), has no attributes
    a pickle could set, and refuses BUILD, so a file cannot alter `fn` for the process."""

    __slots__ = ("fn", "name")

    def __init__(self, name: str, fn: Callable[..., Any] | None):
        self.name, self.fn = name, fn

    def __call__(self, *args: Any) -> Any:
        if self.fn is None:
            raise OfficialNetworkError(f"{self.name} called directly: refused")
        return self.fn(*args)

    __setstate__ = _no_build("an allowed global")


class _PlainDict(dict):
    """Stands in for dnnlib.util.EasyDict (NEWOBJ needs a class) and collections.OrderedDict:
    just the items; no instance attributes and no BUILD, on the class or an instance."""

    __slots__ = ()
    __setstate__ = _no_build("a dict (EasyDict / OrderedDict)")


class _StorageRecord:
    """A tensor storage read from the file (torch.TypedStorage), out of reach of BUILD."""

    __slots__ = ("storage",)
    __setstate__ = _no_build("a tensor storage")

    def __init__(self, storage: torch.TypedStorage):
        self.storage = storage


class _TensorRecord:
    """A tensor rebuilt from the file, checked; wrapped because BUILD on a bare tensor calls
    torch.Tensor.__setstate__, i.e. an unchecked `set_` on any storage, offset and size."""

    __slots__ = ("tensor",)
    __setstate__ = _no_build("a tensor")

    def __init__(self, tensor: torch.Tensor):
        self.tensor = tensor


class _NumpyDType:
    """Stands in for numpy.dtype while unpickling: records the type code and byte order."""

    __slots__ = ("built", "byteorder", "code")

    def __init__(self, code: Any, align: Any = False, copy: Any = True):
        if not isinstance(code, str) or code not in _NUMPY_SCALARS:
            raise OfficialNetworkError(f"numpy dtype {short(code)} is not a plain number type")
        self.code, self.byteorder, self.built = code, "<", False

    def __setstate__(self, state: Any) -> None:
        if self.built:
            raise OfficialNetworkError("a second pickle BUILD on a numpy dtype: refused")
        self.built = True
        if isinstance(state, tuple) and len(state) > 1 and state[1] in ("<", ">", "|", "="):
            self.byteorder = state[1]


class _NumpyArray:
    """Stands in for numpy.ndarray while unpickling (StyleGAN3 layers keep sizes and sampling
    rates as arrays): numeric arrays only, decoded with numpy.frombuffer by its one BUILD."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value: Any = None  # filled by BUILD

    def __setstate__(self, state: Any) -> None:
        if self.value is not None:
            raise OfficialNetworkError("a second pickle BUILD on a numpy array: refused")
        ok = isinstance(state, tuple) and len(state) == 5
        if ok:
            _, shape, dtype, fortran, raw = state
            ok = (
                isinstance(dtype, _NumpyDType)
                and isinstance(raw, bytes)
                and isinstance(shape, tuple)
                and all(whole_number(v, 0, MAX_ARRAY_ELEMENTS) for v in shape)
                and isinstance(fortran, bool)
            )
        if not ok:
            raise OfficialNetworkError("numpy array of an unsupported kind (numbers only)")
        if math.prod(shape) > MAX_ARRAY_ELEMENTS:
            raise OfficialNetworkError(
                f"a numpy array of shape {short(shape)}: more than {MAX_ARRAY_ELEMENTS} values"
            )
        order = ">" if dtype.byteorder == ">" else "<"
        arr = np.frombuffer(raw, dtype=np.dtype(order + dtype.code))
        if arr.size != math.prod(shape):
            raise OfficialNetworkError(
                f"a numpy array of shape {short(shape)} holds {arr.size} values"
            )
        self.value = arr.reshape(shape, order="F" if fortran else "C").tolist()


_NDARRAY = _Global("numpy.ndarray", None)  # only an argument of numpy's _reconstruct


def _numpy_reconstruct(cls: Any, shape: Any, typecode: Any) -> _NumpyArray:
    """numpy's ndarray reconstructor, for plain ndarrays only (filled by __setstate__)."""
    if cls is not _NDARRAY:
        raise OfficialNetworkError("numpy array subclass refused")
    return _NumpyArray()


def _numpy_scalar(dtype: Any, data: Any) -> int | float | bool:
    """numpy's scalar(dtype, bytes) for plain number types, as a Python number."""
    if not isinstance(dtype, _NumpyDType) or not isinstance(data, bytes):
        raise OfficialNetworkError("numpy scalar of an unsupported kind")
    fmt = (">" if dtype.byteorder == ">" else "<") + _NUMPY_SCALARS[dtype.code]
    if len(data) != struct.calcsize(fmt):
        raise OfficialNetworkError(f"numpy {dtype.code} scalar of {len(data)} bytes")
    return struct.unpack(fmt, data)[0]


def _no_hooks(hooks: Any) -> None:
    if hooks is not None and (not isinstance(hooks, Mapping) or len(hooks) > 0):
        raise OfficialNetworkError("a tensor carries backward hooks (callables): refused")


def _rebuild_tensor(
    storage: Any,
    storage_offset: Any,
    size: Any,
    stride: Any,
    requires_grad: Any = False,
    backward_hooks: Any = None,
    metadata: Any = None,
) -> _TensorRecord:
    """torch._utils._rebuild_tensor(_v2) with its arguments checked (types, and a contiguous
    view inside the storage: official_checks.check_view); a plain tensor."""
    if not isinstance(storage, _StorageRecord):
        raise OfficialNetworkError("malformed tensor record (its storage is not a storage)")
    _no_hooks(backward_hooks)
    if metadata:
        raise OfficialNetworkError(f"tensor metadata {short(metadata)} is not supported")
    st = storage.storage
    numel = st._untyped_storage.nbytes() // st.dtype.itemsize  # st.size() warns
    offset, size, stride = check_view(numel, storage_offset, size, stride)
    return _TensorRecord(torch._utils._rebuild_tensor(st, offset, size, stride))


def _rebuild_parameter(
    data: Any, requires_grad: Any = False, backward_hooks: Any = None, state: Any = None
) -> _TensorRecord:
    """torch._utils._rebuild_parameter(_with_state): the parameter's data as a plain tensor."""
    if not isinstance(data, _TensorRecord):
        raise OfficialNetworkError("malformed parameter record")
    _no_hooks(backward_hooks)
    if state:
        raise OfficialNetworkError("a parameter carries extra state: refused")
    return data


def _persistent_as_data(meta: Any) -> PersistentObject:
    """Replaces torch_utils.persistence._reconstruct_persistent_obj: the meta as data."""
    if not (
        isinstance(meta, dict)
        and meta.get("type") == "class"
        and isinstance(meta.get("class_name"), str)
        and isinstance(meta.get("state"), dict)
        and isinstance(meta.get("module_src"), str)
    ):
        raise OfficialNetworkError("malformed persistent object (meta dict)")
    if meta.get("version") != PERSISTENCE_VERSION:
        raise OfficialNetworkError(
            f"persistence version {short(meta.get('version'))}; the official loader (and this "
            f"one) accept only {PERSISTENCE_VERSION}"
        )
    state = dict(meta["state"])
    if not all(isinstance(k, str) for k in state):
        raise OfficialNetworkError("a persistent object's state has keys that are not names")
    sha = hashlib.sha256(meta["module_src"].encode("utf-8", "replace")).hexdigest()
    return PersistentObject(meta["class_name"][:200], state, meta["version"], sha)


def _load_storage(data: Any) -> _StorageRecord:
    """torch.storage._load_from_bytes with weights_only=True (no code from the bytes)."""
    if not isinstance(data, bytes | bytearray):
        raise OfficialNetworkError("a tensor storage record is not bytes")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # TypedStorage deprecation
            obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise OfficialNetworkError(
            f"a tensor storage in the pickle was refused by torch.load(weights_only=True): {first}"
        ) from exc
    if not isinstance(obj, torch.TypedStorage):
        raise OfficialNetworkError(f"a tensor storage record holds a {type(obj).__name__}")
    return _StorageRecord(obj)


def _allow(table: dict[str, Any]) -> dict[tuple[str, str], Any]:
    """(module, name) -> what find_class returns: a _Global around each function or class,
    except the EasyDict stand-in, a class itself (EasyDicts pickle with NEWOBJ)."""
    out = {}
    for dotted, fn in table.items():
        module, name = dotted.rsplit(".", 1)
        keep = fn is _NDARRAY or dotted == "dnnlib.util.EasyDict"
        out[module, name] = fn if keep else _Global(dotted, fn)
    return out


_ALLOWED = _allow({
    "collections.OrderedDict": _PlainDict,
    "builtins.set": set,  # pickle protocol < 4 writes sets as set(list)
    "builtins.frozenset": frozenset,
    "torch._utils._rebuild_tensor_v2": _rebuild_tensor,
    "torch._utils._rebuild_tensor": _rebuild_tensor,
    "torch._utils._rebuild_parameter": _rebuild_parameter,
    "torch._utils._rebuild_parameter_with_state": _rebuild_parameter,
    "torch.storage._load_from_bytes": _load_storage,
    "torch_utils.persistence._reconstruct_persistent_obj": _persistent_as_data,
    "dnnlib.util.EasyDict": _PlainDict,
    "numpy.dtype": _NumpyDType,
    "numpy.core.multiarray.scalar": _numpy_scalar,  # numpy < 2
    "numpy._core.multiarray.scalar": _numpy_scalar,  # numpy >= 2
    "numpy.ndarray": _NDARRAY,
    "numpy.core.multiarray._reconstruct": _numpy_reconstruct,
    "numpy._core.multiarray._reconstruct": _numpy_reconstruct,
})  # fmt: skip


class SafeNetworkUnpickler(pickle.Unpickler):
    """`pickle.Unpickler` that resolves only the globals an official network pickle needs
    (table `self.allowed`), each a stand-in that builds plain data; anything else raises
    OfficialNetworkError naming the file and the global, before it is called."""

    def __init__(self, file: io.BufferedIOBase, path: Path):
        # memo indices and lengths the file declares, checked before the C unpickler
        # allocates for them (cxrlib.pickle_scan)
        scan_pickle(file, OfficialNetworkError)
        super().__init__(file)
        self.path = path
        self.allowed: Mapping[tuple[str, str], Any] = MappingProxyType(_ALLOWED)

    def find_class(self, module: str, name: str) -> Any:
        target = self.allowed.get((module, name))
        if target is not None:
            return target
        if module.startswith("dnnlib.tflib"):
            hint = (
                "It is a TensorFlow-era StyleGAN2(-ADA) pickle: convert it with the official "
                "stylegan2-ada-pytorch `legacy.py --source=... --dest=...` first."
            )
        else:
            hint = (
                "The file is not an official StyleGAN2-ADA/StyleGAN3 network pickle or was "
                "altered; nothing from it was run."
            )
        allowed = ", ".join(f"{m}.{n}" for m, n in self.allowed)
        raise OfficialNetworkError(
            f"{self.path}: refused to load the global {module[:100]}.{name[:100]} found in "
            f"the pickle. Only these are allowed: {allowed}. {hint}"
        )

    def persistent_load(self, pid: Any) -> Any:
        raise OfficialNetworkError(
            f"{self.path}: holds a persistent id ({type(pid).__name__}), as torch.save files "
            "do; an official network pickle has none"
        )


def is_official_pickle(path: str | Path) -> bool:
    """Cheap sniff (first 16 bytes): a plain pickle (protocol 2+ header), not a torch.save file
    (zip, or the legacy format whose first object is its magic number). True means: hand it
    to `read_official_pickle`, which checks everything else."""
    with open(path, "rb") as f:
        return container_kind(f.read(16)) == "pickle"


def _open_checked(path: Path) -> io.BufferedReader:
    """The file opened for reading, after saying plainly what is wrong with the path."""
    check_regular_file(path, "an official network pickle file", OfficialNetworkError, sep=":")
    return open(path, "rb")


def read_official_pickle(path: str | Path) -> OfficialNetworks:
    """Read an official StyleGAN2-ADA / StyleGAN3 network pickle safely (module docstring).

    Returns the networks present among G, D, G_ema, each with its tensors by dotted name
    (finite float tensors on the CPU), its layers' attributes and its constructor kwargs.
    Raises OfficialNetworkError (a ValueError) for anything unsafe, malformed or not of that
    kind; FileNotFoundError when there is no file, IsADirectoryError for a directory.
    """
    path = Path(path)
    with _open_checked(path) as f:
        head = f.read(512)
        kind = container_kind(head[:16])
        if kind in ("zip", "torch_legacy"):
            raise OfficialNetworkError(
                f"{path}: is a torch.save file ({kind}), not an official network pickle; a "
                "project snapshot or networks.pt is read by the trainer directly"
            )
        if kind == "other":
            raise OfficialNetworkError(
                f"{path}: not a readable network pickle: it looks like {describe_head(head)}; "
                "an official network pickle starts with the pickle PROTO opcode 0x80 and "
                f"protocol 2-5 (this file starts {short(head[:8])})"
            )
        f.seek(0)
        try:
            data = SafeNetworkUnpickler(f, path).load()
        except OfficialNetworkError as exc:
            if str(path) in str(exc):
                raise
            raise OfficialNetworkError(f"{path}: {exc}; nothing from it was run") from exc
        except Exception as exc:
            raise OfficialNetworkError(
                f"{path}: not a readable network pickle ({type(exc).__name__}: "
                f"{str(exc)[:300]}); nothing from it was run"
            ) from exc
    with refuse_malformed(path, "reading its networks"):
        return _networks(path, data)


def _networks(path: Path, data: Any) -> OfficialNetworks:
    """The unpickled top-level dict as OfficialNetworks."""
    if not isinstance(data, dict):
        raise OfficialNetworkError(
            f"{path}: holds a {type(data).__name__}, not the official dict of networks "
            f"({', '.join(NETWORK_KEYS)}, ...)"
        )
    if not all(isinstance(k, str) for k in data):
        raise OfficialNetworkError(f"{path}: the top-level dict has keys that are not names")
    networks: dict[str, OfficialNetwork] = {}
    for key in NETWORK_KEYS:
        obj = data.get(key)
        if obj is None:
            continue
        if not isinstance(obj, PersistentObject):
            raise OfficialNetworkError(
                f"{path}: '{key}' is a {type(obj).__name__}, not an official persistent network"
            )
        networks[key] = _network(path, key, obj)
    if not networks:
        keys = sorted(data)
        raise OfficialNetworkError(
            f"{path}: has none of {', '.join(NETWORK_KEYS)} (keys: "
            f"{short(keys)}{f', {len(keys)} in all' if len(keys) > 6 else ''})"
        )
    tsk = data.get("training_set_kwargs")
    if isinstance(tsk, dict):
        tsk = PlainData(_plain_other)(tsk, f"{path}: training_set_kwargs")
    others = tuple(k for k in data if k not in (*NETWORK_KEYS, "training_set_kwargs"))
    return OfficialNetworks(path, networks, tsk if isinstance(tsk, dict) else None, others)


def _plain_other(value: Any, where: str) -> Any:
    """PlainData's converter for the reader's data objects inside attributes."""
    if isinstance(value, _NumpyArray):
        if value.value is None:
            raise OfficialNetworkError(f"{where}: a numpy array without its data")
        return value.value
    if isinstance(value, _TensorRecord):
        return value.tensor
    raise OfficialNetworkError(f"{where}: holds a {type(value).__name__}, not plain data")


def _network(path: Path, key: str, root: PersistentObject) -> OfficialNetwork:
    """Flatten a persistent network's nested state into dotted names. The modules must form a
    tree (each visited once: no cycles, no shared submodules) at most MAX_MODULE_DEPTH deep;
    tensors must be finite floats; attribute values plain data (official_checks.PlainData)."""
    tensors: dict[str, torch.Tensor] = {}
    layers: dict[str, OfficialLayer] = {}
    seen: dict[int, str] = {}  # id of each module visited -> its path
    plain = PlainData(_plain_other)

    def name_of(prefix: str, name: Any, where: str, what: str) -> str:
        if not isinstance(name, str) or not name or "." in name:
            raise OfficialNetworkError(f"{where}: {what} name {short(name)} is not a name")
        return f"{prefix}.{name}" if prefix else name

    def visit(obj: PersistentObject, prefix: str, depth: int) -> None:
        where = f"{path}: {key}{'.' + prefix if prefix else ''}"
        if id(obj) in seen:
            first = seen[id(obj)]
            raise OfficialNetworkError(
                f"{where}: is the same module object as {key}{'.' + first if first else ''} "
                "(a module inside itself, or shared by two parents); an official network is "
                "a tree of distinct modules"
            )
        if depth > MAX_MODULE_DEPTH:
            raise OfficialNetworkError(f"{where}: modules nested more than {MAX_MODULE_DEPTH} deep")
        seen[id(obj)] = prefix
        state = obj.state
        attrs = {
            k: plain(v, f"{where} attribute {k!r}")
            for k, v in state.items()
            if not k.startswith("_") and not isinstance(v, _TensorRecord | PersistentObject)
        }
        kwargs = state.get("_init_kwargs")
        kwargs = plain(kwargs, f"{where} _init_kwargs") if isinstance(kwargs, dict) else {}
        layers[prefix] = OfficialLayer(obj.class_name, attrs, kwargs)
        for group, kind in (("_parameters", "parameter"), ("_buffers", "buffer")):
            items = state.get(group) or {}
            if not isinstance(items, dict):
                raise OfficialNetworkError(f"{where}: {group} is not a dict")
            for name, rec in items.items():
                full = name_of(prefix, name, where, group[1:-1])
                if rec is None:
                    continue
                t = rec.tensor if isinstance(rec, _TensorRecord) else None
                if t is None or not t.is_floating_point():
                    raise OfficialNetworkError(f"{where}: {group}[{name!r}] is not a float tensor")
                if full in tensors:
                    raise OfficialNetworkError(f"{where}: two tensors named {full}")
                t = t.detach().float()
                check_finite(f"{path}: {key} tensor {full} (a {kind})", t)
                tensors[full] = t
        children = state.get("_modules") or {}
        if not isinstance(children, dict):
            raise OfficialNetworkError(f"{where}: _modules is not a dict")
        for name, child in children.items():
            full = name_of(prefix, name, where, "submodule")
            if child is None:
                continue
            if not isinstance(child, PersistentObject):
                raise OfficialNetworkError(
                    f"{where}: submodule {name!r} is a {type(child).__name__}, not a persistent "
                    "official layer"
                )
            visit(child, full, depth + 1)

    visit(root, "", 0)
    return OfficialNetwork(path, key, root.class_name, layers[""].init_kwargs, tensors, layers)
