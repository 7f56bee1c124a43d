"""ONNX models: a ModelProto read with modelport's own protobuf decoder (no onnx, no protobuf).

Field numbers are those of onnx/onnx.proto (checked against onnx 1.23)::

    ModelProto     1 ir_version  2 producer_name  3 producer_version  4 domain  5 model_version
                   6 doc_string  7 graph  8 opset_import*  14 metadata_props*  20 training_info*
                   25 functions*
    GraphProto     1 node*  2 name  5 initializer*  11 input*  12 output*  15 sparse_initializer*
    NodeProto      1 input*  2 output*  3 name  4 op_type  5 attribute*  7 domain
    AttributeProto 1 name  2 f  3 i  4 s  5 t  6 g  7 floats*  8 ints*  9 strings*  10 tensors*
                   11 graphs*  22 sparse_tensor   (g/graphs are If/Loop/Scan bodies: nested graphs)
    TensorProto    1 dims*  2 data_type  4 float_data*  5 int32_data*  6 string_data*
                   7 int64_data*  8 name  9 raw_data  10 double_data*  11 uint64_data*
                   13 external_data* (key, value)  14 data_location (1 = EXTERNAL)
    ValueInfoProto 1 name  2 type -> TypeProto 1 tensor_type -> 1 elem_type  2 shape
                   -> TensorShapeProto 1 dim* -> 1 dim_value | 2 dim_param

A file is one ModelProto; the weights are the graph's initializers and the values of its
``Constant`` nodes (Paddle, spox, OpenVINO and constant-folding exporters keep weights there),
named by the node's output: ``value`` (a TensorProto, read like an initializer), ``value_float``
/ ``value_int`` (0-d, shape []), ``value_floats`` / ``value_ints`` (1-d), ``sparse_value``
(made dense, within Limits.member_bytes); ``value_string(s)`` are listed as skipped. Initializer
bytes live in one of three places, and each becomes a Storage without reading the data:

    raw_data        little-endian bytes inside the .onnx file -> Storage(path, offset, nbytes)
    typed fields    float_data, int32_data, ... (packed) -> decoded into a small in-memory buffer;
                    int32_data holds fp16/bf16/fp8 *bit patterns* and int8/bool values one per
                    varint, so each value is narrowed to the element width bit for bit
    external data   data_location=EXTERNAL, keys location/offset/length -> Storage(that file);
                    the location must stay inside the model's folder

Nested subgraphs (If/Loop/Scan bodies) are walked for op counts, initializers and Constants,
which join the tree after the main graph's (renamed ``scope/name`` if the name is taken).

Exporters rename the weights they transpose (torch's ``onnx::MatMul_123``): where a MatMul or
Gemm node's scope (``/encoder/layer.0/attention/self/query/MatMul``) names the layer in the same
namespace as the other initializers, ``info["graph"]["state_dict_names"]`` maps the initializer
back to ``encoder.layer.0.attention.self.query.weight`` (and says whether it is transposed);
the others are listed in ``unmapped_names``.
"""

from __future__ import annotations

import math
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ...classify import classify, reselect
from ...containers.protobuf import (
    I32,
    I64,
    LEN,
    VARINT,
    Field,
    Schema,
    decode,
    read_varint,
    text,
    unpack,
)
from ...dtypes import DType, by_name, by_onnx
from ...errors import InputError, LimitExceeded, MalformedHeader, ModelportError, Truncated
from ...limits import DEFAULT_LIMITS, Limits
from ...model import Checkpoint, Storage, TensorEntry
from ...tensors import storage_buffer
from ..base import Options
from . import FORMAT_ID

__all__ = ["FORMAT_ID", "sniff", "open"]

_R = True  # repeated

