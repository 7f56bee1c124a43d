"""NumPy ``.npy`` and ``.npz``: one array with a Python-literal header, or a zip of them.

``.npy`` (numpy/lib/format.py, NEP 1)::

    byte 0          6      7      8                 8+W                    8+W+L
         +----------+------+------+-----------------+----------------------+-------------+
         | \\x93NUMPY | major| minor| L: header bytes | header: dict literal | array data  |
         |          | 1..3 | 0    | W=2 (v1: u16)   | {'descr': '<f4',     | numel*item  |
         |          |      |      | W=4 (v2,3: u32) |  'fortran_order': F, | bytes, C or |
         |          |      |      | little endian   |  'shape': (2, 3), }  | Fortran     |
         +----------+------+------+-----------------+----------------------+-------------+
    the header is latin-1 (v1, v2) or UTF-8 (v3), space-padded and ended by '\\n'; it is
    decoded by ``containers.npy`` (shared with the scanner), then checked stricter here.

``.npz`` (np.savez: members stored; np.savez_compressed: deflated) is a zip of ``NAME.npy``
members (APPNOTE.TXT 4.3.7)::

    @header_offset: PK\\x03\\x04 | 22 bytes | name_len u16 @26 | extra_len u16 @28 | name | extra
    @header_offset + 30 + name_len + extra_len: the member's bytes (a whole .npy stream)

Python's zipfile only lists the members (it trusts the central directory); each local header is
read here, its name checked against the central one, and the data offset computed from it.
Stored members are read in place; compressed ones are decompressed into memory, bounded by the
declared size, ``limits.member_bytes`` and ``limits.ratio``, and checked against their CRC.

Never executed: object arrays (``|O`` or records with object fields) are pickles, and are
refused, never unpickled. Records, strings and datetimes are refused as well: they are not
tensors. Big-endian arrays (``>f4``) are byte-swapped into memory, within ``limits.member_bytes``:
every tensor modelport hands on is little-endian, as safetensors and torch store them.
"""

from __future__ import annotations

import builtins
import os
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO

from ...classify import classify, reselect
from ...containers import npy
from ...dtypes import DType, by_numpy
from ...errors import InputError, LimitExceeded, MalformedHeader, Truncated
from ...limits import DEFAULT_LIMITS, Limits
from ...model import Checkpoint, Storage, TensorEntry
from ..base import Options
from . import FORMAT_IDS, MAGIC

if TYPE_CHECKING:
    import zipfile

    import numpy as np

__all__ = ["NpyHeader", "parse_npy_header", "open", "read"]

_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")  # a member first, or an empty archive's EOCD
# zip compression methods zipfile (so np.load) reads; np.savez_compressed writes 8 (deflate).
# containers/zip.py builds their decompressors, for this reader and for the scanner.
_COMPRESSED = (8, 12, 14)
_STORED = 0
_CHUNK = 1 << 20
_CORRUPT = "the file is corrupt; write it again with np.save / np.savez"
_PICKLED = ("this .npy holds Python objects (pickled); modelport never unpickles them "
            "(`modelport scan` reports what the pickle would run)")


@dataclass(frozen=True)
class NpyHeader:
    """A parsed .npy header; ``data_offset`` counts from the start of the .npy stream."""

    dtype: DType
    shape: tuple[int, ...]
    fortran: bool
    data_offset: int
    version: tuple[int, int]
    big_endian: bool = False  # data is byte-swapped into memory on open (see _swapped)

    @property
    def nbytes(self) -> int:
        numel = 1
        for d in self.shape:
            numel *= d
        return numel * self.dtype.itemsize

    def entry(self, name: str, storage: Storage) -> TensorEntry:
        """The tensor over ``storage``; Fortran order becomes element strides, never a copy."""
        strides = None
        if self.fortran and len(self.shape) > 1:
            acc, out = 1, []
            for d in self.shape:
                out.append(acc)
                acc *= max(d, 1)
            strides = tuple(out)
        return TensorEntry(name, self.dtype, self.shape, storage, strides=strides)


