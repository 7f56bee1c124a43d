"""modelport's own zip reader: every central and local header, with anomalies reported.

Layout (APPNOTE.TXT 6.3.10)::

    [prefix?] { local header 30B + name + extra | data } ...  central directory  [zip64 EOCD]
    [zip64 locator 20B] EOCD 22B + comment

torch.save writes members *stored* (no compression) and pads each local header's extra field so
storage data is 64-byte aligned (caffe2/serialize/inline_container.cc): a storage's bytes are
read in place at ``data_offset``. Python's zipfile trusts the central directory and hides what a
scanner must see (local/central name mismatches, duplicates, data before the first header), so
this reader parses both and records every disagreement in ``anomalies``.
"""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any

from .. import remote
from ..errors import LimitExceeded, MalformedHeader, Truncated
from ..limits import DEFAULT_LIMITS, Limits

__all__ = ["ZipMember", "ZipAnomaly", "ZipArchive", "is_zip", "decompressor"]

_EOCD = struct.Struct("<IHHHHIIH")
_EOCD64_LOC = struct.Struct("<IIQI")
_EOCD64 = struct.Struct("<IQHHIIQQQQ")
_CENTRAL = struct.Struct("<IHHHHHHIIIHHHHHII")
_LOCAL = struct.Struct("<IHHHHHIIIHH")
_SIG_EOCD, _SIG_LOC64, _SIG_EOCD64 = 0x06054B50, 0x07064B50, 0x06064B50
_SIG_CENTRAL, _SIG_LOCAL = 0x02014B50, 0x04034B50
STORED, DEFLATED, BZIP2, LZMA = 0, 8, 12, 14


def decompressor(method: int, first: bytes | memoryview) -> tuple[Any, int]:
    """A fresh incremental decompressor for a member stored with ``method`` (deflate, bzip2 or
    LZMA), built as zipfile builds it, and where the stream starts in the member's data
    (``first``: at least its first 9 bytes). An LZMA member starts with the LZMA SDK version
    (2 bytes), the properties' length (2 bytes, little-endian) and the LZMA1 properties (5
    bytes: lc/lp/pb in one byte, then the dictionary size), then a raw LZMA1 stream (APPNOTE
    5.8.8). ValueError for a method zipfile does not read or properties it would refuse."""
    if method == DEFLATED:
        return zlib.decompressobj(-15), 0
    if method == BZIP2:
        import bz2

        return bz2.BZ2Decompressor(), 0
    if method == LZMA:
        import lzma

        psize = int.from_bytes(first[2:4], "little")
        props = bytes(first[4:4 + psize])
        if len(first) < 4 or psize != 5 or len(props) != 5 or props[0] >= 9 * 5 * 5:
            raise ValueError("the LZMA member's header or properties are not what zipfile reads")
        b = props[0]
        lzma1 = {"id": lzma.FILTER_LZMA1, "lc": b % 9, "lp": b // 9 % 5, "pb": b // 45,
                 "dict_size": int.from_bytes(props[1:5], "little")}
        return lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=[lzma1]), 4 + psize
    raise ValueError(f"compression method {method} is not supported")


def is_zip(head: bytes) -> bool:
    # A local header, or an empty archive: its end record (zip64 writers start with that one).
    return head[:4] in (b"PK\x03\x04", b"PK\x05\x06", b"PK\x06\x06")


@dataclass(frozen=True)
class ZipAnomaly:
    kind: str  # prefix, name-mismatch, duplicate, encrypted, method, bomb, crc, overlap, ...
    member: str | None
    offset: int
    detail: str


@dataclass
class ZipMember:
    name: str
    method: int
    flags: int
    crc: int
    csize: int
    usize: int
    header_offset: int
    data_offset: int = 0
    local_name: str = ""
    local_flags: int = 0  # the local header's general purpose flags and CRC (readers that
    local_crc: int = 0  # trust the local header, as torch's does, see these)

    @property
    def stored(self) -> bool:
        return self.method == STORED


