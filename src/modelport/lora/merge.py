"""``merge-lora BASE ADAPTER OUT``: every LoRA update folded into its base weight, streaming.

    W' = W + scale * (B @ A)            scale = alpha / r   (alpha / sqrt(r) with use_rslora)
    W' = (B @ A).T * scale + W           fan_in_fan_out (GPT-2 Conv1D stores W as [in, out]) and
                                         embeddings (lora_embedding_A is [r, num_embeddings])
    W' = m / ||W + dW||_row * (W + dW)   DoRA (use_dora): m is lora_magnitude_vector, the norm
                                         is taken per output (peft DoraLinearLayer.get_weight_norm)

as peft's ``LoraLayer.merge`` / ``get_delta_weight`` compute it (peft/tuners/lora/layer.py):
the product and scale in the adapter's dtype, or in float32 and rounded back to it when the
adapter is F16/BF16 (peft does the same on CPU), then added to the base weight in float32 and
rounded once to the base weight's dtype. ``lora_dropout`` only acts in training: ignored.

Nothing is loaded whole. BASE goes through ``convert``'s engine (the same planning, writers,
sharding, atomic output and side files as ``modelport convert``); every targeted weight is
replaced by an entry whose bytes are computed when the writer reaches it, in row blocks, so
memory holds one merged weight (in the base's dtype) plus a block of float32 work at a time.
Untouched weights are copied as they are (in the kernel where the layout allows).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from typing import TYPE_CHECKING, Any

from ..dtypes import TRAINING_FLOATS, DType, by_name
from ..errors import InputError, UsageError
from ..model import Checkpoint, Storage, TensorEntry
from .adapter import Adapter, LoraPair, _alpha_value

if TYPE_CHECKING:
    import numpy as np

    from ..convert.engine import ConvertResult

__all__ = ["merge_lora", "Update", "plan_updates"]

_BLOCK = 4 << 20  # bytes of float32 work per row block
# peft tuner types that are not low-rank B @ A updates: merged some other way, refused by name
_NOT_LORA = {"LOHA": "LoHa (Hadamard product of two low-rank pairs)",
             "LOKR": "LoKr (Kronecker product)", "IA3": "IA3 (learned rescaling vectors)",
             "ADALORA": "AdaLoRA (P, Lambda, Q factors)", "OFT": "OFT (orthogonal rotation)",
             "BOFT": "BOFT (butterfly orthogonal rotation)", "VERA": "VeRA (shared frozen "
             "matrices with scaling vectors)", "PROMPT_TUNING": "prompt tuning (virtual tokens, "
             "nothing to merge)", "PREFIX_TUNING": "prefix tuning (nothing to merge)",
             "P_TUNING": "p-tuning (nothing to merge)"}


@dataclass(frozen=True)
class Update:
    """One low-rank update of one base weight."""

    pair: LoraPair
    scale: float
    transposed: bool  # W is stored [in, out]: the update is (B @ A).T

    @property
    def dora(self) -> bool:
        return self.pair.magnitude is not None


def _resolve(wanted: str, names: dict[str, TensorEntry], suffix_index: dict[str, list[str]]
             ) -> str | None:
    """The base's name for ``wanted``: itself, or the one base name that ends with it (a base
    saved without or with an outer prefix: ``model.`` of a bare LlamaModel, ``transformer.``)."""
    if wanted in names:
        return wanted
    hits = suffix_index.get(wanted, [])
    if len(hits) == 1:
        return hits[0]
    parts = wanted.split(".")
    for i in range(1, len(parts) - 1):  # the adapter names an outer prefix the base lacks
        cand = ".".join(parts[i:])
        if cand in names:
            return cand
    return None


def _suffixes(names: dict[str, TensorEntry]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for n in names:
        parts = n.split(".")
        for i in range(1, len(parts)):
            out.setdefault(".".join(parts[i:]), []).append(n)
    return out


def _kohya_index(names: dict[str, TensorEntry]) -> dict[str, str]:
    """kohya module names (dots as underscores) -> base weight names."""
    out: dict[str, str] = {}
    for n in names:
        if n.endswith(".weight"):
            out[n[: -len(".weight")].replace(".", "_")] = n
    return out


def plan_updates(base: dict[str, TensorEntry], adapter: Adapter
                 ) -> tuple[dict[str, list[Update]], dict[str, TensorEntry], dict[str, tuple[
                     TensorEntry, float]], list[str]]:
    """(updates per base weight, base tensors the adapter replaces, lora_B biases per base bias
    with their scale, notes); UsageError for anything that cannot be merged as peft would."""
    cfg = adapter.config
    ptype = str(cfg.get("peft_type") or "LORA").upper()
    if ptype != "LORA":
        what = _NOT_LORA.get(ptype, ptype)
        raise UsageError(f"the adapter is {what}, not LoRA: merge-lora merges LoRA (and DoRA) "
                         "adapters only", hint="merge it with peft's merge_and_unload()")
    fifo = bool(cfg.get("fan_in_fan_out"))
    suffix_index = _suffixes(base)
    kohya = _kohya_index(base) if adapter.style == "kohya" else {}
    updates: dict[str, list[Update]] = {}
    for pair in adapter.pairs:
        if pair.style == "kohya":
            stem = pair.module.split("_", 2)[-1] if pair.module.startswith("lora_") else \
                pair.module
            target = kohya.get(stem) or _resolve(pair.module + ".weight", base, suffix_index)
            alpha = _alpha_value(pair.alpha_entry)
        else:
            target = _resolve(pair.module + ".weight", base, suffix_index)
            alpha = None
        if target is None:
            raise UsageError(f"the adapter updates {pair.module}, which has no weight in BASE",
                             tensor=pair.module + ".weight",
                             hint="is BASE the model this adapter was trained on? (inspect "
                             "ADAPTER shows its base model)")
        w = base[target]
        if w.dtype.name not in TRAINING_FLOATS:
            raise UsageError(f"{target} is {w.dtype.name}: LoRA merges into floating-point "
                             "weights only (dequantize BASE first)", tensor=target)
        if pair.rank == 0 or pair.b.shape[1:2] != (pair.rank,) or any(
                d != 1 for d in pair.b.shape[2:]):
            raise UsageError(f"lora_B of {pair.module} is {list(pair.b.shape)}, which does not "
                             f"match lora_A's rank {pair.rank}", tensor=pair.module)
        if pair.magnitude is not None and (pair.embedding or len(w.shape) != 2):
            layer = "an embedding" if pair.embedding else "a convolution"
            raise UsageError(f"DoRA on {pair.module} ({layer}): modelport merges DoRA on linear "
                             "layers only",
                             tensor=pair.module, hint="merge it with peft's merge_and_unload()")
        transposed = pair.embedding or (fifo and pair.style == "peft")
        out_dim, in_numel = pair.b.shape[0], pair.a.numel // pair.rank
        rows = w.shape[0] if w.shape else 0
        cols = w.numel // rows if rows else 0
        want = (in_numel, out_dim) if transposed else (out_dim, in_numel)
        if (rows, cols) != want:
            raise UsageError(f"{pair.module}: the update is {want[0]} x {want[1]} but the base "
                             f"weight {target} is {list(w.shape)}", tensor=target,
                             hint="fan_in_fan_out layers (GPT-2 Conv1D) need it set in "
                             "adapter_config.json" if not transposed else None)
        if pair.magnitude is not None and pair.magnitude.numel != out_dim:
            raise UsageError(f"{pair.module}: DoRA magnitude has {pair.magnitude.numel} values "
                             f"for {out_dim} outputs", tensor=pair.module)
        updates.setdefault(target, []).append(Update(pair, adapter.scale(pair, alpha),
                                                     transposed))
    replaced: dict[str, TensorEntry] = {}
    biases: dict[str, tuple[TensorEntry, float]] = {}
    by_module = {p.module: p for p in adapter.pairs}
    for name, t in adapter.extra.items():
        clean = name[len("base_model.model."):] if name.startswith("base_model.model.") else name
        if clean.endswith(".lora_B.bias"):  # peft lora_bias=True: bias += B.bias * scale
            module = clean[: -len(".lora_B.bias")]
            owner = by_module.get(module)
            target = _resolve(module + ".bias", base, suffix_index)
            if owner is None or target is None:
                raise UsageError(f"{name}: a LoRA bias without its pair or base bias",
                                 tensor=name)
            biases[target] = (t, adapter.scale(owner))
            continue
        clean = clean.replace(".modules_to_save.", ".")  # a trained full copy of a module
        target = _resolve(clean, base, suffix_index)
        if target is None or base[target].shape != t.shape:
            raise UsageError(f"adapter tensor {name} is neither a LoRA pair nor a replacement "
                             "for a BASE tensor of its shape", tensor=name,
                             hint="merge it with peft's merge_and_unload()")
        replaced[target] = t
    notes = []
    if replaced:
        notes.append(f"{len(replaced)} BASE tensor(s) replaced by the adapter's trained copies "
                     f"({', '.join(list(replaced)[:3])}{', ...' if len(replaced) > 3 else ''})")
    return updates, replaced, biases, notes


# -- the arithmetic ------------------------------------------------------------------------------


def _dtype(name: str) -> DType:
    found = by_name(name)
    assert found is not None, name
    return found


def _work(dtype_name: str) -> Any:
    import numpy as np

    return np.float64 if dtype_name == "F64" else np.float32


def _factors(pair: LoraPair, work: Any) -> tuple[np.ndarray, np.ndarray, Any]:
    """(B [out, r], A [r, in]) as numbers, and the dtype peft rounds the update to."""
    import numpy as np

    from ..tensors import to_numpy

    a = to_numpy(pair.a).reshape(pair.rank, -1)
    b = to_numpy(pair.b).reshape(pair.b.shape[0], pair.rank)
    adt = pair.b.dtype.name
    rnd = _dtype(adt).np_dtype() if adt in ("F16", "BF16") else None
    return b.astype(work), a.astype(work), rnd if rnd is not None else np.dtype(work)


def _delta(u: Update, b: np.ndarray, a: np.ndarray, rnd: Any, i: int, j: int, work: Any
           ) -> np.ndarray:
    """Rows i:j of the update in W's layout, as peft makes it: (B @ A) * scale, rounded to the
    adapter's dtype, transposed for [in, out] weights."""
    s = work(u.scale)
    d = (b @ a[:, i:j]).T * s if u.transposed else (b[i:j] @ a) * s
    return d.astype(rnd).astype(work) if rnd != work else d


