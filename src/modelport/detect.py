"""Which format a path holds, decided by its bytes; the extension is never consulted.

Order matters only where formats nest: a zip is looked inside (torch.save and TorchScript
archives and .npz files are all zips), a legacy torch file is a pickle with torch's magic
number first, and safetensors/ONNX are recognised by a strict look at their first header.
"""

from __future__ import annotations

import os
import stat

from .containers.zip import ZipArchive, is_zip
from .errors import UnknownFormat
from .limits import DEFAULT_LIMITS, Limits

__all__ = ["sniff", "describe_bytes", "is_npz_listing"]

HEAD = 4096


def sniff(path: str | os.PathLike[str], limits: Limits = DEFAULT_LIMITS) -> str:
    """The format id of ``path`` (DESIGN.md table); UnknownFormat says what the bytes look like."""
    path = os.fspath(path)
    if os.path.isdir(path):
        from .formats import hf_repo

        try:
            if hf_repo.sniff_dir(path):
                return "hf-repo"
        except OSError as exc:
            raise UnknownFormat(f"cannot list the folder: {exc.strerror}", path=path) from exc
        raise UnknownFormat("folder holds no model weights (no safetensors/bin shards or index)",
                            path=path, hint="point at a model file or a Hugging Face model folder")
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            # Opening a FIFO blocks until something writes to it; a device never ends.
            raise UnknownFormat("not a regular file", path=path,
                                hint="save the stream to a file first")
        with open(path, "rb") as f:
            head = f.read(HEAD)
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
        raise UnknownFormat(f"cannot read: {getattr(exc, 'strerror', None) or exc}",
                            path=path) from exc
    if is_zip(head):
        return _sniff_zip(path, limits)
    if head.startswith(b"\x93NUMPY"):
        return "numpy-npy"
    from .formats import onnx, raw_pickle, safetensors, torch_legacy

    if torch_legacy.sniff(head):
        return "torch-legacy"
    if safetensors.sniff(head):
        return "safetensors"
    if raw_pickle.sniff(head):
        return "pickle"
    if onnx.sniff(head):
        return "onnx"
    raise UnknownFormat(f"not a model format modelport knows; {describe_bytes(head)}", path=path,
                        offset=0)


def _sniff_zip(path: str, limits: Limits) -> str:
    archive = ZipArchive.open(path, limits)
    names = [m.name for m in archive.members]
    folders = {n.split("/")[0] for n in names if n.count("/") == 1 and n.endswith("/data.pkl")}
    for folder in folders:
        if f"{folder}/constants.pkl" in names or any(n.startswith(f"{folder}/code/") for n in names):
            return "torchscript"
        return "torch-zip"
    if is_npz_listing(names):
        return "numpy-npz"
    raise UnknownFormat(
        f"zip archive with {len(names)} members but no torch data.pkl or .npy members "
        f"(first: {names[:3]})", path=path, hint="not a model archive modelport knows")


def is_npz_listing(names: list[str]) -> bool:
    """A zip whose members (folder entries aside) are all ``*.npy`` is an npz: what np.savez
    writes, an empty archive included (np.savez() of nothing)."""
    return all(n.endswith(".npy") for n in names if not n.endswith("/"))


_SIGNATURES = [
    (b"version https://git-lfs", "a Git LFS pointer, not the file itself: run `git lfs pull`"),
    (b"<!DOCTYPE html", "an HTML page: the download probably failed"),
    (b"<html", "an HTML page: the download probably failed"),
    (b"\x1f\x8b", "gzip-compressed data: decompress it first"),
    (b"BZh", "bzip2-compressed data: decompress it first"),
    (b"\xfd7zXZ", "xz-compressed data: decompress it first"),
    (b"GGUF", "a GGUF file (llama.cpp), not supported yet"),
    (b"\x89HDF", "an HDF5 file (Keras .h5), not supported yet"),
    (b"{", "JSON text"),
]


def describe_bytes(head: bytes) -> str:
    """One phrase on what the first bytes look like, for an UnknownFormat message."""
    if not head:
        return "the file is empty"
    for sig, what in _SIGNATURES:
        if head.startswith(sig):
            return f"it looks like {what}"
    if len(head) > 262 and head[257:262] == b"ustar":
        return "it looks like a tar archive (very old torch.save tar files are not supported)"
    if head[:1] == b"\x80" or head[:1] in (b"(", b"}", b"]"):
        return "it looks like a pickle with an unusual start"
    text = head[:16]
    return f"first bytes {text.hex(' ')} ({text!r})"
