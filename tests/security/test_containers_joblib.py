"""joblib's layout: array bytes follow each NumpyArrayWrapper inside the pickle stream.

Files are written by the real ``joblib.dump`` (never loaded: the scanner reads them, and the
tests decode nothing but opcodes). A joblib file of plain arrays is clean in every compressor;
what joblib would run (an object array's own pickle, a global after the arrays) is judged, and
array bytes that ``pickle.load`` would parse as opcodes are judged as that reading too.
"""

from __future__ import annotations

import os
import pickletools
import struct
from pathlib import Path

import numpy as np
import pytest

from modelport.scan import scan_file

joblib = pytest.importorskip("joblib")

COMPRESSORS = [0, 3, ("gzip", 3), ("bz2", 3), ("xz", 3), ("lzma", 3), ("zlib", 3)]


def _arrays() -> dict[str, object]:
    return {
        "w": np.arange(12, dtype=np.float32).reshape(3, 4),
        "fortran": np.asfortranarray(np.ones((3, 5), dtype=">f8")),
        "records": np.zeros(2, dtype=[("a", "<f4"), ("b", "<i8", (2,))]),
        "empty": np.zeros((0, 7)),
        "scalar": np.array(3.5),
        "epoch": 7,
        "names": ["a", "b"],
    }


class Evil:
    """Pickles as os.system(...) (the test pickles it; nothing ever unpickles it)."""

    def __init__(self, canary: Path) -> None:
        self.canary = canary

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"touch {self.canary}",)


@pytest.mark.parametrize("compress", COMPRESSORS, ids=str)
def test_plain_arrays_are_clean(compress: object, tmp_path: Path) -> None:
    path = tmp_path / "model.joblib"
    joblib.dump(_arrays(), path, compress=compress)
    report = scan_file(path)
    assert report.verdict == "clean", report.to_json()
    assert not report.errors and not [f for f in report.findings if f.rule == "trailing-bytes"]


def test_plain_arrays_were_broken_without_the_layout(tmp_path: Path) -> None:
    """The array bytes really are in the stream: a plain opcode walk stops at them."""
    path = tmp_path / "model.joblib"
    joblib.dump({"w": np.ones(64, dtype=np.float64)}, path)
    with pytest.raises(ValueError):
        list(pickletools.genops(path.read_bytes()))


@pytest.mark.parametrize("compress", [0, ("gzip", 3)], ids=str)
def test_a_gadget_after_the_arrays(compress: object, tmp_path: Path) -> None:
    canary = tmp_path / "CANARY"
    path = tmp_path / "model.joblib"
    joblib.dump({"w": np.ones((256, 3)), "x": Evil(canary)}, path, compress=compress)
    report = scan_file(path)
    assert report.verdict == "unsafe"
    assert any(f.rule == "gadget-import" and "system" in (f.subject or "")
               for f in report.findings)
    assert not canary.exists()


def test_a_gadget_inside_an_object_array(tmp_path: Path) -> None:
    """Object arrays are a nested pickle joblib unpickles with a fresh Unpickler."""
    canary = tmp_path / "CANARY"
    path = tmp_path / "model.joblib"
    joblib.dump({"o": np.array([1, Evil(canary)], dtype=object), "w": np.ones(4)}, path)
    report = scan_file(path)
    assert report.verdict == "unsafe"
    assert any(f.rule == "gadget-import" for f in report.findings)
    clean = tmp_path / "objects.joblib"
    joblib.dump({"o": np.array([1, "a", None], dtype=object), "w": np.ones(4)}, clean)
    assert scan_file(clean).verdict == "clean"


def test_array_bytes_that_pickle_load_would_run(tmp_path: Path) -> None:
    """Without the alignment key joblib puts the array right after BUILD: joblib.load reads
    bytes, pickle.load of the same file reads opcodes. Both readings are judged."""
    canary = tmp_path / "CANARY"
    payload = b"cos\nsystem\n(S'touch " + str(canary).encode() + b"'\ntR."
    path = tmp_path / "model.joblib"
    joblib.dump({"w": np.frombuffer(payload, dtype=np.uint8)}, path)
    raw = path.read_bytes()
    # What joblib < 1.2 wrote: no alignment key, no padding byte, the array right after BUILD
    # (joblib commits the frame before the array: only the first FRAME's length changes).
    key = b"\x8c\x1bnumpy_array_alignment_bytes\x94K\x10"
    at = pad = raw.index(payload)
    while raw[pad - 1] == 0xFF:
        pad -= 1
    build = pad - 2  # BUILD, the padding length byte, the 0xff padding, the array
    assert key in raw and raw[build:build + 2] == b"b" + bytes([at - pad])
    frame = struct.unpack_from("<Q", raw, 3)[0] - len(key)
    older = raw[:3] + struct.pack("<Q", frame) + raw[11:build + 1].replace(key, b"") + raw[at:]
    path.write_bytes(older)
    report = scan_file(path)
    assert report.verdict == "unsafe", report.to_json()
    assert any(f.rule == "gadget-import" and "array bytes" in (f.member or "")
               for f in report.findings)
