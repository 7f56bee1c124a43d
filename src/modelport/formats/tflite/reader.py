"""TensorFlow Lite models: the flatbuffer of tensorflow/compiler/mlir/lite/schema/schema.fbs,
read in place with modelport's bounds-checked table reader (``containers/flatbuffers.py``).

    bytes 0..4   u32 offset of the root Model table      bytes 4..8   file identifier "TFL3"
    Model        0 version:u32  1 operator_codes:[OperatorCode]  2 subgraphs:[SubGraph]
                 3 description:string  4 buffers:[Buffer]  5 metadata_buffer:[i32]
                 6 metadata:[Metadata]  7 signature_defs:[SignatureDef]
                 8 external_buffer_groups  9 external_buffers (weights in another file)
    SubGraph     0 tensors:[Tensor]  1 inputs:[i32]  2 outputs:[i32]  3 operators:[Operator]
                 4 name:string
    Tensor       0 shape:[i32]  1 type:TensorType(i8)  2 buffer:u32  3 name:string
                 4 quantization:QuantizationParameters  5 is_variable:bool
                 6 sparsity  7 shape_signature:[i32]  10 external_buffer:u32
    Quantization 0 min:[f32]  1 max:[f32]  2 scale:[f32]  3 zero_point:[i64]
                 6 quantized_dimension:i32
    Buffer       0 data:[u8]  1 offset:u64  2 size:u64   (offset > 1: the bytes are at that
                 file offset, after the flatbuffer: how models over 2 GB are written)
    OperatorCode 0 deprecated_builtin_code:i8  1 custom_code:string  2 version:i32=1
                 3 builtin_code:i32   (the op is max(deprecated, builtin): schema v3a moved
                 codes past 127 to the i32 field and left 127 "PLACEHOLDER" in the i8 one)
    Operator     0 opcode_index:u32  1 inputs:[i32]  2 outputs:[i32]
    Metadata     0 name:string  1 buffer:u32
    SignatureDef 0 inputs:[TensorMap]  1 outputs:[TensorMap]  2 signature_key:string
                 4 subgraph_index:u32          TensorMap 0 name:string  1 tensor_index:u32

Every tensor whose buffer holds bytes is a weight (buffer 0 is the empty sentinel), small shape
constants included, named as the converter named it; a tensor of another subgraph than the
first is named ``<subgraph>/<tensor>``. Quantized tensors keep their stored integers; their
scales and zero points go to ``metadata["quantization"]``. Ops are counted by name; CUSTOM ops
by their custom code, and ``Flex*`` custom ops (TensorFlow kernels run through the Select-ops
delegate) are named as such.
"""

from __future__ import annotations

import math
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ...classify import classify, reselect, unique_name
from ...containers.flatbuffers import FlatBuffer, Table
from ...dtypes import by_tflite, tflite_type_name
from ...errors import LimitExceeded, MalformedHeader, ModelportError, Truncated
from ...limits import DEFAULT_LIMITS, Limits
from ...model import Checkpoint, Storage, TensorEntry
from ...tensors import storage_buffer
from ..base import Options
from . import FORMAT_ID, IDENTIFIER

__all__ = ["FORMAT_ID", "parse", "open", "read", "Model"]

SCHEMA_VERSION = 3

