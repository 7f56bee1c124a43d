"""Reading tensor bytes lazily: numpy views over memory-mapped files, and bounded byte chunks.

Files are mapped once per process and shared by every entry that points into them. A contiguous
tensor becomes a zero-copy ``np.ndarray`` over the map; a strided one a zero-copy strided view
(``strided_view``). Bounds are checked against the storage before any view is made.

Every dtype reads: where numpy has no type, the array holds the bytes bit for bit
(``DType.np_dtype``: complex32 as (real, imag) half records, torch's bit containers as unsigned
ints); packed types (quint4x2, quint2x4) come as their packed bytes, as torch's ``int_repr()``
gives them. ``values`` turns a block into numbers numpy can compute with.
"""

from __future__ import annotations

import mmap
import os
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

from .errors import MalformedHeader, Truncated
from .model import Storage, TensorEntry

if TYPE_CHECKING:  # numpy loads only where arrays are made
    import numpy as np

__all__ = ["storage_buffer", "to_numpy", "strided_view", "values", "check_layout", "iter_bytes",
           "contiguous_bytes", "CHUNK", "release"]

CHUNK = 8 << 20  # bytes per streamed chunk

_maps: dict[tuple[str, int, int], mmap.mmap] = {}
_lock = threading.Lock()


def _file_map(path: str) -> mmap.mmap | None:
    st = os.stat(path)
    key = (path, st.st_ino, st.st_mtime_ns)
    with _lock:
        m = _maps.get(key)
        if m is None and st.st_size:
            with open(path, "rb") as f:
                m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            _maps[key] = m
        return m


def release(paths: set[str]) -> None:
    """Close the maps of these files (Checkpoint.close); a map still exported by a live array
    stays open until that array goes (mmap refuses to close under it)."""
    with _lock:
        for key in [k for k in _maps if k[0] in paths]:
            m = _maps.pop(key)
            try:
                m.close()
            except BufferError:
                pass  # an array still views it: it is unmapped when that array is freed


def storage_buffer(storage: Storage) -> memoryview:
    """The storage's bytes as a zero-copy memoryview (file-backed or in memory)."""
    if storage.data is not None or storage.compute is not None:
        data = storage.data if storage.data is not None else storage.compute()  # type: ignore[misc]
        view = memoryview(data).cast("B")
        if len(view) < storage.nbytes:
            raise Truncated(f"buffer holds {len(view)} bytes, {storage.nbytes} expected")
        return view[: storage.nbytes]
    if storage.nbytes == 0:
        return memoryview(b"")
    if storage.parts:  # a tensor saved in slices: its parts joined (a copy, as big as it)
        joined = bytearray()
        for part in storage.parts:
            joined += storage_buffer(part)
        return memoryview(bytes(joined))
    assert storage.path is not None
    from . import remote

    remote.ensure(storage.path, storage.offset, storage.nbytes)
    m = _file_map(storage.path)
    end = storage.offset + storage.nbytes
    if m is None or end > len(m):
        raise Truncated(
            f"storage {storage.key!r} needs bytes {storage.offset}..{end} "
            f"but the file has {0 if m is None else len(m)}",
            path=storage.path,
            offset=storage.offset,
            hint="the file is truncated; download it again",
        )
    return memoryview(m)[storage.offset : end]


def _shape(shape: tuple[int, ...]) -> str:
    if len(shape) <= 8:
        return str(shape)
    return f"({', '.join(map(str, shape[:8]))}, ...: {len(shape)} dims)"


def _check_bounds(entry: TensorEntry) -> None:
    if any(d < 0 for d in entry.shape):
        raise MalformedHeader(f"negative size {_shape(entry.shape)}", path=entry.storage.path,
                              tensor=entry.name, offset=entry.storage.offset,
                              hint="the file is corrupt")
    if entry.numel == 0:
        return
    if entry.storage_offset < 0 or (entry.strides and min(entry.strides) < 0):
        raise MalformedHeader("negative offset or stride", path=entry.storage.path,
                              tensor=entry.name, offset=entry.storage.offset,
                              hint="the file is corrupt")
    if entry.byte_offset + entry.span > entry.storage.nbytes:
        raise MalformedHeader(
            f"tensor reaches byte {entry.byte_offset + entry.span} of a storage of "
            f"{entry.storage.nbytes} bytes",
            path=entry.storage.path,
            tensor=entry.name,
            offset=entry.storage.offset,
            hint="the file is corrupt",
        )


