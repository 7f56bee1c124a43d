"""Converting to and from GGUF: the writer, and the plan hooks for both directions.

Writer (layout in ``formats/gguf/reader.py``): version 3; the metadata pairs, then one tensor info per
planned item (``ne`` is the item's shape reversed, offsets padded to ``general.alignment``,
32 by default), zero padding, then the tensors in info order, each padded to the alignment:
the order and padding llama.cpp expects. Tensor bytes are streamed like every other writer's
(kernel copies for bytes kept as they are; bounded chunks for casts, Q8_0 quantization and
dequantization).

Where the metadata comes from::

    a GGUF source                  its own pairs, key by key with their types
    safetensors written from GGUF  ``__metadata__["modelport.gguf"]`` (pairs and tensor order),
                                   and ``modelport.ggml`` for tensors kept as raw blocks
                                   (``--keep-quantized``): the GGUF comes back byte for byte
    a Hugging Face LLaMA, Mistral  llama.cpp's architecture keys, tensor names (the gguf
    or Qwen2 folder                package's tables), q/k rows permuted, the tokenizer and
                                   chat template (``gguf_hf``)
    anything else                  tensors under their own names, ``general.name``

The way out of GGUF (``plan_from``): ggml block types are dequantized to F32 (or ``--dtype``) by
the planner unless ``--keep-quantized`` keeps them as U8 rows of blocks in safetensors; the
pairs are carried into safetensors ``__metadata__``; a Hugging Face folder target gets the
Hugging Face names back with the q/k permutation undone, as transformers' GGUF loader does.
"""

from __future__ import annotations

import json
import os
import struct
from typing import Any

from ..dtypes import DType, by_name
from ..errors import MalformedHeader, UsageError
from ..formats.gguf.reader import TYPE_IDS, VALUE_TYPES
from ..model import Checkpoint, TensorEntry
from .plan import Item, Shard, Target
from .stream import Sink, Sources, pieces

__all__ = ["write_gguf", "prepare", "plan_from", "restore_blocks", "pack_value", "GGUF_KEY",
           "GGML_KEY"]

GGUF_KEY = "modelport.gguf"  # safetensors metadata: the GGUF pairs and tensor order, as JSON
GGML_KEY = "modelport.ggml"  # safetensors metadata: {tensor: [ggml type, shape]} of raw blocks
DEFAULT_ALIGNMENT = 32
KVList = list[tuple[str, str, Any]]  # (key, type descriptor, value)

# general.file_type (llama_ftype) by the dtype most tensors are written as.
_FILE_TYPE = {"F32": 0, "F16": 1, "Q8_0": 7, "BF16": 32}


# -- the writer ------------------------------------------------------------------------------------


def _string(text: str) -> bytes:
    raw = text.encode("utf-8", "surrogateescape")  # bytes a GGUF source held, kept as they were
    return struct.pack("<Q", len(raw)) + raw


def pack_value(desc: str, value: Any, key: str = "") -> bytes:
    """A value's bytes without its type id: scalars, ``str``, ``[elem]`` arrays (nested too)."""
    if desc == "str":
        return _string(value)
    if desc.startswith("["):
        inner = desc[1:-1]
        if inner in ("*", "?"):
            raise UsageError(f"metadata key {key!r} is an array of arrays of mixed types, which "
                             "modelport does not write")
        etype = TYPE_IDS["array"] if inner.startswith("[") else TYPE_IDS[inner]
        head = struct.pack("<IQ", etype, len(value))
        if inner == "str":
            return head + b"".join(_string(v) for v in value)
        if inner.startswith("["):
            return head + b"".join(pack_value(inner, v, key) for v in value)
        return head + struct.pack(f"<{len(value)}{VALUE_TYPES[etype][1]}", *value)
    code = VALUE_TYPES[TYPE_IDS[desc]][1]
    return struct.pack("<" + code, value)


def _kv_bytes(kv: KVList) -> bytes:
    out = []
    for key, desc, value in kv:
        vtype = TYPE_IDS["array"] if desc.startswith("[") else TYPE_IDS[desc]
        out.append(_string(key) + struct.pack("<I", vtype) + pack_value(desc, value, key))
    return b"".join(out)


