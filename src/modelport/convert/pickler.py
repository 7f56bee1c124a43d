"""A protocol-2 pickle emitter for checkpoint trees, byte-compatible with what torch.save writes.

modelport never hands an object it read to ``pickle.dumps``: an ``Opaque`` placeholder pickled
that way would become a call to whatever class it names. This emitter writes only the opcodes
of plain data and the globals ``torch.load(weights_only=True)`` accepts::

    None, bool, int, float, str     NONE NEWTRUE/NEWFALSE BININT1/2/BININT/LONG1/4 BINFLOAT BINUNICODE
    list, dict                      EMPTY_LIST/EMPTY_DICT + APPENDS/SETITEMS in batches of 1000
    tuple                           EMPTY_TUPLE, TUPLE1/2/3, MARK..TUPLE
    OrderedDict                     collections.OrderedDict () REDUCE + SETITEMS (a state_dict)
    set, frozenset, complex, bytes  __builtin__.set([..]), complex(re, im), _codecs.encode(s, 'latin1')
    torch dtypes (GlobalRef)        GLOBAL 'torch float32'
    tensors                         torch._utils._rebuild_tensor_v2(BINPERSID ('storage',
                                    torch.FloatStorage, key, 'cpu', numel), offset, size, stride,
                                    requires_grad, OrderedDict()); _rebuild_tensor_v3 with an
                                    UntypedStorage and the dtype for types without a typed
                                    storage class (uint16/32/64, float8, complex32);
                                    requires_grad tensors as _rebuild_parameter(tensor, True, ..)

Memoisation follows CPython's Pickler (Lib/pickle.py): every str, non-empty tuple, list, dict,
global and reduce result is BINPUT, and an object seen again is a BINGET. A tensor seen again
(tied weights: same storage, offset, shape and strides) is one object, as in torch.save.
"""

from __future__ import annotations

import io
import struct
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, NamedTuple

from ..errors import UsageError
from ..model import Opaque, TensorEntry

__all__ = ["Emitter", "PersistentTensor", "Global"]

_BATCH = 1000  # Lib/pickle.py _BATCHSIZE


class Global(NamedTuple):
    """A global the output names (``torch.float32``); only allowlisted ones are ever built."""

    module: str
    name: str


class PersistentTensor(NamedTuple):
    """How one tensor is written: its storage record and its view on it."""

    key: str  # storage key: member data/<key>
    storage_class: Global  # torch.FloatStorage, or torch.storage.UntypedStorage
    numel: int  # storage elements (typed) or bytes (untyped)
    dtype: Global | None  # for _rebuild_tensor_v3 (untyped storages)
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]
    requires_grad: bool


_V2 = Global("torch._utils", "_rebuild_tensor_v2")
_V3 = Global("torch._utils", "_rebuild_tensor_v3")
_PARAM = Global("torch._utils", "_rebuild_parameter")
_ODICT = Global("collections", "OrderedDict")
_CONSTRUCT: dict[type, Global] = {set: Global("__builtin__", "set"), frozenset: Global("__builtin__", "frozenset")}
_COMPLEX = Global("__builtin__", "complex")
_ENCODE = Global("_codecs", "encode")
_BYTES = Global("__builtin__", "bytes")


def _encode_long(x: int) -> bytes:
    """Lib/pickle.py encode_long: little-endian two's complement, as short as possible."""
    if x == 0:
        return b""
    nbytes = (x.bit_length() >> 3) + 1
    out = x.to_bytes(nbytes, "little", signed=True)
    if x < 0 and nbytes > 1 and out[-1] == 0xFF and (out[-2] & 0x80):
        out = out[:-1]
    return out


