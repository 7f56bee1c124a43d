"""``diff(a, b)``: tensors added, removed and changed (dtype, shape, max absolute difference).

The same tensors as ``verify`` (weights, or every tensor with ``full=True``); a tensor is
unchanged when dtype, shape and bytes (SHA-256, streamed) are equal, otherwise changed, with the
largest absolute difference of its values when the shapes agree.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from ..model import TensorEntry
from .source import load
from .stream import Sources
from .verify import describe, digest, json_safe, max_abs_diff, tensors_of

__all__ = ["diff", "DiffResult", "Change"]


@dataclass
class Change:
    name: str
    a: str | None  # "F32[3, 4]", None when added
    b: str | None  # None when removed
    max_abs: float | None = None  # values compared when shapes agree

    @property
    def kind(self) -> str:
        return "added" if self.a is None else "removed" if self.b is None else "changed"


@dataclass
class DiffResult:
    a: str
    b: str
    added: list[Change] = field(default_factory=list)
    removed: list[Change] = field(default_factory=list)
    changed: list[Change] = field(default_factory=list)
    unchanged: int = 0

    @property
    def same(self) -> bool:
        return not (self.added or self.removed or self.changed)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["same"] = self.same
        return json_safe(out)


def _change(name: str, ea: TensorEntry, eb: TensorEntry, sources: Sources) -> Change | None:
    if ea.dtype.name == eb.dtype.name and ea.shape == eb.shape and \
            digest(ea, sources) == digest(eb, sources):
        return None
    worst = max_abs_diff(ea, eb, sources)[0] if ea.shape == eb.shape else None
    return Change(name, describe(ea), describe(eb), worst)


def diff(a: str | os.PathLike[str], b: str | os.PathLike[str], *, full: bool = False,
         jobs: int = 2) -> DiffResult:
    a, b = os.fspath(a), os.fspath(b)
    ta, tb = tensors_of(load(a), full), tensors_of(load(b), full)
    out = DiffResult(a, b)
    out.removed = [Change(n, describe(t), None) for n, t in ta.items() if n not in tb]
    out.added = [Change(n, None, describe(t)) for n, t in tb.items() if n not in ta]
    shared = [n for n in ta if n in tb]
    with Sources() as sources, ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        found = list(pool.map(lambda n: _change(n, ta[n], tb[n], sources), shared))
    out.changed = [c for c in found if c is not None]
    out.unchanged = len(shared) - len(out.changed)
    return out
