"""`modelport export` and `parity`: ONNX from bare weights, checked against the original model.

Each family's model is built with a random config, its state_dict saved as people save it, and
exported by modelport without the class. The ONNX file is then run by onnxruntime on fresh
inputs and compared with the ORIGINAL PyTorch model (not modelport's rebuilt one): equal within
1e-4, which holds only if the architecture, config and every weight were found.
"""

from __future__ import annotations

import json
import os
import zlib
from pathlib import Path

import numpy as np
import pytest
import zoo

from modelport.cli import main

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
safetensors_torch = pytest.importorskip("safetensors.torch")

HERE = Path(__file__).parent


def _inputs(family: str, cfg, batch: int = 1, seq: int = 6) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(42)
    if family in ("vit", "convnext"):
        return {"pixel_values": rng.standard_normal(  # image axes are fixed in the export
            (batch, cfg.num_channels, cfg.image_size, cfg.image_size)).astype(np.float32)}
    ids = rng.integers(0, cfg.vocab_size, (batch, seq)).astype(np.int64)
    if family == "whisper":
        return {"input_features": rng.standard_normal(
                    (batch, cfg.num_mel_bins, 2 * cfg.max_source_positions)).astype(np.float32),
                "decoder_input_ids": ids, "decoder_attention_mask": np.ones_like(ids)}
    out = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
    if family in ("bert", "roberta"):
        out["token_type_ids"] = np.zeros_like(ids)
    if family == "t5":
        out["decoder_input_ids"] = ids[:, ::-1].copy()
    return out


