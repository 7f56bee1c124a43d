"""The three writers: safetensors, torch zip and npz, each streaming one planned shard into a Sink.

safetensors (huggingface/safetensors ``serialize``)::

    u64 N | {"__metadata__": {...}, "name": {"dtype", "shape", "data_offsets": [b, e]}, ...}
          | padded with spaces to a multiple of 8 | tensors back to back, C order

Tensors are ordered by item size, largest first, then as planned (the reference sorts by dtype
alignment too), so every tensor of a file starts aligned to its own item size.

torch (torch/serialization.py ``_save``, in this member order)::

    <stem>/data.pkl  .format_version ("1")  .storage_alignment ("64")  byteorder ("little")
    <stem>/data/0 ... data/N-1   one member per storage, numbered in order of first use
    <stem>/version ("3\\n")  .data/serialization_id (40 digits)

Storages are written whole with every view kept (tied weights stay tied, as torch.save keeps
them); a cast converts the storage element by element, so offsets and strides still hold.

npz (numpy ``savez``): one stored member ``NAME.npy`` per array, each a ``.npy`` stream whose
header (version 1.0, or 2.0 when it does not fit in 64 KiB) is padded so the data is 64-byte
aligned; arrays are written C-contiguous.
"""

from __future__ import annotations

import json
import secrets
import struct
from typing import Any

from .. import tensors
from ..containers.zip import ZipArchive, is_zip
from ..dtypes import DType
from ..model import Storage, TensorEntry
from .cast import out_dtype
from .pickler import Emitter, Global, PersistentTensor
from .plan import Shard, storage_id, torch_storages, view_id
from .stream import Piece, Run, Sink, Sources, pieces
from .zipwrite import ZipWriter

__all__ = ["write_safetensors", "write_torch", "write_npz", "write_raw", "raw_layout",
           "npy_header"]


# -- safetensors ---------------------------------------------------------------------------------


def write_safetensors(shard: Shard, sink: Sink, sources: Sources, cast: DType | None) -> None:
    items = sorted(shard.items, key=lambda it: -it.dtype.itemsize)  # stable: plan order kept
    header: dict[str, Any] = {}
    if shard.metadata:
        header["__metadata__"] = shard.metadata
    pos = 0
    for it in items:
        header[it.name] = {"dtype": it.dtype.name, "shape": list(it.shape),
                           "data_offsets": [pos, pos + it.nbytes]}
        pos += it.nbytes
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)
    sink.write(struct.pack("<Q", len(text)) + text)
    for it in items:
        for piece in pieces(it.entry, sources, it.dtype):
            sink.put(piece)


# -- torch ---------------------------------------------------------------------------------------

# Dtypes torch.save writes with a typed storage class (torch.storage._dtype_to_storage_type_map);
# every other type is an UntypedStorage plus the dtype, rebuilt by _rebuild_tensor_v3.
_TYPED = frozenset(["F64", "F32", "F16", "BF16", "I64", "I32", "I16", "I8", "U8", "BOOL", "C64", "C128"])


class _TorchStorages:
    """Assigns storage keys in order of first use while the tree is pickled."""

    def __init__(self, shard: Shard, cast: DType | None, sources: Sources) -> None:
        self.shared = torch_storages(shard.items)
        self.cast = cast
        self.sources = sources
        self.keys: dict[tuple, str] = {}
        self.members: list[tuple[str, int, Any]] = []  # (key, nbytes, pieces factory)
        self.sizes: dict[str, int] = {}
        self._crcs: dict[str, dict[int, tuple[int, int]]] = {}

    def persist(self, entry: TensorEntry) -> PersistentTensor:
        sid = storage_id(entry.storage)
        if sid in self.shared:
            st, src, dst = self.shared[sid]
            key = self._key(sid, lambda: self._whole(st, src, dst))
            offset, stride = entry.storage_offset, entry.strides or entry.contiguous_strides
        else:  # a view of a storage seen with two dtypes: a storage of its own
            src = entry.dtype
            dst = out_dtype(src, self.cast)
            key = self._key(("own",) + view_id(entry), lambda: (
                entry.numel * dst.itemsize, lambda: pieces(entry, self.sources, dst)))
            offset, stride = 0, entry.contiguous_strides
        nbytes = self.sizes[key]
        typed = dst.name in _TYPED
        return PersistentTensor(
            key=key,
            storage_class=Global("torch", str(dst.torch_storage)) if typed
            else Global("torch.storage", "UntypedStorage"),
            numel=nbytes // dst.itemsize if typed else nbytes,
            dtype=None if typed else Global("torch", dst.torch),  # type: ignore[arg-type]
            offset=offset, size=entry.shape, stride=tuple(stride),
            requires_grad=entry.requires_grad)

    def _key(self, ident: tuple, make: Any) -> str:
        key = self.keys.get(ident)
        if key is None:
            key = self.keys[ident] = str(len(self.keys))
            nbytes, factory = make()
            self.members.append((key, nbytes, factory))
            self.sizes[key] = nbytes
        return key

    def _whole(self, st: Storage, src: DType, dst: DType) -> tuple[int, Any]:
        n = st.nbytes // src.itemsize
        if src.name == dst.name:
            if st.in_memory:
                return st.nbytes, lambda: [tensors.storage_buffer(st)]
            if st.parts:  # a tensor saved in slices: one Run per part, still kernel copies
                whole = TensorEntry(st.key, src, (n,), st)
                return st.nbytes, lambda: pieces(whole, self.sources, dst)
            assert st.path is not None
            crc = self._known_crc(st)
            return st.nbytes, lambda: [Run(st.path, st.offset, st.nbytes, crc)]
        flat = TensorEntry(st.key, src, (n,), st)
        return n * dst.itemsize, lambda: pieces(flat, self.sources, dst)

    def _known_crc(self, st: Storage) -> int | None:
        """The CRC of a storage that is a whole stored zip member (a torch.save source)."""
        assert st.path is not None
        table = self._crcs.get(st.path)
        if table is None:
            table = {}
            if is_zip(bytes(self.sources.pread(st.path, 0, 4))):
                archive = ZipArchive.open(st.path)
                table = {m.data_offset: (m.usize, m.crc) for m in archive.members if m.stored}
            self._crcs[st.path] = table
        hit = table.get(st.offset)
        return hit[1] if hit is not None and hit[0] == st.nbytes else None


