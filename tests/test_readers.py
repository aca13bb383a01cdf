"""Tests for cxrlib.data.readers on small generated files (no real patient data anywhere)."""

import dataclasses
import io
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    ExplicitVRLittleEndian,
    HTJ2KLossless,
    JPEGBaseline8Bit,
    SecondaryCaptureImageStorage,
    generate_uid,
)

from cxrlib.data import readers
from cxrlib.data.readers import (
    SUPPORTED_SUFFIXES,
    DecodedImage,
    ImageRejected,
    pixel_sha256,
    read_image,
)

PATIENT_NAME = "Doe^Jane"
PATIENT_ID = "PID-0042-SECRET"


# --------------------------------------------------------------------------- helpers


def _pattern(height: int = 120, width: int = 100, dtype: type = np.uint8) -> np.ndarray:
    """Smooth, non-constant test image: JPEG-friendly and with every row and column distinct."""
    yy, xx = np.mgrid[0:height, 0:width]
    top = np.iinfo(dtype).max
    values = (xx / (width - 1) * 0.6 + yy / (height - 1) * 0.4) * top
    return np.rint(values).astype(dtype)


def _save(array_or_image: np.ndarray | Image.Image, path: Path, fmt: str, **kwargs) -> Path:
    image = (
        array_or_image
        if isinstance(array_or_image, Image.Image)
        else Image.fromarray(array_or_image)
    )
    image.save(path, fmt, **kwargs)
    return path


