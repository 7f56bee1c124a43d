"""The symbolic unpickler: every opcode of protocols 0-5, interpreted without importing anything.

A pickle is a program for a stack machine (CPython Lib/pickle.py, Lib/pickletools.py). This
module runs that program over plain Python values. ``GLOBAL``/``STACK_GLOBAL``/``INST`` push a
``Ref`` (a name, never an import). ``REDUCE``/``NEWOBJ``/``OBJ``/``INST`` call a *builder* from
``builders.BUILDERS`` when the name is one modelport knows how to rebuild as data (torch tensors,
OrderedDict, numpy arrays, ...); every other call becomes an inert ``Opaque`` that keeps the
class name, the arguments and, after ``BUILD``, the state.

While it runs it records, with byte offsets, every global it meets (``globals``), every call
(``calls``) and every irregularity a loader would tolerate but a scanner must see
(``anomalies``). The scanner and the readers share this one parser, so a clean scan means
modelport can read the file.
"""

from __future__ import annotations

import _compat_pickle  # Python 2 -> 3 name tables (data only), as the unpickler maps
import codecs
import re
import reprlib
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import LimitExceeded, PickleError
from ..limits import DEFAULT_LIMITS, Limits
from ..model import GlobalRef, Opaque

__all__ = ["Ref", "Call", "Anomaly", "Machine", "unpickle", "OPCODE_NAMES", "OPCODE_BYTES",
           "BadRecord", "brief", "check_key"]


class BadRecord(ValueError):
    """A builder's arguments are a corrupt record (a tensor with a negative size, ...), not
    merely a shape it does not know. Readers (``strict=True``) stop with a PickleError at the
    opcode; the scanner keeps the call inert and goes on."""


_BRIEF = reprlib.Repr()
_BRIEF.maxlevel, _BRIEF.maxstring, _BRIEF.maxother, _BRIEF.maxlong = 3, 60, 60, 40


def brief(value: Any) -> str:
    """A short repr of a pickle-built value for a message. Plain ``repr`` can recurse past the
    interpreter's limit (a list nested 100k deep costs 100k bytes of pickle) or refuse an int of
    more than 4300 digits; neither may turn an error message into a traceback."""
    try:
        return _BRIEF.repr(value)
    except (RecursionError, ValueError, TypeError):
        return f"<{type(value).__name__}>"


@dataclass(frozen=True)
class Ref:
    """A global named by the pickle (``module.name``); never imported."""

    module: str
    name: str

    @property
    def qualname(self) -> str:
        return f"{self.module}.{self.name}"

    def __repr__(self) -> str:
        return self.qualname


@dataclass
class Call:
    """A call the pickle asks a loader to make: callable name, arguments, opcode, offset."""

    target: str
    args: Any
    opcode: str
    offset: int


@dataclass(frozen=True)
class Anomaly:
    """Something a loader tolerates or executes that a plain data pickle never contains."""

    kind: str  # ext, proto-mid-stream, frame, computed-global, computed-call, buffer, ...
    offset: int
    detail: str


class _Mark:
    pass


_STOP = object()

# Opcode byte -> name, as pickletools names them (for findings and error messages).
OPCODE_NAMES = {
    b"(": "MARK", b".": "STOP", b"0": "POP", b"1": "POP_MARK", b"2": "DUP", b"F": "FLOAT",
    b"I": "INT", b"J": "BININT", b"K": "BININT1", b"L": "LONG", b"M": "BININT2", b"N": "NONE",
    b"P": "PERSID", b"Q": "BINPERSID", b"R": "REDUCE", b"S": "STRING", b"T": "BINSTRING",
    b"U": "SHORT_BINSTRING", b"V": "UNICODE", b"X": "BINUNICODE", b"a": "APPEND", b"b": "BUILD",
    b"c": "GLOBAL", b"d": "DICT", b"}": "EMPTY_DICT", b"e": "APPENDS", b"g": "GET",
    b"h": "BINGET", b"i": "INST", b"j": "LONG_BINGET", b"l": "LIST", b"]": "EMPTY_LIST",
    b"o": "OBJ", b"p": "PUT", b"q": "BINPUT", b"r": "LONG_BINPUT", b"s": "SETITEM",
    b"t": "TUPLE", b")": "EMPTY_TUPLE", b"u": "SETITEMS", b"G": "BINFLOAT", b"\x80": "PROTO",
    b"\x81": "NEWOBJ", b"\x82": "EXT1", b"\x83": "EXT2", b"\x84": "EXT4", b"\x85": "TUPLE1",
    b"\x86": "TUPLE2", b"\x87": "TUPLE3", b"\x88": "NEWTRUE", b"\x89": "NEWFALSE",
    b"\x8a": "LONG1", b"\x8b": "LONG4", b"B": "BINBYTES", b"C": "SHORT_BINBYTES",
    b"\x8c": "SHORT_BINUNICODE", b"\x8d": "BINUNICODE8", b"\x8e": "BINBYTES8",
    b"\x8f": "EMPTY_SET", b"\x90": "ADDITEMS", b"\x91": "FROZENSET", b"\x92": "NEWOBJ_EX",
    b"\x93": "STACK_GLOBAL", b"\x94": "MEMOIZE", b"\x95": "FRAME", b"\x96": "BYTEARRAY8",
    b"\x97": "NEXT_BUFFER", b"\x98": "READONLY_BUFFER",
}


