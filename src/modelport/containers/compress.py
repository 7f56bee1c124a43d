"""Compressed streams: which compressor wrote a run of bytes, and everything it holds.

The one decoder for compressed streams, used by the scanner (files, archive members, payloads
of ``zlib.decompress``-style gadgets) and by readers. Every kind is read the way the loaders
that accept it read it, *all* of it::

    kind        first bytes                          loaders (and how far they read)
    gzip        1f 8b                                gzip.open/GzipFile, joblib: every member;
                                                     NUL padding between members is skipped
    bz2         42 5a 68 ('BZh') '1'..'9'            bz2.open, bz2.decompress, joblib: every
                                                     stream, trailing garbage ignored
    xz          fd 37 7a 58 5a 00                    lzma.open, joblib: every stream
    lzma        LZMA-alone: props byte < 225,        lzma.open (FORMAT_AUTO: dict 2^n or
                dict size u32, size u64 (-1: open),  2^n+2^(n-1)), FORMAT_ALONE: any dict size;
                then the range coder's 00 byte       joblib writes 5d 00 .. (no magic at all)
    lz4         04 22 4d 18 (frame)                  lz4.frame.open, joblib: every frame
    zstd        28 b5 2f fd (frame)                  zstandard / compression.zstd: every frame
    zlib        CMF (deflate, window <= 32K) FLG,    zlib.decompress: the first stream;
                (CMF*256+FLG) % 31 == 0, no FDICT    joblib's BinaryZlibFile: every stream
    joblib-zf   'ZF' + 19 chars of hex length        joblib < 0.10 (numpy_pickle_compat
                [+ ' '], then one zlib stream        read_zfile): the zlib stream after it

Kinds without a magic number (LZMA-alone, zlib) are believed only when a trial decompression
of the first bytes produces output without an error, so random data is rarely taken for a
stream. Decompression is bounded: never more than ``cap`` bytes come out (the caller derives it
from ``Limits.scan_bytes`` and ``Limits.ratio``); past it the result says ``over``.
"""

from __future__ import annotations

import re
import sys
import zlib
from dataclasses import dataclass
from typing import Any

__all__ = ["KINDS", "MAGIC_KINDS", "kind_of", "decompress", "Decompressed", "errors", "MissingCodec",
           "decompressor"]

_CHUNK = 1 << 20
# Magic numbers, first match wins (ordered so that no magic is a prefix of an earlier one).
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x1f\x8b", "gzip"), (b"\xfd7zXZ\x00", "xz"), (b"\x04\x22\x4d\x18", "lz4"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
)
_BZ2 = re.compile(rb"BZh[1-9]")
# joblib numpy_pickle_compat: _ZFILE_PREFIX + hex(len).ljust(_MAX_LEN = len(hex(2**64)) = 19)
_ZF = re.compile(rb"ZF(0x[0-9a-fA-F]+L?) *")
_ZF_HEADER = 2 + 19
KINDS = ("gzip", "bz2", "xz", "lzma", "lz4", "zstd", "zlib", "joblib-zf")
# Kinds told by a magic number: bytes starting with one are nothing else a loader reads.
MAGIC_KINDS = frozenset({"gzip", "bz2", "xz", "lz4", "zstd", "joblib-zf"})


class MissingCodec(ImportError):
    """The stream's codec is an optional package that is not installed (lz4, zstandard)."""

    def __init__(self, kind: str, package: str) -> None:
        super().__init__(f"a {kind} stream needs the '{package}' package to be read")
        self.kind, self.package = kind, package


def _zlib_header(head: bytes) -> bool:
    # RFC 1950: CM 8 (deflate), CINFO <= 7, FCHECK makes CMF*256+FLG a multiple of 31, and no
    # preset dictionary (zlib.decompress refuses FDICT without one).
    return (len(head) >= 2 and head[0] & 0x0F == 8 and head[0] >> 4 <= 7
            and (head[0] << 8 | head[1]) % 31 == 0 and not head[1] & 0x20)


