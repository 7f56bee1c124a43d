"""Raw flat buffers: `numpy().tobytes()` of each parameter in turn, read back with --layout."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import modelport
from modelport.cli import main

torch = pytest.importorskip("torch")


def _model_and_buffer(tmp_path: Path) -> tuple[Path, Path, dict[str, np.ndarray]]:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.ReLU(), torch.nn.Linear(7, 3))
    net[2].weight.data = net[2].weight.data.half().float()  # still F32; values exact in F16
    pth = tmp_path / "model.pth"
    torch.save(net.state_dict(), pth)
    raw = tmp_path / "weights.bin"
    with open(raw, "wb") as f:  # what the edge-deployment tutorials write
        for p in net.parameters():
            f.write(p.detach().numpy().tobytes())
    ref = {k: v.numpy().copy() for k, v in net.state_dict().items()}
    return pth, raw, ref


def test_raw_buffer_reads_exactly_with_a_model_layout(tmp_path: Path) -> None:
    pth, raw, ref = _model_and_buffer(tmp_path)
    ck = modelport.open(raw, layout=pth)
    assert ck.format == "raw" and list(ck.weights) == list(ref)
    for name, arr in ref.items():
        got = modelport.to_numpy(ck.weights[name])
        assert got.dtype == arr.dtype and got.shape == arr.shape
        assert got.tobytes() == arr.tobytes()


def test_convert_to_raw_and_back_through_the_cli(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    pth, raw, ref = _model_and_buffer(tmp_path)
    out = tmp_path / "out.bin"
    assert main(["convert", str(pth), str(out), "--to", "raw", "--quiet"]) == 0
    assert out.read_bytes() == raw.read_bytes()
    layout = json.loads((tmp_path / "out.bin.layout.json").read_text())
    assert [e["name"] for e in layout] == list(ref)
    assert layout[1]["offset"] == ref["0.weight"].nbytes and layout[0]["dtype"] == "F32"
    # the JSON layout reads it back, and the result verifies against the original
    st = tmp_path / "back.safetensors"
    assert main(["convert", str(out), str(st), "--layout", str(tmp_path / "out.bin.layout.json"),
                 "--quiet"]) == 0
    assert main(["verify", str(raw), str(pth), "--layout", str(pth)]) == 0
    assert main(["verify", str(st), str(pth)]) == 0


def test_inspect_json_of_a_raw_buffer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pth, raw, ref = _model_and_buffer(tmp_path)
    capsys.readouterr()
    assert main(["inspect", str(raw), "--layout", str(pth), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["format"] == "raw"
    assert [w["name"] for w in report["weights"]] == list(ref)
    assert report["parameters"] == sum(a.size for a in ref.values())


def test_a_wrong_layout_is_one_line_naming_the_tensor_and_bytes(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pth, raw, _ = _model_and_buffer(tmp_path)
    short = tmp_path / "short.bin"
    short.write_bytes(raw.read_bytes()[:-8])
    assert main(["inspect", str(short), "--layout", str(pth)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "8 short" in err and "'2.bias'" in err
    long = tmp_path / "long.bin"
    long.write_bytes(raw.read_bytes() + b"\0" * 12)
    out = tmp_path / "x.safetensors"
    assert main(["convert", str(long), str(out), "--layout", str(pth)]) == 2
    err = capsys.readouterr().err
    assert "12 extra" in err and not out.exists()
    assert not list(tmp_path.glob(".x.safetensors*"))  # nothing partial left behind
    bad = tmp_path / "bad.json"
    bad.write_text('[{"name": "w", "dtype": "F33", "shape": [2]}]')
    assert main(["inspect", str(raw), "--layout", str(bad)]) == 2
    assert "unknown dtype 'F33'" in capsys.readouterr().err


def test_half_size_buffer_suggests_another_dtype(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    pth, _, ref = _model_and_buffer(tmp_path)
    half = tmp_path / "half.bin"
    half.write_bytes(b"".join(a.astype(np.float16).tobytes() for a in ref.values()))
    assert main(["inspect", str(half), "--layout", str(pth)]) == 2
    assert "another dtype" in capsys.readouterr().err


def test_an_unknown_file_hints_at_raw_floats(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "mystery.bin"
    f.write_bytes(np.arange(57, dtype=np.float32).tobytes()[4:] + b"\x01\x02\x03\x04")
    assert main(["inspect", str(f)]) == 2
    err = capsys.readouterr().err
    assert "57 raw float32 values" in err and "--layout" in err
