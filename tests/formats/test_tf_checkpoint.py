"""TensorFlow checkpoints read without TensorFlow: every tensor as ``tf.train.load_checkpoint``
read it when the fixtures were written (tests/fixtures/tf/reference.json), bit for bit."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import modelport
from modelport.cli import main
from modelport.errors import FileMissing, MalformedHeader, ModelportError, Truncated
from modelport.formats.tf_checkpoint.reader import slice_key
from modelport.scan import scan_file

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "tf"
REFERENCE = json.loads((FIXTURES / "reference.json").read_text())
TF_DTYPES = {"float32": "F32", "float64": "F64", "float16": "F16", "int64": "I64",
             "int32": "I32", "bool": "BOOL", "string": None}

# fixture -> (path modelport is given, reference entry)
CHECKPOINTS = {
    "tf1_saver": (FIXTURES / "tf1_saver" / "model.ckpt", REFERENCE["tf1_saver"]),
    "tf2_ckpt": (FIXTURES / "tf2_ckpt", REFERENCE["tf2_ckpt"]),
    "tf2_module_ckpt": (FIXTURES / "tf2_module_ckpt" / "weights.index",
                        REFERENCE["tf2_module_ckpt"]),
    "sm_keras": (FIXTURES / "sm_keras" / "variables", REFERENCE["sm_keras"]["variables"]),
    "sm_module": (FIXTURES / "sm_module" / "variables" / "variables",
                  REFERENCE["sm_module"]["variables"]),
}


def _by_key(ck: modelport.Checkpoint) -> dict[str, Any]:
    """Raw checkpoint key -> what modelport made of it (a TensorEntry or a list of strings)."""
    keys = ck.info["tf_checkpoint"]["keys"]
    out: dict[str, Any] = {}
    tensors = {**{n: t for n, t in ck.other_tensors.items()}, **ck.weights}
    for name, key in keys.items():
        if name.startswith("strings."):
            out[key] = ck.metadata["strings"][name[len("strings."):]]
        else:
            out[key] = tensors[name]
    for dup, kept in ck.info["tf_checkpoint"]["duplicates"].items():
        out[dup] = out[kept]
    return out


@pytest.mark.parametrize("fixture", sorted(CHECKPOINTS))
def test_every_tensor_equals_what_tensorflow_read(fixture: str) -> None:
    path, ref = CHECKPOINTS[fixture]
    ck = modelport.open(path)
    assert ck.format == "tf-checkpoint"
    got = _by_key(ck)
    expected = {k: v for k, v in ref["keys"].items() if k != "_CHECKPOINTABLE_OBJECT_GRAPH"}
    assert set(got) == set(expected)
    for key, rec in expected.items():
        value = got[key]
        if rec["dtype"] == "string":
            want = [base64.b64decode(s) for s in rec["strings"]]
            assert [v.encode() if isinstance(v, str) else v for v in value] == want, key
            continue
        assert value.dtype.name == TF_DTYPES[rec["dtype"]], key
        assert list(value.shape) == rec["shape"], key
        arr = modelport.to_numpy(value)
        assert hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest() == \
            rec["sha256"], key


@pytest.mark.parametrize("fixture", ["tf2_ckpt", "tf2_module_ckpt", "sm_keras"])
def test_tf2_variables_get_their_framework_names(fixture: str) -> None:
    path, ref = CHECKPOINTS[fixture]
    ck = modelport.open(path)
    keys = ck.info["tf_checkpoint"]["keys"]
    for name in ck.weights:
        assert ref["full_names"][keys[name]] == name
    if fixture == "tf2_module_ckpt":
        assert list(ck.weights) == ["dense/kernel", "dense/bias", "scale"]
        assert keys["dense/kernel"] == "net/w/.ATTRIBUTES/VARIABLE_VALUE"


def test_optimizer_state_and_counters_are_training_state() -> None:
    ck = modelport.open(FIXTURES / "tf2_ckpt")
    assert ck.kind == "training-checkpoint"
    assert sorted(ck.weights) == ["sequential/dense/bias", "sequential/dense/kernel",
                                  "sequential/dense_1/bias", "sequential/dense_1/kernel"]
    other = set(ck.other_tensors)
    assert {"step", "save_counter", "optimizer.adam/iteration",
            "optimizer.adam/sequential_dense_kernel_momentum"} <= other
    assert int(modelport.to_numpy(ck.other_tensors["step"])) == 7
    assert not any(n.startswith("optimizer.") for n in ck.weights)


def test_module_checkpoint_without_training_state_is_weights() -> None:
    ck = modelport.open(CHECKPOINTS["tf2_module_ckpt"][0])
    assert ck.kind == "weights" and not ck.other_tensors
    assert ck.metadata["strings"] == {"table": ["a", "bc"]}


def test_prefix_index_and_folder_name_the_same_checkpoint() -> None:
    folder = FIXTURES / "tf1_saver"
    # The `checkpoint` file names /home/someone/...: another machine's path, found here.
    assert "/home/someone/" in (folder / "checkpoint").read_text()
    forms = [folder, folder / "model.ckpt", folder / "model.ckpt.index"]
    names = [sorted(modelport.open(p).weights) for p in forms]
    assert names[0] == names[1] == names[2]
    assert modelport.sniff(folder / "model.ckpt") == "tf-checkpoint"


def test_partitioned_variable_is_one_tensor_read_in_place() -> None:
    ck = modelport.open(FIXTURES / "tf1_saver" / "model.ckpt")
    emb = ck.weights["emb"]
    assert emb.shape == (10, 4)
    parts = emb.storage.parts
    assert len(parts) == 3 and all(p.path and p.path.endswith(".data-00000-of-00001")
                                   for p in parts)
    assert [p.nbytes for p in parts] == [4 * 4 * 4, 3 * 4 * 4, 3 * 4 * 4]
    # Adam's slots of a partitioned variable are saved in the same slices
    assert ck.info["tf_checkpoint"]["sliced"] == ["emb", "emb/Adam", "emb/Adam_1"]
    assert ck.other_tensors["optimizer.emb/Adam"].storage.parts


def test_slice_keys_match_the_ones_tensorflow_wrote() -> None:
    from modelport.formats.tf_checkpoint.reader import read_bundle

    bundle = read_bundle(str(FIXTURES / "tf1_saver" / "model.ckpt.index"))
    for name in ("emb", "emb/Adam"):
        extents = bundle.entries[name].slices
        ours = {slice_key(name, e) for e in extents}
        assert ours == {k for k in bundle.slice_keys if k.startswith(b"\x00" + name.encode()
                                                                      + b"\x00\x01")}


@pytest.mark.parametrize("target", ["out.safetensors", "out.pt", "out.npz", "hf"])
def test_convert_is_bit_exact(tmp_path: Path, target: str,
                              capsys: pytest.CaptureFixture[str]) -> None:
    src = FIXTURES / "tf1_saver" / "model.ckpt"
    dst = tmp_path / target
    full = target in ("out.safetensors", "out.pt")  # npz holds no plain values
    assert main(["convert", str(src), str(dst), "--verify"] + ["--full"] * full) == 0
    out = capsys.readouterr()
    # weights only: global_step and the string tensor are named as left out
    # --full: 6 weights, 8 Adam tensors, global_step
    assert f"verified: {15 if full else 6} tensors match" in out.out + out.err
    if not full:
        assert "left out optimizer: 8 tensors, global_step" in out.err and "strings" in out.err
    if target == "out.safetensors":
        load_file = pytest.importorskip("safetensors.numpy").load_file

        ref = REFERENCE["tf1_saver"]["keys"]
        loaded = load_file(str(dst))
        assert hashlib.sha256(loaded["weights.emb"].tobytes()).hexdigest() == ref["emb"]["sha256"]
        # the string tensor is kept as a value in --full's tree metadata
        assert "w\\u00f6rld" in json.dumps(modelport.open(dst).info)
    if target == "out.pt":
        torch = pytest.importorskip("torch")
        loaded = torch.load(dst, weights_only=True)
        assert loaded["strings"]["vocab"] == ["hello", "", "wörld"]


def test_inspect_says_layout_and_what_restoring_needs(capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    assert main(["inspect", str(FIXTURES / "tf2_ckpt")]) == 0
    out = capsys.readouterr().out
    assert "tf-checkpoint" in out and "training-checkpoint" in out
    assert "[in, out]" in out and "needs TensorFlow" in out
    assert "step = 7, save_counter = 1, optimizer: 10 tensor(s)" in out
    assert main(["inspect", "--json", str(FIXTURES / "tf1_saver" / "model.ckpt")]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["format"] == "tf-checkpoint"
    assert data["metadata"]["strings"]["vocab"] == ["hello", "", "wörld"]


def test_benign_checkpoints_scan_clean() -> None:
    for path in (FIXTURES / "tf1_saver" / "model.ckpt", FIXTURES / "tf2_ckpt" / "ckpt-1.index"):
        report = scan_file(path)
        assert report.format == "tf-checkpoint" and report.verdict == "clean", report.errors


# -- malformed input: one line, exit 2 ---------------------------------------------------------


def _copy(tmp_path: Path) -> Path:
    dst = tmp_path / "ck"
    shutil.copytree(FIXTURES / "tf1_saver", dst)
    return dst


def _truncated_index(d: Path) -> None:
    p = d / "model.ckpt.index"
    p.write_bytes(p.read_bytes()[:-20])


def _bad_crc(d: Path) -> None:
    p = d / "model.ckpt.index"
    raw = bytearray(p.read_bytes())
    raw[40] ^= 0x01  # a byte inside the first data block
    p.write_bytes(bytes(raw))


def _shard_missing(d: Path) -> None:
    (d / "model.ckpt.data-00000-of-00001").unlink()


def _offsets_past_end(d: Path) -> None:
    p = d / "model.ckpt.data-00000-of-00001"
    p.write_bytes(p.read_bytes()[:100])


MALFORMED = {
    "truncated-index": (_truncated_index, (MalformedHeader, Truncated), "magic"),
    "bad-crc": (_bad_crc, (MalformedHeader,), "CRC"),
    "shard-missing": (_shard_missing, (FileMissing,), "missing"),
    "offsets-past-end": (_offsets_past_end, (Truncated,), "past the end"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_checkpoint_is_one_line_exit_2(tmp_path: Path, case: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    damage, errors, words = MALFORMED[case]
    d = _copy(tmp_path)
    damage(d)
    with pytest.raises(errors) as info:
        modelport.open(d / "model.ckpt")
    assert isinstance(info.value, ModelportError) and words in str(info.value)
    assert main(["inspect", str(d / "model.ckpt")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(d) in err
    report = scan_file(d / "model.ckpt.index")
    assert report.verdict == "error" and report.errors
    assert main(["scan", str(d / "model.ckpt")]) == 2
    capsys.readouterr()


def test_checksums_on_request(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = _copy(tmp_path)
    ck = modelport.open(d / "model.ckpt", checksums=True)
    # 13 entries with bytes (not emb and its two slot variables: they are slices) + 9 slices
    assert ck.info["tf_checkpoint"]["checksums_checked"] == 22
    data = d / "model.ckpt.data-00000-of-00001"
    raw = bytearray(data.read_bytes())
    raw[10] ^= 0x40  # inside a tensor's bytes: sizes still agree
    data.write_bytes(bytes(raw))
    modelport.open(d / "model.ckpt")  # without the check the bytes read as they are
    with pytest.raises(MalformedHeader, match="CRC-32C mismatch"):
        modelport.open(d / "model.ckpt", checksums=True)
    assert main(["inspect", "--checksums", str(d)]) == 2
    assert "CRC-32C mismatch" in capsys.readouterr().err


# -- hand-built bundles: what TensorFlow on this machine never writes ------------------------


def _write_bundle(folder: Path, tensors: dict[str, tuple[Any, ...]],
                  *, big_endian: bool = False, extra: list[tuple[bytes, bytes]] = (),
                  snappy: bool = False) -> Path:
    """``name -> (tf dtype, shape, stored bytes[, crc])`` as a one-shard bundle at folder/ck
    (the CRC-32C defaults to the one of the stored bytes)."""
    from tfkit import entry, header, table

    from modelport.containers.crc32c import crc32c, mask

    data, records = b"", [(b"", header(big_endian=big_endian))]
    for name, (dtype, dims, raw, *crc) in tensors.items():
        records.append((name.encode(), entry(dtype, dims, len(data), len(raw),
                                             mask(crc[0] if crc else crc32c(raw)))))
        data += raw
    records = sorted(records + list(extra))
    folder.mkdir(exist_ok=True)
    (folder / "ck.index").write_bytes(table(records, snappy=snappy))
    (folder / "ck.data-00000-of-00001").write_bytes(data)
    return folder / "ck"


def _strings(values: list[bytes], big_endian: bool) -> tuple[bytes, int]:
    """A string tensor's stored bytes and its entry CRC (tensor_bundle.cc WriteStringTensor:
    the lengths as uint32 in the writer's byte order, the length checksum, the bytes)."""
    from tfkit import varint

    from modelport.containers.crc32c import crc32c, mask

    order = "big" if big_endian else "little"
    lengths = b"".join(varint(len(v)) for v in values)
    crc = 0
    for v in values:
        crc = crc32c(len(v).to_bytes(4, order), crc)
    check = mask(crc).to_bytes(4, order)
    return lengths + check + b"".join(values), crc32c(check + b"".join(values), crc)


