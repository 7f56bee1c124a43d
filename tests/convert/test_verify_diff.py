"""``verify`` and ``diff``, through the API and the command line (exit codes 0/1/2, --json)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from convert_helpers import need  # noqa: E402

from modelport.cli import main  # noqa: E402
from modelport.convert import convert, diff, verify  # noqa: E402


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    g = torch.Generator().manual_seed(2)
    a = {"w": torch.randn(8, 8, generator=g), "b": torch.randn(8, generator=g),
         "i": torch.arange(4)}
    b = dict(a, w=a["w"].clone(), extra=torch.ones(2))
    b["w"][3, 4] += 0.5
    del b["b"]
    torch.save(a, tmp_path / "a.pt")
    torch.save(b, tmp_path / "b.pt")
    return tmp_path / "a.pt", tmp_path / "b.pt"


def test_verify_across_formats(corpus: dict[str, Path], tmp_path: Path) -> None:
    src = need(corpus, "hf_gpt2_bin")
    dst = tmp_path / "gpt2.safetensors"
    convert(src, dst)
    result = verify(src, dst)
    assert result.same and result.compared == 29 and result.differences == []
    assert verify(need(corpus, "hf_gpt2_st"), need(corpus, "hf_gpt2_bin")).differences[0].kind == "only-b"


def test_verify_finds_differences(pair: tuple[Path, Path]) -> None:
    result = verify(*pair)
    kinds = {d.name: d.kind for d in result.differences}
    assert not result.same and kinds == {"w": "bytes", "b": "only-a", "extra": "only-b"}
    w = next(d for d in result.differences if d.name == "w")
    assert w.max_abs == pytest.approx(0.5, abs=1e-6)
    # within a tolerance the values of w agree
    assert "w" not in {d.name for d in verify(*pair, atol=0.6).differences}
    assert "w" in {d.name for d in verify(*pair, atol=0.1).differences}


def test_verify_a_cast(corpus: dict[str, Path], tmp_path: Path) -> None:
    src = need(corpus, "hf_bert_st")
    dst = tmp_path / "bert16.safetensors"
    convert(src, dst, dtype="F16")
    assert not verify(src, dst).same  # dtypes differ
    assert verify(src, dst, cast="F16").same  # bit for bit, once A is cast the same way
    assert verify(src, dst, atol=1e-2, rtol=1e-3).same
    assert not verify(src, dst, cast="BF16").same


def test_verify_cli(pair: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    a, b = map(str, pair)
    assert main(["verify", a, a]) == 0
    assert capsys.readouterr().out.startswith("same: 3 tensors")
    assert main(["verify", a, b, "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["same"] is False and {d["kind"] for d in data["differences"]} == {
        "bytes", "only-a", "only-b"}
    assert main(["verify", a, str(Path(a).parent / "missing.pt")]) == 2


def test_diff(pair: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    result = diff(*pair)
    assert [c.name for c in result.added] == ["extra"]
    assert [c.name for c in result.removed] == ["b"]
    assert [(c.name, c.a, c.b) for c in result.changed] == [("w", "F32[8, 8]", "F32[8, 8]")]
    assert result.changed[0].max_abs == pytest.approx(0.5, abs=1e-6) and result.unchanged == 1
    a, b = map(str, pair)
    assert main(["diff", a, b]) == 1
    out = capsys.readouterr().out
    assert "+ extra" in out and "- b" in out and "~ w" in out and "max |a - b| 0.5" in out
    assert main(["diff", a, b, "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["same"] is False and data["changed"][0]["name"] == "w"
    assert main(["diff", a, a]) == 0


def test_diff_shape_and_dtype(tmp_path: Path) -> None:
    torch.save({"x": torch.zeros(2, 3), "y": torch.ones(3)}, tmp_path / "a.pt")
    torch.save({"x": torch.zeros(3, 2), "y": torch.ones(3, dtype=torch.float16)}, tmp_path / "b.pt")
    changed = {c.name: c for c in diff(tmp_path / "a.pt", tmp_path / "b.pt").changed}
    assert (changed["x"].a, changed["x"].b, changed["x"].max_abs) == ("F32[2, 3]", "F32[3, 2]", None)
    assert (changed["y"].b, changed["y"].max_abs) == ("F16[3]", 0.0)