def _jpeg_bytes(array: np.ndarray, quality: int = 95) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def _dicom(
    path: Path,
    stored: np.ndarray,
    *,
    photometric: str = "MONOCHROME2",
    preamble: bool = True,
    syntax: str = ExplicitVRLittleEndian,
    pixel_data: bytes | None = None,
    **tags: object,
) -> Path:
    """Write a single-frame DICOM with patient tags set, so leaks would be detectable."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = syntax
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientName = PATIENT_NAME
    ds.PatientID = PATIENT_ID
    ds.Modality = "DX"
    ds.Rows, ds.Columns = stored.shape[-2:]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    bits = stored.dtype.itemsize * 8
    ds.BitsAllocated = bits
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 1 if stored.dtype.kind == "i" else 0
    for keyword, value in tags.items():
        setattr(ds, keyword, value)
    ds.PixelData = stored.tobytes() if pixel_data is None else pixel_data
    ds.save_as(path, enforce_file_format=True)
    if not preamble:
        path.write_bytes(path.read_bytes()[132:])
    return path


def _rejected(path: Path, *keywords: str, **kwargs) -> ImageRejected:
    """Assert read_image refuses the file with a lower-case reason naming every keyword."""
    with pytest.raises(ImageRejected) as info:
        read_image(path, **kwargs)
    exc = info.value
    assert type(exc) is ImageRejected
    assert str(exc) == exc.reason
    assert exc.reason[:1].islower(), exc.reason
    for keyword in keywords:
        assert keyword.lower() in exc.reason.lower(), exc.reason
    return exc


# --------------------------------------------------------------------------- interface


def test_public_interface() -> None:
    assert {".jpeg", ".jpg", ".png", ".dcm", ".dicom"} == SUPPORTED_SUFFIXES
    assert isinstance(SUPPORTED_SUFFIXES, frozenset)
    exc = ImageRejected("blank image; check the export")
    assert exc.reason == str(exc) == "blank image; check the export"
    assert [f.name for f in dataclasses.fields(DecodedImage)] == [
        "pixels",
        "width",
        "height",
        "mode",
        "format",
        "bit_depth",
        "decode_scale",
        "trailing_bytes",
    ]


# --------------------------------------------------------------------------- JPEG and PNG


def test_grayscale_jpeg(tmp_path: Path) -> None:
    source = _pattern()
    image = read_image(_save(source, tmp_path / "a.jpg", "JPEG", quality=95))
    assert (image.format, image.mode, image.bit_depth) == ("JPEG", "L", 8)
    assert image.pixels.dtype == np.uint8
    assert image.pixels.shape == (120, 100)
    assert (image.width, image.height) == (100, 120)
    assert np.abs(image.pixels.astype(int) - source).max() <= 3


def test_grayscale_png_is_exact(tmp_path: Path) -> None:
    source = _pattern()
    image = read_image(_save(source, tmp_path / "a.png", "PNG"))
    assert (image.format, image.mode, image.bit_depth) == ("PNG", "L", 8)
    np.testing.assert_array_equal(image.pixels, source)


def test_result_is_read_only_and_contiguous(tmp_path: Path) -> None:
    image = read_image(_save(_pattern(), tmp_path / "a.png", "PNG"))
    assert not image.pixels.flags.writeable
    assert image.pixels.flags.c_contiguous
    with pytest.raises(dataclasses.FrozenInstanceError):
        image.width = 1  # type: ignore[misc]


def test_sixteen_bit_png_stays_uint16(tmp_path: Path) -> None:
    source = _pattern(dtype=np.uint16)
    source[0, 0], source[-1, -1] = 0, 65535
    image = read_image(_save(source, tmp_path / "a.png", "PNG"))
    assert (image.mode, image.bit_depth) == ("I;16", 16)
    assert image.pixels.dtype == np.uint16
    np.testing.assert_array_equal(image.pixels, source)


def test_content_decides_format_not_suffix(tmp_path: Path) -> None:
    source = _pattern()
    image = read_image(_save(source, tmp_path / "really_a_png.jpg", "PNG"))
    assert image.format == "PNG"
    np.testing.assert_array_equal(image.pixels, source)


def test_rgb_gray_jpeg_matches_l_jpeg(tmp_path: Path) -> None:
    gray = _pattern()
    as_l = read_image(_save(gray, tmp_path / "l.jpg", "JPEG", quality=95))
    rgb = np.repeat(gray[..., None], 3, axis=2)
    as_rgb = read_image(_save(rgb, tmp_path / "rgb.jpg", "JPEG", quality=95))
    assert as_rgb.mode == "RGB"
    assert as_rgb.pixels.dtype == np.uint8
    # Same luma, same quantisation tables: only the colour transform's rounding differs.
    assert np.abs(as_rgb.pixels.astype(int) - as_l.pixels).max() <= 2


def test_rgb_gray_png_equals_l_png_exactly(tmp_path: Path) -> None:
    gray = _pattern()
    rgb = np.repeat(gray[..., None], 3, axis=2)
    image = read_image(_save(rgb, tmp_path / "rgb.png", "PNG"))
    assert image.mode == "RGB"
    np.testing.assert_array_equal(image.pixels, gray)


def test_rgba_png_opaque_alpha_is_dropped(tmp_path: Path) -> None:
    gray = _pattern()
    rgba = np.dstack([gray, gray, gray, np.full_like(gray, 255)])
    image = read_image(_save(rgba, tmp_path / "rgba.png", "PNG"))
    assert image.mode == "RGBA"
    np.testing.assert_array_equal(image.pixels, gray)


def test_rgba_png_semi_transparent_is_composited_on_black(tmp_path: Path) -> None:
    gray = np.full((120, 100), 200, np.uint8)
    alpha = np.full_like(gray, 128)
    alpha[:, :50] = 0  # left half fully transparent
    rgba = np.dstack([gray, gray, gray, alpha])
    image = read_image(_save(rgba, tmp_path / "rgba.png", "PNG"))
    assert np.all(image.pixels[:, :50] == 0)
    expected = round(200 * 128 / 255)  # 100
    assert np.abs(image.pixels[:, 50:].astype(int) - expected).max() <= 1


def test_la_png_semi_transparent(tmp_path: Path) -> None:
    gray = _pattern()
    alpha = np.full_like(gray, 255)
    alpha[:10] = 0
    image = read_image(
        _save(Image.fromarray(np.dstack([gray, alpha]), "LA"), tmp_path / "la.png", "PNG")
    )
    assert image.mode == "LA"
    assert np.all(image.pixels[:10] == 0)
    np.testing.assert_array_equal(image.pixels[10:], gray[10:])


def test_palette_png(tmp_path: Path) -> None:
    indices = (_pattern() // 4).astype(np.uint8)  # 64 palette entries used
    palette_image = Image.fromarray(indices, "P")
    palette_image.putpalette([v for i in range(256) for v in (i * 4 % 256,) * 3])
    image = read_image(_save(palette_image, tmp_path / "p.png", "PNG"))
    assert image.mode == "P"
    np.testing.assert_array_equal(image.pixels, indices * 4)


def test_palette_png_transparency_becomes_black(tmp_path: Path) -> None:
    indices = np.full((120, 100), 2, np.uint8)
    indices[:20] = 1
    indices[-20:] = 3
    palette_image = Image.fromarray(indices, "P")
    palette_image.putpalette([0, 0, 0, 250, 250, 250, 120, 120, 120, 60, 60, 60])
    path = _save(palette_image, tmp_path / "p.png", "PNG", transparency=1)
    image = read_image(path)
    assert image.mode == "P"
    assert np.all(image.pixels[:20] == 0)  # index 1 is transparent, not 250
    assert np.all(image.pixels[20:-20] == 120)
    assert np.all(image.pixels[-20:] == 60)


def test_cmyk_jpeg(tmp_path: Path) -> None:
    gray = _pattern()
    cmyk = Image.fromarray(np.repeat(gray[..., None], 3, axis=2)).convert("CMYK")
    image = read_image(_save(cmyk, tmp_path / "cmyk.jpg", "JPEG", quality=95))
    assert (image.format, image.mode, image.bit_depth) == ("JPEG", "CMYK", 8)
    assert np.abs(image.pixels.astype(int) - gray).mean() < 2


def test_bilevel_png(tmp_path: Path) -> None:
    bits = _pattern() > 100
    image = read_image(_save(Image.fromarray(bits), tmp_path / "b.png", "PNG"))
    assert image.mode == "1"
    np.testing.assert_array_equal(image.pixels, np.where(bits, 255, 0))


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    source = _pattern(120, 100)
    pil = Image.fromarray(source)
    exif = pil.getexif()
    exif[0x0112] = 6  # stored sideways: rotate 90 degrees clockwise to display
    image = read_image(_save(pil, tmp_path / "rot.png", "PNG", exif=exif))
    assert (image.width, image.height) == (120, 100)
    np.testing.assert_array_equal(image.pixels, np.rot90(source, k=-1))
    assert image.pixels.flags.c_contiguous


@pytest.mark.parametrize(
    ("mode_array", "expected"),
    [
        # "I" (int32) is clipped into uint16.
        (Image.fromarray(np.array([[-5, 70000], [300, 1]], np.int32)), [[0, 65535], [300, 1]]),
        # Big-endian 16-bit comes back in native byte order with the same values.
        (Image.fromarray(np.array([[1, 513], [65535, 0]], ">u2")), [[1, 513], [65535, 0]]),
    ],
    ids=["I", "I;16B"],
)
def test_sixteen_bit_mode_conversions(mode_array: Image.Image, expected: list) -> None:
    # PIL 13 can write neither mode to PNG, so the conversion helper is checked directly.
    pixels = readers._pil_to_array(mode_array)
    assert pixels.dtype == np.dtype(np.uint16)  # native order
    np.testing.assert_array_equal(pixels, expected)


def test_unsupported_pil_mode_is_rejected() -> None:
    with pytest.raises(ImageRejected, match="unsupported colour mode F"):
        readers._pil_to_array(Image.new("F", (4, 4)))


# --------------------------------------------------------------------------- DICOM


def test_dicom_rescale_and_window_mapping(tmp_path: Path) -> None:
    # value = 2 * stored - 100; the window [500, 1500] maps linearly onto 0..65535 because
    # center - 0.5 = 1000 and width - 1 = 1000 (PS3.3 C.11.2.1.2.1).
    stored = np.zeros((100, 100), np.uint16)
    stored[0, :6] = [0, 300, 425, 550, 800, 1000]  # values -100, 500, 750, 1000, 1500, 1900
    stored[1:] = np.arange(100, dtype=np.uint16) * 10
    path = _dicom(
        tmp_path / "a.dcm",
        stored,
        RescaleSlope=2,
        RescaleIntercept=-100,
        WindowCenter=1000.5,
        WindowWidth=1001,
    )
    image = read_image(path)
    assert (image.format, image.mode, image.bit_depth) == ("DICOM", "MONOCHROME2", 16)
    assert image.pixels.dtype == np.uint16
    # rint rounds half to even: 32767.5 -> 32768, 16383.75 -> 16384
    assert image.pixels[0, :6].tolist() == [0, 0, 16384, 32768, 65535, 65535]
    values = stored[1:].astype(float) * 2 - 100
    expected = np.clip(np.rint((values - 500) / 1000 * 65535), 0, 65535)
    np.testing.assert_array_equal(image.pixels[1:], expected)


def test_dicom_multi_valued_window_uses_first_pair(tmp_path: Path) -> None:
    stored = (np.arange(100 * 100, dtype=np.uint16) % 2001).reshape(100, 100)
    path = _dicom(tmp_path / "a.dcm", stored, WindowCenter=[1000.5, 50], WindowWidth=[1001, 10])
    image = read_image(path)
    expected = np.clip(np.rint((stored.astype(float) - 500) / 1000 * 65535), 0, 65535)
    np.testing.assert_array_equal(image.pixels, expected)


@pytest.mark.parametrize(
    ("function", "center", "width", "expected"),
    [
        # (x - (c - w/2)) / w: lower edge 500, upper 1500
        ("LINEAR_EXACT", 1000, 1000, [0, 0, 16384, 32768, 65535, 65535]),
        # 65535 / (1 + exp(-4 (x - c) / w)): never quite 0 or 65535
        ("SIGMOID", 1000, 1000, [1179, 7812, 17625, 32768, 57723, 64356]),
        # a LINEAR window of width 1 is a threshold at c - 0.5
        ("LINEAR", 1000, 1, [0, 0, 0, 65535, 65535, 65535]),
    ],
)
def test_dicom_voi_lut_functions(
    tmp_path: Path, function: str, center: float, width: float, expected: list[int]
) -> None:
    stored = np.zeros((100, 100), np.uint16)
    stored[0, :6] = [0, 500, 750, 1000, 1500, 2000]
    stored[1:] = 1000
    path = _dicom(
        tmp_path / "a.dcm",
        stored,
        WindowCenter=center,
        WindowWidth=width,
        VOILUTFunction=function,
    )
    assert read_image(path).pixels[0, :6].tolist() == expected


def test_dicom_without_window_uses_min_max(tmp_path: Path) -> None:
    stored = (np.arange(100 * 100, dtype=np.int16) % 1000 - 200).reshape(100, 100)
    image = read_image(_dicom(tmp_path / "a.dcm", stored))
    expected = np.rint((stored.astype(float) + 200) / 999 * 65535)
    np.testing.assert_array_equal(image.pixels, expected)
    assert (image.pixels.min(), image.pixels.max()) == (0, 65535)


def test_dicom_32_bit_pixels(tmp_path: Path) -> None:
    # Too many possible values for the lookup-table shortcut: the per-pixel path is used.
    stored = _pattern(dtype=np.uint16).astype(np.uint32) + 100_000
    image = read_image(_dicom(tmp_path / "a.dcm", stored))
    span = float(stored.max() - stored.min())
    np.testing.assert_array_equal(
        image.pixels, np.rint((stored.astype(float) - float(stored.min())) / span * 65535)
    )


@pytest.mark.parametrize("invert", [False, True])
@pytest.mark.parametrize("windowed", [False, True])
def test_dicom_lookup_table_matches_per_pixel_arithmetic(invert: bool, windowed: bool) -> None:
    rng = np.random.default_rng(3)
    raw = rng.integers(-2000, 3000, (64, 64)).astype(np.int16)
    ds = Dataset()
    ds.RescaleSlope, ds.RescaleIntercept = 0.75, -1024
    if windowed:
        ds.WindowCenter, ds.WindowWidth = -200, 1500
    direct = readers._stored_to_display(
        raw, ds, (0.75 * float(raw.min()) - 1024, 0.75 * float(raw.max()) - 1024), invert
    )
    np.testing.assert_array_equal(readers._display_pixels(raw, ds, invert=invert), direct)


def test_dicom_monochrome1_is_inverted(tmp_path: Path) -> None:
    stored = (_pattern(dtype=np.uint16) >> 4).astype(np.uint16)  # 12-bit values
    window = {"WindowCenter": 2048, "WindowWidth": 3000}
    mono2 = read_image(_dicom(tmp_path / "m2.dcm", stored, **window))
    mono1 = read_image(_dicom(tmp_path / "m1.dcm", stored, photometric="MONOCHROME1", **window))
    assert mono1.mode == "MONOCHROME1"
    np.testing.assert_array_equal(mono1.pixels.astype(int), 65535 - mono2.pixels.astype(int))


def test_dicom_without_preamble(tmp_path: Path) -> None:
    stored = _pattern(dtype=np.uint16)
    with_preamble = read_image(_dicom(tmp_path / "a.dcm", stored))
    for suffix in (".dcm", ".dicom"):
        path = _dicom(tmp_path / f"b{suffix}", stored, preamble=False)
        assert path.read_bytes()[128:132] != b"DICM"
        np.testing.assert_array_equal(read_image(path).pixels, with_preamble.pixels)


def test_dicom_without_meta_header(tmp_path: Path) -> None:
    # Old ACR-NEMA style: a bare implicit-VR data set, no preamble, no transfer syntax.
    stored = _pattern(dtype=np.uint16)
    ds = Dataset()
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.PixelRepresentation = 0
    ds.PixelData = stored.tobytes()
    path = tmp_path / "bare.dcm"
    ds.save_as(path, implicit_vr=True, little_endian=True)
    reference = read_image(_dicom(tmp_path / "ref.dcm", stored))
    np.testing.assert_array_equal(read_image(path).pixels, reference.pixels)


def test_dicom_without_preamble_needs_dicom_suffix(tmp_path: Path) -> None:
    path = _dicom(tmp_path / "a.dcm", _pattern(dtype=np.uint16), preamble=False)
    renamed = path.rename(tmp_path / "a.png")
    _rejected(renamed, "not an image file")


def test_dicom_result_carries_no_patient_data(tmp_path: Path) -> None:
    stored = _pattern(dtype=np.uint16)
    image = read_image(_dicom(tmp_path / "a.dcm", stored, WindowCenter=30000, WindowWidth=60000))
    # nothing beyond the declared fields (test_public_interface pins those, none a DICOM tag)
    assert set(vars(image)) == {f.name for f in dataclasses.fields(DecodedImage)}
    text = repr(image) + str(dataclasses.astuple(image)[1:])
    assert PATIENT_NAME not in text
    assert PATIENT_ID not in text
    assert type(image.pixels) is np.ndarray
    # The array must not keep the file's bytes (and thus the header) alive either.
    base = image.pixels.base
    while base is not None:
        assert not isinstance(base, (bytes, bytearray, memoryview, Dataset))
        base = getattr(base, "base", None)


def test_jpeg_compressed_dicom_decodes_with_pillow_plugin(tmp_path: Path) -> None:
    stored = _pattern()
    path = _dicom(
        tmp_path / "jpeg.dcm",
        stored,
        syntax=JPEGBaseline8Bit,
        pixel_data=encapsulate([_jpeg_bytes(stored)]),
    )
    image = read_image(path)
    assert image.format == "DICOM"
    assert image.pixels.dtype == np.uint16
    rescaled = stored.astype(float) * 65535 / 255  # pattern spans 0..255, so min-max is /255
    assert np.abs(image.pixels - rescaled).max() < 4 * 257


# --------------------------------------------------------------------------- rejections


def test_missing_file_rejected(tmp_path: Path) -> None:
    _rejected(tmp_path / "nope.png", "cannot open")


def test_empty_file_rejected(tmp_path: Path) -> None:
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    _rejected(path, "empty")


@pytest.mark.parametrize(
    ("name", "content", "keyword"),
    [
        ("notes.jpeg", b"patient list\nthis is not an image\n", "text"),
        ("page.jpg", b"<!DOCTYPE html><html><body>403 Forbidden</body></html>", "html"),
        (".DS_Store", b"\x00\x00\x00\x01Bud1" + bytes(200), "ds_store"),
        ("._scan.png", b"\x00\x05\x16\x07\x00\x02\x00\x00" + bytes(200), "resource-fork"),
        ("scan.png", b"%PDF-1.7\n" + bytes(100), "pdf"),
        ("random.png", bytes(np.random.default_rng(0).integers(1, 255, 4096, np.uint8)), "image"),
    ],
)
def test_non_image_files_rejected(tmp_path: Path, name: str, content: bytes, keyword: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    _rejected(path, "not an image file", keyword)


def test_text_and_junk_named_dcm_rejected(tmp_path: Path) -> None:
    text = tmp_path / "a.dcm"
    text.write_text("id,label\n1,normal\n")
    _rejected(text, "not an image file", "text")
    junk = tmp_path / "b.dcm"
    junk.write_bytes(bytes(np.random.default_rng(1).integers(0, 256, 5000, np.uint8)))
    _rejected(junk, "not a dicom file")


def test_truncated_jpeg_rejected(tmp_path: Path) -> None:
    whole = _jpeg_bytes(_pattern(200, 200))
    path = tmp_path / "cut.jpg"
    path.write_bytes(whole[: len(whole) // 2])
    _rejected(path, "truncated", "re-download")


def test_truncated_png_rejected(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    Image.fromarray(_pattern(200, 200)).save(buffer, "PNG")
    path = tmp_path / "cut.png"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    _rejected(path, "truncated")


def test_corrupt_png_data_rejected(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    Image.fromarray(_pattern(200, 200)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    middle = len(data) // 2
    data[middle : middle + 64] = np.random.default_rng(2).integers(0, 256, 64, np.uint8).tobytes()
    path = tmp_path / "bad.png"
    path.write_bytes(bytes(data))
    _rejected(path, "corrupt png")


def test_corrupt_png_header_rejected(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    Image.fromarray(_pattern()).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    data[20] ^= 0xFF  # inside the IHDR chunk, so its CRC no longer matches
    path = tmp_path / "bad_header.png"
    path.write_bytes(bytes(data))
    exc = _rejected(path, "corrupt png header")
    assert "BufferedReader" not in exc.reason


def test_corrupt_middle_of_jpeg_is_rejected(tmp_path: Path) -> None:
    """PIL decodes garbage mid-stream "fine" (libjpeg only warns, PIL drops the warning):
    the strict decode sees libjpeg's warning and rejects the file."""
    source = _pattern(200, 200)
    data = bytearray(_jpeg_bytes(source))
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(64)
    with Image.open(io.BytesIO(bytes(data))) as im:
        im.load()  # PIL alone accepts it
    path = tmp_path / "damaged.jpg"
    path.write_bytes(bytes(data))
    _rejected(path, "damaged JPEG data", "re-download")


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda d: d[: len(d) // 2] + b"\xff\xd9", id="cut-then-eoi-appended"),
        pytest.param(
            lambda d: d[: len(d) // 2] + bytes(len(d) - len(d) // 2) + b"\xff\xd9",
            id="padded-then-eoi-appended",
        ),
        pytest.param(lambda d: d[: int(len(d) * 0.8)] + b"\xff\xd9", id="cut-at-80pct-eoi"),
    ],
)
@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_jpeg_repaired_with_an_end_marker_is_rejected(tmp_path: Path, make, mode: str) -> None:
    """A "repair" that appends FFD9 to a cut file passes the structure check; the decoder's
    own warning (premature end / extraneous bytes) still rejects it."""
    buffer = io.BytesIO()
    Image.fromarray(_noisy()).convert(mode).save(buffer, "JPEG", quality=90)
    data = make(buffer.getvalue())
    with Image.open(io.BytesIO(data)) as im:
        im.load()  # PIL fills the missing rows with grey and says nothing
    path = tmp_path / "repaired.jpeg"
    path.write_bytes(data)
    _rejected(path, "damaged JPEG data")
    _rejected(path, "damaged JPEG data", draft_min_side=64)


