"""Decode chest X-ray files (JPEG, PNG, DICOM) into one grayscale array each, or say why not.

Every later step of the workflow (validation, deduplication, resizing, training) wants the same
thing from a file: a 2-D grayscale array in which dense tissue is bright. Data sets arrive as a
mix of 8-bit JPEGs, 16-bit PNGs, colour exports and DICOMs, plus the usual debris (empty
downloads, HTML error pages saved as ``.jpg``, macOS metadata files). `read_image` turns all of
that into either a `DecodedImage` or an `ImageRejected` whose reason a person can act on, so a
data-set audit can list every bad file with its fix instead of stopping at the first crash.

Why one module of about 800 lines: every format's decoder ends in the same two outcomes
(`DecodedImage` or `ImageRejected` with a reason), and the reasons are worded together so
the audit reads as one list; split by format, the same checks (size, bit depth, photometric
interpretation) would be written three times.
"""

import hashlib
import io
import re
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pydicom
import simplejpeg
from PIL import ExifTags, Image, ImageOps
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.pixels import apply_modality_lut, get_decoder
from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from cxrlib.data.streams import StreamError, jpeg_trailing_bytes, png_trailing_bytes

__all__ = [
    "SUPPORTED_SUFFIXES",
    "DecodedImage",
    "ImageRejected",
    "pixel_sha256",
    "read_image",
]


