"""Remote inputs read by ranges against a local server that counts requests and bytes."""

from __future__ import annotations

import json
import pickle
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from rangeserver import RangeServer, SparseFile

from modelport.cli import main

torch = pytest.importorskip("torch")
safetensors_numpy = pytest.importorskip("safetensors.numpy")


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    r = tmp_path / "www"
    r.mkdir()
    return r


@pytest.fixture()
def server(root: Path) -> Iterator[RangeServer]:
    with RangeServer(root) as srv:
        yield srv


def _json(capsys: pytest.CaptureFixture[str]) -> dict:
    return json.loads(capsys.readouterr().out)


def _gpt_state(layers: int, width: int) -> dict[str, torch.Tensor]:
    sd = {"wte.weight": torch.zeros(50257, width)}
    for i in range(layers):
        for name, shape in (("attn.c_attn.weight", (width, 3 * width)),
                            ("attn.c_attn.bias", (3 * width,)),
                            ("attn.c_proj.weight", (width, width)),
                            ("mlp.c_fc.weight", (width, 4 * width)),
                            ("mlp.c_proj.weight", (4 * width, width)),
                            ("ln_1.weight", (width,)), ("ln_2.weight", (width,))):
            sd[f"h.{i}.{name}"] = torch.zeros(shape)
    sd["lm_head.weight"] = sd["wte.weight"]  # tied, as GPT-2's
    return sd


def test_inspect_a_2gb_torch_zip_reads_under_1mb_in_3_requests(
        root: Path, server: RangeServer, capsys: pytest.CaptureFixture[str]) -> None:
    path = root / "big.pt"
    sparse = SparseFile(path)
    torch.save(_gpt_state(40, 1024), sparse)
    sparse.close()  # ~2.2 GB: GPT-2-medium widths, 40 layers
    assert path.stat().st_size > 2_000_000_000
    assert main(["inspect", server.url("files/big.pt"), "--json"]) == 0
    doc = _json(capsys)
    assert doc["format"] == "torch-zip" and len(doc["weights"]) == 40 * 7 + 2
    assert doc["remote"]["requests"] == server.requests
    assert server.body_bytes < 1_000_000 and doc["remote"]["bytes_fetched"] < 1_000_000
    assert server.requests <= 4  # the first, then at most 3 range requests
    assert doc["safety"]["verdict"] == "not-scanned"


def test_a_sharded_safetensors_repo_is_inspected_from_index_and_headers(
        root: Path, server: RangeServer, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    repo = root / "acme" / "tiny"
    repo.mkdir(parents=True)
    rng = np.random.default_rng(0)
    shards = {1: {"a.weight": rng.random((512, 512), dtype=np.float32)},
              2: {"b.weight": rng.random((512, 1024), dtype=np.float32)}}
    wmap = {}
    for i, tensors in shards.items():
        name = f"model-0000{i}-of-00002.safetensors"
        safetensors_numpy.save_file(tensors, str(repo / name))
        wmap.update({k: name for k in tensors})
    (repo / "model.safetensors.index.json").write_text(json.dumps({"weight_map": wmap}))
    (repo / "config.json").write_text(json.dumps({"model_type": "llama"}))
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.port}")
    assert main(["inspect", "hf://acme/tiny", "--json"]) == 0
    doc = _json(capsys)
    assert doc["format"] == "hf-repo"
    assert {w["name"]: w["shape"] for w in doc["weights"]} == {"a.weight": [512, 512],
                                                                "b.weight": [512, 1024]}
    total = sum(p.stat().st_size for p in repo.iterdir())
    assert doc["remote"]["bytes_fetched"] < total / 4  # headers, not tensors
    assert list(doc["remote"]["revisions"].values())[0] != "main"  # pinned to a commit
    assert "hf://acme/tiny" in doc["path"]
    # and the plain owner/repo form resolves the same way
    assert main(["inspect", "acme/tiny", "--json"]) == 0
    assert _json(capsys)["parameters"] == doc["parameters"]


def test_scan_of_a_remote_pickle_finds_what_the_local_scan_finds(
        root: Path, server: RangeServer, capsys: pytest.CaptureFixture[str]) -> None:
    payload = b"\x80\x04cposix\nsystem\n\x8c\x04true\x85R."  # os.system("true"), never run
    (root / "evil.bin").write_bytes(payload)
    assert main(["scan", str(root / "evil.bin"), "--json"]) == 1
    local = _json(capsys)["files"][0]["findings"]
    assert main(["scan", server.url("files/evil.bin"), "--json"]) == 1
    doc = _json(capsys)
    remote_findings = doc["files"][0]["findings"]
    assert [(f["rule"], f["subject"]) for f in remote_findings] == \
        [(f["rule"], f["subject"]) for f in local]
    assert doc["files"][0]["path"] == server.url("files/evil.bin")