def test_a_few_stray_bytes_before_the_end_marker_are_harmless(tmp_path: Path) -> None:
    data = _jpeg_bytes(_noisy())
    path = tmp_path / "stray.jpeg"
    path.write_bytes(data[:-2] + b"\x00\x00\xff\xd9")
    clean = tmp_path / "clean.jpeg"
    clean.write_bytes(data)
    np.testing.assert_array_equal(read_image(path).pixels, read_image(clean).pixels)


@pytest.mark.parametrize("mode", ["L", "RGB"])
@pytest.mark.parametrize("draft", [None, 64, 100, 300])
def test_strict_decode_gives_pils_pixels(tmp_path: Path, mode: str, draft: int | None) -> None:
    """Same libjpeg-turbo, same DCT scale rule: pixel-identical to PIL's (draft) decode."""
    source = Image.fromarray(_noisy(700, 610)).convert(mode)
    path = _save(source, tmp_path / "a.jpeg", "JPEG", quality=88)
    with Image.open(path) as im:
        if draft:
            im.draft("L", (draft, draft))
        expected = np.asarray(im.convert("L"))
    np.testing.assert_array_equal(read_image(path, draft_min_side=draft).pixels, expected)


@pytest.mark.parametrize(
    ("fmt", "name"),
    [("GIF", "GIF"), ("TIFF", "TIFF"), ("BMP", "BMP"), ("WEBP", "WebP")],
)
def test_other_formats_named_png_are_unsupported(tmp_path: Path, fmt: str, name: str) -> None:
    path = _save(_pattern(), tmp_path / "x.png", fmt)
    exc = _rejected(path, "unsupported image format", "convert it to png")
    assert name in exc.reason