MODEL: Schema = {
    1: ("ir_version", VARINT, False),
    2: ("producer_name", LEN, False),
    3: ("producer_version", LEN, False),
    4: ("domain", LEN, False),
    5: ("model_version", VARINT, False),
    6: ("doc_string", LEN, False),
    7: ("graph", LEN, False),
    8: ("opset_import", LEN, _R),
    14: ("metadata_props", LEN, _R),
    20: ("training_info", LEN, _R),
    25: ("functions", LEN, _R),
}
GRAPH: Schema = {
    1: ("node", LEN, _R),
    2: ("name", LEN, False),
    5: ("initializer", LEN, _R),
    10: ("doc_string", LEN, False),
    11: ("input", LEN, _R),
    12: ("output", LEN, _R),
    13: ("value_info", LEN, _R),
    15: ("sparse_initializer", LEN, _R),
}
NODE: Schema = {1: ("input", LEN, _R), 2: ("output", LEN, _R), 3: ("name", LEN, False),
                4: ("op_type", LEN, False), 5: ("attribute", LEN, _R), 7: ("domain", LEN, False)}
ATTRIBUTE: Schema = {1: ("name", LEN, False), 2: ("f", I32, False), 3: ("i", VARINT, False),
                     5: ("t", LEN, False), 6: ("g", LEN, False), 7: ("floats", I32, _R),
                     8: ("ints", VARINT, _R), 10: ("tensors", LEN, _R), 11: ("graphs", LEN, _R),
                     22: ("sparse_tensor", LEN, False)}
TENSOR: Schema = {
    1: ("dims", VARINT, _R),
    2: ("data_type", VARINT, False),
    3: ("segment", LEN, False),
    4: ("float_data", I32, _R),
    5: ("int32_data", VARINT, _R),
    6: ("string_data", LEN, _R),
    7: ("int64_data", VARINT, _R),
    8: ("name", LEN, False),
    9: ("raw_data", LEN, False),
    10: ("double_data", I64, _R),
    11: ("uint64_data", VARINT, _R),
    13: ("external_data", LEN, _R),
    14: ("data_location", VARINT, False),
}
SPARSE: Schema = {1: ("values", LEN, False), 2: ("indices", LEN, False), 3: ("dims", VARINT, _R)}
OPSET: Schema = {1: ("domain", LEN, False), 2: ("version", VARINT, False)}
ENTRY: Schema = {1: ("key", LEN, False), 2: ("value", LEN, False)}
FUNCTION: Schema = {1: ("name", LEN, False), 10: ("domain", LEN, False)}
VALUE_INFO: Schema = {1: ("name", LEN, False), 2: ("type", LEN, False)}
TYPE: Schema = {1: ("tensor", LEN, False), 4: ("sequence", LEN, False), 5: ("map", LEN, False),
                7: ("opaque", LEN, False), 8: ("sparse_tensor", LEN, False),
                9: ("optional", LEN, False)}
TENSOR_TYPE: Schema = {1: ("elem_type", VARINT, False), 2: ("shape", LEN, False)}
SHAPE: Schema = {1: ("dim", LEN, _R)}
DIM: Schema = {1: ("dim_value", VARINT, False), 2: ("dim_param", LEN, False)}

# Typed data fields: how the wire holds the values, and the element types each may carry
# (onnx.proto comments on each field). Varint fields are narrowed to the element width.
_F8 = {"F8_E4M3", "F8_E5M2", "F8_E4M3FNUZ", "F8_E5M2FNUZ", "F8_E8M0"}
_TYPED: dict[str, tuple[str, set[str]]] = {
    "float_data": ("<f4", {"F32", "C64"}),
    "double_data": ("<f8", {"F64", "C128"}),
    "int32_data": ("varint", {"I32", "I16", "I8", "U16", "U8", "BOOL", "F16", "BF16"} | _F8),
    "int64_data": ("varint", {"I64"}),
    "uint64_data": ("varint", {"U32", "U64"}),
}
# onnx element types modelport cannot hold as a TensorEntry (no DType row): named for reports.
_OTHER_TYPES = {8: "STRING", 21: "U4", 22: "I4", 23: "F4_E2M1", 25: "U2", 26: "I2",
                27: "F6_E2M3", 28: "F6_E3M2"}
_EXTERNAL = 1
_DEFAULT_DOMAINS = ("", "ai.onnx")
_TEXT = bytes(range(0x20, 0x7F)) + b"\t\n\r"


