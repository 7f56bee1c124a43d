"""ONNX reader: initializers bit for bit against onnx.numpy_helper, the graph summary against
onnx's own view, external data confined to the model folder, and a strict protobuf decoder."""

from __future__ import annotations

import io
import os
import pickle
import subprocess
import sys
import zipfile

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
import ml_dtypes  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from modelport.containers import protobuf as pb  # noqa: E402
from modelport.errors import (  # noqa: E402
    InputError,
    LimitExceeded,
    MalformedHeader,
    ModelportError,
    Truncated,
)
from modelport.formats.onnx import reader as mo  # noqa: E402
from modelport.limits import Limits  # noqa: E402
from modelport.tensors import to_numpy  # noqa: E402

RNG = np.random.default_rng(0)
I = np.iinfo


def _arrays() -> list[tuple[str, np.ndarray, bool]]:
    """(name, values, raw?) covering every element type and both encodings."""
    f = RNG.standard_normal((3, 4)).astype(np.float32)
    special = np.array([0.0, -0.0, 1.5, -2.25, np.inf, -np.inf, 65504, 6e-8], np.float32)
    return [
        ("f32_raw", f, True),
        ("f32_typed", f * 3, False),
        ("f16_raw", special.astype(np.float16).reshape(2, 4), True),
        ("f16_typed", special.astype(np.float16), False),
        ("bf16_raw", special.astype(ml_dtypes.bfloat16), True),
        ("bf16_typed", special.astype(ml_dtypes.bfloat16).reshape(4, 2), False),
        ("f8_typed", np.array([1, -3, 0.5, 448], ml_dtypes.float8_e4m3fn), False),
        ("i8_raw", np.array([-128, -1, 0, 127], np.int8), True),
        ("i8_typed", np.array([[-128, -1], [0, 127]], np.int8), False),
        ("u8_typed", np.array([0, 1, 200, 255], np.uint8), False),
        ("i16_typed", np.array([I(np.int16).min, -5, I(np.int16).max], np.int16), False),
        ("u16_typed", np.array([0, 40000, 65535], np.uint16), False),
        ("i32_typed", np.array([I(np.int32).min, -1, 7, I(np.int32).max], np.int32), False),
        ("u32_typed", np.array([0, 4_000_000_000, I(np.uint32).max], np.uint32), False),
        ("i64_typed", np.array([I(np.int64).min, -1, 0, I(np.int64).max], np.int64), False),
        ("i64_raw", np.arange(-6, 6, dtype=np.int64).reshape(3, 4), True),
        ("u64_typed", np.array([0, 1, I(np.uint64).max], np.uint64), False),
        ("f64_typed", RNG.standard_normal(5), False),
        ("f64_raw", RNG.standard_normal((2, 2)), True),
        ("bool_typed", np.array([True, False, True]), False),
        ("bool_raw", np.array([[False, True], [True, True]]), True),
        ("c64_typed", np.array([1 + 2j, 3 - 4j], np.complex64), False),
        ("c128_raw", np.array([1 + 2j, -3.5 - 4j], np.complex128), True),
        ("scalar", np.array(3.25, np.float32), False),
        ("empty", np.zeros((0, 3), np.float32), True),
    ]


def _tensor(name: str, arr: np.ndarray, raw: bool) -> TensorProto:
    if raw:
        return numpy_helper.from_array(arr, name)
    code = helper.np_dtype_to_tensor_dtype(arr.dtype)
    vals = arr.astype(np.float32) if arr.dtype == ml_dtypes.float8_e4m3fn else arr
    return helper.make_tensor(name, code, arr.shape, vals.flatten(), raw=False)


