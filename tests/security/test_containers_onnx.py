"""ONNX external data on every tensor-bearing field: initializers, sparse initializers,
Constant values, attribute tensors in nodes and subgraphs, function bodies and training info.
Models are built with the real onnx package; nothing is loaded with external data."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from modelport.containers.onnx_tensors import location_problem, walk
from modelport.scan import scan_file

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from onnx.external_data_helper import set_external_data  # noqa: E402


def _ext(name: str, location: str) -> TensorProto:
    t = numpy_helper.from_array(np.ones(4, dtype=np.float32), name)
    set_external_data(t, location=location, offset=0, length=16)
    t.data_location = TensorProto.EXTERNAL
    t.ClearField("raw_data")
    return t


def _sparse(location: str) -> onnx.SparseTensorProto:
    values = _ext("sv", location)
    indices = numpy_helper.from_array(np.arange(4, dtype=np.int64), "si")
    return helper.make_sparse_tensor(values, indices, [8])


def _graph(nodes: list, inits: list | None = None, sparse: list | None = None,
           name: str = "g") -> onnx.GraphProto:
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    return helper.make_graph(nodes, name, [], [out], initializer=inits or [],
                             sparse_initializer=sparse or [])


def _model(where: str, location: str) -> onnx.ModelProto:
    const = lambda t: helper.make_node("Constant", [], ["y"], value=t)  # noqa: E731
    functions, training = [], []
    if where == "initializer":
        g = _graph([helper.make_node("Identity", ["w"], ["y"])], inits=[_ext("w", location)])
    elif where == "sparse initializer":
        g = _graph([helper.make_node("Identity", ["sv"], ["y"])], sparse=[_sparse(location)])
    elif where == "Constant value":
        g = _graph([const(_ext("c", location))])
    elif where == "Constant sparse_value":
        g = _graph([helper.make_node("Constant", [], ["y"], sparse_value=_sparse(location))])
    elif where == "attribute tensors":
        g = _graph([helper.make_node("Custom", [], ["y"], domain="x",
                                     tables=[_ext("t0", "w.bin"), _ext("t1", location)])])
    elif where == "subgraph":
        body = _graph([const(_ext("c", location))], name="then")
        cond = numpy_helper.from_array(np.array(True), "cond")
        g = _graph([helper.make_node("If", ["cond"], ["y"], then_branch=body,
                                     else_branch=_graph([const(numpy_helper.from_array(
                                         np.ones(1, np.float32), "e"))], name="else"))],
                   inits=[cond])
    elif where == "function body":
        fn = helper.make_function("local", "F", [], ["y"], [const(_ext("c", location))],
                                  [helper.make_opsetid("", 17)])
        functions.append(fn)
        g = _graph([helper.make_node("F", [], ["y"], domain="local")])
    elif where == "training info":
        g = _graph([helper.make_node("Identity", ["w"], ["y"])],
                   inits=[numpy_helper.from_array(np.ones(4, np.float32), "w")])
        init = _graph([], inits=[_ext("w0", location)], name="init")
        algo = _graph([helper.make_node("Identity", ["w"], ["y"])], name="algo")
        training.append(helper.make_training_info(algo, [], init, [("w", "w0")]))
    else:
        raise AssertionError(where)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17),
                                                helper.make_opsetid("local", 1)],
                              functions=functions)
    model.training_info.extend(training)
    return model


WHERE = ["initializer", "sparse initializer", "Constant value", "Constant sparse_value",
         "attribute tensors", "subgraph", "function body", "training info"]
BAD = ["../../../etc/passwd", "/etc/passwd", "..\\..\\windows\\win.ini", "C:\\secrets.bin",
       "sub\\..\\..\\x", "\\\\server\\share\\w"]


@pytest.mark.parametrize("where", WHERE)
def test_every_tensor_field_is_checked(where: str, tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    onnx.save(_model(where, "../../../etc/passwd"), str(path))
    refs = list(walk(path.read_bytes()))
    assert [r.location for r in refs if r.location != "w.bin"] == ["../../../etc/passwd"]
    report = scan_file(path)
    assert report.verdict == "unsafe", report.to_json()
    assert "onnx-external-path" in {f.rule for f in report.findings}


@pytest.mark.parametrize("location", BAD)
def test_both_separators_drives_and_unc(location: str, tmp_path: Path) -> None:
    assert location_problem(location)
    path = tmp_path / "model.onnx"
    onnx.save(_model("Constant value", location), str(path))
    assert scan_file(path).verdict == "unsafe"


def test_links_in_the_model_folder(tmp_path: Path) -> None:
    (tmp_path / "secret").write_bytes(bytes(16))
    os.symlink(tmp_path / "secret", tmp_path / "w.bin")
    path = tmp_path / "model.onnx"
    onnx.save(_model("training info", "w.bin"), str(path))
    report = scan_file(path)
    assert "onnx-external-link" in {f.rule for f in report.findings}
    assert report.verdict == "unsafe"


def test_external_data_inside_the_folder_is_clean(tmp_path: Path) -> None:
    g = _graph([helper.make_node("Identity", ["w"], ["y"])],
               inits=[numpy_helper.from_array(np.ones((64, 64), np.float32), "w")])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "model.onnx"
    onnx.save(model, str(path), save_as_external_data=True, location="weights.data",
              size_threshold=0)
    assert [r.location for r in walk(path.read_bytes())] == ["weights.data"]
    report = scan_file(path)
    assert report.verdict == "clean", report.to_json()
    assert location_problem("sub/weights.data") is None
