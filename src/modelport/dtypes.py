"""One table of element types; every per-format code and reverse map is derived from it.

A row names a dtype by its safetensors code (``F32``, ``BF16``, ...), which is also the name
modelport prints and puts in ``inspect --json``. Formats that have no code for a type (quantized
torch storages, complex32, torch's bit containers) get a modelport-only name in the same style.

Every dtype ``torch.save`` can write (torch 2.13) has a row: tests/test_dtypes_differential.py
saves each one and fails on a dtype this table does not know. Where numpy has no type for a
dtype, ``np_dtype()`` still gives one that holds its bytes bit for bit (``numpy_holder``), so
every tensor modelport can open reads: complex32 as a record of two halves (real, imag), the
``bits*`` containers and packed float4 pairs as unsigned integers of their width.

ggml's block types (GGUF tensors: ``Q8_0``, ``Q4_K``, ...) are rows of the same table, named as
ggml names them, with their block layout as data: ``block`` elements are stored in ``block_bytes``
bytes, so a tensor's size is ``numel // block * block_bytes`` and a row must hold whole blocks.
numpy sees their bytes (``np_dtype()`` is ``uint8``); ``modelport.ggml`` dequantizes them.

Sources: safetensors ``Dtype`` enum (safetensors/src/tensor.rs), torch's
``_dtype_to_storage_type_map`` (torch/storage.py), onnx ``TensorProto.DataType`` (onnx.proto),
ggml's ``ggml_type`` and ``type_traits`` (ggml/include/ggml.h, ggml/src/ggml.c; the same numbers as
the gguf package's ``GGMLQuantizationType`` and ``GGML_QUANT_SIZES``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # numpy is imported only when an array is made: inspect never needs it
    import numpy as np

__all__ = ["DType", "DTYPES", "UNTYPED_STORAGE", "by_name", "by_torch_storage", "by_torch",
           "by_onnx", "by_numpy", "numpy_holder", "by_tf", "tf_code", "TF_OTHER_TYPES",
           "by_ggml", "GGML_REMOVED", "by_tflite", "tflite_type_name", "TRAINING_FLOATS"]

# The floating-point types models are trained in and cast between: what --dtype casts from
# (convert/cast.py), what can.py calls trainable as stored, what merge-lora merges into.
TRAINING_FLOATS = frozenset({"F64", "F32", "F16", "BF16"})


@dataclass(frozen=True)
class DType:
    name: str  # safetensors code, or a modelport name in the same style
    bits: int
    numpy: str | None  # numpy dtype string, or an ml_dtypes type name
    torch: str | None  # attribute of the torch module: torch.<torch>
    torch_storage: str | None  # legacy typed-storage class pickled by torch.save
    onnx: int | None  # onnx TensorProto.DataType
    kind: str  # "f" float, "i" signed, "u" unsigned, "b" bool, "c" complex, "q" quantized,
    #            "x" opaque bits (torch.bits8 ...: no arithmetic meaning; packed float4 pairs),
    #            "g" a ggml block type (scales and packed codes: Q8_0, Q4_K, IQ2_XS, ...)
    ggml: int | None = None  # ggml_type id in GGUF tensor infos
    block: int = 1  # elements per block (ggml block types; 1 for every element type)
    block_bytes: int = 0  # bytes per block (ggml block types; 0: bits // 8 per element)

    @property
    def itemsize(self) -> int:
        return max(1, self.bits // 8)

    @property
    def is_block(self) -> bool:
        """A ggml block type: elements are only addressable a whole block at a time."""
        return self.kind == "g"

    def size(self, numel: int) -> int:
        """Bytes of ``numel`` elements (a block type: ``numel`` must be whole blocks)."""
        if self.block_bytes:
            return numel // self.block * self.block_bytes
        return numel * self.bits // 8

    @property
    def bits_per_weight(self) -> float:
        return self.block_bytes * 8 / self.block if self.block_bytes else float(self.bits)

    @property
    def is_float(self) -> bool:
        return self.kind == "f"

    @property
    def safetensors(self) -> bool:
        """Whether the safetensors format has a code for this type."""
        return self.name in _SAFETENSORS_CODES

    @property
    def packed(self) -> bool:
        """Several elements per byte (torch.quint4x2, quint2x4): no element has its own address."""
        return self.bits < 8

    def np_dtype(self) -> np.dtype:
        """The numpy dtype (ml_dtypes for bf16 and fp8), or for a type numpy does not have, the
        type that holds its bytes (see ``numpy_holder``)."""
        return _np_dtype(self.name)


# name, bits, numpy, torch, torch storage, onnx, kind[, ggml id]
_ROWS: list[tuple] = [
    ("F64", 64, "<f8", "float64", "DoubleStorage", 11, "f", 28),
    ("F32", 32, "<f4", "float32", "FloatStorage", 1, "f", 0),
    ("F16", 16, "<f2", "float16", "HalfStorage", 10, "f", 1),
    ("BF16", 16, "bfloat16", "bfloat16", "BFloat16Storage", 16, "f", 30),
    ("F8_E4M3", 8, "float8_e4m3fn", "float8_e4m3fn", "Float8_e4m3fnStorage", 17, "f"),
    ("F8_E5M2", 8, "float8_e5m2", "float8_e5m2", "Float8_e5m2Storage", 19, "f"),
    ("F8_E4M3FNUZ", 8, "float8_e4m3fnuz", "float8_e4m3fnuz", "Float8_e4m3fnuzStorage", 18, "f"),
    ("F8_E5M2FNUZ", 8, "float8_e5m2fnuz", "float8_e5m2fnuz", "Float8_e5m2fnuzStorage", 20, "f"),
    ("F8_E8M0", 8, "float8_e8m0fnu", "float8_e8m0fnu", "Float8_e8m0fnuStorage", 24, "f"),
    ("I64", 64, "<i8", "int64", "LongStorage", 7, "i", 27),
    ("I32", 32, "<i4", "int32", "IntStorage", 6, "i", 26),
    ("I16", 16, "<i2", "int16", "ShortStorage", 5, "i", 25),
    ("I8", 8, "|i1", "int8", "CharStorage", 3, "i", 24),
    ("U64", 64, "<u8", "uint64", "UInt64Storage", 13, "u"),
    ("U32", 32, "<u4", "uint32", "UInt32Storage", 12, "u"),
    ("U16", 16, "<u2", "uint16", "UInt16Storage", 4, "u"),
    ("U8", 8, "|u1", "uint8", "ByteStorage", 2, "u"),
    ("BOOL", 8, "|b1", "bool", "BoolStorage", 9, "b"),
    ("C64", 64, "<c8", "complex64", "ComplexFloatStorage", 14, "c"),
    ("C128", 128, "<c16", "complex128", "ComplexDoubleStorage", 15, "c"),
    ("C32", 32, None, "complex32", "ComplexHalfStorage", None, "c"),
    ("QI8", 8, "|i1", "qint8", "QInt8Storage", None, "q"),
    ("QU8", 8, "|u1", "quint8", "QUInt8Storage", None, "q"),
    ("QI32", 32, "<i4", "qint32", "QInt32Storage", None, "q"),
    # Two and four values per byte, low bits first; numpy sees the packed bytes (int_repr()).
    ("QU4X2", 4, "|u1", "quint4x2", "QUInt4x2Storage", None, "q"),
    ("QU2X4", 2, "|u1", "quint2x4", "QUInt2x4Storage", None, "q"),
    # torch's bit containers (c10/core/ScalarType.h) and float4 e2m1 packed two to a byte (one
    # torch element per byte: safetensors' F4 counts the halves, so its shape is not torch's).
    ("F4_X2", 8, None, "float4_e2m1fn_x2", None, None, "x"),
    ("B8", 8, None, "bits8", None, None, "x"),
    ("B16", 16, None, "bits16", None, None, "x"),
    ("B1X8", 8, None, "bits1x8", None, None, "x"),
    ("B2X4", 8, None, "bits2x4", None, None, "x"),
    ("B4X2", 8, None, "bits4x2", None, None, "x"),
]

# ggml block types: name, ggml id, elements per block, bytes per block (ggml.c type_traits).
# QK_K = 256 for the K-quants and the IQ types.
_GGML_BLOCKS = [
    ("Q4_0", 2, 32, 2 + 16),
    ("Q4_1", 3, 32, 2 + 2 + 16),
    ("Q5_0", 6, 32, 2 + 4 + 16),
    ("Q5_1", 7, 32, 2 + 2 + 4 + 16),
    ("Q8_0", 8, 32, 2 + 32),
    ("Q8_1", 9, 32, 4 + 4 + 32),
    ("Q2_K", 10, 256, 2 + 2 + 256 // 16 + 256 // 4),
    ("Q3_K", 11, 256, 2 + 256 // 4 + 256 // 8 + 12),
    ("Q4_K", 12, 256, 2 + 2 + 256 // 2 + 12),
    ("Q5_K", 13, 256, 2 + 2 + 256 // 2 + 256 // 8 + 12),
    ("Q6_K", 14, 256, 2 + 256 // 2 + 256 // 4 + 256 // 16),
    ("Q8_K", 15, 256, 4 + 256 + 256 // 8),
    ("IQ2_XXS", 16, 256, 2 + 256 // 4),
    ("IQ2_XS", 17, 256, 2 + 256 // 4 + 256 // 32),
    ("IQ3_XXS", 18, 256, 2 + 256 // 4 + 256 // 8),
    ("IQ1_S", 19, 256, 2 + 256 // 8 + 256 // 16),
    ("IQ4_NL", 20, 32, 2 + 16),
    ("IQ3_S", 21, 256, 2 + 256 // 4 + 256 // 8 + 256 // 32 + 4),
    ("IQ2_S", 22, 256, 2 + 256 // 4 + 256 // 16),
    ("IQ4_XS", 23, 256, 2 + 2 + 256 // 2 + 256 // 64),
    ("IQ1_M", 29, 256, 256 // 8 + 256 // 16 + 256 // 32),
    ("TQ1_0", 34, 256, 2 + 4 * 13),
    ("TQ2_0", 35, 256, 2 + 64),
    ("MXFP4", 39, 32, 1 + 16),
    ("NVFP4", 40, 64, 4 + 32),
    ("Q1_0", 41, 128, 2 + 16),
]
# bits 0: no element has bytes of its own (``packed``); numpy sees the blocks' bytes.
_ROWS += [(name, 0, None, None, None, None, "g", gid, block, nbytes)
          for name, gid, block, nbytes in _GGML_BLOCKS]

# ggml ids that were used and then removed (ggml.h keeps them as comments): a file that holds one
# was written by a llama.cpp of its time, and no current reader knows its layout.
GGML_REMOVED = {4: "Q4_2", 5: "Q4_3", 31: "Q4_0_4_4", 32: "Q4_0_4_8", 33: "Q4_0_8_8",
                36: "IQ4_NL_4_4", 37: "IQ4_NL_4_8", 38: "IQ4_NL_8_8"}

# torch >= 2.0 pickles a storage of any dtype as ``torch.storage.UntypedStorage`` (its size in
# bytes) next to the tensor's dtype (_rebuild_tensor_v3), in zip and legacy files alike.
UNTYPED_STORAGE = "UntypedStorage"

# safetensors >= 0.6 also reads and writes F8_E4M3FNUZ and F8_E5M2FNUZ (safetensors.torch _TYPES).
_SAFETENSORS_CODES = frozenset(
    ["F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2", "F8_E4M3FNUZ", "F8_E5M2FNUZ", "F8_E8M0", "I64", "I32", "I16", "I8", "U64", "U32", "U16", "U8", "BOOL", "C64"]
)

DTYPES: tuple[DType, ...] = tuple(DType(*row) for row in _ROWS)

# TensorFlow's DataType enum (tensorflow/core/framework/types.proto) for the rows above: a
# column kept beside the table rather than in it, keyed by the row's name. qint16/quint16,
# DT_FLOAT8_E4M3B11FNUZ and the 2/4-bit types have no row (TF_OTHER_TYPES names them).
_TF_CODES = {
    "F32": 1, "F64": 2, "I32": 3, "U8": 4, "I16": 5, "I8": 6, "C64": 8, "I64": 9, "BOOL": 10,
    "QI8": 11, "QU8": 12, "QI32": 13, "BF16": 14, "U16": 17, "C128": 18, "F16": 19, "U32": 22,
    "U64": 23, "F8_E5M2": 24, "F8_E4M3": 25, "F8_E4M3FNUZ": 26, "F8_E5M2FNUZ": 28,
}
# TF types that are not arrays of fixed-size numbers, or that modelport has no row for.
TF_OTHER_TYPES = {0: "INVALID", 7: "STRING", 15: "QINT16", 16: "QUINT16", 20: "RESOURCE",
                  21: "VARIANT", 27: "FLOAT8_E4M3B11FNUZ", 29: "INT4", 30: "UINT4",
                  31: "INT2", 32: "UINT2", 33: "FLOAT4_E2M1FN"}

_BY_NAME = {d.name: d for d in DTYPES}
_BY_STORAGE = {d.torch_storage: d for d in DTYPES if d.torch_storage}
_BY_TORCH = {d.torch: d for d in DTYPES if d.torch}
_BY_ONNX = {d.onnx: d for d in DTYPES if d.onnx is not None}
_BY_GGML = {d.ggml: d for d in DTYPES if d.ggml is not None}
_BY_TF = {code: _BY_NAME[name] for name, code in _TF_CODES.items()}
# First row wins for numpy strings shared by a quantized type (QI8 shares |i1 with I8).
_BY_NUMPY: dict[str, DType] = {}
for _d in DTYPES:
    if _d.numpy and _d.kind != "q":
        _BY_NUMPY.setdefault(_d.numpy, _d)


def by_name(name: str) -> DType | None:
    return _BY_NAME.get(name)


def by_torch_storage(cls_name: str) -> DType | None:
    """``FloatStorage`` -> F32; the class name as torch.save pickles it. ``UntypedStorage`` is
    bytes (U8): the tensor's own dtype comes with the tensor."""
    if cls_name == UNTYPED_STORAGE:
        return _BY_NAME["U8"]
    return _BY_STORAGE.get(cls_name)


