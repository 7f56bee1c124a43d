"""The checkpoint tree as data a writer can hold: validated, tensors named, plain values as JSON.

``--full`` keeps a whole checkpoint (``{"epoch": 3, "model_state_dict": {...},
"optimizer_state_dict": {"state": {0: {...}}, "param_groups": [...]}}``). A torch file pickles
the tree as it is. safetensors has only tensors and a str -> str ``__metadata__``, so the tree
goes there as JSON under ``modelport.tree``, every tensor replaced by a reference to its name,
and every value JSON cannot tell apart tagged (a one-key object with a reserved key)::

    {"__tensor__": "optimizer_state_dict.state.0.exp_avg"}     a tensor of the file
    {"__tuple__": [0.9, 0.999]}   {"__set__": [...]}   {"__frozenset__": [...]}
    {"__dict__": [[0, {...}], [1, {...}]]}    a dict whose keys are not all strings
    {"__float__": "nan"}   {"__bytes__": "<base64>"}   {"__complex__": [re, im]}
    {"__global__": "torch.float32"}           a torch dtype, the only global kept

so ``decode(encode(tree))`` gives a tree equal to the original, int keys and tuples included.
Objects modelport only knows as placeholders (a pickled class instance) cannot be written back:
``check`` refuses them, saying where they are.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Callable, Iterator
from typing import Any

from ..classify import MAX_DEPTH
from ..dtypes import by_torch
from ..errors import LimitExceeded, MalformedHeader, ModelportError, UsageError
from ..model import Opaque, TensorEntry
from ..pickle.machine import Ref
from .pickler import Global

__all__ = ["TREE_KEY", "prepare", "tensor_paths", "encode", "decode", "dotted"]

TREE_KEY = "modelport.tree"  # the __metadata__ key holding the tree
_TAGS = ("__tensor__", "__tuple__", "__set__", "__frozenset__", "__dict__", "__float__",
         "__bytes__", "__complex__", "__global__")
_LIST_TAGS = ("__tuple__", "__set__", "__frozenset__", "__dict__", "__complex__")
_PLAIN = (type(None), bool, int, float, str)


def dotted(path: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in path)


def _torch_global(obj: Any) -> Global | None:
    """A ``torch.<dtype>`` reference (as the symbolic unpickler leaves it), else None."""
    module, name = getattr(obj, "module", None), getattr(obj, "name", None)
    if module == "torch" and isinstance(name, str) and by_torch(name) is not None:
        return Global("torch", name)
    return None


def prepare(tree: Any) -> Any:
    """A copy of the tree's containers with only writable leaves; UsageError says what is not.

    Tensors stay the same objects, so tensors that appear twice stay one tensor.
    """
    bad: list[str] = []
    active: set[int] = set()

    def walk(obj: Any, path: tuple[Any, ...]) -> Any:
        if isinstance(obj, (TensorEntry, Global)) or type(obj) in _PLAIN:
            return obj
        if type(obj) in (bytes, bytearray, complex):
            return obj
        g = _torch_global(obj)
        if g is not None:
            return g
        if isinstance(obj, (dict, list, tuple, set, frozenset)):
            if id(obj) in active:
                bad.append(f"{dotted(path) or '(root)'} (refers to itself)")
                return None
            active.add(id(obj))
            try:
                if isinstance(obj, dict):
                    return {k: walk(v, path + (k,)) for k, v in obj.items()}
                items = [walk(v, path + (i,)) for i, v in enumerate(obj)]
                if isinstance(obj, list):
                    return items
                return tuple(items) if isinstance(obj, tuple) else type(obj)(items)
            finally:
                active.discard(id(obj))
        what = f"<{obj.cls}>" if isinstance(obj, Opaque) else repr(obj)
        bad.append(f"{dotted(path) or '(root)'} = {what}")
        return None

    out = walk(tree, ())
    if bad:
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        raise UsageError(
            f"--full cannot keep objects modelport only knows as placeholders: "
            f"{'; '.join(bad[:3])}{more}",
            hint="they are instances of classes that loading would have to import; drop --full "
                 "to convert the weights, or --select the part of the tree you need")
    return out


def tensor_paths(tree: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], TensorEntry]]:
    """Every tensor position in a prepared tree, in order (dict order, then list order)."""
    if isinstance(tree, TensorEntry):
        yield path, tree
    elif isinstance(tree, dict):
        for k, v in tree.items():
            yield from tensor_paths(v, path + (k,))
    elif isinstance(tree, (list, tuple, set, frozenset)) and not isinstance(tree, Global):
        for i, v in enumerate(tree):
            yield from tensor_paths(v, path + (i,))


def _float(x: float) -> Any:
    return x if math.isfinite(x) else {"__float__": repr(x)}


def encode(tree: Any, name_of: Callable[[tuple[Any, ...], TensorEntry], str]) -> Any:
    """The prepared tree as JSON-able data; ``name_of(path, entry)`` names each tensor."""

    def enc(obj: Any, path: tuple[Any, ...]) -> Any:
        if isinstance(obj, TensorEntry):
            return {"__tensor__": name_of(path, obj)}
        if isinstance(obj, Global):
            return {"__global__": f"{obj.module}.{obj.name}"}
        if isinstance(obj, float):
            return _float(obj)
        if obj is None or isinstance(obj, (bool, int, str)):
            return obj
        if isinstance(obj, (bytes, bytearray)):
            return {"__bytes__": base64.b64encode(bytes(obj)).decode()}
        if isinstance(obj, complex):
            return {"__complex__": [_float(obj.real), _float(obj.imag)]}
        if isinstance(obj, dict):
            if all(isinstance(k, str) for k in obj) and not any(k in _TAGS for k in obj):
                return {k: enc(v, path + (k,)) for k, v in obj.items()}
            return {"__dict__": [[enc(k, path), enc(v, path + (k,))] for k, v in obj.items()]}
        if isinstance(obj, list):
            return [enc(v, path + (i,)) for i, v in enumerate(obj)]
        tags: dict[type, str] = {tuple: "__tuple__", set: "__set__", frozenset: "__frozenset__"}
        tag = tags[type(obj)]
        return {tag: [enc(v, path + (i,)) for i, v in enumerate(obj)]}

    return enc(tree, ())


def _unfloat(x: Any) -> float:
    return float(x["__float__"]) if isinstance(x, dict) else float(x)


def _key(obj: Any) -> Any:
    """Dict keys must be hashable: lists inside keys were tuples or frozensets."""
    return tuple(map(_key, obj)) if isinstance(obj, list) else obj


_EDITED = ("the file was edited after modelport wrote it; remove the modelport.tree key from its "
           "__metadata__ to read it as plain tensors")


def decode(data: Any, tensors: dict[str, TensorEntry], where: str = "") -> Any:
    """The tree ``encode`` wrote, with each tensor reference resolved in ``tensors``.

    The JSON comes from the file, so it is checked as strictly as a header: a malformed tag,
    nesting deeper than ``classify.MAX_DEPTH``, a reference to a tensor the file does not hold,
    or a tensor of the file the tree leaves out (it would be dropped without a word) is a
    ``MalformedHeader``.
    """
    used: set[str] = set()

    def dec(obj: Any, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise LimitExceeded(f"{TREE_KEY} nests more than {MAX_DEPTH} levels deep", path=where,
                                hint="the file is corrupt or hostile")
        if isinstance(obj, list):
            return [dec(v, depth + 1) for v in obj]
        if not isinstance(obj, dict):
            return obj
        if len(obj) == 1:
            (tag, val), = obj.items()
            if tag == "__tensor__":
                if not isinstance(val, str) or val not in tensors:
                    raise MalformedHeader(f"{TREE_KEY} names tensor {val!r}, which the file does "
                                          "not hold", path=where, hint=_EDITED)
                used.add(val)
                return tensors[val]
            if tag in _LIST_TAGS and not isinstance(val, list):
                raise ValueError(f"{tag} holds {type(val).__name__}, not a list")
            if tag == "__tuple__":
                return tuple(dec(v, depth + 1) for v in val)
            if tag in ("__set__", "__frozenset__"):
                items = [_key(dec(v, depth + 1)) for v in val]
                return set(items) if tag == "__set__" else frozenset(items)
            if tag == "__dict__":
                return {_key(dec(k, depth + 1)): dec(v, depth + 1) for k, v in val}
            if tag == "__float__":
                return float(val)
            if tag == "__bytes__":
                return base64.b64decode(val, validate=True)
            if tag == "__complex__":
                re_, im = val
                return complex(_unfloat(re_), _unfloat(im))
            if tag == "__global__":  # as the symbolic unpickler leaves a global: a Ref
                module, _, name = str(val).rpartition(".")
                return Ref(module, name)
        return {k: dec(v, depth + 1) for k, v in obj.items()}

    try:
        out = dec(data, 0)
    except ModelportError:
        raise
    except (TypeError, ValueError, KeyError, IndexError, binascii.Error, RecursionError) as exc:
        # A tag whose value has the wrong shape: {"__tuple__": 5}, {"__dict__": [1]}, ...
        raise MalformedHeader(f"{TREE_KEY} in the metadata is malformed: {exc}", path=where,
                              hint=_EDITED) from exc
    left = [n for n in tensors if n not in used]
    if left:
        shown = ", ".join(map(repr, left[:3])) + (f" and {len(left) - 3} more" if len(left) > 3
                                                  else "")
        raise MalformedHeader(f"{TREE_KEY} leaves out {len(left)} tensor(s) the file holds "
                              f"({shown}): they would be lost", path=where, tensor=left[0],
                              hint=_EDITED)
    return out