class Emitter:
    """``Emitter(persist).dumps(tree)``; ``persist(entry)`` says how a tensor is stored."""

    def __init__(self, persist: Callable[[TensorEntry], PersistentTensor]) -> None:
        self.persist = persist
        self.out = io.BytesIO()
        self.memo: dict[Any, tuple[int, Any]] = {}  # key -> (index, object kept alive)

    def dumps(self, obj: Any) -> bytes:
        self.out.write(b"\x80\x02")
        self.save(obj)
        self.out.write(b".")
        return self.out.getvalue()

    # -- memo ---------------------------------------------------------------------------------

    def _put(self, key: Any, obj: Any) -> None:
        idx = len(self.memo)
        self.memo[key] = (idx, obj)
        self.out.write(b"q" + bytes([idx]) if idx < 256 else b"r" + struct.pack("<I", idx))

    def _get(self, key: Any) -> bool:
        hit = self.memo.get(key)
        if hit is None:
            return False
        idx = hit[0]
        self.out.write(b"h" + bytes([idx]) if idx < 256 else b"j" + struct.pack("<I", idx))
        return True

    # -- values -------------------------------------------------------------------------------

    def save(self, obj: Any) -> None:
        w = self.out.write
        if obj is None:
            w(b"N")
        elif obj is True or obj is False:
            w(b"\x88" if obj else b"\x89")
        elif type(obj) is int:
            self._int(obj)
        elif type(obj) is float:
            w(b"G" + struct.pack(">d", obj))
        elif isinstance(obj, Global):
            self._global(obj)
        elif isinstance(obj, TensorEntry):
            self._tensor(obj)
        elif self._get(id(obj)):
            return
        elif type(obj) is str:
            self._str(obj, id(obj))
        elif type(obj) is tuple:
            self._tuple(obj)
        elif type(obj) is list:
            w(b"]")
            self._put(id(obj), obj)
            self._appends(obj)
        elif type(obj) is OrderedDict:
            self._global(_ODICT)
            w(b")R")
            self._put(id(obj), obj)
            self._setitems(obj)
        elif type(obj) is dict:
            w(b"}")
            self._put(id(obj), obj)
            self._setitems(obj)
        elif type(obj) in (set, frozenset):
            self._reduce(_CONSTRUCT[type(obj)], (list(obj),), obj)
        elif type(obj) is complex:
            self._reduce(_COMPLEX, (obj.real, obj.imag), obj)
        elif type(obj) in (bytes, bytearray):
            if obj:
                self._reduce(_ENCODE, (bytes(obj).decode("latin1"), "latin1"), obj)
            else:
                self._reduce(_BYTES, (), obj)
        else:
            what = f"<{obj.cls}>" if isinstance(obj, Opaque) else type(obj).__name__
            raise UsageError(f"cannot write a {what} into a torch file",
                             hint="only tensors and plain values are written; drop --full")

    def _int(self, x: int) -> None:
        w = self.out.write
        if 0 <= x <= 0xFF:
            w(b"K" + bytes([x]))
        elif 0 <= x <= 0xFFFF:
            w(b"M" + struct.pack("<H", x))
        elif -0x80000000 <= x <= 0x7FFFFFFF:
            w(b"J" + struct.pack("<i", x))
        else:
            enc = _encode_long(x)
            w(b"\x8a" + bytes([len(enc)]) + enc if len(enc) < 256
              else b"\x8b" + struct.pack("<i", len(enc)) + enc)

    def _str(self, s: str, key: Any) -> None:
        raw = s.encode("utf-8", "surrogatepass")
        self.out.write(b"X" + struct.pack("<I", len(raw)) + raw)
        self._put(key, s)

    def _const_str(self, s: str) -> None:
        """Strings torch passes as the same object every time ('storage', 'cpu', keys)."""
        if not self._get(("str", s)):
            self._str(s, ("str", s))

    def _global(self, g: Global) -> None:
        if not self._get(g):
            self.out.write(f"c{g.module}\n{g.name}\n".encode())
            self._put(g, g)

    def _tuple(self, t: tuple, key: Any = None) -> None:
        if not t:
            self.out.write(b")")
            return
        if len(t) > 3:
            self.out.write(b"(")
        for item in t:
            self.save(item)
        self.out.write({1: b"\x85", 2: b"\x86", 3: b"\x87"}.get(len(t), b"t"))
        self._put(id(t) if key is None else key, t)

    def _reduce(self, func: Global, args: tuple, obj: Any) -> None:
        self._global(func)
        self._tuple(args)
        self.out.write(b"R")
        self._put(id(obj), obj)

    # Batching follows the C pickler (Modules/_pickle.c), which torch.save uses: exact lists
    # and dicts of one item get APPEND/SETITEM, longer ones MARK..APPENDS/SETITEMS per 1000
    # items (a last batch of one included; a dict of 1000*k items ends with an empty batch);
    # an OrderedDict's items come from an iterator (batch_dict), like Lib/pickle.py.

    def _appends(self, items: list) -> None:
        if len(items) == 1:
            self.save(items[0])
            self.out.write(b"a")
            return
        for i in range(0, len(items), _BATCH):
            self.out.write(b"(")
            for item in items[i:i + _BATCH]:
                self.save(item)
            self.out.write(b"e")

    def _setitems(self, d: dict) -> None:
        items = list(d.items())
        if type(d) is dict:
            if len(items) == 1:
                self.save(items[0][0])
                self.save(items[0][1])
                self.out.write(b"s")
                return
            if not items:
                return
            i = 0
            while True:
                batch = items[i:i + _BATCH]
                self._batch(batch)
                i += _BATCH
                if len(batch) < _BATCH:
                    return
        for i in range(0, len(items), _BATCH):
            batch = items[i:i + _BATCH]
            if len(batch) == 1:
                self.save(batch[0][0])
                self.save(batch[0][1])
                self.out.write(b"s")
            else:
                self._batch(batch)

    def _batch(self, batch: list) -> None:
        self.out.write(b"(")
        for k, v in batch:
            self.save(k)
            self.save(v)
        self.out.write(b"u")

    # -- tensors ------------------------------------------------------------------------------

    def _hooks(self) -> None:
        """``OrderedDict()``: torch.save passes a fresh (empty) backward-hooks dict each time."""
        self._global(_ODICT)
        self.out.write(b")R")
        self._put(("hooks", len(self.memo)), None)

    def _tensor(self, entry: TensorEntry) -> None:
        p = self.persist(entry)
        key = ("tensor", p.key, p.offset, p.size, p.stride, p.requires_grad, p.dtype)
        if self._get(key):
            return
        w = self.out.write
        if p.requires_grad:
            self._global(_PARAM)
        self._global(_V3 if p.dtype is not None else _V2)
        w(b"((")  # MARK for the arguments, MARK for the persistent id
        self._const_str("storage")
        self._global(p.storage_class)
        self._const_str(p.key)
        self._const_str("cpu")
        self._int(p.numel)
        w(b"t")
        self._put(("pid", len(self.memo)), None)
        w(b"Q")
        self._int(p.offset)
        self._tuple(p.size, ("size", len(self.memo)))
        self._tuple(p.stride, ("stride", len(self.memo)))
        w(b"\x89")  # requires_grad travels on the parameter
        self._hooks()
        if p.dtype is not None:
            self._global(p.dtype)
        w(b"t")
        self._put(("args", len(self.memo)), None)
        w(b"R")
        if p.requires_grad:
            self._put(("data", len(self.memo)), None)
            w(b"\x88")
            self._hooks()
            w(b"\x87")
            self._put(("pargs", len(self.memo)), None)
            w(b"R")
        self._put(key, entry)
