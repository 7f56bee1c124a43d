"""Planning a conversion: what is written, as which type, into which file; no bytes are read.

    Checkpoint ──select──> tensors (weights, or with --full every tensor under its tree path)
               ──check───> every dtype is one the output format holds
               ──cast────> output dtype per tensor (F64/F32/F16/BF16 only)
               ──dedupe──> one copy per view, the other names recorded as aliases
               ──shard───> files of at most --max-shard-size (huggingface_hub's algorithm)
               ──name────> model-00001-of-0000N.safetensors + index, or one file

Everything here works on entries and sizes, so it is tested without torch. The sharding
algorithm is ``huggingface_hub.split_state_dict_into_shards_factory``'s, over units of
(names, bytes): tensors that share a torch storage form one unit, a unit larger than the limit
gets a shard of its own (placed before the shard being filled), the others fill shards in order.
"""

from __future__ import annotations

import json
import os
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from ..classify import select as select_subtree
from ..dtypes import DType, by_name
from ..errors import UnknownFormat, UsageError
from ..model import Checkpoint, Storage, TensorEntry
from . import tree as treemod
from .cast import TARGETS, out_dtype
from .stream import check_bounds

__all__ = ["Target", "Item", "Shard", "Plan", "parse_size", "resolve_target",
           "storage_id", "view_id", "split_units", "make_plan", "DEFAULT_SHARD_SIZE"]

DEFAULT_SHARD_SIZE = 5_000_000_000  # "5GB", as huggingface_hub and transformers
_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}



def _formats() -> dict[str, tuple[tuple[str, ...], tuple[str, str, str] | None]]:
    """Output format -> (file suffixes that imply it, folder layout), from the registry."""
    from ..formats import writers

    return {w.name: (w.suffixes, w.folder) for w in writers().values()}


def _to(name: str) -> str | None:
    from ..formats import writers

    w = writers().get(name)
    return w.name if w else None


def parse_size(text: str | int) -> int:
    """``5GB`` -> 5 * 10**9, ``500MiB`` -> 500 * 2**20, ``1000`` -> 1000 (huggingface_hub's units)."""
    if isinstance(text, int):
        return text
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]I?B|B)?\s*", text, re.IGNORECASE)
    if not m:
        raise UsageError(f"bad size {text!r}", hint="write it like 5GB, 500MB or 2GiB")
    size = int(float(m.group(1)) * _UNITS[(m.group(2) or "").upper()])
    if size <= 0:
        raise UsageError(f"size {text!r} must be positive")
    return size


@dataclass(frozen=True)
class Target:
    format: str  # safetensors | torch | npz
    folder: bool  # a Hugging Face folder layout


# Output names people try that convert does not write, and what does.
_NOT_WRITTEN = {
    ".onnx": "convert does not write ONNX: a graph needs the model's code; `modelport export "
             "SRC DST.onnx` builds it (for recognised architectures, TorchScript, or --model)",
    ".h5": "Keras/HDF5 files are read, not written: convert to .safetensors, .pt or .npz",
    ".keras": "Keras files are read, not written: convert to .safetensors, .pt or .npz",
    ".tflite": "TFLite files are read, not written: convert to .safetensors, .pt or .npz",
    ".pb": "TensorFlow graphs are read, not written: convert to .safetensors, .pt or .npz",
}


def resolve_target(dst: str, to: str | None = None) -> Target:
    """DST's format: ``--to`` if given, else its suffix; a folder if it is one or has no suffix."""
    fmt = None
    if to is not None:
        fmt = _to(to.lower())
        if fmt is None:
            raise UsageError(f"--to {to}: unknown output format",
                             hint="use one of safetensors, torch, npz")
    name = os.path.basename(dst.rstrip("/" + os.sep))
    suffix = os.path.splitext(name)[1].lower()
    folder = os.path.isdir(dst) or dst.endswith(("/", os.sep)) or not suffix
    if fmt is None:
        if folder:
            fmt = "safetensors"
        else:
            fmt = next((f for f, (sfx, _) in _formats().items() if suffix in sfx), None)
            if fmt is None:
                from ..formats import writer_names

                known = _NOT_WRITTEN.get(suffix)
                raise UsageError(
                    known or f"cannot tell the output format from the name {name!r}", path=dst,
                    hint=f"name a file {', '.join(s for f in _formats().values() for s in f[0])}"
                    f", a folder, or use --to {{{','.join(writer_names())}}}")
    if folder and _formats()[fmt][1] is None:
        raise UsageError(f"{fmt} has no folder layout; name a .npz file", path=dst)
    return Target(fmt, folder)


