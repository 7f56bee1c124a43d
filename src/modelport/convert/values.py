"""The plain values of two checkpoint trees, compared: what ``verify --full`` and ``diff --full``
report besides tensors (epoch, loss, hyper-parameters, optimizer ``param_groups``, configs...).

Both trees are walked side by side. A value is reported by its dotted path (the same naming as
tensors: ``optimizer_state_dict.param_groups.0.lr``) as

    changed   the path is in both with a different value, or a different container type
    only-a    the path (a value, or a subtree holding values) is in A only
    only-b    in B only

Tensors are not values: they are compared by ``verify``/``diff`` themselves, and a subtree that
holds nothing but tensors is not reported here a second time.

"Same" is strict, as for tensor bytes: ``3`` and ``3.0`` differ, so do ``True`` and ``1``, a
tuple and a list, ``0.0`` and ``-0.0``; NaN equals NaN (a file format keeps no NaN payloads in
values). What a format cannot hold natively comes back through modelport's own encoding
(``convert/tree.py``: tuples, int keys, sets, bytes, ``torch.float32``), so a ``convert --full``
round trip compares equal.

Trees come from files, so the walk is bounded like ``classify``'s: a container that holds itself
is compared once, nesting deeper than ``MAX_DEPTH`` is an error, and so is walking more than
``MAX_SHARED`` nodes (a pickle that shares one list forty levels deep).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from ..classify import MAX_DEPTH, MAX_SHARED, plain
from ..classify import _key as key_name  # dict keys named as tensors' paths name them
from ..errors import LimitExceeded
from ..model import Checkpoint, Opaque, TensorEntry
from ..pickle.machine import Ref

__all__ = ["ValueChange", "compare_values", "value_roots", "show"]

_SHOWN = 120  # characters of a value in a one-line message


@dataclass
class ValueChange:
    path: str
    kind: str  # changed | only-a | only-b
    a: Any = None  # the value in A, JSON-able (classify.plain); None when only in B
    b: Any = None

    def detail(self) -> str:
        if self.kind == "changed":
            return f"{show(self.a)} -> {show(self.b)}"
        return f"{show(self.a if self.kind == 'only-a' else self.b)} only in " \
               f"{'A' if self.kind == 'only-a' else 'B'}"

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "kind": self.kind, "a": self.a, "b": self.b}


def show(value: Any) -> str:
    """A value from ``plain`` on one line, cut at ``_SHOWN`` characters."""
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."


def value_roots(ck: Checkpoint, tree: Any) -> dict[str, Any]:
    """What is compared: the tree, and a Hugging Face folder's ``config.json``."""
    roots: dict[str, Any] = {"": tree}
    if ck.format == "hf-repo" and isinstance(ck.info.get("config"), dict):
        roots["config.json"] = ck.info["config"]
    return roots


def _has_values(obj: Any, depth: int = 0, seen: set[int] | None = None) -> bool:
    """Whether a subtree holds anything but tensors (an empty container is a value)."""
    if isinstance(obj, TensorEntry):
        return False
    if isinstance(obj, dict):
        items = list(obj.values())
    elif isinstance(obj, (list, tuple)):
        items = list(obj)
    else:
        return True
    if not items:
        return True
    seen = set() if seen is None else seen
    if id(obj) in seen or depth > MAX_DEPTH:
        return False
    seen.add(id(obj))
    return any(_has_values(v, depth + 1, seen) for v in items)


def _same_leaf(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        # bytes read from one format and bytearray from another are the same bytes
        return isinstance(a, (bytes, bytearray)) and isinstance(b, (bytes, bytearray)) and a == b
    if isinstance(a, float):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    if isinstance(a, complex):
        return _same_leaf(a.real, b.real) and _same_leaf(a.imag, b.imag)
    if isinstance(a, Ref):
        return (a.module, a.name) == (b.module, b.name)
    try:
        return bool(a == b)
    except Exception:  # an object whose __eq__ does not answer: compare what it shows
        return repr(a) == repr(b)


class _Comparison:
    def __init__(self) -> None:
        self.changes: list[ValueChange] = []
        self.compared = 0  # leaf values of A looked at
        self._path: set[int] = set()
        self._nodes = 0

    def only(self, kind: str, path: str, value: Any) -> None:
        if not _has_values(value):
            return  # tensors only: verify and diff report those
        shown = plain(value)
        self.changes.append(ValueChange(path or "(root)", kind,
                                        shown if kind == "only-a" else None,
                                        shown if kind == "only-b" else None))

    def changed(self, path: str, a: Any, b: Any) -> None:
        self.changes.append(ValueChange(path or "(root)", "changed", plain(a), plain(b)))

    def walk(self, a: Any, b: Any, path: str, depth: int) -> None:
        self._nodes += 1
        if self._nodes > MAX_SHARED:
            raise LimitExceeded(f"comparing values walks more than {MAX_SHARED} nodes",
                                hint="the file shares containers with itself (a pickle bomb)")
        if depth > MAX_DEPTH:
            raise LimitExceeded(f"values nest more than {MAX_DEPTH} levels deep",
                                hint="the file is corrupt or hostile")
        ta, tb = isinstance(a, TensorEntry), isinstance(b, TensorEntry)
        if ta or tb:
            if ta and not tb:
                self.only("only-b", path, b)
            elif tb and not ta:
                self.only("only-a", path, a)
            return
        container = (dict, list, tuple, Opaque)
        if isinstance(a, container) or isinstance(b, container):
            if type(a) is not type(b):
                self.compared += 1
                self.changed(path, a, b)
                return
            if id(a) in self._path:  # it holds itself: compared once, on the way in
                return
            self._path.add(id(a))
            try:
                self._walk_container(a, b, path, depth)
            finally:
                self._path.discard(id(a))
            return
        self.compared += 1
        if not _same_leaf(a, b):
            self.changed(path, a, b)

    def _walk_container(self, a: Any, b: Any, path: str, depth: int) -> None:
        sub = (path + ".") if path else ""
        if isinstance(a, Opaque):
            if a.cls != b.cls or a.how != b.how:
                self.compared += 1
                self.changed(path, a, b)
                return
            for name, va, vb in (("args", a.args, b.args), ("state", a.state, b.state),
                                 ("items", a.items, b.items),
                                 ("setitems", a.setitems, b.setitems)):
                self.walk(va, vb, f"{sub}({name})", depth + 1)
            return
        if isinstance(a, dict):
            if not a and not b:
                self.compared += 1
                return
            for k, va in a.items():
                if k in b:
                    self.walk(va, b[k], sub + key_name(k), depth + 1)
                else:
                    self.only("only-a", sub + key_name(k), va)
            for k, vb in b.items():
                if k not in a:
                    self.only("only-b", sub + key_name(k), vb)
            return
        if not a and not b:
            self.compared += 1
            return
        for i, (va, vb) in enumerate(zip(a, b)):
            self.walk(va, vb, f"{sub}{i}", depth + 1)
        for i in range(len(b), len(a)):
            self.only("only-a", f"{sub}{i}", a[i])
        for i in range(len(a), len(b)):
            self.only("only-b", f"{sub}{i}", b[i])


def compare_values(a: dict[str, Any], b: dict[str, Any]) -> tuple[list[ValueChange], int]:
    """(changes, number of A's values compared) between two ``value_roots``."""
    cmp = _Comparison()
    for root, va in a.items():
        if root in b:
            cmp.walk(va, b[root], root, 0)
    return cmp.changes, cmp.compared
