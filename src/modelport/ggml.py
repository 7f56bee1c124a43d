"""ggml's block types, dequantized to float32 (and Q8_0 quantized) with numpy, a batch at a time.

Each block holds ``block`` elements in ``block_bytes`` bytes (the ``dtypes`` table); a tensor row
is a whole number of blocks, so a tensor is a run of blocks in C order and any run of whole blocks
dequantizes on its own. Layouts (ggml ``ggml-common.h`` ``block_*`` structs) and formulas
(``ggml-quants.c`` ``dequantize_row_*``), f16 scales, little-endian::

    Q8_0  d | qs[32] i8                              x = d * q
    Q4_0  d | qs[16]: low nibbles are x0..15,        x = d * (q - 8)
              high nibbles x16..31
    Q4_1  d m | qs[16]                               x = d * q + m
    Q5_0  d | qh u32: bit i is bit 4 of xi | qs[16]  x = d * (q - 16)
    Q5_1  d m | qh | qs[16]                          x = d * q + m
    Q2_K  scales[16] (lo nibble scale, hi min) | qs[64] | d dmin
          x = d*(sc & 15) * q - dmin*(sc >> 4): 2 bits, 16 groups of 16
    Q3_K  hmask[32] | qs[64] | scales[12] (16 x 6 bits) | d
          x = d*(sc - 32) * (q - (4 if the hmask bit is clear else 0))
    Q4_K  d dmin | scales[12] (8 scales and 8 mins, 6 bits) | qs[128]
          x = d*sc * q - dmin*m: 8 groups of 32
    Q5_K  d dmin | scales[12] | qh[32] | qs[128]     as Q4_K with a 5th bit from qh
    Q6_K  ql[128] | qh[64] | scales[16] i8 | d       x = d*sc * (q - 32): 16 groups of 16

Within a K-quant block the codes of 32 (or 16) consecutive elements sit in the same bytes at
successive bit shifts, which the reshapes below spell out. The arithmetic is float32 in ggml's
order (a scale times a code, minus a min), so results equal ggml's and the gguf package's
dequantization bit for bit (tests/formats/test_ggml.py checks that). IQ, TQ, MXFP4 and NVFP4
types are listed in the table and refused here by name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

from .dtypes import DType, by_name
from .errors import UsageError
from .model import TensorEntry

if TYPE_CHECKING:
    import numpy as np

    from .convert.stream import Sources

__all__ = ["DEQUANTIZE", "dequantize", "to_float", "can_dequantize", "dequantized_blocks",
           "raw_entry",
           "quantize_q8_0", "quantized_pieces", "whole_blocks"]

QK_K = 256


def _f16(b: np.ndarray) -> np.ndarray:
    """Two bytes per block as float32, shape (n, 1)."""
    import numpy as np

    return np.ascontiguousarray(b).view("<f2").astype(np.float32)


def _nibbles(qs: np.ndarray) -> np.ndarray:
    """(n, k) bytes -> (n, 2k) codes: the k low nibbles, then the k high ones."""
    import numpy as np

    return np.concatenate([qs & 0x0F, qs >> 4], axis=1)


def _q8_0(b: np.ndarray) -> np.ndarray:
    return _f16(b[:, :2]) * b[:, 2:].view("i1").astype("f4")


def _q4_0(b: np.ndarray) -> np.ndarray:
    return _f16(b[:, :2]) * (_nibbles(b[:, 2:]).astype("i1") - 8).astype("f4")


def _q4_1(b: np.ndarray) -> np.ndarray:
    return _f16(b[:, :2]) * _nibbles(b[:, 4:]).astype("f4") + _f16(b[:, 2:4])


def _fifth_bits(qh: np.ndarray) -> np.ndarray:
    """(n, 4) bytes of a little-endian u32 -> (n, 32): bit i as 16 or 0."""
    import numpy as np

    return np.unpackbits(qh, axis=1, bitorder="little") << np.uint8(4)


def _q5_0(b: np.ndarray) -> np.ndarray:
    q = _nibbles(b[:, 6:]) | _fifth_bits(b[:, 2:6])
    return _f16(b[:, :2]) * (q.astype("i1") - 16).astype("f4")


def _q5_1(b: np.ndarray) -> np.ndarray:
    q = _nibbles(b[:, 8:]) | _fifth_bits(b[:, 4:8])
    return _f16(b[:, :2]) * q.astype("f4") + _f16(b[:, 2:4])


def _shifts(q: np.ndarray, width: int, count: int) -> np.ndarray:
    """(n, halves, 32) bytes -> (n, halves, count, 32): the ``width``-bit codes at shifts
    0, width, 2*width, ...: element order is byte-major within a shift."""
    import numpy as np

    sh = (np.arange(count, dtype=np.uint8) * width).reshape(1, 1, count, 1)
    return (q[:, :, None, :] >> sh) & np.uint8((1 << width) - 1)


def _q2_k(b: np.ndarray) -> np.ndarray:
    n = b.shape[0]
    scales, qs = b[:, :16], b[:, 16:80]
    d, dmin = _f16(b[:, 80:82]), _f16(b[:, 82:84])
    dl = (d * (scales & 0x0F).astype("f4")).reshape(n, 16, 1)
    ml = (dmin * (scales >> 4).astype("f4")).reshape(n, 16, 1)
    q = _shifts(qs.reshape(n, 2, 32), 2, 4).reshape(n, 16, 16).astype("f4")
    return (dl * q - ml).reshape(n, QK_K)


def _q3_k_scales(s: np.ndarray) -> np.ndarray:
    """12 bytes -> 16 six-bit scales (ggml's kmask1/kmask2 unpacking), minus 32."""
    import numpy as np

    lo, hi = s[:, :8], s[:, 8:12]
    low = np.concatenate([lo & 0x0F, lo >> 4], axis=1)  # scale i: low 4 bits
    high = np.concatenate([(hi >> k) & 3 for k in (0, 2, 4, 6)], axis=1)  # and its top 2 bits
    return ((low | (high << 4)).astype("i1") - 32).astype("f4")


def _q3_k(b: np.ndarray) -> np.ndarray:
    n = b.shape[0]
    hmask, qs, scales, d = b[:, :32], b[:, 32:96], b[:, 96:108], _f16(b[:, 108:110])
    dl = (d * _q3_k_scales(scales)).reshape(n, 16, 1)
    low = _shifts(qs.reshape(n, 2, 32), 2, 4).reshape(n, 8, 32)
    # hmask bit j (one per 32 elements, across both 128-element halves) of byte l
    high = _shifts(hmask.reshape(n, 1, 32), 1, 8).reshape(n, 8, 32)
    q = low.astype("i1") - ((high ^ 1) << 2).astype("i1")
    return (dl * q.reshape(n, 16, 16).astype("f4")).reshape(n, QK_K)


def _k4_scales(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """12 bytes -> 8 six-bit scales and 8 mins (ggml's get_scale_min_k4)."""
    import numpy as np

    a, m, hi = s[:, 0:4], s[:, 4:8], s[:, 8:12]
    sc = np.concatenate([a & 63, (hi & 0x0F) | ((a >> 6) << 4)], axis=1)
    mn = np.concatenate([m & 63, (hi >> 4) | ((m >> 6) << 4)], axis=1)
    return sc.astype("f4"), mn.astype("f4")


def _q4_k(b: np.ndarray) -> np.ndarray:
    n = b.shape[0]
    d, dmin = _f16(b[:, 0:2]), _f16(b[:, 2:4])
    sc, mn = _k4_scales(b[:, 4:16])
    q = _shifts(b[:, 16:144].reshape(n, 4, 32), 4, 2).reshape(n, 8, 32).astype("f4")
    return ((d * sc).reshape(n, 8, 1) * q - (dmin * mn).reshape(n, 8, 1)).reshape(n, QK_K)


def _q5_k(b: np.ndarray) -> np.ndarray:
    n = b.shape[0]
    d, dmin = _f16(b[:, 0:2]), _f16(b[:, 2:4])
    sc, mn = _k4_scales(b[:, 4:16])
    low = _shifts(b[:, 48:176].reshape(n, 4, 32), 4, 2).reshape(n, 8, 32)
    high = _shifts(b[:, 16:48].reshape(n, 1, 32), 1, 8).reshape(n, 8, 32)
    q = (low | (high << 4)).astype("f4")
    return ((d * sc).reshape(n, 8, 1) * q - (dmin * mn).reshape(n, 8, 1)).reshape(n, QK_K)


def _q6_k(b: np.ndarray) -> np.ndarray:
    n = b.shape[0]
    ql, qh = b[:, :128], b[:, 128:192]
    scales, d = b[:, 192:208].view("i1").astype("f4"), _f16(b[:, 208:210])
    # per 128-element half: [ql[0:32] low, ql[32:64] low, ql[0:32] high, ql[32:64] high]
    low = _shifts(ql.reshape(n, 2, 64), 4, 2).reshape(n, 2, 4, 32)
    high = _shifts(qh.reshape(n, 2, 32), 2, 4)  # (n, 2, 4, 32)
    q = ((low | (high << 4)).astype("i1") - 32).astype("f4")
    return ((d * scales).reshape(n, 16, 1) * q.reshape(n, 16, 16)).reshape(n, QK_K)


def _bf16(b: np.ndarray) -> np.ndarray:
    import numpy as np

    return (np.ascontiguousarray(b).view("<u2").astype(np.uint32) << 16).view(np.float32)


def _f16_all(b: np.ndarray) -> np.ndarray:
    return _f16(b)


def _f32(b: np.ndarray) -> np.ndarray:
    import numpy as np

    return np.ascontiguousarray(b).view("<f4")


# dtype name -> (n, bytes per block) uint8 -> (n, elements per block) float32
DEQUANTIZE: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "F32": _f32, "F16": _f16_all, "BF16": _bf16,
    "Q8_0": _q8_0, "Q4_0": _q4_0, "Q4_1": _q4_1, "Q5_0": _q5_0, "Q5_1": _q5_1,
    "Q2_K": _q2_k, "Q3_K": _q3_k, "Q4_K": _q4_k, "Q5_K": _q5_k, "Q6_K": _q6_k,
}


def _layout(d: DType) -> tuple[int, int]:
    """(elements, bytes) per block; element types are blocks of one."""
    return (d.block, d.block_bytes) if d.is_block else (1, d.itemsize)


def can_dequantize(d: DType) -> bool:
    return d.name in DEQUANTIZE


def _refuse(d: DType, tensor: str | None = None) -> UsageError:
    return UsageError(f"{d.name} tensors cannot be dequantized by modelport yet (it reads "
                      f"{', '.join(k for k in DEQUANTIZE if by_name(k).is_block)})",  # type: ignore[union-attr]
                      tensor=tensor, hint="--keep-quantized keeps the blocks as they are")


def dequantize(d: DType, raw: np.ndarray | bytes | memoryview) -> np.ndarray:
    """Whole blocks of type ``d`` (bytes) -> float32, flat."""
    import numpy as np

    fn = DEQUANTIZE.get(d.name)
    if fn is None:
        raise _refuse(d)
    block, nbytes = _layout(d)
    data = np.frombuffer(raw, np.uint8) if not isinstance(raw, np.ndarray) else raw
    if data.size % nbytes:
        raise ValueError(f"{data.size} bytes are not whole {d.name} blocks of {nbytes}")
    with np.errstate(invalid="ignore", over="ignore"):  # inf/NaN scales give inf/NaN, as ggml
        return fn(data.reshape(-1, nbytes)).reshape(-1)


def raw_entry(entry: TensorEntry) -> TensorEntry:
    """The tensor's bytes as a U8 tensor of shape (*rows, bytes per row), keeping a row-granular
    view's strides (a permutation of rows, as un-permuting llama.cpp's q/k weights makes)."""
    d = entry.dtype
    cols = entry.shape[-1] if entry.shape else 1
    if cols % d.block:
        raise UsageError(f"rows of {cols} elements are not whole {d.name} blocks",
                         tensor=entry.name)
    row = d.size(cols)
    u8 = by_name("U8")
    assert u8 is not None
    shape = (*entry.shape[:-1], row) if entry.shape else (row,)
    if entry.strides is None or entry.is_contiguous:
        return TensorEntry(entry.name, u8, shape, entry.storage, d.size(entry.storage_offset))
    *outer, inner = entry.strides
    if inner != 1 or any(s % cols for s in outer) or entry.storage_offset % cols:
        raise UsageError(f"a {d.name} view that is not made of whole rows", tensor=entry.name)
    strides = (*(s // cols * row for s in outer), 1)
    return TensorEntry(entry.name, u8, shape, entry.storage, entry.storage_offset // cols * row,
                       strides)


def whole_blocks(chunks: Iterable[np.ndarray], nbytes: int) -> Iterator[np.ndarray]:
    """Byte chunks re-cut at block boundaries (a chunk may end inside a block)."""
    import numpy as np

    rest: np.ndarray | None = None
    for c in chunks:
        c = c.reshape(-1).view(np.uint8)
        if rest is not None and rest.size:
            c = np.concatenate([rest, c])
        cut = c.size - c.size % nbytes
        rest = c[cut:].copy() if cut < c.size else None
        if cut:
            yield c[:cut]
    if rest is not None and rest.size:
        raise ValueError(f"{rest.size} trailing bytes are not a whole block")


def dequantized_blocks(entry: TensorEntry, sources: Sources,
                       budget_bytes: int | None = None) -> Iterator[np.ndarray]:
    """A block-typed tensor as float32 arrays in C order, of bounded size."""
    from .convert.stream import CHUNK, blocks

    d = entry.dtype
    if d.name not in DEQUANTIZE:
        raise _refuse(d, entry.name)
    block, nbytes = _layout(d)
    # Input bytes per chunk such that the float32 output stays near the budget.
    raw_budget = max(nbytes, (budget_bytes or CHUNK) // (4 * block) * nbytes)
    for raw in whole_blocks(blocks(raw_entry(entry), sources, raw_budget), nbytes):
        yield dequantize(d, raw)


def to_float(entry: TensorEntry, dtype: str = "F32") -> np.ndarray:
    """A whole tensor dequantized (``modelport.to_numpy`` gives a block type's raw bytes), in
    its numpy shape, as F32 (or F16/BF16, rounded as convert rounds)."""
    import numpy as np

    from .convert.cast import cast_array
    from .convert.stream import Sources

    out = by_name(dtype)
    f32 = by_name("F32")
    assert out is not None and f32 is not None
    with Sources() as sources:
        parts = [cast_array(b, f32, out) for b in dequantized_blocks(entry, sources)]
    flat = np.concatenate(parts) if parts else np.empty(0, out.np_dtype())
    return flat.reshape(entry.shape)


# -- quantizing ------------------------------------------------------------------------------------


def quantize_q8_0(x: np.ndarray) -> np.ndarray:
    """float32 values (a multiple of 32) -> Q8_0 blocks, as ggml's quantize_row_q8_0_ref:
    d = max|x| / 127, q = round(x / d) half away from zero, d stored as f16."""
    import numpy as np

    v = np.asarray(x, np.float32).reshape(-1, 32)
    d = np.abs(v).max(axis=1, keepdims=True) / np.float32(127)
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = np.where(d == 0, np.float32(0), np.float32(1) / d).astype(np.float32)
    y = v * inv
    a = np.abs(y)
    whole = np.floor(a)
    r = whole + (a - whole >= np.float32(0.5))  # roundf: half away from zero
    q = (np.sign(y) * r).astype(np.int8)
    out = np.empty((v.shape[0], 34), np.uint8)
    out[:, :2] = d.astype("<f2").view(np.uint8)
    out[:, 2:] = q.view(np.uint8)
    return out.reshape(-1)


QUANTIZE: dict[str, Callable[[np.ndarray], np.ndarray]] = {"Q8_0": quantize_q8_0}


def quantized_pieces(arrays: Iterable[np.ndarray], src: DType, dst: DType) -> Iterator[memoryview]:
    """Float arrays of type ``src`` in C order -> bytes of ``dst`` blocks, whole blocks at a
    time (the tensor's rows are whole blocks, so nothing is left over at the end)."""
    import numpy as np

    from .convert.cast import cast_array

    fn = QUANTIZE.get(dst.name)
    if fn is None:
        raise UsageError(f"modelport cannot quantize to {dst.name}; it writes "
                         f"{', '.join(QUANTIZE)}")
    f32 = by_name("F32")
    assert f32 is not None
    floats = (cast_array(a, src, f32).reshape(-1).view(np.uint8) for a in arrays)
    for chunk in whole_blocks(floats, dst.block * 4):
        yield fn(chunk.view(np.float32)).data
