"""LevelDB-style sorted string tables, the format of TensorFlow's checkpoint ``.index`` files.

Byte layout (tensorflow/core/lib/io/format.h, table_builder.cc; LevelDB's table_format.md)::

    data block 0 ... data block N-1    sorted key/value records, each block followed by its trailer
    metaindex block                    (empty in TensorFlow's tables)
    index block                        one record per data block: key >= the block's last key,
                                       value = the block's BlockHandle
    footer (48 bytes)                  metaindex BlockHandle, index BlockHandle, zero padding to
                                       40 bytes, then the magic 0xdb4775248b80fb57 (fixed64 LE)

    BlockHandle     varint64 offset, varint64 size (of the block contents, without trailer)
    block trailer   1 byte compression type (0 none, 1 snappy), 4 bytes masked CRC-32C of the
                    contents and the type byte (fixed32 LE)
    block contents  records, then uint32 restart offsets, then uint32 restart count
    record          varint32 shared, varint32 non_shared, varint32 value_length,
                    key[shared:] (non_shared bytes), value (value_length bytes); the key is the
                    previous key's first ``shared`` bytes + these bytes (prefix compression,
                    reset to shared = 0 at every restart point)

Every block's CRC is checked, every length is checked against its block before it is used, and
keys must be strictly increasing across the table: TensorFlow finds a key by binary search over
the index and restart points, so a table whose records are out of order is read differently by
a lookup and by a scan (it is rejected, never reconciled).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from ..errors import LimitExceeded, MalformedHeader, Truncated
from ..limits import DEFAULT_LIMITS, Limits
from . import snappy
from .crc32c import crc32c, unmask
from .protobuf import Buffer, read_varint

__all__ = ["MAGIC", "FOOTER", "Record", "Table"]

MAGIC = (0xDB4775248B80FB57).to_bytes(8, "little")
FOOTER = 48
_TRAILER = 5
_NONE, _SNAPPY = 0, 1



@dataclass(frozen=True)
class Record:
    """One key/value record. ``offset`` is the value's byte offset in the file when its block is
    stored uncompressed, else the block's offset (errors point there)."""

    key: bytes
    value: bytes
    offset: int


@dataclass(frozen=True)
class _Handle:
    offset: int
    size: int


