"""A look at a pickle stream before any unpickler reads it: opcode by opcode with
`pickletools.genops`, which makes no objects, refusing what would make CPython's C unpickler
allocate what the file asks for rather than what it holds.

- A memo index beyond those a pickler assigns. Picklers number memo entries from 0 upwards
  (PUT, BINPUT, LONG_BINPUT with the next index; MEMOIZE implicitly); the C unpickler sizes
  its memo array to the largest index it meets, 8 bytes an entry, zero-filled: a 7-byte
  `LONG_BINPUT 2**31` asks for 16 GiB, which a cluster node may grant.
- A tuple (or frozenset) that shares its parts through the memo so that it expands to more
  than MAX_EXPANSION entries: `t = (t, t)` forty times is 200 bytes, and hashing it, which
  the C unpickler does for a dict key or set member before any reader's check sees it,
  visits 2^40 entries (tuple hashes are not cached). The scan follows the pickle machine's
  stack with one number per entry, its expanded size.
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
GET_OPS = frozenset({"GET", "BINGET", "LONG_BINGET"})
# Opcodes making a hashable container whose hash visits every (expanded) element.
HASHED_CONTAINERS = frozenset({"TUPLE", "TUPLE1", "TUPLE2", "TUPLE3", "FROZENSET"})
MAX_EXPANSION = 2**20  # entries of one tuple, shared parts counted each time they appear


class _Machine:
    """The unpickler's stack, memo and marks, each object reduced to its expanded size (1
    for anything but a hashable container)."""

    def __init__(self, error: type[Exception]):
        self.error = error
        self.stack: list[int] = []
        self.marks: list[int] = []
        self.memo: dict[int, int] = {}

    def _pop(self, n: int) -> list[int]:
        floor = self.marks[-1] if self.marks else 0
        if len(self.stack) - n < floor:
            raise self.error("a malformed pickle stream (it pops more than it pushed)")
        popped = self.stack[len(self.stack) - n :]
        del self.stack[len(self.stack) - n :]
        return popped

    def step(self, op: pickletools.OpcodeInfo, arg: object) -> None:
        before = [s.name for s in op.stack_before]
        if op.name == "MARK":
            self.marks.append(len(self.stack))
            return
        if op.name == "POP" and self.marks and len(self.stack) == self.marks[-1]:
            self.marks.pop()  # POP on a mark pops the mark
            return
        if "stackslice" in before:
            if not self.marks:
                raise self.error(f"a malformed pickle stream ({op.name} without a MARK)")
            mark = self.marks.pop()
            elements = self.stack[mark:]
            del self.stack[mark:]
            self._pop(before.index("mark"))  # what sits below the mark (a dict for SETITEMS)
        else:
            elements = self._pop(len(before))
        if op.name in HASHED_CONTAINERS:
            size = 1 + sum(elements)
            if size > MAX_EXPANSION:
                raise self.error(
                    f"a tuple or frozenset that expands to more than {MAX_EXPANSION} entries "
                    "through shared references (hashing it would take that long)"
                )
            self.stack.append(size)
        elif op.name in GET_OPS:
            self.stack.append(self.memo.get(int(arg), 1))  # type: ignore[call-overload]
        elif op.name in ("DUP", "MEMOIZE"):
            self.stack += elements * (2 if op.name == "DUP" else 1)
        else:
            self.stack += [1] * len(op.stack_after)
        if op.name in MEMO_OPS or op.name == "MEMOIZE":
            if not self.stack:
                raise self.error("a malformed pickle stream (it memoizes an empty stack)")
            key = int(arg) if op.name in MEMO_OPS else len(self.memo)  # type: ignore[call-overload]
            self.memo[key] = self.stack[-1]


def scan_pickle(f: BinaryIO, error: type[Exception] = ValueError, max_protocol: int = 4) -> None:
    """Walk the pickle at f's position to its STOP opcode and return f to that position.

    Raises `error` (a message naming the opcode and what was expected) for an opcode newer
    than `max_protocol`, a memo index a pickler would not have used, a tuple expanding to
    more than MAX_EXPANSION entries, or data that ends (or is malformed) before STOP.
    """
    start, memoized = f.tell(), 0
    machine = _Machine(error)
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
            machine.step(op, arg)
    except ValueError as exc:  # genops: truncated data, an unknown opcode, a bad argument
        if isinstance(exc, error):
            raise
        raise error(f"a malformed pickle stream ({exc})") from None
    except MemoryError:  # a file object's read(n) reserves n bytes first
        raise error("a malformed pickle stream (a length far beyond the end of the data)") from None
    f.seek(start)