def to_numpy(entry: TensorEntry) -> np.ndarray:
    """The tensor as a read-only numpy array, zero-copy where the layout allows."""
    _check_bounds(entry)
    try:
        return _to_numpy(entry)
    except (ValueError, OverflowError) as exc:
        # A shape numpy cannot index: (0, 2**62, 2**62) has no bytes, a stride-0 view of 2**62
        # elements fits its storage, and neither fits an intp.
        raise MalformedHeader(f"numpy cannot represent shape {_shape(entry.shape)}: {exc}",
                              path=entry.storage.path, tensor=entry.name,
                              offset=entry.storage.offset,
                              hint="the file is corrupt or the tensor is too large") from exc


def strided_view(raw: np.ndarray, dt: np.dtype, shape: tuple[int, ...],
                 strides: tuple[int, ...]) -> np.ndarray:
    """A read-only view of ``dt`` elements over the bytes ``raw`` (uint8, from the first
    element), with element ``strides``. Not ``as_strided``: that goes through
    ``__array_interface__``, whose type string numpy cannot parse back for ml_dtypes types
    (``'<f1'`` for float8_e5m2), nor for a record; the ndarray constructor takes the dtype as it
    is, and checks the view stays inside ``raw``."""
    import numpy as np

    item = dt.itemsize
    need = (sum((d - 1) * s for d, s in zip(shape, strides)) + 1) * item if all(shape) else 0
    arr = np.ndarray(shape, dtype=dt, buffer=raw[:need] if need else raw[:0],
                     strides=tuple(s * item for s in strides))
    arr.flags.writeable = False
    return arr


def values(arr: np.ndarray) -> np.ndarray:
    """An array numpy can compute with: complex32 records (real, imag) as complex64, exactly
    (every half is a float32); anything else as it is."""
    import numpy as np

    if arr.dtype.names == ("real", "imag"):
        out = np.empty(arr.shape, np.complex64)
        out.real, out.imag = arr["real"], arr["imag"]
        return out
    return arr


def check_layout(entry: TensorEntry) -> None:
    """Refuse a strided view of a packed type (MalformedHeader): its elements have no address."""
    if entry.dtype.packed and not entry.is_contiguous:
        raise MalformedHeader(
            f"{entry.dtype.name} packs {8 // entry.dtype.bits} elements per byte: a strided "
            "view of it has no byte layout (torch cannot copy one either)",
            path=entry.storage.path, tensor=entry.name, offset=entry.storage.offset,
            hint="save the tensor before taking the view")


def _to_numpy(entry: TensorEntry) -> np.ndarray:
    import numpy as np

    dt = entry.dtype.np_dtype()
    check_layout(entry)
    shape = (entry.nbytes,) if entry.dtype.packed else entry.shape  # packed: the bytes
    if entry.numel == 0:
        return np.empty(shape, dtype=dt)
    buf = storage_buffer(entry.storage)
    flat = np.frombuffer(buf, dtype=np.uint8)
    start = entry.byte_offset
    if entry.is_contiguous:
        return flat[start : start + entry.nbytes].view(dt).reshape(shape)
    return strided_view(flat[start : start + entry.span], dt, entry.shape, entry.strides or ())


def contiguous_bytes(entry: TensorEntry) -> memoryview | None:
    """The tensor's bytes as one zero-copy run, or None when it is strided."""
    _check_bounds(entry)
    if not entry.is_contiguous:
        return None
    if entry.numel == 0:
        return memoryview(b"")
    buf = storage_buffer(entry.storage)
    return buf[entry.byte_offset : entry.byte_offset + entry.nbytes]


def iter_bytes(entry: TensorEntry, chunk: int = CHUNK) -> Iterator[memoryview]:
    """The tensor's bytes in C order, in chunks of at most ``chunk`` bytes, in bounded memory."""
    import numpy as np

    check_layout(entry)
    run = contiguous_bytes(entry)
    if run is not None:
        for i in range(0, len(run), chunk):
            yield run[i : i + chunk]
        return
    arr = to_numpy(entry)
    if arr.ndim == 0:
        yield np.ascontiguousarray(arr).reshape(-1).view(np.uint8).data
        return
    # Copy blocks of the first axis: slicing is a view, so each copy is at most one block.
    row_bytes = max(1, arr[:1].size * arr.dtype.itemsize)
    step = max(1, chunk // row_bytes)
    for i in range(0, arr.shape[0], step):
        # As bytes: numpy cannot export ml_dtypes types (bf16, fp8) through the buffer protocol.
        yield np.ascontiguousarray(arr[i : i + step]).reshape(-1).view(np.uint8).data
