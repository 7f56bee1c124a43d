"""GGUF: modelport's own bounds-checked reader, differentially against the gguf package.

Fixtures: two of the vocabulary GGUFs llama.cpp ships (tests/fixtures/gguf, from the
llama-cpp-python sdist's vendor/llama.cpp/models; MIT), and files the gguf package's GGUFWriter
writes here. Set MODELPORT_GGUF_VOCAB_DIR to a folder of more (all 19 of the sdist's) to run the
metadata comparison over every one of them.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest

import modelport
from modelport.cli import main
from modelport.errors import LimitExceeded, MalformedHeader, Truncated, UnsupportedFormat
from modelport.formats.gguf import reader as mg
from modelport.scan import scan_file

FIXTURES = Path(__file__).parent.parent / "fixtures" / "gguf"
VOCABS = sorted(FIXTURES.glob("*.gguf"))
if os.environ.get("MODELPORT_GGUF_VOCAB_DIR"):
    VOCABS += sorted(Path(os.environ["MODELPORT_GGUF_VOCAB_DIR"]).glob("*.gguf"))


def _type_desc(field) -> str:  # the gguf package's field types as modelport's descriptor
    names = [mg.VALUE_TYPES[int(t)][0] for t in field.types]
    if names[0] != "array":
        return names[0]
    depth = len(names) - 1
    return "[" * depth + names[-1] + "]" * depth


@pytest.mark.parametrize("path", VOCABS, ids=lambda p: p.name)
def test_vocab_metadata_equals_the_gguf_package(path: Path) -> None:
    gguf = pytest.importorskip("gguf")
    header = mg.parse(path)
    ref = gguf.GGUFReader(path)
    fields = {k: f for k, f in ref.fields.items() if not k.startswith("GGUF.")}
    assert [kv.key for kv in header.kv] == list(fields)
    for kv in header.kv:
        assert kv.value == fields[kv.key].contents(), kv.key
        assert kv.type == _type_desc(fields[kv.key]), kv.key
        assert kv.offset == fields[kv.key].offset
    assert header.version == int(ref.fields["GGUF.version"].parts[0][0])
    assert len(header.tensors) == len(ref.tensors)


@pytest.mark.parametrize("path", VOCABS, ids=lambda p: p.name)
def test_vocab_files_are_clean_and_inspect_carries_every_value(
        path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("jinja2")
    report = scan_file(path)
    assert report.verdict == "clean", report.to_json()
    assert report.format == "gguf"
    assert main(["inspect", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    header = mg.parse(path)
    assert out["format"] == "gguf"
    assert out["metadata"] == json.loads(json.dumps(mg.metadata_dict(header)))
    tokens = header.get("tokenizer.ggml.tokens")
    assert len(out["metadata"]["tokenizer.ggml.tokens"]) == len(tokens) > 1000
    assert out["info"]["gguf"]["vocab_size"] == len(tokens)


def test_inspect_text_shows_the_model_and_the_template_never_rendered(
        capsys: pytest.CaptureFixture[str]) -> None:
    path = FIXTURES / "ggml-vocab-phi-3.gguf"
    assert main(["inspect", str(path)]) == 0
    text = capsys.readouterr().out
    assert "phi3, 4096 context, 32 layers, 32 heads, 3072 embedding" in text
    assert "tokenizer   llama (pre-tokenizer default), 32064 tokens" in text
    assert "(32,064 items)" in text  # token arrays abbreviated
    assert "  template    (shown, never rendered)" in text
    assert "              | {{ bos_token }}{% for message in messages %}" in text


# -- files written by the gguf package ------------------------------------------------------------


def _write(path: Path, tensors: dict[str, tuple[np.ndarray, str]], kv: dict | None = None,
           alignment: int | None = None) -> Path:
    gguf = pytest.importorskip("gguf")
    w = gguf.GGUFWriter(str(path), "llama")
    if alignment is not None:
        w.add_custom_alignment(alignment)
    for key, (value, vtype) in (kv or {}).items():
        sub = None
        if isinstance(vtype, tuple):
            vtype, sub = vtype
            sub = gguf.GGUFValueType[sub]
        w.add_key_value(key, value, gguf.GGUFValueType[vtype], sub_type=sub)
    for name, (arr, qtype) in tensors.items():
        q = gguf.GGMLQuantizationType[qtype]
        if qtype in ("F32", "F16"):
            w.add_tensor(name, arr.astype(np.float32 if qtype == "F32" else np.float16))
        else:
            data = gguf.quants.quantize(arr.astype(np.float32), q)
            w.add_tensor(name, data, raw_dtype=q)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_every_value_type_and_tensor_layout(tmp_path: Path) -> None:
    gguf = pytest.importorskip("gguf")
    rng = np.random.default_rng(0)
    kv = {
        "t.u8": (200, "UINT8"), "t.i8": (-5, "INT8"), "t.u16": (65000, "UINT16"),
        "t.i16": (-300, "INT16"), "t.u32": (4_000_000_000, "UINT32"), "t.i32": (-7, "INT32"),
        "t.f32": (0.1, "FLOAT32"), "t.bool": (True, "BOOL"), "t.str": ("héllo\n", "STRING"),
        "t.u64": (2**63 + 5, "UINT64"), "t.i64": (-(2**40), "INT64"), "t.f64": (0.1, "FLOAT64"),
        "t.arr_i32": ([1, -2, 3], ("ARRAY", "INT32")), "t.arr_str": (["a", "", "ü"], ("ARRAY", "STRING")),
    }
    tensors = {"a": (rng.standard_normal((3, 5)), "F32"), "b": (rng.standard_normal((4, 64)), "F16"),
               "c": (rng.standard_normal((2, 3, 64)), "Q8_0"), "d": (rng.standard_normal(7), "F32")}
    path = _write(tmp_path / "m.gguf", tensors, kv, alignment=64)
    header = mg.parse(path)
    ref = gguf.GGUFReader(path)
    assert header.alignment == 64 and header.data_start == ref.data_offset
    meta = mg.metadata_dict(header)
    for key, field in ref.fields.items():
        if not key.startswith("GGUF."):
            assert meta[key] == field.contents(), key
    types = {kv.key: kv.type for kv in header.kv}
    assert types["t.arr_str"] == "[str]" and types["t.u64"] == "u64" and types["t.i8"] == "i8"
    ck = modelport.open(path)
    assert list(ck.weights) == ["a", "b", "c", "d"]
    for t in ref.tensors:
        e = ck.weights[t.name]
        assert e.dtype.name == t.tensor_type.name
        assert e.shape == tuple(reversed(t.shape.tolist()))
        assert e.storage.offset == t.data_offset and e.nbytes == t.n_bytes
        raw = np.fromfile(path, np.uint8, e.nbytes, offset=e.storage.offset)
        assert raw.tobytes() == np.ascontiguousarray(t.data).view(np.uint8).tobytes()
    assert np.array_equal(modelport.to_numpy(ck.weights["b"]), tensors["b"][0].astype(np.float16))
    assert ck.metadata["t.str"] == "héllo\n"


def test_nested_arrays_are_read_and_noted(tmp_path: Path) -> None:
    gguf = pytest.importorskip("gguf")
    w = gguf.GGUFWriter(str(tmp_path / "n.gguf"), "llama")
    w.add_key_value("nested", [[1, 2], [3]], gguf.GGUFValueType.ARRAY,
                    sub_type=gguf.GGUFValueType.ARRAY)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    header = mg.parse(tmp_path / "n.gguf")
    assert header.get("nested") == [[1, 2], [3]]
    assert {kv.key: kv.type for kv in header.kv}["nested"] == "[[i32]]"
    assert [n[0] for n in header.notes] == ["gguf-nested-array"]
    report = scan_file(tmp_path / "n.gguf")
    assert report.verdict == "clean" and [f.rule for f in report.findings] == ["gguf-nested-array"]


# -- hand-made headers: versions 1 and 2, and every malformation -----------------------------------


def _s(text: bytes, v1: bool = False) -> bytes:
    return struct.pack("<I" if v1 else "<Q", len(text)) + text


def _file(kvs: list[bytes] = (), infos: list[bytes] = (), data: bytes = b"", *,
          version: int = 3, align: int = 32, counts: tuple[int, int] | None = None) -> bytes:
    v1 = version == 1
    n_t, n_kv = counts or (len(infos), len(kvs))
    head = b"GGUF" + struct.pack("<I", version) + struct.pack("<II" if v1 else "<QQ", n_t, n_kv)
    body = head + b"".join(kvs) + b"".join(infos)
    if infos:
        body += bytes(-len(body) % align)
    return body + data


def _kv_u32(key: bytes, value: int, v1: bool = False) -> bytes:
    return _s(key, v1) + struct.pack("<II", 4, value)


def _info(name: bytes, ne: tuple[int, ...], gtype: int, offset: int, v1: bool = False) -> bytes:
    dims = b"".join(struct.pack("<I" if v1 else "<Q", d) for d in ne)
    return _s(name, v1) + struct.pack("<I", len(ne)) + dims + struct.pack("<IQ", gtype, offset)


@pytest.mark.parametrize("version", [1, 2, 3])
def test_versions_1_to_3(tmp_path: Path, version: int) -> None:
    v1 = version == 1
    values = np.arange(6, dtype=np.float32)
    arr = _s(b"names", v1) + struct.pack("<I", 9) + struct.pack("<I", 8) + \
        struct.pack("<I" if v1 else "<Q", 2) + _s(b"x", v1) + _s(b"yz", v1)
    blob = _file([_kv_u32(b"general.alignment", 32, v1), arr],
                 [_info(b"w", (3, 2), 0, 0, v1)], values.tobytes(), version=version)
    path = tmp_path / f"v{version}.gguf"
    path.write_bytes(blob)
    ck = modelport.open(path)
    assert ck.metadata == {"general.alignment": 32, "names": ["x", "yz"]}
    assert np.array_equal(modelport.to_numpy(ck.weights["w"]), values.reshape(2, 3))
    assert ck.info["gguf"]["version"] == version


def _malformed() -> dict[str, tuple[bytes, type, str]]:
    good_info = _info(b"w", (4,), 0, 0)
    return {
        "array length 2**63": (_file(kvs=[_s(b"k") + struct.pack("<IIQ", 9, 4, 2**63)]),
                               LimitExceeded, "exceeds the limit"),
        "array past the end": (_file(kvs=[_s(b"k") + struct.pack("<IIQ", 9, 4, 10**6)]),
                               MalformedHeader, "only"),
        "string past the end": (_file(kvs=[_s(b"k") + struct.pack("<IQ", 8, 10**13) + b"ab"]),
                                MalformedHeader, "runs past the end"),
        "kv count past the end": (_file(counts=(0, 10**5)), MalformedHeader, "count 100000"),
        "tensor count past the end": (_file(counts=(10**5, 0)), MalformedHeader, "remain"),
        "alignment 48": (_file([_kv_u32(b"general.alignment", 48)], [good_info], bytes(16)),
                         MalformedHeader, "not a power of two"),
        "alignment 0": (_file([_kv_u32(b"general.alignment", 0)]), MalformedHeader,
                        "not a power of two"),
        "alignment as i32": (_file([_s(b"general.alignment") + struct.pack("<Ii", 5, 32)]),
                             MalformedHeader, "u32"),
        "shape overflows": (_file(infos=[_info(b"w", (2**32, 2**32), 0, 0)]), MalformedHeader,
                            "overflows"),
        "unknown ggml type": (_file(infos=[_info(b"w", (4,), 99, 0)], data=bytes(16)),
                              MalformedHeader, "unknown ggml type 99"),
        "removed ggml type": (_file(infos=[_info(b"w", (32,), 4, 0)], data=bytes(32)),
                              UnsupportedFormat, "Q4_2"),
        "row not whole blocks": (_file(infos=[_info(b"w", (16,), 8, 0)], data=bytes(64)),
                                 MalformedHeader, "not a whole number of Q8_0 blocks"),
        "offset misaligned": (_file(infos=[_info(b"w", (4,), 0, 8)], data=bytes(64)),
                              MalformedHeader, "not a multiple of the alignment"),
        "offset outside data": (_file(infos=[_info(b"w", (4,), 0, 1 << 40)], data=bytes(16)),
                                MalformedHeader, "outside the data section"),
        "tensor past the end": (_file(infos=[_info(b"w", (64,), 0, 0)], data=bytes(16)),
                                Truncated, "run past the end"),
        "overlapping tensors": (_file(infos=[_info(b"a", (16,), 0, 0), _info(b"b", (16,), 0, 32)],
                                      data=bytes(128)), MalformedHeader, "overlap"),
        "duplicate key": (_file([_kv_u32(b"k", 1), _kv_u32(b"k", 2)]), MalformedHeader, "twice"),
        "duplicate tensor": (_file(infos=[_info(b"w", (4,), 0, 0), _info(b"w", (4,), 0, 32)],
                                   data=bytes(64)), MalformedHeader, "twice"),
        "unknown value type": (_file([_s(b"k") + struct.pack("<II", 13, 0)]), MalformedHeader,
                               "unknown value type 13"),
        "empty key": (_file([_kv_u32(b"", 1)]), MalformedHeader, "empty"),
        "version 0": (b"GGUF" + bytes(20), MalformedHeader, "version 0"),
        "version 4": (b"GGUF" + struct.pack("<IQQ", 4, 0, 0), UnsupportedFormat, "version 4"),
        "nesting": (_file([_s(b"k") + struct.pack("<I", 9) + struct.pack("<IQ", 9, 1) * 10
                           + struct.pack("<IQ", 4, 0)]), LimitExceeded, "nest"),
    }


@pytest.mark.parametrize("case", sorted(_malformed()))
def test_malformed_headers_fail_in_one_line(tmp_path: Path, case: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    blob, exc, text = _malformed()[case]
    path = tmp_path / "bad.gguf"
    path.write_bytes(blob)
    with pytest.raises(exc) as info:
        modelport.open(path)
    assert text in str(info.value) and str(path) in str(info.value)
    assert info.value.offset is not None
    assert main(["inspect", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and text in err
    report = scan_file(path)
    assert report.verdict != "clean"


def test_every_truncation_is_one_clear_line(tmp_path: Path) -> None:
    blob = (FIXTURES / "ggml-vocab-bert-bge.gguf").read_bytes()[:4000]
    full = _file([_kv_u32(b"general.alignment", 32), _s(b"t") + struct.pack("<I", 8) + _s(b"abc")],
                 [_info(b"w", (8,), 1, 0)], bytes(16))
    path = tmp_path / "cut.gguf"
    for cut in [*range(4, len(full)), 100, 1000, 3999]:
        path.write_bytes((full if cut < len(full) else blob)[:cut])
        with pytest.raises((Truncated, MalformedHeader)) as info:
            mg.parse(path)
        assert "\n" not in str(info.value)
        assert scan_file(path).verdict != "clean"


def test_overlap_and_out_of_order_are_scan_findings(tmp_path: Path) -> None:
    path = tmp_path / "o.gguf"
    path.write_bytes(_file(infos=[_info(b"a", (16,), 0, 0), _info(b"b", (16,), 0, 32)],
                           data=bytes(128)))
    report = scan_file(path)
    assert report.verdict == "unsafe" and report.findings[0].rule == "gguf-header"
    path.write_bytes(_file(infos=[_info(b"a", (8,), 0, 64), _info(b"b", (8,), 0, 0)],
                           data=bytes(128)))
    assert [n[0] for n in mg.parse(path).notes] == ["gguf-order"]
    assert modelport.open(path).weights["a"].storage.offset == mg.parse(path).data_start + 64


def test_array_length_2_63_does_not_hang(tmp_path: Path) -> None:
    # The gguf package's reader loops over 2**63 elements here; modelport answers at once.
    path = tmp_path / "hang.gguf"
    path.write_bytes(_file(kvs=[_s(b"k") + struct.pack("<IIQ", 9, 8, 2**63 - 1)]))
    with pytest.raises(LimitExceeded):
        mg.parse(path)
    with pytest.raises(MalformedHeader, match="remain"):
        mg.parse(path, modelport.Limits(gguf_array=2**64))


# -- robustness: mutated files ---------------------------------------------------------------------


def _small_gguf() -> bytes:
    values = np.arange(40, dtype=np.float32)
    q8 = np.zeros((2, 34), np.uint8)
    q8[:, :2] = np.array([0.5], "<f2").view(np.uint8)
    tmpl = b"{% for m in messages %}{{ m['content'] }}{% endfor %}"
    kvs = [_kv_u32(b"general.alignment", 32),
           _s(b"tokenizer.ggml.tokens") + struct.pack("<IIQ", 9, 8, 3) + _s(b"a") + _s(b"bc")
           + _s(b""),
           _s(b"tokenizer.chat_template") + struct.pack("<I", 8) + _s(tmpl),
           _s(b"f") + struct.pack("<IIQ", 9, 6, 2) + struct.pack("<2f", 1.5, -2)]
    return _file(kvs, [_info(b"w", (8, 5), 0, 0), _info(b"q", (64,), 8, 160)],
                 values.tobytes() + q8.tobytes())


def test_mutated_files_fail_in_one_line_or_read(tmp_path: Path) -> None:
    """Random byte edits: the reader reads or raises a ModelportError (one line), the scanner
    never reports an internal error, and nothing hangs."""
    hypothesis = pytest.importorskip("hypothesis")
    from hypothesis import strategies as st
    from testkit import deadline, edits, mutate

    from modelport.errors import ModelportError

    base = _small_gguf()
    assert modelport.open(_write_bytes(tmp_path / "base.gguf", base)).weights["q"].dtype.name \
        == "Q8_0"

    @hypothesis.settings(max_examples=150, deadline=None, database=None)
    @hypothesis.given(st.lists(edits(), min_size=1, max_size=4))
    def check(edit_list: list) -> None:
        path = _write_bytes(tmp_path / "m.gguf", mutate(base, edit_list))
        with deadline(20):
            try:
                mg.parse(path)
            except ModelportError as exc:
                assert "\n" not in str(exc)
            report = scan_file(path)
        assert not any("internal error" in e for e in report.errors), report.errors

    check()


def _write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path
