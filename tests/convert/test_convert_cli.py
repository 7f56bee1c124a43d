"""``modelport convert`` on the command line: summary and notes on stderr, progress on a TTY only."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest
from convert_helpers import need

from modelport.cli import main
from modelport.cli.convert import Progress
from modelport.convert import convert


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_summary_and_verify(corpus: dict[str, Path], tmp_path: Path,
                            capsys: pytest.CaptureFixture[str]) -> None:
    dst = tmp_path / "bert"
    assert main(["convert", str(need(corpus, "hf_bert_bin")), str(dst), "--verify",
                 "--max-shard-size", "40KB", "-j", "2"]) == 0
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"wrote {dst} (safetensors, " in captured.err and "39 tensors" in captured.err
    assert "verified: 39 tensors match" in captured.err


def test_quiet(corpus: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str],
               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stderr", _Tty())
    assert main(["convert", str(need(corpus, "training_zip")), str(tmp_path / "w.pt"), "-q"]) == 0
    assert sys.stderr.getvalue() == ""


def test_progress_only_on_a_terminal(corpus: dict[str, Path], tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    tty = _Tty()
    monkeypatch.setattr(sys, "stderr", tty)
    assert main(["convert", str(need(corpus, "hf_gpt2_st")), str(tmp_path / "a.safetensors")]) == 0
    assert "100.0%" in tty.getvalue() and "/s  ETA" in tty.getvalue()
    plain = io.StringIO()
    monkeypatch.setattr(sys, "stderr", plain)
    assert main(["convert", str(need(corpus, "hf_gpt2_st")), str(tmp_path / "b.safetensors")]) == 0
    assert "%" not in plain.getvalue() and "wrote" in plain.getvalue()


def test_the_verify_phase_shows_its_own_progress(corpus: dict[str, Path], tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    tty = _Tty()
    monkeypatch.setattr(sys, "stderr", tty)
    assert main(["convert", str(need(corpus, "hf_gpt2_st")), str(tmp_path / "a.safetensors"),
                 "--verify"]) == 0
    text = tty.getvalue()
    assert "writing " in text and "verifying " in text and "100.0%" in text
    assert text.index("writing ") < text.index("verifying ")


def test_progress_line() -> None:
    out = io.StringIO()
    p = Progress(out, interval=0)
    p(500_000_000, 2_000_000_000)
    p(2_000_000_000, 2_000_000_000)
    p.finish()
    text = out.getvalue()
    assert "500.00 MB / 2.00 GB   25.0%" in text and "100.0%" in text and text.endswith("\r\033[K")
    # every redraw clears the rest of the line: a shorter line leaves nothing of a longer one
    assert all(part.endswith("\033[K") for part in text.split("\r")[1:])


def test_parallel_shards_write_the_same_files(corpus: dict[str, Path], tmp_path: Path) -> None:
    for jobs in (1, 4):
        convert(need(corpus, "hf_gpt2_bin"), tmp_path / f"j{jobs}", max_shard_size="20KB",
                jobs=jobs)
    names = sorted(p.name for p in (tmp_path / "j1").iterdir())
    assert len(names) > 4 and names == sorted(p.name for p in (tmp_path / "j4").iterdir())
    for n in names:
        assert (tmp_path / "j1" / n).read_bytes() == (tmp_path / "j4" / n).read_bytes(), n


def test_usage_errors(corpus: dict[str, Path], tmp_path: Path,
                      capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["convert", "a", "b", "--dtype", "I8"])
    assert exc.value.code == 2
    capsys.readouterr()
    assert main(["convert", str(need(corpus, "npz")), str(tmp_path / "x.npz"), "--full"]) == 2
    assert "--full needs a format that holds plain values" in capsys.readouterr().err


@pytest.mark.parametrize(("name", "note"), [
    ("onnx", "the ONNX graph is not kept, only its initializers"),
    ("torchscript", "the TorchScript code is not kept"),
    ("lightning", "left out optimizer_states: 12 tensors, epoch=1, global_step=2"),
])
def test_notes_say_what_is_left_out(corpus: dict[str, Path], tmp_path: Path, name: str,
                                    note: str) -> None:
    result = convert(need(corpus, name), tmp_path / "w.safetensors")
    assert any(note in n for n in result.notes), result.notes


def test_package_is_the_api(corpus: dict[str, Path], tmp_path: Path) -> None:
    """``modelport.convert(src, dst, **options)`` works whatever was imported before."""
    import modelport.convert as package
    import modelport.convert.stream  # noqa: F401  (rebinds nothing)

    result = package(need(corpus, "layouts_zip"), tmp_path / "a.safetensors", dedupe=True)
    assert result.format == "safetensors" and package.verify(
        need(corpus, "layouts_zip"), tmp_path / "a.safetensors").same


@pytest.mark.parametrize(("dtype", "torch_name"), [("BF16", "bfloat16"),
                                                   ("F8_E4M3", "float8_e4m3fn")])
def test_hf_folder_cast_names_the_dtype_in_config_as_torch_does(tmp_path: Path, dtype: str,
                                                                torch_name: str) -> None:
    """config.json's torch_dtype follows --dtype, spelled as the dtypes table's torch name
    (an F8 cast of a folder ended in an internal KeyError before)."""
    import json

    import numpy as np
    from safetensors.numpy import save_file

    src = tmp_path / "repo"
    src.mkdir()
    save_file({"w": np.ones((4, 4), np.float32)}, str(src / "model.safetensors"))
    (src / "config.json").write_text(json.dumps({"model_type": "gpt2", "torch_dtype": "float32"}))
    assert main(["convert", str(src), str(tmp_path / "out"), "--dtype", dtype]) == 0
    cfg = json.loads((tmp_path / "out" / "config.json").read_text())
    assert cfg["torch_dtype"] == torch_name
