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

The mapping onto this project's networks is `cxrlib.models.official`.
"""

from __future__ import annotations

import collections
import hashlib
import io
import pickle
import struct
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

SETTINGS = "stylegan2ada.settings"  # where the run's sizes are configured
PERSISTENCE_VERSION = 6  # torch_utils.persistence._version of every official release
NETWORK_KEYS = ("G", "D", "G_ema")
_ZIP_MAGIC = b"PK\x03\x04"
# struct formats of the numpy scalar types an official pickle holds (weight gains, ...).
_NUMPY_SCALARS = {
    "f2": "e", "f4": "f", "f8": "d", "i1": "b", "i2": "h", "i4": "i", "i8": "q",
    "u1": "B", "u2": "H", "u4": "I", "u8": "Q", "b1": "?",
}  # fmt: skip


class OfficialNetworkError(ValueError):
    """An official network pickle that is refused: unsafe, unreadable, or not mappable onto
    this run. The message names the file, what was found and what to change."""


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
# The restricted unpickler.


class _PlainDict(dict):
    """Stands in for dnnlib.util.EasyDict (a dict with attribute access): just its items."""


class _NumpyDType:
    """Stands in for numpy.dtype while unpickling: records the type code and byte order."""

    def __init__(self, code: Any, align: Any = False, copy: Any = True):
        if not isinstance(code, str) or code not in _NUMPY_SCALARS:
            raise OfficialNetworkError(f"numpy dtype {code!r} is not a plain number type")
        self.code, self.byteorder = code, "<"

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) > 1 and state[1] in ("<", ">", "|", "="):
            self.byteorder = state[1]


class _NumpyArray:
    """Stands in for numpy.ndarray while unpickling (StyleGAN3 layers keep sizes and sampling
    rates as arrays): numeric arrays only, decoded with numpy.frombuffer."""

    def __init__(self) -> None:
        self.value: list[Any] | None = None

    def __setstate__(self, state: Any) -> None:
        ok = isinstance(state, tuple) and len(state) == 5
        if ok:
            _, shape, dtype, fortran, raw = state
            ok = (
                isinstance(dtype, _NumpyDType)
                and isinstance(raw, bytes)
                and isinstance(shape, tuple)
                and all(isinstance(v, int) for v in shape)
            )
        if not ok:
            raise OfficialNetworkError("numpy array of an unsupported kind (numbers only)")
        order = ">" if dtype.byteorder == ">" else "<"
        arr = np.frombuffer(raw, dtype=np.dtype(order + dtype.code))
        self.value = arr.reshape(shape, order="F" if fortran else "C").tolist()


def _numpy_reconstruct(cls: Any, shape: Any, typecode: Any) -> _NumpyArray:
    """numpy's ndarray reconstructor, for plain ndarrays only (filled by __setstate__)."""
    if cls is not _NumpyArray:
        raise OfficialNetworkError("numpy array subclass refused")
    return _NumpyArray()


def _numpy_scalar(dtype: Any, data: Any) -> int | float | bool:
    """numpy's scalar(dtype, bytes) for plain number types, as a Python number."""
    if not isinstance(dtype, _NumpyDType) or not isinstance(data, bytes):
        raise OfficialNetworkError("numpy scalar of an unsupported kind")
    order = ">" if dtype.byteorder == ">" else "<"
    return struct.unpack(order + _NUMPY_SCALARS[dtype.code], data)[0]


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
) -> torch.Tensor:
    """torch._utils._rebuild_tensor(_v2) with its arguments checked; a plain tensor."""
    ok = (
        isinstance(storage, torch.TypedStorage)
        and isinstance(storage_offset, int)
        and isinstance(size, tuple | list)
        and isinstance(stride, tuple | list)
        and all(isinstance(v, int) for v in (*size, *stride))
        and len(size) == len(stride)
    )
    if not ok:
        raise OfficialNetworkError("malformed tensor record")
    _no_hooks(backward_hooks)
    if metadata:
        raise OfficialNetworkError(f"tensor metadata {metadata!r} is not supported")
    return torch._utils._rebuild_tensor(storage, storage_offset, tuple(size), tuple(stride))


