"""Checking that a JPEG or PNG file holds its whole image stream, up to the end marker.

Decoders are kind to damaged files: libjpeg fills the rows it never received with grey and only
warns, and a PNG whose pixel data was cut and then padded (a download that stopped early but
kept its announced size) may still decode. Such an image looks like a radiograph with a grey
band and would enter training. These checks walk the file's own structure instead:

- JPEG (ITU-T T.81, Annex B): marker segments by their lengths, entropy-coded scan data up to
  the next marker (``0xFF`` followed by anything but ``0x00`` stuffing or ``RSTn``), until the
  EOI marker ``FFD9``. A thumbnail's EOI inside an APP1 segment is skipped with its segment.
- PNG (ISO/IEC 15948, section 5): chunks by their lengths, each with its CRC-32, until IEND.

A stream that ends before its end marker, or whose chunks fail their checksums, is refused.
Bytes after a complete image (a second JPEG simply appended, an appended ZIP, padding written
by some exporters) do not change the pixels: they are counted and reported, not refused. (A
real multi-picture MPO file is refused earlier, as multi-frame.)
"""

from __future__ import annotations

import re
import struct
import zlib

__all__ = ["StreamError", "jpeg_trailing_bytes", "png_trailing_bytes"]

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# In scan data 0xFF is followed by 0x00 (a stuffed data byte) or RST0-7 (restart markers, part
# of the scan); any other byte after 0xFF starts a marker, possibly after 0xFF fill bytes.
_MARKER_IN_SCAN = re.compile(rb"\xff[^\x00\xd0-\xd7]")
_SOS, _EOI = 0xDA, 0xD9
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})  # TEM and RSTn carry no length field


class StreamError(ValueError):
    """The image stream is cut short or damaged; the message says where and what to do."""


def _cut_short(fmt: str, where: str) -> StreamError:
    return StreamError(
        f"truncated or padded {fmt} file ({where}); the image is incomplete: re-download or "
        "re-export it"
    )


def jpeg_trailing_bytes(data: bytes) -> int:
    """Bytes after the JPEG's EOI marker; raises `StreamError` if the stream ends before it.

    `data` is the whole file, starting with the SOI marker ``FFD8``. Bytes between segments that
    are not a marker are skipped as libjpeg skips them; what counts is that the walk reaches an
    EOI whose segments and scans all lie inside the file.
    """
    size = len(data)
    if size < 4 or data[0] != 0xFF or data[1] != 0xD8:
        raise StreamError("not a JPEG stream (no SOI marker)")
    pos = 2
    while True:
        pos = data.find(b"\xff", pos)  # skips stray bytes between segments, as libjpeg does
        if pos < 0:
            raise _cut_short("JPEG", "no end-of-image marker")
        while pos < size and data[pos] == 0xFF:  # fill bytes before a marker
            pos += 1
        if pos >= size:
            raise _cut_short("JPEG", "no end-of-image marker")
        marker = data[pos]
        pos += 1
        if marker == _EOI:
            return size - pos
        if marker in _STANDALONE or marker == 0x00:
            continue
        if pos + 2 > size:
            raise _cut_short("JPEG", f"segment FF{marker:02X} cut off")
        (length,) = struct.unpack_from(">H", data, pos)
        if length < 2 or pos + length > size:
            raise _cut_short("JPEG", f"segment FF{marker:02X} runs past the end of the file")
        pos += length
        if marker == _SOS:
            found = _MARKER_IN_SCAN.search(data, pos)
            if found is None:
                raise _cut_short("JPEG", "scan data runs to the end of the file without EOI")
            pos = found.start()


def png_trailing_bytes(data: bytes | memoryview) -> int:
    """Bytes after the PNG's IEND chunk; raises `StreamError` if a chunk is cut or corrupt.

    Every critical chunk's CRC-32 is checked (over its type and data, as the PNG standard
    defines it): pixel data padded with zeros fails its checksum even when the file keeps its
    full size. A damaged ancillary chunk (tEXt, tIME, private) is skipped, as libpng does.
    """
    view = memoryview(data)
    size = len(view)
    if bytes(view[:8]) != _PNG_SIGNATURE:
        raise StreamError("not a PNG stream (no PNG signature)")
    pos = 8
    while True:
        if pos + 12 > size:
            raise _cut_short("PNG", "no IEND chunk")
        (length,) = struct.unpack_from(">I", view, pos)
        chunk_type = bytes(view[pos + 4 : pos + 8])
        end = pos + 12 + length
        name = chunk_type.decode("latin-1") if chunk_type.isalpha() else repr(chunk_type)
        if end > size:
            raise _cut_short("PNG", f"chunk {name} runs past the end of the file")
        (crc,) = struct.unpack_from(">I", view, end - 4)
        if zlib.crc32(view[pos + 4 : end - 4]) != crc:
            if crc == 0 and not any(view[max(pos + 8, end - 64) : end]):
                raise _cut_short("PNG", f"chunk {name} ends in zero bytes, not its checksum")
            if chunk_type.isalpha() and chunk_type[0] & 0x20:
                # Ancillary chunk (lower-case first letter: text, time, private data): libpng
                # and browsers ignore its damage, and so do we; the pixels are elsewhere.
                pos = end
                continue
            raise StreamError(
                f"corrupt PNG data (chunk {name} fails its checksum); re-download or re-export "
                "the file"
            )
        if chunk_type == b"IEND":
            return size - end
        pos = end