@dataclass
class ZipArchive:
    path: str
    size: int
    members: list[ZipMember]
    anomalies: list[ZipAnomaly] = field(default_factory=list)
    prefix: int = 0  # bytes before the first local header (a polyglot's other format)

    @classmethod
    def open(cls, path: str, limits: Limits = DEFAULT_LIMITS) -> ZipArchive:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            # Detection and the reader both parse the directory: keep the last few parsed.
            key = (path, st.st_ino, st.st_size, st.st_mtime_ns, limits)
            archive = _RECENT.get(key)
            if archive is None:
                archive = _parse(path, f.fileno(), st.st_size, limits)
                _RECENT[key] = archive
                while len(_RECENT) > 8:
                    del _RECENT[next(iter(_RECENT))]
            return archive

    def by_name(self) -> dict[str, ZipMember]:
        """Last member of each name wins, as zipfile does; duplicates are in anomalies."""
        return {m.name: m for m in self.members}

    def read(self, member: ZipMember, limits: Limits = DEFAULT_LIMITS) -> bytes:
        """A member's bytes, decompressed within the limits (for pickles and small members)."""
        remote.ensure(self.path, member.data_offset, member.csize)
        with open(self.path, "rb") as f:
            raw = os.pread(f.fileno(), member.csize, member.data_offset)
        if len(raw) < member.csize:
            raise Truncated(
                f"member data ends at byte {member.data_offset + len(raw)}, "
                f"{member.csize} bytes expected",
                path=self.path, member=member.name, offset=member.data_offset,
                hint="the file is truncated; download it again",
            )
        if member.method == STORED:
            return raw
        if member.method not in (DEFLATED, BZIP2, LZMA):
            raise MalformedHeader(
                f"compression method {member.method} is not supported",
                path=self.path, member=member.name, offset=member.header_offset,
            )
        from . import compress  # its error classes (lzma's only once lzma is loaded)

        cap = min(limits.member_bytes, max(member.csize, 1) * limits.ratio)
        try:
            d, start = decompressor(member.method, raw[:16])
            out = d.decompress(raw[start:], cap + 1)
        except compress.errors() as exc:
            raise MalformedHeader(
                f"compressed data is corrupt: {exc}", path=self.path, member=member.name,
                offset=member.data_offset, hint="the file is corrupt; download it again",
            ) from exc
        if len(out) > cap:
            raise LimitExceeded(
                f"member decompresses to more than {cap} bytes (a decompression bomb?)",
                path=self.path, member=member.name, offset=member.data_offset,
            )
        return out


_RECENT: dict[tuple, ZipArchive] = {}


def _err(path: str, msg: str, offset: int, cls: type = MalformedHeader, **kw: object) -> Exception:
    return cls(msg, path=path, offset=offset, format="zip", **kw)


def _find_eocd(path: str, fd: int, size: int) -> tuple[int, bytes]:
    tail_len = min(size, _EOCD.size + 0xFFFF)
    remote.ensure(path, size - tail_len, tail_len)
    tail = os.pread(fd, tail_len, size - tail_len)
    pos = tail.rfind(b"PK\x05\x06")
    while pos >= 0 and len(tail) - pos < _EOCD.size:
        pos = tail.rfind(b"PK\x05\x06", 0, pos)
    if pos < 0:
        raise Truncated(
            "no end-of-central-directory record: the zip archive is truncated or not a zip",
            path=path, offset=size, hint="download the file again",
        )
    return size - tail_len + pos, tail[pos : pos + _EOCD.size]


def _zip64_extra(extra: bytes, usize: int, csize: int, offset: int) -> tuple[int, int, int]:
    i = 0
    while i + 4 <= len(extra):
        tag, length = struct.unpack_from("<HH", extra, i)
        body = extra[i + 4 : i + 4 + length]
        if tag == 0x0001:
            j = 0
            vals = []
            for v in (usize, csize, offset):
                if v == 0xFFFFFFFF and j + 8 <= len(body):
                    vals.append(struct.unpack_from("<Q", body, j)[0])
                    j += 8
                else:
                    vals.append(v)
            return vals[0], vals[1], vals[2]
        i += 4 + length
    return usize, csize, offset