# BuiltinOperator names by code, from the schema's enum (TF 2.21's schema_py_generated).
_OP_NAMES = """
    ADD AVERAGE_POOL_2D CONCATENATION CONV_2D DEPTHWISE_CONV_2D DEPTH_TO_SPACE DEQUANTIZE
    EMBEDDING_LOOKUP FLOOR FULLY_CONNECTED HASHTABLE_LOOKUP L2_NORMALIZATION L2_POOL_2D
    LOCAL_RESPONSE_NORMALIZATION LOGISTIC LSH_PROJECTION LSTM MAX_POOL_2D MUL RELU RELU_N1_TO_1
    RELU6 RESHAPE RESIZE_BILINEAR RNN SOFTMAX SPACE_TO_DEPTH SVDF TANH CONCAT_EMBEDDINGS SKIP_GRAM
    CALL CUSTOM EMBEDDING_LOOKUP_SPARSE PAD UNIDIRECTIONAL_SEQUENCE_RNN GATHER BATCH_TO_SPACE_ND
    SPACE_TO_BATCH_ND TRANSPOSE MEAN SUB DIV SQUEEZE UNIDIRECTIONAL_SEQUENCE_LSTM STRIDED_SLICE
    BIDIRECTIONAL_SEQUENCE_RNN EXP TOPK_V2 SPLIT LOG_SOFTMAX DELEGATE BIDIRECTIONAL_SEQUENCE_LSTM
    CAST PRELU MAXIMUM ARG_MAX MINIMUM LESS NEG PADV2 GREATER GREATER_EQUAL LESS_EQUAL SELECT SLICE
    SIN TRANSPOSE_CONV SPARSE_TO_DENSE TILE EXPAND_DIMS EQUAL NOT_EQUAL LOG SUM SQRT RSQRT SHAPE POW
    ARG_MIN FAKE_QUANT REDUCE_PROD REDUCE_MAX PACK LOGICAL_OR ONE_HOT LOGICAL_AND LOGICAL_NOT UNPACK
    REDUCE_MIN FLOOR_DIV REDUCE_ANY SQUARE ZEROS_LIKE FILL FLOOR_MOD RANGE RESIZE_NEAREST_NEIGHBOR
    LEAKY_RELU SQUARED_DIFFERENCE MIRROR_PAD ABS SPLIT_V UNIQUE CEIL REVERSE_V2 ADD_N GATHER_ND COS
    WHERE RANK ELU REVERSE_SEQUENCE MATRIX_DIAG QUANTIZE MATRIX_SET_DIAG ROUND HARD_SWISH IF WHILE
    NON_MAX_SUPPRESSION_V4 NON_MAX_SUPPRESSION_V5 SCATTER_ND SELECT_V2 DENSIFY SEGMENT_SUM
    BATCH_MATMUL PLACEHOLDER_FOR_GREATER_OP_CODES CUMSUM CALL_ONCE BROADCAST_TO RFFT2D CONV_3D IMAG
    REAL COMPLEX_ABS HASHTABLE HASHTABLE_FIND HASHTABLE_IMPORT HASHTABLE_SIZE REDUCE_ALL
    CONV_3D_TRANSPOSE VAR_HANDLE READ_VARIABLE ASSIGN_VARIABLE BROADCAST_ARGS RANDOM_STANDARD_NORMAL
    BUCKETIZE RANDOM_UNIFORM MULTINOMIAL GELU DYNAMIC_UPDATE_SLICE RELU_0_TO_1 UNSORTED_SEGMENT_PROD
    UNSORTED_SEGMENT_MAX UNSORTED_SEGMENT_SUM ATAN2 UNSORTED_SEGMENT_MIN SIGN BITCAST BITWISE_XOR
    RIGHT_SHIFT STABLEHLO_LOGISTIC STABLEHLO_ADD STABLEHLO_DIVIDE STABLEHLO_MULTIPLY
    STABLEHLO_MAXIMUM STABLEHLO_RESHAPE STABLEHLO_CLAMP STABLEHLO_CONCATENATE
    STABLEHLO_BROADCAST_IN_DIM STABLEHLO_CONVOLUTION STABLEHLO_SLICE STABLEHLO_CUSTOM_CALL
    STABLEHLO_REDUCE STABLEHLO_ABS STABLEHLO_AND STABLEHLO_COSINE STABLEHLO_EXPONENTIAL
    STABLEHLO_FLOOR STABLEHLO_LOG STABLEHLO_MINIMUM STABLEHLO_NEGATE STABLEHLO_OR STABLEHLO_POWER
    STABLEHLO_REMAINDER STABLEHLO_RSQRT STABLEHLO_SELECT STABLEHLO_SUBTRACT STABLEHLO_TANH
    STABLEHLO_SCATTER STABLEHLO_COMPARE STABLEHLO_CONVERT STABLEHLO_DYNAMIC_SLICE
    STABLEHLO_DYNAMIC_UPDATE_SLICE STABLEHLO_PAD STABLEHLO_IOTA STABLEHLO_DOT_GENERAL
    STABLEHLO_REDUCE_WINDOW STABLEHLO_SORT STABLEHLO_WHILE STABLEHLO_GATHER STABLEHLO_TRANSPOSE
    DILATE STABLEHLO_RNG_BIT_GENERATOR REDUCE_WINDOW STABLEHLO_COMPOSITE STABLEHLO_SHIFT_LEFT
    STABLEHLO_CBRT STABLEHLO_CASE
"""
BUILTIN_OPS = tuple(_OP_NAMES.split())
CUSTOM = 32
_PLACEHOLDER = 127  # PLACEHOLDER_FOR_GREATER_OP_CODES