class ImageRejected(Exception):
    """Raised when a file cannot be used as a training image.

    ``reason`` is a short lower-case sentence naming the problem and, where one exists, the fix.
    It is the whole message, so ``str(exc) == exc.reason`` and reports can print either.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class DecodedImage:
    """One decoded image, reduced to what the workflow needs.

    The result deliberately carries no DICOM tags or other metadata: patient name, ID, dates and
    the like never leave `read_image`, so nothing built from a `DecodedImage` (manifests, caches,
    reports) can leak them.

    ``pixels`` is read-only so one decoded image can be shared by several consumers without any
    of them changing it under the others; call ``.copy()`` to get a writable array.
    """

    pixels: np.ndarray
    """2-D grayscale, uint8 or uint16, C-contiguous, in display orientation: bright means dense
    (DICOM MONOCHROME1 is already inverted) and EXIF rotations are already applied."""
    width: int
    """Width of ``pixels`` in px: the file's full resolution (after any EXIF rotation), before
    the workflow resizes anything."""
    height: int
    """Height of ``pixels`` in px, as for ``width``."""
    mode: str
    """Colour mode as found in the file: a PIL mode ("L", "I;16", "RGB", ...) or the DICOM
    PhotometricInterpretation ("MONOCHROME1", "MONOCHROME2")."""
    format: str
    """"JPEG", "PNG" or "DICOM"."""
    bit_depth: int
    """Bits per value of ``pixels``: 8 or 16."""
    decode_scale: float = 1.0
    """Size of ``pixels`` relative to the file's full resolution: 1 unless a large JPEG was
    decoded with DCT scaling (``draft_min_side``), then 1/2, 1/4 or 1/8."""
    trailing_bytes: int = 0
    """Bytes after the image's end marker (JPEG EOI, PNG IEND): harmless to the pixels, but a
    sign of an odd export or a file joined with another; 0 for DICOM."""


SUPPORTED_SUFFIXES: frozenset[str] = frozenset({".jpeg", ".jpg", ".png", ".dcm", ".dicom"})

# Only these suffixes justify reading a file without the "DICM" marker as DICOM: a forced
# pydicom read "succeeds" on almost any bytes, so it must not be tried on arbitrary files.
_DICOM_SUFFIXES = frozenset({".dcm", ".dicom"})

# Enough for every signature below, including the DICOM marker at offset 128.
_HEADER_BYTES = 132

_UINT16_MAX = 65535

# Image formats people plausibly export X-rays as; naming them tells the user what to convert.
_UNSUPPORTED_IMAGE_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"II+\x00", "TIFF"),
    (b"MM\x00+", "TIFF"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG 2000"),
    (b"\xffO\xffQ", "JPEG 2000"),
    (b"\x00\x00\x00\x0cJXL \r\n\x87\n", "JPEG XL"),
    (b"\xff\x0a", "JPEG XL"),
    (b"BM", "BMP"),
)

# Non-image files that typically end up in downloaded data-set folders.
_NON_IMAGE_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"\x00\x00\x00\x01Bud1", "a macOS .DS_Store file"),
    (b"\x00\x05\x16\x07", "a macOS resource-fork (._) file"),
)

# EXIF orientation values other than 1 mean "rotate or flip before display".
_EXIF_ORIENTATION = ExifTags.Base.Orientation


def read_image(
    path: Path, min_side_px: int = 64, draft_min_side: int | None = None
) -> DecodedImage:
    """Decode a JPEG, PNG or DICOM file into a grayscale `DecodedImage`.

    The format is taken from the file's content, not its name, because data sets often contain
    PNGs named ``.jpg`` and the like; a DICOM without the 128-byte preamble is only attempted
    for ``.dcm``/``.dicom`` names. Each file is decoded exactly once.

    No DICOM tag (patient name, ID, dates, ...) is returned or kept: the result holds pixels and
    geometry only, by design.

    ``draft_min_side``: when set, a JPEG is decoded with libjpeg's DCT scaling at the smallest
    scale (1/2, 1/4, 1/8) that keeps both sides at least this long, as PIL's ``thumbnail`` does.
    That skips most of the decoding work when the image is only wanted small; ``pixels`` is then
    smaller than the file, ``width``/``height`` stay the full size and ``decode_scale`` says
    which scale was used.

    Raises:
        ImageRejected: for any file that cannot be used (empty, not an image, unsupported
            format, truncated or corrupt, too small, blank, multi-frame, too large to decode
            safely, undecodable DICOM compression). No other exception escapes for bad files.
    """
    path = Path(path)
    try:
        return _read_image(path, min_side_px, draft_min_side)
    except ImageRejected:
        raise
    except Exception as exc:  # a decoder failing in a way no check above foresaw
        raise ImageRejected(
            f"the file could not be decoded ({_describe(exc)}); re-export it as PNG"
        ) from exc


def _read_image(path: Path, min_side_px: int, draft_min_side: int | None) -> DecodedImage:
    try:
        if not stat.S_ISREG(path.stat().st_mode):  # a pipe or device would block the read
            raise ImageRejected(
                "not a regular file (a named pipe, device or socket); remove it from the "
                "image folder"
            )
        fh = path.open("rb")
    except OSError as exc:
        raise ImageRejected(
            f"cannot open the file ({exc.strerror or exc}); check the path and its permissions"
        ) from exc
    with fh:
        try:
            header = fh.read(_HEADER_BYTES)
            fh.seek(0)
        except OSError as exc:
            raise ImageRejected(
                f"cannot read the file ({exc.strerror or exc}); check the disk or copy it again"
            ) from exc
        if not header:
            raise ImageRejected("empty file (0 bytes); re-download or re-export it")

        kind = _sniff(header)
        if kind in ("JPEG", "PNG"):
            image = _read_with_pil(_read_all(fh), kind, min_side_px, draft_min_side)
        elif kind == "DICOM":
            image = _read_dicom(fh, forced=False, min_side_px=min_side_px)
        elif (reason := _foreign_file_reason(header)) is not None:
            raise ImageRejected(reason)
        elif path.suffix.lower() in _DICOM_SUFFIXES:
            image = _read_dicom(fh, forced=True, min_side_px=min_side_px)
        else:
            raise ImageRejected(
                "not an image file (no JPEG, PNG or DICOM signature); "
                "remove it or convert it to PNG"
            )
    _reject_if_blank(image.pixels, image.format)
    return image


def pixel_sha256(pixels: np.ndarray) -> str:
    """Hash pixel values so that identical images match whatever file they came from.

    The dtype and shape are hashed along with the values because the same bytes read as uint8
    or uint16, or as 100x200 instead of 200x100, are different images. Byte order is normalised
    to little-endian first so a big-endian array hashes like its native twin.
    """
    arr = np.ascontiguousarray(pixels)
    if arr.dtype.byteorder == ">":
        arr = arr.astype(arr.dtype.newbyteorder("<"))
    shape = ",".join(str(n) for n in arr.shape)
    # The newline ends the header unambiguously: it cannot occur in a dtype string or a shape.
    digest = hashlib.sha256(f"dtype={arr.dtype.str};shape={shape}\n".encode("ascii"))
    digest.update(arr)
    return digest.hexdigest()


# --------------------------------------------------------------------------- format detection


def _sniff(header: bytes) -> str | None:
    """Return "JPEG", "PNG" or "DICOM" when the file's signature says so, else None."""
    if header.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if header.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if header[128:132] == b"DICM":
        return "DICOM"
    return None