def _type_name(code: int) -> str | None:
    d = by_onnx(code)
    return d.name if d else _OTHER_TYPES.get(code, f"onnx:{code}") if code else None


def _int(msg: dict[str, Any], key: str, default: int = 0) -> int:
    f = msg.get(key)
    return f.value if f is not None else default


def _signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


# ---------------------------------------------------------------------------------------- sniff


def sniff(head: bytes) -> bool:
    """Whether ``head`` starts a ModelProto: every field read is a ModelProto field with its wire
    type (strings valid UTF-8, a plausible ir_version, a graph that starts with a GraphProto
    field), and ir_version or graph is among them. A field cut by the end of ``head`` is fine."""
    head = bytes(head)
    if head and not head.translate(None, _TEXT):
        return False  # printable text: a ModelProto's tags and small varints are control bytes
    seen: set[int] = set()
    pos, end = 0, len(head)
    try:
        while pos < end and len(seen) < 16:
            tag, pos = read_varint(head, pos, end)
            spec = MODEL.get(tag >> 3)
            if spec is None or spec[1] != tag & 7:
                return False
            number = tag >> 3
            value, pos = read_varint(head, pos, end)
            seen.add(number)
            if tag & 7 == VARINT:
                if number == 1 and not 1 <= value <= 1000:
                    return False
                continue
            body = head[pos : pos + value]
            if number in (2, 3, 4) and len(body) == value:
                body.decode("utf-8")
            if number == 7 and body:
                sub_tag, _ = read_varint(body, 0, len(body))
                sub = GRAPH.get(sub_tag >> 3)
                if sub is None or sub[1] != sub_tag & 7:
                    return False
            pos += value
    except Truncated:
        pass  # the head ended inside a field: judge on what was read
    except (MalformedHeader, UnicodeDecodeError):
        return False
    return bool(seen & {1, 7})


# ----------------------------------------------------------------------------------------- open


@dataclass
class _Walk:
    """State of one model walk: the mapped file, the tree being built, and the graph summary."""

    path: str
    buf: memoryview
    folder: str
    limits: Limits
    tree: dict[str, TensorEntry] = field(default_factory=dict)
    ops: Counter[str] = field(default_factory=Counter)
    files: dict[str, None] = field(default_factory=dict)  # external files, first-seen order
    skipped: list[dict[str, Any]] = field(default_factory=list)
    sparse: list[dict[str, Any]] = field(default_factory=list)
    subgraphs: int = 0
    subgraph_nodes: int = 0
    constants: int = 0
    # initializer name -> (op, node name, transB) of the MatMul/Gemm nodes that read it
    uses: dict[str, list[tuple[str, str, int]]] = field(default_factory=dict)
    file_sizes: dict[str, int] = field(default_factory=dict)

    def msg(self, f: Field, schema: Schema) -> dict[str, Any]:
        return decode(self.buf, f.offset, f.end, schema)

    def text(self, f: Field | None) -> str:
        return text(self.buf, f)


def open(path: str, limits: Limits = DEFAULT_LIMITS) -> Checkpoint:  # noqa: A001 - the format verb
    """Read an ONNX model's initializers (in place) and graph summary."""
    path = os.fspath(path)
    size = os.path.getsize(path)
    try:
        if size == 0:
            raise Truncated("empty file", offset=0, hint="the file is empty; download it again")
        buf = storage_buffer(Storage(nbytes=size, path=path))
        w = _Walk(path, buf, os.path.dirname(os.path.abspath(path)), limits)
        model = decode(buf, 0, size, MODEL)
        info = _model_info(w, model)
    except ModelportError as err:
        err.located(path=path, format=FORMAT_ID)
        raise
    ckpt = classify(path, FORMAT_ID, w.tree, info={"graph": info}, kind="onnx-graph",
                    file_size=size)
    ckpt.metadata.update(info["metadata_props"])
    return ckpt


