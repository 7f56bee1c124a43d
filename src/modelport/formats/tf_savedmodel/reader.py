"""TensorFlow SavedModel folders and TF1 ``.meta`` graphs, decoded without TensorFlow.

    <folder>/saved_model.pb     SavedModel: 1 saved_model_schema_version  2 meta_graphs*
    <folder>/variables/         a TF checkpoint (variables.index, variables.data-*): the weights
    <folder>/assets/            files the graph reads (vocabularies), listed
    <folder>/fingerprint.pb     hashes of the above (not needed to read)
    <prefix>.meta               one MetaGraphDef (tf.compat.v1.train.Saver), next to <prefix>.index

Field numbers (tensorflow/core/protobuf/meta_graph.proto, framework/graph.proto, ...)::

    MetaGraphDef    1 meta_info_def  2 graph_def  3 saver_def (1 filename_tensor_name)
                    4 collection_def (map)  5 signature_def (map)  6 asset_file_def*
                    7 object_graph_def
    MetaInfoDef     1 meta_graph_version  2 stripped_op_list  4 tags*  5 tensorflow_version
                    6 tensorflow_git_version
    GraphDef        1 node*  2 library  4 versions      FunctionDefLibrary  1 function*
    FunctionDef     1 signature (OpDef: 1 name, 2 input_arg* -> 1 name)  3 node_def*
    NodeDef         1 name  2 op  3 input*  4 device  5 attr (map: 1 key, 2 AttrValue)
    AttrValue       2 s  3 i  6 type  10 func (NameAttrList: 1 name)  1 list -> 2 s* 10 func*
    SignatureDef    1 inputs (map -> TensorInfo)  2 outputs  3 method_name
    TensorInfo      1 name  2 dtype  3 tensor_shape (2 dim* -> 1 size; 3 unknown_rank)
                    4 coo_sparse  5 composite_tensor
    map<K, V>       repeated entries: 1 key, 2 value

The graph and every function of its library are kept as ``GraphNode`` records (op, inputs,
the attributes the scanner needs), shared by ``inspect`` (op counts) and the scanner (the op
allowlist in ``scan/tf_ops.py``): one decoder for both.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ...containers.protobuf import (
    LEN,
    VARINT,
    Field,
    Schema,
    decode,
    iter_fields,
    read_varint,
    text,
)
from ...dtypes import TF_OTHER_TYPES, by_tf
from ...errors import LimitExceeded, MalformedHeader, ModelportError, Truncated
from ...limits import Limits
from ...model import Checkpoint, Storage
from ...tensors import storage_buffer
from ..base import Options

__all__ = ["GraphNode", "Function", "MetaGraph", "read_saved_model",
           "read_meta_graph_file", "open_folder", "open_meta"]

_R = True
SAVED_MODEL: Schema = {1: ("schema_version", VARINT, False), 2: ("meta_graphs", LEN, _R)}
META_GRAPH: Schema = {1: ("meta_info_def", LEN, False), 2: ("graph_def", LEN, False),
                      3: ("saver_def", LEN, False), 4: ("collection_def", LEN, _R),
                      5: ("signature_def", LEN, _R), 6: ("asset_file_def", LEN, _R),
                      7: ("object_graph_def", LEN, False)}
META_INFO: Schema = {1: ("meta_graph_version", LEN, False), 2: ("stripped_op_list", LEN, False),
                     4: ("tags", LEN, _R), 5: ("tensorflow_version", LEN, False),
                     6: ("tensorflow_git_version", LEN, False)}
GRAPH: Schema = {1: ("node", LEN, _R), 2: ("library", LEN, False), 4: ("versions", LEN, False)}
VERSIONS: Schema = {1: ("producer", VARINT, False), 2: ("min_consumer", VARINT, False)}
LIBRARY: Schema = {1: ("function", LEN, _R)}
FUNCTION: Schema = {1: ("signature", LEN, False), 3: ("node_def", LEN, _R)}
OP_DEF: Schema = {1: ("name", LEN, False), 2: ("input_arg", LEN, _R)}
ARG_DEF: Schema = {1: ("name", LEN, False)}
NODE: Schema = {1: ("name", LEN, False), 2: ("op", LEN, False), 3: ("input", LEN, _R),
                4: ("device", LEN, False), 5: ("attr", LEN, _R)}
MAP_ENTRY: Schema = {1: ("key", LEN, False), 2: ("value", LEN, False)}
ATTR_VALUE: Schema = {1: ("list", LEN, False), 2: ("s", LEN, False), 6: ("type", VARINT, False),
                      7: ("shape", LEN, False), 8: ("tensor", LEN, False),
                      10: ("func", LEN, False)}
ATTR_LIST: Schema = {2: ("s", LEN, _R), 10: ("func", LEN, _R)}
NAME_ATTR_LIST: Schema = {1: ("name", LEN, False)}
TENSOR_PROTO: Schema = {1: ("dtype", VARINT, False), 8: ("string_val", LEN, _R)}
SIGNATURE: Schema = {1: ("inputs", LEN, _R), 2: ("outputs", LEN, _R),
                     3: ("method_name", LEN, False)}
TENSOR_INFO: Schema = {1: ("name", LEN, False), 2: ("dtype", VARINT, False),
                       3: ("tensor_shape", LEN, False), 4: ("coo_sparse", LEN, False),
                       5: ("composite_tensor", LEN, False)}
SHAPE: Schema = {2: ("dim", LEN, _R), 3: ("unknown_rank", VARINT, False)}
DIM: Schema = {1: ("size", VARINT, False)}
SAVER_DEF: Schema = {1: ("filename_tensor_name", LEN, False)}
COLLECTION: Schema = {1: ("node_list", LEN, False), 2: ("bytes_list", LEN, False),
                      3: ("int64_list", LEN, False), 4: ("float_list", LEN, False),
                      5: ("any_list", LEN, False)}

_MAX_STRINGS = 64  # string constants kept per node (paths shown in findings)


def _signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


@dataclass
class GraphNode:
    """One NodeDef: what the scanner and the op counts need, with its byte offset."""

    name: str
    op: str
    inputs: list[str]
    offset: int
    funcs: list[str] = field(default_factory=list)  # functions its attributes name
    strings: list[str] = field(default_factory=list)  # a Const's string values
    attrs: dict[str, str] = field(default_factory=dict)  # string attributes (s)


@dataclass
class Function:
    name: str
    args: list[str]
    nodes: list[GraphNode]
    offset: int


@dataclass
class MetaGraph:
    tags: list[str]
    tensorflow_version: str
    git_version: str
    producer: int | None
    nodes: list[GraphNode]
    functions: list[Function]
    signatures: dict[str, dict[str, Any]]
    collections: list[str]
    has_saver: bool
    offset: int
    # The node the loader feeds the checkpoint path into (SaverDef.filename_tensor_name):
    # a TF1 Saver's "save/Const" is a Const the caller overrides with a feed.
    saver_filename: str = ""

    def op_counts(self) -> tuple[Counter[str], Counter[str]]:
        graph = Counter(n.op for n in self.nodes)
        funcs = Counter(n.op for f in self.functions for n in f.nodes)
        return graph, funcs


class _Reader:
    def __init__(self, buf: memoryview, limits: Limits) -> None:
        self.buf = buf
        self.limits = limits
        self.count = 0

    def msg(self, f: Field, schema: Schema) -> dict[str, Any]:
        return decode(self.buf, f.offset, f.end, schema)

    def text(self, f: Field | None) -> str:
        return text(self.buf, f)

    def map_entries(self, fields: list[Field]) -> list[tuple[str, Field | None]]:
        out = []
        for f in fields:
            m = self.msg(f, MAP_ENTRY)
            out.append((self.text(m.get("key")), m.get("value")))
        return out

    def node(self, f: Field) -> GraphNode:
        self.count += 1
        if self.count > self.limits.tensors:
            raise LimitExceeded(f"more than {self.limits.tensors} graph nodes",
                                hint="raise Limits.tensors if the graph is genuine")
        m = self.msg(f, NODE)
        node = GraphNode(self.text(m.get("name")), self.text(m.get("op")),
                         [self.text(i) for i in m.get("input", ())], f.offset)
        for key, value in self.map_entries(m.get("attr", [])):
            if value is None:
                continue
            a = self.msg(value, ATTR_VALUE)
            if "func" in a:
                node.funcs.append(self.text(self.msg(a["func"], NAME_ATTR_LIST).get("name")))
            if "s" in a:
                node.attrs[key] = self.text(a["s"])
            if "list" in a:
                lst = self.msg(a["list"], ATTR_LIST)
                node.funcs += [self.text(self.msg(g, NAME_ATTR_LIST).get("name"))
                               for g in lst.get("func", ())]
            if "tensor" in a and key == "value":
                t = self.msg(a["tensor"], TENSOR_PROTO)
                node.strings += [self.text(s) for s in t.get("string_val", ())[:_MAX_STRINGS]]
        return node

    def function(self, f: Field) -> Function:
        m = self.msg(f, FUNCTION)
        name, args = "", []
        if "signature" in m:
            sig = self.msg(m["signature"], OP_DEF)
            name = self.text(sig.get("name"))
            args = [self.text(self.msg(a, ARG_DEF).get("name")) for a in sig.get("input_arg", ())]
        return Function(name, args, [self.node(n) for n in m.get("node_def", ())], f.offset)

    def tensor_info(self, f: Field | None) -> dict[str, Any]:
        if f is None:
            return {}
        m = self.msg(f, TENSOR_INFO)
        code = m["dtype"].value if "dtype" in m else 0
        d = by_tf(code)
        out: dict[str, Any] = {"name": self.text(m.get("name")),
                               "dtype": d.name if d else TF_OTHER_TYPES.get(code, str(code))
                               if code else None, "shape": None}
        if "composite_tensor" in m or "coo_sparse" in m:
            out["encoding"] = "composite" if "composite_tensor" in m else "sparse"
            out["dtype"] = None if not code else out["dtype"]
        if "tensor_shape" in m:
            s = self.msg(m["tensor_shape"], SHAPE)
            if not (s.get("unknown_rank") and s["unknown_rank"].value):
                out["shape"] = [_signed(self.msg(d, DIM)["size"].value)
                                if "size" in self.msg(d, DIM) else 0 for d in s.get("dim", ())]
        return out

    def meta_graph(self, f: Field) -> MetaGraph:
        m = self.msg(f, META_GRAPH)
        info = self.msg(m["meta_info_def"], META_INFO) if "meta_info_def" in m else {}
        nodes: list[GraphNode] = []
        functions: list[Function] = []
        producer = None
        if "graph_def" in m:
            g = self.msg(m["graph_def"], GRAPH)
            nodes = [self.node(n) for n in g.get("node", ())]
            if "library" in g:
                lib = self.msg(g["library"], LIBRARY)
                functions = [self.function(fn) for fn in lib.get("function", ())]
            if "versions" in g:
                v = self.msg(g["versions"], VERSIONS)
                producer = v["producer"].value if "producer" in v else None
        signatures = {}
        for name, value in self.map_entries(m.get("signature_def", [])):
            if value is None:
                signatures[name] = {"inputs": {}, "outputs": {}, "method": ""}
                continue
            s = self.msg(value, SIGNATURE)
            signatures[name] = {
                "method": self.text(s.get("method_name")),
                "inputs": {k: self.tensor_info(v) for k, v in self.map_entries(s.get("inputs", []))},
                "outputs": {k: self.tensor_info(v)
                            for k, v in self.map_entries(s.get("outputs", []))},
            }
        collections = [k for k, _ in self.map_entries(m.get("collection_def", []))]
        saver_filename = ""
        if "saver_def" in m:
            sd = self.msg(m["saver_def"], SAVER_DEF)
            saver_filename = self.text(sd.get("filename_tensor_name")).split(":", 1)[0]
        return MetaGraph(
            tags=[self.text(t) for t in info.get("tags", ())],
            tensorflow_version=self.text(info.get("tensorflow_version")),
            git_version=self.text(info.get("tensorflow_git_version")),
            producer=producer, nodes=nodes, functions=functions, signatures=signatures,
            collections=sorted(collections), has_saver="saver_def" in m, offset=f.offset,
            saver_filename=saver_filename)


def _mapped(path: str) -> memoryview:
    size = os.path.getsize(path)
    if size == 0:
        raise Truncated("empty file", path=path, offset=0, hint="the file is empty")
    return storage_buffer(Storage(nbytes=size, path=path))


def read_saved_model(path: str, limits: Limits) -> tuple[int, list[MetaGraph]]:
    """``saved_model.pb``: its schema version and meta graphs."""
    buf = _mapped(path)
    r = _Reader(buf, limits)
    try:
        top = decode(buf, 0, len(buf), SAVED_MODEL)
        graphs = [r.meta_graph(f) for f in top.get("meta_graphs", ())]
    except ModelportError as exc:
        raise exc.located(path=path) from None
    if not graphs:
        raise MalformedHeader("SavedModel holds no meta graph", path=path, offset=len(buf),
                              hint="the file is truncated or not a SavedModel")
    return (top["schema_version"].value if "schema_version" in top else 0), graphs


def read_meta_graph_file(path: str, limits: Limits) -> MetaGraph:
    """A ``.meta`` file: one MetaGraphDef."""
    buf = _mapped(path)
    r = _Reader(buf, limits)
    try:
        return r.meta_graph(Field(0, LEN, len(buf), 0))
    except ModelportError as exc:
        raise exc.located(path=path) from None


# --------------------------------------------------------------------------------- summaries


def _spec(t: dict[str, Any]) -> str:
    shape = t.get("shape")
    dims = "?" if shape is None else ", ".join("?" if d < 0 else str(d) for d in shape)
    return f"{t.get('dtype') or t.get('encoding', '?')}[{dims}]"


def signature_lines(graphs: list[MetaGraph]) -> list[str]:
    out = []
    for g in graphs:
        for name, sig in g.signatures.items():
            if name.startswith("__"):  # __saved_model_init_op: the loader's own
                continue
            ins = ", ".join(f"{k}: {_spec(v)}" for k, v in sig["inputs"].items())
            outs = ", ".join(f"{k}: {_spec(v)}" for k, v in sig["outputs"].items())
            out.append(f"{name}({ins}) -> {outs}")
    return out


def graph_summary(graphs: list[MetaGraph]) -> dict[str, Any]:
    graph_ops: Counter[str] = Counter()
    fn_ops: Counter[str] = Counter()
    functions = 0
    for g in graphs:
        a, b = g.op_counts()
        graph_ops += a
        fn_ops += b
        functions += len(g.functions)
    return {
        "meta_graphs": [{"tags": g.tags, "tensorflow_version": g.tensorflow_version,
                         "collections": g.collections, "signatures": g.signatures,
                         "producer": g.producer} for g in graphs],
        "graph_ops": dict(graph_ops.most_common()),
        "function_ops": dict(fn_ops.most_common()),
        "function_count": functions,
        "node_count": sum(graph_ops.values()),
        "function_node_count": sum(fn_ops.values()),
    }


def _ops_line(counts: dict[str, int], n: int = 8) -> str:
    return ", ".join(f"{k} {v}" for k, v in list(counts.items())[:n])


def _lines(s: dict[str, Any], graphs: list[MetaGraph]) -> dict[str, Any]:
    g0 = graphs[0]
    lines: dict[str, Any] = {
        "graph": f"{s['node_count']} nodes ({_ops_line(s['graph_ops'])}); "
                 f"{s['function_count']} functions, {s['function_node_count']} nodes "
                 f"({_ops_line(s['function_ops'])})",
    }
    sigs = signature_lines(graphs)
    if sigs:
        lines["signatures"] = sigs
    versions = [f"TensorFlow {g0.tensorflow_version or '?'}"]
    if s.get("keras_version"):
        versions.append(f"Keras {s['keras_version']}")
    if g0.tags:
        versions.append(f"tags {', '.join(g0.tags)}")
    lines["versions"] = "; ".join(versions)
    if g0.collections:
        lines["collections"] = ", ".join(g0.collections[:12])
    return lines


_KERAS_VERSION = re.compile(rb'"keras_version"\s*:\s*"([0-9A-Za-z.+-]{1,40})"')


def _keras_version(folder: str) -> str | None:
    """Keras 2 SavedModels carry keras_metadata.pb (JSON configs with the Keras version)."""
    meta = os.path.join(folder, "keras_metadata.pb")
    if not os.path.isfile(meta):
        return None
    with open(meta, "rb") as f:  # noqa: PTH123 - builtins.open; this module's open is the verb
        m = _KERAS_VERSION.search(f.read(16 << 20))
    return m.group(1).decode() if m else None


def _assets(folder: str) -> list[dict[str, Any]]:
    root = os.path.join(folder, "assets")
    out: list[dict[str, Any]] = []
    for base, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            p = os.path.join(base, name)
            out.append({"file": os.path.relpath(p, folder), "bytes": os.path.getsize(p)})
            if len(out) >= 1000:
                return out
    return out


# -------------------------------------------------------------------------------------- open


def _with_variables(path: str, index: str | None, options: Options, info: dict[str, Any],
                    fmt: str, size: int) -> Checkpoint:
    from ...classify import classify
    from ..tf_checkpoint.reader import open_bundle

    if index is not None and os.path.isfile(index):
        ck = open_bundle(path, index, options, kind="tf-graph", info=info, fmt=fmt)
        ck.file_size += size
        return ck
    ck = classify(path, fmt, {"weights": {}}, info=info, kind="tf-graph",
                  select_path=options.select or "weights", file_size=size)
    return ck


def open_folder(path: str, options: Options | None = None) -> Checkpoint:
    """A SavedModel folder (or its saved_model.pb): graph summary plus the variables."""
    options = options or Options()
    folder = path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
    pb = os.path.join(folder, "saved_model.pb") if os.path.isdir(path) else path
    if not os.path.isfile(pb):
        raise MalformedHeader("SavedModel folder without saved_model.pb (saved_model.pbtxt "
                              "is not read)", path=path, hint="save it in binary form")
    schema, graphs = read_saved_model(pb, options.limits)
    summary = graph_summary(graphs)
    summary["schema_version"] = schema
    summary["keras_version"] = _keras_version(folder)
    summary["assets"] = _assets(folder)
    info: dict[str, Any] = {"tf_graph": summary, "summary": _lines(summary, graphs),
                            "source_files": [pb]}
    if summary["assets"]:
        info["summary"]["assets"] = ", ".join(
            f"{a['file']} ({a['bytes']} B)" for a in summary["assets"][:8])
    index = os.path.join(folder, "variables", "variables.index")
    ck = _with_variables(path, index, options, info, "tf-savedmodel", os.path.getsize(pb))
    ck.needs = [
        "a SavedModel: tf.saved_model.load() needs TensorFlow and runs the graph's functions "
        "(which may read and write files: see `modelport scan`); its weights are read here "
        "without either" + ("" if os.path.isfile(index) else " (it has no variables)")]
    return ck


def open_meta(path: str, options: Options | None = None) -> Checkpoint:
    """A TF1 ``.meta`` graph, with the variables of the checkpoint beside it if present."""
    options = options or Options()
    g = read_meta_graph_file(path, options.limits)
    summary = graph_summary([g])
    info: dict[str, Any] = {"tf_graph": summary, "summary": _lines(summary, [g]),
                            "source_files": [path]}
    prefix = path[:-len(".meta")] if path.endswith(".meta") else path
    index = prefix + ".index"
    ck = _with_variables(path, index, options, info, "tf-metagraph", os.path.getsize(path))
    ck.needs = [
        "a TF1 meta graph: tf.compat.v1.train.import_meta_graph() needs TensorFlow and builds "
        "the graph (run it only if you trust it: see `modelport scan`)" +
        ("; the checkpoint beside it holds the weights" if os.path.isfile(index) else
         "; no checkpoint with its prefix is beside it, so no weights")]
    return ck


def is_meta_graph(head: bytes) -> bool:
    """A MetaGraphDef: field 1 (MetaInfoDef) whose fields read as MetaInfoDef fields, among
    them the stripped op list or the TensorFlow version, then the GraphDef (field 2)."""
    head = bytes(head)
    if head[:1] != b"\x0a":
        return False
    try:
        length, pos = read_varint(head, 1, len(head))
    except ModelportError:
        return False
    end = min(pos + length, len(head))
    seen = set()
    try:
        for f in iter_fields(head, pos, pos + length):
            spec = META_INFO.get(f.number)
            if spec is None and f.number not in (3, 7, 8):
                return False
            if spec is not None and spec[1] != f.wire:
                return False
            seen.add(f.number)
            if f.end >= end:
                break
    except Truncated:
        pass  # the head ended inside the MetaInfoDef: judge on what was read
    except ModelportError:
        return False
    if not seen & {2, 5}:
        return False
    after = pos + length
    return after >= len(head) or head[after] == 0x12
