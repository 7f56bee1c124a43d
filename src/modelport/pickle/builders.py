"""Builders: the calls modelport rebuilds as data instead of leaving them opaque.

Each entry maps a ``module.qualname`` that torch, numpy or the standard library write into
checkpoints to a pure function over the already-decoded arguments. Nothing here imports the
named module: ``torch._utils._rebuild_tensor_v2`` becomes a ``TensorEntry`` over a storage the
reader resolved from the persistent id, ``numpy.core.multiarray._reconstruct`` plus its
``BUILD`` state becomes a ``TensorEntry`` over the pickled bytes, ``collections.OrderedDict``
becomes a dict.

Argument layouts: torch/_utils.py (``_rebuild_tensor_v2``, ``_rebuild_parameter``, ...),
torch/_tensor.py (``_rebuild_from_type_v2``), numpy/_core/numeric.py and ``ndarray.__reduce__``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .. import dtypes
from ..containers import joblib
from ..dtypes import DType
from ..model import Opaque, Storage, TensorEntry
from .machine import BadRecord, Ref, brief, check_key

if TYPE_CHECKING:
    from .machine import Machine

__all__ = ["BUILDERS", "StorageRef", "build_state", "tensor_from_storage"]


@dataclass(frozen=True)
class StorageRef:
    """A typed storage resolved from a persistent id: where its bytes are and their dtype."""

    storage: Storage
    dtype: DType


@dataclass
class _NpDType:
    code: str
    byteorder: str = "="
    structured: bool = False
    state: Any = None  # dtype.__reduce__ state (fields, flags): containers.joblib reads it

    def __repr__(self) -> str:
        return f"dtype({self.code!r})"


@dataclass
class _PendingArray:
    """``ndarray._reconstruct`` before its BUILD; memo keys let BUILD swap in the tensor."""

    offset: int
    memo_keys: list[int] = field(default_factory=list)

    def __repr__(self) -> str:
        return "<numpy.ndarray (unbuilt)>"


_INT64 = 1 << 63  # torch keeps sizes, strides, offsets and numel in int64


def _ints(value: Any, what: str, error: type[ValueError] = ValueError) -> tuple[int, ...]:
    if not isinstance(value, (tuple, list)) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        raise error(f"{what} is not a tuple of ints: {brief(value)}")
    return tuple(value)


def _dims(value: Any, what: str) -> tuple[int, ...]:
    """Sizes or strides of a tensor record: ints in [0, 2**63) whose product fits int64, as
    torch itself requires; anything else would make numbers no reader can allocate."""
    dims = _ints(value, what, BadRecord)
    if any(not 0 <= d < _INT64 for d in dims):
        raise BadRecord(f"{what} {brief(dims)} is negative or beyond int64")
    numel = 1
    for d in dims:
        numel *= d
        if numel >= _INT64:
            raise BadRecord(f"{what} {brief(dims)} has more than 2**63 elements")
    return dims


def tensor_from_storage(
    sref: Any, offset: Any, size: Any, stride: Any, dtype: DType | None = None,
    requires_grad: Any = False,
) -> TensorEntry:
    if not isinstance(sref, StorageRef):
        # pickle.dumps(tensor) pickles its storage by a call, not a persistent id: inert
        raise ValueError(f"tensor storage is {type(sref).__name__}, not a storage")
    if not isinstance(offset, int) or isinstance(offset, bool) or not 0 <= offset < _INT64:
        raise BadRecord(f"bad storage offset {brief(offset)}")
    shape = _dims(size, "size")
    strides = _ints(stride, "stride", BadRecord) if stride is not None else None
    if strides is not None and any(not 0 <= s < _INT64 for s in strides):
        raise BadRecord(f"stride {brief(strides)} is negative or beyond int64")
    entry = TensorEntry(
        name="",
        dtype=dtype or sref.dtype,
        shape=shape,
        storage=sref.storage,
        storage_offset=offset,
        strides=strides,
        requires_grad=bool(requires_grad),
    )
    if strides is not None and (strides == entry.contiguous_strides or entry.is_contiguous):
        entry = TensorEntry(entry.name, entry.dtype, shape, entry.storage, offset, None,
                            entry.requires_grad)
    if len(shape) != len(strides or shape):
        raise BadRecord("size and stride differ in length")
    return entry


def _rebuild_tensor(m: Machine, storage: Any, offset: Any, size: Any, stride: Any,
                    *rest: Any) -> TensorEntry:
    return tensor_from_storage(storage, offset, size, stride,
                               requires_grad=rest[0] if rest else False)


def _rebuild_tensor_v3(m: Machine, storage: Any, offset: Any, size: Any, stride: Any,
                       requires_grad: Any, hooks: Any, dtype: Any, *rest: Any) -> TensorEntry:
    dt = dtypes.by_torch(dtype.name) if isinstance(dtype, Ref) else None
    if dt is None:
        raise ValueError(f"unknown tensor dtype {brief(dtype)}")
    return tensor_from_storage(storage, offset, size, stride, dt, requires_grad)


def _rebuild_parameter(m: Machine, data: Any, requires_grad: Any = False, *rest: Any) -> Any:
    if isinstance(data, TensorEntry):
        return TensorEntry(data.name, data.dtype, data.shape, data.storage, data.storage_offset,
                           data.strides, bool(requires_grad), data.quant)
    raise ValueError("parameter data is not a tensor")


def _rebuild_qtensor(m: Machine, storage: Any, offset: Any, size: Any, stride: Any,
                     qparams: Any, *rest: Any) -> TensorEntry:
    entry = tensor_from_storage(storage, offset, size, stride)
    first = qparams[0]  # an empty or non-sequence qparams is a shape this builder does not know
    scheme = (first.name if isinstance(first, Ref) else first if isinstance(first, str)
              else brief(first))
    quant = {"scheme": scheme, "params": [p for p in qparams[1:] if not isinstance(p, Ref)]}
    return TensorEntry(entry.name, entry.dtype, entry.shape, entry.storage,
                       entry.storage_offset, entry.strides, entry.requires_grad, quant)


def _rebuild_from_type_v2(m: Machine, func: Any, new_type: Any, args: Any, state: Any) -> Any:
    # torch/_tensor.py: a tensor subclass is func(*args), then its type and state are restored.
    return m.call(func, args, "REDUCE")


def _keys(m: Machine, items: Any, pairs: bool) -> Any:
    """``items`` after check_key on every key they would hash (a dict's keys are checked)."""
    if isinstance(items, (list, tuple, set, frozenset)):
        for item in items:
            check_key(m, item[0] if pairs and isinstance(item, (tuple, list)) and item
                      else item)
    return items


def _ordered_dict(m: Machine, *args: Any) -> dict[Any, Any]:
    return dict(_keys(m, args[0], pairs=True)) if args and args[0] else {}


def _codecs_encode(m: Machine, text: Any, encoding: Any = "utf-8", *rest: Any) -> bytes:
    # Protocol 2 pickles bytes as _codecs.encode(str, "latin1") (Lib/pickle.py save_bytes).
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1", "utf-8", "ascii"):
        raise ValueError("not a plain text encoding")
    return text.encode(encoding)


def _reconstructor(m: Machine, cls: Any, base: Any, state: Any = None) -> Any:
    # copyreg._reconstructor(cls, object, None) is how protocol 0/1 pickle plain instances.
    name = cls.qualname if isinstance(cls, Ref) else brief(cls)
    return Opaque(name, (), how="reconstructor", state=None)


def _device(m: Machine, *args: Any) -> str:
    return ":".join(a if isinstance(a, str) else brief(a) for a in args)


def _size(m: Machine, dims: Any = ()) -> tuple[int, ...]:
    return _ints(dims, "torch.Size")


def _from_numpy(m: Machine, data: Any, *rest: Any) -> Any:
    if isinstance(data, TensorEntry):
        return data
    raise ValueError("not an array")


_DTYPE_CODE = re.compile(r"^[<>=|]?[a-zA-Z]\d{0,2}$")


def _np_dtype(m: Machine, code: Any, align: Any = False, copy: Any = False) -> _NpDType:
    if not isinstance(code, str) or not _DTYPE_CODE.match(code):
        raise ValueError(f"unsupported dtype code {brief(code)}")
    return _NpDType(code)


def _np_reconstruct(m: Machine, cls: Any, shape: Any, code: Any) -> _PendingArray:
    if not (isinstance(cls, Ref) and cls.name in ("ndarray", "matrix")):
        raise ValueError(f"reconstructs {brief(cls)}, not an ndarray")
    return _PendingArray(m.base + m.op_offset)


def _numpy_dt(nd: Any) -> DType | None:
    if not isinstance(nd, _NpDType) or nd.structured or nd.byteorder == ">":
        return None
    import numpy as np

    try:
        return dtypes.by_numpy(np.dtype(nd.code))
    except TypeError:
        return None


def _np_scalar(m: Machine, nd: Any, raw: Any = None) -> Any:
    dt = _numpy_dt(nd)
    if dt is None or not isinstance(raw, (bytes, bytearray)):
        raise ValueError("not a numeric scalar")
    import numpy as np

    return np.frombuffer(bytes(raw), dtype=dt.np_dtype(), count=1)[0].item()


def _np_frombuffer(m: Machine, buf: Any, nd: Any, shape: Any, order: Any = "C") -> TensorEntry:
    dt = _numpy_dt(nd)
    if dt is None or not isinstance(buf, (bytes, bytearray)):
        raise ValueError("not a numeric buffer")
    return _array_entry(m, dt, _dims(shape, "shape"), bytes(buf), order == "F")


def _array_entry(m: Machine, dt: DType, shape: tuple[int, ...], raw: bytes,
                 fortran: bool) -> TensorEntry:
    entry = TensorEntry("", dt, shape, Storage(len(raw), data=raw, key=f"array@{m.op_offset}"))
    if entry.nbytes != len(raw):
        raise BadRecord(f"array of {entry.nbytes} bytes holds {len(raw)}")
    if fortran and len(shape) > 1:
        strides, acc = [], 1
        for d in shape:
            strides.append(acc)
            acc *= max(d, 1)
        entry = TensorEntry("", dt, shape, entry.storage, 0, tuple(strides))
    return entry


def _finish_array(m: Machine, pending: _PendingArray, state: Any) -> Any:
    if isinstance(state, tuple) and len(state) == 5:
        state = state[1:]
    if not (isinstance(state, tuple) and len(state) == 4):
        raise ValueError("ndarray state has an unknown layout")
    shape, nd, fortran, raw = state
    dt = _numpy_dt(nd)
    if dt is None or not isinstance(raw, (bytes, bytearray)):
        # Object arrays pickle their items as a list: keep them opaque, never rebuild.
        return Opaque("numpy.ndarray", (), state={"dtype": brief(nd), "shape": shape},
                      how="reduce")
    return _array_entry(m, dt, _dims(shape, "shape"), bytes(raw), bool(fortran))


def build_state(m: Machine, obj: Any, state: Any) -> None:
    """BUILD: restore ``state`` onto the object on top of the stack, symbolically."""
    # load_build calls inst.__setstate__(state) when the class has one: its code runs.
    m.method_call(obj, "__setstate__", state, "BUILD")
    if isinstance(obj, Opaque):
        if isinstance(state, tuple) and len(state) == 2 and all(
            s is None or isinstance(s, dict) for s in state
        ):
            merged = dict(state[0] or {})
            merged.update(state[1] or {})
            state = merged
        if isinstance(obj.state, dict) and isinstance(state, dict):
            obj.state.update(state)
        else:
            obj.state = state
    elif isinstance(obj, _NpDType):
        if isinstance(state, tuple) and len(state) >= 4:
            obj.byteorder = state[1] if isinstance(state[1], str) else "="
            obj.structured = state[3] is not None or obj.code.startswith(("O", "|O"))
        obj.state = state
    elif isinstance(obj, joblib.Wrapper):
        m.stack[-1] = joblib.read_array(m, state)  # steps over the array bytes joblib reads
    elif isinstance(obj, _PendingArray):
        try:
            built: Any = _finish_array(m, obj, state)
        except BadRecord as exc:
            if m.strict:
                raise m.error(f"numpy.ndarray: {exc}", hint="the array record is corrupt") from None
            m.note("builder-args", f"numpy.ndarray state: {exc}")
            built = Opaque("numpy.ndarray", (), state=state)
        except ValueError as exc:
            m.note("builder-args", f"numpy.ndarray state: {exc}")
            built = Opaque("numpy.ndarray", (), state=state)
        m.stack[-1] = built
        for key in obj.memo_keys:
            m.memo[key] = built
    elif isinstance(obj, TensorEntry):
        pass  # _rebuild_parameter_with_state / tensor subclasses: the state is Python attributes
    else:
        m.note("build-on-data", f"BUILD on a {type(obj).__name__}")


def _set(m: Machine, items: Any = ()) -> set[Any]:
    return set(_keys(m, items, pairs=False))


def _frozen(m: Machine, items: Any = ()) -> frozenset[Any]:
    return frozenset(_keys(m, items, pairs=False))


def _bytes(m: Machine, *args: Any) -> bytes:
    # bytes() and bytes([ints]); bytes(n) would allocate n bytes on the pickle's say-so.
    if not args:
        return b""
    if isinstance(args[0], (list, tuple)) and len(args) == 1:
        return bytes(args[0])
    raise ValueError("bytes() with arguments other than a list of ints")


def _plain(kind: type, scalars: bool = False) -> Callable[..., Any]:
    def build(m: Machine, *args: Any) -> Any:
        if any(isinstance(a, (Opaque, Ref)) for a in args):
            raise ValueError("arguments are not plain data")
        if scalars and not all(a is None or isinstance(a, (int, float, str)) for a in args):
            # A slice or complex of containers would be printed by repr(), which walks a
            # tuple shared with itself forty levels over 2**40 times.
            raise ValueError("arguments are not numbers")
        if kind is dict and args:
            _keys(m, args[0], pairs=True)
        return kind(*args)
    return build


_TORCH_REBUILD: dict[str, Callable[..., Any]] = {
    "torch._utils._rebuild_tensor": _rebuild_tensor,
    "torch._utils._rebuild_tensor_v2": _rebuild_tensor,
    "torch._utils._rebuild_tensor_v3": _rebuild_tensor_v3,
    "torch._utils._rebuild_parameter": _rebuild_parameter,
    "torch._utils._rebuild_parameter_with_state": _rebuild_parameter,
    "torch._utils._rebuild_qtensor": _rebuild_qtensor,
    "torch._utils._rebuild_device_tensor_from_numpy": _from_numpy,
    "torch._tensor._rebuild_from_type_v2": _rebuild_from_type_v2,
    "torch.Size": _size,
    "torch.device": _device,
}

_NUMPY: dict[str, Callable[..., Any]] = {
    f"numpy.{core}.{name}": fn
    for core in ("core.multiarray", "_core.multiarray")
    for name, fn in (("_reconstruct", _np_reconstruct), ("scalar", _np_scalar))
}
_NUMPY.update({f"numpy.{core}._frombuffer": _np_frombuffer
               for core in ("core.numeric", "_core.numeric")})
_NUMPY["numpy.dtype"] = _np_dtype

BUILDERS: dict[str, Callable[..., Any]] = {
    **_TORCH_REBUILD,
    **_NUMPY,
    "collections.OrderedDict": _ordered_dict,
    "_codecs.encode": _codecs_encode,
    "copyreg._reconstructor": _reconstructor,
    "builtins.set": _set,
    "builtins.frozenset": _frozen,
    "builtins.list": _plain(list),
    "builtins.tuple": _plain(tuple),
    "builtins.dict": _plain(dict),
    "builtins.bytes": _bytes,
    "builtins.complex": _plain(complex, scalars=True),
    "builtins.slice": _plain(slice, scalars=True),
    joblib.WRAPPER: lambda m, *args: joblib.Wrapper(),
}