def _alone_header(head: bytes) -> bool:
    # liblzma alone_decoder.c: properties byte lc/lp/pb < 9*5*5, then the dictionary size and
    # the uncompressed size; the range coder's first byte (offset 13) must be 0.
    return len(head) >= 14 and head[0] < 225 and head[13] == 0


def kind_of(head: bytes | memoryview) -> str | None:
    """The compressor that wrote a stream starting with ``head`` (up to 64 KiB of it), or None."""
    head = bytes(head[:1 << 16])
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    if _BZ2.match(head):
        return "bz2"
    if head.startswith(b"ZF") and _ZF.match(head) and _zf_start(head) is not None:
        return "joblib-zf"
    # No magic: believed when the first bytes decompress (a trial bounded to 64 KiB in).
    if _zlib_header(head) and _trial(head, "zlib"):
        return "zlib"
    if _alone_header(head) and _trial(head, "lzma"):
        return "lzma"
    return None


def _trial(head: bytes, kind: str) -> bool:
    try:
        return bool(decompressor(kind).decompress(head, 4096))
    except MemoryError:
        return False
    except errors():
        return False


def _zf_start(head: bytes) -> int | None:
    """Where the zlib stream of a joblib 'ZF' file starts (after the optional space that
    joblib <= 0.8.4 wrote), or None when the header is not one."""
    m = _ZF.match(head[:_ZF_HEADER])
    if m is None or len(head) < _ZF_HEADER + 2:
        return None
    start = _ZF_HEADER + (head[_ZF_HEADER:_ZF_HEADER + 1] == b" ")
    return start if _zlib_header(head[start:start + 2]) else None


def decompressor(kind: str) -> Any:
    """A fresh incremental decompressor with the stdlib interface (``decompress(data,
    max_length)``, ``eof``, ``unused_data``, ``needs_input``), or a zlib ``decompressobj``
    (``unconsumed_tail`` instead of ``needs_input``). MissingCodec for an absent package."""
    if kind == "gzip":
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if kind in ("zlib", "joblib-zf"):
        return zlib.decompressobj()
    if kind == "bz2":
        import bz2  # bz2 and lzma load C libraries: imported when a stream of theirs is met

        return bz2.BZ2Decompressor()
    if kind in ("xz", "lzma"):
        import lzma

        # xz: FORMAT_AUTO, as lzma.open reads; lzma: any dict size, as FORMAT_ALONE takes
        return lzma.LZMADecompressor(lzma.FORMAT_ALONE if kind == "lzma" else lzma.FORMAT_AUTO)
    if kind == "lz4":
        try:
            import lz4.frame  # type: ignore[import-untyped]
        except ImportError:
            raise MissingCodec(kind, "lz4") from None
        return lz4.frame.LZ4FrameDecompressor()
    if kind == "zstd":
        zstd = _stdlib_zstd()
        if zstd is None:
            raise MissingCodec(kind, "zstandard")
        return zstd.ZstdDecompressor()
    raise ValueError(f"unknown compressed stream kind {kind!r}")


def _stdlib_zstd() -> Any:
    try:
        from compression import zstd  # type: ignore[import-not-found]  # Python >= 3.14

        return zstd
    except ImportError:
        pass
    try:
        from backports import zstd  # type: ignore[import-not-found,no-redef]

        return zstd
    except ImportError:
        return None


def errors() -> tuple[type[Exception], ...]:
    """What a decompressor raises on bytes that are not (or no longer) its stream. A function:
    lzma is imported only when an lzma stream is met, and until then no LZMAError can be
    raised, so it is named only once the module is loaded."""
    lzma = sys.modules.get("lzma")
    own = (lzma.LZMAError,) if lzma is not None else ()
    return (zlib.error, *own, OSError, EOFError, ValueError, RuntimeError)


@dataclass
class Decompressed:
    """Everything the streams of one compressed run hold, concatenated as a loader reads it."""

    kind: str
    data: bytes
    streams: int  # complete streams (gzip members, bz2/xz streams, lz4/zstd frames)
    over: bool = False  # stopped at ``cap`` bytes: the rest was not decompressed
    end: int = 0  # where the last stream read ended in the input
    trailing: int = 0  # input bytes after the last stream (loaders ignore or refuse them)
    error: str | None = None  # a stream broke here; ``data`` holds what came out before


