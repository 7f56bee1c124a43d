"""TFLite models: every constant tensor as tf.lite reads it, bit for bit, without TensorFlow.

The fixtures (tests/fixtures/tflite, written by ``make fixtures-keras``) are a float model and a
full-integer int8 model converted by ``tf.lite.TFLiteConverter``; ``reference.json`` holds what
``tf.lite.Interpreter`` and the schema's generated Python reader saw in them. Hostile models are
built here with a small flatbuffer writer (tests/flatbuild.py), never given to TFLite.
"""

from __future__ import annotations

import hashlib
import json
import random
import struct
from pathlib import Path

import numpy as np
import pytest
from flatbuild import build, tflite

import modelport
from modelport.cli import main
from modelport.errors import ModelportError
from modelport.formats.tflite.reader import op_name
from modelport.scan import scan_file

HERE = Path(__file__).resolve().parents[1] / "fixtures" / "tflite"
REF = json.loads((HERE / "reference.json").read_text())
MODELS = sorted(REF)


def _sha(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


@pytest.mark.parametrize("name", MODELS)
def test_every_constant_tensor_matches_tflite(name: str) -> None:
    ck = modelport.open(HERE / name)
    ref = REF[name]
    assert ck.format == "tflite" and ck.kind == "full-model"
    assert set(ck.weights) == set(ref["weights"])  # shape constants included
    quant = ck.metadata.get("quantization", {})
    for tname, want in ref["weights"].items():
        entry = ck.weights[tname]
        arr = modelport.to_numpy(entry)
        assert list(entry.shape) == want["file_shape"]
        assert str(arr.dtype) == want["dtype"]
        assert _sha(arr) == want["sha256"], tname
        if want["scales"]:
            q = quant[tname]
            assert np.array(q["scale"], np.float32).tolist() == \
                np.array(want["scales"], np.float32).tolist()
            assert q["zero_point"] == want["zero_points"]
            assert q["quantized_dimension"] == want["quantized_dimension"]
        else:
            assert tname not in quant
        # In place: the entry points at the buffer's bytes in the file.
        raw = (HERE / name).read_bytes()
        s = entry.storage
        assert s.path is not None and raw[s.offset:s.offset + s.nbytes] == arr.tobytes()
    info = ck.info["tflite"]
    assert info["operator_codes"] == [op_name(c) for c in ref["builtin_codes"]]
    assert [m["name"] for m in info["metadata"]] == ref["metadata"]
    assert [s["key"] for s in info["signatures"]] == ref["signatures"]
    assert sum(g["tensors"] for g in info["subgraphs"]) == ref["tensor_count"]


def test_int8_model_is_quantized_and_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    ck = modelport.open(HERE / "int8.tflite")
    assert {t.dtype.name for t in ck.weights.values()} >= {"I8", "I32"}
    assert main(["inspect", str(HERE / "int8.tflite")]) == 0
    out = capsys.readouterr().out
    assert "format      tflite" in out and "quantized" in out and "[out, in]" in out
    assert "safety      clean" in out
    assert "tf.lite.Interpreter" in out and "torch.load" not in out


@pytest.mark.parametrize("name", MODELS)
def test_fixtures_scan_clean(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    report = scan_file(HERE / name)
    assert report.verdict == "clean", report.to_json()
    assert report.format == "tflite" and report.scanned == ["tflite flatbuffer"]
    assert main(["scan", str(HERE / name)]) == 0
    capsys.readouterr()


@pytest.mark.parametrize("name", MODELS)
def test_convert_to_safetensors_bit_exact(name: str, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    load_file = pytest.importorskip("safetensors.numpy").load_file

    out = tmp_path / "w.safetensors"
    assert main(["convert", str(HERE / name), str(out)]) == 0
    got = load_file(out)
    assert set(got) == set(REF[name]["weights"])
    for tname, want in REF[name]["weights"].items():
        assert _sha(got[tname]) == want["sha256"]
    capsys.readouterr()


# -- hostile and malformed models -------------------------------------------------------------


def test_flex_and_custom_ops_are_unsafe(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "m.tflite"
    path.write_bytes(tflite(custom=["FlexReadFile", "MyNativeKernel"]))
    ck = modelport.open(path)
    assert ck.info["tflite"]["flex_ops"] == ["FlexReadFile"]
    assert ck.info["tflite"]["custom_ops"] == ["MyNativeKernel"]
    assert "Select-ops" in ck.needs[0]
    report = scan_file(path)
    assert report.verdict == "unsafe"
    assert {f.rule for f in report.findings} == {"tflite-flex-op", "tflite-custom-op"}
    assert main(["scan", str(path)]) == 1
    capsys.readouterr()


@pytest.mark.parametrize(("op", "severity"), [("FlexWriteFile", "HIGH"), ("FlexAddV2", "MEDIUM"),
                                              ("TFLite_Detection_PostProcess", "INFO")])
def test_op_severity(tmp_path: Path, op: str, severity: str) -> None:
    """File I/O Flex ops are worse than other Flex ops; custom ops the interpreter ships are
    notes, not findings."""
    path = tmp_path / "m.tflite"
    path.write_bytes(tflite(custom=[op]))
    report = scan_file(path)
    assert [f.severity.name for f in report.findings] == [severity]
    assert report.verdict == ("clean" if severity == "INFO" else "unsafe")


def test_hand_built_model_reads(tmp_path: Path) -> None:
    path = tmp_path / "m.tflite"
    data = np.arange(4, dtype="<f4").tobytes()
    path.write_bytes(tflite(weights=data, builtin=[3, 150]))
    ck = modelport.open(path)
    assert list(ck.weights) == ["w"]
    assert modelport.to_numpy(ck.weights["w"]).tolist() == [0, 1, 2, 3]
    # Codes past 127 live in builtin_code; the deprecated i8 field holds the placeholder.
    assert ck.info["tflite"]["operator_codes"] == ["CONV_2D", op_name(150)]
    assert scan_file(path).verdict == "clean"


def test_buffer_after_the_flatbuffer(tmp_path: Path) -> None:
    """Models over 2 GB keep buffers after the flatbuffer, by file offset and size."""
    data = np.arange(4, dtype="<f4").tobytes()
    head = tflite(weights=b"")
    off = len(head) + 16
    path = tmp_path / "big.tflite"
    blob = tflite(weights=b"", extra_model={4: ("tables", [{}, {1: ("Q", off), 2: ("Q", 16)}])})
    path.write_bytes(blob + bytes(off - len(blob)) + data)
    assert modelport.to_numpy(modelport.open(path).weights["w"]).tolist() == [0, 1, 2, 3]
    path.write_bytes(blob + bytes(off - len(blob)) + data[:8])  # the buffer is cut
    assert main(["inspect", str(path)]) == 2


def _one_line_exit_2(path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["inspect", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(path) in err, err
    return err


@pytest.mark.parametrize("root", [0xFFFFFFF0, 6, 1 << 20])
def test_bad_root_offset(tmp_path: Path, root: int, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "m.tflite"
    path.write_bytes(struct.pack("<I", root) + tflite()[4:])
    _one_line_exit_2(path, capsys)
    assert scan_file(path).verdict == "error"


def test_offsets_that_point_outside(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "m.tflite"
    path.write_bytes(tflite(extra_model={2: ("raw_offset", 1 << 30)}))
    assert "byte" in _one_line_exit_2(path, capsys)
    # A vector claiming 2**32 - 1 elements.
    blob = build({0: ("I", 3), 2: ("vec:i", [])})
    cut = blob.rfind(struct.pack("<I", 0))
    path.write_bytes(blob[:cut] + struct.pack("<I", 0xFFFFFFFF) + blob[cut + 4:])
    _one_line_exit_2(path, capsys)


def test_tensor_naming_a_missing_buffer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "m.tflite"
    path.write_bytes(tflite(weights=b"\0" * 12))  # shape [4] of F32 needs 16
    assert "needs 16" in _one_line_exit_2(path, capsys)


def test_truncated_and_flipped_fixtures_fail_cleanly(tmp_path: Path) -> None:
    from test_robustness import exercise

    data = (HERE / "int8.tflite").read_bytes()
    rng = random.Random(8)
    cases = [data[:cut] for cut in range(0, len(data), 37)]
    for _ in range(150):
        buf = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            buf[rng.randrange(len(buf))] = rng.randrange(256)
        cases.append(bytes(buf))
    errors = 0
    for i, blob in enumerate(cases):
        p = tmp_path / f"c{i}.tflite"
        p.write_bytes(blob)
        errors += isinstance(exercise(p), ModelportError)
    assert errors >= len(range(0, len(data), 37)) - 1  # every cut is noticed


def test_types_modelport_cannot_hold_are_listed_not_dropped(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]
                                                            ) -> None:
    path = tmp_path / "m.tflite"
    path.write_bytes(tflite(tensor_type=17, weights=b"\x12\x34", shape=(4,)))  # INT4, packed
    ck = modelport.open(path)
    assert not ck.weights
    assert ck.info["tflite"]["skipped_tensors"] == [
        {"name": "w", "dtype": "INT4", "shape": [4], "bytes": 2,
         "reason": "modelport cannot hold element type INT4"}]
    assert main(["inspect", str(path)]) == 0
    assert "skipped     w: modelport cannot hold element type INT4" in capsys.readouterr().out
