"""What a file is, from its first bytes: for messages about the files people hand over where a
network or weights file belongs (an image, a web page saved by a failed download, a Git LFS
pointer, a compressed file), and for choosing a reader. Needs neither torch nor numpy, so the
workflow can check a configured file while it builds the DAG.

Formats: torch.save writes a zip archive holding `<name>/data.pkl` (PyTorch >= 1.6) or, in the
legacy format, a pickle stream that starts with the magic number 0x1950A86A20F9469CFC6C;
official StyleGAN2-ADA / StyleGAN3 network pickles are plain pickles of protocol 2-5 (the
PROTO opcode 0x80 and the protocol number; a FRAME opcode 0x95 with its 8-byte length follows
from protocol 4).
"""

from __future__ import annotations

import reprlib
import zipfile
from pathlib import Path
from typing import Any, Literal

ZIP_MAGIC = b"PK\x03\x04"
HEAD_BYTES = 512  # what `describe_head` looks at (the DICOM and tar magics sit at 128 and 257)

# (magic bytes, offset, what it is) of the files people hand over instead of a network file.
_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", 0, "a PNG image"),
    (b"\xff\xd8\xff", 0, "a JPEG image"),
    (b"GIF8", 0, "a GIF image"),
    (b"II*\x00", 0, "a TIFF image"),
    (b"MM\x00*", 0, "a TIFF image"),
    (b"DICM", 128, "a DICOM image"),
    (ZIP_MAGIC, 0, "a zip archive"),
    (b"\x1f\x8b", 0, "a gzip-compressed file (decompress it first)"),
    (b"BZh", 0, "a bzip2-compressed file (decompress it first)"),
    (b"\xfd7zXZ\x00", 0, "an xz-compressed file (decompress it first)"),
    (b"7z\xbc\xaf\x27\x1c", 0, "a 7-Zip archive"),
    (b"ustar", 257, "a tar archive (extract it first)"),
    (b"\x89HDF\r\n\x1a\n", 0, "an HDF5 file (e.g. a Keras model)"),
    (b"\x93NUMPY", 0, "a numpy .npy array"),
    (b"%PDF", 0, "a PDF document"),
)
# How pickles of protocol 0 (text) and 1 usually start: a dict, list, tuple or global.
_OLD_PICKLES = (b"(dp", b"(lp", b"(tp", b"(i", b"}q", b"]q", b"c__builtin__", b"ccopy_reg")
_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = 60
_SHORT.maxlevel, _SHORT.maxlist, _SHORT.maxdict, _SHORT.maxtuple = 3, 6, 4, 6

Container = Literal["pickle", "zip", "torch_legacy", "other"]


def short(value: Any) -> str:
    """A bounded repr of a value from a file, for messages (never expands a whole structure,
    nor fails on an integer too long to print)."""
    try:
        return _SHORT.repr(value)
    except ValueError:  # int too long for str(): Python's digit limit
        return f"<an int of {value.bit_length()} bits>" if isinstance(value, int) else "<?>"


def container_kind(head: bytes) -> Container:
    """What the first 16 bytes say the file is: a zip archive (torch.save's default format), a
    torch.save legacy-format stream, another pickle of protocol 2-5, or something else."""
    if head.startswith(ZIP_MAGIC):
        return "zip"
    if len(head) < 3 or head[0] != 0x80 or head[1] not in range(2, 6):
        return "other"  # no pickle protocol 2+ header
    rest = head[2:]
    if rest[:1] == b"\x95":  # FRAME (protocol 4+) and its 8-byte length
        rest = rest[9:]
    # LONG1 first: torch.save's legacy format, which starts with its magic number.
    return "torch_legacy" if rest[:1] == b"\x8a" else "pickle"


def describe_head(head: bytes) -> str:
    """What the first bytes of a file (HEAD_BYTES or fewer) say it is, for a file that is not
    the kind expected; "a pickle of protocol N" for a pickle."""
    if not head:
        return "an empty file (a failed download?)"
    for magic, at, what in _MAGIC:
        if head[at : at + len(magic)] == magic:
            return what
    if len(head) >= 10 and head[8:10] == b'{"':
        return "a safetensors file"
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith(b"version https://git-lfs"):
        return "a Git LFS pointer, not the file itself (fetch it with `git lfs pull`)"
    if text.startswith((b"<!doctype html", b"<html", b"<head", b"<?xml", b"<error")):
        return "an HTML/XML page (a download link that returned a web page?)"
    if text.startswith((b"{", b"[")):
        return "a JSON document"
    if head.startswith(_OLD_PICKLES):
        return "a pickle of protocol 0 or 1"
    try:
        decoded = head.decode("utf-8")
    except UnicodeDecodeError as exc:  # a character cut at the end of the head is fine
        decoded = head[: exc.start].decode("utf-8") if exc.start >= len(head) - 3 else None
    if decoded and all(c.isprintable() or c in "\t\r\n" for c in decoded):
        return f"a text file (it starts {short(decoded[:40])})"
    if head[:1] == b"\x80":
        return f"a pickle of protocol {head[1] if len(head) > 1 else '?'}"
    return f"not a pickle (it starts {short(head[:8])})"


def read_head(path: str | Path, n: int = HEAD_BYTES) -> bytes:
    """The first `n` bytes of the file at `path` (OSError as open() raises it)."""
    with open(path, "rb") as f:
        return f.read(n)


def is_torch_zip(path: str | Path) -> bool:
    """True for a zip archive laid out as torch.save writes it (one top folder holding
    data.pkl); False for any other zip or an archive too damaged to list."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return False
    return any(name.count("/") == 1 and name.endswith("/data.pkl") for name in names)


def check_regular_file(
    path: Path, expected: str, not_regular: type[Exception] = ValueError, sep: str = ""
) -> None:
    """Say plainly what is wrong with a path that should be `expected` ("a network file"):
    IsADirectoryError for a folder, FileNotFoundError for a missing path or a broken link,
    `not_regular` for a device, fifo or socket (its message: path, `sep`, the reason)."""
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory, not {expected}")
    if not path.exists():
        if path.is_symlink():
            raise FileNotFoundError(f"{path} is a broken symbolic link (to {path.readlink()})")
        raise FileNotFoundError(f"{path} does not exist")
    if not path.is_file():
        raise not_regular(f"{path}{sep} is not a regular file (a device, fifo or socket)")


def network_file_kind(path: str | Path) -> Literal["torch", "pickle"]:
    """ "torch" for a torch.save file (zip or legacy format), "pickle" for a plain pickle of
    protocol 2-5 (what official StyleGAN2-ADA network pickles are).

    Raises ValueError naming what the file is instead (an image, a web page, a text file, an
    empty file, a zip archive of something else, ...), IsADirectoryError for a folder and
    FileNotFoundError for a missing path or a broken link.
    """
    path = Path(path)
    check_regular_file(path, "a network file")
    head = read_head(path)
    kind = container_kind(head[:16])
    if kind == "pickle":
        return "pickle"
    if kind == "torch_legacy" or (kind == "zip" and is_torch_zip(path)):
        return "torch"
    what = (
        "a damaged zip archive or one that torch.save did not write"
        if kind == "zip"
        else (describe_head(head))
    )
    raise ValueError(f"{path} is {what}, not a network file")
