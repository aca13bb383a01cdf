"""A third feature space for FID/KID: torchxrayvision's DenseNet-121 trained on pooled public CXRs.

`densenet121-res224-all` (Cohen et al. 2022, torchxrayvision) was trained on NIH ChestX-ray14,
PadChest, CheXpert, MIMIC-CXR, the NIH Google labels, OpenI and the RSNA (Kaggle) pneumonia
images, to predict 18 findings. Its pooled penultimate features (1024-d, `model.features2`) are
a CXR-aware space that, unlike "cxr", is not trained on this study's own data: scores in it are
comparable across studies, as Inception's are, while knowing what a radiograph looks like.

Inputs: uint8 (N, 1|3, H, W) as cxrlib.metrics.fidelity.extract_features passes them to every
extractor (generator output in [-1, 1] already rounded to uint8 there, as torch-fidelity
does), so real and generated images take the same path from the same pixels. They are made
gray, scaled exactly as `xrv.utils.normalize(img, 255)` (to [-1024, 1024]) and resized to
224 px as the library's models resize inputs themselves (`xrv.utils.fix_resolution`:
bilinear, antialiased).

Weights: the release file is a whole pickled model (`torch.save(model)` in the library's
training script), by all signs in the pre-1.6 (non-zip) torch format: the library patches
modules saved before torch 1.6 when loading it, and its size is that format's to within 0.1%.
The fetch_xrv_weights rule downloads it on the login node and checks it against a pinned
sha256 before anything reads it. It is then unpickled by a restricted unpickler that can make
only the model's own classes (torchxrayvision's DenseNet and its blocks, the torch.nn layers
they hold), their state containers and tensors; the tensors are copied into a freshly built
DenseNet. Nothing in the file can name other code to run. See `load_xrv_state_dict`.
"""

from __future__ import annotations

import io
import logging
import pickle
import types
import warnings
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from cxrlib.metrics.weights import XRV_FIX, WeightsError, file_sha256

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

# Exactly what the pickled model refers to: the network's own classes and the torch.nn layers
# inside it, the containers of their state, and torch's tensor rebuilders (storages are
# resolved by torch.load itself). Anything else in the file stops the load.
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
_ALLOWED_GLOBALS: frozenset[str] = frozenset(
    {f"{c.__module__}.{c.__qualname__}" for c in _MODEL_CLASSES}
    | {
        "collections.OrderedDict",
        "builtins.set",
        "__builtin__.set",  # how protocol-2 pickles name it
        "torch._utils._rebuild_tensor_v2",
        "torch._utils._rebuild_parameter",
    }
)


class _AllowListUnpickler(pickle.Unpickler):
    """pickle's Unpickler that resolves only the globals in _ALLOWED_GLOBALS (the "restricting
    globals" recipe of Python's pickle documentation): nothing else can be imported or called."""

    def find_class(self, module: str, name: str) -> object:
        if f"{module}.{name}" not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(
                f"the file refers to {module}.{name}, which is not part of torchxrayvision's "
                "DenseNet; refusing to load it"
            )
        return super().find_class(module, name)


def _restricted_load(file: io.IOBase, **kwargs: object) -> object:
    return _AllowListUnpickler(file, **kwargs).load()


# What torch.load takes as `pickle_module` (it calls .Unpickler, .load and reads __name__).
_RESTRICTED_PICKLE = types.SimpleNamespace(
    __name__="cxrlib_restricted_pickle", Unpickler=_AllowListUnpickler, load=_restricted_load
)


