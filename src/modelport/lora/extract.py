"""``extract-lora BASE TUNED OUT --rank r``: a PEFT LoRA adapter from the difference of two
models, by truncated SVD, one weight at a time.

For every 2-D weight that differs (same name and shape in both)::

    D = T - W  (float32)      U, S, Vt = svd(D)      B = U[:, :r] * sqrt(S[:r])   [out, r]
                                                     A = sqrt(S[:r])[:, None] * Vt[:r]  [r, in]

so that B @ A is the best rank-r approximation of D (Eckart-Young); ``lora_alpha = r`` makes
peft's scale 1. OUT is a PEFT adapter folder (``adapter_config.json`` +
``adapter_model.safetensors``) that ``PeftModel.from_pretrained`` and ``merge-lora`` read; its
target modules are the full module names, so only the changed weights are adapted. Other
changed tensors (biases, norms, embeddings of another shape) are not low-rank: they are listed
in the result's notes and left out. Memory: one pair of weights and their SVD at a time.
"""

from __future__ import annotations

import json
import os
import struct
import time
from dataclasses import dataclass, field
from typing import Any

from ..errors import InputError, UsageError

__all__ = ["extract_lora", "ExtractResult"]


@dataclass
class ExtractResult:
    out: str
    modules: list[str]
    rank: int
    parameters: int
    seconds: float
    notes: list[str] = field(default_factory=list)


def _f32(entry: Any) -> Any:
    import numpy as np

    from ..convert.cast import cast_array
    from ..dtypes import by_name
    from ..tensors import to_numpy

    arr = np.ascontiguousarray(to_numpy(entry))
    if entry.dtype.name == "F32":
        return arr.astype(np.float32, copy=False)
    f32 = by_name("F32")
    assert f32 is not None
    return cast_array(arr, entry.dtype, f32) if entry.dtype.name in ("F16", "BF16", "F64") \
        else arr.astype(np.float32)


def extract_lora(base: str | os.PathLike[str], tuned: str | os.PathLike[str],
                 out: str | os.PathLike[str], *, rank: int, force: bool = False,
                 min_change: float = 0.0) -> ExtractResult:
    import numpy as np

    from .. import open as open_checkpoint
    from ..convert.engine import Atomic, check_paths_against
    from ..convert.source import source_files

    t0 = time.perf_counter()
    base, tuned, out = os.fspath(base), os.fspath(tuned), os.fspath(out)
    if rank < 1:
        raise UsageError("--rank must be at least 1")
    if os.path.lexists(out) and not force:
        raise UsageError("OUT exists", path=out, hint="use --force to replace it")
    bck, tck = open_checkpoint(base), open_checkpoint(tuned)
    notes = check_paths_against(source_files(bck) | source_files(tck), out, False)
    floats = ("F64", "F32", "F16", "BF16")
    tensors: dict[str, bytes] = {}
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    modules: list[str] = []
    skipped: list[str] = []
    pos = 0
    params = 0
    for name, t in tck.weights.items():
        b = bck.weights.get(name)
        if b is None or b.shape != t.shape or t.dtype.name not in floats or \
                b.dtype.name not in floats:
            if b is None:
                skipped.append(f"{name} (not in BASE)")
            continue
        wt, wb = _f32(t), _f32(b)
        d = wt - wb
        if not np.any(np.abs(d) > min_change):
            continue
        if len(t.shape) != 2 or not name.endswith(".weight") or "embed" in name:
            skipped.append(name)
            continue
        u, s, vt = np.linalg.svd(d, full_matrices=False)
        r = min(rank, s.size)
        root = np.sqrt(s[:r]).astype(np.float32)
        bmat = np.ascontiguousarray(u[:, :r] * root[None, :], dtype=np.float32)
        amat = np.ascontiguousarray(root[:, None] * vt[:r], dtype=np.float32)
        if r < rank:  # a pair must have the configured rank: pad with zero directions
            bmat = np.pad(bmat, ((0, 0), (0, rank - r)))
            amat = np.pad(amat, ((0, rank - r), (0, 0)))
        module = name[: -len(".weight")]
        modules.append(module)
        for suffix, arr in ((".lora_A.weight", amat), (".lora_B.weight", bmat)):
            key = f"base_model.model.{module}{suffix}"
            raw = arr.tobytes()
            header[key] = {"dtype": "F32", "shape": list(arr.shape),
                           "data_offsets": [pos, pos + len(raw)]}
            tensors[key] = raw
            pos += len(raw)
            params += arr.size
    if not modules:
        raise InputError("no 2-D weight differs between BASE and TUNED: nothing to extract",
                         path=tuned)
    if skipped:
        notes.append(f"not low-rank, left out: {', '.join(skipped[:5])}"
                     f"{f' and {len(skipped) - 5} more' if len(skipped) > 5 else ''}")
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    config = {"peft_type": "LORA", "r": rank, "lora_alpha": rank, "lora_dropout": 0.0,
              "target_modules": modules, "base_model_name_or_path": base, "bias": "none",
              "fan_in_fan_out": False, "use_rslora": False, "use_dora": False,
              "task_type": None, "inference_mode": True}
    with Atomic(out, True, force) as atomic:
        with open(atomic.path("adapter_model.safetensors"), "xb") as f:
            f.write(struct.pack("<Q", len(text)) + text)
            for raw in tensors.values():
                f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        with open(atomic.path("adapter_config.json"), "x", encoding="utf-8") as f:
            f.write(json.dumps(config, indent=2) + "\n")
            f.flush()
            os.fsync(f.fileno())
        atomic.commit()
    return ExtractResult(out, modules, rank, params, time.perf_counter() - t0, notes)
