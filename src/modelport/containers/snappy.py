"""Snappy raw-format decompression in pure Python (no C library), within a size limit.

Format (google/snappy format_description.txt)::

    preamble   varint: the uncompressed length (at most 2**32 - 1)
    elements   a tag byte; its low 2 bits say what follows
      00 literal      length-1 in the upper 6 bits (0..59), or 60..63: that many minus 59
                      little-endian bytes hold length-1; then the literal bytes
      01 copy, 1-byte offset   length 4 + bits 2..4, offset bits 5..7 << 8 | next byte
      10 copy, 2-byte offset   length 1 + upper 6 bits, offset a little-endian uint16
      11 copy, 4-byte offset   length 1 + upper 6 bits, offset a little-endian uint32
    A copy's offset counts back from the end of the output (1..len(output)); it may be
    shorter than the length, repeating the bytes it just wrote (run-length encoding).

LevelDB/TensorFlow tables compress blocks with it (type byte 1 in a block trailer). TensorFlow
writes its checkpoint indexes uncompressed, but its table reader accepts compressed blocks, so
modelport reads them too.
"""

from __future__ import annotations

from ..errors import LimitExceeded, MalformedHeader, Truncated

__all__ = ["decompress", "uncompressed_length"]


def uncompressed_length(data: bytes | memoryview) -> tuple[int, int]:
    """The preamble's length and where the elements start."""
    result = shift = pos = 0
    while True:
        if pos >= len(data):
            raise Truncated("snappy preamble runs past the end of the block", offset=pos)
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            break
        shift += 7
        if shift > 28:
            raise MalformedHeader("snappy preamble longer than 5 bytes", offset=0)
    if result > 0xFFFFFFFF:
        raise MalformedHeader("snappy length above 2**32-1", offset=0)
    return result, pos


def decompress(data: bytes | memoryview, limit: int) -> bytes:
    """The decompressed bytes; errors name the offset in ``data``. ``limit`` bounds the
    declared length before anything is allocated."""
    data = bytes(data)
    n, pos = uncompressed_length(data)
    if n > limit:
        raise LimitExceeded(f"snappy block declares {n} bytes, above the limit of {limit}",
                            offset=0, hint="the file is corrupt or hostile")
    out = bytearray()
    end = len(data)
    while pos < end:
        tag_at = pos
        tag = data[pos]
        pos += 1
        kind = tag & 3
        if kind == 0:
            length = tag >> 2
            if length >= 60:
                extra = length - 59
                if pos + extra > end:
                    raise Truncated("snappy literal length runs past the end", offset=tag_at)
                length = int.from_bytes(data[pos:pos + extra], "little")
                pos += extra
            length += 1
            if pos + length > end:
                raise Truncated(f"snappy literal of {length} bytes runs past the end",
                                offset=tag_at)
            if len(out) + length > n:
                raise MalformedHeader("snappy output longer than its preamble says",
                                      offset=tag_at)
            out += data[pos:pos + length]
            pos += length
            continue
        if kind == 1:
            if pos + 1 > end:
                raise Truncated("snappy copy runs past the end", offset=tag_at)
            length = 4 + ((tag >> 2) & 7)
            offset = ((tag >> 5) << 8) | data[pos]
            pos += 1
        else:
            size = 2 if kind == 2 else 4
            if pos + size > end:
                raise Truncated("snappy copy runs past the end", offset=tag_at)
            length = (tag >> 2) + 1
            offset = int.from_bytes(data[pos:pos + size], "little")
            pos += size
        if offset == 0 or offset > len(out):
            raise MalformedHeader(f"snappy copy reaches {offset} bytes back, before the start",
                                  offset=tag_at)
        if len(out) + length > n:
            raise MalformedHeader("snappy output longer than its preamble says", offset=tag_at)
        start = len(out) - offset
        if offset >= length:
            out += out[start:start + length]
        else:  # overlapping: the pattern of `offset` bytes repeats
            pattern = out[start:]
            reps, rest = divmod(length, offset)
            out += pattern * reps + pattern[:rest]
    if len(out) != n:
        raise Truncated(f"snappy block decompresses to {len(out)} bytes, its preamble says {n}",
                        offset=end)
    return bytes(out)
