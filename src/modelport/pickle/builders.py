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
from ..dtypes import DType
from ..model import Opaque, Storage, TensorEntry
from .machine import Ref

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

    def __repr__(self) -> str:
        return f"dtype({self.code!r})"


@dataclass
class _PendingArray:
    """``ndarray._reconstruct`` before its BUILD; memo keys let BUILD swap in the tensor."""

    offset: int
    memo_keys: list[int] = field(default_factory=list)

    def __repr__(self) -> str:
        return "<numpy.ndarray (unbuilt)>"


def _ints(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, (tuple, list)) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        raise ValueError(f"{what} is not a tuple of ints: {value!r}")
    return tuple(value)


def tensor_from_storage(
    sref: Any, offset: Any, size: Any, stride: Any, dtype: DType | None = None,
    requires_grad: Any = False,
) -> TensorEntry:
    if not isinstance(sref, StorageRef):
        raise ValueError(f"tensor storage is {type(sref).__name__}, not a storage")
    if not isinstance(offset, int) or offset < 0:
        raise ValueError(f"bad storage offset {offset!r}")
    shape = _ints(size, "size")
    strides = _ints(stride, "stride") if stride is not None else None
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
        raise ValueError("size and stride differ in length")
    return entry


def _rebuild_tensor(m: Machine, storage: Any, offset: Any, size: Any, stride: Any,
                    *rest: Any) -> TensorEntry:
    return tensor_from_storage(storage, offset, size, stride,
                               requires_grad=rest[0] if rest else False)


def _rebuild_tensor_v3(m: Machine, storage: Any, offset: Any, size: Any, stride: Any,
                       requires_grad: Any, hooks: Any, dtype: Any, *rest: Any) -> TensorEntry:
    dt = dtypes.by_torch(dtype.name) if isinstance(dtype, Ref) else None
    if dt is None:
        raise ValueError(f"unknown tensor dtype {dtype!r}")
    return tensor_from_storage(storage, offset, size, stride, dt, requires_grad)


def _rebuild_parameter(m: Machine, data: Any, requires_grad: Any = False, *rest: Any) -> Any:
    if isinstance(data, TensorEntry):
        return TensorEntry(data.name, data.dtype, data.shape, data.storage, data.storage_offset,
                           data.strides, bool(requires_grad), data.quant)
    raise ValueError("parameter data is not a tensor")


def _rebuild_qtensor(m: Machine, storage: Any, offset: Any, size: Any, stride: Any,
                     qparams: Any, *rest: Any) -> TensorEntry:
    entry = tensor_from_storage(storage, offset, size, stride)
    scheme = qparams[0].name if qparams and isinstance(qparams[0], Ref) else str(qparams[0])
    quant = {"scheme": scheme, "params": [p for p in qparams[1:] if not isinstance(p, Ref)]}
    return TensorEntry(entry.name, entry.dtype, entry.shape, entry.storage,
                       entry.storage_offset, entry.strides, entry.requires_grad, quant)


def _rebuild_from_type_v2(m: Machine, func: Any, new_type: Any, args: Any, state: Any) -> Any:
    # torch/_tensor.py: a tensor subclass is func(*args), then its type and state are restored.
    return m.call(func, args, "REDUCE")


def _ordered_dict(m: Machine, *args: Any) -> dict[Any, Any]:
    return dict(args[0]) if args and args[0] else {}


def _codecs_encode(m: Machine, text: Any, encoding: Any = "utf-8", *rest: Any) -> bytes:
    # Protocol 2 pickles bytes as _codecs.encode(str, "latin1") (Lib/pickle.py save_bytes).
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1", "utf-8", "ascii"):
        raise ValueError("not a plain text encoding")
    return text.encode(encoding)


def _reconstructor(m: Machine, cls: Any, base: Any, state: Any = None) -> Any:
    # copyreg._reconstructor(cls, object, None) is how protocol 0/1 pickle plain instances.
    name = cls.qualname if isinstance(cls, Ref) else repr(cls)
    return Opaque(name, (), how="reconstructor", state=None)


def _device(m: Machine, *args: Any) -> str:
    return ":".join(str(a) for a in args)


def _size(m: Machine, dims: Any = ()) -> tuple[int, ...]:
    return _ints(dims, "torch.Size")


def _from_numpy(m: Machine, data: Any, *rest: Any) -> Any:
    if isinstance(data, TensorEntry):
        return data
    raise ValueError("not an array")


_DTYPE_CODE = re.compile(r"^[<>=|]?[a-zA-Z]\d{0,2}$")


def _np_dtype(m: Machine, code: Any, align: Any = False, copy: Any = False) -> _NpDType:
    if not isinstance(code, str) or not _DTYPE_CODE.match(code):
        raise ValueError(f"unsupported dtype code {code!r}")
    return _NpDType(code)


def _np_reconstruct(m: Machine, cls: Any, shape: Any, code: Any) -> _PendingArray:
    if not (isinstance(cls, Ref) and cls.name in ("ndarray", "matrix")):
        raise ValueError(f"reconstructs {cls!r}, not an ndarray")
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
    return _array_entry(m, dt, _ints(shape, "shape"), bytes(buf), order == "F")


def _array_entry(m: Machine, dt: DType, shape: tuple[int, ...], raw: bytes,
                 fortran: bool) -> TensorEntry:
    entry = TensorEntry("", dt, shape, Storage(len(raw), data=raw, key=f"array@{m.op_offset}"))
    if entry.nbytes != len(raw):
        raise ValueError(f"array of {entry.nbytes} bytes holds {len(raw)}")
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
        return Opaque("numpy.ndarray", (), state={"dtype": repr(nd), "shape": shape},
                      how="reduce")
    return _array_entry(m, dt, _ints(shape, "shape"), bytes(raw), bool(fortran))


def build_state(m: Machine, obj: Any, state: Any) -> None:
    """BUILD: restore ``state`` onto the object on top of the stack, symbolically."""
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
    elif isinstance(obj, _PendingArray):
        try:
            built: Any = _finish_array(m, obj, state)
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
    return set(items)


def _frozen(m: Machine, items: Any = ()) -> frozenset[Any]:
    return frozenset(items)


def _bytes(m: Machine, *args: Any) -> bytes:
    # bytes() and bytes([ints]); bytes(n) would allocate n bytes on the pickle's say-so.
    if not args:
        return b""
    if isinstance(args[0], (list, tuple)) and len(args) == 1:
        return bytes(args[0])
    raise ValueError("bytes() with arguments other than a list of ints")


def _plain(kind: type) -> Callable[..., Any]:
    def build(m: Machine, *args: Any) -> Any:
        if any(isinstance(a, (Opaque, Ref)) for a in args):
            raise ValueError("arguments are not plain data")
        return kind(*args)
    return build


_TORCH_REBUILD = {
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

_NUMPY = {
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
    "builtins.complex": _plain(complex),
    "builtins.slice": _plain(slice),
}