def _if_node(name: str, depth: int = 1) -> onnx.NodeProto:
    """An If whose branches hold initializers (the same name in both: sibling scopes)."""
    def branch(tag: str, value: float) -> onnx.GraphProto:
        c = numpy_helper.from_array(np.full((2,), value, np.float32), "branch_c")
        nodes = [helper.make_node("Identity", ["branch_c"], [f"{name}_{tag}_out"])]
        if depth > 1 and tag == "then":
            nodes.insert(0, _if_node(f"{name}_in", depth - 1))
        return helper.make_graph(nodes, f"{name}_{tag}", [],
                                 [helper.make_tensor_value_info(f"{name}_{tag}_out", 1, [2])], [c])

    return helper.make_node("If", ["cond"], [f"{name}_out"], name=name,
                            then_branch=branch("then", 1.0), else_branch=branch("else", 2.0))


def _model(initializers: list[TensorProto], extra_nodes=()) -> onnx.ModelProto:
    nodes = [
        helper.make_node("Add", ["X", "f32_raw"], ["A"]),
        helper.make_node("Relu", ["A"], ["B"]),
        helper.make_node("Relu", ["B"], ["Y"]),
        helper.make_node("Fancy", ["B"], ["Z"], domain="com.example"),
        *extra_nodes,
    ]
    graph = helper.make_graph(
        nodes,
        "test_graph",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", 4]),
         helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
         # IR < 4 style: an initializer also listed as an input is not a model input.
         helper.make_tensor_value_info("f32_raw", TensorProto.FLOAT, [3, 4])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["N", 4]),
         helper.make_tensor_value_info("Z", TensorProto.FLOAT16, None),
         helper.make_tensor_sequence_value_info("S", TensorProto.INT64, [3])],
        initializers,
    )
    model = helper.make_model(
        graph, producer_name="modelport-test", producer_version="9.9",
        opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("com.example", 3)],
    )
    model.model_version = 7
    helper.set_model_props(model, {"author": "tests", "license": "mit"})
    return model


@pytest.fixture(scope="module")
def typed_model(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("onnx") / "typed.onnx")
    inits = [_tensor(n, a, raw) for n, a, raw in _arrays()]
    strings = helper.make_tensor("strings", TensorProto.STRING, [2], [b"a", b"bc"])
    model = _model(inits + [strings], [_if_node("if0", depth=2)])
    onnx.save_model(model, path)
    return path


# --------------------------------------------------------------------------- reference views


def _all_initializers(graph: onnx.GraphProto):
    """Every initializer in walk order: the graph's, then each nested graph's (node order)."""
    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            for g in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                yield from _all_initializers(g)


def _op_counts(graph: onnx.GraphProto, counts: dict[str, int]) -> dict[str, int]:
    for node in graph.node:
        key = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"
        counts[key] = counts.get(key, 0) + 1
        for attr in node.attribute:
            for g in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                _op_counts(g, counts)
    return counts


def _value_info(vi: onnx.ValueInfoProto) -> tuple:
    kind = vi.type.WhichOneof("value")
    if kind != "tensor_type":
        return vi.name, {"sequence_type": "sequence"}.get(kind, kind), None, None
    tt = vi.type.tensor_type
    shape = None
    if tt.HasField("shape"):
        shape = [d.dim_value if d.HasField("dim_value") else d.dim_param
                 if d.HasField("dim_param") else None for d in tt.shape.dim]
    from modelport.dtypes import by_onnx
    return vi.name, "tensor", by_onnx(tt.elem_type).name, shape


