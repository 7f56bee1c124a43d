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

F64/F32/F16/BF16 tensors are cast; integer and bool tensors are indices and masks and F8
sources are scaled quantised weights whose meaning depends on a separate scale tensor, so those
are left as they are. F8 *targets* (F8_E4M3, F8_E5M2, which torch >= 2.1 reads) follow torch's
vectorised kernels, which differ from ml_dtypes in two places (checked bit for bit against
``torch.Tensor.to`` in tests/convert/test_convert_cast.py):

* F8_E4M3 (no infinity) saturates: every finite value past the largest, and +-inf, become
  +-448 (0x7E | sign), where ml_dtypes gives NaN.
* F8_E5M2 writes every NaN as 0x7F | sign (ml_dtypes keeps part of the payload).

Every source goes to F8 through F32, as c10's Float8 types are built from a float.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..dtypes import DTYPES, TRAINING_FLOATS, DType

if TYPE_CHECKING:  # numpy loads only where arrays are made
    import numpy as np

__all__ = ["CASTABLE", "TARGETS", "cast_array", "out_dtype", "dtype_code", "normalize"]

CASTABLE = TRAINING_FLOATS  # the dtypes --dtype casts from
TARGETS = ("F32", "F16", "BF16", "F8_E4M3", "F8_E5M2")

# The spellings people use for --dtype and --cast (torch's, numpy's, the Hub's), to codes.
_SPELLINGS = {
    "F32": ("fp32", "float32", "float", "f32", "torch.float32", "single"),
    "F16": ("fp16", "float16", "half", "f16", "torch.float16"),
    "BF16": ("bf16", "bfloat16", "torch.bfloat16"),
    "F8_E4M3": ("fp8", "f8", "float8", "e4m3", "fp8_e4m3", "f8_e4m3", "float8_e4m3fn",
                "f8_e4m3fn", "torch.float8_e4m3fn"),
    "F8_E5M2": ("e5m2", "fp8_e5m2", "f8_e5m2", "float8_e5m2", "torch.float8_e5m2"),
    "Q8_0": ("q8", "q8_0"),  # ggml blocks: a gguf DST only (the planner asks the writer)
}
_BY_SPELLING = {s: code for code, names in _SPELLINGS.items() for s in (code.lower(), *names)}


def normalize(text: str) -> str:
    """``fp16``, ``half``, ``bfloat16``, ``F16`` ... -> the safetensors code (UsageError if
    unknown)."""
    from ..errors import UsageError

    code = _BY_SPELLING.get(text.strip().lower())
    if code is None:
        raise UsageError(f"unknown dtype {text!r}: use {', '.join(TARGETS)} (or fp16, half, "
                         "bf16, float32, fp8 ...)")
    return code


def dtype_code(text: str) -> str:
    """argparse ``type=`` for --dtype and --cast: an unknown spelling is an argparse error."""
    import argparse

    from ..errors import UsageError

    try:
        return normalize(text)
    except UsageError as exc:
        raise argparse.ArgumentTypeError(exc.message) from None

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
    elif dst == "F8_E5M2":
        bits[nan] |= 0x03
    return bits.view(y.dtype)


def cast_array(x: np.ndarray, src: DType, dst: DType) -> np.ndarray:
    """``x`` (of numpy type ``src.np_dtype()``) cast to ``dst`` as torch would; C order kept."""
    import numpy as np

    if src.name == dst.name:
        return x
    if (src.name, dst.name) in _VIA_F32 or (dst.name.startswith("F8") and src.name != "F32"):
        x = cast_array(x, src, _F32)
    with np.errstate(over="ignore", invalid="ignore"):
        y = x.astype(dst.np_dtype())
    if dst.name == "F8_E4M3":  # torch saturates where ml_dtypes overflows to NaN
        over = np.isnan(y) & ~np.isnan(x)
        if over.any():
            bits = y.view(np.uint8).copy()
            bits[over] = np.where(np.signbit(x[over]), 0xFE, 0x7E)
            y = bits.view(y.dtype)
    return _fix_nan(y, x, src.name, dst.name)