def test_animated_png_rejected(tmp_path: Path) -> None:
    frames = [Image.fromarray(_pattern()), Image.fromarray(255 - _pattern())]
    path = tmp_path / "anim.png"
    frames[0].save(path, "PNG", save_all=True, append_images=frames[1:])
    _rejected(path, "multi-frame", "2 frames")


def test_tiny_image_rejected(tmp_path: Path) -> None:
    path = _save(_pattern(200, 40), tmp_path / "thin.png", "PNG")
    _rejected(path, "too small", "40x200", "64")
    assert read_image(path, min_side_px=40).width == 40


def test_blank_images_rejected(tmp_path: Path) -> None:
    _rejected(_save(np.full((100, 100), 7, np.uint8), tmp_path / "a.png", "PNG"), "blank", "7")
    _rejected(_save(np.zeros((100, 100), np.uint8), tmp_path / "b.jpg", "JPEG"), "blank")
    _rejected(_dicom(tmp_path / "c.dcm", np.full((100, 100), 500, np.uint16)), "blank")


def test_dicom_window_that_clips_everything_is_blank(tmp_path: Path) -> None:
    stored = _pattern(dtype=np.uint16) // 64  # 0..1023
    path = _dicom(tmp_path / "a.dcm", stored, WindowCenter=5000, WindowWidth=100)
    _rejected(path, "blank", "window")