def test_big_endian_bundle_reads_the_same_values(tmp_path: Path) -> None:
    ref = modelport.open(FIXTURES / "tf1_saver" / "model.ckpt")
    codes = {"F32": 1, "F16": 19, "I64": 9, "BOOL": 10}
    tensors = {}
    arrays = {}
    for name, t in ref.weights.items():
        arr = modelport.to_numpy(t)
        arrays[name] = arr
        tensors[name] = (codes[t.dtype.name], t.shape, arr.byteswap().tobytes())
    tensors["vocab"] = (7, (3,), *_strings([b"hello", b"", b"w\xc3\xb6rld"], True))
    prefix = _write_bundle(tmp_path / "be", tensors, big_endian=True)
    ck = modelport.open(prefix, checksums=True)
    assert ck.info["tf_checkpoint"]["byte_order"] == "big"
    for name, arr in arrays.items():
        assert modelport.to_numpy(ck.weights[name]).tobytes() == arr.tobytes(), name
    assert ck.metadata["strings"]["vocab"] == ["hello", "", "wörld"]


def test_variable_sliced_along_a_later_axis_is_joined(tmp_path: Path) -> None:
    full = np.arange(24, dtype="<f4").reshape(4, 6)
    from tfkit import entry

    parts = {}
    slices = [[(0, 4), (0, 3)], [(0, -1), (3, 3)]]  # -1: the whole axis, as TF writes it
    extra = [(b"emb2", entry(1, (4, 6), 0, 0, slices=slices))]
    data_tensors = {}
    for i, sl in enumerate(slices):
        key = slice_key("emb2", tuple(sl))
        cols = slice(sl[1][0], sl[1][0] + sl[1][1])
        parts[key] = np.ascontiguousarray(full[:, cols]).tobytes()
        data_tensors[f"part{i}"] = key
    # slices are entries of their own under their OrderedCode keys
    from tfkit import entry as mk
    from tfkit import header, table

    from modelport.containers.crc32c import crc32c, mask

    data, records = b"", [(b"", header())] + extra
    for key, raw in parts.items():
        records.append((key, mk(1, (4, 3), len(data), len(raw), mask(crc32c(raw)))))
        data += raw
    d = tmp_path / "sl"
    d.mkdir()
    (d / "ck.index").write_bytes(table(sorted(records)))
    (d / "ck.data-00000-of-00001").write_bytes(data)
    ck = modelport.open(d / "ck", checksums=True)
    assert modelport.to_numpy(ck.weights["emb2"]).tobytes() == full.tobytes()
    # a slice that is not there: the checkpoint is incomplete
    (d / "ck.index").write_bytes(table(sorted(records[:-1])))
    with pytest.raises(MalformedHeader, match="has no entry"):
        modelport.open(d / "ck")