def _check_against_onnx(path: str, ck) -> None:
    ref = onnx.load(path, load_external_data=True)
    refs = [t for t in _all_initializers(ref.graph) if t.data_type != TensorProto.STRING]
    ours = list(ck.weights.values())
    assert len(ours) == len(refs)
    for entry, t in zip(ours, refs):
        assert entry.name.rsplit("/", 1)[-1] == t.name
        want = numpy_helper.to_array(t)
        got = to_numpy(entry)
        assert got.dtype == want.dtype, entry.name
        assert got.shape == want.shape, entry.name
        assert got.tobytes() == want.tobytes(), entry.name
    g = ck.info["graph"]
    assert g["ir_version"] == ref.ir_version
    assert g["opset_import"] == {(o.domain or "ai.onnx"): o.version for o in ref.opset_import}
    assert g["producer_name"] == ref.producer_name
    assert g["producer_version"] == ref.producer_version
    assert g["graph_name"] == ref.graph.name
    init_names = {t.name for t in ref.graph.initializer}
    want_in = [_value_info(v) for v in ref.graph.input if v.name not in init_names]
    assert [(v["name"], v["type"], v["dtype"], v["shape"]) for v in g["inputs"]] == want_in
    assert [(v["name"], v["type"], v["dtype"], v["shape"]) for v in g["outputs"]] == [
        _value_info(v) for v in ref.graph.output
    ]
    counts = _op_counts(ref.graph, {})
    assert g["op_counts"] == counts
    assert list(g["op_counts"].values()) == sorted(counts.values(), reverse=True)
    assert g["node_count"] == len(ref.graph.node)
    assert g["metadata_props"] == {p.key: p.value for p in ref.metadata_props}


# ---------------------------------------------------------------------------------- reading


def test_every_dtype_bit_for_bit(typed_model):
    ck = mo.open(typed_model)
    assert (ck.format, ck.kind) == ("onnx", "onnx-graph")
    _check_against_onnx(typed_model, ck)
    names = [n for n, _, _ in _arrays()]
    assert list(ck.weights)[: len(names)] == names  # file order
    assert {ck.weights[n].dtype.name for n in names} >= {
        "F32", "F16", "BF16", "F8_E4M3", "I8", "U8", "I16", "U16", "I32", "U32", "I64", "U64",
        "F64", "BOOL", "C64", "C128",
    }


def test_raw_data_is_read_in_place_typed_data_decoded(typed_model):
    ck = mo.open(typed_model)
    raw = ck.weights["f32_raw"].storage
    assert raw.path == typed_model and raw.data is None
    with open(typed_model, "rb") as f:
        f.seek(raw.offset)
        assert f.read(raw.nbytes) == to_numpy(ck.weights["f32_raw"]).tobytes()
    typed = ck.weights["bf16_typed"].storage
    assert typed.path is None and typed.nbytes == 16  # 8 bf16 bit patterns, 2 bytes each


def test_graph_summary(typed_model):
    g = mo.open(typed_model).info["graph"]
    assert g["opset_import"] == {"ai.onnx": 18, "com.example": 3}
    assert g["model_version"] == 7
    assert [v["name"] for v in g["inputs"]] == ["X", "cond"]
    assert g["inputs"][0]["shape"] == ["N", 4]
    assert g["outputs"][1] == {"name": "Z", "type": "tensor", "dtype": "F16", "shape": None}
    assert g["outputs"][2]["type"] == "sequence"
    assert g["op_counts"]["Relu"] == 2 and g["op_counts"]["com.example.Fancy"] == 1
    assert g["op_counts"]["If"] == 2 and g["op_counts"]["Identity"] == 4
    assert (g["node_count"], g["subgraph_count"], g["subgraph_node_count"]) == (5, 4, 5)
    assert g["skipped_initializers"][0]["name"] == "strings"
    assert g["external_data"] == []


def test_nested_initializers_keep_both_sibling_copies(typed_model):
    ck = mo.open(typed_model)
    branch = [n for n in ck.weights if n.endswith("branch_c")]
    assert branch[0] == "branch_c" and len(branch) == 4 and len(set(branch)) == 4
    assert {float(to_numpy(ck.weights[n])[0]) for n in branch} == {1.0, 2.0}


def test_metadata_props_become_metadata(typed_model):
    assert mo.open(typed_model).metadata == {"author": "tests", "license": "mit"}


