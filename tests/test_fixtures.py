"""The committed fixtures read, convert and verify with numpy alone (issue #7 item 8).

tests/fixtures/files/ holds small files written by the real libraries (torch, lightning,
transformers, safetensors, onnx, numpy) and digests.json: sha256 per file, and per weight tensor
the dtype and shape its library reports and the sha256 of its bytes in C order as that library
reads them. ``make fixtures`` (tests/fixtures/generate.py --committed) rewrites both.

Nothing here imports torch: this is what runs in a venv of numpy, ml_dtypes, pytest and
hypothesis (``pytest -m "not torch and not transformers and not onnxruntime"``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

import modelport
from modelport import dtypes
from modelport.convert import convert, verify
from modelport.errors import UnknownFormat, UsageError
from modelport.scan import scan_file

FIXTURES = Path(__file__).parent / "fixtures"
FILES = FIXTURES / "files"
DIGESTS: dict = json.loads((FILES / "digests.json").read_text())["files"]
LISTED = sorted(rel for e in DIGESTS.values() for rel in e["sha256"])
# Every committed fixture file, these and the TensorFlow/Keras/TFLite/GGUF ones beside them.
EVERY_FILE = sorted(str(p.relative_to(FIXTURES)) for p in FIXTURES.rglob("*")
                    if p.is_file() and p.suffix not in (".py", ".pyc"))


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _dtype(library_name: str) -> dtypes.DType | None:
    """``torch.float8_e5m2`` or a numpy/ml_dtypes name (``bfloat16``) -> modelport's DType."""
    if library_name.startswith("torch."):
        return dtypes.by_torch(library_name.removeprefix("torch."))
    import ml_dtypes

    return dtypes.by_numpy(np.dtype(getattr(ml_dtypes, library_name, library_name)))


def test_every_committed_file_is_listed_with_its_digest():
    on_disk = sorted(str(p.relative_to(FILES)) for p in FILES.rglob("*")
                     if p.is_file() and p.name != "digests.json")
    assert on_disk == LISTED
    changed = [rel for e in DIGESTS.values() for rel, sha in e["sha256"].items()
               if _sha256((FILES / rel).read_bytes()) != sha]
    assert not changed, "fixtures changed without `make fixtures`"


def test_the_fixtures_stay_small():
    sizes = {rel: (FILES / rel).stat().st_size for rel in LISTED}
    assert max(sizes.values()) < 20_000 and sum(sizes.values()) < 200_000, sizes


@pytest.mark.parametrize("name", sorted(DIGESTS))
def test_fixture_reads_bit_for_bit(name):
    entry = DIGESTS[name]
    path = FILES / entry["path"]
    assert modelport.sniff(path) == entry["format"]
    ck = modelport.open(path)
    assert ck.format == entry["format"]
    assert sorted(ck.weights) == sorted(entry["tensors"])
    for tname, ref in entry["tensors"].items():
        t = ck.weights[tname]
        assert t.dtype == _dtype(ref["dtype"]), tname
        assert list(t.shape) == ref["shape"], tname
        got = np.ascontiguousarray(modelport.to_numpy(t)).tobytes()
        assert _sha256(got) == ref["sha256"], f"{name}: {tname}: bytes differ"


def test_the_scanner_labels_every_fixture_as_detect_does():
    assert len(EVERY_FILE) > len(LISTED)
    for rel in EVERY_FILE:
        path = FIXTURES / rel
        try:
            want: str | None = modelport.sniff(path)
        except UnknownFormat:  # config.json, an ONNX .data file: no format of their own
            want = None
        assert scan_file(path).format == want, rel


@pytest.mark.parametrize("name", sorted(DIGESTS))
def test_fixture_converts_and_verifies(tmp_path, name):
    """Into a torch zip (the writer needs no torch), then verified against the source; the
    output's tensors digest as the source's do."""
    src, dst = FILES / DIGESTS[name]["path"], tmp_path / "out.pt"
    try:
        # full_model is unsafe by design (a pickled class): nothing of it is run either way
        convert(src, dst, allow_unsafe=True)
    except UsageError as exc:
        assert "quantized" in str(exc) and name == "quantized_zip"
        return
    assert verify(src, dst).same
    out = modelport.open(dst)
    for tname, ref in DIGESTS[name]["tensors"].items():
        got = np.ascontiguousarray(modelport.to_numpy(out.weights[tname])).tobytes()
        assert _sha256(got) == ref["sha256"], f"{name}: {tname}"
