"""CRC-32C (Castagnoli), as TensorFlow's checkpoints and LevelDB tables checksum their bytes.

The ``crc32c`` package (a small C extension with SSE4.2/ARMv8 paths) is used when installed
(``pip install 'modelport[tf]'``); without it a table-driven pure-Python loop gives the same
values, fast enough for index blocks (kilobytes) but slow for gigabytes of tensor data
(measured: about 10 MB/s), so only ``verify --full``-style checks of big shards need the package.

TensorFlow stores most CRCs *masked* (``crc32c::Mask``: rotate right by 15 bits and add a
constant) so that a CRC of bytes that themselves hold a CRC does not degenerate.
"""

from __future__ import annotations

__all__ = ["crc32c", "mask", "unmask", "accelerated"]

_POLY = 0x82F63B78  # reversed Castagnoli polynomial
_MASK_DELTA = 0xA282EAD8


def _table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ _POLY if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _table()

try:  # the C extension when present; the pure loop below gives identical values
    from crc32c import crc32c as _fast  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - depends on the environment
    _fast = None


def accelerated() -> bool:
    return _fast is not None


def crc32c(data: bytes | bytearray | memoryview, crc: int = 0) -> int:
    """CRC-32C of ``data``, continuing from ``crc`` (the value of the bytes before it)."""
    if _fast is not None:
        return int(_fast(data, crc))
    return _pure(data, crc)


def _pure(data: bytes | bytearray | memoryview, crc: int = 0) -> int:
    table = _TABLE
    c = crc ^ 0xFFFFFFFF
    for b in bytes(data):
        c = table[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def mask(crc: int) -> int:
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def unmask(masked: int) -> int:
    rot = (masked - _MASK_DELTA) & 0xFFFFFFFF
    return ((rot >> 17) | (rot << 15)) & 0xFFFFFFFF