def _model_info(w: _Walk, model: dict[str, Any]) -> dict[str, Any]:
    opsets = {}
    for f in model.get("opset_import", ()):
        m = w.msg(f, OPSET)
        opsets[w.text(m.get("domain")) or "ai.onnx"] = _signed(_int(m, "version"))
    props = {}
    for f in model.get("metadata_props", ()):
        m = w.msg(f, ENTRY)
        props[w.text(m.get("key"))] = w.text(m.get("value"))
    functions = []
    for f in model.get("functions", ()):
        m = w.msg(f, FUNCTION)
        functions.append(".".join(filter(None, [w.text(m.get("domain")), w.text(m.get("name"))])))
    # Both are required (onnx's checker says so); missing, they mostly mean the file was cut
    # at a field boundary, which the protobuf framing alone cannot tell.
    if "graph" not in model or (_int(model, "ir_version") >= 3 and not opsets):
        missing = "graph" if "graph" not in model else "opset_import"
        raise MalformedHeader(f"ModelProto has no {missing}", offset=len(w.buf),
                              hint="the file is truncated or not an ONNX model")
    graph: dict[str, Any] = w.msg(model["graph"], GRAPH)
    top = _graph(w, graph, depth=0, scope="")
    # IR < 4 lists initializers among the inputs too; the inputs a caller feeds are the others.
    init_names = set(top["initializers"])
    mapped, unmapped = _state_dict_names(w)
    inputs = [v for v in map(lambda f: _value_info(w, f), graph.get("input", ()))
              if v["name"] not in init_names]
    return {
        "ir_version": _int(model, "ir_version"),
        "opset_import": opsets,
        "producer_name": w.text(model.get("producer_name")),
        "producer_version": w.text(model.get("producer_version")),
        "domain": w.text(model.get("domain")),
        "model_version": _signed(_int(model, "model_version")),
        "graph_name": w.text(graph.get("name")),
        "inputs": inputs,
        "outputs": [_value_info(w, f) for f in graph.get("output", ())],
        "op_counts": dict(sorted(w.ops.items(), key=lambda kv: (-kv[1], kv[0]))),
        "node_count": top["nodes"],
        "subgraph_count": w.subgraphs,
        "subgraph_node_count": w.subgraph_nodes,
        "initializer_count": len(w.tree) - w.constants,
        "constant_count": w.constants,
        "state_dict_names": mapped,
        "unmapped_names": unmapped,
        "external_data": list(w.files),
        "functions": functions,
        "training_info": len(model.get("training_info", ())),
        "metadata_props": props,
        "sparse_initializers": w.sparse,
        "skipped_initializers": w.skipped,
    }


def _graph(w: _Walk, g: dict[str, Any], depth: int, scope: str) -> dict[str, Any]:
    """Initializers into the tree, ops into the counter, then the nested graphs."""
    cap = min(w.limits.depth, w.limits.nesting)  # If/Loop bodies (protobuf stops at 100)
    if depth > cap:
        raise LimitExceeded(f"graphs nested more than {cap} deep",
                            hint="If/Loop bodies this deep are not a real model")
    names = []
    inits = g.get("initializer", ())
    if len(w.tree) + len(inits) > w.limits.tensors:
        raise LimitExceeded(f"more than {w.limits.tensors} initializers",
                            hint="raise Limits.tensors if the model is genuine")
    for f in inits:
        entry = _tensor(w, f)
        if entry is not None:
            names.append(_add(w, entry, depth, scope, f.offset))
    for f in g.get("sparse_initializer", ()):
        _sparse(w, f)
    nodes = g.get("node", ())
    if depth:
        w.subgraphs += 1
        w.subgraph_nodes += len(nodes)
    for i, f in enumerate(nodes):
        node = w.msg(f, NODE)
        op, domain = w.text(node.get("op_type")), w.text(node.get("domain"))
        w.ops[op if domain in _DEFAULT_DOMAINS else f"{domain}.{op}"] += 1
        if domain in _DEFAULT_DOMAINS and op == "Constant":
            entry = _constant(w, node, f)
            if entry is not None:
                _add(w, entry, depth, scope, f.offset)
                w.constants += 1
            continue
        if domain in _DEFAULT_DOMAINS and op in ("MatMul", "Gemm") and len(node.get("input", ())) > 1:
            trans_b = 0
            for af in node.get("attribute", ()):
                attr = w.msg(af, ATTRIBUTE)
                if w.text(attr.get("name")) == "transB":
                    trans_b = _int(attr, "i")
            w.uses.setdefault(w.text(node["input"][1]), []).append(
                (op, w.text(node.get("name")), trans_b))
        for af in node.get("attribute", ()):
            attr = w.msg(af, ATTRIBUTE)
            # Constant values and other attribute tensors are not weights, but their external
            # data is still a file the model needs, and its location must be checked as well.
            for tf in ([attr["t"]] if "t" in attr else []) + attr.get("tensors", []):
                _tensor(w, tf, keep=False)
            sub_scope = "/".join(filter(None, [scope, w.text(node.get("name")) or f"{op}_{i}",
                                               w.text(attr.get("name"))]))
            for gf in ([attr["g"]] if "g" in attr else []) + attr.get("graphs", []):
                _graph(w, w.msg(gf, GRAPH), depth + 1, sub_scope)
    return {"initializers": names, "nodes": len(nodes)}