class Machine:
    """Interprets one pickle in ``data`` from ``start``; ``run()`` returns the value at STOP."""

    def __init__(
        self,
        data: bytes | memoryview,
        start: int = 0,
        *,
        base: int = 0,
        member: str | None = None,
        path: str | None = None,
        persistent_load: Callable[[Any, int], Any] | None = None,
        builders: dict[str, Callable[..., Any]] | None = None,
        limits: Limits = DEFAULT_LIMITS,
        strict: bool = False,
        file_mode: bool = False,
    ) -> None:
        from .builders import BUILDERS

        self.data = memoryview(data).cast("B") if not isinstance(data, bytes) else data
        self.pos = start
        self.start = start
        self.base = base  # file offset of data[0], so offsets are absolute
        self.member = member
        self.path = path
        self.persistent_load = persistent_load
        self.builders = BUILDERS if builders is None else builders
        self.limits = limits
        self.strict = strict  # a BadRecord from a builder is an error, not an inert call
        # How bytes are read (see ``read``): False as pickle.loads reads a bytes object, True as
        # the C unpickler reads a file object without peek() (io.BytesIO: torch's data.pkl).
        self.file_mode = file_mode
        self.buf_end = start  # the end of the C unpickler's input buffer (a FRAME's end)
        self.straddled = False  # an opcode read across the end of a frame
        self.truncated = False  # it stopped because the bytes ran out (not at a bad opcode)
        self.stack: list[Any] = []
        self.metastack: list[list[Any]] = []
        self.memo: dict[int, Any] = {}
        self.globals: list[GlobalRef] = []
        self.calls: list[Call] = []
        self.anomalies: list[Anomaly] = []
        self.proto = 0
        self.ops = 0
        self.op_offset = start
        # Byte ranges a loader's own reader steps over (joblib's array data): the scanner
        # judges them too, as pickle.load, which does not step over them, reads them.
        self.skipped: list[tuple[int, int]] = []

    @property
    def frame_end(self) -> int | None:
        """Where the FRAME being read ends (the end of the C unpickler's buffer), or None
        outside frames."""
        return self.buf_end if self.pos < self.buf_end else None

    # -- errors and small readers -------------------------------------------------------

    def error(self, message: str, cls: type[PickleError | LimitExceeded] = PickleError,
              **kw: Any) -> PickleError | LimitExceeded:
        return cls(
            message,
            path=self.path,
            member=self.member,
            offset=self.base + self.op_offset,
            **kw,
        )

    def note(self, kind: str, detail: str) -> None:
        self.anomalies.append(Anomaly(kind, self.base + self.op_offset, detail))

    def read(self, n: int) -> bytes | memoryview:
        """``n`` bytes, as CPython's unpickler reads them. Outside frames every reading is the
        same. Inside a FRAME the C unpickler holds the frame in a buffer; a read that runs past
        its end is served from the *file* in file mode (the rest of the frame is skipped,
        ``_Unpickler_ReadImpl``) and from the bytes that follow in bytes mode."""
        if n < 0:
            raise self.error(f"a negative length ({n}) in {self._opname()}",
                             hint="the file is corrupt")
        pos = self.pos
        end = pos + n
        if end > self.buf_end:
            if pos < self.buf_end:  # the read runs past the end of its FRAME
                pos = self._straddle(end)
                end = pos + n
            else:  # outside frames: the buffer is what was read so far
                self.buf_end = end
        if end > len(self.data):
            self.truncated = True
            raise self.error(f"pickle ends inside {self._opname()} (needs {n} bytes)",
                             hint="the file is truncated or corrupt")
        self.pos = end
        return self.data[pos:end]

    def read_into(self, n: int) -> bytes | memoryview:
        """``n`` bytes of a BINBYTES/BYTEARRAY8 payload. The C unpickler reads these with
        ``_Unpickler_ReadInto``: what is left of the frame's buffer first, then the file, so
        across a FRAME's end both readings see the same contiguous bytes."""
        end = self.pos + n
        if n < 0 or end > len(self.data):
            self.truncated = True
            raise self.error(f"pickle ends inside {self._opname()} (needs {n} bytes)",
                             hint="the file is truncated or corrupt")
        chunk = self.data[self.pos:end]
        self.pos = end
        self.buf_end = max(self.buf_end, end)
        return chunk

    def _straddle(self, end: int) -> int:
        """Where a read that would end at ``end`` starts; moves the buffer end past it."""
        pos = self.pos
        if end > self.buf_end:
            if pos < self.buf_end:
                self.straddled = True
                self.note("frame", f"{self._opname()} runs past the end of its FRAME at byte "
                          f"{self.base + self.buf_end}")
                if self.file_mode:
                    pos = self.buf_end  # the C unpickler drops the rest of the frame
            self.buf_end = pos + (end - self.pos)
        return pos

    def _opname(self) -> str:
        return OPCODE_NAMES.get(bytes(self.data[self.op_offset:self.op_offset + 1]), "an opcode")

    def _find_newline(self, pos: int) -> int:
        data = self.data
        if isinstance(data, bytes):
            return data.find(b"\n", pos)
        step, n = 4096, len(data)
        while pos < n:  # no length limit: CPython reads a line of any length
            i = bytes(data[pos:pos + step]).find(b"\n")
            if i >= 0:
                return pos + i
            pos += step
            step = min(step * 2, 1 << 24)
        return -1

    def readline(self) -> bytes:
        """A text operand without its newline. CPython's readline has no length limit."""
        pos = self.pos
        nl = self._find_newline(pos)
        if nl >= self.buf_end > pos:  # the line runs past the end of its frame
            self.straddled = True
            self.note("frame", f"a text line of {self._opname()} runs past the end of its "
                      f"FRAME at byte {self.base + self.buf_end}")
            if self.file_mode:  # C reads a fresh line from the file, dropping the rest
                pos = self.buf_end
                nl = self._find_newline(pos)
        if nl < 0:
            self.truncated = True
            raise self.error("pickle ends inside a text line", hint="the file is truncated")
        self.pos = nl + 1
        self.buf_end = max(self.buf_end, self.pos)
        return bytes(self.data[pos:nl])

    def pop_mark(self) -> list[Any]:
        if not self.metastack:
            raise self.error("an opcode needs a MARK that is not there")
        items = self.stack
        self.stack = self.metastack.pop()
        return items

    def pop(self) -> Any:
        if not self.stack:
            raise self.error("stack underflow")
        return self.stack.pop()

    def memo_put(self, key: int, value: Any) -> None:
        if key not in self.memo and len(self.memo) >= self.limits.memo:
            raise self.error(f"memo holds more than {self.limits.memo} entries", LimitExceeded)
        self.memo[key] = value
        keys = getattr(value, "memo_keys", None)  # an ndarray awaiting BUILD
        if keys is not None:
            keys.append(key)

    def memo_get(self, key: int) -> Any:
        try:
            return self.memo[key]
        except KeyError:
            self.note("memo-miss", f"memo key {key} was never stored")
            raise self.error(f"memo key {key} was never stored") from None

    # -- globals and calls ----------------------------------------------------------------

    def find_class(self, module: Any, name: Any, opcode: str) -> Ref:
        if not isinstance(module, str) or not isinstance(name, str):
            self.note("computed-global",
                      f"{opcode} operands are not strings: {brief(module)}, {brief(name)}")
            module, name = brief(module), brief(name)
        if self.proto < 3:  # what Unpickler(fix_imports=True), the default, does
            module, name = _compat_pickle.NAME_MAPPING.get((module, name)) or (
                _compat_pickle.IMPORT_MAPPING.get(module, module), name)
        self.globals.append(GlobalRef(module, name, opcode, self.base + self.op_offset, self.member))
        if "." in name:
            self.note("dotted-name", f"{module}.{name}: a dotted name reaches an attribute")
        if name.startswith("__") or any(p.startswith("__") for p in name.split(".")):
            self.note("dunder-name", f"{module}.{name}")
        return Ref(module, name)

    def method_call(self, target: Any, method: str, args: Any, opcode: str) -> bool:
        """CPython calls ``target.<method>(args)`` on anything that is not a plain container
        (do_append, do_setitems, load_additems, load_build). On a global or an object modelport
        did not build, that is a call of code its class brings: recorded as a call of the class.
        A value a builder made (a tensor, an array) comes from an allowlisted class and stays
        as it is. Returns False for plain data (the caller decides what CPython does)."""
        if isinstance(target, _PLAIN):
            return False
        name = target.qualname if isinstance(target, Ref) else \
            target.cls if isinstance(target, Opaque) else None
        if name is not None:
            self.calls.append(Call(name, args, f"{opcode}:{method}", self.base + self.op_offset))
        return True

    def call(self, func: Any, args: Any, opcode: str, kwargs: Any = None) -> Any:
        if isinstance(func, _PLAIN):
            # CPython raises here (TypeError: not callable; NEWOBJ: not a type): nothing runs.
            raise self.error(f"{opcode} calls a {type(func).__name__}, which is not callable")
        if not isinstance(func, Ref):
            self.note("computed-call", f"{opcode} calls a value built at run time: {brief(func)}")
            return Opaque(f"<call of {brief(func)}>", args, how=opcode.lower())
        self.calls.append(Call(func.qualname, args, opcode, self.base + self.op_offset))
        builder = self.builders.get(func.qualname)
        if builder is not None and kwargs in (None, {}):
            try:
                return builder(self, *(args if isinstance(args, tuple) else (args,)))
            except PickleError:
                raise
            except BadRecord as exc:
                if self.strict:
                    raise self.error(f"{func.qualname}: {exc}",
                                     hint="the record is corrupt") from None
                self.note("builder-args", f"{func.qualname}: {exc}")
            except (TypeError, ValueError, IndexError, KeyError, AttributeError,
                    OverflowError) as exc:
                # Arguments of a shape the builder does not know: keep the call inert.
                self.note("builder-args", f"{func.qualname}: {exc}")
        return Opaque(func.qualname, args if kwargs is None else (args, kwargs), how=opcode.lower())

    # -- the loop ---------------------------------------------------------------------------

    def run(self) -> Any:
        dispatch = _DISPATCH
        data = self.data
        n = len(data)
        max_ops = self.limits.pickle_ops
        while True:
            if self.pos >= n:
                self.truncated = True
                raise self.error("pickle ends without STOP", hint="the file is truncated")
            self.op_offset = self.pos
            op = data[self.pos]
            self.pos += 1
            if self.pos > self.buf_end:
                self.buf_end = self.pos
            self.ops += 1
            if self.ops > max_ops:
                raise self.error(f"more than {max_ops} opcodes", LimitExceeded)
            handler = dispatch.get(op)
            if handler is None:
                raise self.error(f"unknown opcode 0x{op:02x}", hint="not a pickle, or corrupt")
            try:
                done = handler(self) is _STOP
            except RecursionError:
                # Hashing or building a value nested deeper than the interpreter recurses (a
                # tuple key nested 100k deep is 100k bytes of pickle).
                raise self.error("objects nest too deeply to read", LimitExceeded,
                                 hint="the pickle is corrupt or hostile") from None
            except MemoryError:
                raise self.error("out of memory building a value", LimitExceeded) from None
            if done:
                if not self.stack:  # Pdata_pop: "unpickling stack underflow"
                    raise self.error("STOP with an empty stack")
                return self.stack.pop()

    @property
    def end(self) -> int:
        """Position just after STOP (valid after run())."""
        return self.pos


