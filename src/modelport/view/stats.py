"""Tensor statistics computed server-side, streaming over the memory map, with no size cap.

Two passes in chunks of ``CHUNK`` elements: min/max/mean/std (population, numpy's default, by
Chan's parallel combination so a billion-element tensor keeps its precision), zeros, NaN and Inf
counts and the L2 norm over finite values; then a histogram of the finite values between min
and max. A 2-D tensor also gets a heat-map thumbnail: block means on an at most 64x64 grid.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import UsageError
from ..model import TensorEntry
from ..tensors import to_numpy

__all__ = ["tensor_stats", "compare"]

CHUNK = 1 << 22  # elements per step: 32 MiB of float64 at most


def _flat(entry: TensorEntry) -> np.ndarray:
    if entry.dtype.kind == "c":
        raise UsageError(f"{entry.name}: statistics of complex tensors are not computed",
                         tensor=entry.name)
    if entry.dtype.kind == "q" or entry.dtype.bits % 8:
        raise UsageError(f"{entry.name}: {entry.dtype.name} is a packed or quantized type; "
                         "dequantize it first", tensor=entry.name)
    return to_numpy(entry).reshape(-1)


def _chunks(flat: np.ndarray) -> Any:
    for i in range(0, flat.size, CHUNK):
        yield np.asarray(flat[i:i + CHUNK]).astype(np.float64)


def tensor_stats(entry: TensorEntry, bins: int = 64) -> dict[str, Any]:
    flat = _flat(entry)
    n = int(flat.size)
    count, mean, m2 = 0, 0.0, 0.0
    lo, hi = math.inf, -math.inf
    zeros = nans = infs = 0
    sumsq = 0.0
    for x in _chunks(flat):
        zeros += int(np.count_nonzero(x == 0))
        nan = np.isnan(x)
        inf = np.isinf(x)
        nans += int(nan.sum())
        infs += int(inf.sum())
        fin = x[~(nan | inf)] if (nans or infs) else x
        if fin.size == 0:
            continue
        lo, hi = min(lo, float(fin.min())), max(hi, float(fin.max()))
        c = int(fin.size)
        cm = float(fin.mean())
        cm2 = float(((fin - cm) ** 2).sum())
        delta = cm - mean
        total = count + c
        mean += delta * c / total
        m2 += cm2 + delta * delta * count * c / total
        count = total
        sumsq += float(np.dot(fin, fin))
    out: dict[str, Any] = {
        "name": entry.name, "dtype": entry.dtype.name, "shape": list(entry.shape), "numel": n,
        "finite": count, "zeros": zeros, "nan": nans, "inf": infs,
        "min": lo if count else None, "max": hi if count else None,
        "mean": mean if count else None, "std": math.sqrt(m2 / count) if count else None,
        "l2": math.sqrt(sumsq),
    }
    counts = np.zeros(bins, dtype=np.int64)
    edges = np.linspace(lo, hi if hi > lo else lo + 1.0, bins + 1) if count else np.zeros(0)
    if count:
        for x in _chunks(flat):
            fin = x[np.isfinite(x)]
            counts += np.histogram(fin, bins=edges)[0]
    out["histogram"] = {"edges": edges.tolist(), "counts": counts.tolist() if count else []}
    if len(entry.shape) == 2 and count:
        out["heatmap"] = _heatmap(flat.reshape(entry.shape))
    return out


def _heatmap(arr: np.ndarray, cells: int = 64) -> dict[str, Any]:
    rows, cols = arr.shape
    gr, gc = min(rows, cells), min(cols, cells)
    rb = np.linspace(0, rows, gr + 1).astype(int)
    cb = np.linspace(0, cols, gc + 1).astype(int)
    grid = np.zeros((gr, gc))
    for i in range(gr):
        band = np.asarray(arr[rb[i]:rb[i + 1]]).astype(np.float64)
        band = np.where(np.isfinite(band), band, 0.0)
        sums = np.add.reduceat(band.sum(axis=0), cb[:-1]) if cols else np.zeros(gc)
        grid[i] = sums / ((rb[i + 1] - rb[i]) * np.diff(cb))
    return {"rows": gr, "cols": gc, "values": grid.round(6).tolist()}


def compare(a: TensorEntry, b: TensorEntry) -> dict[str, Any]:
    """Max absolute and relative difference and cosine similarity of two same-shape tensors."""
    if tuple(a.shape) != tuple(b.shape):
        return {"name": a.name, "comparable": False,
                "why": f"shapes differ: {list(a.shape)} vs {list(b.shape)}"}
    fa, fb = _flat(a), _flat(b)
    max_abs = 0.0
    max_ref = 0.0
    dot = na = nb = 0.0
    for i in range(0, fa.size, CHUNK):
        x = np.asarray(fa[i:i + CHUNK]).astype(np.float64)
        y = np.asarray(fb[i:i + CHUNK]).astype(np.float64)
        d = np.abs(x - y)
        if d.size:
            max_abs = max(max_abs, float(np.nanmax(d)) if not np.all(np.isnan(d)) else math.nan)
            max_ref = max(max_ref, float(np.nanmax(np.abs(x))) if x.size else 0.0)
        dot += float(np.dot(x, y))
        na += float(np.dot(x, x))
        nb += float(np.dot(y, y))
    cos = dot / math.sqrt(na * nb) if na and nb else (1.0 if na == nb else 0.0)
    return {"name": a.name, "comparable": True, "max_abs": max_abs,
            "max_rel": max_abs / max_ref if max_ref else (0.0 if max_abs == 0 else math.inf),
            "cosine": cos}
