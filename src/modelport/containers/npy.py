"""The ``.npy`` header: the one decoder the numpy reader and the scanner share.

Layout (numpy/lib/format.py, NEP 1)::

    byte 0          6      7      8                 8+W                    8+W+L
         +----------+------+------+-----------------+----------------------+-------------+
         | \\x93NUMPY | major| minor| L: header bytes | header: dict literal | array data  |
         |          | 1..3 | 0    | W=2 (v1: u16)   | {'descr': '<f4',     | or, for an  |
         |          |      |      | W=4 (v2,3: u32) |  'fortran_order': F, | object dtype|
         |          |      |      | little endian   |  'shape': (2, 3), }  | a pickle    |
         +----------+------+------+-----------------+----------------------+-------------+

``read_header`` accepts exactly what ``np.lib.format._read_array_header`` accepts: the versions
1.0/2.0/3.0, latin-1 (v1, v2) or UTF-8 (v3) text, ``ast.literal_eval`` of it, retried for
v1/v2 after dropping Python 2 long suffixes (``(3L, 4L)``, numpy's ``_filter_header``), a dict
of exactly descr/fortran_order/shape, a shape of ints (bools count: ``isinstance(x, int)``), a
bool fortran_order. Readers add their own stricter checks on top.

``descr_has_object`` decides whether ``np.lib.format.descr_to_dtype(descr).hasobject``, without
numpy: np.load(allow_pickle=True) unpickles the data of such arrays. It follows descr_to_dtype
(a type string; ``(descr, shape)``; any iterable of ``(name, descr[, shape])`` fields, so a dict
``{'aO': 1}`` or a list of two-character strings is a record whose field 'a' is 'O') and numpy's
type-string grammar (``'O,i4'``, ``'2O'``, ``'(2,3)O'`` are comma strings:
``numpy/_core/_internal.py:_commastring``). A test checks it against numpy over generated
descrs; where numpy refuses a descr, the answer errs towards "object" (fail closed).
"""

from __future__ import annotations

import ast
import io
import re
import struct
import tokenize
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import InputError, LimitExceeded, MalformedHeader, Truncated
from ..limits import DEFAULT_LIMITS, Limits

__all__ = ["MAGIC", "VERSIONS", "Header", "read_header", "header_of_bytes", "descr_has_object"]

MAGIC = b"\x93NUMPY"
# version -> (header length field, header text encoding)
VERSIONS = {(1, 0): ("<H", "latin1"), (2, 0): ("<I", "latin1"), (3, 0): ("<I", "utf8")}
_KEYS = frozenset({"descr", "fortran_order", "shape"})
_CORRUPT = "the file is corrupt; write it again with np.save / np.savez"


@dataclass(frozen=True)
class Header:
    """A header numpy would accept; ``data_offset`` counts from the start of the stream."""

    version: tuple[int, int]
    descr: Any
    shape: tuple[Any, ...]
    fortran: bool
    text_offset: int  # where the dict literal starts (errors about its values point here)
    data_offset: int


def read_header(read: Callable[[int, int], bytes], avail: int, limits: Limits = DEFAULT_LIMITS,
                *, fmt: str = "numpy-npy", **where: Any) -> Header:
    """Decode a .npy header; ``read(offset, n)`` reads the stream of ``avail`` bytes.

    ``where`` (path, member, offset of the stream in the file) locates errors: ``Truncated``
    when the stream ends inside the header, ``LimitExceeded`` past ``limits.header_bytes``,
    ``MalformedHeader`` for anything numpy refuses too."""
    base = where.pop("offset", 0) or 0
    loc = dict(where, format=fmt)

    def bad(msg: str, at: int, cls: type[InputError] = MalformedHeader,
            hint: str = _CORRUPT) -> InputError:
        return cls(msg, offset=base + at, hint=hint, **loc)

    def truncated(what: str, need: int) -> InputError:
        return bad(f"{what} needs {need} bytes but the stream has {avail}", min(avail, need),
                   Truncated, "the file is truncated; download or write it again")

    pre = read(0, 12)
    if pre[:6] != MAGIC[:len(pre[:6])]:
        raise bad(f"not a .npy stream: it starts with {pre[:6]!r}", 0)
    if len(pre) < 10:
        raise truncated("the .npy preamble", 10)
    version = (pre[6], pre[7])
    if version not in VERSIONS:
        raise bad(f"unknown .npy format version {version[0]}.{version[1]}", 6,
                  hint="numpy reads versions 1.0, 2.0 and 3.0")
    lfmt, encoding = VERSIONS[version]
    start = 8 + struct.calcsize(lfmt)
    if len(pre) < start:
        raise truncated("the .npy preamble", start)
    (hlen,) = struct.unpack_from(lfmt, pre, 8)
    if hlen > limits.header_bytes:
        raise bad(f"a .npy header of {hlen} bytes exceeds the limit of {limits.header_bytes}", 8,
                  LimitExceeded, "raise Limits.header_bytes if you trust this file")
    if start + hlen > avail:
        raise truncated(f"the .npy header of {hlen} bytes", start + hlen)
    try:
        text = read(start, hlen).decode(encoding)
        d = _literal(text, version)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError,
            tokenize.TokenError) as e:
        raise bad(f"the .npy header is not a Python literal: {e}", start) from e
    if not isinstance(d, dict) or set(d) != _KEYS:
        keys = sorted(map(repr, d)) if isinstance(d, dict) else type(d).__name__
        raise bad(f"the .npy header must be a dict of descr, fortran_order, shape; got {keys}",
                  start)
    shape, fortran = d["shape"], d["fortran_order"]
    if not isinstance(shape, tuple) or not all(isinstance(x, int) for x in shape):
        raise bad(f"shape {shape!r} is not a tuple of integers", start)
    if not isinstance(fortran, bool):
        raise bad(f"fortran_order {fortran!r} is not a bool", start)
    return Header(version, d["descr"], shape, fortran, start, start + hlen)


