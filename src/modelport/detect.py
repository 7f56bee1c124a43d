"""Which format a path holds, decided by its bytes; the extension is never consulted.

The decision is the registry's (``formats.identify``): every format module registers a sniffer
that sees the file's head and tail, a zip's member names or a folder's listing, and the first
in registry order that claims the probe wins. This module adds only the messages for bytes no
format claims.
"""

from __future__ import annotations

import os
import stat
from typing import TYPE_CHECKING

from .containers.zip import ZipArchive, is_zip
from .errors import UnknownFormat
from .limits import DEFAULT_LIMITS, Limits

if TYPE_CHECKING:
    from .formats import Probe

__all__ = ["sniff", "probe", "describe_bytes", "is_npz_listing"]


def probe(path: str | os.PathLike[str], limits: Limits = DEFAULT_LIMITS) -> Probe:
    """The registry's view of ``path``; UnknownFormat when it cannot be read at all."""
    from .formats import Probe

    path = os.fspath(path)
    try:
        if not os.path.isdir(path) and not stat.S_ISREG(os.stat(path).st_mode):
            # Opening a FIFO blocks until something writes to it; a device never ends.
            raise UnknownFormat("not a regular file", path=path,
                                hint="save the stream to a file first")
        return Probe.of_path(path, limits)
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
        raise UnknownFormat(f"cannot read: {getattr(exc, 'strerror', None) or exc}",
                            path=path) from exc


def sniff(path: str | os.PathLike[str], limits: Limits = DEFAULT_LIMITS) -> str:
    """The format id of ``path`` (DESIGN.md table); UnknownFormat says what the bytes look like."""
    from .formats import identify

    path = os.fspath(path)
    p = probe(path, limits)
    fmt = identify(p)
    if fmt is not None:
        return fmt.id
    if p.is_dir:
        raise UnknownFormat("folder holds no model weights (no safetensors/bin shards or index)",
                            path=path, hint="point at a model file or a Hugging Face model folder")
    if is_zip(p.head):
        names = [m.name for m in ZipArchive.open(path, limits).members]  # raises if broken
        raise UnknownFormat(
            f"zip archive with {len(names)} members but no torch data.pkl or .npy members "
            f"(first: {names[:3]})", path=path, hint="not a model archive modelport knows")
    raise UnknownFormat(f"not a model format modelport knows; {describe_bytes(p.head)}",
                        path=path, offset=0)


def is_npz_listing(names: list[str]) -> bool:
    from .formats.numpy import is_npz_listing as rule

    return rule(names)


_SIGNATURES = [
    (b"version https://git-lfs", "a Git LFS pointer, not the file itself: run `git lfs pull`"),
    (b"<!DOCTYPE html", "an HTML page: the download probably failed"),
    (b"<html", "an HTML page: the download probably failed"),
    (b"\x1f\x8b", "gzip-compressed data: decompress it first"),
    (b"BZh", "bzip2-compressed data: decompress it first"),
    (b"\xfd7zXZ", "xz-compressed data: decompress it first"),
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
