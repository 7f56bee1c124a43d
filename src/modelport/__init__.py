"""modelport: read, inspect, scan and convert deep-learning model files without running them.

    >>> import modelport
    >>> ck = modelport.open("pytorch_model.bin")     # any format, decided by content
    >>> ck.kind, ck.parameters
    >>> arr = modelport.to_numpy(ck.weights["lm_head.weight"])   # zero-copy where possible
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from . import errors
from .detect import sniff
from .errors import ModelportError
from .limits import DEFAULT_LIMITS, Limits
from .model import Checkpoint, Opaque, Storage, TensorEntry

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "open",
    "sniff",
    "to_numpy",
    "Checkpoint",
    "TensorEntry",
    "Storage",
    "Opaque",
    "Limits",
    "ModelportError",
    "errors",
    "convert",
    "verify",
    "diff",
    "scan",
    "__version__",
]

__version__ = "0.1.0"


def open(
    path: str | os.PathLike[str],
    *,
    select: str | None = None,
    format: str | None = None,
    layout: str | os.PathLike[str] | None = None,
    limits: Limits = DEFAULT_LIMITS,
    checksums: bool = False,
) -> Checkpoint:
    """Read a model file or Hugging Face folder into a Checkpoint; nothing in it is executed.

    ``select`` picks the weights subtree by dotted path; ``format`` skips detection;
    ``layout`` reads ``path`` as a raw buffer laid out as that model file or JSON list says;
    ``checksums`` checks the tensor checksums the format stores (TF checkpoints), reading
    every tensor byte.
    """
    from .detect import resolve
    from .formats import Options, get

    path = resolve(path)  # a name that is no file may still be one a format reads (a prefix)
    if not os.path.exists(path):
        raise errors.FileMissing(f"no such file or folder: {path}", path=path,
                                 hint="check the path")
    if layout is not None:
        format = "raw"
    fmt = format or sniff(path, limits)
    try:
        spec = get(fmt)
        reader = spec.reader()
        if reader is None:
            raise errors.UnsupportedFormat(spec.unsupported or f"{spec.title} cannot be read yet",
                                           path=path, format=fmt)
        return reader(path, Options(limits=limits, select=select,
                                    layout=os.fspath(layout) if layout is not None else None,
                                    checksums=checksums))
    except KeyError as exc:
        if select is None:
            raise  # a reader's bug, not a missing subtree: it must not pass for bad usage
        raise errors.UsageError(f"--select {select!r}: no such subtree ({exc})", path=path,
                                hint=_subtrees_hint(path, fmt, limits)) from None
    except ModelportError as exc:
        exc.located(path=path, format=fmt)
        raise
    except RecursionError:
        # Readers bound every walk they know of; this is the net for one they do not (a shard
        # folder that links to itself, a value nested past the interpreter's stack).
        raise errors.LimitExceeded("the file nests objects too deeply to read", path=path,
                                   format=fmt, hint="the file is corrupt or hostile") from None
    except OSError as exc:  # the file vanished or became unreadable after detection
        raise errors.InputError(f"cannot read: {exc.strerror or exc}",
                                path=exc.filename or path, format=fmt) from exc
    except MemoryError:
        raise errors.LimitExceeded("out of memory reading the file", path=path, format=fmt,
                                   hint="read it on a machine with more memory") from None


def _subtrees_hint(path: str, fmt: str, limits: Limits) -> str:
    """The subtrees --select could name: those that hold tensors, two levels deep."""
    from .classify import flatten_tensors

    try:
        ck = open(path, format=fmt, limits=limits)
    except ModelportError:
        return "check the path with `modelport inspect --json`"
    names = [name.split(".") for name, _ in flatten_tensors(ck.tree)]
    found: dict[str, int] = {}
    for depth in (1, 2):  # the second level only when the first has a single subtree
        for parts in names:
            if len(parts) > depth:
                key = ".".join(parts[:depth])
                found[key] = found.get(key, 0) + 1
        if len(found) > 1:
            break
    if not found:
        return "this file has no subtrees: its tensors are at the top level"
    listed = ", ".join(f"{k} ({n})" for k, n in list(found.items())[:12])
    return f"subtrees holding tensors: {listed}"


def to_numpy(entry: TensorEntry) -> np.ndarray:
    """A tensor's values as a read-only numpy array, zero-copy where its layout allows."""
    from .tensors import to_numpy as _to_numpy

    return _to_numpy(entry)


def __getattr__(name: str) -> object:
    # convert/verify/diff load lazily (PEP 562), so inspect and scan start without them.
    # ``modelport.convert`` is the callable package: modelport.convert(src, dst, **options).
    if name in ("convert", "verify", "diff"):
        import importlib

        package = importlib.import_module(".convert", __name__)
        return package if name == "convert" else getattr(package, name)
    if name == "scan":
        import importlib

        return importlib.import_module(".scan", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
