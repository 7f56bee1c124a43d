"""Moving tensor bytes from source files into an output file in bounded memory.

A tensor's bytes reach the output in one of two shapes::

    Run(path, offset, nbytes)   the bytes are already in the file in the right layout and type:
                                copied in the kernel (copy_file_range, else sendfile), never
                                mapped, so they cost no memory at all
    memoryview chunks           anything else (strided views, a cast, in-memory storages,
                                outputs that need a CRC): at most CHUNK bytes at a time

Sources are read with ``pread`` into fresh chunk buffers rather than through a shared mmap:
pages of a mapping count in the reader's RSS, and a converter that maps a 30 GB file to copy it
looks like it uses 30 GB. Strided tensors are the exception (they need random access); their
mapping is dropped with ``madvise(MADV_DONTNEED)`` as soon as the tensor is done.

``Sink`` is the output side: a raw file descriptor (fast paths) or any binary file object (plain
writes; tests hand it one whose ``write`` fails like a full disk). Every write error becomes an
``OutputError`` that names the destination and the byte offset.
"""

from __future__ import annotations

import errno
import math
import mmap
import os
import threading
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO

from .. import tensors
from ..dtypes import DType, by_name
from ..errors import InputError, MalformedHeader, OutputError, Truncated
from ..model import TensorEntry
from .cast import cast_array

_F32: DType = by_name("F32")  # type: ignore[assignment]  # a row of the table

if TYPE_CHECKING:  # numpy loads only where arrays are made
    import numpy as np

__all__ = ["CHUNK", "Run", "Piece", "Sources", "Sink", "Cancelled", "check_bounds", "pieces",
           "chunks", "blocks", "flat_chunks"]

# Bytes per buffered chunk. Small on purpose: a chunk that stays in the CPU cache between the
# read and the write is copied at memory speed; measured on a 2.1 GB copy, 1 MiB chunks take
# 1.1 s and 8 MiB chunks 4-6 s (each pass then goes out to RAM).
CHUNK = 1 << 20
COPY_CHUNK = 64 << 20  # bytes per copy_file_range call: cancellation is checked in between
WRITEBACK = 64 << 20  # start writing dirty output pages to disk every this many bytes
# Kernel copies, best first; the errors that mean "not between these two files, try the next".
_KERNEL_COPIES = tuple(m for m in ("copy_file_range", "sendfile") if hasattr(os, m))
_FALLBACK_ERRNOS = frozenset({errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP,
                              errno.ENOTSUP, errno.EBADF, errno.EPERM, errno.ENOTSOCK})
_FULL_ERRNOS = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exceeded",
                errno.EFBIG: "the file is larger than the file system allows"}


@dataclass(frozen=True)
class Run:
    """``nbytes`` bytes at ``offset`` of ``path``, copied as they are; ``crc`` if already known."""

    path: str
    offset: int
    nbytes: int
    crc: int | None = None


Piece = Run | memoryview


def _writeback_starter() -> Callable[[int, int, int], None] | None:
    """Linux ``sync_file_range(fd, off, n, SYNC_FILE_RANGE_WRITE)``: queue the pages of a range
    for writing without waiting. Writing a big file back while the next bytes are copied makes
    the final fsync short (measured: 1.8 s -> 1.4 s for 2.4 GB); None where it does not exist."""
    try:
        import ctypes

        fn = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]

    def start(fd: int, offset: int, n: int) -> None:
        fn(fd, offset, n, 2)  # SYNC_FILE_RANGE_WRITE; a failure only means no head start

    return start


_start_writeback = _writeback_starter()


class Cancelled(Exception):
    """Another worker failed or the user pressed Ctrl-C: stop writing."""


def check_bounds(entry: TensorEntry) -> None:
    """The view stays inside its storage (readers check this too; a plan may build views)."""
    if entry.numel == 0:
        return
    if entry.storage_offset < 0 or (entry.strides and min(entry.strides) < 0):
        raise MalformedHeader("negative storage offset or stride", tensor=entry.name,
                              path=entry.storage.path)
    if entry.byte_offset + entry.span > entry.storage.nbytes:
        raise MalformedHeader(
            f"tensor reaches byte {entry.byte_offset + entry.span} of a storage of "
            f"{entry.storage.nbytes} bytes", path=entry.storage.path, tensor=entry.name,
            offset=entry.storage.offset, hint="the file is corrupt")


