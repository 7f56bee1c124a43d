"""Converting, sharding, merging, casting and verifying model files, in bounded memory.

    plan.py      what is written: select, cast, dedupe, shard (entries and sizes only)
    tree.py      the checkpoint tree for --full: validated, and as JSON for safetensors
    cast.py      F64/F32/F16/BF16 casts bit for bit as torch's Tensor.to
    stream.py    bytes from source files to a Sink: kernel copies, bounded chunks
    pickler.py   protocol-2 pickles as torch.save writes them (no pickle.dumps of read objects)
    zipwrite.py  the zip layout of torch.save (64-byte aligned, zip64)
    writers.py   safetensors, torch zip and npz writers
    engine.py    convert(): checks, atomic output, parallel shards, side files, --verify
    verify.py    verify(a, b): same tensors, by streamed hashes or within a tolerance
    diff.py      diff(a, b): added, removed, changed

The package is callable: ``modelport.convert(src, dst, **options)`` is ``convert.convert``.
A function exported as ``modelport.convert`` would be replaced by this package the moment
anything imports a submodule of it, so the package itself takes the call.
"""

from __future__ import annotations

import sys
import types
from typing import Any

from .diff import DiffResult, diff
from .engine import ConvertResult, convert
from .source import load
from .verify import VerifyResult, verify

__all__ = ["convert", "verify", "diff", "load", "ConvertResult", "VerifyResult", "DiffResult"]


class _CallablePackage(types.ModuleType):
    def __call__(self, src: Any, dst: Any, **options: Any) -> ConvertResult:
        return convert(src, dst, **options)


sys.modules[__name__].__class__ = _CallablePackage