def write_torch(shard: Shard, sink: Sink, sources: Sources, cast: DType | None,
                archive: str = "archive") -> None:
    storages = _TorchStorages(shard, cast, sources)
    data = Emitter(storages.persist).dumps(shard.tree)
    zw = ZipWriter(sink)
    zw.add(f"{archive}/data.pkl", len(data), data)
    zw.add(f"{archive}/.format_version", 1, b"1")
    zw.add(f"{archive}/.storage_alignment", 2, b"64")
    zw.add(f"{archive}/byteorder", 6, b"little")
    for key, nbytes, factory in storages.members:
        zw.add(f"{archive}/data/{key}", nbytes, factory())
    zw.add(f"{archive}/version", 2, b"3\n")
    zw.add(f"{archive}/.data/serialization_id", 40,
           "".join(secrets.choice("0123456789") for _ in range(40)).encode())
    zw.close()


# -- npz -----------------------------------------------------------------------------------------

_ARRAY_ALIGN = 64  # numpy.lib.format.ARRAY_ALIGN
_GROWTH_AXIS_MAX_DIGITS = 21  # numpy.lib.format: room to grow the first axis in place


def npy_header(dtype: DType, shape: tuple[int, ...]) -> bytes:
    """The ``.npy`` header ``np.save`` writes for a C-order array (numpy/lib/format.py)."""
    text = f"{{'descr': {dtype.numpy!r}, 'fortran_order': False, 'shape': {tuple(shape)!r}, }}"
    if shape:
        text += " " * (_GROWTH_AXIS_MAX_DIGITS - len(repr(shape[0])))
    raw = text.encode("latin1")
    for version, fmt in (((1, 0), "<H"), ((2, 0), "<I")):
        hlen = len(raw) + 1
        pad = _ARRAY_ALIGN - ((8 + struct.calcsize(fmt) + hlen) % _ARRAY_ALIGN)
        if hlen + pad < 1 << (8 * struct.calcsize(fmt)):
            return (b"\x93NUMPY" + bytes(version) + struct.pack(fmt, hlen + pad) + raw
                    + b" " * pad + b"\n")
    raise ValueError("npy header too large")


def write_npz(shard: Shard, sink: Sink, sources: Sources, cast: DType | None) -> None:
    zw = ZipWriter(sink)
    for it in shard.items:
        head = npy_header(it.dtype, it.shape)
        body: list[Piece] = [memoryview(head)]
        zw.add(f"{it.name}.npy", len(head) + it.nbytes,
               _chain(body, pieces(it.entry, sources, it.dtype)))
    zw.close()


def _chain(first: list[Piece], rest: Any) -> Any:
    yield from first
    yield from rest


# -- raw -----------------------------------------------------------------------------------------


def write_raw(shard: Shard, sink: Sink, sources: Sources, cast: DType | None) -> None:
    """Tensors end to end in plan order, no header: ``numpy().tobytes()`` of each in turn."""
    for it in shard.items:
        for piece in pieces(it.entry, sources, it.dtype):
            sink.put(piece)


def raw_layout(plan: Any) -> tuple[str, bytes]:
    """The ``.layout.json`` written beside a raw buffer, so it can be read back."""
    from ..formats.raw import LAYOUT_SUFFIX, layout_json

    items = [(it.name, it.dtype, it.shape) for s in plan.shards for it in s.items]
    return LAYOUT_SUFFIX, layout_json(items)