# -- text operands, read as CPython reads them ------------------------------------------------
#
# Two unpicklers read protocol 0 text, and a scanner must accept what either accepts:
#   Lib/pickle.py      int(line, 0) / float(line) / int(line): Python's number syntax, whitespace
#                      and underscores allowed, no NUL
#   Modules/_pickle.c  strtol(line, 0) then PyLong_FromString(line, 0): C's syntax (010 is
#                      octal 8), and the line ends at its first NUL ("12\0junk\n" is 12)
_STRTOL = re.compile(rb"[ \t\n\v\f\r]*([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)")


def _c_text(line: bytes) -> bytes:
    """The line as C functions see it: up to its first NUL (the copy is NUL-terminated)."""
    nul = line.find(b"\0")
    return line + b"\n" if nul < 0 else line[:nul]


def _py_int(text: bytes, base: int) -> int | None:
    try:
        return int(text, base)
    except ValueError as exc:
        if "limit" in str(exc):  # sys.int_info.default_max_str_digits (3.11+); older Pythons
            return _BIG  # read the number: the stream goes on
        return None


_BIG = -(1 << 64) + 12345  # stands for an int of more digits than this interpreter converts


def parse_int_line(line: bytes) -> int | None:
    """INT's operand (without its newline) as either unpickler reads it, or None."""
    if line in (b"00", b"01"):
        return line == b"01"
    text = _c_text(line)
    if not text:  # a NUL first: strtol converts nothing and stops at the NUL, which C accepts
        return 0
    m = _STRTOL.match(text)
    if m is not None and text[m.end():] in (b"", b"\n"):
        c_value = int(m.group(1) + m.group(2), 0 if not m.group(2).startswith(b"0") or
                      m.group(2)[1:2] in (b"x", b"X") else 8)
        if -(1 << 63) <= c_value < (1 << 63):  # else strtol's ERANGE: PyLong_FromString decides
            return bool(c_value) if len(line) == 2 and c_value in (0, 1) else c_value
    value = _py_int(text, 0)
    if value is None and b"\0" not in line:
        value = _py_int(line, 0)  # pickle.py
    return value