def test_external_data(tmp_path):
    inits = [_tensor(n, a, raw) for n, a, raw in _arrays()]
    model = _model(inits)
    path = str(tmp_path / "ext.onnx")
    onnx.save_model(model, path, save_as_external_data=True, all_tensors_to_one_file=True,
                    location="weights.bin", size_threshold=0)
    ck = mo.open(path)
    _check_against_onnx(path, ck)
    assert ck.info["graph"]["external_data"] == ["weights.bin"]
    folder = os.path.realpath(tmp_path)
    # onnx moves raw_data out; typed fields stay in the .onnx (numpy_helper does the same).
    for name, _, raw in _arrays():
        s = ck.weights[name].storage
        assert s.path == (os.path.join(folder, "weights.bin") if raw else None), name
    assert os.path.getsize(path) < 4096  # the .onnx holds only the graph


def test_torch_export(tmp_path):
    torch = pytest.importorskip("torch")
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2),
                              torch.nn.LayerNorm(2))
    path = str(tmp_path / "net.onnx")
    torch.onnx.export(net, (torch.randn(1, 4),), path, dynamo=False, input_names=["x"],
                      output_names=["y"], dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}})
    ck = mo.open(path)
    _check_against_onnx(path, ck)
    assert ck.info["graph"]["inputs"][0]["shape"] == ["batch", 4]
    assert ck.info["graph"]["producer_name"] == "pytorch"
    state = net.state_dict()
    for name, t in state.items():
        assert to_numpy(ck.weights[name]).tobytes() == t.numpy().tobytes()


