"""modelport: read, inspect, scan and convert deep-learning model files without running them.

    >>> import modelport
    >>> ck = modelport.open("pytorch_model.bin")     # any format, decided by content
    >>> ck.kind, ck.parameters
    >>> arr = modelport.to_numpy(ck.weights["lm_head.weight"])   # zero-copy where possible
"""

from __future__ import annotations

import os

from . import errors
from .detect import sniff
from .errors import ModelportError
from .limits import DEFAULT_LIMITS, Limits
from .model import Checkpoint, Opaque, Storage, TensorEntry
from .tensors import to_numpy

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
        return reader(path, limits, select=select) if select is not None else reader(path, limits)
    except KeyError as exc:
        raise errors.UsageError(f"--select {select!r}: no such subtree ({exc})", path=path) from None
    except ModelportError as exc:
        raise exc.located(path=path, format=fmt)
