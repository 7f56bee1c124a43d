"""Opening a conversion source, with what modelport's own outputs record put back.

A safetensors file written by ``convert --full`` holds its checkpoint tree as JSON in
``__metadata__["modelport.tree"]``; one written with ``--dedupe`` (or by
``safetensors.torch.save_model``) records each dropped tied name as ``{dropped: kept}``. Reading
it back for ``convert``, ``verify`` or ``diff`` rebuilds that tree, so converting the file to
``.pt`` gives back the original dict and the tied names are all there again.
"""

from __future__ import annotations

import json
import os
from typing import Any

from .. import open as open_checkpoint
from ..classify import classify, flatten_tensors
from ..errors import MalformedHeader, ModelportError, UsageError
from ..formats.safetensors import METADATA_FORMATS
from ..model import Checkpoint, TensorEntry
from . import tree as treemod
from .gguf import GGML_KEY, restore_blocks

__all__ = ["load", "source_files", "safetensors_metadata"]

_RESERVED = frozenset({"format"})


def safetensors_metadata(ck: Checkpoint) -> list[dict[str, str]]:
    """``__metadata__`` of every safetensors file behind a checkpoint."""
    if ck.format not in METADATA_FORMATS:
        return []
    if ck.format == "safetensors":
        return [ck.info.get("metadata") or {}]
    from ..formats.safetensors import parse_header

    out = []
    for shard in ck.info.get("shards", []):
        if shard.get("format") == "safetensors":
            out.append(parse_header(os.path.join(ck.path, shard["file"]))[2] or {})
    return out


def load(path: str, select: str | None = None, *, layout: str | None = None) -> Checkpoint:
    """``modelport.open`` plus the tree and aliases a modelport output recorded. ``layout``:
    PATH is a raw buffer with this layout (formats/raw.py)."""
    if layout is not None:
        return open_checkpoint(path, select=select, layout=layout)
    ck = open_checkpoint(path)
    metas = safetensors_metadata(ck)
    if any(GGML_KEY in m for m in metas):  # --keep-quantized: U8 rows back to ggml blocks
        ck = restore_blocks(ck, metas)
    if not metas:
        return ck if select is None else open_checkpoint(path, select=select)
    tensors: dict[str, TensorEntry] = {}
    for name, entry in flatten_tensors(ck.tree):
        tensors.setdefault(name, entry)
    raw_tree = next((m[treemod.TREE_KEY] for m in metas if treemod.TREE_KEY in m), None)
    aliases = {k: v for m in metas for k, v in m.items()
               if k not in _RESERVED and not k.startswith("modelport.") and k not in tensors
               and v in tensors}
    if raw_tree is None and not aliases:
        return ck if select is None else open_checkpoint(path, select=select)
    tree: Any
    if raw_tree is not None:
        try:
            data = json.loads(raw_tree)
        except (ValueError, RecursionError) as exc:  # RecursionError: "[[[[..." nested too deep
            raise MalformedHeader(f"{treemod.TREE_KEY} in the metadata is not JSON: {exc}",
                                  path=path, hint=treemod._EDITED) from exc
        tree = treemod.decode(data, tensors, where=path)
    else:
        tree = dict(tensors)
        for alias, kept in aliases.items():
            tree[alias] = tensors[kept]
    try:
        out = classify(ck.path, ck.format, tree, info=ck.info, select_path=select,
                       file_size=ck.file_size)
    except KeyError as exc:
        raise UsageError(f"--select {select!r}: no such subtree ({exc})", path=path) from None
    except ModelportError as exc:
        exc.located(path=path)
        raise
    if ck.format == "hf-repo" and "config" in ck.info:
        out.metadata = {"config": ck.info["config"]}
    return out


def source_files(ck: Checkpoint) -> set[str]:
    """Real paths of every file a checkpoint's bytes come from."""
    files = {os.path.realpath(ck.path)} if os.path.isfile(ck.path) else set()
    # Files a reader read besides tensor storages (a SavedModel's graph, a checkpoint's
    # index): scanned before converting, never written over.
    files.update(os.path.realpath(f) for f in ck.info.get("source_files", ()))
    for _, t in flatten_tensors(ck.tree):
        files.update(os.path.realpath(f) for f in t.storage.files)
    for t in ck.tensors():
        files.update(os.path.realpath(f) for f in t.storage.files)
    return files