def test_core_reads_onnx_without_onnx_or_protobuf(typed_model):
    code = (
        "import sys\n"
        "for m in ('onnx', 'google', 'google.protobuf', 'torch'): sys.modules[m] = None\n"
        "from modelport.formats.onnx import reader as mo\n"
        "from modelport.tensors import to_numpy\n"
        f"ck = mo.open({typed_model!r})\n"
        "print(len(ck.weights), float(to_numpy(ck.weights['scalar'])))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == [str(len(_arrays()) + 4), "3.25"]


# --------------------------------------------------------------------------------- malformed


def test_truncated_file(typed_model, tmp_path):
    data = open(typed_model, "rb").read()
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(Truncated) as exc:
        mo.open(str(cut))
    assert exc.value.path == str(cut) and 0 < exc.value.offset < len(data)
    assert str(cut) in str(exc.value)
    for n in (1, 2, 3, 10, len(data) - 1):
        cut.write_bytes(data[:n])
        with pytest.raises(InputError):
            mo.open(str(cut))
    cut.write_bytes(b"")
    with pytest.raises(Truncated):
        mo.open(str(cut))


def test_random_corruption_only_raises_input_errors(typed_model, tmp_path):
    data = bytearray(open(typed_model, "rb").read())
    rng = np.random.default_rng(1)
    bad = tmp_path / "bad.onnx"
    failures = 0
    for _ in range(300):
        mutated = bytearray(data)
        for i in rng.integers(0, len(data), size=3):
            mutated[i] = int(rng.integers(0, 256))
        bad.write_bytes(bytes(mutated))
        try:
            mo.open(str(bad))
        except ModelportError:
            failures += 1
    assert failures > 0


def _external_model(tmp_path, location: str, offset: int = 0, length: int | None = 8) -> str:
    t = numpy_helper.from_array(np.zeros(2, np.float32), "w")
    t.ClearField("raw_data")
    t.data_location = TensorProto.EXTERNAL
    entries = {"location": location, "offset": str(offset)}
    if length is not None:
        entries["length"] = str(length)
    for k, v in entries.items():
        t.external_data.add(key=k, value=v)
    graph = helper.make_graph([helper.make_node("Relu", ["w"], ["y"])], "g", [],
                              [helper.make_tensor_value_info("y", 1, [2])], [t])
    folder = tmp_path / "model"
    folder.mkdir(exist_ok=True)
    path = folder / "m.onnx"
    path.write_bytes(helper.make_model(graph).SerializeToString())
    return str(path)


@pytest.mark.parametrize("location", ["../../etc/passwd", "/etc/passwd", "sub/../../x.bin"])
def test_external_location_outside_folder(tmp_path, location):
    with pytest.raises(InputError) as exc:
        mo.open(_external_model(tmp_path, location))
    assert exc.value.tensor == "w" and location in str(exc.value)
    assert not isinstance(exc.value, Truncated)


def test_external_symlink_outside_folder(tmp_path):
    outside = tmp_path / "secret.bin"
    outside.write_bytes(b"\0" * 8)
    path = _external_model(tmp_path, "link.bin")
    os.symlink(outside, tmp_path / "model" / "link.bin")
    with pytest.raises(InputError, match="outside the model's folder") as exc:
        mo.open(path)
    assert exc.value.tensor == "w"


def test_external_symlink_inside_folder_is_fine(tmp_path):
    path = _external_model(tmp_path, "link.bin")
    (tmp_path / "model" / "real.bin").write_bytes(np.array([1, 2], np.float32).tobytes())
    os.symlink("real.bin", tmp_path / "model" / "link.bin")
    assert to_numpy(mo.open(path).weights["w"]).tolist() == [1.0, 2.0]


def test_external_missing_or_short_file(tmp_path):
    path = _external_model(tmp_path, "w.bin", offset=4)
    with pytest.raises(Truncated, match="w.bin") as exc:
        mo.open(path)
    assert "copy w.bin" in str(exc.value)
    (tmp_path / "model" / "w.bin").write_bytes(b"\0" * 10)  # needs bytes 4..12
    with pytest.raises(Truncated, match="truncated"):
        mo.open(path)
    (tmp_path / "model" / "w.bin").write_bytes(b"\0" * 12)
    assert to_numpy(mo.open(path).weights["w"]).tolist() == [0.0, 0.0]


def test_external_length_must_match_shape(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "w.bin").write_bytes(b"\0" * 64)
    with pytest.raises(MalformedHeader, match="length 12"):
        mo.open(_external_model(tmp_path, "w.bin", length=12))


def test_raw_data_length_must_match_shape(tmp_path):
    t = numpy_helper.from_array(np.zeros(3, np.float32), "w")
    t.raw_data = b"\0" * 8
    graph = helper.make_graph([], "g", [], [], [t])
    path = tmp_path / "m.onnx"
    path.write_bytes(helper.make_model(graph).SerializeToString())
    with pytest.raises(MalformedHeader, match="raw_data has 8 bytes") as exc:
        mo.open(str(path))
    assert exc.value.tensor == "w"


def test_limits(tmp_path):
    model = _model([_tensor(n, a, raw) for n, a, raw in _arrays()[:4]], [_if_node("i", depth=6)])
    path = tmp_path / "deep.onnx"
    path.write_bytes(model.SerializeToString())
    with pytest.raises(LimitExceeded, match="nested"):
        mo.open(str(path), Limits(depth=3))
    with pytest.raises(LimitExceeded, match="initializers"):
        mo.open(str(path), Limits(tensors=2))
    assert mo.open(str(path)).info["graph"]["subgraph_count"] == 12


# ------------------------------------------------------------------------------------- sniff


def test_sniff_matches_onnx_heads(typed_model, tmp_path):
    data = open(typed_model, "rb").read()
    for n in (2, 8, 16, 64, 4096):
        assert mo.sniff(data[:n]), n
    # A ModelProto whose first field is the graph, not ir_version.
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [], [])
    assert mo.sniff(onnx.ModelProto(graph=g).SerializeToString()[:32])


def test_sniff_rejects_other_formats(tmp_path):
    heads = [b"", b"\x08", b"PK\x03\x04\x14\x00", b"\x93NUMPY\x01\x00", b"GGUF\x03\x00\x00\x00",
             b"hello world\n", b'{"weight": 1}', b"# comment\n", b":abc def ghi"]
    heads += [pickle.dumps({"a": 1}, protocol=p) for p in (2, 3, 4, 5)]
    buf = io.BytesIO()
    np.save(buf, np.arange(4))
    heads.append(buf.getvalue())
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("archive/data.pkl", b"x")
    heads.append(buf.getvalue())
    st = pytest.importorskip("safetensors.numpy")
    for n in (1, 300):  # header lengths 0x.. with zero high bytes, and two-byte ones
        st.save_file({"w" * n: np.zeros(2, np.float32)}, str(tmp_path / "x.safetensors"))
        heads.append((tmp_path / "x.safetensors").read_bytes())
    for head in heads:
        assert not mo.sniff(head[:64]), head[:16]


