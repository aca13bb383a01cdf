"""A look at a pickle stream before any unpickler reads it: opcode by opcode with
`pickletools.genops`, which makes no objects, refusing what would make CPython's C unpickler
allocate what the file asks for rather than what it holds.

- A memo index beyond those a pickler assigns. Picklers number memo entries from 0 upwards
  (PUT, BINPUT, LONG_BINPUT with the next index; MEMOIZE implicitly); the C unpickler sizes
  its memo array to the largest index it meets, 8 bytes an entry, zero-filled: a 7-byte
  `LONG_BINPUT 2**31` asks for 16 GiB, which a cluster node may grant.
- Protocol 5's out-of-band opcodes (BYTEARRAY8 allocates its declared length first,
  NEXT_BUFFER and READONLY_BUFFER need buffers this reader never gives).

A length running past the end of the data stops the walk too (genops reads no further than
the data; a file object's read(n) reserves n bytes first, so a huge one fails at once). Used by
the restricted readers of official StyleGAN2-ADA network pickles (`cxrlib.models.official_pickle`)
and of torchxrayvision weights (`cxrlib.metrics.xrv`).
"""

from __future__ import annotations

import pickletools
from typing import BinaryIO

MEMO_OPS = frozenset({"PUT", "BINPUT", "LONG_BINPUT"})


def scan_pickle(f: BinaryIO, error: type[Exception] = ValueError, max_protocol: int = 4) -> None:
    """Walk the pickle at f's position to its STOP opcode and return f to that position.

    Raises `error` (a message naming the opcode and what was expected) for an opcode newer
    than `max_protocol`, a memo index a pickler would not have used, or data that ends (or
    is malformed) before STOP.
    """
    start, memoized = f.tell(), 0
    try:
        for op, arg, _ in pickletools.genops(f):
            if op.proto > max_protocol:
                raise error(
                    f"pickle opcode {op.name} (protocol {op.proto}; at most {max_protocol} "
                    "is read here)"
                )
            if op.name in MEMO_OPS:
                if arg > memoized:
                    raise error(f"pickle memo index {arg} where a pickler would use {memoized}")
                memoized += 1
            elif op.name == "MEMOIZE":
                memoized += 1
    except ValueError as exc:  # genops: truncated data, an unknown opcode, a bad argument
        if isinstance(exc, error):
            raise
        raise error(f"a malformed pickle stream ({exc})") from None
    except MemoryError:  # a file object's read(n) reserves n bytes first
        raise error("a malformed pickle stream (a length far beyond the end of the data)") from None
    f.seek(start)