def op_name(code: int) -> str:
    return BUILTIN_OPS[code] if 0 <= code < len(BUILTIN_OPS) else f"BUILTIN_{code}"


@dataclass
class Model:
    """What ``parse`` found: the tensors with bytes, the skipped ones, and the graph summary."""

    tensors: dict[str, TensorEntry] = field(default_factory=dict)
    quantization: dict[str, dict[str, Any]] = field(default_factory=dict)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    ops: Counter[str] = field(default_factory=Counter)
    custom_ops: list[str] = field(default_factory=list)  # custom codes, in operator-code order
    info: dict[str, Any] = field(default_factory=dict)


def _buffers(fb: FlatBuffer, model: Table, path: str) -> list[tuple[int, int]]:
    """(file offset, size) of every buffer; (0, 0) for an empty one."""
    out = []
    for i, b in enumerate(model.tables(4, "buffers")):
        start, n = b.vector(0, 1, f"buffers[{i}].data")
        off, size = int(b.scalar(1, "Q")), int(b.scalar(2, "Q"))
        if off > 1:
            if n:
                raise MalformedHeader(f"buffer {i} has both inline data and an offset",
                                      offset=b.pos, hint="the file is corrupt")
            # Bytes stored after the flatbuffer: offset is from the start of the file.
            if off + size > fb.size:
                raise Truncated(f"buffer {i} needs bytes {off}..{off + size}, the file has "
                                f"{fb.size}", offset=off, hint="the file is truncated; copy "
                                "it again")
            start, n = off, size
        out.append((start, n))
    return out


def _dims(t: Table, i: int, what: str) -> list[int]:
    return [int(d) for d in t.scalars(i, "i", what)]