def _rebuild_parameter(
    data: Any, requires_grad: Any = False, backward_hooks: Any = None, state: Any = None
) -> torch.Tensor:
    """torch._utils._rebuild_parameter(_with_state): the parameter's data as a plain tensor."""
    if not isinstance(data, torch.Tensor):
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
            f"persistence version {meta.get('version')!r}; the official loader (and this one) "
            f"accept only {PERSISTENCE_VERSION}"
        )
    sha = hashlib.sha256(meta["module_src"].encode("utf-8", "replace")).hexdigest()
    return PersistentObject(meta["class_name"], dict(meta["state"]), meta["version"], sha)


class SafeNetworkUnpickler(pickle.Unpickler):
    """`pickle.Unpickler` that resolves only the globals an official network pickle needs
    (table `self.allowed`), each mapped to a function here that builds plain data; anything
    else raises OfficialNetworkError naming the file and the global, before it is called."""

    def __init__(self, file: io.BufferedIOBase, path: Path):
        super().__init__(file)
        self.path = path
        self.allowed: dict[tuple[str, str], Callable[..., Any]] = {
            ("collections", "OrderedDict"): collections.OrderedDict,
            ("builtins", "set"): set,  # pickle protocol < 4 writes sets as set(list)
            ("builtins", "frozenset"): frozenset,
            ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
            ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
            ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
            ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
            ("torch.storage", "_load_from_bytes"): self._load_storage,
            ("torch_utils.persistence", "_reconstruct_persistent_obj"): _persistent_as_data,
            ("dnnlib.util", "EasyDict"): _PlainDict,
            ("numpy", "dtype"): _NumpyDType,
            ("numpy.core.multiarray", "scalar"): _numpy_scalar,  # numpy < 2
            ("numpy._core.multiarray", "scalar"): _numpy_scalar,  # numpy >= 2
            ("numpy", "ndarray"): _NumpyArray,
            ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
            ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
        }

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
            f"{self.path}: refused to load the global {module}.{name} found in the pickle. "
            f"Only these are allowed: {allowed}. {hint}"
        )

    def persistent_load(self, pid: Any) -> Any:
        raise OfficialNetworkError(
            f"{self.path}: holds a persistent id ({type(pid).__name__}), as torch.save files "
            "do; an official network pickle has none"
        )

    def _load_storage(self, data: Any) -> torch.TypedStorage:
        """torch.storage._load_from_bytes with weights_only=True (no code from the bytes)."""
        if not isinstance(data, bytes | bytearray):
            raise OfficialNetworkError(f"{self.path}: a tensor storage record is not bytes")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # TypedStorage deprecation
                obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise OfficialNetworkError(
                f"{self.path}: a tensor storage in the pickle was refused by "
                f"torch.load(weights_only=True): {first}"
            ) from exc
        if not isinstance(obj, torch.TypedStorage):
            raise OfficialNetworkError(
                f"{self.path}: a tensor storage record holds a {type(obj).__name__}"
            )
        return obj


def _file_kind(head: bytes) -> Literal["pickle", "zip", "torch_legacy", "other"]:
    """What the first 16 bytes of a file say it is."""
    if head.startswith(_ZIP_MAGIC):
        return "zip"  # torch.save's default format
    if len(head) < 3 or head[0] != 0x80 or head[1] not in range(2, 6):
        return "other"  # no pickle protocol 2+ header
    rest = head[2:]
    if rest[:1] == b"\x95":  # FRAME (protocol 4+) and its 8-byte length
        rest = rest[9:]
    # LONG1 first: torch.save's legacy format, which starts with its magic number.
    return "torch_legacy" if rest[:1] == b"\x8a" else "pickle"


