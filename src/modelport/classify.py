"""From a file's tree to a classified Checkpoint: which tensors are the weights, what else is there.

The rule (DESIGN.md "Weights"): the root if it is a flat dict of tensors; else the first subtree
under a WEIGHT_KEYS key that holds tensors; else the parameters and buffers of a pickled module,
named as ``model.state_dict()`` names them. Everything else is "other tensors" (optimizer state,
EMA copies, ...) or plain values.

A pickle's tree is a graph, not a tree: memo GETs make a list that holds itself, or a list that
holds one list twice, forty times over (2**40 paths in 200 bytes). Every walk here goes through
a ``_Walk``: a container already on the current path is not entered again, nesting deeper than
``MAX_DEPTH`` is an error, and so is visiting more than ``MAX_SHARED`` items again through
containers walked before (a tree without sharing visits each item once, in time linear in the
file).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, TypeGuard

from .errors import LimitExceeded
from .model import _TRAINING_KEYS, WEIGHT_KEYS, Checkpoint, GlobalRef, Opaque, TensorEntry
from .pickle.machine import brief

__all__ = ["classify", "flatten_tensors", "module_tensors", "plain", "select"]

_MODULE_ATTRS = ("_parameters", "_buffers", "_modules")
MAX_DEPTH = 200  # containers nested in a checkpoint; real ones nest a few dozen levels at most
MAX_SHARED = 1_000_000  # items visited again through shared containers, in one walk
_PLAIN_DEPTH = 64  # plain values deeper than this are shown as "..."
_CONTAINERS = (dict, list, tuple, Opaque)
_SIZED = (dict, list, tuple, set, frozenset)


class _Walk:
    """One traversal's guard: the containers on the current path, those seen, and the items
    visited again through shared containers."""

    __slots__ = ("path", "seen", "shared")

    def __init__(self) -> None:
        self.path: set[int] = set()
        self.seen: set[int] = set()
        self.shared = 0

    def enter(self, obj: Any, depth: int) -> bool:
        """False if ``obj`` is already on the path (it holds itself): do not walk it again."""
        key = id(obj)  # stable: the tree keeps every object alive during the walk
        if key in self.path:
            return False
        if depth > MAX_DEPTH:
            raise LimitExceeded(f"objects nest more than {MAX_DEPTH} levels deep",
                                hint="the file is corrupt or hostile")
        if key in self.seen:
            self.shared += 1 + (len(obj) if isinstance(obj, _SIZED) else 0)
            if self.shared > MAX_SHARED:
                raise LimitExceeded(
                    f"walking the object tree visits more than {MAX_SHARED} items again "
                    "through containers it shares with itself", hint="the file is a pickle bomb")
        else:
            self.seen.add(key)
        self.path.add(key)
        return True

    def leave(self, obj: Any) -> None:
        self.path.discard(id(obj))


def _key(k: Any) -> str:
    """A dict key as a name; ``str`` of a key nested too deeply or an int of more than 4300
    digits raises, and a name must not."""
    if isinstance(k, str):
        return k
    try:
        return str(k)
    except (RecursionError, ValueError):
        return brief(k)


def _is_module(obj: Any) -> TypeGuard[Opaque]:
    return isinstance(obj, Opaque) and isinstance(obj.state, dict) and "_parameters" in obj.state


def _items(obj: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield _key(k), v
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield str(i), v


def module_tensors(mod: Opaque, prefix: str = "", _walk: _Walk | None = None,
                   _depth: int = 0) -> Iterator[tuple[str, TensorEntry]]:
    """Parameters and persistent buffers of a pickled ``nn.Module``, in state_dict order."""
    walk = _walk or _Walk()
    if not walk.enter(mod, _depth):
        return  # a module that is its own submodule
    state = mod.state
    skip = state.get("_non_persistent_buffers_set") or ()
    skip = {s for s in skip if isinstance(s, str)} if isinstance(
        skip, (set, frozenset, list, tuple)) else set()
    for name, t in _items(state.get("_parameters") or {}):
        if isinstance(t, TensorEntry):
            yield prefix + name, t
    for name, t in _items(state.get("_buffers") or {}):
        if isinstance(t, TensorEntry) and name not in skip:
            yield prefix + name, t
    for name, sub in _items(state.get("_modules") or {}):
        if _is_module(sub):
            yield from module_tensors(sub, f"{prefix}{name}.", walk, _depth + 1)
    walk.leave(mod)


def _script_tensors(obj: Opaque, prefix: str, seen: set[int],
                    depth: int = 0) -> Iterator[tuple[str, TensorEntry]]:
    """Tensor attributes of a TorchScript object tree (parameters and buffers are attributes)."""
    if id(obj) in seen:
        return
    if depth > MAX_DEPTH:
        raise LimitExceeded(f"modules nest more than {MAX_DEPTH} levels deep",
                            hint="the file is corrupt or hostile")
    seen.add(id(obj))
    for name, v in _items(obj.state if isinstance(obj.state, dict) else {}):
        if isinstance(v, TensorEntry):
            yield prefix + name, v
        elif isinstance(v, Opaque):
            yield from _script_tensors(v, f"{prefix}{name}.", seen, depth + 1)


def flatten_tensors(obj: Any, prefix: str = "", _walk: _Walk | None = None,
                    _depth: int = 0) -> Iterator[tuple[str, TensorEntry]]:
    """Every tensor under ``obj`` with its dotted path (modules by their state_dict names)."""
    if isinstance(obj, TensorEntry):
        yield prefix.rstrip("."), obj
        return
    if not isinstance(obj, _CONTAINERS):
        return
    walk = _walk or _Walk()
    if _is_module(obj):
        yield from module_tensors(obj, prefix, walk, _depth)
        return
    if not walk.enter(obj, _depth):
        return  # a container that holds itself: its tensors are named once
    if isinstance(obj, Opaque):
        yield from flatten_tensors(obj.state, prefix, walk, _depth + 1)
        yield from flatten_tensors(list(obj.args) if isinstance(obj.args, tuple) else obj.args,
                                   prefix + "args.", walk, _depth + 1)
    else:
        for k, v in _items(obj):
            if isinstance(v, TensorEntry):  # name it here: rstrip(".") would eat a key's own dots
                yield prefix + k, v
            elif isinstance(v, _CONTAINERS):
                yield from flatten_tensors(v, f"{prefix}{k}.", walk, _depth + 1)
    walk.leave(obj)


def unique_name(name: str, taken: dict[str, Any]) -> str:
    """``name``, or ``name#1``, ``name#2``... if taken: a key "a.b" and a path a > b are two
    tensors with one dotted name, and neither may silently replace the other."""
    cand, i = name, 1
    while cand in taken:
        cand, i = f"{name}#{i}", i + 1
    return cand


def plain(obj: Any, depth: int = 0, _walk: _Walk | None = None) -> Any:
    """A JSON-able copy of the plain values in ``obj``: tensors and opaque objects summarised."""
    if depth > _PLAIN_DEPTH:
        return "..."
    if isinstance(obj, TensorEntry):
        return {"tensor": obj.dtype.name, "shape": list(obj.shape)}
    if isinstance(obj, (dict, list, tuple, set, frozenset, Opaque)):
        walk = _walk or _Walk()
        if not walk.enter(obj, depth):
            return "..."  # it holds itself, as repr() shows [[...]]
        try:
            return _plain_container(obj, depth, walk)
        finally:
            walk.leave(obj)
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return {"bytes": len(obj)}
    if isinstance(obj, int) and obj.bit_length() > 4096:
        return f"<int of {obj.bit_length()} bits>"  # json cannot print more than 4300 digits
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        return obj if obj == obj and obj not in (float("inf"), float("-inf")) else repr(obj)
    try:
        return repr(obj)
    except (RecursionError, ValueError):
        return brief(obj)


def _plain_container(obj: Any, depth: int, walk: _Walk) -> Any:
    if isinstance(obj, Opaque):
        out: dict[str, Any] = {"__class__": obj.cls}
        if obj.args not in ((), None, []):
            out["args"] = plain(obj.args, depth + 1, walk)
        if obj.state is not None:
            out["state"] = plain(obj.state, depth + 1, walk)
        return out
    if isinstance(obj, dict):
        return {_key(k): plain(v, depth + 1, walk) for k, v in obj.items()}
    return [plain(v, depth + 1, walk) for v in obj]


def _without_tensors(obj: Any, depth: int = 0, _walk: _Walk | None = None) -> Any:
    """The tree with every tensor-only branch pruned, for the plain-values view."""
    if isinstance(obj, TensorEntry):
        return None
    walk = _walk or _Walk()
    if isinstance(obj, (dict, list, tuple)):
        if depth > _PLAIN_DEPTH or not walk.enter(obj, depth):
            return "..."
        if isinstance(obj, dict):
            out = {}
            for k, v in obj.items():
                pv = _without_tensors(v, depth + 1, walk)
                if pv is not None or v is None:
                    out[_key(k)] = pv
            result: Any = out if out or not obj else None
        else:
            vals = [_without_tensors(v, depth + 1, walk) for v in obj]
            result = None if obj and all(v is None for v in vals) else vals
        walk.leave(obj)
        return result
    if _is_module(obj):
        return {"__class__": obj.cls}
    return plain(obj, depth, walk)


def _tensor_dict(obj: Any) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(
        isinstance(v, TensorEntry) for v in obj.values()
    )


def select(tree: Any, path: str) -> Any:
    """The subtree at a dotted path ("" is the root); KeyError when it does not exist."""
    node = tree
    for part in filter(None, path.split(".")):
        if isinstance(node, Opaque):
            node = node.state
        if isinstance(node, dict):
            node = node[part] if part in node else node[int(part)] if part.isdigit() else node[part]
        elif isinstance(node, (list, tuple)) and part.isdigit():
            node = node[int(part)]
        else:
            raise KeyError(path)
    return node


def _find_weights(tree: Any) -> tuple[str | None, Any]:
    if _tensor_dict(tree) or _is_module(tree):
        return "", tree
    if isinstance(tree, dict):
        for key in WEIGHT_KEYS:
            sub = tree.get(key)
            if _is_module(sub) or (isinstance(sub, dict) and any(True for _ in flatten_tensors(sub))):
                return key, sub
        # A dict that is mostly nested dicts of tensors (e.g. {"encoder": {...}, "decoder": {...}}).
        if tree and all(isinstance(v, (dict, TensorEntry)) for v in tree.values()) and not (
            set(tree) & _TRAINING_KEYS
        ) and any(True for _ in flatten_tensors(tree)):
            return "", tree
    return None, None


def classify(
    path: str,
    format: str,
    tree: Any,
    *,
    globals: list[GlobalRef] | None = None,
    info: dict[str, Any] | None = None,
    kind: str | None = None,
    select_path: str | None = None,
    file_size: int = 0,
) -> Checkpoint:
    """Build the Checkpoint for a tree. ``kind`` forces the kind (torchscript, onnx-graph)."""
    wpath: str | None
    if select_path is not None:
        wpath, wtree = select_path, select(tree, select_path)
    elif kind == "torchscript" and isinstance(tree, Opaque):
        wpath, wtree = "", dict(_script_tensors(tree, "", set()))
    else:
        wpath, wtree = _find_weights(tree)
    weights: dict[str, TensorEntry] = {}
    if wtree is not None:
        for name, t in flatten_tensors(wtree):
            name = unique_name(name, weights)
            weights[name] = t.renamed(name)
    weight_ids = {id(t) for t in _raw_tensors(wtree)} if wtree is not None else set()
    other: dict[str, TensorEntry] = {}
    for name, t in flatten_tensors(tree):
        if id(t) not in weight_ids:
            name = unique_name(name, other)
            other[name] = t.renamed(name)
    metadata = _without_tensors(tree) if not _tensor_dict(tree) else {}
    if isinstance(metadata, dict) and wpath:
        metadata.pop(wpath, None)
    if not isinstance(metadata, dict):
        metadata = {"value": metadata} if metadata is not None else {}
    needs: list[str] = []
    if kind is None:
        if _is_module(wtree):
            kind = "full-model"
            needs.append(
                f"a whole pickled model: loading it with torch needs the class `{wtree.cls}` "
                "importable; its weights can be extracted without it"
            )
        elif other or (isinstance(tree, dict) and set(map(_key, tree)) & _TRAINING_KEYS):
            kind = "training-checkpoint"
            lightning = _lightning_note(tree, weights, wpath)
            needs.append(
                lightning if lightning else
                f"a training checkpoint: the weights are under {wpath!r}; "
                f"model.load_state_dict(checkpoint[{wpath!r}]) loads them"
                if wpath else "a training checkpoint: weights together with training state"
            )
        else:
            kind = "weights"
    return Checkpoint(
        path=path,
        format=format,
        kind=kind,
        tree=tree,
        weights=weights,
        weights_path=wpath,
        other_tensors=other,
        metadata=metadata,
        globals=list(globals or ()),
        info=dict(info or {}),
        needs=needs,
        file_size=file_size,
    )


def _lightning_note(tree: Any, weights: dict[str, TensorEntry], wpath: str | None) -> str | None:
    """How people load a Lightning checkpoint: the module class, or the bare network with the
    attribute prefix the LightningModule gave it stripped (Lightning saves self.model.x as
    'model.x')."""
    if not isinstance(tree, dict) or "pytorch-lightning_version" not in tree:
        return None
    version = tree.get("pytorch-lightning_version")
    firsts = {n.split(".", 1)[0] for n in weights}
    prefix = next(iter(firsts)) + "." if len(firsts) == 1 and all("." in n for n in weights) \
        else None
    bare = (f"for the bare network, strip the prefix {prefix!r}: net.load_state_dict("
            f"{{k.removeprefix({prefix!r}): v for k, v in checkpoint[{wpath!r}].items()}})"
            if prefix else
            f"its {wpath!r} keys are the LightningModule's own (no common prefix to strip)")
    return (f"a Lightning {version} checkpoint: YourLightningModule.load_from_checkpoint(path) "
            f"rebuilds it with its hyper_parameters; {bare}")


def _raw_tensors(obj: Any) -> Iterator[TensorEntry]:
    for _, t in flatten_tensors(obj):
        yield t


def reselect(ck: Checkpoint, select: str | None) -> Checkpoint:
    """A flat format's Checkpoint with ``--select`` applied to its tree (a prefix of names)."""
    if select is None:
        return ck
    return classify(ck.path, ck.format, ck.tree, globals=ck.globals, info=ck.info,
                    select_path=select, file_size=ck.file_size)
