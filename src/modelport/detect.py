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

__all__ = ["sniff", "probe", "resolve", "describe_bytes", "is_npz_listing"]


def resolve(path: str | os.PathLike[str]) -> str:
    """``path`` itself when it exists; else the file a format reads for it (a TensorFlow
    checkpoint prefix -> its .index: ``Format.resolve_path``); else ``path`` unchanged."""
    path = os.fspath(path)
    if os.path.lexists(path):
        return path
    from .formats import registry

    for f in registry():
        if f.resolve_path is not None:
            found = f.resolve_path(path)
            if found is not None:
                return found
    return path


def probe(path: str | os.PathLike[str], limits: Limits = DEFAULT_LIMITS) -> Probe:
    """The registry's view of ``path``; UnknownFormat when it cannot be read at all."""
    from .formats import Probe

    path = resolve(path)
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

    path = resolve(path)
    p = probe(path, limits)
    fmt = identify(p)
    if fmt is not None:
        return fmt.id
    if p.is_dir:
        raise UnknownFormat(f"folder holds no model weights{_describe_folder(p.listing)}",
                            path=path, hint="point at a model file or a Hugging Face model folder")
    if is_zip(p.head):
        names = [m.name for m in ZipArchive.open(path, limits).members]  # raises if broken
        inner = [n for n in names if n.lower().endswith(_MODEL_SUFFIXES)]
        if inner:
            raise UnknownFormat(f"a zip archive holding model files ({', '.join(inner[:3])}"
                                f"{', ...' if len(inner) > 3 else ''})", path=path,
                                hint="unzip it and point modelport at the files inside")
        raise UnknownFormat(
            f"zip archive with {len(names)} members but no torch data.pkl or .npy members "
            f"(first: {names[:3]})", path=path, hint="not a model archive modelport knows")
    hint = None
    what = describe_bytes(p.head)
    named = _FOREIGN_SUFFIXES.get(os.path.splitext(path)[1].lower())
    if named and what.startswith("first bytes"):
        # The bytes decided nothing; the name is only used to say what the file probably is.
        what = f"its name says {named}, which modelport does not read; {what}"
    if p.size and p.size % 4 == 0 and what.startswith("first bytes"):
        hint = (f"could be {p.size // 4:,} raw float32 values: if it is a flat buffer of "
                "weights, try --layout MODEL_FILE (or a JSON layout)")
    raise UnknownFormat(f"not a model format modelport knows; {what}",
                        path=path, offset=0, hint=hint)


# Files people ask about that modelport does not read, by the name they usually carry (never
# used to decide a format: only to word the error when the bytes decided nothing).
_FOREIGN_SUFFIXES = {
    ".mlmodel": "a CoreML model (convert its source model instead)",
    ".caffemodel": "a Caffe model (NetParameter protobuf)",
    ".prototxt": "a Caffe network description (text)",
    ".pdmodel": "a PaddlePaddle program (ProgramDesc protobuf)",
    ".pdiparams": "PaddlePaddle parameters (LoDTensor records)",
    ".engine": "a TensorRT engine (compiled for one GPU; convert the model it was built from)",
    ".plan": "a TensorRT engine (compiled for one GPU; convert the model it was built from)",
    ".trt": "a TensorRT engine (compiled for one GPU; convert the model it was built from)",
    ".params": "MXNet or Gluon parameters",
    ".mar": "a TorchServe archive",
}

_MODEL_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".onnx", ".gguf", ".h5",
                   ".keras", ".tflite", ".pb", ".npz", ".pkl", ".mlmodel", ".params")


def _describe_folder(listing: tuple[str, ...]) -> str:
    """What a folder that is not a model folder modelport reads looks like."""
    names = set(listing)
    if "Manifest.json" in names and "Data" in names:
        return ": it looks like a CoreML .mlpackage, which modelport does not read"
    xml = [n for n in listing if n.endswith(".xml")]
    if xml and any(n[:-4] + ".bin" in names for n in xml):
        return f": it looks like an OpenVINO IR ({xml[0]} + .bin), which modelport does not read"
    return " (no safetensors/bin shards or index)"


def is_npz_listing(names: list[str]) -> bool:
    from .formats.numpy import is_npz_listing as rule

    return rule(names)


_SIGNATURES = [
    (b"version https://git-lfs", "a Git LFS pointer, not the file itself: run `git lfs pull`"),
    (b"<!DOCTYPE html", "an HTML page: the download probably failed"),
    (b"<html", "an HTML page: the download probably failed"),
    (b"\x12\x01\x00\x00\x00\x00\x00\x00", "MXNet NDArray parameters (.params), which modelport "
     "does not read"),
    (b"ftrt", "a TensorRT engine (.engine/.plan): compiled for one GPU, it holds no portable "
     "weights; convert the model it was built from"),
    (b"ptrt", "a TensorRT engine (.engine/.plan): compiled for one GPU, it holds no portable "
     "weights; convert the model it was built from"),
    (b"<?xml", "XML text (an OpenVINO IR .xml? modelport does not read OpenVINO)"),
    (b"{", "JSON text"),
]


def describe_bytes(head: bytes) -> str:
    """One phrase on what the first bytes look like, for an UnknownFormat message."""
    if not head:
        return "the file is empty"
    # Containers are the scanner's decoders' decision (containers/), not a second table here.
    from .containers import compress
    from .containers import tar as tarfmt

    if head.startswith(b"7z\xbc\xaf\x27\x1c"):  # before the stream heuristics, as the scanner
        return "it looks like a 7z archive: extract it first (`modelport scan` lists and " \
            "scans its members)"
    kind = compress.kind_of(head)
    if kind:
        return f"it looks like {kind}-compressed data: decompress it first (`modelport scan` " \
            "looks inside)"
    if tarfmt.is_tar(head):
        return "it looks like a tar archive: extract it first (very old torch.save tar files " \
            "are not read)"
    for sig, what in _SIGNATURES:
        if head.startswith(sig):
            return f"it looks like {what}"
    if head[:1] == b"\x80" or head[:1] in (b"(", b"}", b"]"):
        return "it looks like a pickle with an unusual start"
    text = head[:16]
    return f"first bytes {text.hex(' ')} ({text!r})"