def _foreign_file_reason(header: bytes) -> str | None:
    """Explain a file with a recognisable non-supported signature, or None if unrecognised."""
    if header[:4] == b"RIFF" and header[8:12] == b"WEBP":
        return _unsupported_format_reason("WebP")
    if header[4:8] == b"ftyp" and header[8:12] in (b"heic", b"heix", b"mif1", b"avif", b"msf1"):
        return _unsupported_format_reason("HEIF/AVIF")
    for signature, name in _UNSUPPORTED_IMAGE_SIGNATURES:
        if header.startswith(signature):
            return _unsupported_format_reason(name)
    for signature, what in _NON_IMAGE_SIGNATURES:
        if header.startswith(signature):
            return f"not an image file (looks like {what}); remove it from the image folder"
    stripped = header.lstrip().lower()
    if stripped.startswith((b"<!doctype html", b"<html")):
        return (
            "not an image file (looks like an HTML page, probably a failed download); "
            "download it again"
        )
    if _looks_like_text(header):
        return "not an image file (looks like text); remove it from the image folder"
    return None


def _unsupported_format_reason(name: str) -> str:
    return f"unsupported image format {name}; convert it to PNG (grayscale, 8 or 16 bit)"


def _looks_like_text(header: bytes) -> bool:
    """True when the first bytes are printable UTF-8, as in CSV, JSON or README files."""
    if any(b < 0x20 and b not in b"\t\n\r\f" for b in header):
        return False
    try:
        header.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut by the header limit is still text.
        return exc.start >= len(header) - 3 and exc.reason == "unexpected end of data"
    return True


# --------------------------------------------------------------------------- JPEG and PNG


def _read_all(fh: BinaryIO) -> bytes:
    try:
        return fh.read()
    except OSError as exc:
        raise ImageRejected(
            f"cannot read the file ({exc.strerror or exc}); check the disk or copy it again"
        ) from exc


def _read_with_pil(
    data: bytes, fmt: str, min_side_px: int, draft_min_side: int | None = None
) -> DecodedImage:
    """Decode a JPEG or PNG with PIL, refusing anything PIL had to guess or skip.

    The file's stream structure is checked too (`cxrlib.data.streams`): libjpeg fills an image
    cut short and then padded with grey instead of failing, and PIL skips the CRC of PNG pixel
    chunks. When PIL fails as well, its words are kept beside the structural finding.
    """
    try:
        trailing = (jpeg_trailing_bytes if fmt == "JPEG" else png_trailing_bytes)(data)
        stream_problem = None
    except StreamError as exc:
        trailing, stream_problem = 0, str(exc)
    try:
        return _decode_with_pil(data, fmt, min_side_px, draft_min_side, trailing, stream_problem)
    except ImageRejected as exc:
        if stream_problem is None or not stream_problem.startswith("truncated"):
            raise
        cause = exc.__cause__
        raise ImageRejected(
            f"{stream_problem} ({_describe(cause)})" if cause else stream_problem
        ) from cause