def decompress(data: bytes | memoryview, kind: str, cap: int) -> Decompressed:
    """Every stream of ``data`` (one ``kind``), at most ``cap`` bytes out (then ``over``).

    Streams follow each other as CPython's readers follow them (``_compression.DecompressReader``
    and gzip's reader): after a stream ends, the next one starts on the first byte it left
    unused; gzip skips NUL padding first. Bytes that do not start another stream end the run
    (``trailing``); a stream that breaks or ends early sets ``error`` and keeps what it gave."""
    view = memoryview(data).cast("B") if not isinstance(data, bytes) else memoryview(data)
    n = len(view)
    pos = 0
    if kind == "joblib-zf":
        start = _zf_start(bytes(view[:_ZF_HEADER + 3]))
        if start is None:
            return Decompressed(kind, b"", 0, error="not a joblib 'ZF' header")
        pos = start
    if kind == "zstd" and _stdlib_zstd() is None:
        return _zstandard(view, cap)
    out = bytearray()
    streams = 0
    while pos < n:
        if kind == "gzip" and streams:
            while pos < n and view[pos] == 0:
                pos += 1
            if pos == n:
                break
        d = decompressor(kind)
        try:
            pos, ended = _pump(d, view, pos, out, cap)
        except errors() as exc:
            if streams:  # not another stream: CPython's readers stop here (gzip raises)
                return Decompressed(kind, bytes(out), streams, end=pos, trailing=n - pos)
            return Decompressed(kind, bytes(out), 0, end=pos, error=str(exc) or type(exc).__name__)
        if len(out) > cap:
            return Decompressed(kind, bytes(out[:cap]), streams, over=True, end=pos)
        if not ended:
            return Decompressed(kind, bytes(out), streams, end=n,
                                error="the stream ends before its end marker (truncated)")
        streams += 1
        if kind == "joblib-zf":
            break  # read_zfile reads one zlib stream
    return Decompressed(kind, bytes(out), streams, end=pos, trailing=n - pos)


def _pump(d: Any, view: memoryview, pos: int, out: bytearray, cap: int) -> tuple[int, bool]:
    """Feed one stream from ``pos`` in chunks (a mapped 2 GB file is never copied whole);
    returns (where the stream ended or the input did, whether it ended)."""
    n = len(view)
    zlib_api = not hasattr(d, "needs_input")
    pending: bytes | memoryview = b""
    while True:
        if d.eof:
            return pos - len(d.unused_data or b""), True
        if len(out) > cap:
            return pos, False
        if zlib_api:
            if pending:
                chunk: bytes | memoryview = pending
            elif pos < n:
                chunk = view[pos:pos + _CHUNK]
                pos += len(chunk)
            else:
                return pos, False
            out += d.decompress(chunk, cap + 1 - len(out))
            pending = d.unconsumed_tail
        else:
            if d.needs_input:
                if pos >= n:
                    return pos, False
                chunk = view[pos:pos + _CHUNK]
                pos += len(chunk)
            else:
                chunk = b""
            out += d.decompress(chunk, cap + 1 - len(out))


def _zstandard(view: memoryview, cap: int) -> Decompressed:
    """zstd through the ``zstandard`` package (no stdlib codec): every frame, bounded reads."""
    try:
        import zstandard  # type: ignore[import-not-found]
    except ImportError:
        raise MissingCodec("zstd", "zstandard") from None
    out = bytearray()
    reader = zstandard.ZstdDecompressor().stream_reader(view, read_across_frames=True)
    try:
        while len(out) <= cap:
            chunk = reader.read(min(_CHUNK, cap + 1 - len(out)))
            if not chunk:
                break
            out += chunk
    except zstandard.ZstdError as exc:
        return Decompressed("zstd", bytes(out), 0, error=str(exc))
    if len(out) > cap:
        return Decompressed("zstd", bytes(out[:cap]), 0, over=True)
    return Decompressed("zstd", bytes(out), 1, end=len(view))