def _add(w: _Walk, entry: TensorEntry, depth: int, scope: str, offset: int) -> str:
    """Put a weight into the tree under a free name; returns the name it got."""
    if len(w.tree) >= w.limits.tensors:
        raise LimitExceeded(f"more than {w.limits.tensors} initializers and constants",
                            hint="raise Limits.tensors if the model is genuine")
    name = entry.name
    if name in w.tree:
        if not depth:
            raise MalformedHeader("duplicate initializer name", tensor=name, offset=offset,
                                  hint="the graph is invalid; re-export the model")
        # Sibling scopes (If's then/else) may reuse a name legally: keep both.
        name = f"{scope}/{name}"
        while name in w.tree:
            name += "'"
        entry = entry.renamed(name)
    w.tree[name] = entry
    return entry.name


def _constant(w: _Walk, node: dict[str, Any], f: Field) -> TensorEntry | None:
    """A Constant node's value as a weight named by its output (onnx Constant-13..21)."""
    outputs = node.get("output", ())
    name = w.text(outputs[0]) if outputs else ""
    attrs = [w.msg(af, ATTRIBUTE) for af in node.get("attribute", ())]
    if not name or len(attrs) != 1:
        raise MalformedHeader(f"Constant node with {len(outputs)} outputs and {len(attrs)} "
                              "attributes (it has one of each)", offset=f.offset,
                              tensor=name or None, hint="the graph is invalid; re-export it")
    attr = attrs[0]
    kind = w.text(attr.get("name"))
    if kind == "value" and "t" in attr:
        return _tensor(w, attr["t"], name=name)
    if kind == "sparse_value" and "sparse_tensor" in attr:
        return _dense(w, attr["sparse_tensor"], name)
    if kind in ("value_float", "value_floats", "value_int", "value_ints"):
        floats = kind.startswith("value_float")
        shape: tuple[int, ...] = ()
        if kind.endswith("s"):
            vals = unpack(w.buf, attr.get("floats" if floats else "ints", []),
                          "<f4" if floats else "varint")
            data, shape = vals.tobytes(), (len(vals),)  # varints: int64 two's complement bits
        else:
            raw = _int(attr, "f" if floats else "i")  # absent: protobuf's default, 0
            data = raw.to_bytes(4 if floats else 8, "little")  # f: float bits; i: int64 bits
        dtype = by_name("F32" if floats else "I64")
        assert dtype is not None
        return TensorEntry(name=name, dtype=dtype, shape=shape,
                           storage=Storage(nbytes=len(data), data=data, key=name))
    w.skipped.append({"name": name, "dtype": "STRING" if "string" in kind else None,
                      "shape": None, "reason": f"Constant {kind or '(unnamed attribute)'}: "
                      "not a numeric tensor"})
    return None