def write_gguf(shard: Shard, sink: Sink, sources: Sources, cast: DType | None) -> None:
    kv: KVList = shard.extra.get("gguf_kv") or []
    align = next((v for k, t, v in kv if k == "general.alignment" and t == "u32"),
                 DEFAULT_ALIGNMENT)
    infos = []
    offset = 0
    for it in shard.items:
        if it.dtype.ggml is None:
            raise UsageError(f"{it.dtype.name} has no ggml type", tensor=it.name)
        ne = tuple(reversed(it.shape))
        infos.append(_string(it.name) + struct.pack("<I", len(ne))
                     + struct.pack(f"<{len(ne)}Q", *ne) + struct.pack("<IQ", it.dtype.ggml, offset))
        size = it.nbytes
        offset += size + (-size % align)
    head = (b"GGUF" + struct.pack("<IQQ", 3, len(shard.items), len(kv)) + _kv_bytes(kv)
            + b"".join(infos))
    sink.write(head + bytes(-len(head) % align if shard.items else 0))
    for it in shard.items:
        for piece in pieces(it.entry, sources, it.dtype):
            sink.put(piece)
        sink.write(bytes(-it.nbytes % align))


# -- metadata as JSON, for safetensors ------------------------------------------------------------


def kv_json(kv: KVList, order: list[str]) -> str:
    return json.dumps({"version": 3, "kv": [[k, t, v] for k, t, v in kv], "tensors": order},
                      separators=(",", ":"), ensure_ascii=False)


def _kv_from_json(text: str, where: str) -> tuple[KVList, list[str]]:
    try:
        doc = json.loads(text)
        kv = [(str(k), str(t), v) for k, t, v in doc["kv"]]
        order = [str(n) for n in doc.get("tensors", [])]
    except (ValueError, KeyError, TypeError, RecursionError) as exc:
        raise MalformedHeader(f"{GGUF_KEY} in the metadata is not what modelport writes: {exc}",
                              path=where, hint="the metadata was edited; convert from the GGUF "
                              "file again") from exc
    return kv, order


def _source_kv(ck: Checkpoint) -> tuple[KVList, list[str]] | None:
    """The GGUF pairs a checkpoint carries: a GGUF file's own, or those recorded in the
    safetensors metadata of a conversion from GGUF."""
    if ck.format == "gguf":
        types = ck.info.get("gguf_types", {})
        return [(k, types[k], v) for k, v in ck.metadata.items()], list(ck.weights)
    from .source import safetensors_metadata

    for meta in safetensors_metadata(ck):
        if GGUF_KEY in meta:
            return _kv_from_json(meta[GGUF_KEY], ck.path)
    return None


# -- plan hooks ------------------------------------------------------------------------------------


def prepare(ck: Checkpoint, target: Target, items: list[Item], *, cast: DType | None,
            keep_quantized: bool, notes: list[str]) -> tuple[list[Item], dict[str, str],
                                                             dict[str, Any]]:
    """The gguf writer's plan hook: metadata pairs, names, tensor order, Q8_0 policy."""
    f32 = by_name("F32")
    assert f32 is not None
    if cast is not None and cast.is_block:
        # As llama.cpp's converter: 1-D tensors (norms, biases) stay F32; a row that is not
        # whole blocks cannot be quantized and keeps its type.
        out = []
        for it in items:
            if it.dtype.name != cast.name:
                out.append(it)
            elif len(it.shape) < 2:
                out.append(Item(it.name, it.entry, f32 if it.entry.dtype.is_float else
                                it.entry.dtype, it.out_shape))
            elif it.shape[-1] % cast.block:
                notes.append(f"{it.name}: rows of {it.shape[-1]} are not whole {cast.name} "
                             "blocks; written unquantized")
                out.append(Item(it.name, it.entry, it.entry.dtype, it.out_shape))
            else:
                out.append(it)
        items = out
    found = _source_kv(ck)
    if found is not None:
        kv, order = found
        rank = {n: i for i, n in enumerate(order)}
        items = sorted(items, key=lambda it: rank.get(it.name, len(rank)))
    else:
        from .. import gguf_hf

        hf = gguf_hf.from_hf(ck, items, notes) if ck.format == "hf-repo" else None
        if hf is not None:
            items, kv = hf
        else:
            stem = os.path.splitext(os.path.basename(ck.path.rstrip(os.sep)))[0]
            kv = [("general.name", "str", stem)]
            notes.append("no architecture metadata: tensors keep their names (llama.cpp loads "
                         "Hugging Face LLaMA, Mistral and Qwen2 folders converted with their "
                         "config.json)")
    if cast is not None:
        counts: dict[str, int] = {}
        for it in items:
            counts[it.dtype.name] = counts.get(it.dtype.name, 0) + it.entry.numel
        main = max(counts, key=lambda k: counts[k]) if counts else None
        if main in _FILE_TYPE:
            kv = [(k, t, v) for k, t, v in kv if k != "general.file_type"]
            kv.append(("general.file_type", "u32", _FILE_TYPE[main]))
    return items, {}, {"gguf_kv": kv}


