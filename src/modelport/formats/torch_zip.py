"""PyTorch zip checkpoints (``torch.save`` since 1.6), and the storage logic TorchScript shares.

Layout (torch/serialization.py ``_save``, caffe2/serialize/inline_container.cc)::

    <archive>/data.pkl          the object tree; tensors are _rebuild_tensor_v2(storage, ...)
    <archive>/data/<key>        one member per storage, stored uncompressed, 64-byte aligned
    <archive>/byteorder         "little" (absent in files older than torch 1.10: little)
    <archive>/version, .data/serialization_id, .format_version, .storage_alignment

``<archive>`` is the file's stem or "archive"; only the folder layout matters. A persistent id
is ``('storage', torch.<Type>Storage, key, location, numel)``; the storage is member
``data/<key>``, read in place at the member's data offset.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from .. import dtypes
from ..classify import classify
from ..containers.zip import ZipArchive, ZipMember
from ..errors import MalformedHeader, ModelportError, PickleError, UnknownFormat
from ..limits import DEFAULT_LIMITS, Limits
from ..model import Checkpoint, Storage
from ..pickle import Result, StorageRef, unpickle
from ..pickle.machine import Ref, brief
from .base import Format, Options, Probe, Writer

FORMAT_ID = "torch-zip"


def archive_prefix(archive: ZipArchive) -> str | None:
    """The folder holding data.pkl (``archive/`` or the stem), or None if there is none."""
    for m in archive.members:
        parts = m.name.split("/")
        if len(parts) == 2 and parts[1] == "data.pkl":
            return parts[0] + "/"
    return None


def storage_loader(archive: ZipArchive, prefix: str, members: dict[str, ZipMember],
                   pkl: str) -> Any:
    """A persistent_load for torch's storage ids: ``data/<key>`` read in place."""
    path = archive.path
    cache: dict[str, Storage] = {}

    def load(pid: Any, offset: int) -> StorageRef:
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise PickleError(f"unknown persistent id {brief(pid)}", path=path, member=pkl,
                              offset=offset, hint="not a torch.save archive modelport knows")
        _, stype, key, _location, numel = pid[:5]
        name = stype.name if isinstance(stype, Ref) else brief(stype)
        key = key if isinstance(key, str) else brief(key)  # torch writes str keys; str() of
        # a hostile key can recurse without end or refuse an int of more than 4300 digits
        dtype = dtypes.by_torch_storage(name) or (dtypes.by_name("U8")
                                                  if name == "UntypedStorage" else None)
        if dtype is None:
            raise PickleError(f"unknown storage type {name}", path=path, member=pkl, offset=offset)
        member = members.get(f"{prefix}data/{key}")
        if member is None:
            raise MalformedHeader(f"storage {key!r} has no member data/{key}", path=path,
                                  member=pkl, offset=offset,
                                  hint="the archive is incomplete; download it again")
        if not member.stored:
            raise MalformedHeader("storage member is compressed; torch stores them as-is",
                                  path=path, member=member.name, offset=member.header_offset)
        if isinstance(numel, int) and numel * dtype.itemsize > member.usize:
            raise MalformedHeader(
                f"storage {key!r} claims {brief(numel)} elements but its member holds "
                f"{member.usize} bytes",
                path=path, member=member.name, offset=member.data_offset)
        st = cache.get(str(key))
        if st is None:
            st = Storage(member.usize, path=path, offset=member.data_offset, key=str(key))
            cache[str(key)] = st
        return StorageRef(st, dtype)

    return load


def unpickle_member(archive: ZipArchive, member: ZipMember, persistent_load: Any,
                    limits: Limits) -> Result:
    return unpickle(archive.read(member, limits), base=member.data_offset, member=member.name,
                    path=archive.path, persistent_load=persistent_load, limits=limits,
                    strict=True)


def check_byteorder(archive: ZipArchive, prefix: str, members: dict[str, ZipMember],
                    limits: Limits) -> None:
    bo = members.get(prefix + "byteorder")
    # "little" or "big": a compressed byteorder member may not inflate to gigabytes
    if bo is not None and archive.read(bo, replace(limits, member_bytes=64)).strip() not in (
            b"little", b""):
        raise MalformedHeader("big-endian archive", path=archive.path, member=bo.name,
                              offset=bo.data_offset,
                              hint="re-save it on a little-endian machine")


@dataclass
class Loaded:
    """A torch archive with its data.pkl interpreted: shared by torch-zip and TorchScript."""

    archive: ZipArchive
    prefix: str
    members: dict[str, ZipMember]
    tree: Any
    result: Result


def load(path: str, limits: Limits) -> Loaded:
    archive = ZipArchive.open(path, limits)
    prefix = archive_prefix(archive)
    if prefix is None:
        raise UnknownFormat("zip archive without <folder>/data.pkl: not a torch.save file",
                            path=path)
    members = archive.by_name()
    check_byteorder(archive, prefix, members, limits)
    pkl = members[prefix + "data.pkl"]
    try:
        m = unpickle_member(archive, pkl, storage_loader(archive, prefix, members, pkl.name),
                            limits)
    except ModelportError as exc:
        exc.located(path=path, member=pkl.name)
        raise
    return Loaded(archive, prefix, members, m.value, m)


def open(path: str, limits: Limits = DEFAULT_LIMITS, select: str | None = None) -> Checkpoint:
    t = load(path, limits)
    return classify(path, FORMAT_ID, t.tree, globals=t.result.globals, select_path=select,
                    file_size=t.archive.size, info={"archive": t.prefix.rstrip("/")})


def read(path: str, options: Options) -> Checkpoint:
    return open(path, options.limits, select=options.select)


def _sniff(probe: Probe) -> bool:
    names = probe.zip_names
    return names is not None and archive_kind(names) == "torch-zip"


def archive_kind(names: tuple[str, ...] | list[str]) -> str | None:
    """What torch.load makes of a zip's member names: "torchscript" (constants.pkl or code/ next
    to data.pkl), "torch-zip" (a data.pkl one folder down), or None. The one rule, used by the
    registry's sniffers and by the scanner."""
    folders = {n.split("/")[0] for n in names if n.count("/") == 1 and n.endswith("/data.pkl")}
    for folder in sorted(folders):
        if f"{folder}/constants.pkl" in names or any(n.startswith(f"{folder}/code/")
                                                     for n in names):
            return "torchscript"
        return "torch-zip"
    return None


FORMAT = Format(
    "torch-zip", "pytorch", _sniff, order=10, title="PyTorch zip checkpoint (torch.save)",
    open=f"{__name__}:read", ranged=True, scan="modelport.scan.archives:scan_zip_file",
    writer=Writer("torch", "modelport.convert.writers:write_torch",
                  suffixes=(".pt", ".pth", ".bin", ".ckpt"), aliases=("pt", "pytorch"),
                  holds=lambda d: d.torch is not None and d.kind != "q",
                  refuse_hint="it cannot be written yet",
                  folder=("pytorch_model", ".bin", "pytorch_model.bin.index.json")))