def test_pil_decompression_bomb_rejected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _save(_pattern(100, 100), tmp_path / "a.png", "PNG")
    # Between the limit and twice it PIL only warns; beyond twice it raises. Both must reject.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 6000)
    _rejected(path, "too large", "decompression")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 4000)
    _rejected(path, "too large", "decompression")


def test_dicom_decompression_bomb_rejected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _dicom(tmp_path / "a.dcm", _pattern(dtype=np.uint16))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    _rejected(path, "too large")


def test_multi_frame_dicom_rejected(tmp_path: Path) -> None:
    stack = np.stack([_pattern(dtype=np.uint16)] * 3)
    path = _dicom(tmp_path / "mf.dcm", stack, NumberOfFrames=3)
    _rejected(path, "multi-frame", "3 frames", "export a single frame")


def test_colour_dicom_rejected(tmp_path: Path) -> None:
    rgb = np.repeat(_pattern()[..., None], 3, axis=2)
    path = _dicom(
        tmp_path / "rgb.dcm",
        rgb[..., 0],
        photometric="RGB",
        SamplesPerPixel=3,
        PlanarConfiguration=0,
        pixel_data=rgb.tobytes(),
    )
    _rejected(path, "colour dicom", "RGB")


def test_dicom_without_pixel_data_rejected(tmp_path: Path) -> None:
    path = _dicom(tmp_path / "sr.dcm", _pattern(dtype=np.uint16))
    ds = pydicom.dcmread(path)
    del ds.PixelData
    ds.save_as(path)
    _rejected(path, "no pixel data")