class _Rows:
    """A 2-D view of a base weight read row block by row block with ``pread`` into fresh
    buffers: pages of a shared map would stay in this process's RSS (a 2 GB base merged
    through mmap peaked at 1.6 GB, through pread at about one weight). Strided or in-memory
    tensors fall back to a numpy view."""

    def __init__(self, entry: TensorEntry) -> None:
        st = entry.storage
        rows = entry.shape[0] if entry.shape else 1
        self.shape = (rows, entry.numel // rows if rows else 0)
        self.entry = entry
        self.dt = entry.dtype.np_dtype()
        self.direct = (st.path is not None and not st.in_memory and not st.parts
                       and entry.is_contiguous)
        self.view = None if self.direct else _numpy_2d(entry, self.shape)

    def __getitem__(self, rows: slice) -> np.ndarray:
        import numpy as np

        if self.view is not None:
            return self.view[rows]
        from .. import remote

        i, j, _ = rows.indices(self.shape[0])
        st = self.entry.storage
        assert st.path is not None
        row = self.shape[1] * self.dt.itemsize
        start, n = st.offset + self.entry.byte_offset + i * row, (j - i) * row
        remote.ensure(st.path, start, n)
        buf = bytearray(n)
        with open(st.path, "rb", buffering=0) as f:
            got = f.readinto(memoryview(buf)) if f.seek(start) == start else 0
        if got != n:
            from ..errors import Truncated

            raise Truncated(f"file ends before the tensor does ({got} of {n} bytes)",
                            path=st.path, tensor=self.entry.name, offset=start)
        return np.frombuffer(buf, dtype=self.dt).reshape(j - i, self.shape[1])


def _numpy_2d(entry: TensorEntry, shape: tuple[int, int]) -> np.ndarray:
    from ..tensors import to_numpy

    return to_numpy(entry).reshape(shape)


def merged_bytes(entry: TensorEntry, updates: list[Update]) -> bytes | memoryview:
    """The merged weight's bytes in ``entry``'s dtype and shape (C order)."""
    import numpy as np

    from ..convert.cast import cast_array
    from ..tensors import to_numpy

    work = _work(entry.dtype.name)
    wdt = _dtype("F64" if work is np.float64 else "F32")
    w2 = _Rows(entry)
    rows, cols = w2.shape
    out = np.empty((rows, cols), dtype=entry.dtype.np_dtype())
    factors = [_factors(u.pair, work) for u in updates]
    step = max(1, _BLOCK // max(1, cols * 4))
    norms: list[np.ndarray | None] = []
    for u, (b, a, rnd) in zip(updates, factors):
        if not u.dora:
            norms.append(None)
        elif u.transposed:  # per-output norms run down the columns: one pass to sum them first
            acc = np.zeros(cols, dtype=np.float64)
            for i in range(0, rows, step):
                blk = w2[i:i + step].astype(work) + _delta(u, b, a, rnd, i, i + step, work)
                acc += np.square(blk, dtype=np.float64).sum(axis=0)
            norms.append(np.sqrt(acc).astype(work))
        else:
            norms.append(np.empty(0))  # per row: taken block by block below
    for i in range(0, rows, step):
        blk = w2[i:i + step].astype(work)
        for u, (b, a, rnd), norm in zip(updates, factors, norms):
            blk = blk + _delta(u, b, a, rnd, i, i + step, work)
            if u.dora:
                assert u.pair.magnitude is not None
                m = to_numpy(u.pair.magnitude).reshape(-1).astype(work)
                if u.transposed:
                    blk = blk * (m / norm)[None, :]
                else:
                    rn = np.sqrt(np.square(blk, dtype=np.float64).sum(axis=1)).astype(work)
                    blk = blk * (m[i:i + step] / rn)[:, None]
        out[i:i + step] = cast_array(blk, wdt, entry.dtype) if entry.dtype.name != wdt.name \
            else blk
    return out.reshape(-1).view(np.uint8).data


def _bias_bytes(entry: TensorEntry, add: TensorEntry, scale: float) -> bytes | memoryview:
    import numpy as np

    from ..convert.cast import cast_array
    from ..tensors import to_numpy

    work = _work(entry.dtype.name)
    wdt = _dtype("F64" if work is np.float64 else "F32")
    v = to_numpy(entry).astype(work) + to_numpy(add).astype(work) * work(scale)
    out = cast_array(v, wdt, entry.dtype) if entry.dtype.name != wdt.name else v
    return np.ascontiguousarray(out).reshape(-1).view(np.uint8).data


def _computed(entry: TensorEntry, make: Callable[[], bytes | memoryview]) -> TensorEntry:
    st = Storage(entry.nbytes, key=f"merged:{entry.name}", compute=make)
    return TensorEntry(entry.name, entry.dtype, entry.shape, st, requires_grad=entry.requires_grad)


def _cast_copy(entry: TensorEntry, src: TensorEntry) -> TensorEntry:
    """The adapter's trained copy of a tensor, in the base tensor's dtype."""
    if src.dtype.name == entry.dtype.name:
        return src.renamed(entry.name)

    def make() -> bytes | memoryview:
        import numpy as np

        from ..convert.cast import cast_array
        from ..tensors import to_numpy

        arr = cast_array(np.ascontiguousarray(to_numpy(src)), src.dtype, entry.dtype)
        return np.ascontiguousarray(arr).reshape(-1).view(np.uint8).data

    return _computed(entry, make)


def apply(ck: Checkpoint, adapter: Adapter, notes: list[str]) -> Checkpoint:
    """``ck`` with every targeted weight replaced by its merged entry (computed when read)."""
    updates, replaced, biases, more = plan_updates(ck.weights, adapter)
    notes += more
    weights: dict[str, TensorEntry] = {}
    for name, entry in ck.weights.items():
        if name in updates:
            weights[name] = _computed(entry, partial(merged_bytes, entry, updates[name]))
        elif name in biases:
            weights[name] = _computed(entry, partial(_bias_bytes, entry, *biases[name]))
        elif name in replaced:
            weights[name] = _cast_copy(entry, replaced[name])
        else:
            weights[name] = entry
    n = sum(len(u) for u in updates.values())
    scales = sorted({round(u.scale, 6) for us in updates.values() for u in us})
    notes.append(f"merged {n} LoRA update(s) into {len(updates)} weight(s) (scale "
                 f"{', '.join(f'{s:g}' for s in scales)}"
                 f"{'; rsLoRA' if adapter.config.get('use_rslora') else ''}"
                 f"{'; DoRA' if any(u.dora for us in updates.values() for u in us) else ''})")
    # A flat dict of the weights: what the writers store (the base's other state is not merged)
    return replace(ck, tree=weights, weights=weights, weights_path="", other_tensors={},
                   kind="weights", metadata={})


def merge_lora(base: str | os.PathLike[str], adapter: str | os.PathLike[str],
               out: str | os.PathLike[str], *, to: str | None = None, dtype: str | None = None,
               max_shard_size: int | str | None = None, force: bool = False, jobs: int = 1,
               allow_unsafe: bool = False,
               progress: Callable[[int, int], None] | None = None) -> ConvertResult:
    """Merge ADAPTER into BASE and write OUT (any format ``convert`` writes; a folder OUT of a
    folder BASE is a loadable Hugging Face folder, config and tokenizer files copied along)."""
    from .. import open as open_checkpoint
    from ..convert.engine import check_paths_against, convert
    from ..convert.source import source_files
    from . import adapter_of

    base, adapter, out = os.fspath(base), os.fspath(adapter), os.fspath(out)
    if not os.path.exists(adapter):
        raise InputError("no such file or folder", path=adapter)
    ack = open_checkpoint(adapter)
    ad = adapter_of(ack, adapter)
    notes: list[str] = check_paths_against(source_files(ack) | (
        {os.path.realpath(adapter)} if os.path.isfile(adapter) else set()), out, allow_unsafe)
    result = convert(base, out, to=to, dtype=dtype, max_shard_size=max_shard_size, force=force,
                     jobs=jobs, allow_unsafe=allow_unsafe, progress=progress,
                     transform=lambda ck: apply(ck, ad, notes))
    result.notes = notes + result.notes
    return result