def verify_xrv_weights(path: str | Path, expected_sha256: str) -> str:
    """Check the xrv weights file's sha256 (full, or a prefix of >= 8 hex digits) before
    anything reads it; returns the full sha256. Errors name the file and the fix."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(
            f"the xrv weights file {path} does not exist; {XRV_FIX} (the published file: {XRV_URL})"
        )
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


def load_xrv_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of an xrv DenseNet file, without running any code the file may carry.

    Accepts the release format (a whole pickled `xrv.models.DenseNet`, pre-1.6 torch format),
    the same saved by a newer torch (zip format), or a state dict of either format. Zip files
    go through torch's own weights-only unpickler with exactly _MODEL_CLASSES allowed; the old
    format cannot (torch's weights-only loader refuses the class references that torch.save
    wrote for modules before 1.6), so it goes through _AllowListUnpickler with the same list.
    Either way only those classes, OrderedDict, set and tensors can be made, and the model's
    tensors are read from its parameter/buffer dictionaries, never through its methods.
    Call `verify_xrv_weights` first.
    """
    path = Path(path)
    try:
        if zipfile.is_zipfile(path):
            with torch.serialization.safe_globals(list(_MODEL_CLASSES)):
                loaded = torch.load(path, map_location="cpu", weights_only=True)
        else:
            with warnings.catch_warnings():
                # the file keeps its classes' 2020 source; ours differs (not used: no method
                # of the loaded objects is called)
                warnings.simplefilter("ignore", torch.serialization.SourceChangeWarning)
                loaded = torch.load(
                    path, map_location="cpu", weights_only=False, pickle_module=_RESTRICTED_PICKLE
                )
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as exc:
        raise WeightsError(
            f"cannot read {path} as torchxrayvision's {XRV_WEIGHTS} DenseNet ({exc}); {XRV_FIX}"
        ) from exc
    if isinstance(loaded, xrv.models.DenseNet):
        try:
            state = dict(_module_tensors(loaded))
        except (AttributeError, KeyError, TypeError) as exc:
            raise WeightsError(f"{path} holds a malformed DenseNet ({exc}); {XRV_FIX}") from exc
    elif isinstance(loaded, Mapping):
        state = dict(loaded)
    else:
        raise WeightsError(
            f"{path} holds a {type(loaded).__name__}, not torchxrayvision's DenseNet or its "
            f"state dict; {XRV_FIX}"
        )
    bad = [str(k) for k, v in state.items() if not isinstance(k, str) or not torch.is_tensor(v)]
    if bad:
        raise WeightsError(f"{path}: entries that are not tensors: {', '.join(bad[:5])}")
    return state


def _module_tensors(module: nn.Module, prefix: str = "") -> Iterator[tuple[str, torch.Tensor]]:
    """(state-dict key, tensor) of an unpickled module tree, read from its dictionaries."""
    fields = vars(module)
    skip = fields.get("_non_persistent_buffers_set") or set()
    for name, tensor in fields["_parameters"].items():
        if tensor is not None:
            yield prefix + name, tensor
    for name, tensor in fields["_buffers"].items():
        if tensor is not None and name not in skip:
            yield prefix + name, tensor
    for name, child in fields["_modules"].items():
        if child is not None:
            if not isinstance(child, nn.Module):
                raise TypeError(f"{prefix}{name} is a {type(child).__name__}, not a module")
            yield from _module_tensors(child, f"{prefix}{name}.")


def build_xrv_densenet(state: Mapping[str, torch.Tensor]) -> nn.Module:
    """A fresh `xrv.models.DenseNet` (1 channel in, 18 findings) holding `state`, in eval mode.

    Built here, not taken from the file, so its code and settings are the installed library's.
    """
    model = xrv.models.DenseNet(weights=None)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise WeightsError(
            f"the weights do not fit torchxrayvision's DenseNet-121 ({exc}); {XRV_FIX}"
        ) from exc
    return model.eval()


def xrv_input(images: torch.Tensor, size: int = XRV_SIZE) -> torch.Tensor:
    """uint8 (N, 1|3, H, W) -> float32 (N, 1, size, size) as torchxrayvision's models take them.

    Three channels become gray by their mean (exact for our R=G=B images). Pixel values are
    scaled as `xrv.utils.normalize(img, 255)`, the same float32 operations in the same order,
    so a 224 px image gives exactly its result; other sizes are then resized as
    `xrv.utils.fix_resolution` does inside the library's models (bilinear, antialiased).
    """
    if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(
            f"expected uint8 (N, 1|3, H, W) images, got {images.dtype} {tuple(images.shape)}"
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
        self.model = build_xrv_densenet(load_xrv_state_dict(weights)).to(self.device)
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