def _recompressed(source: Path, target: Path, syntax: str) -> Path:
    """`source` (an uncompressed DICOM) re-encoded by GDCM with transfer syntax `syntax` (a
    gdcm.TransferSyntax name): the compressed files PACS exports."""
    import gdcm

    reader = gdcm.ImageReader()
    reader.SetFileName(str(source))
    assert reader.Read()
    change = gdcm.ImageChangeTransferSyntax()
    change.SetTransferSyntax(gdcm.TransferSyntax(getattr(gdcm.TransferSyntax, syntax)))
    change.SetInput(reader.GetImage())
    assert change.Change()
    writer = gdcm.ImageWriter()
    writer.SetFileName(str(target))
    writer.SetFile(reader.GetFile())
    writer.SetImage(change.GetOutput())
    assert writer.Write()
    return target


@pytest.mark.parametrize(
    ("syntax", "name"),
    [
        ("JPEGLosslessProcess14_1", "JPEG Lossless"),
        ("JPEGLosslessProcess14", "JPEG Lossless"),
        ("JPEGLSLossless", "JPEG-LS"),
        ("JPEG2000Lossless", "JPEG 2000"),
        ("RLELossless", "RLE"),
    ],
)
def test_compressed_dicom_as_pacs_exports_it_decodes_exactly(
    tmp_path: Path, syntax: str, name: str
) -> None:
    """The common lossless transfer syntaxes decode as installed (python-gdcm is a
    dependency), to exactly the pixels of the uncompressed file."""
    raw = _dicom(tmp_path / "raw.dcm", _pattern(dtype=np.uint16))
    packed = _recompressed(raw, tmp_path / "packed.dcm", syntax)
    ds = pydicom.dcmread(packed)
    assert name in ds.file_meta.TransferSyntaxUID.name
    assert ds.file_meta.TransferSyntaxUID.is_compressed  # encapsulated frames, not raw pixels
    assert ds.PixelData != pydicom.dcmread(raw).PixelData
    np.testing.assert_array_equal(read_image(packed).pixels, read_image(raw).pixels)


