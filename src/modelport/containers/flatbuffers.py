"""A bounds-checked FlatBuffers table reader: no generated code, no trust in any offset.

The wire format (flatbuffers/src/idl.h, "FlatBuffers internals")::

    root       u32 at byte 0: offset of the root table, from byte 0
    table      at T: i32 soffset; the vtable is at T - soffset
    vtable     u16 vtable_bytes, u16 table_bytes, then one u16 per field: the field's offset
               from T, 0 when the field is absent (it then has its schema default)
    offsets    a table/vector/string field holds a u32 relative to the field's own position
    vector     u32 count, then count elements (scalars inline, tables as u32 offsets each)
    string     a vector of bytes followed by a NUL

A flatbuffer is read in place: a hostile file can point any of those offsets anywhere, make a
vtable claim fields past its table, or give a vector a count of 2**32. Every position computed
here is checked against the buffer's size before it is read, and the error names the byte.
Schemas are data: ``Table.field(i)`` takes the field's index in the .fbs declaration order.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from ..errors import MalformedHeader, Truncated

if TYPE_CHECKING:
    import numpy as np

__all__ = ["FlatBuffer", "Table"]

_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_I32 = struct.Struct("<i")
_SCALARS = {"b": 1, "B": 1, "?": 1, "h": 2, "H": 2, "i": 4, "I": 4, "q": 8, "Q": 8, "f": 4,
            "d": 8}


class FlatBuffer:
    """A flatbuffer over ``buf`` (a memoryview of the file); offsets are file offsets."""

    def __init__(self, buf: memoryview | bytes, *, what: str = "flatbuffer") -> None:
        self.buf = memoryview(buf).cast("B") if not isinstance(buf, memoryview) else buf
        self.size = len(self.buf)
        self.what = what

    def need(self, pos: int, n: int, what: str) -> None:
        """Bytes ``pos .. pos + n`` must lie in the buffer."""
        if pos < 0 or n < 0 or pos + n > self.size:
            raise (Truncated if pos + n > self.size and pos >= 0 else MalformedHeader)(
                f"{self.what}: {what} at byte {pos} needs {n} bytes, the file has {self.size}",
                offset=pos, hint="the file is truncated or corrupt")

    def u32(self, pos: int, what: str) -> int:
        self.need(pos, 4, what)
        return int(_U32.unpack_from(self.buf, pos)[0])

    def root(self) -> Table:
        return self.table_at(self.u32(0, "root offset"), "root table")

    def table_at(self, pos: int, what: str) -> Table:
        self.need(pos, 4, what)
        vt = pos - int(_I32.unpack_from(self.buf, pos)[0])
        self.need(vt, 4, f"vtable of {what}")
        vt_len, table_len = _U16.unpack_from(self.buf, vt)[0], _U16.unpack_from(self.buf, vt + 2)[0]
        if vt_len < 4 or vt_len % 2:
            raise MalformedHeader(f"{self.what}: vtable of {what} at byte {vt} has size {vt_len}",
                                  offset=vt, hint="the file is corrupt")
        self.need(vt, vt_len, f"vtable of {what}")
        self.need(pos, max(table_len, 4), what)
        return Table(self, pos, vt, (vt_len - 4) // 2, table_len, what)


class Table:
    """One table: its fields by declaration index, each position checked before reading."""

    __slots__ = ("fb", "pos", "vt", "nfields", "table_len", "what")

    def __init__(self, fb: FlatBuffer, pos: int, vt: int, nfields: int, table_len: int,
                 what: str) -> None:
        self.fb, self.pos, self.vt, self.nfields = fb, pos, vt, nfields
        self.table_len, self.what = table_len, what

    def _field(self, i: int, width: int) -> int | None:
        """The file position of field ``i`` (``width`` bytes inline), None if it is absent."""
        if i >= self.nfields:
            return None
        off = _U16.unpack_from(self.fb.buf, self.vt + 4 + 2 * i)[0]
        if not off:
            return None
        if off + width > self.table_len:
            raise MalformedHeader(f"{self.fb.what}: field {i} of {self.what} (byte {self.pos}) "
                                  f"lies past the table's {self.table_len} bytes",
                                  offset=self.pos + off, hint="the file is corrupt")
        return self.pos + off

    def scalar(self, i: int, fmt: str, default: int | float = 0) -> int | float:
        width = _SCALARS[fmt]
        at = self._field(i, width)
        if at is None:
            return default
        self.fb.need(at, width, f"field {i} of {self.what}")
        return struct.unpack_from("<" + fmt, self.fb.buf, at)[0]  # type: ignore[no-any-return]

    def has(self, i: int) -> bool:
        return self._field(i, 1) is not None

    def _target(self, i: int) -> int | None:
        at = self._field(i, 4)
        if at is None:
            return None
        return at + self.fb.u32(at, f"offset field {i} of {self.what}")

    def table(self, i: int, what: str) -> Table | None:
        at = self._target(i)
        return None if at is None else self.fb.table_at(at, what)

    def vector(self, i: int, elem: int, what: str) -> tuple[int, int]:
        """(position of the first element, count) of a vector field; (0, 0) when absent."""
        at = self._target(i)
        if at is None:
            return 0, 0
        n = self.fb.u32(at, f"length of {what}")
        self.fb.need(at + 4, n * elem, f"{n} elements of {what}")
        return at + 4, n

    def string(self, i: int, what: str) -> str | None:
        start, n = self.vector(i, 1, what)
        if not start:
            return None
        return bytes(self.fb.buf[start:start + n]).decode("utf-8", "replace")

    def tables(self, i: int, what: str) -> list[Table]:
        start, n = self.vector(i, 4, what)
        out = []
        for k in range(n):
            at = start + 4 * k
            out.append(self.fb.table_at(at + self.fb.u32(at, what), f"{what}[{k}]"))
        return out

    def scalars(self, i: int, fmt: str, what: str) -> np.ndarray:
        """A vector of scalars as a numpy array (a copy: these are small, shapes and scales)."""
        import numpy as np

        start, n = self.vector(i, _SCALARS[fmt], what)
        return np.frombuffer(self.fb.buf, dtype="<" + fmt if fmt not in "bB?" else fmt,
                             count=n, offset=start).copy() if n else np.zeros(0, dtype=fmt)
