"""The format registry's records: what a format module registers, and what sniffing sees.

Every format is one module in ``formats/`` that defines ``FORMAT`` (or ``FORMATS``, a tuple,
when one module reads several ids, as numpy does for .npy and .npz). ``formats/__init__.py``
lists the modules; ``detect``, the scanner's dispatch, ``convert``'s targets and the CLI's
``--to`` choices all read the registry built from them, and nothing else decides formats.

    Format
      id          the format id of DESIGN.md's table ("torch-zip", "gguf", ...)
      family      "pytorch", "huggingface", "exchange", "numpy", "tensorflow", "llama.cpp", ...
      sniff       Probe -> bool, cheap: a file's head/tail/size, a zip's member names, a
                  folder's listing; never reads more than the probe holds
      order       lower is asked first (formats that nest: a .keras zip before a generic zip)
      open        "module:function" (path, Options) -> Checkpoint, or None: recognised only
      scan        "module:function" (Scan, path) -> None, the scanner's hook, or None: the
                  scanner reports the file as recognised but not analysed (never clean)
      writer      a Writer: the name ``--to`` takes, suffixes, folder layout, the function
      resolve_path  str -> str | None, for formats named by a path that is no file: given a
                  path that does not exist, the file to read instead, or None. A TensorFlow
                  checkpoint is named by its prefix (``model.ckpt``, the files being
                  ``model.ckpt.index`` and ``model.ckpt.data-*``). ``detect.resolve`` asks
                  every format, in order, only when the path does not exist; nothing else
                  changes for paths that do.

Hooks are named as strings and imported on first use, so sniffing a file does not import
every reader's dependencies. The registry imports every format's registering module on the
first sniff, so those stay light: a format whose reader is big or needs heavy containers
(ONNX, GGUF, NumPy, Keras, TFLite, the TensorFlow formats) is a package whose ``__init__``
registers and sniffs and whose ``reader`` module reads; a sniffer that needs the reader's
decoder imports it after a cheap check of the bytes. ``tests/test_registry.py`` holds the
registry to that.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from ..limits import DEFAULT_LIMITS, Limits

if TYPE_CHECKING:
    from ..containers.zip import ZipArchive
    from ..model import Checkpoint

__all__ = ["Options", "Probe", "Writer", "Format", "resolve"]

HEAD = 65536  # bytes of a file's start and end a sniffer may look at


@dataclass(frozen=True)
class Options:
    """What every reader's ``open`` takes: one object, so no reader's signature is special."""

    limits: Limits = DEFAULT_LIMITS
    select: str | None = None  # dotted path of the weights subtree (--select)
    layout: str | None = None  # a raw buffer's layout: a model file or a JSON list (--layout)
    # Check the checksums a format stores for its tensor data (TF checkpoints' CRC-32C) while
    # opening: reads every tensor byte once. Formats that store none ignore it.
    checksums: bool = False


class Probe:
    """What a sniffer may look at, read once and shared by every format asked.

    For a file: ``head`` and ``tail`` (up to ``HEAD`` bytes each), ``size``, and ``zip_names``
    (the member names when the file is a zip, else None). For a folder: ``listing`` (names in
    it, sorted). For a run of bytes in memory (an archive member, a decompressed stream):
    ``Probe.of_bytes``.
    """

    def __init__(self, path: str | None, *, head: bytes = b"", tail: bytes = b"", size: int = 0,
                 is_dir: bool = False, limits: Limits = DEFAULT_LIMITS,
                 data: bytes | memoryview | None = None) -> None:
        self.path = path
        self.head = head
        self.tail = tail
        self.size = size
        self.is_dir = is_dir
        self.limits = limits
        self._data = data

    @classmethod
    def of_path(cls, path: str, limits: Limits = DEFAULT_LIMITS) -> Probe:
        """Read a file's head and tail (OSError if it cannot be read) or a folder's listing."""
        if os.path.isdir(path):
            return cls(path, is_dir=True, limits=limits)
        from .. import remote

        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            remote.ensure_ranges(path, [(0, HEAD), (max(0, size - HEAD), size)])
            head = f.read(HEAD)
            tail = head[-HEAD:] if size <= HEAD else os.pread(f.fileno(), HEAD, size - HEAD)
        return cls(path, head=head, tail=tail, size=size, limits=limits)

    @classmethod
    def of_bytes(cls, data: bytes | memoryview, limits: Limits = DEFAULT_LIMITS) -> Probe:
        return cls(None, head=bytes(data[:HEAD]), tail=bytes(data[-HEAD:]), size=len(data),
                   limits=limits, data=data)

    @cached_property
    def listing(self) -> tuple[str, ...]:
        """A folder's entries, sorted (empty for a file)."""
        if not self.is_dir or self.path is None:
            return ()
        return tuple(sorted(os.listdir(self.path)))

    @cached_property
    def zip_names(self) -> tuple[str, ...] | None:
        """Member names of a zip (central directory order), None when the bytes are not one
        or its directory cannot be read (the scanner reports that; sniffing just declines)."""
        archive = self.zip_archive
        return None if archive is None else tuple(m.name for m in archive.members)

    @cached_property
    def zip_archive(self) -> ZipArchive | None:
        """The file's zip directory, read once for every sniffer and the scanner's zip hook,
        or None as for ``zip_names``."""
        from ..containers.zip import ZipArchive, is_zip
        from ..errors import ModelportError

        if self.is_dir or self.path is None or not is_zip(self.head):
            return None  # in-memory archives: the scanner lists them itself
        try:
            return ZipArchive.open(self.path, self.limits)
        except (ModelportError, OSError, ValueError):
            return None


