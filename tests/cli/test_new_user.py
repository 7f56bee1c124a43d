"""What a new user tripped over (issue [7/7] part 2), each through main([...]) or the API."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

import modelport
from modelport.cli import main

st = pytest.importorskip("safetensors.numpy")
SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "sample_checkpoint.pt"


@pytest.fixture()
def one(tmp_path: Path) -> Path:
    p = tmp_path / "one.safetensors"
    st.save_file({"w": np.ones((2, 2), np.float32)}, str(p))
    return p


def test_debug_before_or_after_the_command(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x10" + bytes(7) + b"{")
    assert main(["--debug", "inspect", str(bad)]) == 2
    before = capsys.readouterr().err
    assert main(["inspect", str(bad), "--debug"]) == 2
    after = capsys.readouterr().err
    assert "Traceback" in before and "Traceback" in after
    assert main(["inspect", str(bad)]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_argument_errors_name_the_command(one: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["inspect", str(one), "--bogus"])
    assert "modelport inspect: error: unrecognized arguments: --bogus" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == f"modelport {modelport.__version__}"


def test_select_that_matches_nothing_lists_the_subtrees(capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    assert main(["inspect", str(SAMPLE), "--select", "nope"]) == 2
    err = capsys.readouterr().err
    assert "model_state_dict (17)" in err and "optimizer_state_dict" in err


@pytest.mark.parametrize("suffix,words", [(".onnx", "modelport export"),
                                          (".foo", "cannot tell the output format")])
def test_unwritable_names_say_what_to_do(one: Path, tmp_path: Path, suffix: str, words: str,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["convert", str(one), str(tmp_path / f"out{suffix}")]) == 2
    err = capsys.readouterr().err
    assert words in err and "--to" in err and err.count("\n") == 1


def test_wording_one_tensor_and_wrote_line(one: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", str(one)]) == 0
    out = capsys.readouterr().out
    assert "in 1 tensor\n" in out and "pickle(s)" not in out
    dst = tmp_path / "o.npz"
    assert main(["convert", str(one), str(dst), "--verify"]) == 0
    err = capsys.readouterr().err
    assert f"wrote {dst} (npz, 1 tensor," in err and "verified: 1 tensor match" in err
    assert err.count("o.npz") == 1  # the name is not repeated


def test_api_checkpoint_repr_context_manager_and_missing_path(one: Path, tmp_path: Path) -> None:
    from modelport import tensors

    with modelport.open(one) as ck:
        assert repr(ck) == f"<Checkpoint safetensors weights {str(one)!r}: 1 weights, 4 parameters>"
        assert modelport.to_numpy(ck.weights["w"]).sum() == 4
        assert any(k[0] == str(one) for k in tensors._maps)
    assert not any(k[0] == str(one) for k in tensors._maps)  # closed with the block
    with pytest.raises(FileNotFoundError):
        modelport.open(tmp_path / "absent.safetensors")


def test_api_verified_names_the_final_path(one: Path, tmp_path: Path) -> None:
    dst = tmp_path / "final.pt"
    result = modelport.convert(one, dst, verify=True, dtype="half")
    assert result.verified.b == str(dst) and result.verified.same
    assert json.dumps(result.verified.b).count("tmp") == str(dst).count("tmp")


def test_inspect_several_paths_in_order(one: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "missing.pt"
    assert main(["inspect", str(one), str(missing), str(SAMPLE), "--json"]) == 2
    captured = capsys.readouterr()
    docs = json.loads(captured.out)
    assert [d["path"] for d in docs] == [str(one), str(missing), str(SAMPLE)]
    assert docs[0]["format"] == "safetensors" and "error" in docs[1]
    assert docs[2]["kind"] == "training-checkpoint"
    assert str(missing) in captured.err
    assert main(["inspect", str(one), str(SAMPLE)]) == 0
    out = capsys.readouterr().out
    assert out.index(str(one)) < out.index(str(SAMPLE))


def test_convert_many_files_with_jobs_in_input_order(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    srcs = []
    for i in range(4):
        p = tmp_path / f"m{i}.safetensors"
        st.save_file({"w": np.full((3, 3), i, np.float32)}, str(p))
        srcs.append(str(p))
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"junk")
    out = tmp_path / "out"
    code = main(["convert", *srcs[:2], str(bad), *srcs[2:], str(out) + "/", "--to", "npz",
                 "--jobs", "2"])
    assert code == 2  # one failed; the others were written
    err = capsys.readouterr().err.splitlines()
    assert [line.split()[1] for line in err if line.startswith("wrote")] == \
        [str(out / f"m{i}.npz") for i in range(4)]
    assert any("bad.safetensors" in line and "error" in line for line in err)
    for i in range(4):
        assert np.load(out / f"m{i}.npz")["w"][0, 0] == i
    assert not (out / "bad.npz").exists()


def test_namespace_args_shown_once_as_attributes(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    torch = pytest.importorskip("torch")
    import argparse

    path = tmp_path / "run.pt"
    torch.save({"model": {"w": torch.ones(2)}, "args": argparse.Namespace(lr=0.1, arch="r50"),
                "step": 100}, path)
    assert main(["inspect", str(path), "--no-verify"]) == 0
    out = capsys.readouterr().out
    assert "kind        training-checkpoint" in out
    assert out.count("args.lr = 0.1") == 1 and "__class__" not in out


def test_lightning_note_names_the_prefix(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    torch = pytest.importorskip("torch")
    path = tmp_path / "last.ckpt"
    torch.save({"pytorch-lightning_version": "2.4.0", "epoch": 3, "global_step": 10,
                "state_dict": {"model.enc.weight": torch.ones(2, 2)},
                "optimizer_states": [], "hyper_parameters": {"lr": 0.1}}, path)
    assert main(["inspect", str(path), "--no-verify"]) == 0
    out = capsys.readouterr().out
    assert "load_from_checkpoint" in out and "strip the prefix 'model.'" in out
    assert out.count("hyper_parameters.lr = 0.1") == 1


def test_onnx_external_data_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import helper, numpy_helper

    w = numpy_helper.from_array(np.ones((64, 64), np.float32), "w")
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 64])],
                          [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 64])],
                          initializer=[w])
    onnx.save(helper.make_model(g), str(tmp_path / "m.onnx"), save_as_external_data=True,
              location="weights.bin", size_threshold=0)
    assert main(["inspect", str(tmp_path / "m.onnx"), "--no-verify"]) == 0
    assert "data        weights.bin (external data" in capsys.readouterr().out


def test_scan_jobs_keeps_the_order_and_the_verdicts(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    payload = b"\x80\x04cposix\nsystem\n\x8c\x04true\x85R."  # never run
    names = []
    for i in range(6):
        p = tmp_path / f"f{i}.bin"
        if i % 3 == 1:
            p.write_bytes(payload)
        else:
            st.save_file({"w": np.full(2, i, np.float32)}, str(p))
        names.append(str(p))
    assert main(["scan", *names, "--json"]) == 1
    serial = json.loads(capsys.readouterr().out)
    assert main(["scan", *names, "--json", "--jobs", "3"]) == 1
    parallel = json.loads(capsys.readouterr().out)
    assert [f["path"] for f in parallel["files"]] == names
    assert [(f["path"], f["verdict"]) for f in parallel["files"]] == \
        [(f["path"], f["verdict"]) for f in serial["files"]]
    assert [f["verdict"] for f in parallel["files"]][1] == "unsafe"


def test_sarif_uris_are_relative_to_the_scan_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    sub = tmp_path / "models dir"
    sub.mkdir()
    (sub / "evil.pkl").write_bytes(b"\x80\x04cposix\nsystem\n\x8c\x04true\x85R.")
    monkeypatch.chdir(tmp_path)
    assert main(["scan", str(sub), "--sarif"]) == 1
    doc = json.loads(capsys.readouterr().out)
    run = doc["runs"][0]
    loc = run["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]
    assert loc == {"uri": "models%20dir/evil.pkl", "uriBaseId": "SRCROOT"}
    assert run["originalUriBaseIds"]["SRCROOT"]["uri"] == tmp_path.resolve().as_uri() + "/"


def test_scan_colours_only_on_a_terminal_and_never_with_no_color(
        one: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from modelport.cli import scan as scan_cli

    class Tty:
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("NO_COLOR", raising=False)
    assert scan_cli.use_colour(Tty()) and not scan_cli.use_colour(io.StringIO())
    monkeypatch.setenv("NO_COLOR", "1")
    assert not scan_cli.use_colour(Tty())
    assert main(["scan", str(one)]) == 0  # captured output is not a terminal: plain text
    assert "\033[" not in capsys.readouterr().out
    monkeypatch.delenv("NO_COLOR")
    from modelport.scan import scan_paths

    text = scan_cli.render(scan_paths([str(one)]), colour=True)
    assert text.startswith("\033[32mCLEAN")


def test_quiet_everywhere(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    w = rng.normal(size=(8, 6)).astype(np.float32)
    st.save_file({"layer.weight": w}, str(tmp_path / "base.safetensors"))
    st.save_file({"layer.weight": w + np.outer(rng.normal(size=8), rng.normal(size=6)).astype(
        np.float32)}, str(tmp_path / "tuned.safetensors"))
    assert main(["extract-lora", str(tmp_path / "base.safetensors"),
                 str(tmp_path / "tuned.safetensors"), str(tmp_path / "adapter"), "--rank", "1",
                 "-q"]) == 0
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""
    assert (tmp_path / "adapter").is_dir()
    for command in ("scan", "convert", "verify", "diff", "merge-lora", "extract-lora", "export",
                    "parity"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert "--quiet" in capsys.readouterr().out, command