class Table:
    """A table read from a buffer (the mapped ``.index`` file): ``records()`` in key order."""

    def __init__(self, buf: Buffer, limits: Limits = DEFAULT_LIMITS) -> None:
        self.buf = memoryview(buf).cast("B") if not isinstance(buf, memoryview) else buf
        self.limits = limits
        size = len(self.buf)
        if size < FOOTER:
            raise Truncated(f"{size} bytes, shorter than a table footer ({FOOTER})", offset=0,
                            hint="the index file is truncated")
        if bytes(self.buf[size - 8:]) != MAGIC:
            raise MalformedHeader("no table magic in the last 8 bytes", offset=size - 8,
                                  hint="the index file is truncated or not a checkpoint index")
        foot = size - FOOTER
        self.metaindex, pos = self._handle(foot, foot + 40)
        self.index, _ = self._handle(pos, foot + 40)
        self.compressed_blocks = 0

    def _handle(self, pos: int, end: int) -> tuple[_Handle, int]:
        offset, pos = read_varint(self.buf, pos, end, 64)
        size, pos = read_varint(self.buf, pos, end, 64)
        return _Handle(offset, size), pos

    def block(self, h: _Handle) -> tuple[bytes | memoryview, int]:
        """A block's contents (decompressed if need be) and the file offset of its first byte
        when stored as is (-1 when decompressed: record offsets are then the block's)."""
        limit = len(self.buf) - FOOTER
        if h.offset > limit or h.size > limit - h.offset or h.offset + h.size + _TRAILER > limit:
            raise Truncated(f"block of {h.size} bytes at {h.offset} runs past the table's data "
                            f"({limit} bytes)", offset=h.offset,
                            hint="the index file is truncated or corrupt")
        contents = self.buf[h.offset:h.offset + h.size]
        kind = self.buf[h.offset + h.size]
        stored = int.from_bytes(self.buf[h.offset + h.size + 1:h.offset + h.size + _TRAILER],
                                "little")
        actual = crc32c(self.buf[h.offset:h.offset + h.size + 1])
        if unmask(stored) != actual:
            raise MalformedHeader(
                f"block CRC-32C mismatch (stored {unmask(stored):08x}, computed {actual:08x})",
                offset=h.offset, hint="the index file is corrupt; restore it from a good copy")
        if kind == _NONE:
            return contents, h.offset
        if kind == _SNAPPY:
            self.compressed_blocks += 1
            return snappy.decompress(contents, self.limits.member_bytes), -1
        raise MalformedHeader(f"unknown block compression type {kind}",
                              offset=h.offset + h.size, hint="the index file is corrupt")

    def _block_records(self, h: _Handle) -> Iterator[Record]:
        data, base = self.block(h)
        where = base if base >= 0 else h.offset
        n = len(data)
        if n < 4:
            raise MalformedHeader("block shorter than its restart count", offset=where)
        restarts = int.from_bytes(data[n - 4:], "little")
        if restarts > (n - 4) // 4:
            raise MalformedHeader(f"block claims {restarts} restart points, more than fit",
                                  offset=where + n - 4, hint="the index file is corrupt")
        end = n - 4 - 4 * restarts
        for i in range(restarts):
            at = end + 4 * i
            if int.from_bytes(data[at:at + 4], "little") >= max(end, 1):
                raise MalformedHeader("restart point past the block's records",
                                      offset=where + at, hint="the index file is corrupt")
        pos, key = 0, b""
        while pos < end:
            at = pos
            shared, pos = read_varint(data, pos, end, 32)
            non_shared, pos = read_varint(data, pos, end, 32)
            vlen, pos = read_varint(data, pos, end, 32)
            if shared > len(key):
                raise MalformedHeader(f"record shares {shared} bytes of a {len(key)}-byte key",
                                      offset=where + at, hint="the index file is corrupt")
            if non_shared > end - pos or vlen > end - pos - non_shared:
                raise MalformedHeader("record runs past its block", offset=where + at,
                                      hint="the index file is corrupt")
            key = key[:shared] + bytes(data[pos:pos + non_shared])
            pos += non_shared
            value = bytes(data[pos:pos + vlen])
            yield Record(key, value, (base + pos) if base >= 0 else h.offset)
            pos += vlen

    def records(self) -> Iterator[Record]:
        """Every record of every data block, in order; keys strictly increasing."""
        last: bytes | None = None
        count = 0
        for entry in self._block_records(self.index):
            handle, _ = self._handle_of(entry)
            for rec in self._block_records(handle):
                if last is not None and rec.key <= last:
                    raise MalformedHeader(f"key {rec.key[:60]!r} is not after {last[:60]!r}",
                                          offset=rec.offset,
                                          hint="the index's records are out of order: readers "
                                          "that search and readers that scan would disagree")
                count += 1
                if count > self.limits.tensors * 2 + 1:
                    raise LimitExceeded(f"more than {self.limits.tensors * 2} records",
                                        hint="raise Limits.tensors if the checkpoint is genuine")
                last = rec.key
                yield rec

    def _handle_of(self, rec: Record) -> tuple[_Handle, int]:
        v = rec.value
        try:
            offset, pos = read_varint(v, 0, len(v), 64)
            size, pos = read_varint(v, pos, len(v), 64)
        except (Truncated, MalformedHeader) as exc:
            raise MalformedHeader(f"index record is not a block handle ({exc.message})",
                                  offset=rec.offset, hint="the index file is corrupt") from None
        return _Handle(offset, size), pos
