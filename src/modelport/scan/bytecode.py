"""Python code objects in marshal format (Keras ``Lambda`` layers), read without ``marshal``.

Keras stores a lambda as ``base64(marshal.dumps(fn.__code__))`` (keras/src/utils/python_utils.py
``func_dump``). ``marshal.loads`` is documented as "not intended to be secure against erroneous
or maliciously constructed data" (crafted input has crashed CPython), and a code object it
returns is one call away from running, so modelport parses the format itself, just far enough
to report what the code would do: the names it loads (globals, attributes, imports), its
constants, nested code objects, and an instruction listing.

The marshal stream (Python/marshal.c): one type byte per object, ``| 0x80`` when the object is
added to the reference table; ints and lengths little-endian::

    N F T . S 0      None False True Ellipsis StopIteration NULL
    i / l            int32 / long: int32 digit count (sign), then 15-bit digits as u16
    g y / f x        binary float / complex (8 / 16 bytes); text float / complex (u8 length)
    s t u a A        bytes, interned, unicode, ascii, ascii interned: int32 length
    z Z              short ascii (u8 length)
    ( ) [ { < >      tuple (int32 n), small tuple (u8 n), list, dict (pairs until 0), set,
                     frozenset
    r                reference: int32 index into the table
    c                code: a version-dependent record (below)

A code record differs by the Python that wrote it, which the stream does not say; the layouts
are tried newest first and the first that parses to the end wins::

    3.11+   argcount posonly kwonly stacksize flags (int32 each), code consts names
            localsplusnames localspluskinds filename name qualname, firstlineno (int32),
            linetable exceptiontable
    3.8-10  argcount posonly kwonly nlocals stacksize flags, code consts names varnames
            freevars cellvars filename name, firstlineno, lnotab/linetable

The instruction listing uses the running interpreter's opcode table (``dis.opname``); it is
exact when the file came from the same Python version, and says so otherwise.
"""

from __future__ import annotations

import dis
import struct
import sys
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Code", "MarshalError", "parse_code", "disassemble", "LAYOUTS"]

_MAX_OBJECTS = 200_000
_MAX_DEPTH = 100


class MarshalError(ValueError):
    pass


@dataclass
class Code:
    """What a marshalled code object tells without running it."""

    name: str
    qualname: str
    filename: str
    firstlineno: int
    argcount: int
    code: bytes
    consts: list[Any]
    names: list[str]
    varnames: list[str]
    layout: str
    nested: list[Code] = field(default_factory=list)

    def all_names(self) -> list[str]:
        out = list(self.names)
        for c in self.nested:
            out += [n for n in c.all_names() if n not in out]
        return out


class _Ref:
    """A reference to an object still being built (a tuple referring to itself)."""

    def __repr__(self) -> str:
        return "<ref>"


LAYOUTS = ("3.11", "3.8")