def parse(path: str, buf: memoryview, limits: Limits = DEFAULT_LIMITS) -> Model:
    """Read a TFLite flatbuffer (``buf`` is the whole file) into a ``Model``."""
    if len(buf) < 8 or bytes(buf[4:8]) != IDENTIFIER:
        raise MalformedHeader("no TFL3 file identifier at bytes 4..8", offset=4,
                              hint="not a TensorFlow Lite model")
    fb = FlatBuffer(buf, what="tflite")
    model = fb.root()
    m = Model()
    version = int(model.scalar(0, "I"))
    buffers = _buffers(fb, model, path)
    codes = []
    for i, oc in enumerate(model.tables(1, "operator_codes")):
        code = max(int(oc.scalar(0, "b")), int(oc.scalar(3, "i")))
        if code == CUSTOM:
            cc = oc.string(1, f"operator_codes[{i}].custom_code") or "?"
            codes.append(("flex:" if cc.startswith("Flex") else "custom:") + cc)
            m.custom_ops.append(cc)
        else:
            codes.append(op_name(code))
    subgraphs = model.tables(2, "subgraphs")
    if not subgraphs:
        raise MalformedHeader("the model has no subgraph", offset=model.pos,
                              hint="the file is corrupt or not a model")
    total = 0
    graphs = []
    for si, sg in enumerate(subgraphs):
        sg_name = sg.string(4, f"subgraphs[{si}].name") or f"subgraph{si}"
        tensors = sg.tables(0, f"subgraphs[{si}].tensors")
        total += len(tensors)
        if total > limits.tensors:
            raise LimitExceeded(f"more than {limits.tensors} tensors",
                                hint="raise Limits.tensors if the model is genuine")
        names = []
        for ti, t in enumerate(tensors):
            where = f"subgraphs[{si}].tensors[{ti}]"
            name = t.string(3, f"{where}.name") or f"tensor{ti}"
            names.append(name)
            _tensor(m, t, where, name if si == 0 else f"{sg_name}/{name}", buffers, path)
        operators = sg.tables(3, f"subgraphs[{si}].operators")
        for oi, op in enumerate(operators):
            idx = int(op.scalar(0, "I"))
            if idx >= len(codes):
                raise MalformedHeader(f"operator {oi} of subgraph {si} uses operator code "
                                      f"{idx}, the model has {len(codes)}", offset=op.pos,
                                      hint="the file is corrupt")
            m.ops[codes[idx]] += 1

        graphs.append({"name": sg_name, "tensors": len(tensors), "operators": len(operators),
                       "inputs": _io(sg, 1, f"subgraphs[{si}].inputs", tensors, names),
                       "outputs": _io(sg, 2, f"subgraphs[{si}].outputs", tensors, names)})
    metadata = []
    for i, md in enumerate(model.tables(6, "metadata")):
        name = md.string(0, f"metadata[{i}].name") or ""
        b = int(md.scalar(1, "I"))
        if b >= len(buffers):
            raise MalformedHeader(f"metadata {name!r} names buffer {b}, the model has "
                                  f"{len(buffers)}", offset=md.pos, hint="the file is corrupt")
        start, n = buffers[b]
        entry: dict[str, Any] = {"name": name, "bytes": n}
        raw = bytes(buf[start:start + min(n, 64)]).rstrip(b"\0")
        if name == "min_runtime_version" and raw.isascii():
            entry["value"] = raw.decode()
        metadata.append(entry)
    signatures = []
    for i, sd in enumerate(model.tables(7, "signature_defs")):
        def names_of(k: int, what: str, sd: Table = sd) -> list[str]:
            return [tm.string(0, f"{what}.name") or "" for tm in sd.tables(k, what)]

        signatures.append({"key": sd.string(2, f"signature_defs[{i}].signature_key") or "",
                           "subgraph": int(sd.scalar(4, "I")),
                           "inputs": names_of(0, f"signature_defs[{i}].inputs"),
                           "outputs": names_of(1, f"signature_defs[{i}].outputs")})
    custom = sorted({c for c in m.custom_ops if not c.startswith("Flex")})
    flex = sorted({c for c in m.custom_ops if c.startswith("Flex")})
    m.info = {
        "schema_version": version,
        "description": model.string(3, "description") or "",
        "subgraphs": graphs,
        "op_counts": dict(sorted(m.ops.items(), key=lambda kv: (-kv[1], kv[0]))),
        "operator_codes": codes,
        "custom_ops": custom,
        "flex_ops": flex,
        "metadata": metadata,
        "signatures": signatures,
        "buffers": len(buffers),
        "skipped_tensors": m.skipped,
        "external_buffers": bool(model.has(9)),
    }
    return m


def _io(sg: Table, i: int, what: str, tensors: list[Table],
        names: list[str]) -> list[dict[str, Any]]:
    """A subgraph's inputs or outputs: name, type and shape (-1 in shape_signature: None)."""
    out = []
    for k in sg.scalars(i, "i", what):
        if not 0 <= k < len(tensors):
            raise MalformedHeader(f"{what} names tensor {k}, the subgraph has {len(tensors)}",
                                  offset=sg.pos, hint="the file is corrupt")
        t = tensors[k]
        sig = _dims(t, 7, "shape_signature") or _dims(t, 0, "shape")
        out.append({"name": names[k], "dtype": tflite_type_name(int(t.scalar(1, "b"))),
                    "shape": [None if d < 0 else d for d in sig]})
    return out