class Sources:
    """Open source files (one read-only descriptor each, shared by threads: pread is atomic)."""

    def __init__(self) -> None:
        self._fds: dict[str, int] = {}
        self._maps: dict[str, mmap.mmap] = {}
        self._lock = threading.Lock()

    def fd(self, path: str) -> int:
        with self._lock:
            fd = self._fds.get(path)
            if fd is None:
                try:
                    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
                except OSError as exc:
                    raise InputError(f"cannot read: {exc.strerror}", path=path) from exc
                self._fds[path] = fd
            return fd

    def map(self, path: str) -> mmap.mmap:
        with self._lock:
            m = self._maps.get(path)
        if m is None:
            m = mmap.mmap(self.fd(path), 0, access=mmap.ACCESS_READ)
            with self._lock:
                m = self._maps.setdefault(path, m)
        return m

    def pread(self, path: str, offset: int, n: int, into: memoryview | None = None) -> memoryview:
        """``n`` bytes at ``offset``: into ``into`` (reused by the caller), else a fresh buffer."""
        import numpy as np

        view = into[:n] if into is not None else np.empty(n, np.uint8).data  # not zero-filled
        fd, got = self.fd(path), 0
        while got < n:
            try:
                k = os.preadv(fd, [view[got:]], offset + got)
            except OSError as exc:
                raise InputError(f"cannot read: {exc.strerror}", path=path,
                                 offset=offset + got) from exc
            if k == 0:
                raise Truncated(f"file ends at byte {offset + got}, {n - got} bytes short",
                                path=path, offset=offset + got,
                                hint="the file is truncated or changed while converting")
            got += k
        return view

    def release(self, path: str) -> None:
        """Drop a mapping's pages from this process (they stay in the page cache)."""
        with self._lock:
            m = self._maps.get(path)
        if m is not None and hasattr(mmap, "MADV_DONTNEED"):
            m.madvise(mmap.MADV_DONTNEED)

    def close(self) -> None:
        with self._lock:
            for m in self._maps.values():
                try:
                    m.close()
                except BufferError:  # a numpy view still points into it; the GC unmaps later
                    pass
            for fd in self._fds.values():
                os.close(fd)
            self._maps.clear()
            self._fds.clear()

    def __enter__(self) -> Sources:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- reading -------------------------------------------------------------------------------------