def storage_id(st: Storage) -> tuple:
    """Which bytes a storage is: a run of a file, or one in-memory buffer. The length is part
    of it: an empty tensor's storage starts where the next tensor's does (safetensors)."""
    if st.data is not None:
        return ("mem", id(st.data), st.nbytes)
    if st.compute is not None:  # bytes made when read: one per function (the storage keeps it)
        return ("computed", id(st.compute), st.nbytes)
    if st.parts:  # a tensor saved in slices: the runs it joins (path is None for it)
        return ("parts", tuple(storage_id(p) for p in st.parts))
    return ("file", st.path, st.offset, st.nbytes)


def view_id(e: TensorEntry) -> tuple:
    """Two entries with the same view id are the same tensor (tied weights)."""
    return (storage_id(e.storage), e.storage_offset, e.shape, e.strides or e.contiguous_strides,
            e.dtype.name)


@dataclass(frozen=True)
class Item:
    """One tensor to write: ``entry`` read, written as ``dtype`` under ``name``."""

    name: str
    entry: TensorEntry
    dtype: DType
    # The shape written, when it is not the entry's: a view that reorders rows (llama.cpp's q/k
    # permutation) is read in C order as (n_head, 2, d, cols) and written as (rows, cols).
    out_shape: tuple[int, ...] | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        return self.out_shape if self.out_shape is not None else self.entry.shape

    @property
    def nbytes(self) -> int:
        return self.dtype.size(self.entry.numel)  # ggml block types: whole blocks


@dataclass
class Shard:
    file: str  # name inside the DST folder, or "" for DST itself
    items: list[Item]
    nbytes: int = 0  # tensor bytes written (torch: storage bytes)
    tree: Any = None  # torch: the object pickled (an OrderedDict of the items, or the full tree)
    metadata: dict[str, str] = field(default_factory=dict)  # safetensors __metadata__
    extra: dict[str, Any] = field(default_factory=dict)  # what a format's prepare hook adds


@dataclass
class Plan:
    target: Target
    shards: list[Shard]
    cast: DType | None
    index: dict[str, Any] | None = None  # the folder's index JSON
    aliases: dict[str, str] = field(default_factory=dict)  # name not stored -> name stored
    notes: list[str] = field(default_factory=list)
    full: bool = False

    @property
    def total(self) -> int:
        return sum(s.nbytes for s in self.shards)


# -- what gets written ---------------------------------------------------------------------------


def _value(v: Any) -> str | None:
    if isinstance(v, bool) or v is None or isinstance(v, (int, float)):
        return f"{v:.4g}" if isinstance(v, float) else str(v)
    if isinstance(v, str) and len(v) <= 24:
        return v
    return None


_KIND_NOTES = {
    "full-model": "the pickled model object ({cls}) is not kept, only its weights",
    "torchscript": "the TorchScript code is not kept, only parameters and buffers",
    "onnx-graph": "the ONNX graph is not kept, only its initializers",
}


