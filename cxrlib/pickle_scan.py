"""A look at a pickle stream before any unpickler reads it: opcode by opcode with
`pickletools.genops`, which makes no objects, refusing what would make CPython's C unpickler
allocate what the file asks for rather than what it holds.

- A memo index beyond those a pickler assigns. Picklers number memo entries from 0 upwards
  (PUT, BINPUT, LONG_BINPUT with the next index; MEMOIZE implicitly); the C unpickler sizes
  its memo array to the largest index it meets, 8 bytes an entry, zero-filled: a 7-byte
  `LONG_BINPUT 2**31` asks for 16 GiB, which a cluster node may grant.
- Keys that make the C unpickler hash for long (it hashes every dict key and set member as it
  inserts it, before any reader's check sees the object). A tuple's hash is not cached and
  visits every element, shared ones each time: `t = (t, t)` forty times through the memo is
  200 bytes and 2^40 visits; a tuple nested 200,000 deep overflows the C stack (a crash, no
  exception); one large tuple or int used as a key thousands of times adds up; and keys
  whose hashes the file can choose (ints, floats and tuples of them: str and bytes hashes are
  salted per process) can all collide, making each insertion scan all earlier ones. So the
  scan follows the pickle machine's stack with, for each object, the work of hashing it,
  its tuple nesting depth and whether its hash is salted, and bounds each key's work
  (MAX_EXPANSION), nesting (MAX_DEPTH), the file's total hashing work (MAX_HASH_WORK) and its
  count of unsalted keys (MAX_UNSALTED_KEYS).
- Protocol 5's out-of-band opcodes (BYTEARRAY8 allocates its declared length first,
  NEXT_BUFFER and READONLY_BUFFER need buffers this reader never gives).

A length running past the end of the data stops the walk too (genops reads no further than
the data; a file object's read(n) reserves n bytes first, so a huge one fails at once). Used by
the restricted readers of official StyleGAN2-ADA network pickles
(`cxrlib.stylegan2ada.official_pickle`) and of torchxrayvision weights (`cxrlib.scoring.xrv`).
"""

from __future__ import annotations

import pickletools
from typing import BinaryIO, NamedTuple

MEMO_OPS = frozenset({"PUT", "BINPUT", "LONG_BINPUT"})
GET_OPS = frozenset({"GET", "BINGET", "LONG_BINGET"})
TUPLES = frozenset({"TUPLE", "TUPLE1", "TUPLE2", "TUPLE3"})
LONGS = frozenset({"LONG", "LONG1", "LONG4", "INT"})
# Opcodes pushing a str or bytes object: their hashes are salted (PYTHONHASHSEED), and cached.
SALTED = frozenset({
    "STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "SHORT_BINUNICODE", "BINUNICODE",
    "BINUNICODE8", "BINBYTES", "SHORT_BINBYTES", "BINBYTES8",
})  # fmt: skip
MAX_EXPANSION = 2**20  # hashing work of one object: tuple entries, shared ones each time
MAX_DEPTH = 100  # tuple / frozenset nesting (official files: 2)
MAX_HASH_WORK = 2**24  # all dict keys and set members of the file together
MAX_UNSALTED_KEYS = 10_000  # keys / members whose hash the file could choose


class _Obj(NamedTuple):
    """What the scan keeps of an object on the would-be stack."""

    work: int = 1  # steps to hash it (1: cached or trivial)
    depth: int = 1  # tuple / frozenset nesting
    salted: bool = False  # its hash depends on the process's salt (str, bytes, tuples of them)


_PLAIN = _Obj()


class _Machine:
    """The unpickler's stack, memo and marks, each object reduced to an _Obj."""

    def __init__(self, error: type[Exception]):
        self.error = error
        self.stack: list[_Obj] = []
        self.marks: list[int] = []
        self.memo: dict[int, _Obj] = {}
        self.hash_work = 0
        self.unsalted_keys = 0

    def _pop(self, n: int) -> list[_Obj]:
        floor = self.marks[-1] if self.marks else 0
        if len(self.stack) - n < floor:
            raise self.error("a malformed pickle stream (it pops more than it pushed)")
        popped = self.stack[len(self.stack) - n :]
        del self.stack[len(self.stack) - n :]
        return popped

    def _container(self, elements: list[_Obj], what: str) -> _Obj:
        work = 1 + sum(e.work for e in elements)
        depth = 1 + max((e.depth for e in elements), default=0)
        if work > MAX_EXPANSION or depth > MAX_DEPTH:
            raise self.error(
                f"a {what} nested {depth} deep or expanding to {work} entries through shared "
                f"references (at most {MAX_DEPTH} deep and {MAX_EXPANSION} entries are read: "
                "hashing it would take that long, or crash)"
            )
        return _Obj(work, depth, any(e.salted for e in elements))

    def _hash(self, keys: list[_Obj]) -> None:
        """The unpickler hashes `keys` (dict keys or set members)."""
        for key in keys:
            self.hash_work += key.work
            self.unsalted_keys += not key.salted
        if self.hash_work > MAX_HASH_WORK:
            raise self.error(
                f"dict keys and set members that take over {MAX_HASH_WORK} steps to hash "
                "(large tuples or ints used as keys again and again)"
            )
        if self.unsalted_keys > MAX_UNSALTED_KEYS:
            raise self.error(
                f"over {MAX_UNSALTED_KEYS} dict keys or set members that are not strings "
                "(their hashes can be made to collide, which makes reading them quadratic)"
            )

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
        if op.name == "SETITEM":
            self._hash(elements[1:2])
        elif op.name in ("SETITEMS", "DICT"):
            self._hash(elements[0::2])
        elif op.name in ("ADDITEMS", "FROZENSET"):
            self._hash(elements)
        if op.name in TUPLES:
            self.stack.append(self._container(elements, "tuple"))
        elif op.name == "FROZENSET":  # hashes its members once, then caches its own hash
            self.stack.append(self._container(elements, "frozenset")._replace(work=1))
        elif op.name in GET_OPS:
            self.stack.append(self.memo.get(int(arg), _PLAIN))  # type: ignore[call-overload]
        elif op.name in ("DUP", "MEMOIZE"):
            self.stack += elements * (2 if op.name == "DUP" else 1)
        elif op.name in SALTED:
            self.stack.append(_Obj(salted=True))
        elif op.name in LONGS and isinstance(arg, int):
            self.stack.append(_Obj(work=1 + abs(arg).bit_length() // 30))  # int hashes: per digit
        else:
            self.stack += [_PLAIN] * len(op.stack_after)
        if op.name in MEMO_OPS or op.name == "MEMOIZE":
            if not self.stack:
                raise self.error("a malformed pickle stream (it memoizes an empty stack)")
            key = int(arg) if op.name in MEMO_OPS else len(self.memo)  # type: ignore[call-overload]
            self.memo[key] = self.stack[-1]


def scan_pickle(f: BinaryIO, error: type[Exception] = ValueError, max_protocol: int = 4) -> None:
    """Walk the pickle at f's position to its STOP opcode and return f to that position.

    Raises `error` (a message naming the opcode and what was expected) for an opcode newer
    than `max_protocol`, a memo index a pickler would not have used, keys over the hashing
    bounds (module docstring), or data that ends (or is malformed) before STOP.
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