def parse_long_line(line: bytes) -> int | None:
    """LONG's operand: a trailing L is dropped (optional since Python 3.0), base 0."""
    if line.endswith(b"L"):
        line = line[:-1]
    value = _py_int(_c_text(line), 0)
    if value is None and b"\0" not in line:
        value = _py_int(line, 0)
    return value


def _number(m: Machine, what: str, value: Any, line: bytes) -> Any:
    if value is None:
        raise m.error(f"{what} operand is not a number: {line[:40]!r}")
    if value is _BIG or (isinstance(value, int) and value == _BIG):
        m.note("big-int", f"{what} operand of {len(line)} digits: Python 3.11+ refuses it "
               "(int_max_str_digits), older Pythons read it and go on")
    return value


def _int_line(m: Machine) -> None:
    line = m.readline()
    m.stack.append(_number(m, "INT", parse_int_line(line), line))


def _long_line(m: Machine) -> None:
    line = m.readline()
    m.stack.append(_number(m, "LONG", parse_long_line(line), line))


def _float_line(m: Machine) -> None:
    line = m.readline()
    for text in (line, _c_text(line).rstrip(b"\n")):
        try:
            m.stack.append(float(text))
            return
        except ValueError:
            continue
    raise m.error(f"FLOAT operand is not a number: {line[:40]!r}")