def _dense(w: _Walk, f: Field, name: str) -> TensorEntry | None:
    """A SparseTensorProto made dense (values scattered by their COO indices, zeros elsewhere),
    in memory: checked against Limits.member_bytes before anything is allocated."""
    sp = w.msg(f, SPARSE)
    if "values" not in sp:
        raise MalformedHeader("sparse_value without values", tensor=name, offset=f.offset,
                              hint="the graph is invalid; re-export it")
    values = _tensor(w, sp["values"], name=name)
    if values is None:
        return None
    shape = _dims(w, sp, name)
    nbytes = math.prod(shape) * values.dtype.bits // 8
    if nbytes > w.limits.member_bytes:
        raise LimitExceeded(f"sparse Constant is {nbytes} bytes dense", tensor=name,
                            hint="raise Limits.member_bytes if the model is genuine")
    import numpy as np

    from ...tensors import to_numpy

    vals = np.asarray(to_numpy(values)).reshape(-1)
    idx_entry = _tensor(w, sp["indices"], name=name + "#indices") if "indices" in sp else None
    idx = (np.asarray(to_numpy(idx_entry)).astype(np.int64) if idx_entry is not None
           else np.zeros((0,), np.int64))
    # onnx: indices are [NNZ] (linear) or [NNZ, rank] (one coordinate per dimension)
    if idx.ndim == 2 and len(shape) and idx.shape == (vals.size, len(shape)):
        idx = np.ravel_multi_index(tuple(idx.T), shape) if vals.size else idx[:, 0]
    idx = idx.reshape(-1)
    numel = math.prod(shape)
    if idx.size != vals.size or (idx.size and (idx.min() < 0 or idx.max() >= numel)):
        raise MalformedHeader(f"sparse_value has {vals.size} values and {idx.size} indices "
                              f"for shape {list(shape)}", tensor=name, offset=f.offset,
                              hint="the file is corrupt")
    dense = np.zeros(numel, vals.dtype)
    dense[idx] = vals
    data = dense.tobytes()
    return TensorEntry(name=name, dtype=values.dtype, shape=shape,
                       storage=Storage(nbytes=len(data), data=data, key=name))


_SCOPE_PART = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.\d+)*$")


