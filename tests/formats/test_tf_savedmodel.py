"""SavedModel folders and TF1 .meta graphs decoded without TensorFlow, compared with what
TensorFlow's own protobuf classes read from them (tests/fixtures/tf/reference.json)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import modelport
from modelport.cli import main
from modelport.formats.tf_savedmodel.reader import read_meta_graph_file, read_saved_model
from modelport.limits import DEFAULT_LIMITS
from modelport.scan import scan_file

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "tf"
REFERENCE = json.loads((FIXTURES / "reference.json").read_text())
SAVED_MODELS = ["sm_keras", "sm_module", "sm_writes_file"]
TF_DTYPES = {"float32": "F32", "int32": "I32", "string": "STRING", None: None}


def _compare(graph, ref: dict) -> None:
    graph_ops, fn_ops = graph.op_counts()
    assert dict(graph_ops) == ref["graph_ops"]
    assert dict(fn_ops) == ref["function_ops"]
    assert sorted(f.name for f in graph.functions) == ref["functions"]
    assert graph.tags == ref["tags"]
    assert graph.tensorflow_version == ref["tensorflow_version"]
    assert graph.collections == ref["collections"]
    assert set(graph.signatures) == set(ref["signatures"])
    for name, sig in ref["signatures"].items():
        ours = graph.signatures[name]
        assert ours["method"] == sig["method"]
        for side in ("inputs", "outputs"):
            assert set(ours[side]) == set(sig[side])
            for key, t in sig[side].items():
                assert ours[side][key]["name"] == t["name"]
                assert ours[side][key]["dtype"] == TF_DTYPES[t["dtype"]]
                assert ours[side][key]["shape"] == t["shape"]


@pytest.mark.parametrize("fixture", SAVED_MODELS)
def test_saved_model_graph_equals_what_tensorflow_parsed(fixture: str) -> None:
    schema, graphs = read_saved_model(str(FIXTURES / fixture / "saved_model.pb"),
                                      DEFAULT_LIMITS)
    ref = REFERENCE[fixture]
    assert schema == ref["schema_version"]
    assert len(graphs) == len(ref["meta_graphs"])
    for g, r in zip(graphs, ref["meta_graphs"]):
        _compare(g, r)


def test_meta_graph_equals_what_tensorflow_parsed() -> None:
    g = read_meta_graph_file(str(FIXTURES / "tf1_saver" / "model.ckpt.meta"), DEFAULT_LIMITS)
    _compare(g, REFERENCE["tf1_saver"]["meta"])


def test_saved_model_folder_opens_with_weights_signatures_and_assets() -> None:
    ck = modelport.open(FIXTURES / "sm_module")
    assert ck.format == "tf-savedmodel" and ck.kind == "tf-graph"
    assert list(ck.weights) == ["dense/kernel", "dense/bias", "scale"]
    summary = ck.info["summary"]
    assert "serving_default(x: F32[?, 3]) -> y: F32[?, 2]" in summary["signatures"]
    assert summary["assets"] == "assets/vocab.txt (6 B)"
    assert ck.info["tf_graph"]["assets"] == [{"file": "assets/vocab.txt", "bytes": 6}]
    # the .pb alone names the same model
    assert list(modelport.open(FIXTURES / "sm_module" / "saved_model.pb").weights) == \
        list(ck.weights)


def test_meta_graph_opens_with_the_checkpoint_beside_it() -> None:
    path = FIXTURES / "tf1_saver" / "model.ckpt.meta"
    assert modelport.sniff(path) == "tf-metagraph"
    ck = modelport.open(path)
    assert "emb" in ck.weights and ck.info["tf_graph"]["node_count"] == sum(
        REFERENCE["tf1_saver"]["meta"]["graph_ops"].values())


def test_inspect_shows_signatures_graph_and_needs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", str(FIXTURES / "sm_keras")]) == 0
    out = capsys.readouterr().out
    assert "serving_default(keras_tensor_3: F32[?, 4]) -> output_0: F32[?, 3]" in out
    assert "TensorFlow 2.21.0" in out and "tf.saved_model.load() needs TensorFlow" in out
    assert "sequential_1/dense_2/kernel" in out and "[in, out]" in out
    assert main(["inspect", "--json", str(FIXTURES / "sm_module")]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["format"] == "tf-savedmodel"
    assert data["info"]["tf_graph"]["function_count"] == len(
        REFERENCE["sm_module"]["meta_graphs"][0]["functions"])


def test_saved_model_pb_is_not_onnx() -> None:
    for fixture in SAVED_MODELS:
        assert modelport.sniff(FIXTURES / fixture / "saved_model.pb") == "tf-savedmodel-pb"


@pytest.mark.parametrize("path", ["sm_module", "sm_keras", "tf1_saver/model.ckpt.meta"])
def test_benign_graphs_scan_clean(path: str) -> None:
    report = scan_file(FIXTURES / path)
    assert report.verdict == "clean", report.to_json()


def test_graph_that_writes_files_and_calls_python_is_unsafe(
        capsys: pytest.CaptureFixture[str]) -> None:
    """Made by the real TensorFlow: tf.io.write_file / read_file with fixed paths and a
    tf.py_function inside a serving function."""
    report = scan_file(FIXTURES / "sm_writes_file")
    assert report.verdict == "unsafe"
    found = {(f.rule, f.subject) for f in report.unsafe_findings}
    assert {("tf-file-op", "WriteFile"), ("tf-file-op", "ReadFile"),
            ("tf-py-func", "EagerPyFunc")} <= found
    assert any("/tmp/modelport-canary" in f.message for f in report.findings)
    assert main(["scan", str(FIXTURES / "sm_writes_file")]) == 1
    capsys.readouterr()


def test_truncated_saved_model_is_one_line_exit_2(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    d = tmp_path / "sm"
    shutil.copytree(FIXTURES / "sm_module", d)
    pb = d / "saved_model.pb"
    pb.write_bytes(pb.read_bytes()[:5000])
    assert main(["inspect", str(d)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "saved_model.pb" in err
    assert scan_file(pb).verdict == "error"


def test_convert_refuses_a_saved_model_whose_graph_is_unsafe(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    d = tmp_path / "sm"
    shutil.copytree(FIXTURES / "sm_module", d)
    shutil.copy(FIXTURES / "sm_writes_file" / "saved_model.pb", d / "saved_model.pb")
    assert main(["convert", str(d), str(tmp_path / "w.safetensors")]) == 2
    assert "scanner found code" in capsys.readouterr().err
    assert not (tmp_path / "w.safetensors").exists()
    assert main(["convert", str(d), str(tmp_path / "w.safetensors"), "--allow-unsafe"]) == 0
    capsys.readouterr()
    # the benign SavedModel converts, bit for bit
    assert main(["convert", str(FIXTURES / "sm_module"), str(tmp_path / "ok.safetensors"),
                 "--verify"]) == 0
    assert "verified: 3 tensors match" in capsys.readouterr().err