# ------------------------------------------------------------------------- protobuf decoder


def _varint(v: int) -> bytes:
    v &= (1 << 64) - 1
    out = bytearray()
    while True:
        out.append(v & 0x7F | (0x80 if v > 0x7F else 0))
        v >>= 7
        if not v:
            return bytes(out)


def test_varint_errors_carry_offsets():
    with pytest.raises(MalformedHeader, match="10 bytes") as exc:
        pb.read_varint(b"\x00\x00" + b"\xff" * 11, 2, 13)
    assert exc.value.offset == 2
    with pytest.raises(Truncated) as exc:
        list(pb.iter_fields(b"\x08\x01\x08\xff\xff"))
    assert exc.value.offset == 3
    with pytest.raises(Truncated) as exc:
        list(pb.iter_fields(b"\x08\x01\x12\x05abc"))  # LEN 5 with 3 bytes left
    assert exc.value.offset == 4
    with pytest.raises(MalformedHeader, match="wire type 3"):
        list(pb.iter_fields(b"\x0b"))
    with pytest.raises(MalformedHeader, match="field number 0"):
        list(pb.iter_fields(b"\x00"))
    with pytest.raises(MalformedHeader, match="expected varint"):
        pb.decode(b"\x0a\x00", 0, 2, {1: ("ir_version", pb.VARINT, False)})
    with pytest.raises(MalformedHeader, match="enclosing"):  # inner LEN longer than its parent
        list(pb.iter_fields(b"\x0a\x02\x0a\x05xxxxxx", 2, 4))


def test_len_payload_is_not_copied():
    buf = memoryview(bytearray(b"\x4a\x03abc"))
    (f,) = pb.iter_fields(buf)
    assert (f.number, f.wire, f.value, f.offset) == (9, pb.LEN, 3, 2)
    view = pb.payload(buf, f)
    buf[2] = ord("z")
    assert bytes(view) == b"zbc"


hypothesis = pytest.importorskip("hypothesis")
st = pytest.importorskip("hypothesis.strategies")


@hypothesis.given(
    packed=st.lists(st.integers(-(2**63), 2**63 - 1), max_size=50),
    loose=st.lists(st.integers(-(2**63), 2**63 - 1), max_size=5),
    floats=st.lists(st.floats(width=32, allow_nan=False), max_size=20),
)
def test_repeated_fields_match_protobuf(packed, loose, floats):
    # Packed int64_data, then the same field one varint at a time, then unpacked float_data:
    # protobuf's own parser is the reference for how both forms concatenate.
    data = TensorProto(int64_data=packed).SerializeToString() if packed else b""
    data += b"".join(b"\x38" + _varint(v) for v in loose)
    data += b"".join(b"\x25" + np.float32(x).tobytes() for x in floats)
    ref = TensorProto.FromString(data)
    msg = pb.decode(data, 0, len(data), mo.TENSOR)
    got = pb.unpack(data, msg.get("int64_data", []), "varint").view(np.int64)
    assert got.tolist() == list(ref.int64_data)
    got_f = pb.unpack(data, msg.get("float_data", []), "<f4")
    assert got_f.tobytes() == np.array(ref.float_data, np.float32).tobytes()


def test_packed_varint_overrun():
    with pytest.raises(Truncated):
        pb.varints(b"\x01\x80", 100)
    with pytest.raises(MalformedHeader) as exc:
        pb.varints(b"\x01" + b"\x80" * 10 + b"\x01", 100)
    assert exc.value.offset == 101