def _string_line(m: Machine) -> None:
    line = m.readline()  # no \r stripping: both unpicklers compare the raw first and last byte
    if len(line) < 2 or line[0] != line[-1] or line[:1] not in (b"'", b'"'):
        raise m.error("STRING operand is not quoted")
    try:
        raw = codecs.escape_decode(line[1:-1])[0]
    except ValueError as exc:  # a bad \x escape or a trailing backslash
        raise m.error(f"STRING operand has a bad escape: {exc}") from None
    m.stack.append(_py2_str(raw))


def _py2_str(raw: bytes) -> str | bytes:
    # Python 3 unpicklers decode protocol-0/1/2 strings as ASCII by default (encoding="ASCII").
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError:
        return bytes(raw)


def _unicode_line(m: Machine) -> None:
    try:
        m.stack.append(m.readline().decode("raw-unicode-escape"))
    except UnicodeDecodeError as exc:  # a truncated \uXXXX escape
        raise m.error(f"UNICODE operand has a bad escape: {exc.reason}") from None


def _sized(fmt: str, size: int) -> Callable[[Machine], int]:
    unpack = struct.Struct(fmt).unpack

    def read(m: Machine) -> int:
        return unpack(m.read(size))[0]

    return read


_u1, _u2, _u4, _u8, _i4 = (_sized(f, s) for f, s in (("<B", 1), ("<H", 2), ("<I", 4),
                                                      ("<Q", 8), ("<i", 4)))


def _length(m: Machine, n: int) -> int:
    if n > len(m.data) - m.pos:
        m.truncated = True
        raise m.error(f"a length of {n} bytes runs past the end of the pickle",
                      hint="the file is truncated or corrupt")
    return n


def _push_bytes(reader: Callable[[Machine], int]) -> Callable[[Machine], None]:
    def op(m: Machine) -> None:
        m.stack.append(bytes(m.read_into(_length(m, reader(m)))))
    return op


def _push_str(reader: Callable[[Machine], int]) -> Callable[[Machine], None]:
    def op(m: Machine) -> None:
        raw = m.read(_length(m, reader(m)))
        try:
            m.stack.append(str(raw, "utf-8", "surrogatepass"))
        except UnicodeDecodeError as exc:
            raise m.error(f"string is not UTF-8: {exc.reason}") from None
    return op


def _push_binstring(reader: Callable[[Machine], int]) -> Callable[[Machine], None]:
    def op(m: Machine) -> None:
        m.stack.append(_py2_str(bytes(m.read(_length(m, reader(m))))))
    return op


def _long_n(reader: Callable[[Machine], int]) -> Callable[[Machine], None]:
    def op(m: Machine) -> None:
        m.stack.append(int.from_bytes(m.read(_length(m, reader(m))), "little", signed=True))
    return op


def _proto(m: Machine) -> None:
    version = _u1(m)
    if m.op_offset != m.start:
        m.note("proto-mid-stream", f"PROTO {version} after the first opcode")
    if version > 5:
        raise m.error(f"unsupported pickle protocol {version}")
    m.proto = version


def _frame(m: Machine) -> None:
    if m.pos < m.buf_end:
        m.note("frame", "FRAME starts inside the previous frame")
    size = _u8(m)
    # The C unpickler reads the whole frame into its buffer, then rewinds to its start
    # (load_frame); a frame inside a frame that ends in the buffer changes nothing.
    pos = m._straddle(m.pos + size)
    if pos + size > len(m.data):
        m.truncated = True
        m.note("frame", f"FRAME of {size} bytes runs past the end")
        raise m.error(f"FRAME of {size} bytes runs past the end of the pickle")
    m.pos = pos


def _name_line(m: Machine, opcode: str, encoding: str) -> str:
    line = m.readline()
    if not line:  # C: bad_readline; pickle.py: __import__("") raises
        raise m.error(f"{opcode} has an empty module or name")
    try:
        return line.decode(encoding)  # GLOBAL: UTF-8, INST: ASCII, both strict
    except UnicodeDecodeError:
        raise m.error(f"{opcode} operand is not {encoding.upper()}: {line[:40]!r}") from None


def _global(m: Machine) -> None:
    module = _name_line(m, "GLOBAL", "utf-8")
    name = _name_line(m, "GLOBAL", "utf-8")
    m.stack.append(m.find_class(module, name, "GLOBAL"))


