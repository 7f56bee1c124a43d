"""Raw weight buffers: tensors laid end to end with no header, read with a layout.

    offset 0          tensor 0: numel * itemsize bytes (C order, little-endian)
    ...               tensor 1, 2, ... in the layout's order, no padding
    size              exactly the sum of the tensors' sizes

This is what ``for p in model.parameters(): f.write(p.detach().numpy().tobytes())`` writes and
what edge runtimes load. The bytes say nothing of the layout, so it comes from ``--layout REF``:
any model file modelport reads (its weights, in file order, are the buffer's) or a JSON list
``[{"name", "dtype", "shape"}]`` with safetensors dtype codes, in byte order. The format is never
sniffed: a raw buffer is whatever bytes the user says it is.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

from ..classify import classify, reselect
from ..dtypes import by_name
from ..errors import InputError, MalformedHeader, UsageError
from ..model import Checkpoint, Storage, TensorEntry
from .base import Format, Options, Probe, Writer

__all__ = ["FORMAT", "read", "load_layout", "layout_json", "Slot", "LAYOUT_SUFFIX"]

LAYOUT_SUFFIX = ".layout.json"  # written beside a raw buffer by `convert --to raw`
_HINT = "check that --layout names the model these bytes were written from, in the same order"


class Slot:
    """One tensor of a layout: name, dtype, shape and its size in bytes."""

    __slots__ = ("name", "dtype", "shape", "nbytes")

    def __init__(self, name: str, dtype: Any, shape: tuple[int, ...]) -> None:
        self.name, self.dtype, self.shape = name, dtype, shape
        self.nbytes = math.prod(shape) * dtype.bits // 8


def _sniff(probe: Probe) -> bool:
    return False  # never by content: only `--layout` makes bytes a raw buffer


def load_layout(ref: str, options: Options) -> list[Slot]:
    """The layout REF describes: a JSON list, or the weights of a model file in file order."""
    from .. import open as open_model

    if os.path.isfile(ref):
        with open(ref, "rb") as f:
            first = f.read(1).lstrip()
        if first == b"[":
            return _json_layout(ref)
    ck = open_model(ref, limits=options.limits)
    slots = [Slot(name, t.dtype, t.shape) for name, t in ck.weights.items()]
    if not slots:
        raise UsageError("the layout file has no weights", path=ref,
                         hint="name a model file with weights, or a JSON layout")
    return slots


def _json_layout(ref: str) -> list[Slot]:
    try:
        with open(ref, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError, RecursionError) as exc:
        raise MalformedHeader(f"the layout is not JSON: {exc}", path=ref,
                              hint='write it as [{"name": ..., "dtype": "F32", "shape": [..]}]'
                              ) from exc
    slots: list[Slot] = []
    names: set[str] = set()
    for i, item in enumerate(data if isinstance(data, list) else [None]):
        where = f"layout entry {i}"
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or \
                not isinstance(item.get("shape"), list) or \
                not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                        for d in item["shape"]):
            raise MalformedHeader(f"{where} is not {{name, dtype, shape}} with a list of sizes",
                                  path=ref, hint='e.g. {"name": "w", "dtype": "F32", '
                                  '"shape": [4, 3]}')
        dtype = by_name(str(item.get("dtype", "")))
        if dtype is None or dtype.bits % 8:
            raise MalformedHeader(f"{where} ({item['name']}): unknown dtype "
                                  f"{item.get('dtype')!r}", path=ref,
                                  hint="use safetensors codes: F32, F16, BF16, I64, U8, BOOL ...")
        if item["name"] in names:
            raise MalformedHeader(f"{where}: the name {item['name']!r} appears twice", path=ref)
        names.add(item["name"])
        slot = Slot(item["name"], dtype, tuple(item["shape"]))
        if "offset" in item and item["offset"] != sum(x.nbytes for x in slots):
            raise MalformedHeader(f"{where} ({item['name']}): offset {item['offset']!r} is not "
                                  f"where the tensors before it end "
                                  f"({sum(x.nbytes for x in slots):,}); a raw buffer has no "
                                  "padding", path=ref, hint="drop the offsets or fix them")
        slots.append(slot)
    return slots


def read(path: str, options: Options) -> Checkpoint:
    if not options.layout:
        raise UsageError("a raw buffer needs its layout", path=path,
                         hint="add --layout MODEL_FILE or --layout LAYOUT.json")
    slots = load_layout(options.layout, options)
    size = os.path.getsize(path)
    need = sum(s.nbytes for s in slots)
    if need != size:
        raise InputError(_mismatch(slots, size, need), path=path, offset=min(need, size),
                         hint=_HINT)
    tree: dict[str, TensorEntry] = {}
    offset = 0
    for s in slots:
        storage = Storage(s.nbytes, path=path, offset=offset, key=s.name)
        tree[s.name] = TensorEntry(s.name, s.dtype, s.shape, storage)
        offset += s.nbytes
    info = {"layout": options.layout}
    return reselect(classify(path, "raw", tree, info=info, file_size=size), options.select)


def _mismatch(slots: list[Slot], size: int, need: int) -> str:
    """Say by how many bytes, and where the first tensor falls that does not fit."""
    if not slots:
        return f"the layout is empty but the buffer has {size:,} bytes"
    head = f"the buffer has {size:,} bytes but the layout needs {need:,}"
    ratio = size / need if need else 0.0
    guess = f"; the sizes differ by {ratio:g}x, as if written in another dtype" \
        if ratio in (0.25, 0.5, 2.0, 4.0) else ""
    if size > need:
        return f"{head} ({size - need:,} extra after the last tensor {slots[-1].name!r}){guess}"
    end = 0
    for i, s in enumerate(slots):
        if end + s.nbytes > size:
            return (f"{head} ({need - size:,} short): tensor {i} {s.name!r} ({s.dtype.name} "
                    f"{list(s.shape)}, {s.nbytes:,} bytes at byte {end:,}) runs past the end"
                    f"{guess}")
        end += s.nbytes
    return head  # unreachable: size < need means some tensor runs past the end


def layout_json(items: list[tuple[str, Any, tuple[int, ...]]]) -> bytes:
    """The JSON layout written beside a raw buffer: name, dtype code, shape, byte offset."""
    out, offset = [], 0
    for name, dtype, shape in items:
        out.append({"name": name, "dtype": dtype.name, "shape": list(shape), "offset": offset})
        offset += math.prod(shape) * dtype.bits // 8
    return (json.dumps(out, indent=1) + "\n").encode()


FORMAT = Format(
    "raw", "raw", _sniff, order=99, title="raw weight buffer", open=f"{__name__}:read",
    writer=Writer("raw", "modelport.convert.writers:write_raw", suffixes=(),
                  holds=lambda d: d.bits % 8 == 0 and d.kind != "q",
                  refuse_hint="sub-byte types have no byte layout; use --to safetensors",
                  sidecar="modelport.convert.writers:raw_layout"))
