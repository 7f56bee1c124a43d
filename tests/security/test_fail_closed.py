"""The scanner fails closed (issue #7, items 2-3): every run of bytes is parsed as a pickle from
its first byte, an error never hides what was found before it, and ``convert`` refuses what the
scanner calls unsafe or could not judge.

The any-first-byte and parse-parity techniques themselves are samples in corpus.py (one test
each in test_malicious.py); this file checks the contracts around them.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from modelport.cli import main
from modelport.convert import convert
from modelport.errors import UnsafeInput
from modelport.scan import scan_file

from .conftest import load_corpus

C = load_corpus()
P = C.P


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_bytes_that_stop_cpython_at_once_stay_clean(tmp_path: Path) -> None:
    # What no loader interprets stays clean: raw floats, text, JSON, a zip's 'PK' (PERSID of a
    # line CPython refuses), a file of one repeated MARK byte (CPython runs out of bytes).
    import numpy as np

    samples = {
        "weights.raw": np.linspace(-1, 1, 4096, dtype=np.float32).tobytes(),
        "notes.txt": b"# notes\nlearning rate 3e-4\n",
        "config.json": b'{"hidden_size": 8}',
        "marks.bin": b"(" * 50_000,
        "nones.bin": b"N" * 50_000,
        "constant.bin": b"N" * (1 << 20),  # a constant tensor: never interpreted
    }
    for name, data in samples.items():
        report = scan_file(_write(tmp_path, name, data))
        assert report.verdict == "clean", (name, report.to_json())


def test_a_data_pickle_with_any_first_opcode_is_judged_clean(tmp_path: Path) -> None:
    # Protocol 0 of a plain dict starts with '(' and names nothing: clean, and recognised.
    import pickle

    path = _write(tmp_path, "p0.bin", pickle.dumps({"lr": 0.1, "epochs": [1, 2]}, protocol=0))
    report = scan_file(path)
    assert report.verdict == "clean" and report.scanned, report.to_json()


def test_an_error_adds_to_the_findings(tmp_path: Path, canary: Path) -> None:
    # The gadget is called, then the stream hits a resource limit: both are reported.
    data = P.proto(2) + C._system(str(canary)).ops + b"0" + P.MARK * 10_001 + P.STOP
    report = scan_file(_write(tmp_path, "limit_after.pkl", data))
    rules = {f.rule for f in report.findings}
    assert report.verdict == "unsafe" and {"gadget-import", "limit"} <= rules
    assert main(["scan", str(tmp_path / "limit_after.pkl")]) == 1
    assert not canary.exists()


def test_an_unreadable_tail_after_a_call_is_unsafe_not_error(tmp_path: Path) -> None:
    # A stream that no PROTO announces, imports a class off the allowlist, then breaks.
    data = b"I1\n0" + P.glob("mylib.models", "Net") + P.EMPTY_TUPLE + P.REDUCE + b"\xff"
    report = scan_file(_write(tmp_path, "broken.bin", data))
    assert report.verdict != "clean" and report.errors
    assert any(f.subject == "mylib.models.Net" for f in report.findings)


def _readable_with_scan_error(tmp_path: Path) -> Path:
    # data.pkl reads as a state dict; an extra member is a pickle (PROTO 2) that breaks: the
    # scanner cannot judge all of the file.
    extra = C.Member("archive/.data/extra.pkl", P.proto(2) + b"]\xff")
    return _write(tmp_path, "scan_error.pt", C.torch_zip(C.benign_state(), [extra]))


def test_convert_refuses_a_source_the_scanner_could_not_judge(tmp_path: Path) -> None:
    src = _readable_with_scan_error(tmp_path)
    assert scan_file(src).verdict == "error"
    with pytest.raises(UnsafeInput, match="could not judge"):
        convert(src, tmp_path / "out.safetensors")
    assert not (tmp_path / "out.safetensors").exists()
    assert main(["convert", str(src), str(tmp_path / "out.safetensors")]) == 2
    convert(src, tmp_path / "out.safetensors", allow_unsafe=True)
    assert (tmp_path / "out.safetensors").exists()


def test_convert_refuses_an_unsafe_source(tmp_path: Path, canary: Path) -> None:
    src = _write(tmp_path, "m.pt", C.torch_zip(C.benign_state(), [
        C.Member("archive/extra", b"I1\n0" + C._bare(str(canary)))]))
    with pytest.raises(UnsafeInput, match="code a loader would run"):
        convert(src, tmp_path / "out.safetensors")
    assert not canary.exists()


def test_convert_cannot_skip_the_scan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The scanner is part of the core: when it cannot be imported, convert fails loudly
    # instead of converting an unscanned file.
    src = _write(tmp_path, "ok.pt", C.torch_zip(C.benign_state()))
    monkeypatch.setitem(sys.modules, "modelport.scan", None)
    with pytest.raises(ImportError):
        convert(src, tmp_path / "out.safetensors")
    assert not (tmp_path / "out.safetensors").exists()
