"""A tiny FlatBuffers writer for hand-built test files (hostile TFLite models).

A table is a dict ``{field index: (kind, value)}``; kinds are struct codes for scalars
(``"I"``, ``"b"``, ``"Q"``...), ``"table"`` (a dict), ``"tables"`` (a list of dicts),
``"string"``, ``"vec:<code>"`` (a list of scalars) and ``"bytes"``. Everything is laid out
forward (vtable, table, then its children), so every u32 offset points forward as the format
requires. ``raw_offset`` lets a test write any u32 it likes into an offset slot.
"""

from __future__ import annotations

import struct
from typing import Any

Fields = dict[int, tuple[str, Any]]


def build(root: Fields, ident: bytes = b"TFL3") -> bytes:
    out = bytearray(8)
    pos = _table(out, root)
    struct.pack_into("<I", out, 0, pos)
    out[4:8] = ident
    return bytes(out)


def _align(out: bytearray, n: int = 4) -> None:
    out += bytes(-len(out) % n)


def _table(out: bytearray, fields: Fields) -> int:
    layout: dict[int, int] = {}
    off = 4
    for idx, (kind, _) in sorted(fields.items()):
        size = struct.calcsize("<" + kind) if len(kind) == 1 else 4
        off += -off % size
        layout[idx] = off
        off += size
    nf = max(fields) + 1 if fields else 0
    _align(out)
    vt = len(out)
    out += struct.pack("<HH", 4 + 2 * nf, off)
    out += b"".join(struct.pack("<H", layout.get(i, 0)) for i in range(nf))
    _align(out)
    t = len(out)
    out += bytes(off)
    struct.pack_into("<i", out, t, t - vt)
    for idx, (kind, value) in sorted(fields.items()):
        at = t + layout[idx]
        if len(kind) == 1:
            struct.pack_into("<" + kind, out, at, value)
            continue
        if kind == "raw_offset":
            struct.pack_into("<I", out, at, value)
            continue
        child = _child(out, kind, value)
        struct.pack_into("<I", out, at, child - at)
    return t


def _child(out: bytearray, kind: str, value: Any) -> int:
    _align(out)
    if kind == "table":
        return _table(out, value)
    pos = len(out)
    if kind in ("string", "bytes"):
        data = value.encode() if kind == "string" else bytes(value)
        out += struct.pack("<I", len(data)) + data + (b"\0" if kind == "string" else b"")
        return pos
    if kind.startswith("vec:"):
        code = kind[4:]
        out += struct.pack("<I", len(value)) + b"".join(struct.pack("<" + code, v) for v in value)
        return pos
    if kind == "tables":
        out += struct.pack("<I", len(value)) + bytes(4 * len(value))
        for i, sub in enumerate(value):
            at = pos + 4 + 4 * i
            child = _table(out, sub)
            struct.pack_into("<I", out, at, child - at)
        return pos
    raise ValueError(kind)


def tflite(custom: list[str] = (), builtin: list[int] = (3,), weights: bytes = b"\0" * 16,
           shape: tuple[int, ...] = (4,), tensor_type: int = 0,
           extra_model: Fields | None = None) -> bytes:
    """A one-subgraph TFLite model: one constant tensor, one op per operator code."""
    codes = [{3: ("i", b), 0: ("b", min(b, 127)), 2: ("i", 1)} for b in builtin]
    codes += [{0: ("b", 32), 3: ("i", 32), 1: ("string", c)} for c in custom]
    tensors = [{0: ("vec:i", list(shape)), 1: ("b", tensor_type), 2: ("I", 1),
                3: ("string", "w")},
               {0: ("vec:i", [1]), 1: ("b", 0), 2: ("I", 0), 3: ("string", "x")}]
    operators = [{0: ("I", i), 1: ("vec:i", [1, 0]), 2: ("vec:i", [1])}
                 for i in range(len(codes))]
    model: Fields = {
        0: ("I", 3),
        1: ("tables", codes),
        2: ("tables", [{0: ("tables", tensors), 1: ("vec:i", [1]), 2: ("vec:i", [1]),
                        3: ("tables", operators), 4: ("string", "main")}]),
        4: ("tables", [{}, {0: ("bytes", weights)}]),
    }
    model.update(extra_model or {})
    return build(model)