def _decode_with_pil(
    data: bytes,
    fmt: str,
    min_side_px: int,
    draft_min_side: int | None,
    trailing: int,
    stream_problem: str | None,
) -> DecodedImage:
    im = _pil_open(io.BytesIO(data), fmt)
    n_frames = getattr(im, "n_frames", 1)
    if n_frames > 1:
        raise ImageRejected(
            f"animated or multi-frame {fmt} ({n_frames} frames); export a single frame as PNG"
        )
    _check_size(*im.size, min_side_px)
    mode = im.mode
    full_size = im.size
    if fmt == "JPEG" and mode in ("L", "RGB"):
        if stream_problem is not None:
            raise ImageRejected(stream_problem)
        pixels, scale = _decode_jpeg_strict(data, mode, full_size, draft_min_side)
        pixels = _orient(pixels, im)
        rotated = pixels.shape[1] != round(full_size[0] * scale)
        width, height = full_size[::-1] if rotated else full_size
        return _decoded(
            pixels,
            mode=mode,
            fmt=fmt,
            scale=scale,
            full_size=(width, height),
            trailing_bytes=trailing,
        )
    if fmt == "JPEG" and draft_min_side and mode in ("L", "RGB"):
        # Decode straight to grayscale at a reduced DCT scale: libjpeg skips most of the IDCT.
        im.draft("L", (draft_min_side, draft_min_side))
    scale = im.size[0] / full_size[0]
    _pil_load(im, fmt)
    if stream_problem is not None:  # decoded "fine", but from an incomplete or damaged file
        raise ImageRejected(stream_problem)
    im = _apply_exif_orientation(im)
    try:
        pixels = _pil_to_array(im)
    except ImageRejected:
        raise
    except Exception as exc:
        raise ImageRejected(
            f"corrupt {fmt} data; re-download or re-export the file ({_describe(exc)})"
        ) from exc
    if scale == 1.0:
        return _decoded(pixels, mode=mode, fmt=fmt, trailing_bytes=trailing)
    rotated = pixels.shape[1] != round(full_size[0] * scale)
    width, height = full_size[::-1] if rotated else full_size
    return _decoded(
        pixels,
        mode=mode,
        fmt=fmt,
        scale=scale,
        full_size=(width, height),
        trailing_bytes=trailing,
    )


# libjpeg's warnings (simplejpeg raises them as ValueError with strict=True) that mean pixels
# are missing or invented; others (e.g. an unknown JFIF revision) are harmless.
_DAMAGE_WARNINGS = ("premature end", "bad huffman", "huffman code", "extraneous bytes")
_HARMLESS_EXTRANEOUS_BYTES = 16  # some encoders leave a few stray bytes before a marker