def header_of_bytes(data: bytes | memoryview, limits: Limits = DEFAULT_LIMITS,
                    **where: Any) -> Header:
    """``read_header`` over bytes in memory (an archive member, a mapped file)."""
    return read_header(lambda o, n: bytes(data[o:o + n]), len(data), limits, **where)


def _literal(text: str, version: tuple[int, int]) -> Any:
    # literal_eval builds only literals (no names, calls or attributes), as numpy does.
    try:
        return ast.literal_eval(text)
    except SyntaxError:
        if version > (2, 0):
            raise
        return ast.literal_eval(_drop_long_suffixes(text))


def _drop_long_suffixes(text: str) -> str:
    """numpy's _filter_header: headers written by Python 2 say ``3L``; tokenized, that is the
    number 3 followed by the name L, which is dropped."""
    out: list[tokenize.TokenInfo] = []
    after_number = False
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if not (after_number and tok.type == tokenize.NAME and tok.string == "L"):
            out.append(tok)
        after_number = tok.type == tokenize.NUMBER
    return tokenize.untokenize(out)


# -- which descrs hold Python objects -----------------------------------------------------------

# numpy's C parser takes a type string as a comma string when it has a comma, starts with a
# digit or '(', or is a byte order followed by a digit (_check_for_commastring).
_COMMA_TRIGGER = re.compile(r"^(?:[0-9(]|[<>|=][0-9])|,")
# numpy/_core/_internal.py: format_re and sep_re of _commastring
_ITEM = re.compile(r"(?P<order1>[<>|=]?)(?P<repeats> *[(]?[ ,0-9]*[)]? *)(?P<order2>[<>|=]?)"
                   r"(?P<dtype>[A-Za-z0-9.?]*(?:\[[a-zA-Z0-9,.]+\])?)")
_SEP = re.compile(r"\s*,\s*")
_TRAILING_SPACE = re.compile(r"\s+$")


def _simple_is_object(code: str) -> bool:
    # Every type string numpy maps to the object dtype starts with 'O' ('O', 'O4', 'O8') or is
    # 'object'/'object_' (np.sctypeDict), after at most one byte-order character; no other
    # valid type string starts that way, so strings numpy refuses lean to "object".
    if code[:1] in ("<", ">", "|", "="):
        code = code[1:]
    return code.startswith(("O", "object"))


def _comma_items(code: str) -> list[tuple[str, str]] | None:
    """(repeats, dtype) of each item of a comma string, as _commastring splits it; None where
    numpy refuses the string."""
    pos, items = 0, []
    while pos < len(code):
        m = _ITEM.match(code, pos)
        if m is None or m.end() == pos and pos:
            return None
        items.append((m.group("repeats").strip(), m.group("dtype")))
        pos = m.end()
        if pos < len(code):
            if _TRAILING_SPACE.match(code, pos):
                break
            sep = _SEP.match(code, pos)
            if sep is None:
                return None
            pos = sep.end()
    return items


def _string_has_object(code: str) -> bool:
    if not _COMMA_TRIGGER.search(code):
        return _simple_is_object(code)
    items = _comma_items(code)
    return items is None or any(_simple_is_object(dtype) for _, dtype in items)


_UNSIZED = re.compile(r"^(?:[SUVa]0?|void|str|bytes|str_|bytes_)$")


_UNSIZED_STRING = re.compile(r"^(?:[SUa]0?|str|bytes|str_|bytes_)$")


def _unsized_string(base: Any) -> bool:
    """'S', 'U0', 'a', or the generic (flexible, itemsize) tuple ('S', 0): a string type of no
    size (not a subarray: ('S4', 0) is a subarray of zero S4 elements)."""
    if isinstance(base, tuple) and len(base) == 2 and isinstance(base[1], int) and \
            not isinstance(base[1], bool) and isinstance(base[0], str):
        base = base[0]
    elif not isinstance(base, str):
        return False
    code = base[1:] if base[:1] in ("<", ">", "|", "=") else base
    return bool(_UNSIZED_STRING.match(code))