def is_official_pickle(path: str | Path) -> bool:
    """Cheap sniff (first 16 bytes): a plain pickle (protocol 2+ header), not a torch.save file
    (zip, or the legacy format whose first object is its magic number). True means: hand it
    to `read_official_pickle`, which checks everything else."""
    with open(path, "rb") as f:
        return _file_kind(f.read(16)) == "pickle"


def read_official_pickle(path: str | Path) -> OfficialNetworks:
    """Read an official StyleGAN2-ADA / StyleGAN3 network pickle safely (module docstring).

    Returns the networks present among G, D, G_ema, each with its tensors by dotted name
    (float tensors on the CPU), its layers' attributes and its constructor kwargs. Raises
    OfficialNetworkError (a ValueError) for anything unsafe or not of that kind;
    FileNotFoundError when there is no file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    with open(path, "rb") as f:
        kind = _file_kind(f.read(16))
        if kind in ("zip", "torch_legacy"):
            raise OfficialNetworkError(
                f"{path}: is a torch.save file ({kind}), not an official network pickle; a "
                "project snapshot or networks.pt is read by the trainer directly"
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
                f"{path}: not a readable network pickle ({type(exc).__name__}: {exc})"
            ) from exc
    if not isinstance(data, dict):
        raise OfficialNetworkError(
            f"{path}: holds a {type(data).__name__}, not the official dict of networks "
            f"({', '.join(NETWORK_KEYS)}, ...)"
        )
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
        raise OfficialNetworkError(
            f"{path}: has none of {', '.join(NETWORK_KEYS)} (keys: {sorted(map(str, data))})"
        )
    tsk = data.get("training_set_kwargs")
    others = tuple(str(k) for k in data if k not in (*NETWORK_KEYS, "training_set_kwargs"))
    return OfficialNetworks(path, networks, _plain(tsk) if isinstance(tsk, dict) else None, others)


def _plain(value: Any) -> Any:
    """Nested EasyDicts / OrderedDicts / tuples / numpy arrays as plain dicts and lists."""
    if isinstance(value, _NumpyArray):
        return value.value
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _network(path: Path, key: str, root: PersistentObject) -> OfficialNetwork:
    """Flatten a persistent network's nested state into dotted names."""
    tensors: dict[str, torch.Tensor] = {}
    layers: dict[str, OfficialLayer] = {}

    def visit(obj: PersistentObject, prefix: str) -> None:
        where = f"{path}: {key}{'.' + prefix if prefix else ''}"
        state = obj.state
        attrs = {
            k: _plain(v)
            for k, v in state.items()
            if not k.startswith("_") and not isinstance(v, torch.Tensor | PersistentObject)
        }
        kwargs = state.get("_init_kwargs")
        layers[prefix] = OfficialLayer(
            obj.class_name, attrs, _plain(kwargs) if isinstance(kwargs, dict) else {}
        )
        for group in ("_parameters", "_buffers"):
            items = state.get(group) or {}
            if not isinstance(items, dict):
                raise OfficialNetworkError(f"{where}: {group} is not a dict")
            for name, t in items.items():
                if t is None:
                    continue
                if not isinstance(t, torch.Tensor) or not t.is_floating_point():
                    raise OfficialNetworkError(f"{where}: {group}[{name!r}] is not a float tensor")
                tensors[f"{prefix}.{name}" if prefix else name] = t.detach().float()
        children = state.get("_modules") or {}
        if not isinstance(children, dict):
            raise OfficialNetworkError(f"{where}: _modules is not a dict")
        for name, child in children.items():
            if child is None:
                continue
            if not isinstance(child, PersistentObject):
                raise OfficialNetworkError(
                    f"{where}: submodule {name!r} is a {type(child).__name__}, not a persistent "
                    "official layer"
                )
            visit(child, f"{prefix}.{name}" if prefix else name)

    visit(root, "")
    return OfficialNetwork(path, key, root.class_name, layers[""].init_kwargs, tensors, layers)
