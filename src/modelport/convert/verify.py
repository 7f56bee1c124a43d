"""``verify(a, b)``: do two files, in any formats, hold the same tensors and values?

Same names, dtypes and shapes, and the same bytes: each tensor is hashed (SHA-256 over its bytes
in C order, streamed in bounded chunks, so layouts and formats do not matter), one thread per
tensor pair. ``cast="BF16"`` compares B with A cast as ``convert --dtype BF16`` casts it, bit for
bit. ``atol``/``rtol`` compare values instead (``|a - b| <= atol + rtol * |b|``, NaN equal to
NaN), for files cast by another tool. Tensors are the weights of each file (``full=True``: every
tensor of the tree, by its path, and every plain value of the tree too: epoch, loss,
hyper-parameters, optimizer param_groups, see ``values.py``); aliases and trees that modelport
outputs record are restored first.
"""

from __future__ import annotations

import hashlib
import math
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from ..classify import flatten_tensors, unique_name
from ..classify import select as select_subtree
from ..dtypes import DType, by_name
from ..errors import UsageError
from ..model import Checkpoint, TensorEntry
from ..tensors import values
from .cast import CASTABLE, TARGETS, out_dtype
from .source import load
from .stream import Sources, chunks, flat_chunks
from .values import ValueChange, compare_values, value_roots

if TYPE_CHECKING:  # numpy loads only where arrays are made
    import numpy as np

__all__ = ["verify", "VerifyResult", "Difference", "tensors_of", "digest", "max_abs_diff",
           "json_safe", "describe", "values_of"]

_BLOCK = 1 << 20  # elements per block when comparing values


@dataclass
class Difference:
    name: str  # a tensor's name, or a plain value's dotted path
    # tensors: only-a | only-b | dtype | shape | bytes | values (over the tolerance)
    # plain values (full=True): value (changed) | value-only-a | value-only-b
    kind: str
    detail: str
    max_abs: float | None = None
    a: Any = None  # a plain value's old and new value (JSON-able); None for tensors
    b: Any = None


@dataclass
class VerifyResult:
    a: str
    b: str
    same: bool
    compared: int
    differences: list[Difference] = field(default_factory=list)
    atol: float | None = None
    rtol: float | None = None
    cast: str | None = None
    values_compared: int = 0  # plain values of A compared (full=True)
    hint: str | None = None  # what to try, when the differences look like a known cause

    def summary(self) -> str:
        """"12 tensors" or "12 tensors and 40 values", as the CLI says what it compared."""
        what = f"{self.compared} tensor{'' if self.compared == 1 else 's'}"
        if self.values_compared:
            n = self.values_compared
            what += f" and {n} value{'' if n == 1 else 's'}"
        return what

    def to_json(self) -> dict[str, Any]:
        return json_safe(asdict(self))


def json_safe(obj: Any) -> Any:
    """NaN and infinities as the strings "nan", "inf", "-inf": json.dump would write bare
    NaN/Infinity, which is not JSON (jq and most parsers refuse the whole document)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return repr(obj)
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [json_safe(v) for v in obj]
    return obj


def describe(t: TensorEntry) -> str:
    return f"{t.dtype.name}[{', '.join(map(str, t.shape))}]"


def tensors_of(ck: Checkpoint, full: bool = False, select: str | None = None) -> dict[str, TensorEntry]:
    """The tensors compared: the weights, or (``full``) every tensor of the tree by path."""
    if not full:
        return dict(ck.weights)
    out: dict[str, TensorEntry] = {}
    try:
        root = select_subtree(ck.tree, select) if select else ck.tree
    except KeyError as exc:
        raise UsageError(f"--select {select!r}: no such subtree ({exc})", path=ck.path) from None
    for name, t in flatten_tensors(root):
        out[unique_name(name, out)] = t  # as classify names weights: no tensor hides another
    return out


def digest(entry: TensorEntry, sources: Sources, dtype: DType | None = None) -> str:
    h = hashlib.sha256()
    for chunk in chunks(entry, sources, dtype):
        h.update(chunk)
    return h.hexdigest()


def _int_diff(xa: np.ndarray, xb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(a == b, |a - b|) of integer or bool blocks. Through float64 alone 2**60 and 2**60 + 1
    would compare equal: equality is exact, and so is a difference under 2**53 (computed
    modulo 2**64, where it cannot wrap); larger ones are float64's, as precise as it prints."""
    import numpy as np

    same = xa == xb  # numpy compares int64 with uint64 by value

    def u64(x: np.ndarray) -> np.ndarray:
        return x.astype(np.uint64) if x.dtype.kind == "u" else x.astype(np.int64).astype(np.uint64)

    ua, ub = u64(xa), u64(xb)
    small = np.where(xa >= xb, ua - ub, ub - ua).astype(np.float64)
    big = np.abs(xa.astype(np.float64) - xb.astype(np.float64))
    return same, np.where(big > 2.0**53, big, small)