@pytest.mark.parametrize("case", ["size-mismatch", "negative-dim", "shard-out-of-range",
                                  "unordered-keys", "string-count-too-big"])
def test_hostile_entries_are_located_errors(tmp_path: Path, case: str) -> None:
    from tfkit import entry, header, table

    raw = np.arange(6, dtype="<f4").tobytes()
    good = entry(1, (2, 3), 0, len(raw))
    bad = {
        "size-mismatch": entry(1, (200, 3), 0, len(raw)),
        "negative-dim": entry(1, (-2, 3), 0, len(raw)),
        "shard-out-of-range": entry(1, (2, 3), 0, len(raw), shard=5),
        "unordered-keys": good,
        "string-count-too-big": entry(7, (1 << 40,), 0, len(raw)),
    }[case]
    records = [(b"", header()), (b"a", good), (b"b", bad)]
    if case == "unordered-keys":
        records = [(b"", header()), (b"b", good), (b"a", bad)]
    d = tmp_path / case
    d.mkdir()
    (d / "ck.index").write_bytes(table(records))
    (d / "ck.data-00000-of-00001").write_bytes(raw)
    with pytest.raises(ModelportError) as info:
        modelport.open(d / "ck")
    assert str(d / "ck.index") in str(info.value)
    assert scan_file(d / "ck.index").verdict == "error"


def test_full_conversion_keeps_optimizer_state_and_step(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    load_file = pytest.importorskip("safetensors.numpy").load_file

    dst = tmp_path / "full.safetensors"
    assert main(["convert", str(FIXTURES / "tf2_ckpt"), str(dst), "--full", "--verify"]) == 0
    capsys.readouterr()
    loaded = load_file(str(dst))
    ref = REFERENCE["tf2_ckpt"]["keys"]
    ck = modelport.open(FIXTURES / "tf2_ckpt")
    keys = ck.info["tf_checkpoint"]["keys"]
    assert int(loaded["step"]) == 7
    for name, arr in loaded.items():
        tf_name = name[len("weights."):] if name.startswith("weights.") else name
        assert hashlib.sha256(arr.tobytes()).hexdigest() == ref[keys[tf_name]]["sha256"], name
    assert {"optimizer.adam/sequential_dense_kernel_momentum", "save_counter"} <= set(loaded)