def _element(descr: Any) -> str | None:
    """The element type string under subarray layers (byte order dropped); None for records."""
    while isinstance(descr, tuple) and descr:
        descr = descr[0]
    if not isinstance(descr, str):
        return None
    if _COMMA_TRIGGER.search(descr):
        items = _comma_items(descr)
        if items is None or len(items) != 1 or "," in descr.split(")")[-1]:
            return None
        descr = items[0][1]
    return descr[1:] if descr[:1] in ("<", ">", "|", "=") else descr


def _zero_size(descr: Any, _depth: int = 0) -> bool:
    """Whether numpy's dtype for ``descr`` has itemsize 0 ('V', 'S0', a (0,) subarray...)."""
    if _depth > 200:
        return False
    if isinstance(descr, str):
        if not _COMMA_TRIGGER.search(descr):
            return bool(_UNSIZED.match(descr[1:] if descr[:1] in "<>|=" and descr else descr))
        items = _comma_items(descr)
        if items is None or len(items) != 1 or "," in descr.split(")")[-1]:
            return False
        repeats, dtype = items[0]
        dims = re.findall(r"\d+", repeats)
        return "0" in [d.lstrip("0") or "0" for d in dims] or _zero_size(dtype, _depth + 1)
    if isinstance(descr, tuple) and len(descr) == 2:
        shape = descr[1]
        if shape == 0 or (isinstance(shape, tuple) and 0 in shape):
            return True
        return _zero_size(descr[0], _depth + 1)
    if isinstance(descr, list):
        return all(isinstance(f, tuple) and len(f) >= 2 and
                   (_zero_size(f[1], _depth + 1) or (len(f) == 3 and _zero_size(
                       (f[1], f[2]), _depth + 1))) for f in descr)
    return False


def _is_bare_void(descr: Any) -> bool:
    """Whether numpy's dtype for ``descr`` is a void without fields (a 'V8' or any subarray):
    descr_to_dtype drops a field named '' of such a type as padding, objects in it included."""
    if isinstance(descr, str):
        if not _COMMA_TRIGGER.search(descr):
            code = descr[1:] if descr[:1] in ("<", ">", "|", "=") else descr
            return code.startswith("V") or code == "void"
        items = _comma_items(descr)
        if items is None or len(items) != 1 or "," in descr.split(")")[-1]:
            return False  # several items: a record, whose fields have names
        repeats, dtype = items[0]
        if not repeats or repeats == "()":
            return _is_bare_void(dtype)
        return True  # '2O', '(2,3)f4': a subarray
    if isinstance(descr, tuple) and len(descr) == 2:
        base, shape = descr
        if isinstance(shape, (str, list, dict)):  # (base, new): fields come from new
            new_fields = not (isinstance(shape, str) and "," not in shape)
            if isinstance(base, tuple) and len(base) == 2 and base[1] != ():
                return True  # a subarray base stays a subarray
            if _zero_size(base):
                elem = _element(base)
                return not new_fields and (elem is None or elem.startswith(("V", "void")))
            return not new_fields and _is_bare_void(base)
        if shape == ():
            return _is_bare_void(base)
        return isinstance(shape, (int, tuple))  # a subarray
    return False


def descr_has_object(descr: Any, _depth: int = 0) -> bool:
    """Whether numpy's ``descr_to_dtype(descr).hasobject`` (see the module docstring)."""
    if _depth > 200:
        return True  # numpy recurses as deep; such a descr is hostile: fail closed
    if isinstance(descr, str):
        return _string_has_object(descr)
    if isinstance(descr, tuple):
        # np.dtype((base, shape)); a dtype-like second item is the (base, new) form, which
        # numpy refuses when either side holds objects: lean to "object" then.
        if not descr:
            return True
        second = descr[1] if len(descr) > 1 else None
        if isinstance(second, (str, list, dict)):
            # (base, new): over a zero-size base numpy takes the new type as it is; otherwise
            # it refuses objects on either side, so an accepted one holds none.
            if _zero_size(descr[0]):
                # over a zero-size base numpy sizes the base like new: an unsized string base
                # stays a string ('S' over 'O' is S8, no objects); a void or a zero-element
                # subarray takes new's flags ((('<f4', 0), 'O') is ('<f4', (0,)), hasobject)
                if _unsized_string(descr[0]):
                    return False
                return descr_has_object(second, _depth + 1)
            return descr_has_object(descr[0], _depth + 1) or \
                descr_has_object(second, _depth + 1)
        return descr_has_object(descr[0], _depth + 1)
    try:
        fields = list(descr)  # descr_to_dtype iterates anything else as its fields
    except TypeError:
        return True
    for field in fields:
        try:
            size = len(field)
        except TypeError:
            return True
        if size not in (2, 3):
            return True
        parts = list(field)
        name, sub = parts[0], parts[1]
        if isinstance(name, str) and name == "" and _is_bare_void(
                sub if size == 2 else (sub, parts[2])):
            continue  # padding: descr_to_dtype leaves it out of the dtype
        if descr_has_object(sub, _depth + 1):
            return True
    return False
