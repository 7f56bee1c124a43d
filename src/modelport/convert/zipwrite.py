"""A streaming zip writer that lays members out exactly as torch.save's does (miniz, zip64 on).

PyTorchStreamWriter (caffe2/serialize/inline_container.cc) drives miniz's
``mz_zip_writer_add_mem_ex_v2`` with ``MZ_ZIP_FLAG_WRITE_ZIP64`` and no timestamps::

    local header   PK\\3\\4  version 0, flags 0x0808 (data descriptor follows, UTF-8 name),
                   method 0 (stored), time 0, date 0, crc 0, sizes 0, name
                   [zip64 extra (0x0001): usize, csize if usize >= 4 GiB; offset if >= 4 GiB]
                   "FB" u16 n + n * "Z"        padding so the data starts 64-byte aligned
    data           the member's bytes, as they are
    descriptor     PK\\7\\8 crc, csize, usize  (u64 sizes when a zip64 extra was written);
                   an empty member has neither the descriptor nor flag 0x0008 (miniz skips both)
    ...
    central dir    PK\\1\\2 per member: version 0/0, flags 0x0808, crc, sizes and offset
                   (0xFFFFFFFF and a zip64 extra when they do not fit in 32 bits)
    zip64 EOCD     PK\\6\\6 (always: the archive is opened in zip64 mode), its locator PK\\6\\7
    EOCD           PK\\5\\6 with the counts and the directory's size and offset

Sizes are known before a member is written (tensors are planned), CRCs are computed while
streaming and go into the descriptor, so nothing is ever seeked back to.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable
from dataclasses import dataclass

from .stream import Piece, Sink

__all__ = ["ZipWriter", "ALIGN"]

ALIGN = 64  # torch's kFieldAlignment
_MARK = 0xFFFFFFFF  # a 32-bit field that says "the value is in the zip64 extra"
ZIP64_LIMIT = _MARK  # miniz's MZ_UINT32_MAX: at or above it, the zip64 extra is used
_LOCAL = struct.Struct("<IHHHHHIIIHH")
_CENTRAL = struct.Struct("<IHHHHHHIIIHHHHHII")
_EOCD64 = struct.Struct("<IQHHIIQQQQ")
_LOC64 = struct.Struct("<IIQI")
_EOCD = struct.Struct("<IHHHHIIH")
_FLAGS, _FLAGS_EMPTY = 0x0808, 0x0800


@dataclass
class _Entry:
    name: bytes
    offset: int
    size: int
    crc: int
    flags: int


def _zip64_extra(size: int | None, offset: int | None) -> bytes:
    fields = ([size, size] if size is not None else []) + ([offset] if offset is not None else [])
    if not fields:
        return b""
    return struct.pack(f"<HH{len(fields)}Q", 1, 8 * len(fields), *fields)


class ZipWriter:
    """Members are added one after another; ``close`` writes the directory."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.entries: list[_Entry] = []
        self.closed = False

    def add(self, name: str, size: int, pieces: Iterable[Piece] | bytes) -> None:
        if self.closed:
            raise RuntimeError("zip archive already closed")
        sink = self.sink
        raw = name.encode("utf-8")
        offset = sink.pos
        big_size, big_off = size >= ZIP64_LIMIT, offset >= ZIP64_LIMIT
        extra = _zip64_extra(size if big_size else None, offset if big_off else None)
        start = offset + _LOCAL.size + len(raw) + len(extra) + 4
        pad = -start % ALIGN
        flags = _FLAGS if size else _FLAGS_EMPTY
        sink.write(_LOCAL.pack(0x04034B50, 0, flags, 0, 0, 0, 0, 0, 0, len(raw),
                               len(extra) + 4 + pad))
        sink.write(raw + extra + b"FB" + struct.pack("<H", pad) + b"Z" * pad)
        begin = sink.pos
        if isinstance(pieces, (bytes, bytearray)):
            sink.write(pieces)
            crc = zlib.crc32(pieces)
        else:
            crc = 0
            for piece in pieces:
                crc = sink.put(piece, crc)  # type: ignore[assignment]
        written = sink.pos - begin
        if written != size:
            raise RuntimeError(f"zip member {name}: planned {size} bytes, wrote {written}")
        if extra:
            sink.write(struct.pack("<IIQQ", 0x08074B50, crc, size, size))
        elif size:
            sink.write(struct.pack("<IIII", 0x08074B50, crc, size, size))
        self.entries.append(_Entry(raw, offset, size, crc, flags))

    def close(self) -> None:
        sink = self.sink
        cd_offset = sink.pos
        for e in self.entries:
            big_size, big_off = e.size >= ZIP64_LIMIT, e.offset >= ZIP64_LIMIT
            extra = _zip64_extra(e.size if big_size else None, e.offset if big_off else None)
            size32 = _MARK if big_size else e.size  # the marker says: read the zip64 extra
            sink.write(_CENTRAL.pack(0x02014B50, 0, 0, e.flags, 0, 0, 0, e.crc, size32, size32,
                                     len(e.name), len(extra), 0, 0, 0, 0,
                                     _MARK if big_off else e.offset))
            sink.write(e.name + extra)
        cd_size = sink.pos - cd_offset
        n = len(self.entries)
        eocd64 = sink.pos
        sink.write(_EOCD64.pack(0x06064B50, _EOCD64.size - 12, 0x031E, 0x002D, 0, 0, n, n,
                                cd_size, cd_offset))
        sink.write(_LOC64.pack(0x07064B50, 0, eocd64, 1))
        sink.write(_EOCD.pack(0x06054B50, 0, 0, min(n, 0xFFFF), min(n, 0xFFFF),
                              min(cd_size, _MARK), min(cd_offset, _MARK), 0))
        self.closed = True