def parse_npy_header(
    read: Callable[[int, int], bytes],
    avail: int,
    limits: Limits = DEFAULT_LIMITS,
    **where: Any,
) -> NpyHeader:
    """Parse and validate a .npy header; ``read(offset, n)`` reads the stream of ``avail`` bytes.

    ``where`` (path, member, offset of the stream in the file) locates errors. Raises
    ``InputError`` for object/record/unmappable dtypes, ``Truncated`` when the stream
    is shorter than header + data, ``MalformedHeader`` for everything else.
    """
    fmt = FORMAT_IDS[1] if where.get("member") else FORMAT_IDS[0]
    raw = npy.read_header(read, avail, limits, fmt=fmt, **where)  # what numpy itself accepts
    base = where.pop("offset", 0) or 0
    loc = dict(where, format=fmt)

    def bad(msg: str, at: int, cls: type[InputError] = MalformedHeader, hint: str = _CORRUPT
            ) -> InputError:
        return cls(msg, offset=base + at, hint=hint, **loc)

    def truncated(what: str, need: int) -> InputError:
        return bad(f"{what} needs {need} bytes but the stream has {avail}", min(avail, need),
                   Truncated, "the file is truncated; download or write it again")

    start, shape, fortran, descr = raw.text_offset, raw.shape, raw.fortran, raw.descr
    if not all(type(x) is int and x >= 0 for x in shape):  # numpy takes bools and negatives
        raise bad(f"shape {shape!r} is not a tuple of non-negative integers", start)
    import numpy as np

    try:
        # Builds a dtype description only: an object dtype here is a type code, nothing is loaded.
        dt = np.lib.format.descr_to_dtype(descr)
    except (TypeError, ValueError, KeyError, IndexError, RecursionError, SyntaxError) as e:
        raise bad(f"descr {descr!r} is not a numpy dtype: {e}", start) from e
    dtype = _tensor_dtype(dt, lambda msg, hint: bad(msg, start, InputError, hint))
    header = NpyHeader(dtype, shape, fortran, raw.data_offset, raw.version,
                       dt.itemsize > 1 and dt.str[0] == ">")
    if header.data_offset + header.nbytes > avail:
        raise truncated(f"array data {shape} of {dt}", header.data_offset + header.nbytes)
    return header


def _tensor_dtype(dt: np.dtype, refuse: Callable[[str, str], InputError]) -> DType:
    """The modelport dtype of a numpy dtype, or a refusal that says why it is not a tensor."""
    if dt.hasobject:
        raise refuse(_PICKLED, "re-save the data as numeric arrays, or load it with numpy "
                               "(allow_pickle=True) only if you trust its author")
    if dt.names is not None or dt.subdtype is not None:
        raise refuse(f"the array has a structured (record) dtype {dt.descr}, not a tensor",
                     "save each field as its own array")
    dtype = by_numpy(dt.newbyteorder("<") if dt.str[0] == ">" else dt)
    if dtype is None:
        raise refuse(f"numpy dtype {dt.str} ({dt.name}) has no tensor dtype in modelport",
                     "numeric, bool and complex arrays are supported")
    return dtype


