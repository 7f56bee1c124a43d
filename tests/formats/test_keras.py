"""Keras files (.h5 whole models and save_weights, .keras, .weights.h5) and plain HDF5, read by
modelport's own HDF5 reader and compared bit for bit with what Keras and h5py read.

The fixtures in tests/fixtures/keras were written by Keras 3 / h5py (``make fixtures-keras``);
``reference.json`` holds, per tensor, the sha256 of the bytes Keras (``layer.weights`` after
``load_model``/``load_weights``) and h5py (every dataset) read from each file. Hostile files are
built here: configs by hand, HDF5 files with h5py and then corrupted byte by byte.
"""

from __future__ import annotations

import base64
import hashlib
import json
import marshal
import random
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest

import modelport
from modelport.cli import main
from modelport.errors import ModelportError
from modelport.scan import scan_file

HERE = Path(__file__).resolve().parents[1] / "fixtures" / "keras"
REF = json.loads((HERE / "reference.json").read_text())


def _sha(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def _check(entry: modelport.TensorEntry, want: dict) -> None:
    arr = modelport.to_numpy(entry)
    assert list(arr.shape) == want["shape"], entry.name
    assert np.dtype(want["dtype"]).newbyteorder("<") == arr.dtype.newbyteorder("<")
    assert _sha(arr) == want["sha256"], entry.name


# -- reading, against Keras and h5py ----------------------------------------------------------


def test_whole_model_h5() -> None:
    ck = modelport.open(HERE / "whole.h5")
    ref = REF["whole.h5"]
    assert (ck.format, ck.kind) == ("keras-h5", "full-model")
    assert set(ck.weights) == set(ref["weights"])
    # Layer order from layer_names, each layer's weights in weight_names order.
    assert list(dict.fromkeys(n.split("/")[1] for n in ck.weights)) == ref["layers"]
    for name, want in ref["weights"].items():
        _check(ck.weights[name], want)
    # The optimizer state is training state, named as optimizer_weights lists it.
    datasets = ref["datasets"]
    opt = {k.split("/", 1)[1]: v for k, v in datasets.items() if k.startswith("optimizer_weights/")}
    assert {n.split(".", 1)[1] for n in ck.other_tensors} == set(opt)
    for name, t in ck.other_tensors.items():
        _check(t, opt[name.split(".", 1)[1]])
    assert ck.metadata["keras_version"] == REF["keras_version"]
    assert ck.metadata["training_config"]["optimizer_config"]["class_name"] == "Adam"
    assert ck.info["keras"]["model"]["class_name"] == "Sequential"
    assert [la["name"] for la in ck.info["keras"]["model"]["layers"]] == ref["layers"]


def test_weights_only_h5() -> None:
    ck = modelport.open(HERE / "weights.h5")
    assert (ck.format, ck.kind) == ("keras-h5", "weights")
    assert set(ck.weights) == set(REF["weights.h5"]["weights"]) and not ck.other_tensors
    for name, want in REF["weights.h5"]["weights"].items():
        _check(ck.weights[name], want)


@pytest.mark.parametrize("name", ["model.keras", "model.weights.h5"])
def test_keras3_files(name: str) -> None:
    ck = modelport.open(HERE / name)
    ref = REF[name]
    assert ck.format == ("keras" if name.endswith(".keras") else "keras-h5")
    stored = [k for k in ref["datasets"] if k.startswith("layers/")]
    if name == "model.keras":  # listed in the config's layer order, not HDF5's name order
        folders = ["layers/dense", "layers/batch_normalization", "layers/dense_1"]
        stored.sort(key=lambda k: folders.index(k.rsplit("/", 2)[0]))
    assert list(ck.weights) == stored
    for wname, want in ref["weights"].items():  # as Keras's layers read them back
        _check(ck.weights[wname], want)
    opt = {k: v for k, v in ref["datasets"].items() if k.startswith("optimizer/")}
    assert {n.split(".", 1)[1] for n in ck.other_tensors} == set(opt)
    for tname, t in ck.other_tensors.items():
        _check(t, opt[tname.split(".", 1)[1]])
    if name == "model.keras":
        assert ck.kind == "full-model"
        layers = ck.info["keras"]["model"]["layers"]
        # Keras 3's weight folders mapped back to the config's layer names.
        assert {la["folder"]: la["name"] for la in layers} == {
            "layers/dense": "dense", "layers/batch_normalization": "bn",
            "layers/dense_1": "head"}
    else:
        assert ck.kind == "training-checkpoint"


@pytest.mark.parametrize("name", ["chunked.h5", "latest.h5"])
def test_plain_hdf5_every_dataset(name: str) -> None:
    """Chunked + gzip + shuffle, big-endian, float16, superblock v3 / v2 headers / v4 layouts."""
    ck = modelport.open(HERE / name)
    assert set(ck.weights) == set(REF[name]["datasets"])
    for tname, want in REF[name]["datasets"].items():
        _check(ck.weights[tname], want)


def test_contiguous_data_is_read_in_place() -> None:
    raw = (HERE / "whole.h5").read_bytes()
    ck = modelport.open(HERE / "whole.h5")
    for t in ck.tensors():
        s = t.storage
        assert s.data is None and s.path is not None
        assert raw[s.offset:s.offset + s.nbytes] == modelport.to_numpy(t).tobytes()
    member = zipfile.ZipFile(HERE / "model.keras").getinfo("model.weights.h5")
    assert member.compress_type == zipfile.ZIP_STORED
    for t in modelport.open(HERE / "model.keras").tensors():
        assert t.storage.data is None and t.storage.offset > member.header_offset


def test_inspect_says_layout_and_config(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", str(HERE / "model.keras")]) == 0
    out = capsys.readouterr().out
    assert "format      keras" in out and "kind        full-model" in out
    assert "Sequential 'tiny': 3 layers" in out and "features float32[?, 6]" in out
    assert "Dense kernel [in, out]" in out and "safety      clean" in out
    assert "layers/dense_1" in out and "head (Dense)" in out
    # What loading it takes is Keras's loader, never torch.load.
    assert "keras.saving.load_model" in out and "torch.load" not in out
    assert main(["inspect", str(HERE / "whole.h5"), "--json"]) == 0
    js = json.loads(capsys.readouterr().out)
    assert js["format"] == "keras-h5" and js["kind"] == "full-model"
    assert js["weights"][0] == {"name": "tiny/dense/kernel", "dtype": "F32", "shape": [6, 5],
                                "nbytes": 120}


@pytest.mark.parametrize("name", ["whole.h5", "weights.h5", "model.keras", "model.weights.h5",
                                  "chunked.h5", "latest.h5"])
def test_benign_fixtures_scan_clean(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    report = scan_file(HERE / name)
    assert report.verdict == "clean", report.to_json()
    assert main(["scan", str(HERE / name)]) == 0
    capsys.readouterr()


@pytest.mark.parametrize("name", ["whole.h5", "model.keras", "chunked.h5"])
def test_convert_bit_exact(name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    load_file = pytest.importorskip("safetensors.numpy").load_file

    src = modelport.open(HERE / name)
    out = tmp_path / "w.safetensors"
    assert main(["convert", str(HERE / name), str(out)]) == 0
    got = load_file(out)
    assert list(got) == sorted(src.weights) or set(got) == set(src.weights)
    for tname, t in src.weights.items():
        assert _sha(got[tname]) == _sha(modelport.to_numpy(t))
    if src.other_tensors:
        full = tmp_path / "full.safetensors"
        assert main(["convert", str(HERE / name), str(full), "--full"]) == 0
        got = load_file(full)
        assert len(got) == len(src.weights) + len(src.other_tensors)
        for t in src.other_tensors.values():
            assert any(_sha(v) == _sha(modelport.to_numpy(t)) for v in got.values())
    capsys.readouterr()


# -- hostile configs ------------------------------------------------------------------------------


def _keras_zip(path: Path, config: dict) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("config.json", json.dumps(config))
        z.writestr("metadata.json", json.dumps({"keras_version": "3.15.1"}))
        z.writestr("model.weights.h5", (HERE / "model.weights.h5").read_bytes())
    return path


def _seq(*layers: dict) -> dict:
    return {"module": "keras", "class_name": "Sequential",
            "config": {"name": "m", "layers": list(layers)}, "registered_name": None}


def _canary_lambda(canary: Path) -> str:
    code = compile(f"lambda t: open({str(canary)!r}, 'w').write('ran') or t", "<evil>", "eval")
    fn = eval(code)  # builds the function object only; it is never called
    return base64.b64encode(marshal.dumps(fn.__code__)).decode()


CASES = {
    "os.system": ({"module": "os", "class_name": "system", "config": {"name": "x"}},
                  "keras-gadget"),
    "subprocess function": ({"module": "keras.layers", "class_name": "Activation",
                             "config": {"name": "act", "activation": {
                                 "module": "subprocess", "class_name": "function",
                                 "config": "Popen", "registered_name": "function"}}},
                            "keras-gadget"),
    # CVE-2025-8747: keras.utils.get_file reached from a config, past safe_mode.
    "get_file": ({"module": "keras.utils", "class_name": "function", "config": "get_file",
                  "registered_name": "function"}, "keras-gadget"),
    # CVE-2025-1550: any module a config names is imported.
    "unknown module": ({"module": "evil_pkg.layers", "class_name": "Backdoor",
                        "config": {"name": "b"}}, "keras-import"),
    "bare keras path": ({"module": "keras", "class_name": "function",
                         "config": "src.saving.saving_lib.x"}, "keras-import"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_configs_naming_code_are_unsafe(case: str, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    layer, rule = CASES[case]
    path = _keras_zip(tmp_path / "m.keras", _seq(layer))
    report = scan_file(path)
    assert report.verdict == "unsafe" and rule in {f.rule for f in report.findings}, \
        report.to_json()
    assert main(["scan", str(path)]) == 1
    capsys.readouterr()


def test_lambda_bytecode_is_listed_never_run(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    canary = tmp_path / "canary"
    lam = {"module": "keras.layers", "class_name": "Lambda", "config": {
        "name": "evil", "function": {"class_name": "__lambda__", "config": {
            "code": _canary_lambda(canary), "defaults": None, "closure": None}}}}
    path = _keras_zip(tmp_path / "m.keras", _seq(lam))
    report = scan_file(path)
    f = next(f for f in report.findings if f.rule == "keras-lambda")
    assert f.severity.name == "CRITICAL" and "open" in f.message and str(canary) in f.message
    assert "LOAD_GLOBAL open" in f.why  # the disassembly
    assert main(["scan", str(path)]) == 1
    assert main(["inspect", str(path)]) == 0
    assert "safe_mode=False" in capsys.readouterr().out
    assert main(["convert", str(path), str(tmp_path / "o.safetensors"), "--allow-unsafe"]) == 0
    assert not canary.exists()


def test_keras_written_lambda_fixture(capsys: pytest.CaptureFixture[str]) -> None:
    report = scan_file(HERE / "lambda.keras")
    f = next(f for f in report.findings if f.rule == "keras-lambda")
    assert f.severity.name == "HIGH" and "double" in f.message and "2.0" in f.message
    assert "BINARY_OP" in f.why
    assert main(["scan", str(HERE / "lambda.keras")]) == 1
    capsys.readouterr()


def test_h5_model_config_with_lambda_and_os(tmp_path: Path) -> None:
    """A tf.keras-style .h5: the Lambda is [code, defaults, closure] with function_type lambda."""
    h5py = pytest.importorskip("h5py")
    canary = tmp_path / "canary"
    config = {"class_name": "Functional", "config": {"name": "f", "layers": [
        {"class_name": "Lambda", "name": "lam", "config": {
            "name": "lam", "function": [_canary_lambda(canary), None, None],
            "function_type": "lambda", "module": "__main__"}},
        {"class_name": "Lambda", "name": "raw", "config": {
            "name": "raw", "function": "system", "function_type": "raw", "module": "os"}}]}}
    path = tmp_path / "m.h5"
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = json.dumps(config).encode()
        f.attrs["keras_version"] = b"2.15.0"
        f.create_group("model_weights").attrs["layer_names"] = np.array([], dtype="S1")
    report = scan_file(path)
    rules = {(f.rule, f.subject) for f in report.findings}
    assert ("keras-lambda", "lam") in rules and ("keras-gadget", "os.system") in rules
    assert report.verdict == "unsafe" and not canary.exists()
    assert modelport.open(path).kind == "full-model"


def test_torch_module_wrapper_blob_is_scanned_as_a_pickle(tmp_path: Path) -> None:
    blob = b"cposix\nsystem\n(S'id'\ntR."  # protocol 0: posix.system('id')
    layer = {"module": "keras.layers", "class_name": "TorchModuleWrapper",
             "config": {"name": "torch", "module": base64.b64encode(blob).decode()}}
    report = scan_file(_keras_zip(tmp_path / "m.keras", _seq(layer)))
    assert report.verdict == "unsafe"
    hit = [f for f in report.findings if f.subject and "system" in f.subject]
    assert hit and "TorchModuleWrapper" in (hit[0].member or "")


def test_urls_paths_and_custom_objects_are_noted(tmp_path: Path) -> None:
    layer = {"class_name": "MyLayer", "config": {"name": "c", "vocab": "/etc/passwd",
                                                 "origin": "https://example.com/x.bin"},
             "registered_name": "mypkg>MyLayer"}
    path = _keras_zip(tmp_path / "m.keras", _seq(layer))
    report = scan_file(path)
    rules = {f.rule for f in report.findings}
    assert {"keras-custom-object", "keras-config-url", "keras-config-path"} <= rules
    assert report.verdict == "clean"  # LOW: odd, not code execution ...
    assert scan_file(path, strict=True).verdict == "unsafe"  # ... but --strict says so


# -- malformed HDF5 ------------------------------------------------------------------------------


def _one_line_2(path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["inspect", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(path) in err, err
    return err


def test_root_address_past_the_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = bytearray((HERE / "whole.h5").read_bytes())
    struct.pack_into("<Q", data, 64, 1 << 40)  # v0 superblock: root entry's object header
    (tmp_path / "m.h5").write_bytes(bytes(data))
    assert "byte" in _one_line_2(tmp_path / "m.h5", capsys)
    assert scan_file(tmp_path / "m.h5").verdict == "error"


def test_btree_that_points_at_itself(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = bytearray((HERE / "whole.h5").read_bytes())
    at = data.index(b"TREE")
    entries = struct.unpack_from("<H", data, at + 6)[0]
    assert entries
    struct.pack_into("<B", data, at + 5, 1)  # level 1: its children are B-tree nodes
    struct.pack_into("<Q", data, at + 24 + 8, at)  # ... and the first child is itself
    (tmp_path / "m.h5").write_bytes(bytes(data))
    _one_line_2(tmp_path / "m.h5", capsys)


def test_dataset_address_past_the_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ck = modelport.open(HERE / "weights.h5")
    first = next(iter(ck.weights.values()))
    data = bytearray((HERE / "weights.h5").read_bytes())
    where = data.index(struct.pack("<Q", first.storage.offset))
    struct.pack_into("<Q", data, where, len(data) - 4)
    (tmp_path / "m.h5").write_bytes(bytes(data))
    assert "needs" in _one_line_2(tmp_path / "m.h5", capsys)


def test_huge_declared_sizes_allocate_nothing(tmp_path: Path) -> None:
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "m.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=np.arange(64, dtype="<f4").reshape(8, 8), chunks=(4, 4),
                         compression="gzip")
    data = bytearray(path.read_bytes())
    # The dataspace's dimensions (u64 8, 8) become 2**40 x 8: a decode would need 32 TiB.
    dims = data.index(struct.pack("<QQ", 8, 8))
    struct.pack_into("<Q", data, dims, 1 << 40)
    path.write_bytes(bytes(data))
    with pytest.raises(ModelportError):
        for t in modelport.open(path).tensors():
            modelport.to_numpy(t)


@pytest.mark.parametrize("name", ["whole.h5", "model.keras", "latest.h5"])
def test_truncated_and_flipped_fail_cleanly(name: str, tmp_path: Path) -> None:
    from test_robustness import exercise

    data = (HERE / name).read_bytes()
    rng = random.Random(name)
    cases = [data[:cut] for cut in range(0, len(data), max(1, len(data) // 40))]
    for _ in range(60):
        buf = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            buf[rng.randrange(min(len(buf), 8192))] = rng.randrange(256)
        cases.append(bytes(buf))
    for i, blob in enumerate(cases):
        p = tmp_path / f"c{i}{Path(name).suffix}"
        p.write_bytes(blob)
        exercise(p)
        report = scan_file(p)
        assert report.verdict in ("clean", "error", "unsafe")


def test_deflated_keras_member_is_read_in_memory(tmp_path: Path) -> None:
    path = tmp_path / "m.keras"
    with zipfile.ZipFile(HERE / "model.keras") as src, \
            zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info.filename))
    ck = modelport.open(path)
    for wname, want in REF["model.keras"]["weights"].items():
        _check(ck.weights[wname], want)
    assert all(t.storage.data is not None for t in ck.weights.values())


def test_groups_linked_twice_are_read_once(tmp_path: Path) -> None:
    """Every group links twice to the next: 2**40 paths, 41 objects, each entered once."""
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "m.h5"
    with h5py.File(path, "w") as f:
        groups = [f.create_group(f"g{i}") for i in range(41)]
        for a, b in zip(groups, groups[1:]):
            a["left"] = b
            a["right"] = b
        groups[-1].create_dataset("w", data=np.arange(3, dtype="<f4"))
        groups[-1]["self"] = f["g0"]  # and a cycle back to the top
    from testkit import deadline

    with deadline(20):
        ck = modelport.open(path)
    assert len(ck.weights) == 1 and modelport.to_numpy(next(iter(ck.weights.values()))).tolist() \
        == [0, 1, 2]


def test_tf_keras_names_and_split_attributes(tmp_path: Path) -> None:
    """tf.keras 2 names variables by op output (``dense/kernel:0``) and splits attributes over
    64 KB into ``layer_names0``, ``layer_names1`` ... (legacy_h5_format); both are read as Keras
    reads them: layer order from the joined list, names without the ``:0``."""
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "w.h5"
    rng = np.random.default_rng(1)
    values = {}
    with h5py.File(path, "w") as f:
        f.attrs["layer_names0"] = np.array([b"zeta"])
        f.attrs["layer_names1"] = np.array([b"alpha"])
        f.attrs["keras_version"] = b"2.15.0"
        for layer in ("alpha", "zeta"):
            g = f.create_group(layer)
            names = [f"{layer}/kernel:0".encode(), f"{layer}/bias:0".encode()]
            g.attrs["weight_names"] = np.array(names)
            for n in names:
                values[n.decode()[:-2]] = rng.standard_normal(3).astype(">f4")
                g.create_dataset(n.decode(), data=values[n.decode()[:-2]])
    ck = modelport.open(path)
    assert list(ck.weights) == ["zeta/kernel", "zeta/bias", "alpha/kernel", "alpha/bias"]
    for name, t in ck.weights.items():  # big-endian on disk: decoded, values kept
        assert modelport.to_numpy(t).tolist() == values[name].tolist()
    assert ck.kind == "weights" and ck.metadata["keras_version"] == "2.15.0"


@pytest.mark.parametrize("dst", ["w.pt", "w.npz", "hf"])
def test_convert_targets_read_by_their_consumers(dst: str, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    src = HERE / "model.keras"
    out = tmp_path / dst
    assert main(["convert", str(src), str(out)]) == 0
    if dst == "w.pt":
        torch = pytest.importorskip("torch")
        got = {k: v.numpy() for k, v in torch.load(out, weights_only=True).items()}
    elif dst == "w.npz":
        with np.load(out) as z:
            got = {k: z[k] for k in z.files}
    else:
        load_file = pytest.importorskip("safetensors.numpy").load_file

        got = load_file(out / "model.safetensors")
    ck = modelport.open(src)
    assert set(got) == set(ck.weights)
    for name, t in ck.weights.items():  # layouts as stored: a Dense kernel stays [in, out]
        assert got[name].shape == t.shape and _sha(got[name]) == _sha(modelport.to_numpy(t))
    capsys.readouterr()


def test_v2_metadata_checksums_are_verified(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """libhdf5 refuses a v2 object header or v3 superblock whose lookup3 checksum is wrong;
    so does modelport (both read the same files)."""
    from modelport.containers.hdf5 import lookup3

    assert lookup3(b"") == 0xDEADBEEF  # lookup3.c's published test values
    assert lookup3(b"Four score and seven years ago") == 0x17770551
    data = (HERE / "latest.h5").read_bytes()
    for at, what in ((data.index(b"OHDR") + 8, "object header"), (20, "superblock")):
        bad = bytearray(data)
        bad[at] ^= 0x01
        (tmp_path / "m.h5").write_bytes(bytes(bad))
        assert f"{what} checksum" in _one_line_2(tmp_path / "m.h5", capsys)