def _tensor(m: Model, t: Table, where: str, name: str, buffers: list[tuple[int, int]],
            path: str) -> None:
    b = int(t.scalar(2, "I"))
    code = int(t.scalar(1, "b"))
    shape = _dims(t, 0, f"{where}.shape")
    if t.has(10) and int(t.scalar(10, "I")):
        m.skipped.append({"name": name, "dtype": tflite_type_name(code), "shape": shape,
                          "reason": "its bytes are in an external buffer file"})
        return
    if b >= len(buffers):
        raise MalformedHeader(f"tensor names buffer {b}, the model has {len(buffers)}",
                              tensor=name, offset=t.pos, hint="the file is corrupt")
    start, n = buffers[b]
    if b == 0 or not n:
        return  # an activation or input: no constant bytes
    if any(d < 0 for d in shape):
        raise MalformedHeader(f"constant tensor with shape {shape}", tensor=name, offset=t.pos,
                              hint="the file is corrupt")
    dtype = by_tflite(code)
    if dtype is None or t.has(6):
        why = "it is sparse (its buffer holds the compressed values)" if t.has(6) else \
            f"modelport cannot hold element type {tflite_type_name(code)}"
        m.skipped.append({"name": name, "dtype": tflite_type_name(code), "shape": shape,
                          "bytes": n, "reason": why})
        return
    nbytes = math.prod(shape) * dtype.bits // 8
    if nbytes != n:
        raise MalformedHeader(f"buffer {b} holds {n} bytes, shape {shape} of {dtype.name} "
                              f"needs {nbytes}", tensor=name, offset=start,
                              hint="the file is corrupt")
    name = unique_name(name, m.tensors)
    m.tensors[name] = TensorEntry(name, dtype, tuple(shape),
                                  Storage(nbytes=n, path=path, offset=start, key=f"buffer{b}"))
    q = t.table(4, f"{where}.quantization")
    if q is not None:
        scale = q.scalars(2, "f", f"{where}.quantization.scale")
        zero = q.scalars(3, "q", f"{where}.quantization.zero_point")
        if len(scale):
            m.quantization[name] = {"scale": scale.tolist(), "zero_point": zero.tolist(),
                                    "quantized_dimension": int(q.scalar(6, "i"))}


_LAYOUT = ("layouts as stored by TFLite: FULLY_CONNECTED weights [out, in], CONV_2D filters "
           "[out, h, w, in], DEPTHWISE_CONV_2D [1, h, w, out]; quantized tensors hold their "
           "stored integers (real = scale * (q - zero_point))")


def open(path: str, limits: Limits = DEFAULT_LIMITS) -> Checkpoint:  # noqa: A001 - format verb
    path = os.fspath(path)
    size = os.path.getsize(path)
    try:
        if size < 8:
            raise Truncated(f"{size} bytes: too short for a TFLite model", offset=0,
                            hint="the file is truncated; copy it again")
        m = parse(path, storage_buffer(Storage(nbytes=size, path=path)), limits)
    except ModelportError as err:
        err.located(path=path, format=FORMAT_ID)
        raise
    ck = classify(path, FORMAT_ID, m.tensors, info={"tflite": m.info}, kind="full-model",
                  file_size=size)
    if m.quantization:
        ck.metadata["quantization"] = m.quantization
    ck.info["summary"] = _summary(m)
    ck.needs.append(_needs(m))
    return ck


def _summary(m: Model) -> dict[str, Any]:
    g = m.info["subgraphs"][0]

    def spec(ts: list[dict[str, Any]]) -> str:
        return ", ".join(f"{t['name']} {t['dtype']}"
                         f"[{', '.join('?' if d is None else str(d) for d in t['shape'])}]"
                         for t in ts[:6]) or "(none)"

    ops = ", ".join(f"{k} {v}" for k, v in list(m.info["op_counts"].items())[:8])
    out: dict[str, Any] = {
        "graph": f"{sum(s['operators'] for s in m.info['subgraphs'])} ops ({ops}); "
                 f"{len(m.info['subgraphs'])} subgraph(s); schema v{m.info['schema_version']}",
        "inputs": spec(g["inputs"]),
        "outputs": spec(g["outputs"]),
        "layout": _LAYOUT,
    }
    if m.quantization:
        out["quantized"] = f"{len(m.quantization)} tensors with scales/zero points " \
                           "(values: quantization)"
    if m.info["metadata"]:
        out["metadata"] = ", ".join(f"{e['name']} ({e.get('value') or str(e['bytes']) + ' B'})"
                                    for e in m.info["metadata"])
    if m.info["signatures"]:
        out["signatures"] = ", ".join(s["key"] for s in m.info["signatures"])
    if m.skipped:
        out["skipped"] = "; ".join(f"{s['name']}: {s['reason']}" for s in m.skipped[:4])
    return out


