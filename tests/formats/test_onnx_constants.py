"""ONNX weights in Constant nodes: listed, counted, converted and verified bit for bit.

Graphs are built with onnx.helper (every Constant attribute kind, subgraphs, empty and 0-d
values) and exported by torch with constant folding; the expected bytes come from
onnx.numpy_helper.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import modelport  # noqa: E402
from modelport.cli import main  # noqa: E402
from modelport.tensors import to_numpy  # noqa: E402

RNG = np.random.default_rng(7)


def _const(out: str, **attr) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [out], name=f"make_{out}", **attr)


def _helper_model(path) -> dict[str, np.ndarray]:
    """A model whose weights live in Constants of every kind; returns the expected arrays."""
    w = RNG.standard_normal((2, 3)).astype(np.float32)
    ints = np.array([[-5, 7], [2**31 - 1, -(2**31)]], np.int32)
    half = np.array([1.5, -0.0, 65504], np.float16)
    sparse_vals = np.array([1.25, -2.5, 4.0], np.float32)
    dense2d = np.zeros((3, 4), np.float32)
    coo = np.array([[0, 1], [2, 0], [2, 3]], np.int64)
    dense2d[tuple(coo.T)] = sparse_vals
    dense1d = np.zeros(6, np.int64)
    dense1d[[1, 4]] = [9, -3]
    expect = {
        "w_raw": w,
        "w_typed": ints,
        "w_half": half,
        "scalar_t": np.array(3.5, np.float32),
        "empty": np.zeros((0, 4), np.float32),
        "vf": np.array(-1.75, np.float32),
        "vfs": np.array([0.5, 1e-30, -3.0], np.float32),
        "vi": np.array(-(2**40), np.int64),
        "vis": np.array([1, -1, 2**62], np.int64),
        "vzero": np.array(0, np.int64),
        "sp2d": dense2d,
        "sp1d": dense1d,
        "init": RNG.standard_normal(4).astype(np.float32),
        "then_w": np.arange(3, dtype=np.float32),
        "else_w": np.array([7.0], np.float32),
    }
    nodes = [
        _const("w_raw", value=numpy_helper.from_array(w, "ignored_name")),
        _const("w_typed", value=helper.make_tensor("t", TensorProto.INT32, [2, 2],
                                                   ints.ravel().tolist())),
        _const("w_half", value=numpy_helper.from_array(half)),
        _const("scalar_t", value=helper.make_tensor("s", TensorProto.FLOAT, [], [3.5])),
        _const("empty", value=numpy_helper.from_array(expect["empty"])),
        _const("vf", value_float=-1.75),
        _const("vfs", value_floats=[0.5, 1e-30, -3.0]),
        _const("vi", value_int=-(2**40)),
        _const("vis", value_ints=[1, -1, 2**62]),
        _const("vzero", value_int=0),
        _const("sp2d", sparse_value=helper.make_sparse_tensor(
            numpy_helper.from_array(sparse_vals), numpy_helper.from_array(coo), [3, 4])),
        _const("sp1d", sparse_value=helper.make_sparse_tensor(
            numpy_helper.from_array(np.array([9, -3], np.int64)),
            numpy_helper.from_array(np.array([1, 4], np.int64)), [6])),
        _const("label", value_string="not a weight"),
    ]
    then_g = helper.make_graph([_const("then_w", value=numpy_helper.from_array(
        expect["then_w"]))], "then", [], [helper.make_tensor_value_info("then_w", 1, [3])])
    else_g = helper.make_graph([_const("else_w", value=numpy_helper.from_array(
        expect["else_w"]))], "else", [], [helper.make_tensor_value_info("else_w", 1, [1])])
    nodes.append(helper.make_node("If", ["cond"], ["branch"], then_branch=then_g,
                                  else_branch=else_g))
    outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, shape)
               for n, shape in (("w_raw", [2, 3]), ("vf", []), ("sp2d", [3, 4]), ("branch", ["n"]))]
    graph = helper.make_graph(nodes, "consts", [helper.make_tensor_value_info("cond", 9, [])],
                              outputs, initializer=[numpy_helper.from_array(expect["init"],
                                                                            "init")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, path)
    return expect


def _same_bytes(got: np.ndarray, want: np.ndarray) -> None:
    assert got.dtype == want.dtype and got.shape == want.shape
    assert np.asarray(got).tobytes() == np.ascontiguousarray(want).tobytes()


def test_every_constant_kind_is_a_weight(tmp_path):
    path = tmp_path / "consts.onnx"
    expect = _helper_model(path)
    onnx.checker.check_model(str(path))
    ck = modelport.open(path)
    assert set(ck.weights) == set(expect)
    for name, want in expect.items():
        _same_bytes(to_numpy(ck.weights[name]), want)
    assert ck.weights["vf"].shape == () and ck.weights["empty"].shape == (0, 4)
    g = ck.info["graph"]
    assert (g["initializer_count"], g["constant_count"]) == (1, len(expect) - 1)
    assert [s["name"] for s in g["skipped_initializers"]] == ["label"]
    # the reference reading of the TensorProto-valued Constants
    model = onnx.load(path)
    for node in model.graph.node:
        if node.op_type == "Constant" and node.attribute[0].name == "value":
            _same_bytes(to_numpy(ck.weights[node.output[0]]),
                        numpy_helper.to_array(node.attribute[0].t))


def test_constants_convert_and_verify(tmp_path, capsys):
    src = tmp_path / "consts.onnx"
    expect = _helper_model(src)
    for dst in (tmp_path / "out.safetensors", tmp_path / "out.npz"):
        assert main(["convert", str(src), str(dst)]) == 0
        back = modelport.open(dst)
        assert set(back.weights) == set(expect)
        for name, want in expect.items():
            _same_bytes(to_numpy(back.weights[name]), want)
        assert main(["verify", str(src), str(dst)]) == 0
    capsys.readouterr()
    assert main(["inspect", str(src), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["parameters"] == sum(a.size for a in expect.values())
    assert {w["name"]: w["shape"] for w in d["weights"]}["vi"] == []


def test_full_convert_of_nothing_is_an_error(tmp_path, capsys):
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "empty",
                              [helper.make_tensor_value_info("x", 1, [2])],
                              [helper.make_tensor_value_info("y", 1, [2])])
    src = tmp_path / "empty.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), src)
    dst = tmp_path / "out.safetensors"
    assert main(["convert", str(src), str(dst), "--full"]) == 2
    assert "no tensors found" in capsys.readouterr().err
    assert not dst.exists()


def test_torch_export_with_constant_folding(tmp_path, capsys):
    torch = pytest.importorskip("torch")

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.enc = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(),
                                           torch.nn.Linear(8, 3, bias=False))
            self.head = torch.nn.Linear(3, 5, bias=False)

        def forward(self, x):
            return self.head(self.enc(x)) + torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])

    torch.manual_seed(0)
    net = Net().eval()
    path = tmp_path / "net.onnx"
    torch.onnx.export(net, (torch.randn(2, 4),), path, dynamo=False, do_constant_folding=True,
                      input_names=["x"])
    model = onnx.load(path)
    ck = modelport.open(path)
    want = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    want.update({n.output[0]: numpy_helper.to_array(n.attribute[0].t)
                 for n in model.graph.node if n.op_type == "Constant"})
    assert any(n.op_type == "Constant" for n in model.graph.node)
    assert set(ck.weights) == set(want)
    for name, arr in want.items():
        _same_bytes(to_numpy(ck.weights[name]), arr)
    # onnx::MatMul_N initializers are the Linear weights, transposed: named back by the graph
    names = ck.info["graph"]["state_dict_names"]
    sd = net.state_dict()
    assert {v["name"] for v in names.values()} == {"enc.2.weight", "head.weight"}
    for mangled, m in names.items():
        assert m["transposed"] is True
        np.testing.assert_array_equal(to_numpy(ck.weights[mangled]).T, sd[m["name"]].numpy())
    assert ck.info["graph"]["unmapped_names"] == []
    assert main(["inspect", str(path), "--no-verify"]) == 0
    out = capsys.readouterr().out
    assert "1 Constant nodes" in out and "2 renamed by the exporter mapped" in out
    assert " transposed)" in out and "0 unmapped" in out