def left_out(ck: Checkpoint) -> str | None:
    """The one-line note of what a weights-only conversion leaves behind."""
    parts: list[str] = []
    groups: dict[str, int] = OrderedDict()
    for name in ck.other_tensors:
        top = name.split(".")[0]
        groups[top] = groups.get(top, 0) + 1
    parts += [f"{k}: {n} tensor{'s' * (n != 1)}" for k, n in groups.items()]
    # A folder's config.json is not part of the tree (and is copied along with the weights).
    # A folder's config.json is copied along; a GGUF's pairs are the gguf hook's to carry.
    meta = ck.metadata if isinstance(ck.metadata, dict) and ck.format not in ("hf-repo", "gguf") \
        else {}
    if ck.kind in ("weights", "training-checkpoint"):
        for k, v in meta.items():
            if k in groups or k == "__class__":
                continue
            text = _value(v)
            parts.append(f"{k}={text}" if text is not None else k)
    if len(parts) > 8:
        parts = parts[:8] + [f"{len(parts) - 8} more"]
    kind = _KIND_NOTES.get(ck.kind)
    if kind:
        cls = getattr(select_subtree(ck.tree, ck.weights_path or ""), "cls", "?")
        return kind.format(cls=cls)
    if not parts:
        return None
    return f"left out {', '.join(parts)}; use --full to keep them"


def _unique(names: list[str]) -> list[str]:
    seen: set[str] = set()
    out = []
    for n in names:
        cand, i = n, 1
        while cand in seen:
            cand, i = f"{n}#{i}", i + 1
        seen.add(cand)
        out.append(cand)
    return out


def _full_tensors(tree: Any) -> tuple[list[tuple[str, TensorEntry]], dict[tuple, str]]:
    """(name, entry) per tensor position, named by its dotted tree path; and path -> name."""
    positions = list(treemod.tensor_paths(tree))
    names = _unique([treemod.dotted(p) for p, _ in positions])
    return [(n, e) for n, (_, e) in zip(names, positions)], {
        p: n for n, (p, _) in zip(names, positions)}


# -- checks --------------------------------------------------------------------------------------


def _check(items: list[Item], fmt: str, path: str | None = None) -> None:
    from ..formats import writer_for

    writer = writer_for(fmt)
    for it in items:
        # A view that reaches past its storage (a corrupt file) would be written as it is by
        # the torch writer, which copies whole storages: torch.load then refuses the output.
        check_bounds(it.entry)
        if it.entry.quant is not None:
            raise UsageError(f"quantized tensor ({it.entry.dtype.name}): modelport does not "
                             "convert quantized tensors yet", tensor=it.name, path=path)
        if writer.holds is not None and not writer.holds(it.dtype):
            raise UsageError(f"{it.dtype.name} is a type {fmt} cannot hold", tensor=it.name,
                             hint=writer.refuse_hint, path=path)
    if fmt == "safetensors" and any(it.name == "__metadata__" for it in items):
        raise UsageError("a tensor named '__metadata__' cannot be written to safetensors",
                         path=path, tensor="__metadata__")


# -- sharding ------------------------------------------------------------------------------------


def split_units(units: list[tuple[list[str], int]], max_size: int) -> list[list[str]]:
    """huggingface_hub's split over (names, bytes) units; see the module docstring."""
    shards: list[list[str]] = []
    current: list[str] = []
    size = 0
    for names, nbytes in units:
        if nbytes > max_size:
            shards.append(list(names))
            continue
        if current and size + nbytes > max_size:
            shards.append(current)
            current, size = [], 0
        current += names
        size += nbytes
    if current:
        shards.append(current)
    return shards or [[]]


def torch_storages(items: list[Item]) -> dict[tuple, tuple[Storage, DType, DType]]:
    """storage id -> (storage, its dtype, output dtype), for storages all views agree on.

    A storage viewed with two dtypes (torch.save refuses to write one) gets no entry: each of
    its views is then written as a storage of its own.
    """
    seen: dict[tuple, tuple[Storage, DType, DType]] = {}
    mixed: set[tuple] = set()
    for it in items:
        sid = storage_id(it.entry.storage)
        prev = seen.get(sid)
        if prev is not None and (prev[1].name, prev[2].name) != (it.entry.dtype.name,
                                                                 it.dtype.name):
            mixed.add(sid)
        seen.setdefault(sid, (it.entry.storage, it.entry.dtype, it.dtype))
    return {k: v for k, v in seen.items() if k not in mixed and
            v[0].nbytes % v[1].itemsize == 0}


def _storage_bytes(st: Storage, src: DType, dst: DType) -> int:
    return st.nbytes // src.itemsize * dst.itemsize