def _stack_global(m: Machine) -> None:
    name = m.pop()
    module = m.pop()
    m.stack.append(m.find_class(module, name, "STACK_GLOBAL"))


def _inst(m: Machine) -> None:
    # pickle.py imports before it looks for the MARK (_pickle.c looks first): judge the import.
    module = _name_line(m, "INST", "ascii")
    name = _name_line(m, "INST", "ascii")
    cls = m.find_class(module, name, "INST")
    args = tuple(m.pop_mark())
    m.stack.append(m.call(cls, args, "INST"))


def _obj(m: Machine) -> None:
    items = m.pop_mark()
    if not items:
        raise m.error("OBJ without a class")
    m.stack.append(m.call(items[0], tuple(items[1:]), "OBJ"))


def _reduce(m: Machine) -> None:
    args = m.pop()
    func = m.pop()
    m.stack.append(m.call(func, args, "REDUCE"))


def _newobj(m: Machine) -> None:
    args = m.pop()
    cls = m.pop()
    m.stack.append(m.call(cls, args, "NEWOBJ"))


def _newobj_ex(m: Machine) -> None:
    kwargs = m.pop()
    args = m.pop()
    cls = m.pop()
    m.stack.append(m.call(cls, args, "NEWOBJ_EX", kwargs))


def _build(m: Machine) -> None:
    state = m.pop()
    if not m.stack:
        raise m.error("BUILD without an object")
    obj = m.stack[-1]
    from .builders import build_state

    build_state(m, obj, state)


def _ext(reader: Callable[[Machine], int]) -> Callable[[Machine], None]:
    def op(m: Machine) -> None:
        code = reader(m)
        if code <= 0:  # load_extension: "EXT specifies code <= 0"
            raise m.error(f"EXT specifies code {code} <= 0")
        # The extension registry (copyreg) maps codes to arbitrary globals: a loader imports them.
        m.note("ext", f"extension code {code} names a global through copyreg's registry")
        m.globals.append(GlobalRef("copyreg", f"<extension {code}>", "EXT", m.base + m.op_offset,
                                   m.member))
        m.stack.append(Ref("copyreg", f"<extension {code}>"))
    return op


def _persid(m: Machine) -> None:
    line = m.readline()
    try:
        pid = line.decode("ascii")  # both unpicklers: "persistent IDs in protocol 0 must be ASCII"
    except UnicodeDecodeError:
        raise m.error(f"PERSID operand is not ASCII: {line[:40]!r}") from None
    m.stack.append(_persistent(m, pid))


def _binpersid(m: Machine) -> None:
    m.stack.append(_persistent(m, m.pop()))


def _persistent(m: Machine, pid: Any) -> Any:
    if m.persistent_load is None:
        m.note("persistent-id", f"persistent id {brief(pid)} in a plain pickle")
        return Opaque("<persistent>", (pid,), how="persid")
    return m.persistent_load(pid, m.base + m.op_offset)


def _mark(m: Machine) -> None:
    if len(m.metastack) >= m.limits.depth:
        raise m.error(f"more than {m.limits.depth} nested MARKs", LimitExceeded)
    m.metastack.append(m.stack)
    m.stack = []


def _setitems(m: Machine) -> None:
    items = m.pop_mark()
    if not m.stack:
        raise m.error("SETITEMS without a target")
    if not items:
        return  # do_setitems: nothing to do, whatever the target is
    if len(items) % 2:
        raise m.error("SETITEMS with an odd number of items")
    _set_into(m, list(zip(items[::2], items[1::2])))


def _setitem(m: Machine) -> None:
    value = m.pop()
    key = m.pop()
    if not m.stack:
        raise m.error("SETITEM without a target")
    _set_into(m, [(key, value)])


def _set_into(m: Machine, pairs: list[tuple[Any, Any]]) -> None:
    """``target[key] = value`` as PyObject_SetItem does it: a dict, a list or bytearray by
    index, or any object's ``__setitem__`` (a call of its class)."""
    target = m.stack[-1]
    if isinstance(target, dict):
        for k, v in pairs:
            target[as_key(m, k)] = v
    elif m.method_call(target, "__setitem__", pairs, "SETITEM"):
        if isinstance(target, Opaque):
            target.setitems.extend(pairs)
    elif isinstance(target, (list, bytearray)):
        for k, v in pairs:
            try:
                target[k] = v
            except (TypeError, IndexError, ValueError) as exc:
                raise m.error(f"SETITEM on a {type(target).__name__}: {exc}") from None
    else:
        raise m.error(f"SETITEM on a {type(target).__name__}")


def _appends(m: Machine) -> None:
    items = m.pop_mark()
    if not m.stack:
        raise m.error("APPENDS without a target")
    if items:  # do_append: nothing to do, whatever the target is
        _append_into(m, items)


def _append(m: Machine) -> None:
    item = m.pop()
    if not m.stack:
        raise m.error("APPEND without a target")
    _append_into(m, [item])


