"""``diff(a, b)``: tensors added, removed and changed (dtype, shape, max absolute difference),
and with ``full=True`` the plain values that changed (epoch, loss, learning rate...).

The same tensors as ``verify`` (weights, or every tensor with ``full=True``); a tensor is
unchanged when dtype, shape and bytes (SHA-256, streamed) are equal, otherwise changed, with the
largest absolute difference of its values when the shapes agree. Values are compared as
``verify`` compares them (``values.py``): by dotted path, old -> new.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ..model import TensorEntry
from .source import load
from .stream import Sources
from .values import ValueChange
from .verify import describe, digest, json_safe, max_abs_diff, pair_progress, tensors_of, values_of

__all__ = ["diff", "DiffResult", "Change"]


@dataclass
class Change:
    name: str
    a: str | None  # "F32[3, 4]", None when added
    b: str | None  # None when removed
    max_abs: float | None = None  # values compared when shapes agree
    dtype_a: str | None = None  # "F32": a and b split for scripts
    shape_a: list[int] | None = None
    dtype_b: str | None = None
    shape_b: list[int] | None = None

    @property
    def kind(self) -> str:
        return "added" if self.a is None else "removed" if self.b is None else "changed"

    @classmethod
    def of(cls, name: str, ea: TensorEntry | None, eb: TensorEntry | None,
           max_abs: float | None = None) -> Change:
        return cls(name, describe(ea) if ea else None, describe(eb) if eb else None, max_abs,
                   ea.dtype.name if ea else None, list(ea.shape) if ea else None,
                   eb.dtype.name if eb else None, list(eb.shape) if eb else None)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "a": self.a, "b": self.b,
                "dtype_a": self.dtype_a, "shape_a": self.shape_a,
                "dtype_b": self.dtype_b, "shape_b": self.shape_b, "max_abs": self.max_abs}


@dataclass
class DiffResult:
    a: str
    b: str
    added: list[Change] = field(default_factory=list)
    removed: list[Change] = field(default_factory=list)
    changed: list[Change] = field(default_factory=list)
    unchanged: int = 0
    values: list[ValueChange] = field(default_factory=list)  # full=True: plain values
    values_unchanged: int = 0

    @property
    def same(self) -> bool:
        return not (self.added or self.removed or self.changed or self.values)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"a": self.a, "b": self.b}
        for key in ("added", "removed", "changed"):
            out[key] = [c.to_json() for c in getattr(self, key)]
        out["unchanged"] = self.unchanged
        out["values"] = [v.to_json() for v in self.values]
        out["values_unchanged"] = self.values_unchanged
        out["same"] = self.same
        return json_safe(out)


def _change(name: str, ea: TensorEntry, eb: TensorEntry, sources: Sources) -> Change | None:
    if ea.dtype.name == eb.dtype.name and ea.shape == eb.shape and \
            digest(ea, sources) == digest(eb, sources):
        return None
    worst = max_abs_diff(ea, eb, sources)[0] if ea.shape == eb.shape else None
    return Change.of(name, ea, eb, worst)


def diff(a: str | os.PathLike[str], b: str | os.PathLike[str], *, full: bool = False,
         jobs: int = 2, progress: Callable[[int, int], None] | None = None) -> DiffResult:
    """``progress(done_bytes, total_bytes)`` is called as tensor pairs are compared."""
    a, b = os.fspath(a), os.fspath(b)
    ck_a, ck_b = load(a), load(b)
    ta, tb = tensors_of(ck_a, full), tensors_of(ck_b, full)
    out = DiffResult(a, b)
    out.removed = [Change.of(n, t, None) for n, t in ta.items() if n not in tb]
    out.added = [Change.of(n, None, t) for n, t in tb.items() if n not in ta]
    shared = [n for n in ta if n in tb]
    tick = pair_progress(ta, tb, shared, progress)
    with Sources() as sources, ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        found = list(pool.map(lambda n: tick(n, _change(n, ta[n], tb[n], sources)), shared))
    out.changed = [c for c in found if c is not None]
    out.unchanged = len(shared) - len(out.changed)
    if full:
        out.values, compared = values_of(ck_a, ck_b)
        out.values_unchanged = compared - sum(v.kind == "changed" for v in out.values)
    return out