def _swapped(header: NpyHeader, raw: bytes | memoryview, key: str, limits: Limits,
             **loc: Any) -> Storage:
    """A big-endian array as little-endian bytes in memory: every tensor record in modelport is
    little-endian, as in safetensors and torch. This is the one copy a reader makes, so it is
    capped by ``Limits.member_bytes``."""
    if header.nbytes > limits.member_bytes:
        raise LimitExceeded(f"a big-endian array of {header.nbytes} bytes must be byte-swapped "
                            f"in memory, over the limit of {limits.member_bytes}",
                            hint="re-save it little-endian: arr.astype(arr.dtype.newbyteorder('<'))",
                            **loc)
    import numpy as np

    dt = header.dtype.np_dtype()
    swapped = np.frombuffer(raw, dtype=dt.newbyteorder(">"), count=header.nbytes // dt.itemsize)
    return Storage(nbytes=header.nbytes, data=swapped.astype(dt).tobytes(), key=key)


def _file_reader(f: BinaryIO, base: int) -> Callable[[int, int], bytes]:
    def read(offset: int, n: int) -> bytes:
        f.seek(base + offset)
        return f.read(n)

    return read


def _bytes_reader(data: bytes) -> Callable[[int, int], bytes]:
    # A closure over this member's bytes, not the loop variable that the next member rebinds.
    def read(offset: int, n: int) -> bytes:
        return data[offset : offset + n]

    return read


def _open_npy(path: str, f: BinaryIO, size: int, limits: Limits) -> Checkpoint:
    header = parse_npy_header(_file_reader(f, 0), size, limits, path=path)
    # A .npy holds one unnamed array; it is named after the file ("weights.npy" -> "weights").
    name = os.path.splitext(os.path.basename(path))[0] or "array"
    storage = Storage(nbytes=header.nbytes, path=path, offset=header.data_offset, key=name)
    if header.big_endian:
        f.seek(header.data_offset)
        storage = _swapped(header, f.read(header.nbytes), f"{path}:{name}", limits, path=path,
                           offset=header.data_offset)
    end = header.data_offset + header.nbytes
    info = {"npy_version": "{}.{}".format(*header.version), "fortran_order": header.fortran,
            "trailing_bytes": size - end}  # more np.save calls on one handle append arrays
    return classify(path, FORMAT_IDS[0], {name: header.entry(name, storage)}, info=info,
                    file_size=size)


def _inflate(path: str, f: BinaryIO, m: zipfile.ZipInfo, offset: int) -> bytes:
    """A compressed member's bytes, never more than its declared (already bounded) size."""
    from ...containers import compress
    from ...containers.zip import decompressor

    out = bytearray()
    f.seek(offset)
    left = m.compress_size
    loc: dict[str, Any] = dict(path=path, member=m.filename, format=FORMAT_IDS[1], offset=offset)
    d: Any = None
    while left and (d is None or not d.eof):
        chunk = f.read(min(left, _CHUNK))
        left -= len(chunk)
        try:
            if d is None:  # an LZMA member starts with its header and properties
                d, start = decompressor(m.compress_type, chunk[:16])
                chunk = chunk[start:]
            out += d.decompress(chunk, m.file_size + 1 - len(out))
        except compress.errors() as e:
            raise MalformedHeader(f"the compressed member is corrupt: {e}", hint=_CORRUPT,
                                  **loc) from e
        if len(out) > m.file_size:
            raise LimitExceeded(f"the member inflates past its declared {m.file_size} bytes",
                                hint="a zip bomb or a corrupt archive; do not trust it", **loc)
    if d is None or not d.eof or len(out) != m.file_size:
        raise MalformedHeader(f"the member inflates to {len(out)} bytes, {m.file_size} declared",
                              hint=_CORRUPT, **loc)
    if zlib.crc32(out) != m.CRC:
        raise MalformedHeader("the member's CRC-32 does not match its bytes", hint=_CORRUPT, **loc)
    return bytes(out)


def _open_npz(path: str, f: BinaryIO, size: int, limits: Limits) -> Checkpoint:
    import zipfile

    try:
        with zipfile.ZipFile(f) as zf:
            members = zf.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, NotImplementedError,
            IndexError) as e:
        raise MalformedHeader(f"the zip directory cannot be read: {e}", path=path,
                              format=FORMAT_IDS[1], hint="the file is truncated or corrupt") from e
    if len(members) > limits.members:
        raise LimitExceeded(f"{len(members)} members exceed the limit of {limits.members}",
                            path=path, format=FORMAT_IDS[1])
    tree: dict[str, TensorEntry] = {}
    other: list[str] = []
    seen: set[str] = set()
    for m in members:
        loc = dict(path=path, member=m.filename, format=FORMAT_IDS[1])
        if m.filename in seen:  # zipfile keeps the last; other readers take the first
            raise MalformedHeader("the zip lists this member twice", offset=m.header_offset,
                                  hint="readers disagree on which copy wins; corrupt or crafted",
                                  **loc)
        seen.add(m.filename)
        if m.filename.endswith("/"):  # ZipInfo.is_dir() fails on an empty name
            continue
        f.seek(m.header_offset)
        local = f.read(30)
        if len(local) < 30 or local[:4] != _ZIP_MAGICS[0]:
            raise MalformedHeader("no local file header where the central directory points",
                                  offset=m.header_offset, hint=_CORRUPT, **loc)
        name_len, extra_len = struct.unpack_from("<HH", local, 26)
        local_name = f.read(name_len).decode("utf-8" if m.flag_bits & 0x800 else "cp437", "replace")
        if local_name != m.orig_filename:
            raise MalformedHeader(f"the local header names {local_name!r}, the directory "
                                  f"{m.orig_filename!r}", offset=m.header_offset,
                                  hint="readers disagree on the member's name; corrupt or crafted",
                                  **loc)
        offset = m.header_offset + 30 + name_len + extra_len
        if offset + m.compress_size > size:
            raise Truncated(f"the member's {m.compress_size} bytes run past the end of the file "
                            f"({size} bytes)", offset=offset,
                            hint="the file is truncated; download it again", **loc)
        if m.flag_bits & 0x1:
            raise InputError("the member is encrypted", offset=offset,
                             hint="decrypt the archive first", **loc)
        key = m.filename[:-4] if m.filename.endswith(".npy") else m.filename
        if m.compress_type == _STORED:
            if m.compress_size != m.file_size:
                raise MalformedHeader(f"a stored member of {m.file_size} bytes occupies "
                                      f"{m.compress_size}", offset=offset, hint=_CORRUPT, **loc)
            read, data = _file_reader(f, offset), None
        elif m.compress_type in _COMPRESSED:
            cap = min(limits.member_bytes, limits.ratio * max(m.compress_size, 1))
            if m.file_size > cap:  # checked before allocating anything
                raise LimitExceeded(f"the member declares {m.file_size} bytes from "
                                    f"{m.compress_size} compressed, over the limit of {cap}",
                                    offset=offset, hint="raise Limits.member_bytes / Limits.ratio "
                                    "if you trust this file", **loc)
            data = _inflate(path, f, m, offset)
            read = _bytes_reader(data)
        else:
            raise InputError(f"zip compression method {m.compress_type} is not supported",
                             offset=offset, hint="re-save with np.savez or np.savez_compressed",
                             **loc)
        if read(0, 6) != MAGIC:  # np.load returns such members as raw bytes; they hold no tensor
            other.append(m.filename)
            continue
        header = parse_npy_header(read, m.file_size, limits, offset=offset, **loc)
        if data is None:
            storage = Storage(nbytes=header.nbytes, path=path, offset=offset + header.data_offset,
                              key=key)
        else:  # decompressed bytes live in memory: no (path, offset) to read them from
            start = header.data_offset
            view = memoryview(data)[start : start + header.nbytes]
            storage = Storage(nbytes=header.nbytes, data=view, key=f"{path}:{key}")
        if header.big_endian:
            raw = read(header.data_offset, header.nbytes)
            storage = _swapped(header, raw, f"{path}:{key}", limits, offset=offset, **loc)
        tree[key] = header.entry(key, storage)
    compressed = any(m.compress_type != _STORED for m in members)
    info: dict[str, Any] = {"compressed": compressed}
    if other:
        info["other_members"] = other
    return classify(path, FORMAT_IDS[1], tree, info=info, file_size=size)


def open(path: str | os.PathLike[str], limits: Limits = DEFAULT_LIMITS) -> Checkpoint:
    """A .npy (one array, named after the file) or a .npz (member name without .npy -> array)."""
    path = os.fspath(path)
    with builtins.open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(6)
        if head == MAGIC:
            return _open_npy(path, f, size, limits)
        if head[:4] in _ZIP_MAGICS:
            return _open_npz(path, f, size, limits)
        if MAGIC.startswith(head):
            raise Truncated(f"the file has {size} bytes, fewer than the .npy magic", path=path,
                            offset=0, hint="the file is truncated; write it again")
    raise MalformedHeader(f"neither a .npy nor a .npz file: it starts with {head!r}", path=path,
                          offset=0, hint="check the file with `modelport inspect`")


def read(path: str, options: Options) -> Checkpoint:
    return reselect(open(path, options.limits), options.select)