def _units(items: list[Item], fmt: str) -> list[tuple[list[str], int]]:
    """Sharding units: one per tensor, or per torch storage (views of it travel together)."""
    if fmt != "torch":
        return [([it.name], it.nbytes) for it in items]
    storages = torch_storages(items)
    order: dict[Any, list[str]] = OrderedDict()
    size: dict[Any, int] = {}
    for it in items:
        sid = storage_id(it.entry.storage)
        key = sid if sid in storages else ("own", it.name)
        order.setdefault(key, []).append(it.name)
        if key not in size:
            size[key] = (_storage_bytes(*storages[sid]) if sid in storages else it.nbytes)
    return [(names, size[key]) for key, names in order.items()]


def shard_bytes(items: list[Item], fmt: str) -> int:
    return sum(n for _, n in _units(items, fmt))


# -- the plan ------------------------------------------------------------------------------------


def _adapt(ck: Checkpoint, target: Target, items: list[Item], cast: DType | None,
           keep_quantized: bool, notes: list[str]) -> tuple[list[Item], dict[str, str],
                                                            dict[str, Any]]:
    """The format hooks: the source format's ``extras["plan_from"]`` (what its tensors become
    in another format) and the target writer's ``prepare`` (names, metadata, layouts it
    needs). Each is ``(ck, target, items, cast=, keep_quantized=, notes=)`` -> (items,
    safetensors metadata to add, what the writer reads from ``Shard.extra``)."""
    from ..formats import get, writer_for
    from ..formats.base import resolve

    writer = writer_for(target.format)
    f32 = by_name("F32")
    assert f32 is not None
    # A ggml block type (Q4_K ...) is dequantized unless the target writes blocks as they are.
    if not writer.blocks:
        items = [Item(it.name, it.entry, cast or f32, it.out_shape)
                 if it.dtype.is_block and not keep_quantized else it for it in items]
    elif cast is not None and not cast.is_block:
        items = [Item(it.name, it.entry, cast, it.out_shape) if it.dtype.is_block else it
                 for it in items]
    meta: dict[str, str] = {}
    extra: dict[str, Any] = {}
    hooks = []
    try:
        hooks.append(get(ck.format).extras.get("plan_from"))
    except UnknownFormat:
        pass
    hooks.append(writer.prepare)
    for hook in hooks:
        if hook:
            items, more_meta, more_extra = resolve(hook)(
                ck, target, items, cast=cast, keep_quantized=keep_quantized, notes=notes)
            meta.update(more_meta)
            extra.update(more_extra)
    if keep_quantized and any(it.dtype.is_block for it in items) and not writer.blocks:
        raise UsageError(f"--keep-quantized: {target.format} cannot hold ggml blocks",
                         hint="write safetensors (raw U8 blocks) or gguf")
    return items, meta, extra


