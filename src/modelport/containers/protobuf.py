"""A tiny, strict protobuf wire-format decoder that reads a buffer in place.

A message is a run of fields; each field is a varint tag then a value::

    tag    = varint(field_number << 3 | wire_type)
    0 VARINT  varint (1..10 bytes, 7 bits each, low group first, high bit = "more")
    1 I64     8 bytes little-endian (fixed64, sfixed64, double)
    2 LEN     varint length, then that many bytes (string, bytes, sub-message, packed repeated)
    5 I32     4 bytes little-endian (fixed32, sfixed32, float)
    3/4       start/end group: deprecated since proto2, never written by onnx; rejected

Every offset here is absolute in the buffer (the buffer is the whole file, a memoryview of its
mmap), so errors name the byte where the problem is and a LEN payload is returned as its
``(offset, length)`` in the file, never copied. Only one level is decoded per call: callers walk
sub-messages themselves, so nesting depth is theirs to bound.

Repeated numeric fields may arrive packed (one LEN field) or one field per element, in any mix
(the protobuf spec requires parsers to accept both); ``unpack`` turns either into a numpy array.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, NamedTuple

from ..errors import MalformedHeader, Truncated

if TYPE_CHECKING:
    import numpy as np  # imported where arrays are built: sniffing and scanning need no numpy

__all__ = [
    "VARINT",
    "I64",
    "LEN",
    "I32",
    "Field",
    "Schema",
    "read_varint",
    "iter_fields",
    "decode",
    "text",
    "payload",
    "unpack",
    "varints",
]

VARINT, I64, LEN, I32 = 0, 1, 2, 5
_FIXED = {I64: 8, I32: 4}
_WIRE_NAMES = {VARINT: "varint", I64: "fixed64", LEN: "length-delimited", I32: "fixed32"}
_MAX_FIELD = (1 << 29) - 1
_MASK64 = (1 << 64) - 1
_KIND_WIRE = {"varint": VARINT, "<f4": I32, "<f8": I64}  # unpack kinds, unpacked on the wire

Buffer = bytes | bytearray | memoryview


class Field(NamedTuple):
    """One field. ``value`` is the integer (VARINT, I32, I64: raw unsigned bits) or, for LEN,
    the payload length; ``offset`` is where the value (the payload, for LEN) starts."""

    number: int
    wire: int
    value: int
    offset: int

    @property
    def end(self) -> int:
        """End of the payload (LEN fields)."""
        return self.offset + self.value


# A message schema: field number -> (name, expected wire type, repeated). Unknown numbers are
# skipped, as protobuf does, so newer onnx files still read.
Schema = dict[int, tuple[str, int, bool]]


def read_varint(buf: Buffer, pos: int, end: int, bits: int | None = None) -> tuple[int, int]:
    """The varint at ``pos`` and the position after it, never past ``end``.

    ``bits`` None reads as protobuf does: at most 10 bytes, bits past 64 dropped. ``bits`` 32
    or 64 reads as LevelDB's ``GetVarint32``/``GetVarint64`` do (SSTable blocks, TensorFlow's
    checkpoint index): the value must fit in that many bits, in at most ceil(bits / 7) bytes.
    """
    result = shift = 0
    start = pos
    limit = 70 if bits is None else bits + 7
    while True:
        if pos >= end:
            raise Truncated("varint runs past the end of its "
                            f"{'message' if bits is None else 'block'}", offset=start)
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            if bits is None:
                # Bits past 64 are dropped, as protobuf's own parsers do.
                return result & _MASK64, pos
            if result >> bits:
                raise MalformedHeader(f"varint{bits} out of range", offset=start)
            return result, pos
        shift += 7
        if shift >= limit:
            raise MalformedHeader("varint longer than 10 bytes" if bits is None else
                                  f"varint{bits} too long", offset=start)


def iter_fields(buf: Buffer, start: int = 0, end: int | None = None) -> Iterator[Field]:
    """Every field of the message in ``buf[start:end]``, in order; LEN payloads are not read."""
    end = len(buf) if end is None else end
    pos = start
    while pos < end:
        tag_at = pos
        tag = buf[pos]
        if tag < 0x80:  # one-byte tags (fields 1..15) are the common case: skip the call
            pos += 1
        else:
            tag, pos = read_varint(buf, pos, end)
        number, wire = tag >> 3, tag & 7
        if number == 0 or number > _MAX_FIELD:
            raise MalformedHeader(f"invalid field number {number}", offset=tag_at)
        if wire == VARINT:
            value, pos = read_varint(buf, pos, end)
            yield Field(number, wire, value, tag_at)
        elif wire == LEN:
            length, pos = read_varint(buf, pos, end)
            if pos + length > end:
                where = "the file" if end >= len(buf) else "its enclosing message"
                cls = Truncated if end >= len(buf) else MalformedHeader
                raise cls(
                    f"field {number} needs {length} bytes but {where} ends {end - pos} bytes later",
                    offset=pos,
                )
            yield Field(number, wire, length, pos)
            pos += length
        elif wire in _FIXED:
            size = _FIXED[wire]
            if pos + size > end:
                raise Truncated(f"fixed field {number} runs past the end", offset=pos)
            yield Field(number, wire, int.from_bytes(buf[pos : pos + size], "little"), pos)
            pos += size
        else:
            raise MalformedHeader(f"field {number} has unsupported wire type {wire}", offset=tag_at)


def decode(buf: Buffer, start: int, end: int, schema: Schema) -> dict[str, Any]:
    """One level of a message by ``schema``: scalars are the last occurrence's ``Field`` (protobuf
    semantics), repeated fields a list of ``Field``. Wire types are checked; a repeated numeric
    field may also be packed (LEN)."""
    out: dict[str, Any] = {}
    for f in iter_fields(buf, start, end):
        spec = schema.get(f.number)
        if spec is None:
            continue
        name, wire, repeated = spec
        if f.wire != wire and not (repeated and wire != LEN and f.wire == LEN):
            raise MalformedHeader(
                f"field {name} ({f.number}) is {_WIRE_NAMES.get(f.wire, f.wire)}, "
                f"expected {_WIRE_NAMES[wire]}",
                offset=f.offset,
            )
        if repeated:
            out.setdefault(name, []).append(f)
        else:
            out[name] = f
    return out


def payload(buf: Buffer, f: Field) -> memoryview:
    """The bytes of a LEN field, zero-copy."""
    return memoryview(buf)[f.offset : f.end]


def text(buf: Buffer, f: Field | None, default: str = "") -> str:
    """A LEN field as UTF-8 text (undecodable bytes replaced: names are shown, not trusted)."""
    if f is None:
        return default
    return bytes(payload(buf, f)).decode("utf-8", "replace")


def varints(data: Buffer, offset: int = 0) -> np.ndarray:
    """A packed run of varints as uint64, vectorised: each value ends at a byte below 0x80."""
    import numpy as np

    b = np.frombuffer(data, dtype=np.uint8)
    if b.size == 0:
        return np.zeros(0, np.uint64)
    if b[-1] >= 0x80:
        raise Truncated("packed varints end inside a varint", offset=offset + b.size - 1)
    ends = np.flatnonzero(b < 0x80)
    starts = np.concatenate(([0], ends[:-1] + 1))
    if int((ends - starts).max()) >= 10:
        bad = int(starts[np.argmax(ends - starts >= 10)])
        raise MalformedHeader("varint longer than 10 bytes", offset=offset + bad)
    # Byte i of its varint contributes (b & 0x7f) << 7*i; bits past 64 wrap away as in protobuf.
    pos = np.arange(b.size) - np.repeat(starts, ends - starts + 1)
    parts = (b & 0x7F).astype(np.uint64) << (7 * pos).astype(np.uint64)
    return np.bitwise_or.reduceat(parts, starts)


def unpack(buf: Buffer, fields: list[Field], kind: str) -> np.ndarray:
    """A repeated numeric field, packed or not, as one array. ``kind`` is ``"varint"`` (uint64
    bits; cast to the declared type, e.g. ``.astype(np.int32)``), ``"<f4"`` or ``"<f8"``."""
    import numpy as np

    dt = np.dtype(np.uint64 if kind == "varint" else kind)
    parts: list[np.ndarray] = []
    for f in fields:
        if f.wire == LEN:
            data = payload(buf, f)
            if kind == "varint":
                parts.append(varints(data, f.offset))
            elif f.value % dt.itemsize:
                raise MalformedHeader(
                    f"packed field {f.number} is {f.value} bytes, not a multiple of {dt.itemsize}",
                    offset=f.offset,
                )
            else:
                parts.append(np.frombuffer(data, dtype=dt))
        elif f.wire != _KIND_WIRE[kind]:
            raise MalformedHeader(
                f"field {f.number} is {_WIRE_NAMES[f.wire]}, expected {kind}", offset=f.offset
            )
        else:
            raw = np.array([f.value], dtype=np.uint64)
            parts.append(raw if kind == "varint" else raw.astype(f"<u{dt.itemsize}").view(dt))
    if not parts:
        return np.zeros(0, dt)
    return parts[0] if len(parts) == 1 else np.concatenate(parts)