def by_torch(attr: str) -> DType | None:
    """``float32`` (as in ``torch.float32``) -> F32."""
    return _BY_TORCH.get(attr)


def by_onnx(code: int) -> DType | None:
    return _BY_ONNX.get(code)


def by_tf(code: int) -> DType | None:
    """TensorFlow's DataType enum value -> DType (None for strings, resources, variants...).
    Reference types (code + 100, a graph's ``float32_ref``) map like their base type."""
    return _BY_TF.get(code - 100 if code > 100 else code)


def tf_code(d: DType) -> int | None:
    return _TF_CODES.get(d.name)


def by_ggml(type_id: int) -> DType | None:
    """A ggml_type id (GGUF tensor info) -> DType: 0 -> F32, 12 -> Q4_K."""
    return _BY_GGML.get(type_id)


def by_numpy(dt: np.dtype | str) -> DType | None:
    """A numpy dtype (native or ml_dtypes) -> DType; None for object, string and record types."""
    import numpy as np

    dt = np.dtype(dt)
    if dt.kind in "OUSVMm" and dt.names is None and dt.kind != "V":
        return None
    name = getattr(dt.type, "__name__", "")
    if name in _BY_NUMPY:  # ml_dtypes types are found by their type name
        return _BY_NUMPY[name]
    if dt.names is not None or dt.kind in "OUSV":
        return None
    key = dt.newbyteorder("<").str if dt.itemsize > 1 else dt.str
    return _BY_NUMPY.get(key)


