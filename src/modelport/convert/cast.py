"""Casting float tensors between F64, F32, F16 and BF16 exactly as torch's CPU ``Tensor.to`` does.

Finite values and infinities round to nearest, ties to even, which is what numpy's and
ml_dtypes' ``astype`` do. torch differs in two places, both checked bit for bit against
``torch.Tensor.to`` in tests/convert/test_cast.py (exhaustively for 16-bit sources):

* Double rounding where torch converts through float: ``c10::Half`` and ``c10::BFloat16``
  are built from a float, so F64 -> F16 and F16 <-> BF16 go through F32.
* NaN bit patterns. torch's vectorised kernels (the path every contiguous tensor takes;
  aten/src/ATen/cpu/vec/vec256/vec256_bfloat16.h, F16C ``vcvtps2ph``) write

      to BF16 from F32/F64   0xFFFF whatever the NaN       (scalar path, from F16: 0x7FC0)
      to F16                 sign | 0x7E00 | mantissa >> 13 (quiet, payload truncated)
      to F32 from F16        the payload, made quiet (0x00400000 set)

  numpy keeps signalling NaNs signalling, and ml_dtypes keeps the sign.

Only these four types are cast: F8 tensors are scaled quantised weights whose meaning depends on
a separate scale tensor, integer and bool tensors are indices and masks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..dtypes import DTYPES, DType

if TYPE_CHECKING:  # numpy loads only where arrays are made
    import numpy as np

__all__ = ["CASTABLE", "TARGETS", "cast_array", "out_dtype"]

CASTABLE = frozenset({"F64", "F32", "F16", "BF16"})
TARGETS = ("F32", "F16", "BF16")

# (from, to) pairs torch converts through float.
_VIA_F32 = frozenset({("F64", "F16"), ("F16", "BF16"), ("BF16", "F16")})
_F32 = next(d for d in DTYPES if d.name == "F32")


def out_dtype(dtype: DType, target: DType | None) -> DType:
    """The dtype a tensor of ``dtype`` is written as when the user asked for ``target``."""
    if target is None or dtype.name not in CASTABLE:
        return dtype
    return target


def _fix_nan(y: np.ndarray, x: np.ndarray, src: str, dst: str) -> np.ndarray:
    """NaNs as torch writes them; ``src`` is the original type, ``x`` what was converted."""
    import numpy as np

    nan = np.isnan(y)
    if not nan.any():
        return y
    bits = y.view(f"<u{y.dtype.itemsize}").copy()
    if dst == "BF16":
        bits[nan] = 0xFFFF if src in ("F32", "F64") else 0x7FC0
    elif dst == "F16":  # x is F32 here (every other source goes through F32 first)
        b = x.view("<u4")[nan]
        bits[nan] = ((b >> 16) & 0x8000) | 0x7E00 | ((b >> 13) & 0x3FF)
    elif dst == "F32" and src == "F16":
        bits[nan] |= 0x00400000
    return bits.view(y.dtype)


def cast_array(x: np.ndarray, src: DType, dst: DType) -> np.ndarray:
    """``x`` (of numpy type ``src.np_dtype()``) cast to ``dst`` as torch would; C order kept."""
    import numpy as np

    if src.name == dst.name:
        return x
    if (src.name, dst.name) in _VIA_F32:
        x = cast_array(x, src, _F32)
    with np.errstate(over="ignore", invalid="ignore"):
        y = x.astype(dst.np_dtype())
    return _fix_nan(y, x, src.name, dst.name)