def _float_diff(xa: np.ndarray, xb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import numpy as np

    kind = np.complex128 if "c" in (xa.dtype.kind, xb.dtype.kind) else np.float64
    with np.errstate(invalid="ignore", over="ignore"):  # NaNs of ml_dtypes types warn in casts
        xa, xb = xa.astype(kind), xb.astype(kind)
        same = (xa == xb) | (np.isnan(xa) & np.isnan(xb))  # equal infinities too
        return same, np.where(same, 0.0, np.abs(xa - xb))


def max_abs_diff(a: TensorEntry, b: TensorEntry, sources: Sources,
                 atol: float = 0.0, rtol: float = 0.0) -> tuple[float, bool]:
    """(max |a - b| over elements, whether all are within atol + rtol * |b|); NaN == NaN."""
    import numpy as np

    worst, close = 0.0, True
    for xa, xb in zip(flat_chunks(a, sources, _BLOCK), flat_chunks(b, sources, _BLOCK)):
        xa, xb = values(xa), values(xb)  # complex32 records as complex64
        exact = xa.dtype.kind in "iub" and xb.dtype.kind in "iub"
        same, d = (_int_diff if exact else _float_diff)(xa, xb)
        with np.errstate(invalid="ignore", over="ignore"):
            mag = np.abs(xb.astype(np.float64 if xb.dtype.kind != "c" else np.complex128))
            ok = same | (d <= atol + rtol * mag)  # NaN against a number: never close
        if d.size:
            m = float("nan") if np.isnan(d).any() else float(d.max())
            worst = m if m != m else worst if worst != worst else max(worst, m)
        close = close and bool(ok.all())
    return worst, close


_F32: DType = by_name("F32")  # type: ignore[assignment]  # a row of the table


def _compare(name: str, ea: TensorEntry, eb: TensorEntry, cast: DType | None,
             atol: float | None, rtol: float | None, sources: Sources) -> Difference | None:
    if ea.shape != eb.shape:
        return Difference(name, "shape", f"{describe(ea)} vs {describe(eb)}")
    want = out_dtype(ea.dtype, cast)
    if ea.dtype.is_block and not eb.dtype.is_block:
        # ggml blocks (a GGUF) against a conversion of them: convert dequantizes to F32, or
        # to --dtype; the digest below dequantizes A the same way
        want = cast if cast is not None and not cast.is_block else _F32
    if atol is not None or rtol is not None:
        off, close = max_abs_diff(ea, eb, sources, atol or 0.0, rtol or 0.0)
        if not close:
            return Difference(name, "values", f"max |a - b| = {off:.6g} is over the tolerance",
                              off)
        return None
    if want.name != eb.dtype.name:
        return Difference(name, "dtype", f"{describe(ea)} vs {describe(eb)}"
                          + (f" (expected {want.name})" if want.name != ea.dtype.name else ""))
    if digest(ea, sources, want) != digest(eb, sources):
        worst: float | None = (max_abs_diff(ea, eb, sources)[0] if want.name == ea.dtype.name
                               else None)
        detail = "bytes differ" + (f", max |a - b| = {worst:.6g}" if worst is not None else "")
        return Difference(name, "bytes", detail, worst)
    return None


def verify(
    a: str | os.PathLike[str],
    b: str | os.PathLike[str],
    atol: float | None = None,
    rtol: float | None = None,
    *,
    cast: str | None = None,
    full: bool = False,
    select: str | None = None,
    jobs: int = 2,
    layout: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> VerifyResult:
    """Compare the tensors of A and B; ``select`` picks A's subtree (B is a conversion of it);
    ``layout``: A is a raw buffer with that layout. ``progress(done_bytes, total_bytes)`` is
    called as tensor pairs are compared."""
    a, b = os.fspath(a), os.fspath(b)
    target = by_name(cast.upper()) if cast else None
    if cast and target is None:
        raise UsageError(f"unknown dtype {cast!r}")
    ck_a = load(a, None if full else select, layout=layout)
    ck_b = load(b)
    ta, tb = tensors_of(ck_a, full, select), tensors_of(ck_b, full)
    diffs: list[Difference] = []
    diffs += [Difference(n, "only-a", f"{describe(t)} only in A") for n, t in ta.items()
              if n not in tb]
    diffs += [Difference(n, "only-b", f"{describe(t)} only in B") for n, t in tb.items()
              if n not in ta]
    shared = [n for n in ta if n in tb]
    tick = pair_progress(ta, tb, shared, progress)
    with Sources() as sources, ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        found = list(pool.map(lambda n: tick(n, _compare(n, ta[n], tb[n], target, atol, rtol,
                                                         sources)), shared))
    diffs += [d for d in found if d is not None]
    n_values = 0
    if full:
        changes, n_values = values_of(ck_a, ck_b, select)
        diffs += [value_difference(c) for c in changes]
    hint = cast_hint(ta, tb, diffs) if cast is None and atol is None and rtol is None else None
    return VerifyResult(a, b, not diffs, len(shared), diffs, atol, rtol, cast, n_values, hint)


def pair_progress(ta: dict[str, TensorEntry], tb: dict[str, TensorEntry], shared: list[str],
                  progress: Callable[[int, int], None] | None) -> Callable[[str, Any], Any]:
    """``tick(name, result) -> result``: counts the pair's bytes (both sides) as done."""
    total = sum(ta[n].nbytes + tb[n].nbytes for n in shared)
    done = 0
    lock = threading.Lock()

    def tick(name: str, result: Any) -> Any:
        nonlocal done
        if progress is not None:
            with lock:
                done += ta[name].nbytes + tb[name].nbytes
                progress(done, total)
        return result

    return tick


def cast_hint(ta: dict[str, TensorEntry], tb: dict[str, TensorEntry],
              diffs: list[Difference]) -> str | None:
    """When every dtype difference is a float tensor of A stored as one cast target in B, B was
    most likely written by ``convert --dtype``: say how to compare it bit for bit."""
    dtype_diffs = [d for d in diffs if d.kind == "dtype"]
    if not dtype_diffs:
        return None
    got = {(ta[d.name].dtype.name, tb[d.name].dtype.name) for d in dtype_diffs}
    targets = {b for _, b in got}
    if len(targets) != 1 or not all(a in CASTABLE for a, _ in got):
        return None
    (to,) = targets
    if to not in TARGETS:
        return None
    return (f"B holds {to} where A holds {', '.join(sorted({a for a, _ in got}))}: if B was "
            f"written by `convert --dtype {to}`, compare with --cast {to} (bit for bit), or "
            "--atol/--rtol for a file cast by another tool")


def values_of(ck_a: Checkpoint, ck_b: Checkpoint,
              select: str | None = None) -> tuple[list[ValueChange], int]:
    """The plain values of A's tree (its ``select`` subtree) against B's: (changes, compared)."""
    tree_a = ck_a.tree
    if select:
        try:
            tree_a = select_subtree(tree_a, select)
        except KeyError as exc:
            raise UsageError(f"--select {select!r}: no such subtree ({exc})",
                             path=ck_a.path) from None
    return compare_values(value_roots(ck_a, tree_a), value_roots(ck_b, ck_b.tree))


def value_difference(c: ValueChange) -> Difference:
    kind = "value" if c.kind == "changed" else f"value-{c.kind}"
    return Difference(c.path, kind, c.detail(), None, c.a, c.b)