def _append_into(m: Machine, items: list[Any]) -> None:
    """A list is extended; anything else has its ``extend`` (or ``append``) called."""
    target = m.stack[-1]
    if isinstance(target, list):
        target.extend(items)
    elif m.method_call(target, "extend", items, "APPEND"):
        if isinstance(target, Opaque):
            target.items.extend(items)
    elif isinstance(target, bytearray):  # the one other builtin with extend()
        try:
            target.extend(items)
        except (TypeError, ValueError) as exc:
            raise m.error(f"APPEND on a bytearray: {exc}") from None
    else:
        raise m.error(f"APPEND on a {type(target).__name__}")


def _additems(m: Machine) -> None:
    items = m.pop_mark()
    if not m.stack:
        raise m.error("ADDITEMS without a set")
    if not items:
        return
    target = m.stack[-1]
    if isinstance(target, set):
        target.update(_hashable(m, items, "set item"))
    elif m.method_call(target, "add", items, "ADDITEMS"):
        if isinstance(target, Opaque):
            target.items.extend(items)
    else:
        raise m.error(f"ADDITEMS on a {type(target).__name__}")


_KEY_DEPTH = 100  # tuples in tuples (and frozensets) in one dict key or set item
_KEY_NODES = 100_000  # tuples and items hashing one key touches


def check_key(m: Machine, key: Any) -> None:
    """Refuse a dict key or set item that is unsafe to hash, before hashing it.

    CPython hashes a tuple by C recursion with no depth guard and no cache: a key nested 100k
    deep (100 KB of TUPLE1 opcodes) overflows the C stack and kills the process, and a tuple
    that holds one tuple twice, forty levels over, takes 2**40 steps to hash.
    """
    if not isinstance(key, (tuple, frozenset)):
        return
    level, depth, nodes = [key], 0, 0
    while level:
        depth += 1
        nodes += sum(len(t) for t in level)
        if depth > _KEY_DEPTH or nodes > _KEY_NODES:
            raise m.error(f"a dict key or set item nests more than {_KEY_DEPTH} levels or "
                          f"{_KEY_NODES} items deep", LimitExceeded,
                          hint="the pickle is corrupt or hostile")
        level = [x for t in level for x in t if isinstance(x, (tuple, frozenset))]


class Identity:
    """A dict key or set item that modelport did not build as data (an object of a class it
    does not know): CPython hashes such an object by identity and goes on, so the machine
    keeps it as itself, hashed the same way, instead of stopping where CPython does not."""

    __slots__ = ("obj",)

    def __init__(self, obj: Any) -> None:
        self.obj = obj

    def __hash__(self) -> int:
        return id(self.obj)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Identity) and other.obj is self.obj

    def __repr__(self) -> str:
        return brief(self.obj)


def as_key(m: Machine, key: Any, what: str = "dict key") -> Any:
    """``key`` as CPython would hash it: plain data as itself (unhashable builtins refused, as
    CPython refuses them), tuples item by item, other objects by identity."""
    check_key(m, key)
    try:
        hash(key)
        return key
    except TypeError:
        pass
    if isinstance(key, tuple):
        return tuple(as_key(m, k, what) for k in key)
    if isinstance(key, _PLAIN):  # list, dict, set, bytearray: TypeError in CPython too
        raise m.error(f"unhashable {what} {type(key).__name__}")
    return Identity(key)


def _hashable(m: Machine, items: list[Any], what: str) -> list[Any]:
    return [as_key(m, item, what) for item in items]


def _dict(m: Machine) -> None:
    items = m.pop_mark()
    if len(items) % 2:
        raise m.error("DICT with an odd number of items")
    d: dict[Any, Any] = {}
    for k, v in zip(_hashable(m, items[::2], "dict key"), items[1::2]):
        d[k] = v
    m.stack.append(d)


def _tuple_n(n: int) -> Callable[[Machine], None]:
    def op(m: Machine) -> None:
        if len(m.stack) < n:
            raise m.error("stack underflow")
        items = tuple(m.stack[len(m.stack) - n :]) if n else ()
        del m.stack[len(m.stack) - n :]
        m.stack.append(items)
    return op


def _get(key_reader: Callable[[Machine], int]) -> Callable[[Machine], None]:
    def op(m: Machine) -> None:
        m.stack.append(m.memo_get(key_reader(m)))
    return op


def _put(key_reader: Callable[[Machine], int]) -> Callable[[Machine], None]:
    def op(m: Machine) -> None:
        key = key_reader(m)
        if not m.stack:
            raise m.error("PUT with an empty stack")
        m.memo_put(key, m.stack[-1])
    return op


def _line_int(m: Machine) -> int:
    """GET/PUT's memo key: base 10 (PyLong_FromString(s, NULL, 10) in C, int() in pickle.py)."""
    line = m.readline()
    key = _py_int(_c_text(line), 10)
    if key is None and b"\0" not in line:
        key = _py_int(line, 10)
    if key is None or key == _BIG:
        raise m.error(f"memo key is not a number: {line[:40]!r}")
    if key < 0:
        raise m.error(f"negative memo key {key}")
    return key


