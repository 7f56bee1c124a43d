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
from .classify import classify
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
    "__version__",
]

__version__ = "0.1.0"


def open(
    path: str | os.PathLike[str],
    *,
    select: str | None = None,
    format: str | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> Checkpoint:
    """Read a model file or Hugging Face folder into a Checkpoint; nothing in it is executed.

    ``select`` picks the weights subtree by dotted path; ``format`` skips detection.
    """
    from .formats import module_for

    path = os.fspath(path)
    fmt = format or sniff(path, limits)
    try:
        reader = module_for(fmt).open
        if select is None:
            return reader(path, limits)
        code = reader.__code__
        if "select" in code.co_varnames[: code.co_argcount + code.co_kwonlyargcount]:
            return reader(path, limits, select=select)
        ck = reader(path, limits)  # a flat format: select a prefix of its names
        return classify(ck.path, ck.format, ck.tree, globals=ck.globals, info=ck.info,
                        select_path=select, file_size=ck.file_size)
    except KeyError as exc:
        raise errors.UsageError(f"--select {select!r}: no such subtree ({exc})", path=path) from None
    except ModelportError as exc:
        exc.located(path=path, format=fmt)
        raise


def to_numpy(entry: TensorEntry) -> np.ndarray:
    """A tensor's values as a read-only numpy array, zero-copy where its layout allows."""
    from .tensors import to_numpy as _to_numpy

    return _to_numpy(entry)