def _parse(path: str, fd: int, size: int, limits: Limits) -> ZipArchive:
    eocd_pos, eocd = _find_eocd(path, fd, size)
    _, disk, cd_disk, n_disk, n_total, cd_size, cd_offset, _ = _EOCD.unpack(eocd)
    anomalies: list[ZipAnomaly] = []
    cd_end = eocd_pos
    # A zip64 end record (torch's writer always adds one) sits just before the locator.
    loc_pos = eocd_pos - _EOCD64_LOC.size
    if loc_pos >= 0:
        remote.ensure(path, loc_pos, _EOCD64_LOC.size)
        sig, _, z64_off, _ = _EOCD64_LOC.unpack(os.pread(fd, _EOCD64_LOC.size, loc_pos))
        # Offsets are 64-bit unsigned; pread takes a signed off_t: look only inside the file.
        if sig == _SIG_LOC64 and z64_off + _EOCD64.size <= size:
            remote.ensure(path, z64_off, _EOCD64.size)
            rec = os.pread(fd, _EOCD64.size, z64_off)
            if len(rec) == _EOCD64.size and _EOCD64.unpack(rec)[0] == _SIG_EOCD64:
                fields = _EOCD64.unpack(rec)
                n_total, cd_size, cd_offset = fields[7], fields[8], fields[9]
                cd_end = z64_off
    if n_total > limits.members:
        raise _err(path, f"{n_total} members exceed the limit of {limits.members}", eocd_pos,
                   LimitExceeded)
    # Data before the archive (a prepended file) shifts every offset: zipfile's "concat" logic.
    prefix = max(0, cd_end - cd_size - cd_offset)
    cd_start = cd_offset + prefix
    if cd_start + cd_size > size:
        raise _err(path, "central directory runs past the end of the file", cd_start, Truncated,
                   hint="the file is truncated; download it again")
    remote.ensure(path, cd_start, cd_size)
    cd = os.pread(fd, cd_size, cd_start)
    entries: list[ZipMember] = []
    pos = 0
    for _ in range(n_total):
        if pos + _CENTRAL.size > len(cd):
            raise _err(path, "central directory ends inside an entry", cd_start + pos, Truncated)
        f = _CENTRAL.unpack_from(cd, pos)
        if f[0] != _SIG_CENTRAL:
            raise _err(path, "bad central directory signature", cd_start + pos,
                       hint="the zip is corrupt")
        flags, method, crc, csize, usize = f[3], f[4], f[7], f[8], f[9]
        nlen, xlen, clen, hoff = f[10], f[11], f[12], f[16]
        raw_name = cd[pos + _CENTRAL.size : pos + _CENTRAL.size + nlen]
        extra = cd[pos + _CENTRAL.size + nlen : pos + _CENTRAL.size + nlen + xlen]
        name = raw_name.decode("utf-8" if flags & 0x800 else "cp437", "replace")
        usize, csize, hoff = _zip64_extra(extra, usize, csize, hoff)
        entries.append(ZipMember(name, method, flags, crc, csize, usize, hoff + prefix))
        pos += _CENTRAL.size + nlen + xlen + clen
    # Every local header, in one request when the file is remote (a torch checkpoint has one
    # before each storage, spread over the whole file); 64 bytes cover torch's alignment extra.
    remote.ensure_ranges(path, [(m.header_offset, m.header_offset + _LOCAL.size +
                                 len(m.name.encode()) + 64) for m in entries
                                if m.header_offset < size])
    members: list[ZipMember] = []
    seen: dict[str, int] = {}
    for m in entries:
        name, flags, method, csize, usize = m.name, m.flags, m.method, m.csize, m.usize
        _local(path, fd, size, m, anomalies)
        if name in seen:
            anomalies.append(ZipAnomaly("duplicate", name, m.header_offset,
                                        f"a second member named {name!r}"))
        seen[name] = len(members)
        if flags & 0x1:
            anomalies.append(ZipAnomaly("encrypted", name, m.header_offset, "encrypted member"))
        if method not in (STORED, DEFLATED, BZIP2, LZMA):
            anomalies.append(ZipAnomaly("method", name, m.header_offset,
                                        f"compression method {method}"))
        if csize and usize / csize > limits.ratio:
            anomalies.append(ZipAnomaly("bomb", name, m.header_offset,
                                        f"expands {usize / csize:.0f}x ({usize} bytes)"))
        members.append(m)
    if prefix:
        anomalies.append(ZipAnomaly("prefix", None, 0,
                                    f"{prefix} bytes before the first zip header (a polyglot?)"))
    elif members and min(m.header_offset for m in members) > 0:
        first = min(m.header_offset for m in members)
        anomalies.append(ZipAnomaly("prefix", None, 0, f"{first} bytes before the first header"))
    return ZipArchive(path, size, members, anomalies, prefix)


def _local(path: str, fd: int, size: int, m: ZipMember, anomalies: list[ZipAnomaly]) -> None:
    # A zip64 offset can be past 2**63, where pread's off_t overflows: compare with size first.
    # One read for the header and the name it should hold (a different name is read again).
    want = _LOCAL.size + len(m.name.encode())
    remote.ensure(path, m.header_offset, want + 64)
    head = os.pread(fd, want, m.header_offset) if m.header_offset < size else b""
    if len(head) < _LOCAL.size:
        raise _err(path, "local header runs past the end of the file", m.header_offset,
                   Truncated, member=m.name, hint="the file is truncated; download it again")
    f = _LOCAL.unpack_from(head)
    if f[0] != _SIG_LOCAL:
        raise _err(path, "bad local header signature", m.header_offset, member=m.name,
                   hint="the zip is corrupt")
    nlen, xlen = f[9], f[10]
    raw = head[_LOCAL.size:_LOCAL.size + nlen]
    if len(raw) < nlen:
        remote.ensure(path, m.header_offset, _LOCAL.size + nlen)
        raw = os.pread(fd, nlen, m.header_offset + _LOCAL.size)
    local_name = raw.decode("utf-8" if f[2] & 0x800 else "cp437", "replace")  # f[2]: flags
    m.local_name = local_name
    m.local_flags, m.local_crc = f[2], f[6]
    m.data_offset = m.header_offset + _LOCAL.size + nlen + xlen
    if local_name != m.name:
        anomalies.append(ZipAnomaly("name-mismatch", m.name, m.header_offset,
                                    f"local header names it {local_name!r}"))
    if f[3] != m.method:
        anomalies.append(ZipAnomaly("method-mismatch", m.name, m.header_offset,
                                    f"local method {f[3]}, central {m.method}"))
    if m.data_offset + m.csize > size:
        raise _err(path, f"member data runs past the end of the file ({m.csize} bytes at "
                   f"{m.data_offset})", m.data_offset, Truncated, member=m.name,
                   hint="the file is truncated; download it again")