def test_a_transfer_syntax_without_a_decoder_is_rejected_with_the_fix(tmp_path: Path) -> None:
    """High-Throughput JPEG 2000 (DICOM 2023) has no decoder installed: rejected naming it
    and the conversion that works, never a crash."""
    path = _dicom(
        tmp_path / "htj2k.dcm",
        _pattern(dtype=np.uint16),
        syntax=HTJ2KLossless,
        pixel_data=encapsulate([b"\xff\x4f\xff\x51 not really a codestream \xff\xd9"]),
    )
    _rejected(path, "cannot decode", "High-Throughput JPEG 2000", "gdcmconv --raw")


def test_truncated_dicom_pixel_data_rejected(tmp_path: Path) -> None:
    path = _dicom(tmp_path / "a.dcm", _pattern(dtype=np.uint16))
    path.write_bytes(path.read_bytes()[:-5000])
    _rejected(path, "truncated dicom pixel data")


def test_corrupt_dicom_jpeg_frame_rejected(tmp_path: Path) -> None:
    frame = _jpeg_bytes(_pattern())
    path = _dicom(
        tmp_path / "jpeg.dcm",
        _pattern(),
        syntax=JPEGBaseline8Bit,
        pixel_data=encapsulate([frame[: len(frame) // 2]]),
    )
    _rejected(path, "dicom", JPEGBaseline8Bit.name)


# --------------------------------------------------------------------------- pixel_sha256


def test_pixel_hash_ignores_encoding(tmp_path: Path) -> None:
    gray = _pattern()
    as_l = read_image(_save(gray, tmp_path / "l.png", "PNG"))
    rgb = np.repeat(gray[..., None], 3, axis=2)
    as_rgb = read_image(_save(rgb, tmp_path / "rgb.png", "PNG"))
    assert pixel_sha256(as_l.pixels) == pixel_sha256(as_rgb.pixels) == pixel_sha256(gray)


def test_pixel_hash_sees_one_changed_pixel() -> None:
    gray = _pattern()
    changed = gray.copy()
    changed[60, 50] ^= 1
    assert pixel_sha256(gray) != pixel_sha256(changed)


def test_pixel_hash_includes_dtype_and_shape() -> None:
    gray = _pattern()
    assert pixel_sha256(gray) != pixel_sha256(gray.astype(np.uint16))
    assert pixel_sha256(gray) != pixel_sha256(gray.reshape(100, 120))


def test_pixel_hash_ignores_memory_layout() -> None:
    gray = _pattern(dtype=np.uint16)
    assert pixel_sha256(gray) == pixel_sha256(gray.astype(">u2"))
    assert pixel_sha256(gray.T) == pixel_sha256(np.ascontiguousarray(gray.T))
    assert len(pixel_sha256(gray)) == 64


def test_draft_decode_of_an_rgb_jpeg_keeps_full_size_and_mode(tmp_path: Path) -> None:
    """DCT-scaled decoding: pixels shrink by a power of two, the recorded size and mode do not."""
    rng = np.random.default_rng(5)
    gray = (rng.random((40, 30)) * 255).astype(np.uint8)
    big = np.asarray(Image.fromarray(gray).resize((600, 800), Image.Resampling.BILINEAR))
    path = tmp_path / "rgb.jpeg"
    Image.fromarray(np.dstack([big] * 3)).save(path, "JPEG", quality=95)
    image = read_image(path, draft_min_side=150)
    assert image.mode == "RGB" and image.format == "JPEG"
    assert (image.width, image.height) == (600, 800)
    assert image.decode_scale == 0.25 and image.pixels.shape == (200, 150)
    full = read_image(path)
    assert full.decode_scale == 1.0 and full.pixels.shape == (800, 600)


# --------------------------------------------------------------------------- cut short, padded


def _padded(data: bytes, fill: bytes = b"\x00", keep: float = 0.5) -> bytes:
    """The file as a download that stopped early but kept its announced size."""
    cut = int(len(data) * keep)
    return data[:cut] + fill * (len(data) - cut)


def _noisy(height: int = 240, width: int = 200, seed: int = 0) -> np.ndarray:
    """Texture that compresses badly, so the pixel data is most of the file."""
    rng = np.random.default_rng(seed)
    return np.clip(_pattern(height, width) + rng.normal(0, 30, (height, width)), 0, 255).astype(
        np.uint8
    )


def _png_bytes(array: np.ndarray, **kwargs) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG", **kwargs)
    return buffer.getvalue()


def _with_exif_thumbnail_eoi(jpeg: bytes) -> bytes:
    """Insert an APP1 segment that holds a (fake) thumbnail ending in its own EOI marker."""
    payload = b"Exif\x00\x00" + b"\xff\xd8\xff\xdb" + bytes(40) + b"\xff\xd9"
    app1 = b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload
    return jpeg[:2] + app1 + jpeg[2:]


@pytest.mark.parametrize(
    ("make", "decoder_accepts"),
    [
        pytest.param(lambda: _padded(_jpeg_bytes(_noisy())), True, id="jpeg-second-half-zeros"),
        pytest.param(
            lambda: _padded(_jpeg_bytes(_noisy()), keep=0.8), True, id="jpeg-last-fifth-zeros"
        ),
        pytest.param(
            lambda: _padded(_with_exif_thumbnail_eoi(_jpeg_bytes(_noisy()))),
            True,
            id="jpeg-thumbnail-eoi-does-not-count",
        ),
        pytest.param(
            lambda: _padded(_jpeg_bytes(_noisy()), b"\xff"), False, id="jpeg-padded-with-ff"
        ),
        pytest.param(
            lambda: _padded(_progressive_jpeg(_noisy())), False, id="progressive-jpeg-padded"
        ),
        pytest.param(lambda: _jpeg_bytes(_noisy())[:-2], False, id="jpeg-without-eoi"),
    ],
)
def test_jpeg_cut_short_then_padded_is_rejected(
    tmp_path: Path, make, decoder_accepts: bool
) -> None:
    data = make()
    if decoder_accepts:  # the fault: libjpeg fills the missing rows with grey, PIL says nothing
        with Image.open(io.BytesIO(data)) as im:
            im.load()
    path = tmp_path / "padded.jpeg"
    path.write_bytes(data)
    _rejected(path, "truncated or padded", "re-download")
    _rejected(path, "truncated or padded", draft_min_side=64)


def _progressive_jpeg(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "JPEG", quality=90, progressive=True)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: _padded(_png_bytes(_noisy())), id="png-second-half-zeros"),
        pytest.param(
            lambda: _padded(_png_bytes(_noisy().astype(np.uint16) * 257)), id="png16-padded"
        ),
        pytest.param(
            lambda: _padded(_png_bytes(_noisy(600, 500)), keep=0.9), id="png-last-tenth-zeros"
        ),
    ],
)
def test_png_cut_short_then_padded_is_rejected(tmp_path: Path, make) -> None:
    path = tmp_path / "padded.png"
    path.write_bytes(make())
    _rejected(path, "truncated or padded", "re-download")