def _memoize(m: Machine) -> None:
    if not m.stack:
        raise m.error("MEMOIZE with an empty stack")
    m.memo_put(len(m.memo), m.stack[-1])


def _pop(m: Machine) -> None:
    if m.stack:
        m.stack.pop()
    else:
        m.pop_mark()


def _dup(m: Machine) -> None:
    if not m.stack:
        raise m.error("DUP with an empty stack")
    m.stack.append(m.stack[-1])


def _next_buffer(m: Machine) -> None:
    # Out-of-band buffers come from the caller of pickle.loads(buffers=...): a model file has none.
    m.note("buffer", "NEXT_BUFFER: out-of-band buffer that the file does not contain")
    raise m.error("pickle needs an out-of-band buffer (NEXT_BUFFER) it does not contain")


def _push(value_factory: Callable[[], Any]) -> Callable[[Machine], None]:
    def op(m: Machine) -> None:
        m.stack.append(value_factory())
    return op


def _stop(m: Machine) -> object:
    return _STOP


def _binfloat(m: Machine) -> None:
    m.stack.append(struct.unpack(">d", m.read(8))[0])


# pop_mark() replaces m.stack: take the items first, then push onto the restored stack.
def _frozenset(m: Machine) -> None:
    items = frozenset(_hashable(m, m.pop_mark(), "frozenset"))
    m.stack.append(items)


def _list(m: Machine) -> None:
    items = m.pop_mark()
    m.stack.append(items)


def _tuple(m: Machine) -> None:
    items = tuple(m.pop_mark())
    m.stack.append(items)


def _bytearray8(m: Machine) -> None:
    m.stack.append(bytearray(m.read_into(_length(m, _u8(m)))))


# Values CPython cannot call (REDUCE: not callable; NEWOBJ: not a type).
_PLAIN = (type(None), bool, int, float, complex, str, bytes, bytearray, list, tuple, dict, set,
          frozenset)

_DISPATCH_BY_BYTE: dict[bytes, Callable[[Machine], Any]] = {
    b"(": _mark, b".": _stop, b"0": _pop, b"1": lambda m: m.pop_mark() and None, b"2": _dup,
    b"F": _float_line, b"I": _int_line, b"L": _long_line, b"S": _string_line,
    b"V": _unicode_line, b"P": _persid, b"Q": _binpersid,
    b"J": lambda m: m.stack.append(_i4(m)), b"K": lambda m: m.stack.append(_u1(m)),
    b"M": lambda m: m.stack.append(_u2(m)), b"N": _push(lambda: None),
    b"R": _reduce, b"T": _push_binstring(_i4), b"U": _push_binstring(_u1),
    b"X": _push_str(_u4), b"a": _append, b"b": _build, b"c": _global, b"d": _dict,
    b"}": _push(dict), b"e": _appends, b"g": _get(_line_int), b"h": _get(_u1), b"i": _inst,
    b"j": _get(_u4), b"l": _list, b"]": _push(list), b"o": _obj, b"p": _put(_line_int),
    b"q": _put(_u1), b"r": _put(_u4), b"s": _setitem, b"t": _tuple, b")": _push(tuple),
    b"u": _setitems, b"G": _binfloat, b"\x80": _proto, b"\x81": _newobj,
    b"\x82": _ext(_u1), b"\x83": _ext(_u2), b"\x84": _ext(_i4),
    b"\x85": _tuple_n(1), b"\x86": _tuple_n(2), b"\x87": _tuple_n(3),
    b"\x88": _push(lambda: True), b"\x89": _push(lambda: False),
    b"\x8a": _long_n(_u1), b"\x8b": _long_n(_i4), b"B": _push_bytes(_i4),
    b"C": _push_bytes(_u1), b"\x8c": _push_str(_u1), b"\x8d": _push_str(_u8),
    b"\x8e": _push_bytes(_u8), b"\x8f": _push(set), b"\x90": _additems, b"\x91": _frozenset,
    b"\x92": _newobj_ex, b"\x93": _stack_global, b"\x94": _memoize, b"\x95": _frame,
    b"\x96": _bytearray8, b"\x97": _next_buffer, b"\x98": lambda m: None,
}

_DISPATCH = {op[0]: handler for op, handler in _DISPATCH_BY_BYTE.items()}
OPCODE_BYTES = frozenset(_DISPATCH)  # a first byte outside it: CPython refuses at once


@dataclass
class Result:
    value: Any
    end: int
    globals: list[GlobalRef] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)
    anomalies: list[Anomaly] = field(default_factory=list)


def unpickle(data: bytes | memoryview, start: int = 0, **kwargs: Any) -> Result:
    """Interpret one pickle from ``data[start:]``; kwargs as for ``Machine``."""
    m = Machine(data, start, **kwargs)
    value = m.run()
    return Result(value, m.end, m.globals, m.calls, m.anomalies)