def _original(model, family: str, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
    kwargs = {k: torch.from_numpy(v) for k, v in feed.items()}
    if family not in ("vit", "bert", "roberta", "convnext"):
        kwargs["use_cache"] = False
    with torch.no_grad():
        out = model(**kwargs, return_dict=True)
    return [v.numpy() for v in out.values() if isinstance(v, torch.Tensor)]


def _ort(path: Path, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = {i.name for i in session.get_inputs()}
    return session.run(None, {k: v for k, v in feed.items() if k in names})


# family, how the weights are saved, extra export flags
CASES = [
    ("bert", "pt:bare", []),
    ("roberta", "pt:module.", []),
    ("gpt2", "pt:state_dict", ["--external-data", "always"]),
    ("llama", "pt:_orig_mod.", ["--opset", "18"]),
    ("qwen2", "safetensors", []),
    ("vit", "pt:module._orig_mod.", []),
    # beyond the six: an encoder-decoder for audio and for text, a conv backbone
    ("whisper", "pt:bare", []),
    ("t5", "pt:bare", []),
    ("convnext", "pt:bare", []),
]


@pytest.mark.parametrize("family, saved, flags", CASES, ids=[c[0] for c in CASES])
def test_export_without_the_class(tmp_path, capsys, family, saved, flags):
    model, cfg = zoo.build(family, seed=zlib.crc32(family.encode()) % 997)
    state = model.state_dict()
    if saved == "safetensors":
        src = tmp_path / "model.safetensors"
        # save_pretrained's way: the tied head is left out (recognition derives the tie)
        safetensors_torch.save_file({k: v.contiguous() for k, v in state.items()
                                     if k != "lm_head.weight"}, src)
    else:
        src = tmp_path / "model.pt"
        torch.save(zoo.wrap(state, saved.split(":", 1)[1]), src)
    dst = tmp_path / "model.onnx"
    assert main(["export", str(src), str(dst), "--json", *flags]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["class"] == type(model).__name__ and result["source"] == "recognised"
    assert result["parity"]["ok"] and result["parity"]["outputs"]
    assert all(o["max_abs"] < 1e-4 for o in result["parity"]["outputs"])
    if "--external-data" in flags:
        assert result["external_data"] == ["model.onnx.data"]
        assert (tmp_path / "model.onnx.data").stat().st_size > dst.stat().st_size
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [src.name, dst.name, *result["external_data"]])  # no temporary left behind
    # onnxruntime on inputs of another size than the trace, against the original model
    feed = _inputs(family, cfg, batch=1, seq=6)
    want, got = _original(model, family, feed), _ort(dst, feed)
    assert len(want) == len(got)
    for w, g in zip(want, got):
        assert w.shape == g.shape
        np.testing.assert_allclose(g, w, atol=1e-4, rtol=0)
    # parity alone, on the pair
    assert main(["parity", str(dst), str(src)]) == 0
    assert "ok" in capsys.readouterr().out


def test_parity_catches_other_weights(tmp_path, capsys):
    model, _ = zoo.build("gpt2", 11)
    other, _ = zoo.build("gpt2", 11)
    with torch.no_grad():
        w = other.transformer.h[0].mlp.c_fc.weight  # same shapes, different values
        w.add_(torch.randn_like(w) * 0.1)
    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    torch.save(model.state_dict(), a)
    torch.save(other.state_dict(), b)
    dst = tmp_path / "a.onnx"
    assert main(["export", str(a), str(dst), "--no-check"]) == 0
    capsys.readouterr()
    assert main(["parity", str(dst), str(b)]) == 1
    assert "FAILED" in capsys.readouterr().out
    # export's own check fails the same way when the tolerance cannot be met
    assert main(["export", str(a), str(tmp_path / "c.onnx"), "--atol", "0", "--rtol", "0",
                 "--json"]) in (0, 1)


def test_unknown_architecture_is_refused(tmp_path, capsys):
    model, _ = zoo.build("llama", 12)
    state = model.state_dict()
    state["model.layers.0.mlp.up_projection.weight"] = state.pop("model.layers.0.mlp.up_proj.weight")
    src = tmp_path / "odd.pt"
    torch.save(state, src)
    assert main(["export", str(src), str(tmp_path / "odd.onnx")]) == 2
    err = capsys.readouterr().err
    assert "not recognised" in err and "nearest LlamaForCausalLM" in err
    assert "up_proj" in err and "--model" in err
    assert not (tmp_path / "odd.onnx").exists()


def _tiny():
    import user_nets

    torch.manual_seed(3)
    net = user_nets.TinyNet(width=12, classes=4).eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics
        net.norm.running_mean.uniform_(-1, 1)
        net.norm.running_var.uniform_(0.5, 2)
    return net


def _same_as(net, dst: Path) -> None:
    x = np.random.default_rng(5).standard_normal((3, 3, 9, 9)).astype(np.float32)
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    (got,) = _ort(dst, {"x": x})
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


def test_user_class(tmp_path, capsys):
    net = _tiny()
    src = tmp_path / "weights.pt"
    torch.save({"module." + k: v for k, v in net.state_dict().items()}, src)
    dst = tmp_path / "net.onnx"
    assert main(["export", str(src), str(dst), "--model", "user_nets:TinyNet",
                 "--init", '{"width": 12, "classes": 4}', "--input", "x:2x3x9x9:float32"]) == 0
    assert "ok (atol" in capsys.readouterr().out
    _same_as(net, dst)
    assert main(["export", str(src), str(tmp_path / "x.onnx"), "--model", "user_nets:TinyNet",
                 "--input", "x:2x3x9x9:float32"]) == 2  # default width 16: shapes differ
    assert "differ" in capsys.readouterr().err


def test_torchscript(tmp_path, capsys, monkeypatch):
    net = _tiny()
    src = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.trace(net, torch.randn(1, 3, 9, 9)), src)
    dst = tmp_path / "scripted.onnx"
    assert main(["export", str(src), str(dst), "--input", "x:2x3x9x9:float32", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["source"] == "torchscript" and result["parity"]["ok"]
    _same_as(net, dst)


def test_trust_code_names_imports_first(tmp_path, capsys, monkeypatch):
    net = _tiny()
    src = tmp_path / "whole.pt"
    torch.save(net, src)
    dst = tmp_path / "whole.onnx"
    assert main(["export", str(src), str(dst), "--input", "x:2x3x9x9:float32"]) == 2
    err = capsys.readouterr().err
    assert "whole pickled model" in err and "user_nets" in err and "--trust-code" in err
    assert not dst.exists()
    # the child process imports user_nets from where the test keeps it
    paths = [str(HERE), os.environ.get("PYTHONPATH", ""), str(HERE.parents[1] / "src")]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in paths if p))
    assert main(["export", str(src), str(dst), "--input", "x:2x3x9x9:float32",
                 "--trust-code"]) == 0
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    first = next(i for i, line in enumerate(lines) if "imports these modules" in line)
    assert "user_nets" in lines[first] and "torch" in lines[first]
    assert first < next(i for i, line in enumerate(lines) if "building" in line)
    _same_as(net, dst)