def _needs(m: Model) -> str:
    text = "a TFLite graph: tf.lite.Interpreter or LiteRT runs it"
    if m.info["flex_ops"]:
        text += f"; Flex ops ({', '.join(m.info['flex_ops'][:4])}) need the TensorFlow " \
                "Select-ops delegate (native TensorFlow kernels)"
    if m.info["custom_ops"]:
        text += f"; custom ops ({', '.join(m.info['custom_ops'][:4])}) need their kernels " \
                "registered from native code"
    return text + "; its weights can be extracted without either"


def read(path: str, options: Options) -> Checkpoint:
    return reselect(open(path, options.limits), options.select)


# Custom ops that TFLite's own BuiltinOpResolver registers (tensorflow/lite/core/kernels/
# register.cc, AddCustom): kernels shipped with the interpreter, not code a model brings.
SHIPPED_CUSTOM_OPS = {
    "TFLite_Detection_PostProcess": "SSD box decoding and NMS, built into the interpreter",
    "Mfcc": "audio features, built into the interpreter",
    "AudioSpectrogram": "audio features, built into the interpreter",
}
# Flex ops (TensorFlow kernels through the Select-ops delegate) that touch files or run Python.
_FLEX_IO = re.compile(r"^Flex(ReadFile|WriteFile|Save(V2|Slices)?|Restore(V2|Slice)?|"
                      r"MatchingFiles|MergeV2Checkpoints|ShardedFilename|ImmutableConst|"
                      r"(Eager)?PyFunc(Stateless)?|PrintV2|.*Reader(V2)?|.*Dataset(V\d)?|"
                      r"LoadAndRemapMatrix|DebugIdentity.*|WriteSummary|.*SummaryWriter)$")


def scan(scan: Any, path: str) -> None:
    """The scanner's hook: the graph parsed with every bound checked; custom and Flex ops are
    native code the interpreter must provide, and are reported (fail closed: a custom op the
    interpreter does not ship, or any Flex op, is not judged safe)."""
    from ...scan.findings import Severity

    try:
        ck = open(path, scan.limits)
    except ModelportError as exc:
        scan.error(str(exc.located(path=path)))
        return
    scan.note_scanned("tflite flatbuffer")
    info = ck.info["tflite"]
    for op in info["flex_ops"]:
        if _FLEX_IO.match(op):
            scan.add(Severity.HIGH, "tflite-flex-op", f"Flex op {op}: a TensorFlow kernel that "
                     "reads or writes files or runs Python", subject=op,
                     why="the Select-ops delegate runs it with the interpreter's rights")
        else:
            scan.add(Severity.MEDIUM, "tflite-flex-op", f"Flex op {op}: runs a TensorFlow "
                     "kernel through the Select-ops delegate", subject=op,
                     why="Flex ops reach the full TensorFlow op set; modelport does not judge "
                     "TensorFlow kernels")
    for op in info["custom_ops"]:
        if op in SHIPPED_CUSTOM_OPS:
            scan.add(Severity.INFO, "tflite-custom-op", f"custom op {op}: "
                     f"{SHIPPED_CUSTOM_OPS[op]}", subject=op)
            continue
        scan.add(Severity.MEDIUM, "tflite-custom-op", f"custom op {op}: the interpreter runs "
                 "whatever native kernel is registered under this name", subject=op,
                 why="custom ops are native code outside the TFLite builtins")
    if info["external_buffers"]:
        scan.add(Severity.LOW, "tflite-external-buffer", "tensors read from an external "
                 "buffer file", why="the model reads another file at load time")