def numpy_holder(d: DType) -> np.dtype:
    """What holds a type numpy does not have, bit for bit: complex32 as the record torch's own
    layout is (real half, imaginary half; c10::complex<c10::Half>), anything else as the
    unsigned integer of its width (its raw bits)."""
    import numpy as np

    if d.kind == "c":
        half = f"<f{d.itemsize // 2}"
        return np.dtype([("real", half), ("imag", half)])
    return np.dtype(f"<u{d.itemsize}" if d.itemsize > 1 else "|u1")


@cache
def _np_dtype(name: str) -> np.dtype:
    d = _BY_NAME[name]
    import numpy as np

    if d.numpy is None:
        return numpy_holder(d)
    if d.numpy[0] in "<|>":
        return np.dtype(d.numpy)
    import ml_dtypes

    return np.dtype(getattr(ml_dtypes, d.numpy))


# TensorFlow Lite TensorType (tensorflow/compiler/mlir/lite/schema/schema.fbs) -> DType name.
# Types with no row here (STRING 5, RESOURCE 13, VARIANT 14, INT4 17, INT2 19, UINT4 20) are
# named by _TFLITE_OTHER for reports; a reader lists such tensors as skipped.
_TFLITE = {0: "F32", 1: "F16", 2: "I32", 3: "U8", 4: "I64", 6: "BOOL", 7: "I16", 8: "C64",
           9: "I8", 10: "F64", 11: "C128", 12: "U64", 15: "U32", 16: "U16", 18: "BF16"}
_TFLITE_OTHER = {5: "STRING", 13: "RESOURCE", 14: "VARIANT", 17: "INT4", 19: "INT2", 20: "UINT4"}


def by_tflite(code: int) -> DType | None:
    name = _TFLITE.get(code)
    return _BY_NAME[name] if name else None


def tflite_type_name(code: int) -> str:
    """The name of a TFLite TensorType, for reports (a DType name where there is one)."""
    return _TFLITE.get(code) or _TFLITE_OTHER.get(code) or f"tflite:{code}"
