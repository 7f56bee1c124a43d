"""Writing TensorFlow bytes in tests: protobuf fields, SSTable files and checkpoint bundles, for
inputs TensorFlow on a little-endian machine never writes (big-endian bundles, snappy blocks)
and for hostile ones. Built from the format descriptions, never by TensorFlow."""

from __future__ import annotations

from modelport.containers.crc32c import crc32c, mask


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n >> 7 else 0))
        n >>= 7
        if not n:
            return bytes(out)


def field_varint(number: int, value: int) -> bytes:
    return varint(number << 3) + varint(value & ((1 << 64) - 1))


def field_len(number: int, payload: bytes | str) -> bytes:
    data = payload.encode() if isinstance(payload, str) else payload
    return varint(number << 3 | 2) + varint(len(data)) + data


def field_fixed32(number: int, value: int) -> bytes:
    return varint(number << 3 | 5) + value.to_bytes(4, "little")


def block(records: list[tuple[bytes, bytes]]) -> bytes:
    """A table block: every record a restart point (shared = 0), then the restart array."""
    out, restarts = bytearray(), []
    for key, value in records:
        restarts.append(len(out))
        out += varint(0) + varint(len(key)) + varint(len(value)) + key + value
    for r in restarts or [0]:
        out += r.to_bytes(4, "little")
    return bytes(out + len(restarts or [0]).to_bytes(4, "little"))


def table(records: list[tuple[bytes, bytes]], *, snappy: bool = False) -> bytes:
    """An SSTable with all ``records`` in one data block (snappy-compressed if asked)."""
    out = bytearray()

    def put(contents: bytes, kind: int) -> bytes:
        at = len(out)
        out.extend(contents + bytes([kind]) + mask(crc32c(contents + bytes([kind])))
                   .to_bytes(4, "little"))
        return varint(at) + varint(len(contents))

    data = block(records)
    if snappy:
        import cramjam

        handle = put(bytes(cramjam.snappy.compress_raw(data)), 1)
    else:
        handle = put(data, 0)
    last = records[-1][0] if records else b""
    meta = put(block([]), 0)
    index = put(block([(last, handle)]), 0)
    footer = (meta + index).ljust(40, b"\0") + (0xDB4775248B80FB57).to_bytes(8, "little")
    return bytes(out) + footer


def shape(dims: tuple[int, ...]) -> bytes:
    return b"".join(field_len(2, field_varint(1, d)) for d in dims)


def entry(dtype: int, dims: tuple[int, ...], offset: int, size: int, crc: int | None = None,
          shard: int = 0, slices: list[list[tuple[int, int]]] | None = None) -> bytes:
    """A BundleEntryProto."""
    out = field_varint(1, dtype) + field_len(2, shape(dims))
    if shard:
        out += field_varint(3, shard)
    if offset:
        out += field_varint(4, offset)
    if size:
        out += field_varint(5, size)
    if crc is not None:
        out += field_fixed32(6, crc)
    for sl in slices or []:
        ext = b"".join(field_len(1, field_varint(1, s) + (field_varint(2, n) if n >= 0 else b""))
                       for s, n in sl)
        out += field_len(7, ext)
    return out


def header(num_shards: int = 1, big_endian: bool = False) -> bytes:
    out = field_varint(1, num_shards)
    if big_endian:
        out += field_varint(2, 1)
    return out + field_len(3, field_varint(1, 1))
