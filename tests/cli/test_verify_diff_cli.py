"""verify and diff for a new user (issue #13): --cast suggested after a --dtype conversion,
dtype and shape as separate --json fields, a progress line on a terminal, --quiet. numpy only:
the sources are committed fixtures."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from modelport.cli import main

FILES = Path(__file__).parents[1] / "fixtures" / "files"
SMALL = FILES / "small.safetensors"  # F32, BF16, I64, BOOL, F8_E4M3 tensors


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def bf16(tmp_path: Path) -> Path:
    out = tmp_path / "small-bf16.safetensors"
    assert main(["convert", str(SMALL), str(out), "--dtype", "bf16", "-q"]) == 0
    return out


def test_verify_after_a_dtype_conversion_suggests_cast(bf16: Path, capsys) -> None:
    capsys.readouterr()
    assert main(["verify", str(SMALL), str(bf16)]) == 1
    out = capsys.readouterr().out
    assert "dtype" in out and "embed.weight" in out
    assert "hint: B holds BF16 where A holds F32" in out and "--cast BF16" in out
    assert main(["verify", str(SMALL), str(bf16), "--cast", "BF16"]) == 0
    assert capsys.readouterr().out.startswith("same: 5 tensors")
    assert main(["verify", str(SMALL), str(bf16), "--json"]) == 1
    assert "--cast BF16" in json.loads(capsys.readouterr().out)["hint"]


def test_no_cast_hint_for_unrelated_differences(capsys) -> None:
    assert main(["verify", str(FILES / "arrays.npz"), str(SMALL)]) == 1
    assert "hint:" not in capsys.readouterr().out


def test_diff_json_gives_dtype_and_shape_as_fields(bf16: Path, capsys) -> None:
    capsys.readouterr()
    assert main(["diff", str(SMALL), str(bf16), "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    change = next(c for c in data["changed"] if c["name"] == "embed.weight")
    assert (change["dtype_a"], change["shape_a"]) == ("F32", [6, 4])
    assert (change["dtype_b"], change["shape_b"]) == ("BF16", [6, 4])
    assert change["a"] == "F32[6, 4]" and change["kind"] == "changed"


@pytest.mark.parametrize("command", ["verify", "diff"])
def test_progress_on_a_terminal_and_quiet(command: str, bf16: Path, capsys,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    capsys.readouterr()
    term = _Terminal()
    monkeypatch.setattr("sys.stderr", term)
    assert main([command, str(SMALL), str(SMALL)]) == 0
    drawn = term.getvalue()
    assert "100.0%" in drawn and drawn.endswith("\r\x1b[K")  # drawn, then cleared
    assert capsys.readouterr().out.strip()  # the summary
    term.truncate(0)
    term.seek(0)
    assert main([command, str(SMALL), str(SMALL), "--quiet"]) == 0
    assert term.getvalue() == "" and capsys.readouterr().out == ""
    assert main([command, str(SMALL), str(bf16), "-q"]) == 1
    out = capsys.readouterr().out
    assert "embed.weight" in out and "unchanged" not in out and "differ:" not in out