@dataclass(frozen=True)
class Writer:
    """An output format: the name ``--to`` takes and the suffixes that imply it."""

    name: str  # what --to takes: "safetensors", "torch", "npz", "gguf", "raw"
    write: str  # "module:function" called as function(shard, sink, sources, plan)
    suffixes: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    # a sharded folder: (shard stem, shard suffix, index file name), None if it cannot shard
    folder: tuple[str, str, str] | None = None
    # which dtypes the format holds (None: every dtype), and what to say about one it does not
    holds: Callable[[Any], bool] | None = None
    refuse_hint: str = ""
    # "module:function" (plan) -> (suffix, bytes): a file written beside a single-file output,
    # atomically with it (a raw buffer's layout.json)
    sidecar: str | None = None
    # ggml block types (Q4_K ...) written as they are; every other writer gets them
    # dequantized (gguf)
    blocks: bool = False
    # --dtype values this writer takes beyond F32/F16/BF16 (gguf: Q8_0)
    casts: tuple[str, ...] = ()
    # "module:function" (ck, target, items, cast=, keep_quantized=, notes=) -> (items,
    # safetensors metadata, Shard.extra): names, metadata and layouts the format needs
    prepare: str | None = None


@dataclass(frozen=True)
class Format:
    """One format, as its module registers it (see the module docstring)."""

    id: str
    family: str
    sniff: Callable[[Probe], bool]
    order: int = 50
    open: str | None = None
    scan: str | None = None
    writer: Writer | None = None
    title: str = ""  # how people call it: "GGUF (llama.cpp)", "Keras HDF5"
    # Said when the format is recognised but cannot be read or scanned yet.
    unsupported: str = ""
    folder: bool = False  # sniffed from a folder listing (hf-repo, SavedModel)
    # Its reader reads only through ``remote.ensure``-guarded primitives (the probe, the zip
    # decoder, the safetensors header parser, tensor reads): a remote file of this format is
    # read by ranges. Any other format's remote file is fetched whole before its reader runs.
    ranged: bool = False
    resolve_path: Callable[[str], str | None] | None = None
    extras: dict[str, Any] = field(default_factory=dict, compare=False)

    def reader(self) -> Callable[[str, Options], Checkpoint] | None:
        if not self.open:
            return None
        read = resolve(self.open)
        if self.ranged or self.folder:
            return read  # type: ignore[no-any-return]

        def whole(path: str, options: Options) -> Checkpoint:
            from .. import remote

            remote.ensure_all(path)  # a no-op for local files
            return read(path, options)  # type: ignore[no-any-return]

        return whole

    def scanner(self) -> Callable[[Any, str], None] | None:
        return resolve(self.scan) if self.scan else None


def resolve(ref: str) -> Any:
    """``"modelport.formats.gguf.reader:read"`` (or relative to this package:
    ``".gguf.reader:read"``)."""
    module, _, name = ref.partition(":")
    mod = importlib.import_module(module, __package__) if module.startswith(".") else \
        importlib.import_module(module)
    return getattr(mod, name)