def test_png_whose_pixel_chunk_fails_its_checksum_is_rejected(tmp_path: Path) -> None:
    """PIL decodes the IDAT stream without checking the chunk's CRC: the check does."""
    data = bytearray(_png_bytes(_noisy()))
    idat = data.index(b"IDAT")
    length = int.from_bytes(data[idat - 4 : idat], "big")
    data[idat + 4 + length] ^= 0x01  # the chunk's CRC-32, right after its data
    with Image.open(io.BytesIO(bytes(data))) as im:
        im.load()  # PIL alone accepts it
    path = tmp_path / "crc.png"
    path.write_bytes(bytes(data))
    _rejected(path, "corrupt png", "checksum")


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
@pytest.mark.parametrize("extra", [b"\x00" * 1000, b"PK\x03\x04 appended archive", b"\n"])
def test_bytes_after_a_complete_image_are_accepted_and_counted(
    tmp_path: Path, fmt: str, extra: bytes
) -> None:
    source = _noisy()
    data = _jpeg_bytes(source) if fmt == "JPEG" else _png_bytes(source)
    clean = tmp_path / f"clean.{fmt.lower()}"
    clean.write_bytes(data)
    joined = tmp_path / f"joined.{fmt.lower()}"
    joined.write_bytes(data + extra)
    image, reference = read_image(joined), read_image(clean)
    assert image.trailing_bytes == len(extra) and reference.trailing_bytes == 0
    np.testing.assert_array_equal(image.pixels, reference.pixels)