def _state_dict_names(w: _Walk) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Mangled initializer names (``onnx::MatMul_12``) mapped back to the layer's weight name,
    where a MatMul/Gemm reads them and its name is a module scope (torch's ``/a/b.0/MatMul``,
    or a path in the namespace of the other initializers); the rest listed as unmapped."""
    roots = {n.split(".", 1)[0] for n in w.tree if "::" not in n and "." in n}
    mapped: dict[str, dict[str, Any]] = {}
    unmapped: list[str] = []
    for name, entry in w.tree.items():
        if "::" not in name:
            continue
        found = None
        for op, node, trans_b in w.uses.get(name, ()):
            parts = [p for p in node.split("/") if p][:-1]  # the last part is the op's own name
            # torch names a called container's child "seq.2" under "seq": one module, not two
            parts = [p for i, p in enumerate(parts)
                     if not (i + 1 < len(parts) and parts[i + 1].startswith(p + "."))]
            path = ".".join(parts)
            if (len(entry.shape) == 2 and parts and all(_SCOPE_PART.match(p) for p in parts)
                    and (node.startswith("/") or parts[0].split(".", 1)[0] in roots)):
                # MatMul computes x @ W: W is the torch Linear weight transposed; Gemm with
                # transB=1 reads it as stored.
                found = {"name": f"{path}.weight", "transposed": not (op == "Gemm" and trans_b),
                         "node": node}
                break
        if found is not None:
            mapped[name] = found
        else:
            unmapped.append(name)
    return mapped, unmapped


def _value_info(w: _Walk, f: Field) -> dict[str, Any]:
    vi = w.msg(f, VALUE_INFO)
    out: dict[str, Any] = {"name": w.text(vi.get("name")), "type": None, "dtype": None,
                           "shape": None}
    if "type" not in vi:
        return out
    ty = w.msg(vi["type"], TYPE)
    kind = next(iter(ty), None)
    out["type"] = kind
    if kind in ("tensor", "sparse_tensor"):
        tt = w.msg(ty[kind], TENSOR_TYPE)
        out["dtype"] = _type_name(_int(tt, "elem_type"))
        if "shape" in tt:
            dims = [w.msg(d, DIM) for d in w.msg(tt["shape"], SHAPE).get("dim", ())]
            out["shape"] = [
                _signed(d["dim_value"].value) if "dim_value" in d
                else w.text(d["dim_param"]) if "dim_param" in d else None
                for d in dims
            ]
    return out


def _dims(w: _Walk, t: dict[str, Any], name: str) -> tuple[int, ...]:
    import numpy as np

    dims = unpack(w.buf, t.get("dims", []), "varint").view(np.int64)
    if (dims < 0).any():
        raise MalformedHeader(f"negative dimension in {dims.tolist()}", tensor=name,
                              offset=t["dims"][0].offset, hint="the file is corrupt")
    return tuple(int(d) for d in dims)


def _sparse(w: _Walk, f: Field) -> None:
    """Sparse initializers are listed, not expanded: a dense copy could be any size."""
    sp = w.msg(f, SPARSE)
    values = w.msg(sp["values"], TENSOR) if "values" in sp else {}
    name = w.text(values.get("name"))
    w.sparse.append({
        "name": name,
        "dtype": _type_name(_int(values, "data_type")),
        "shape": list(_dims(w, sp, name)),
        "nnz": math.prod(_dims(w, values, name)) if values.get("dims") else 0,
    })


def _tensor(w: _Walk, f: Field, keep: bool = True, name: str | None = None
            ) -> TensorEntry | None:
    """A TensorProto as a TensorEntry over its bytes; None for types modelport cannot hold.
    ``name`` overrides the proto's (a Constant's value is named by the node's output)."""
    t = w.msg(f, TENSOR)
    name = name or w.text(t.get("name"))
    code = _int(t, "data_type")
    shape = _dims(w, t, name)
    dtype = by_onnx(code)
    external = _int(t, "data_location") == _EXTERNAL
    if external:
        storage = _external(w, t, name, dtype, math.prod(shape))
    if not keep:
        return None
    if not name:
        raise MalformedHeader("initializer without a name", offset=f.offset,
                              hint="the graph is invalid; re-export the model")
    if dtype is None or "segment" in t:
        why = "tensor segments" if "segment" in t else f"element type {_type_name(code)}"
        w.skipped.append({"name": name, "dtype": _type_name(code), "shape": list(shape),
                          "reason": f"modelport cannot read {why}"})
        return None
    nbytes = math.prod(shape) * dtype.bits // 8
    if not external:
        raw = t.get("raw_data")
        if raw is not None:
            if raw.value != nbytes:
                raise MalformedHeader(f"raw_data has {raw.value} bytes, shape {list(shape)} of "
                                      f"{dtype.name} needs {nbytes}", tensor=name,
                                      offset=raw.offset, hint="the file is corrupt")
            storage = Storage(nbytes=nbytes, path=w.path, offset=raw.offset, key=name)
        else:
            storage = Storage(nbytes=nbytes, data=_typed(w, t, name, dtype, shape), key=name)
    return TensorEntry(name=name, dtype=dtype, shape=shape, storage=storage)


