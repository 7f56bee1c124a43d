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


def _table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ _POLY if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _table()

_UNSET: Any = object()
_fast: Any = _UNSET


def _accelerator() -> Any:
    """The C extension when present (the pure loop below gives identical values), imported on
    first use: it imports importlib.metadata (~40 ms), which sniffing and scanning never need."""
    global _fast
    if _fast is _UNSET:
        try:
            from crc32c import crc32c as fast  # type: ignore[import-not-found]
        except ImportError:  # pragma: no cover - depends on the environment
            fast = None
        _fast = fast
    return _fast


def accelerated() -> bool:
    return _accelerator() is not None


def crc32c(data: bytes | bytearray | memoryview, crc: int = 0) -> int:
    """CRC-32C of ``data``, continuing from ``crc`` (the value of the bytes before it)."""
    fast = _accelerator()
    if fast is not None:
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