def _index_blocks(shape: tuple[int, ...], budget: int) -> Iterator[tuple]:
    """Index tuples that cut an array of ``shape`` into C-order blocks of about ``budget``
    elements: fixed leading indices, a range on one axis, whole trailing axes."""
    import numpy as np

    if not shape:
        yield ()
        return
    k = 0
    while k < len(shape) - 1 and math.prod(shape[k + 1:]) > budget:
        k += 1
    inner = max(1, math.prod(shape[k + 1:]))
    step = max(1, budget // inner)
    for lead in np.ndindex(*shape[:k]):
        for i in range(0, shape[k], step):
            yield lead + (slice(i, min(i + step, shape[k])),)


def _strided_view(entry: TensorEntry, sources: Sources) -> np.ndarray:
    import numpy as np

    st = entry.storage
    if st.in_memory or st.parts:
        return tensors.to_numpy(entry)
    assert st.path is not None
    dt = entry.dtype.np_dtype()
    m = sources.map(st.path)
    start = st.offset + entry.byte_offset
    if start + entry.span > len(m):
        raise Truncated(f"tensor ends past the end of the file ({len(m)} bytes)", path=st.path,
                        tensor=entry.name, offset=start, hint="download the file again")
    flat = np.frombuffer(m, dtype=np.uint8, count=entry.span, offset=start)
    return tensors.strided_view(flat, dt, entry.shape, entry.strides or ())


def blocks(entry: TensorEntry, sources: Sources,
           budget_bytes: int | None = None) -> Iterator[np.ndarray]:
    """The tensor as numpy arrays in C order (views or fresh copies) of bounded size."""
    import numpy as np

    check_bounds(entry)
    if entry.dtype.is_block:  # ggml blocks (Q4_K ...): dequantized to float32, whole blocks
        from ..ggml import dequantized_blocks

        yield from dequantized_blocks(entry, sources, budget_bytes)
        return
    tensors.check_layout(entry)
    if entry.numel == 0:
        return
    dt = entry.dtype.np_dtype()
    budget = max(1, (budget_bytes or CHUNK) // dt.itemsize)
    st = entry.storage
    if entry.is_contiguous:
        if st.in_memory:
            flat = tensors.to_numpy(entry).reshape(-1)
            for i in range(0, flat.size, budget):
                yield flat[i:i + budget]
            return
        step = budget * dt.itemsize
        for part, _, n in st.runs(entry.byte_offset, entry.nbytes):
            if part.data is not None or n % dt.itemsize:
                # an in-memory part, or parts that split an element: join them (one tensor)
                flat = tensors.to_numpy(entry).reshape(-1)
                for i in range(0, flat.size, budget):
                    yield flat[i:i + budget]
                return
        for part, off, n in st.runs(entry.byte_offset, entry.nbytes):
            assert part.path is not None
            for i in range(0, n, step):
                raw = sources.pread(part.path, part.offset + off + i, min(step, n - i))
                yield np.frombuffer(raw, dtype=dt)
        return
    arr = _strided_view(entry, sources)
    try:
        for index in _index_blocks(entry.shape, budget):
            yield np.ascontiguousarray(arr[index]).reshape(-1)
    finally:
        del arr
        if not st.in_memory and st.path is not None:
            sources.release(st.path)


def pieces(entry: TensorEntry, sources: Sources, dtype: DType | None = None,
           budget_bytes: int | None = None) -> Iterator[Piece]:
    """The tensor's bytes in C order as ``dtype`` (default its own): Runs where possible."""
    out = dtype or entry.dtype
    check_bounds(entry)
    if entry.numel == 0:
        return
    st = entry.storage
    if st.path is not None:
        from .. import remote

        remote.ensure(st.path, st.offset, st.nbytes)  # a no-op unless the file is remote
    if out.name == entry.dtype.name and entry.is_contiguous and not st.in_memory:
        # Parts (a tensor saved in slices) become one Run each: still copied in the kernel.
        runs = st.runs(entry.byte_offset, entry.nbytes)
        if all(p.path is not None and p.data is None for p, _, _ in runs):
            for part, off, n in runs:
                assert part.path is not None
                yield Run(part.path, part.offset + off, n)
            return
    import numpy as np  # only here: a plain copy never needs it

    # blocks() gives ggml block types as float32 (dequantized)
    have = _F32 if entry.dtype.is_block else entry.dtype
    if out.is_block:  # quantized as the data arrives, whole blocks at a time (Q8_0)
        from ..ggml import quantized_pieces

        yield from quantized_pieces(blocks(entry, sources, budget_bytes), have, out)
        return
    for block in blocks(entry, sources, budget_bytes):
        if out.name != have.name:
            block = cast_array(block, have, out)
        # Bytes, not the typed buffer: memoryview has no format code for bf16 or fp8.
        yield np.ascontiguousarray(block).reshape(-1).view(np.uint8).data


def chunks(entry: TensorEntry, sources: Sources, dtype: DType | None = None) -> Iterator[memoryview]:
    """Like ``pieces`` with every Run read into bounded chunks (for hashing)."""
    scratch = memoryview(bytearray(CHUNK))  # each chunk is used before the next is read
    for piece in pieces(entry, sources, dtype):
        if isinstance(piece, Run):
            for i in range(0, piece.nbytes, CHUNK):
                yield sources.pread(piece.path, piece.offset + i, min(CHUNK, piece.nbytes - i),
                                    scratch)
        else:
            yield piece


def flat_chunks(entry: TensorEntry, sources: Sources, n: int) -> Iterator[np.ndarray]:
    """1-D arrays of exactly ``n`` elements (the last may be shorter), so that two tensors of
    the same shape can be walked in lockstep whatever their layouts."""
    import numpy as np

    pending: list[np.ndarray] = []
    have = 0
    for block in blocks(entry, sources, n * entry.dtype.itemsize):
        pending.append(block)
        have += block.size
        while have >= n:
            joined = np.concatenate(pending) if len(pending) > 1 else pending[0]
            yield joined[:n]
            rest = joined[n:]
            pending, have = ([rest] if rest.size else []), rest.size
    if have:
        yield np.concatenate(pending) if len(pending) > 1 else pending[0]


# -- writing -------------------------------------------------------------------------------------


class Sink:
    """Where output bytes go: a raw fd (kernel copies) or a binary file object (plain writes)."""

    def __init__(self, target: int | BinaryIO, name: str, *, sources: Sources,
                 progress: Callable[[int], None] | None = None,
                 cancel: threading.Event | None = None) -> None:
        self.fd = target if isinstance(target, int) else None
        self.file = None if isinstance(target, int) else target
        self.name = name  # the destination the user named, for messages
        self.sources = sources
        self.pos = 0
        self._buf = bytearray()
        self._progress = progress
        self._cancel = cancel
        # The kernel copy still worth trying for this output (None: plain writes).
        self._copier = _KERNEL_COPIES[0] if self.fd is not None and _KERNEL_COPIES else None
        self._flushed_to = 0  # output offset up to which writeback has been started
        self._scratch: memoryview | None = None  # one read buffer, reused chunk after chunk

    def _failed(self, exc: OSError) -> OutputError:
        what = _FULL_ERRNOS.get(exc.errno or 0)
        return OutputError(f"cannot write: {what or exc.strerror or exc}", path=self.name,
                           offset=self.pos, hint="free some space or write elsewhere; no "
                           "partial output was left behind" if what else None)

    def _tick(self, n: int) -> None:
        if self._cancel is not None and self._cancel.is_set():
            raise Cancelled()
        if self.fd is not None and _start_writeback and self.pos - self._flushed_to >= WRITEBACK:
            _start_writeback(self.fd, self._flushed_to, self.pos - self._flushed_to)
            self._flushed_to = self.pos
        if self._progress is not None and n:
            self._progress(n)

    def _raw_write(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data).cast("B")
        try:
            if self.fd is None:
                assert self.file is not None
                done = 0
                while done < len(view):
                    k = self.file.write(view[done:])
                    done += len(view) - done if k is None else k
            else:
                done = 0
                while done < len(view):
                    done += os.write(self.fd, view[done:])
        except OSError as exc:
            raise self._failed(exc) from exc

    def flush(self) -> None:
        if self._buf:
            self._raw_write(self._buf)
            self._buf = bytearray()

    def write(self, data: bytes | bytearray | memoryview, count: bool = False) -> None:
        """Append bytes; ``count`` says they are tensor bytes (for progress)."""
        n = len(memoryview(data).cast("B"))
        if n < 65536:
            self._buf += data
            if len(self._buf) >= (1 << 20):
                self.flush()
        else:
            self.flush()
            self._raw_write(data)
        self.pos += n
        if count:
            self._tick(n)

    def put(self, piece: Piece, crc: int | None = None) -> int | None:
        """Append one piece; returns the running CRC-32 when ``crc`` is given."""
        if not isinstance(piece, Run):
            self.write(piece, count=True)
            return None if crc is None else zlib.crc32(piece, crc)
        # A known CRC covers the whole run: usable only when the run is the whole member.
        copyable = crc is None or (piece.crc is not None and crc == 0)
        if copyable and self._copier is not None and self._copy_run(piece):
            return None if crc is None else piece.crc
        if self._scratch is None:
            self._scratch = memoryview(bytearray(CHUNK))
        for i in range(0, piece.nbytes, CHUNK):
            chunk = self.sources.pread(piece.path, piece.offset + i, min(CHUNK, piece.nbytes - i),
                                       self._scratch)
            if crc is not None:
                crc = zlib.crc32(chunk, crc)
            self.write(chunk, count=True)
        return crc

    def _copy_run(self, run: Run) -> bool:
        """Kernel copy; False (before writing anything) when this file pair cannot do it."""
        self.flush()
        src = self.sources.fd(run.path)
        assert self.fd is not None
        done = 0
        while done < run.nbytes:
            n = min(COPY_CHUNK, run.nbytes - done)
            try:
                if self._copier == "sendfile":
                    k = os.sendfile(self.fd, src, run.offset + done, n)
                else:
                    k = os.copy_file_range(src, self.fd, n, run.offset + done)
            except OSError as exc:
                if exc.errno in _FALLBACK_ERRNOS and done == 0:  # nothing of the run written yet
                    rest = _KERNEL_COPIES[_KERNEL_COPIES.index(self._copier or "") + 1:]
                    self._copier = rest[0] if rest else None
                    if self._copier is None:
                        return False
                    continue
                if exc.errno in _FULL_ERRNOS:
                    raise self._failed(exc) from exc
                raise OutputError(f"cannot copy from {run.path}: {exc.strerror}", path=self.name,
                                  offset=self.pos) from exc
            if k == 0:
                raise Truncated(f"file ends at byte {run.offset + done}, "
                                f"{run.nbytes - done} bytes short", path=run.path,
                                offset=run.offset + done,
                                hint="the file is truncated or changed while converting")
            done += k
            self.pos += k
            self._tick(k)
        return True

    def close(self, fsync: bool = True) -> None:
        self.flush()
        try:
            if self.fd is not None and fsync:
                os.fsync(self.fd)
            elif self.file is not None:
                self.file.flush()
                try:
                    fileno = self.file.fileno()
                except (OSError, ValueError):  # an in-memory file object
                    fileno = None
                if fsync and fileno is not None:
                    os.fsync(fileno)
        except OSError as exc:
            raise self._failed(exc) from exc
