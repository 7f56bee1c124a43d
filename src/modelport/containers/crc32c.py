"""CRC-32C (Castagnoli), as TensorFlow's checkpoints and LevelDB tables checksum their bytes.

The ``crc32c`` package (a small C extension with SSE4.2/ARMv8 paths) is used when installed
(``pip install 'modelport[tf]'``); without it a table-driven pure-Python loop gives the same
values, fast enough for index blocks (kilobytes) but slow for gigabytes of tensor data
(measured: about 10 MB/s), so only ``verify --full``-style checks of big shards need the package.

TensorFlow stores most CRCs *masked* (``crc32c::Mask``: rotate right by 15 bits and add a
constant) so that a CRC of bytes that themselves hold a CRC does not degenerate.
"""

from __future__ import annotations

from typing import Any

__all__ = ["crc32c", "mask", "unmask", "accelerated"]

_POLY = 0x82F63B78  # reversed Castagnoli polynomial
_MASK_DELTA = 0xA282EAD8
_SMALL = 16384  # bytes below which the pure loop is faster than importing the extension


def _table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ _POLY if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _table()

_fast: Any = None  # the C extension's function, found on first use


def _load() -> Any:
    """The ``crc32c`` package's function, or False. Imported on first use, not with this
    module: its import costs about 90 ms (it reads its own metadata), and every command that
    asks the format registry imports this module."""
    global _fast
    if _fast is None:
        fast: Any
        try:
            from crc32c import crc32c as fast
        except ImportError:  # pragma: no cover - depends on the environment
            fast = False
        _fast = fast
    return _fast


def accelerated() -> bool:
    return bool(_load())


def crc32c(data: bytes | bytearray | memoryview, crc: int = 0) -> int:
    """CRC-32C of ``data``, continuing from ``crc`` (the value of the bytes before it).
    Index blocks (kilobytes) take the pure loop, so reading an index never imports the
    package; tensor data takes the C extension when installed."""
    if len(data) <= _SMALL:
        return _pure(data, crc)
    fast = _load()
    if fast:
        return int(fast(data, crc))
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
