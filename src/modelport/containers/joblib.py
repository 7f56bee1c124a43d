"""joblib's layout: array bytes inside the pickle stream (joblib/numpy_pickle.py).

``joblib.dump`` pickles every ndarray as a ``NumpyArrayWrapper`` placeholder and writes the
array's bytes straight into the stream after it; ``joblib.load`` uses a ``NumpyUnpickler`` whose
BUILD, on a wrapper, reads them from the file before unpickling goes on::

    ... GLOBAL joblib.numpy_pickle NumpyArrayWrapper  NEWOBJ  {subclass, shape, order, dtype,
        allow_mmap[, numpy_array_alignment_bytes]}  BUILD
    then, numeric dtype:  [p: u8][p bytes of 0xff padding]   (joblib >= 1.2: the key is set)
                          prod(shape) * itemsize bytes, C or Fortran order
          object dtype:   a whole pickle (protocol 5), run by a fresh Unpickler whose
                          find_class is the outer one: its globals count like the outer's
    ... the outer pickle goes on (next opcode), up to its STOP

The bytes are read from the *file*: inside a FRAME that goes on past the BUILD, joblib would
take them from after the frame while the unpickler continues in it; no writer does that (joblib
commits the frame first), so the machine refuses it as a framing trick.

Without this the scanner would parse array bytes as opcodes and call a joblib file of plain
arrays "broken". Compressed joblib files are the same stream inside a compressor
(``containers.compress``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..model import Opaque

if TYPE_CHECKING:
    from ..pickle.machine import Machine

__all__ = ["WRAPPER", "Wrapper", "read_array", "np_hasobject"]

WRAPPER = "joblib.numpy_pickle.NumpyArrayWrapper"
_ALIGN_KEY = "numpy_array_alignment_bytes"


class Wrapper:
    """A NumpyArrayWrapper before its BUILD (the stand-in NEWOBJ leaves on the stack)."""

    def __repr__(self) -> str:
        return "<joblib NumpyArrayWrapper>"


def np_hasobject(nd: Any) -> bool:
    """Whether an unpickled ``numpy.dtype`` (the machine's stand-in) holds objects; True when
    it cannot tell (fail closed: the bytes are then parsed as the pickle joblib would run)."""
    code = getattr(nd, "code", None)
    if not isinstance(code, str):
        return True
    if code.lstrip("<>|=").startswith("O"):
        return True
    state = getattr(nd, "state", None)
    if isinstance(state, tuple):
        # dtype.__reduce__ state: (version, byteorder, subarray, names, fields, elsize,
        # alignment, flags); bit 0 of flags is NPY_ITEM_HASOBJECT, what numpy restores.
        if len(state) >= 8 and isinstance(state[7], int) and state[7] & 1:
            return True
        if len(state) >= 3 and isinstance(state[2], tuple) and state[2] and \
                np_hasobject(state[2][0]):
            return True
        if len(state) >= 5 and isinstance(state[4], dict):
            return any(not isinstance(v, tuple) or not v or np_hasobject(v[0])
                       for v in state[4].values())
    return False


def _itemsize(nd: Any) -> int:
    import numpy as np

    return int(np.dtype(nd.code).itemsize)


def read_array(m: Machine, state: Any) -> Any:
    """BUILD on a wrapper: step over the array's bytes (or run its object pickle) the way
    joblib's NumpyUnpickler does; returns the inert value left on the stack."""
    from ..errors import PickleError
    from ..pickle.machine import Machine

    if not isinstance(state, dict):
        raise m.error("joblib NumpyArrayWrapper state is not a dict",
                      hint="the file is corrupt or crafted")
    if m.frame_end is not None and m.pos < m.frame_end:
        m.note("frame", "joblib array data inside a FRAME: joblib reads it from after the "
                        "frame, the unpickler goes on inside it")
        raise m.error("joblib array data inside a FRAME", hint="the file is crafted")
    dtype, shape = state.get("dtype"), state.get("shape")
    value = Opaque("numpy.ndarray", (), state={"dtype": repr(dtype), "shape": shape},
                   how="joblib")
    if np_hasobject(dtype):
        # A fresh machine, as joblib's fresh Unpickler: own stack and memo, same judge.
        builders = {k: v for k, v in m.builders.items() if k != WRAPPER}
        inner = Machine(m.data, m.pos, base=m.base, member=m.member, path=m.path,
                        builders=builders, limits=m.limits, strict=m.strict)
        try:
            inner.run()
        finally:
            m.globals += inner.globals
            m.calls += inner.calls
            m.anomalies += inner.anomalies
            m.ops += inner.ops
        m.pos = inner.end
        return value
    if not (isinstance(shape, tuple) and all(type(d) is int and d >= 0 for d in shape)):
        raise m.error(f"joblib array shape {shape!r} is not a tuple of sizes",
                      hint="the file is corrupt or crafted")
    try:
        itemsize = _itemsize(dtype)
    except (TypeError, ValueError) as exc:
        raise m.error(f"joblib array dtype {dtype!r}: {exc}", hint="the file is corrupt") from None
    pos = start = m.pos
    if state.get(_ALIGN_KEY) is not None:
        if pos >= len(m.data):
            raise m.error("joblib array padding runs past the end", PickleError)
        pos += 1 + m.data[pos]
    count = 1
    for d in shape:
        count *= d
    end = pos + count * itemsize
    if end > len(m.data):
        raise m.error(f"joblib array of {count * itemsize} bytes runs past the end",
                      hint="the file is truncated")
    m.skipped.append((start, end))
    m.pos = end
    return value