def _decode_jpeg_strict(
    data: bytes, mode: str, full_size: tuple[int, int], draft_min_side: int | None
) -> tuple[np.ndarray, float]:
    """Decode an 8-bit grayscale or YCbCr JPEG with libjpeg-turbo (simplejpeg), warnings on.

    Returns (pixels (H, W) uint8, scale). PIL decodes with the same libjpeg-turbo but drops
    its warnings, so a scan cut short (even with an end marker appended by a "repair" tool)
    or garbage mid-stream decodes as grey rows or wrong blocks; here those warnings reject the
    file. The DCT scale is PIL's draft rule (the largest of 1/8, 1/4, 1/2 that keeps both sides
    >= `draft_min_side`), so pixels are identical to PIL's draft decode (tests check it); with
    no draft, RGB files go through PIL's RGB->L conversion, as before.
    """
    width, height = full_size
    factor = 1
    if draft_min_side:
        factor = next(
            (
                f
                for f in (8, 4, 2)
                if width // f >= draft_min_side and height // f >= draft_min_side
            ),
            1,
        )
    gray = mode == "L" or draft_min_side is not None
    options = {
        "colorspace": "GRAY" if gray else "RGB",
        "min_height": -(-height // factor),
        "min_width": -(-width // factor),
    }
    try:
        out = simplejpeg.decode_jpeg(data, strict=True, **options)
    except ValueError as exc:
        message = str(exc)
        damage = next((w for w in _DAMAGE_WARNINGS if w in message.lower()), None)
        extraneous = re.search(r"(\d+) extraneous bytes", message)
        if damage is not None and not (
            extraneous and int(extraneous.group(1)) <= _HARMLESS_EXTRANEOUS_BYTES
        ):
            raise ImageRejected(
                "damaged JPEG data: the decoder had to invent pixels (truncated, padded or "
                f"corrupted file); re-download or re-export it (libjpeg: {message})"
            ) from exc
        try:
            out = simplejpeg.decode_jpeg(data, strict=False, **options)
        except ValueError as again:
            raise ImageRejected(
                f"corrupt JPEG data; re-download or re-export the file ({_describe(again)})"
            ) from again
    pixels = out[..., 0] if gray else np.asarray(Image.fromarray(out, "RGB").convert("L"))
    return np.ascontiguousarray(pixels), pixels.shape[1] / width


# EXIF Orientation -> the PIL transpose that displays the image upright (as exif_transpose).
_ORIENTATION_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _orient(pixels: np.ndarray, im: Image.Image) -> np.ndarray:
    """Apply the EXIF orientation of the opened file `im` to decoded `pixels`."""
    try:
        orientation = im.getexif().get(_EXIF_ORIENTATION, 1)
    except Exception:
        return pixels  # a broken EXIF block says nothing about the pixels
    op = _ORIENTATION_TRANSPOSE.get(orientation)
    if op is None:
        return pixels
    return np.asarray(Image.fromarray(pixels).transpose(op))


def _pil_open(fh: BinaryIO, fmt: str) -> Image.Image:
    """Open the header only, with PIL's decompression-bomb warning promoted to an error."""
    try:
        # Promoted locally so the global PIL limit and the caller's warning filters stay as
        # they are; oversized files are refused before any pixel memory is allocated.
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            # Restricting PIL to the sniffed format skips its probing of every other plugin.
            return Image.open(fh, formats=(fmt,))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageRejected(_too_large_reason(exc)) from exc
    except Exception as exc:
        raise ImageRejected(_pil_failure_reason(exc, fmt)) from exc


def _pil_load(im: Image.Image, fmt: str) -> None:
    """Decode all pixel data now so truncated files fail here instead of later, silently."""
    try:
        im.load()
    except Exception as exc:
        raise ImageRejected(_pil_failure_reason(exc, fmt)) from exc


def _pil_failure_reason(exc: Exception, fmt: str) -> str:
    if isinstance(exc, Image.UnidentifiedImageError):
        # PIL's message here is only the file object's repr, which helps nobody.
        return f"corrupt {fmt} header (PIL cannot parse it); re-download or re-export the file"
    message = str(exc).lower()
    if isinstance(exc, EOFError) or "truncated" in message:
        return (
            "truncated image data (file ends early); re-download or re-export the file "
            f"({_describe(exc)})"
        )
    return f"corrupt {fmt} data; re-download or re-export the file ({_describe(exc)})"


def _apply_exif_orientation(im: Image.Image) -> Image.Image:
    """Rotate/flip as the EXIF Orientation tag asks, as every viewer does before display.

    Only phone photos of films usually carry the tag; without it nothing is copied.
    """
    try:
        if im.getexif().get(_EXIF_ORIENTATION, 1) in (None, 1):
            return im
        return ImageOps.exif_transpose(im)
    except Exception:
        # Broken EXIF blocks are common and say nothing about the pixels; ignore them.
        return im


def _pil_to_array(im: Image.Image) -> np.ndarray:
    """Reduce a PIL image to 8-bit or 16-bit grayscale, converting only when the mode needs it."""
    mode = im.mode
    if mode == "L":
        return np.asarray(im)
    if mode.startswith("I;16"):
        # "I;16B" arrives big-endian; downstream code expects the native byte order.
        return np.asarray(im).astype(np.uint16, copy=False)
    if mode == "I":
        return np.clip(np.asarray(im), 0, _UINT16_MAX).astype(np.uint16)
    if mode in ("RGB", "1"):
        return np.asarray(im.convert("L"))
    if mode == "CMYK":
        # PIL has no direct CMYK->L conversion; going through RGB is its own colour model.
        return np.asarray(im.convert("RGB").convert("L"))
    if mode == "P" and "transparency" not in im.info:
        return np.asarray(im.convert("L"))
    if mode in ("P", "PA"):
        im = im.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA"):
        return _composite_on_black(im)
    raise ImageRejected(f"unsupported colour mode {mode}; re-export as 8- or 16-bit grayscale PNG")


def _composite_on_black(im: Image.Image) -> np.ndarray:
    """Flatten transparency onto black, the colour of air on a radiograph.

    Luminance is taken before compositing: both steps are linear, so the order only changes
    rounding, and compositing one channel is cheaper than three.
    """
    alpha = im.getchannel("A")
    gray = im.convert("L")  # PIL drops the alpha band here
    if alpha.getextrema()[0] == 255:
        return np.asarray(gray)
    flattened = Image.new("L", im.size, 0)
    flattened.paste(gray, mask=alpha)
    return np.asarray(flattened)


# --------------------------------------------------------------------------- DICOM


def _read_dicom(fh: BinaryIO, *, forced: bool, min_side_px: int) -> DecodedImage:
    """Decode a single-frame grayscale DICOM into MONOCHROME2-like uint16 pixels."""
    ds = _dcmread(fh, forced)
    if "PixelData" not in ds:
        if forced:
            raise ImageRejected(
                "not a DICOM file (no 'DICM' marker and no pixel data found); "
                "remove it or re-export it"
            )
        raise ImageRejected(
            "no pixel data in this DICOM file (not an image object, or cut short); "
            "export the image itself"
        )
    photometric = _check_dicom_header(ds, min_side_px)
    raw = _dicom_pixel_array(ds)
    try:
        pixels = _display_pixels(raw, ds, invert=photometric == "MONOCHROME1")
    except ImageRejected:
        raise
    except Exception as exc:  # e.g. RescaleSlope "1,50" or empty: pydicom's LUT fails on text
        raise ImageRejected(
            "unusable DICOM display tags (RescaleSlope/RescaleIntercept/window values must be "
            f"numbers); fix them or re-export the file ({_describe(exc)})"
        ) from exc
    return _decoded(pixels, mode=photometric, fmt="DICOM")


def _dcmread(fh: BinaryIO, forced: bool) -> Dataset:
    try:
        with warnings.catch_warnings():
            if forced:
                # A forced read of a non-DICOM file warns once per bogus tag; the rejection
                # below already says what is wrong.
                warnings.simplefilter("ignore")
            return pydicom.dcmread(fh, force=forced)
    except Exception as exc:
        if forced:
            raise ImageRejected(
                "not a DICOM file (no 'DICM' marker and no readable data set); "
                f"remove it or re-export it ({_describe(exc)})"
            ) from exc
        raise ImageRejected(f"corrupt DICOM header; re-export the file ({_describe(exc)})") from exc


def _check_dicom_header(ds: Dataset, min_side_px: int) -> str:
    """Refuse what the header alone rules out, before paying for pixel decoding.

    Returns the photometric interpretation, "MONOCHROME1" or "MONOCHROME2".
    """
    frames = _as_int(ds.get("NumberOfFrames", 1))
    if frames is not None and frames > 1:
        raise ImageRejected(f"multi-frame DICOM ({frames} frames); export a single frame")
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    samples = _as_int(ds.get("SamplesPerPixel", 1))
    if photometric not in ("MONOCHROME1", "MONOCHROME2") or samples != 1:
        raise ImageRejected(
            f"colour DICOM ({photometric}, {samples} samples per pixel); "
            "export it as grayscale (MONOCHROME2) DICOM or as grayscale PNG"
        )
    rows, columns = _as_int(ds.get("Rows")), _as_int(ds.get("Columns"))
    if not rows or not columns:
        raise ImageRejected("missing Rows/Columns in the DICOM header; re-export the file")
    # PIL's decompression-bomb limit is reused so one setting bounds every format.
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and rows * columns > limit:
        raise ImageRejected(
            f"image too large to decode safely ({columns}x{rows} px exceeds the "
            f"{limit}-pixel limit); downscale it before importing"
        )
    _check_size(columns, rows, min_side_px)
    return photometric


def _dicom_pixel_array(ds: Dataset) -> np.ndarray:
    """Decode the pixel data, naming the transfer syntax when no decoder is installed."""
    meta = getattr(ds, "file_meta", None)
    if meta is None:
        meta = ds.file_meta = FileMetaDataset()
    if "TransferSyntaxUID" not in meta:
        # Files without a meta header (old ACR-NEMA style) are encoded as pydicom read them.
        meta.TransferSyntaxUID = _syntax_from_encoding(ds)
    syntax = UID(meta.TransferSyntaxUID)
    if not _has_decoder(syntax):
        raise ImageRejected(
            f"cannot decode DICOM pixel data compressed as {syntax.name} ({syntax}): no "
            "decoder for it is installed (the workflow decodes JPEG, JPEG Lossless, JPEG-LS, "
            "JPEG 2000 and RLE); convert the file to uncompressed DICOM (dcmdjpeg, gdcmconv "
            "--raw) or PNG"
        )
    try:
        arr = ds.pixel_array
    except Exception as exc:
        message = str(exc).lower()
        if isinstance(exc, EOFError) or "less than expected" in message:
            reason = "truncated DICOM pixel data (file ends early); re-download or re-export it"
        elif syntax.is_compressed:
            reason = f"cannot decode DICOM pixel data ({syntax.name}); re-export the file"
        else:
            reason = "corrupt DICOM pixel data; re-export the file"
        raise ImageRejected(f"{reason} ({_describe(exc)})") from exc
    if arr.ndim != 2:
        raise ImageRejected(
            f"unexpected DICOM pixel array shape {arr.shape}; export a single 2-D frame"
        )
    return arr


def _syntax_from_encoding(ds: Dataset) -> UID:
    implicit, little = getattr(ds, "original_encoding", (True, True))
    if implicit:
        return ImplicitVRLittleEndian
    return ExplicitVRLittleEndian if little else ExplicitVRBigEndian


def _has_decoder(syntax: UID) -> bool:
    try:
        return get_decoder(syntax).is_available
    except NotImplementedError:
        # pydicom has no decoder at all for this (e.g. a private) transfer syntax.
        return False


def _display_pixels(raw: np.ndarray, ds: Dataset, *, invert: bool) -> np.ndarray:
    """Stored values -> Modality LUT -> VOI window -> uint16 0..65535, inverted if asked.

    Stored values of up to 16 bits take at most 65,536 distinct values, so the chain is run
    once per possible value and the image is mapped through the resulting table: the same
    arithmetic as per pixel at about half the cost on a 2000x2000 image.
    """
    lo, hi = raw.min(), raw.max()
    if lo == hi:
        raise ImageRejected(f"blank image (every stored pixel value is {lo}); check the export")
    # Modality LUTs are monotonic (a rescale always is), so the rescaled data's extremes are
    # the rescaled stored extremes; this is the min-max window when the file names none.
    extremes = apply_modality_lut(np.array([lo, hi], dtype=raw.dtype), ds)
    data_range = (float(np.min(extremes)), float(np.max(extremes)))
    if raw.dtype.kind in "ui" and raw.dtype.itemsize <= 2:
        unsigned = raw.view(np.dtype(f"u{raw.dtype.itemsize}"))
        # Every bit pattern, read back as the stored dtype, so table[unsigned] is pixel-exact.
        domain = np.arange(2 ** (8 * raw.dtype.itemsize), dtype=unsigned.dtype).view(raw.dtype)
        table = _stored_to_display(domain, ds, data_range, invert)
        return np.take(table, unsigned)
    return _stored_to_display(raw, ds, data_range, invert)


def _stored_to_display(
    stored: np.ndarray, ds: Dataset, data_range: tuple[float, float], invert: bool
) -> np.ndarray:
    """Apply the Modality LUT and the VOI window (or ``data_range`` when the file has none).

    The window is the radiographer's choice of visible range, so it is honoured when present;
    min-max is the fallback because an unwindowed 12-bit image would otherwise look grey.
    """
    rescaled = apply_modality_lut(stored, ds)
    # Copy only when pydicom handed back its input, which may be a view of the file's bytes; a
    # rescaled float64 array is already ours to overwrite.
    y = rescaled.astype(np.float64, copy=rescaled is stored)
    window = _voi_window(ds)
    if window is None:
        lo, hi = data_range
        if lo == hi:
            raise ImageRejected(f"blank image (every pixel is {lo:g}); check the export")
        y -= lo
        y *= _UINT16_MAX / (hi - lo)
    else:
        _apply_voi_function(y, *window, str(ds.get("VOILUTFunction", "LINEAR")))
    np.clip(y, 0, _UINT16_MAX, out=y)
    np.rint(y, out=y)
    if invert:
        # MONOCHROME1 stores dense tissue dark; flip so bright always means dense. After
        # rounding, so MONOCHROME1 and MONOCHROME2 of the same data are exact complements.
        np.subtract(_UINT16_MAX, y, out=y)
    return y.astype(np.uint16)


def _voi_window(ds: Dataset) -> tuple[float, float] | None:
    """First WindowCenter/WindowWidth pair, or None when absent or unusable."""
    center = _first_float(ds.get("WindowCenter"))
    width = _first_float(ds.get("WindowWidth"))
    if center is None or width is None or not width >= 1:
        return None
    return center, width


def _apply_voi_function(y: np.ndarray, center: float, width: float, function: str) -> None:
    """Map values to 0..65535 in place with the DICOM VOI LUT function (PS3.3 C.11.2.1.2)."""
    function = function.strip().upper()
    if function == "SIGMOID":
        y -= center
        y *= -4.0 / width
        np.exp(y, out=y)
        y += 1.0
        np.divide(_UINT16_MAX, y, out=y)
    elif function == "LINEAR_EXACT":
        # (x - c) / w + 0.5, rearranged as (x - lower) / w to round exactly at window edges
        y -= center - width / 2
        y /= width
        y *= _UINT16_MAX
    elif width > 1:
        # LINEAR, also the standard's default for unknown values:
        # (x - (c - 0.5)) / (w - 1) + 0.5, rearranged as for LINEAR_EXACT.
        y -= center - 0.5 - (width - 1) / 2
        y /= width - 1
        y *= _UINT16_MAX
    else:
        # A LINEAR window of width 1 is a threshold at center - 0.5.
        np.copyto(y, np.where(y > center - 0.5, _UINT16_MAX, 0))


# --------------------------------------------------------------------------- shared helpers


def _check_size(width: int, height: int, min_side_px: int) -> None:
    if min(width, height) < min_side_px:
        raise ImageRejected(
            f"image too small ({width}x{height} px; need at least {min_side_px} px on each "
            "side); use a higher-resolution export"
        )


def _reject_if_blank(pixels: np.ndarray, fmt: str) -> None:
    """A constant image carries no anatomy; it is usually a failed export or a placeholder."""
    lo, hi = pixels.min(), pixels.max()
    if lo == hi:
        hint = "check the window settings or the export" if fmt == "DICOM" else "check the export"
        raise ImageRejected(f"blank image (every pixel is {lo}); {hint}")


def _decoded(
    pixels: np.ndarray,
    *,
    mode: str,
    fmt: str,
    scale: float = 1.0,
    full_size: tuple[int, int] | None = None,
    trailing_bytes: int = 0,
) -> DecodedImage:
    if pixels.ndim != 2:
        raise ImageRejected(
            f"image has shape {pixels.shape}, not 2-D; export a single grayscale frame"
        )
    pixels = np.ascontiguousarray(pixels)  # EXIF flips may leave a strided view
    pixels.setflags(write=False)
    height, width = pixels.shape
    if full_size is not None:
        width, height = full_size
    return DecodedImage(
        pixels=pixels,
        width=width,
        height=height,
        mode=mode,
        format=fmt,
        bit_depth=pixels.dtype.itemsize * 8,
        decode_scale=scale,
        trailing_bytes=trailing_bytes,
    )


def _too_large_reason(exc: Exception) -> str:
    return (
        "image too large to decode safely (decompression-bomb guard); downscale it before "
        f"importing ({_describe(exc)})"
    )


def _describe(exc: BaseException) -> str:
    """One-line 'Type: message' for appending a library's own words to a reason."""
    message = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def _first_float(value: object) -> float | None:
    """First element of a possibly multi-valued DICOM number, as float; None if unusable."""
    if isinstance(value, (list, tuple, MultiValue)):
        if not value:
            return None
        value = value[0]
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if np.isfinite(number) else None


def _as_int(value: object) -> int | None:
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return None