def test_a_server_without_range_support_is_refused_in_one_line(
        root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (root / "w.safetensors").write_bytes(b"\0" * 3_000_000)
    with RangeServer(root, ranges=False) as srv:
        assert main(["inspect", srv.url("files/w.safetensors")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "ignores Range" in err and "download" in err
        assert srv.requests == 1


def test_redirects_keep_the_range_and_drop_the_token_across_hosts(
        root: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    repo = root / "acme" / "gated"
    repo.mkdir(parents=True)
    safetensors_numpy.save_file({"w": np.ones((4, 4), np.float32)}, str(repo / "model.safetensors"))
    with RangeServer(root) as cdn, RangeServer(root, token="s3cret", redirect_to=cdn) as hub:
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{hub.port}")
        monkeypatch.delenv("HF_TOKEN", raising=False)
        monkeypatch.setenv("HF_HOME", str(root / "nohome"))
        assert main(["inspect", "hf://acme/gated/model.safetensors"]) == 2
        assert "HF_TOKEN" in capsys.readouterr().err
        monkeypatch.setenv("HF_TOKEN", "s3cret")
        assert main(["inspect", "hf://acme/gated/model.safetensors", "--json"]) == 0
        assert _json(capsys)["weights"][0]["name"] == "w"
        assert all(e["range"] for e in cdn.log)  # Range survived the redirect
        assert not any(e["auth"] for e in cdn.log)  # the token never left the Hub's host


def test_a_file_that_changes_mid_read_is_an_error(root: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    tensors = {f"t{i}": np.full((64, 1024), i, np.float32) for i in range(8)}
    safetensors_numpy.save_file(tensors, str(root / "m.safetensors"))
    with RangeServer(root) as srv:
        srv.etag_bump_after = 1
        out = root / "out.npz"
        assert main(["convert", srv.url("files/m.safetensors"), str(out), "--quiet"]) == 2
        assert "changed on the server" in capsys.readouterr().err
        assert not out.exists()


def test_convert_from_a_url_equals_the_local_conversion(
        root: Path, server: RangeServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sd = {"enc.weight": torch.randn(33, 17), "enc.bias": torch.randn(17),
          "steps": torch.arange(5)}
    torch.save(sd, root / "m.pth")
    out = tmp_path / "m.safetensors"
    assert main(["convert", server.url("redirect/m.pth"), str(out), "--quiet"]) == 0
    got = safetensors_numpy.load_file(str(out))
    assert set(got) == set(sd) and all(np.array_equal(got[k], sd[k].numpy()) for k in sd)
    assert main(["verify", server.url("files/m.pth"), str(out)]) == 0
    capsys.readouterr()


def test_missing_remote_file_is_one_line(server: RangeServer,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", server.url("files/nope.bin")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "404" in err


def test_pickle_bytes_never_run(root: Path, server: RangeServer, tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    canary = tmp_path / "canary"

    class Boom:
        def __reduce__(self) -> tuple:
            return (open, (str(canary), "w"))

    (root / "boom.pkl").write_bytes(pickle.dumps({"w": Boom()}))
    main(["inspect", server.url("files/boom.pkl")])
    main(["scan", server.url("files/boom.pkl")])
    capsys.readouterr()
    assert not canary.exists()


def test_onnx_with_external_data_over_http(root: Path, server: RangeServer,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import helper, numpy_helper

    w = numpy_helper.from_array(np.arange(512 * 512, dtype=np.float32).reshape(512, 512), "w")
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 512])],
                          [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 512])],
                          initializer=[w])
    onnx.save(helper.make_model(g), str(root / "m.onnx"), save_as_external_data=True,
              location="m.onnx.data")
    assert main(["inspect", server.url("files/m.onnx"), "--json"]) == 0
    doc = _json(capsys)
    assert doc["weights"][0]["shape"] == [512, 512]
    assert doc["remote"]["bytes_fetched"] < (root / "m.onnx.data").stat().st_size
    out = root / "w.npz"
    assert main(["convert", server.url("files/m.onnx"), str(out), "--quiet"]) == 0
    assert np.array_equal(np.load(out)["w"], numpy_helper.to_array(w))


@pytest.mark.parametrize("address", ["hf://acme/tiny/../../../../../../tmp/victim.txt",
                                     "hf://acme/../x/model.safetensors",
                                     "hf://acme/tiny@../../x/model.safetensors",
                                     "hf://acme/tiny//model.safetensors"])
def test_hub_addresses_cannot_leave_the_mirror(root: Path, server: RangeServer, address: str,
                                               capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.port}")
    (root / "victim.txt").write_text("x")
    assert main(["inspect", address]) == 2
    assert "not a Hub address" in capsys.readouterr().err
    assert server.requests == 0  # refused before anything was fetched or written
