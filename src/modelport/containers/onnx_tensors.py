"""Every TensorProto an ONNX model holds, wherever it sits, with its external-data location.

ONNX loaders read external data for any tensor that says so (onnx's
``load_external_data_for_model`` walks initializers and attribute tensors of every graph and
function; onnxruntime also sparse initializers and sparse Constant values). The tensors sit in
(field numbers of onnx/onnx.proto)::

    ModelProto       7 graph  20 training_info*  25 functions*
    TrainingInfoProto 1 initialization (graph)  2 algorithm (graph)
    FunctionProto    7 node*  11 attribute_proto* (default attribute values)
    GraphProto       1 node*  5 initializer* (tensor)  15 sparse_initializer*
    NodeProto        5 attribute*
    AttributeProto   5 t (tensor)  6 g (graph)  10 tensors*  11 graphs*  22 sparse_tensor
                     23 sparse_tensors*        (Constant's value / sparse_value are t / sparse)
    SparseTensorProto 1 values (tensor)  2 indices (tensor)
    TensorProto      8 name  13 external_data* (StringStringEntryProto 1 key, 2 value)
                     14 data_location (1 = EXTERNAL)

``walk`` yields each tensor that names a ``location`` (whatever its data_location says: a
loader that trusts the entry reads it) with where it sits and the byte offset of the entry.
``location_problem`` says what is wrong with a location on its own: absolute paths, drive
letters, UNC names, ``..`` with either ``/`` or ``\\`` as separator (onnx joins the location to
the model folder with os.path.join, and Windows takes both separators).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import NamedTuple

from ..errors import LimitExceeded
from ..limits import DEFAULT_LIMITS, Limits
from .protobuf import LEN, VARINT, Buffer, Field, Schema, decode, text

__all__ = ["ExternalRef", "walk", "location_problem"]

_R = True
_MODEL: Schema = {7: ("graph", LEN, False), 20: ("training_info", LEN, _R),
                  25: ("functions", LEN, _R)}
_TRAINING: Schema = {1: ("initialization", LEN, False), 2: ("algorithm", LEN, False)}
_FUNCTION: Schema = {1: ("name", LEN, False), 7: ("node", LEN, _R),
                     11: ("attribute_proto", LEN, _R)}
_GRAPH: Schema = {1: ("node", LEN, _R), 2: ("name", LEN, False), 5: ("initializer", LEN, _R),
                  15: ("sparse_initializer", LEN, _R)}
_NODE: Schema = {3: ("name", LEN, False), 4: ("op_type", LEN, False), 5: ("attribute", LEN, _R)}
_ATTRIBUTE: Schema = {1: ("name", LEN, False), 5: ("t", LEN, False), 6: ("g", LEN, False),
                      10: ("tensors", LEN, _R), 11: ("graphs", LEN, _R),
                      22: ("sparse_tensor", LEN, False), 23: ("sparse_tensors", LEN, _R)}
_SPARSE: Schema = {1: ("values", LEN, False), 2: ("indices", LEN, False)}
_TENSOR: Schema = {8: ("name", LEN, False), 13: ("external_data", LEN, _R),
                   14: ("data_location", VARINT, False)}
_ENTRY: Schema = {1: ("key", LEN, False), 2: ("value", LEN, False)}
_MAX_DEPTH = 100  # protobuf's own parsers stop at 100 nested messages
_DRIVE = re.compile(r"^[A-Za-z]:")


class ExternalRef(NamedTuple):
    where: str  # "graph 'main' initializer 'w'", "function 'f' node 'c' attribute 'value'"
    tensor: str
    location: str
    offset: int  # byte offset of the location entry


def walk(buf: Buffer, limits: Limits = DEFAULT_LIMITS) -> Iterator[ExternalRef]:
    """Every tensor with an external-data location, in every field that holds tensors."""
    model = decode(buf, 0, len(buf), _MODEL)
    cap = min(limits.depth, _MAX_DEPTH)
    if "graph" in model:
        yield from _graph(buf, model["graph"], "graph", 1, cap)
    for i, f in enumerate(model.get("training_info", ())):
        t = decode(buf, f.offset, f.end, _TRAINING)
        for key in ("initialization", "algorithm"):
            if key in t:
                yield from _graph(buf, t[key], f"training_info[{i}].{key}", 2, cap)
    for f in model.get("functions", ()):
        fn = decode(buf, f.offset, f.end, _FUNCTION)
        where = f"function {text(buf, fn.get('name'))!r}"
        for nf in fn.get("node", ()):
            yield from _node(buf, nf, where, 2, cap)
        for af in fn.get("attribute_proto", ()):
            yield from _attribute(buf, af, where + " default", 2, cap)


def _graph(buf: Buffer, f: Field, where: str, depth: int, cap: int) -> Iterator[ExternalRef]:
    if depth > cap:
        raise LimitExceeded(f"ONNX messages nested more than {cap} deep", offset=f.offset,
                            hint="graphs this deep are not a real model")
    g = decode(buf, f.offset, f.end, _GRAPH)
    name = text(buf, g.get("name"))
    here = f"{where} {name!r}" if name else where
    for tf in g.get("initializer", ()):
        yield from _tensor(buf, tf, f"{here} initializer")
    for sf in g.get("sparse_initializer", ()):
        yield from _sparse(buf, sf, f"{here} sparse initializer")
    for nf in g.get("node", ()):
        yield from _node(buf, nf, here, depth + 1, cap)


def _node(buf: Buffer, f: Field, where: str, depth: int, cap: int) -> Iterator[ExternalRef]:
    node = decode(buf, f.offset, f.end, _NODE)
    label = text(buf, node.get("name")) or text(buf, node.get("op_type"))
    for af in node.get("attribute", ()):
        yield from _attribute(buf, af, f"{where} node {label!r}", depth + 1, cap)


def _attribute(buf: Buffer, f: Field, where: str, depth: int,
               cap: int) -> Iterator[ExternalRef]:
    attr = decode(buf, f.offset, f.end, _ATTRIBUTE)
    here = f"{where} attribute {text(buf, attr.get('name'))!r}"
    for tf in ([attr["t"]] if "t" in attr else []) + attr.get("tensors", []):
        yield from _tensor(buf, tf, here)
    for sf in ([attr["sparse_tensor"]] if "sparse_tensor" in attr else []) + \
            attr.get("sparse_tensors", []):
        yield from _sparse(buf, sf, here)
    for gf in ([attr["g"]] if "g" in attr else []) + attr.get("graphs", []):
        yield from _graph(buf, gf, f"{here} graph", depth + 1, cap)


def _sparse(buf: Buffer, f: Field, where: str) -> Iterator[ExternalRef]:
    s = decode(buf, f.offset, f.end, _SPARSE)
    for key in ("values", "indices"):
        if key in s:
            yield from _tensor(buf, s[key], f"{where} {key}")


def _tensor(buf: Buffer, f: Field, where: str) -> Iterator[ExternalRef]:
    t = decode(buf, f.offset, f.end, _TENSOR)
    name = text(buf, t.get("name"))
    for ef in t.get("external_data", ()):
        entry = decode(buf, ef.offset, ef.end, _ENTRY)
        if text(buf, entry.get("key")) == "location":
            yield ExternalRef(f"{where} {name!r}", name, text(buf, entry.get("value")),
                              ef.offset)


def location_problem(location: str) -> str | None:
    """What makes a location reach outside the model's folder, or None."""
    if not location:
        return "an empty location (the model folder itself)"
    if "\x00" in location:
        return "a NUL byte (C++ readers cut the name there)"
    if location.startswith(("/", "\\")):
        return "an absolute path" if not location.startswith(("//", "\\\\")) else \
            "a network (UNC) path"
    if _DRIVE.match(location):
        return "a drive letter"
    if ".." in re.split(r"[\\/]", location):
        return "a '..' path part ('/' and '\\' both separate parts)"
    return None