def make_plan(ck: Checkpoint, target: Target, *, dtype: str | DType | None = None,
              full: bool = False, select: str | None = None, dedupe: bool = False,
              max_shard_size: int | str | None = None, keep_quantized: bool = False) -> Plan:
    from ..formats import writer_for

    fmt = target.format
    cast = by_name(dtype.upper()) if isinstance(dtype, str) else dtype
    casts = (*TARGETS, *writer_for(fmt).casts)
    if dtype is not None and (cast is None or cast.name not in casts):
        raise UsageError(f"--dtype {dtype}: cast to one of {', '.join(casts)}",
                         hint="ggml block types (Q8_0) are written to gguf only")
    if max_shard_size is not None and not target.folder:
        raise UsageError("--max-shard-size needs a folder DST (the sharded Hugging Face layout)",
                         hint="name a folder, e.g. ./out")
    limit = parse_size(max_shard_size) if max_shard_size is not None else DEFAULT_SHARD_SIZE
    notes: list[str] = []
    tree = None
    if full:
        if fmt == "npz":
            raise UsageError("--full needs a format that holds plain values too",
                             hint="use a .safetensors or .pt DST")
        if fmt == "torch" and target.folder:
            raise UsageError("--full writes one torch file, not a sharded folder",
                             hint="name a .pt file")
        try:
            tree = treemod.prepare(select_subtree(ck.tree, select) if select else ck.tree)
        except UsageError as exc:
            raise exc.located(path=ck.path) from None
        named, at = _full_tensors(tree)
    else:
        named = list(ck.weights.items())
        note = left_out(ck)
        if note:
            notes.append(note)
    items = [Item(n, e, out_dtype(e.dtype, cast)) for n, e in named]
    items, carried, extra = _adapt(ck, target, items, cast, keep_quantized, notes)
    _check(items, fmt, ck.path)
    if cast is not None:
        kept = [it for it in items if it.dtype.name == it.entry.dtype.name != cast.name]
        moved = len(items) - len(kept) - sum(it.entry.dtype.name == cast.name for it in items)
        if kept:
            kinds = sorted({it.dtype.name for it in kept})
            notes.append(f"cast {moved} tensors to {cast.name}; {len(kept)} left as they are "
                         f"({', '.join(kinds)}: only F64/F32/F16/BF16 are cast)")

    aliases: dict[str, str] = {}
    if dedupe:
        if fmt == "npz":
            raise UsageError("--dedupe records aliases in metadata, which npz has no place for")
        if fmt == "safetensors":  # torch files share storages natively: nothing to do there
            first: dict[tuple, str] = {}
            kept_items = []
            for it in items:
                vid = view_id(it.entry)
                if vid in first:
                    aliases[it.name] = first[vid]
                else:
                    first[vid] = it.name
                    kept_items.append(it)
            items = kept_items
            if aliases:
                shown = ", ".join(f"{a} -> {k}" for a, k in list(aliases.items())[:3])
                notes.append(f"--dedupe: {len(aliases)} tied tensor name(s) stored once "
                             f"({shown}{', ...' if len(aliases) > 3 else ''})")
    elif fmt != "torch":  # torch files keep one storage for tied names; other formats copy
        seen: dict[tuple, str] = {}
        tied = [(it.name, seen.setdefault(view_id(it.entry), it.name)) for it in items]
        tied = [(a, k) for a, k in tied if a != k]
        if tied:
            shown = ", ".join(f"{a} = {k}" for a, k in tied[:3])
            notes.append(f"{len(tied)} tied tensor name(s) ({shown}{', ...' if len(tied) > 3 else ''})"
                         " are written as separate copies; --dedupe stores each tensor once"
                         + ("" if fmt == "npz" else " and records the names"))

    by_name_ = {it.name: it for it in items}
    groups = split_units(_units(items, fmt), limit) if target.folder else [[it.name for it in items]]
    shards = [Shard("", [by_name_[n] for n in names]) for names in groups]
    index = None
    if target.folder:
        stem, suffix, index_name = _formats()[fmt][1]  # type: ignore[misc]
        n = len(shards)
        for i, s in enumerate(shards):
            s.file = f"{stem}{suffix}" if n == 1 else f"{stem}-{i + 1:05d}-of-{n:05d}{suffix}"
    for s in shards:
        s.nbytes = shard_bytes(s.items, fmt)
        if fmt == "torch":
            s.tree = tree if full else OrderedDict((it.name, it.entry) for it in s.items)
        if fmt == "safetensors":
            s.metadata = {"format": "pt"}
            names = {it.name for it in s.items}
            s.metadata.update({a: k for a, k in aliases.items() if k in names})
        s.extra = extra
    if fmt == "safetensors" and carried:
        shards[0].metadata.update(carried)
    if fmt == "safetensors" and full:
        # Each position names its own tensor, or the copy --dedupe kept of it.
        data = treemod.encode(tree, lambda path, e: aliases.get(at[path], at[path]))
        shards[0].metadata[treemod.TREE_KEY] = json.dumps(data, separators=(",", ":"),
                                                          ensure_ascii=False)
    if target.folder and len(shards) > 1:
        index = {
            "metadata": {"total_parameters": sum(it.entry.numel for it in items),
                         "total_size": sum(s.nbytes for s in shards)},
            "weight_map": {it.name: s.file for s in shards for it in s.items},
        }
    return Plan(target, shards, cast, index, aliases, notes, full)