def plan_from(ck: Checkpoint, target: Target, items: list[Item], *, cast: DType | None,
              keep_quantized: bool, notes: list[str]) -> tuple[list[Item], dict[str, str],
                                                               dict[str, Any]]:
    """A GGUF source's plan hook, for targets other than gguf."""
    from .. import ggml

    if target.format == "gguf":
        return items, {}, {}
    meta: dict[str, str] = {}
    if keep_quantized:
        if target.format != "safetensors":
            raise UsageError("--keep-quantized writes safetensors (raw U8 blocks and the "
                             "metadata that restores them)", hint="name a .safetensors DST")
        kept: dict[str, Any] = {}
        out = []
        for it in items:
            if it.entry.dtype.is_block:
                raw = ggml.raw_entry(it.entry)
                kept[it.name] = [it.entry.dtype.name, list(it.entry.shape)]
                out.append(Item(it.name, raw, raw.dtype))
            else:
                out.append(it)
        items = out
        if kept:
            meta[GGML_KEY] = json.dumps(kept, separators=(",", ":"))
            notes.append(f"--keep-quantized: {len(kept)} tensors kept as raw ggml blocks (U8)")
    elif any(it.entry.dtype.is_block for it in items):
        kinds = sorted({it.entry.dtype.name for it in items if it.entry.dtype.is_block})
        notes.append(f"dequantized {', '.join(kinds)} tensors to "
                     f"{(cast.name if cast else 'F32')} (--keep-quantized keeps the blocks)")
    if target.format == "safetensors":
        found = _source_kv(ck)
        if found is not None:
            meta[GGUF_KEY] = kv_json(*found)
    elif ck.metadata:
        notes.append(f"the GGUF's {len(ck.metadata)} metadata keys (tokenizer, hyper-parameters, "
                     f"chat template) are not kept in {target.format}; safetensors keeps them")
    extra: dict[str, Any] = {}
    if target.folder and target.format == "safetensors":
        from .. import gguf_hf

        items = gguf_hf.to_hf(ck, items, notes)
        cfg = gguf_hf.hf_config(ck, items)
        if cfg is not None:  # the folder loads with transformers' from_pretrained
            extra["side_files"] = {"config.json": json.dumps(cfg, indent=2, sort_keys=True)
                                   .encode() + b"\n"}
    return items, meta, extra


def restore_blocks(ck: Checkpoint, metas: list[dict[str, str]]) -> Checkpoint:
    """Entries that ``--keep-quantized`` stored as U8 rows become ggml-typed again."""
    kept: dict[str, Any] = {}
    for meta in metas:
        if GGML_KEY in meta:
            try:
                kept.update(json.loads(meta[GGML_KEY]))
            except (ValueError, RecursionError) as exc:
                raise MalformedHeader(f"{GGML_KEY} in the metadata is not JSON: {exc}",
                                      path=ck.path) from exc
    if not kept:
        return ck

    def fix(e: TensorEntry) -> TensorEntry:
        spec = kept.get(e.name)
        if spec is None or not isinstance(spec, list) or len(spec) != 2:
            return e
        d = by_name(str(spec[0]))
        shape = tuple(int(x) for x in spec[1]) if isinstance(spec[1], list) else None
        if d is None or not d.is_block or shape is None or e.dtype.name != "U8":
            raise MalformedHeader(f"{GGML_KEY} describes {e.name!r} as {spec!r}", path=ck.path,
                                  tensor=e.name, hint="the metadata was edited")
        restored = TensorEntry(e.name, d, shape, e.storage, 0)
        if restored.nbytes != e.nbytes or not e.is_contiguous or e.storage_offset:
            raise MalformedHeader(f"{spec[0]} {list(shape)} needs {restored.nbytes} bytes, the "
                                  f"stored rows hold {e.nbytes}", path=ck.path, tensor=e.name)
        return restored

    ck.weights = {k: fix(v) for k, v in ck.weights.items()}
    if isinstance(ck.tree, dict):
        ck.tree = {k: fix(v) if isinstance(v, TensorEntry) else v for k, v in ck.tree.items()}
    return ck