def _typed(w: _Walk, t: dict[str, Any], name: str, dtype: DType, shape: tuple[int, ...]) -> bytes:
    """Values from the typed repeated fields, laid out as raw_data would hold them."""
    import numpy as np

    present = [k for k in _TYPED if t.get(k)]
    numel = math.prod(shape)
    if numel >= 1 << 63:  # before any message formats the number
        raise MalformedHeader("tensor has more than 2**63 elements", tensor=name,
                              hint="the file is corrupt")
    if not present:
        if numel == 0:
            return b""
        raise MalformedHeader(f"{numel} elements but no data", tensor=name,
                              hint="the file is corrupt")
    key = present[0]
    kind, allowed = _TYPED[key]
    fields = t[key]
    if len(present) > 1 or dtype.name not in allowed:
        raise MalformedHeader(f"{'/'.join(present)} cannot hold {dtype.name}", tensor=name,
                              offset=fields[0].offset, hint="the file is corrupt")
    vals = unpack(w.buf, fields, kind)
    want = numel * (2 if dtype.kind == "c" else 1)  # complex: real, imaginary, ...
    if len(vals) != want:
        raise MalformedHeader(f"{key} has {len(vals)} values, shape {list(shape)} needs {want}",
                              tensor=name, offset=fields[0].offset, hint="the file is corrupt")
    if kind != "varint":
        return vals.tobytes()
    if dtype.kind == "b":
        return (vals != 0).astype(np.uint8).tobytes()
    # Keep the low bits: two's complement for signed ints, the bit pattern for fp16/bf16/fp8.
    return vals.astype(f"<u{dtype.itemsize}").tobytes()


def _external(w: _Walk, t: dict[str, Any], name: str, dtype: DType | None,
              numel: int) -> Storage:
    """The Storage of an external tensor, after checking its file lies inside the model's folder."""
    keys = {}
    for f in t.get("external_data", ()):
        e = w.msg(f, ENTRY)
        keys[w.text(e.get("key"))] = (w.text(e.get("value")), f.offset)
    location = keys.get("location", ("", 0))[0]
    offset_at = t["external_data"][0].offset if t.get("external_data") else None

    def bad(message: str, cls: type[InputError] = InputError, **kw: Any) -> InputError:
        return cls(message, tensor=name, offset=offset_at, **kw)

    if not location:
        raise bad("external data without a location", MalformedHeader, hint="the file is corrupt")
    # onnx resolves locations against the model's folder; anything that leaves it (an absolute
    # path, a .. escape, a symlink pointing out) would read an arbitrary file on this machine.
    hint = "external data must be a file in the model's folder; this file may be malicious"
    if "\0" in location or os.path.isabs(location) or location.startswith(("/", "\\")) or (
        os.path.splitdrive(location)[0]
    ):
        raise bad(f"external data location {location!r} is an absolute path", hint=hint)
    folder = os.path.realpath(w.folder)
    target = os.path.realpath(os.path.join(folder, location))
    if os.path.commonpath([folder, target]) != folder:
        raise bad(f"external data location {location!r} resolves outside the model's folder "
                  f"(to {target})", hint=hint)
    try:
        off = int(keys["offset"][0]) if "offset" in keys else 0
        length = int(keys["length"][0]) if "length" in keys else None
    except ValueError:
        raise bad(f"external data offset/length is not an integer: {keys}", MalformedHeader,
                  hint="the file is corrupt") from None
    if off < 0 or (length is not None and length < 0):
        raise bad(f"negative external data offset/length {off}/{length}", MalformedHeader)
    if target not in w.file_sizes:
        from ... import remote

        remote.sibling(w.path, target)  # a remote model: its data file is read by ranges too
        try:
            w.file_sizes[target] = os.stat(target).st_size
        except OSError as err:
            raise bad(f"external data file {location!r} cannot be read: {err.strerror}",
                      Truncated, hint=f"copy {location} next to the .onnx file") from err
        if not os.path.isfile(target):
            raise bad(f"external data location {location!r} is not a file", hint=hint)
    w.files.setdefault(location, None)
    nbytes = numel * dtype.bits // 8 if dtype is not None else length or 0
    if length is not None and dtype is not None and length != nbytes:
        raise bad(f"external data length {length}, shape of {dtype.name} needs {nbytes}",
                  MalformedHeader, hint="the file is corrupt")
    have = w.file_sizes[target]
    if off + nbytes > have:
        raise Truncated(f"external data needs bytes {off}..{off + nbytes} of {location!r}, "
                        f"which has {have}", path=target, tensor=name, offset=off,
                        hint=f"{location} is truncated or from another export; copy it again")
    return Storage(nbytes=nbytes, path=target, offset=off, key=name)


def read(path: str, options: Options) -> Checkpoint:
    return reselect(open(path, options.limits), options.select)
