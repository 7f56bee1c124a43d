"""Legacy PyTorch files (``torch.save(..., _use_new_zipfile_serialization=False)``, torch < 1.6).

Layout (torch/serialization.py ``_legacy_save``): five things back to back::

    pickle  MAGIC_NUMBER 0x1950a86a20f9469cfc6c (a LONG)
    pickle  PROTOCOL_VERSION 1001
    pickle  sys_info {protocol_version, little_endian, type_sizes}
    pickle  the object tree; storages are persistent ids
            ('storage', torch.<Type>Storage, key, location, numel, view_metadata)
    pickle  the list of storage keys, in the order their data follows
    then for each key: int64 numel, then numel * element size bytes

Storage offsets are only known once the key list is read, so the tree pickle is interpreted
twice: once to learn each storage's dtype and size, once with the storages resolved.
"""

from __future__ import annotations

import builtins
import mmap
import struct
from typing import Any

from .. import dtypes
from ..classify import classify, plain
from ..errors import MalformedHeader, ModelportError, PickleError, Truncated
from ..limits import DEFAULT_LIMITS, Limits
from ..model import Checkpoint, Storage
from ..pickle import Result, StorageRef, unpickle
from ..pickle.machine import Ref, brief
from .base import Format, Options, Probe

FORMAT_ID = "torch-legacy"
MAGIC = 0x1950A86A20F9469CFC6C
MAGIC_PICKLE = b"\x80\x02\x8a\x0a" + MAGIC.to_bytes(10, "little") + b"."


def sniff(head: bytes) -> bool:
    return head.startswith(MAGIC_PICKLE)


def _storage_type(pid: Any, path: str, offset: int) -> tuple[str, Any, int, Any]:
    if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
        raise PickleError(f"unknown persistent id {brief(pid)}", path=path, offset=offset)
    _, stype, key, _loc, numel = pid[:5]
    name = stype.name if isinstance(stype, Ref) else brief(stype)
    dt = dtypes.by_torch_storage(name)
    if dt is None:
        raise PickleError(f"unknown storage type {name}", path=path, offset=offset)
    if not isinstance(numel, int) or numel < 0:
        raise PickleError(f"storage of {brief(numel)} elements", path=path, offset=offset,
                          hint="the file is corrupt")
    view = pid[5] if len(pid) > 5 else None
    if view is not None and not (isinstance(view, tuple) and len(view) == 3 and all(
            isinstance(v, int) and v >= 0 for v in view[1:])):
        raise PickleError(f"storage view {brief(view)} is not (key, offset, size)", path=path,
                          offset=offset, hint="the file is corrupt")
    return key if isinstance(key, str) else brief(key), dt, numel, view


def open(path: str, limits: Limits = DEFAULT_LIMITS, select: str | None = None) -> Checkpoint:
    with builtins.open(path, "rb") as f:
        size = f.seek(0, 2)
        data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
    buf = memoryview(data)
    try:
        return _read(path, buf, size, limits, select)
    except ModelportError as exc:
        exc.located(path=path, format=FORMAT_ID)
        raise


def _run(buf: memoryview, pos: int, path: str, limits: Limits, load: Any = None) -> Result:
    return unpickle(buf, pos, path=path, persistent_load=load, limits=limits, strict=True)


def _read(path: str, buf: memoryview, size: int, limits: Limits,
          select: str | None) -> Checkpoint:
    pos = 0
    header = []
    for _ in range(3):  # magic, protocol version, sys_info
        m = _run(buf, pos, path, limits)
        header.append(m.value)
        pos = m.end
    if header[0] != MAGIC:
        raise MalformedHeader("not a legacy torch file (bad magic number)", path=path, offset=0)
    sys_info = header[2] if isinstance(header[2], dict) else {}
    if sys_info.get("little_endian") is False:
        raise MalformedHeader("big-endian legacy file", path=path, offset=pos,
                              hint="re-save it on a little-endian machine")
    tree_start = pos
    found: dict[str, tuple[Any, int]] = {}

    def probe(pid: Any, offset: int) -> Any:
        key, dt, numel, _view = _storage_type(pid, path, offset)
        found.setdefault(key, (dt, numel))
        return StorageRef(Storage(numel * dt.itemsize, key=key), dt)

    first = _run(buf, tree_start, path, limits, probe)
    keys_m = _run(buf, first.end, path, limits)
    keys = keys_m.value
    if not isinstance(keys, list):
        raise MalformedHeader("storage key list is not a list", path=path, offset=first.end)
    storages: dict[str, Storage] = {}
    pos = keys_m.end
    for key in keys:
        key = key if isinstance(key, str) else brief(key)
        if key not in found:
            raise MalformedHeader(f"storage {key!r} is listed but never used", path=path,
                                  offset=pos)
        dt, numel = found[key]
        if pos + 8 > size:
            raise Truncated(f"file ends before storage {key!r}", path=path, offset=pos,
                            hint="the file is truncated; download it again")
        (count,) = struct.unpack_from("<q", buf, pos)
        nbytes = count * dt.itemsize
        if count < max(numel, 0) or pos + 8 + nbytes > size:
            raise Truncated(f"storage {key!r} needs {nbytes} bytes at {pos + 8}", path=path,
                            offset=pos, hint="the file is truncated; download it again")
        storages[key] = Storage(nbytes, path=path, offset=pos + 8, key=key)
        pos += 8 + nbytes

    def load(pid: Any, offset: int) -> Any:
        key, dt, _numel, view = _storage_type(pid, path, offset)
        st = storages.get(key)
        if st is None:
            raise MalformedHeader(f"storage {key!r} has no data", path=path, offset=offset)
        if view is not None:  # (view_key, element offset, view size) into the root storage
            _vkey, voff, vsize = view
            if (voff + vsize) * dt.itemsize > st.nbytes:
                raise MalformedHeader(f"view of storage {key!r} reaches past its "
                                      f"{st.nbytes} bytes", path=path, offset=offset,
                                      hint="the file is corrupt")
            st = Storage(vsize * dt.itemsize, path=path, offset=st.offset + voff * dt.itemsize,
                         key=key)
        return StorageRef(st, dt)

    second = _run(buf, tree_start, path, limits, load)
    return classify(path, FORMAT_ID, second.value, globals=second.globals,
                    select_path=select, file_size=size, info={"sys_info": plain(sys_info)})


def read(path: str, options: Options) -> Checkpoint:
    return open(path, options.limits, select=options.select)


def _sniff(probe: Probe) -> bool:
    return sniff(probe.head)


FORMAT = Format("torch-legacy", "pytorch", _sniff, order=20, title="legacy torch.save file (before 1.6)",
                open=f"{__name__}:read", scan="modelport.scan.archives:scan_pickle_file")