class _Reader:
    def __init__(self, data: bytes, layout: str) -> None:
        self.data, self.pos, self.layout = data, 0, layout
        self.refs: list[Any] = []
        self.count = 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise MarshalError(f"needs {n} bytes at {self.pos}, {len(self.data)} in all")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def i32(self) -> int:
        return int(struct.unpack("<i", self.take(4))[0])

    def length(self) -> int:
        n = self.i32()
        if n < 0 or n > len(self.data) - self.pos + 1:
            # A count of objects can never exceed the bytes left (each takes at least one).
            raise MarshalError(f"length {n} at byte {self.pos - 4} exceeds the data")
        return n

    def obj(self, depth: int = 0) -> Any:
        if depth > _MAX_DEPTH:
            raise MarshalError("objects nest too deep")
        self.count += 1
        if self.count > _MAX_OBJECTS:
            raise MarshalError("too many objects")
        code = self.take(1)[0]
        flag, t = code & 0x80, chr(code & 0x7F)
        slot = None
        if flag and t not in "r":
            slot = len(self.refs)
            self.refs.append(_Ref())
        value = self._value(t, depth)
        if slot is not None:
            self.refs[slot] = value
        return value

    def _value(self, t: str, depth: int) -> Any:
        simple = {"N": None, "F": False, "T": True, ".": Ellipsis, "S": StopIteration, "0": None}
        if t in simple:
            return simple[t]
        if t == "i":
            return self.i32()
        if t == "l":
            n = self.i32()
            if abs(n) > 10_000:
                raise MarshalError(f"a long of {abs(n)} digits")
            v = 0
            for i in range(abs(n)):
                v |= struct.unpack("<H", self.take(2))[0] << (15 * i)
            return -v if n < 0 else v
        if t == "g":
            return struct.unpack("<d", self.take(8))[0]
        if t == "y":
            re_, im = struct.unpack("<dd", self.take(16))
            return complex(re_, im)
        if t in "fx":
            parts = [self.take(self.take(1)[0]) for _ in range(1 if t == "f" else 2)]
            return " ".join(p.decode("ascii", "replace") for p in parts)
        if t == "s":
            return self.take(self.length())
        if t in "tua":
            return self.take(self.length()).decode("utf-8", "surrogatepass")
        if t == "A":
            return self.take(self.length()).decode("ascii", "replace")
        if t in "zZ":
            return self.take(self.take(1)[0]).decode("ascii", "replace")
        if t in "([<>":
            n = self.length()
            items = [self.obj(depth + 1) for _ in range(n)]
            return tuple(items) if t == "(" else items
        if t == ")":
            return tuple(self.obj(depth + 1) for _ in range(self.take(1)[0]))
        if t == "{":
            out = []
            while self.data[self.pos:self.pos + 1] not in (b"0", b""):
                out.append((self.obj(depth + 1), self.obj(depth + 1)))
            self.take(1)
            return out
        if t == "r":
            i = self.i32()
            if not 0 <= i < len(self.refs):
                raise MarshalError(f"reference {i} of {len(self.refs)}")
            return self.refs[i]
        if t == "c":
            return self._code(depth)
        raise MarshalError(f"type {t!r} at byte {self.pos - 1}")

    def _code(self, depth: int) -> Code:
        if self.layout == "3.11":
            argc, _posonly, _kwonly, _stack, _flags = (self.i32() for _ in range(5))
            code, consts, names, localsplus, _kinds, filename, name, qualname = (
                self.obj(depth + 1) for _ in range(8))
            first = self.i32()
            self.obj(depth + 1), self.obj(depth + 1)
            varnames = localsplus
        else:
            argc, _posonly, _kwonly, _nloc, _stack, _flags = (self.i32() for _ in range(6))
            code, consts, names, varnames, _free, _cell, filename, name = (
                self.obj(depth + 1) for _ in range(8))
            qualname = name
            first = self.i32()
            self.obj(depth + 1)
        if not isinstance(code, bytes) or not isinstance(consts, tuple) or \
                not isinstance(names, tuple) or not all(isinstance(n, str) for n in names):
            raise MarshalError("not a code object of this layout")
        nested = [c for c in consts if isinstance(c, Code)]
        return Code(str(name), str(qualname), str(filename), first, argc, code,
                    [f"<code {c.qualname}>" if isinstance(c, Code) else c for c in consts],
                    list(names),
                    [str(v) for v in varnames] if isinstance(varnames, tuple) else [],
                    self.layout, nested)


def parse_code(data: bytes) -> Code:
    """The code object in ``data`` (one marshalled object); MarshalError when none parses."""
    errors = []
    for layout in LAYOUTS:
        r = _Reader(data, layout)
        try:
            value = r.obj()
        except (MarshalError, struct.error, UnicodeDecodeError, RecursionError) as exc:
            errors.append(f"{layout}: {exc}")
            continue
        if isinstance(value, Code) and r.pos == len(data):
            return value
        errors.append(f"{layout}: {'trailing bytes' if isinstance(value, Code) else 'no code'}")
    raise MarshalError("; ".join(errors))


def _brief(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


def disassemble(code: Code, limit: int = 200) -> list[str]:
    """An instruction listing of ``code`` with the running Python's opcode table."""
    lines = []
    same = code.layout == ("3.11" if sys.version_info >= (3, 11) else "3.8")
    if not same:
        lines.append(f"(written by a Python {code.layout}-era interpreter; listed with this "
                     f"Python's {sys.version_info[0]}.{sys.version_info[1]} opcode table)")
    raw = code.code
    ext = 0
    for i in range(0, len(raw) - 1, 2):
        op, arg = raw[i], raw[i + 1] | ext
        name = dis.opname[op] if op < len(dis.opname) else f"<{op}>"
        if name == "EXTENDED_ARG":
            ext = arg << 8
            continue
        ext = 0
        if name == "CACHE":
            continue
        shown = ""
        if op in dis.hasconst and arg < len(code.consts):
            shown = _brief(code.consts[arg])
        elif op in dis.hasname:
            idx = arg
            if name == "LOAD_GLOBAL" and sys.version_info >= (3, 11) or name == "LOAD_ATTR" and sys.version_info >= (3, 12):
                idx = arg >> 1
            shown = code.names[idx] if idx < len(code.names) else f"<name {idx}>"
        elif op in dis.haslocal and arg < len(code.varnames):
            shown = code.varnames[arg]
        elif op in getattr(dis, "hasarg", range(dis.HAVE_ARGUMENT, 256)):
            shown = str(arg)
        lines.append(f"{name} {shown}".rstrip())
        if len(lines) >= limit:
            lines.append("...")
            break
    for sub in code.nested:
        lines.append(f"-- nested code {sub.qualname}:")
        lines += ["  " + ln for ln in disassemble(sub, limit)]
    return lines
