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


# -- plain values (--full): "same" means same -------------------------------------------------


def _training(epoch: int = 3, loss: float = 0.25, lr: float = 1e-3) -> dict:
    """A training checkpoint with values safetensors cannot hold natively (tuples, int keys,
    a torch dtype, bytes, a set, complex, NaN, -0.0, None)."""
    g = torch.Generator().manual_seed(5)
    w = torch.randn(4, 3, generator=g)
    return {
        "model_state_dict": {"w": w, "b": torch.zeros(4)},
        "optimizer_state_dict": {
            "state": {0: {"step": torch.tensor(7.0), "exp_avg": torch.ones(4, 3)}},
            "param_groups": [{"lr": lr, "betas": (0.9, 0.999), "eps": 1e-8, "params": [0, 1],
                              "amsgrad": False, "foreach": None}]},
        "epoch": epoch, "loss": loss,
        "hparams": {"dtype": torch.bfloat16, "tag": b"\x00\xff", "layers": {1, 2},
                    "z": 1 + 2j, "nan": float("nan"), "neg0": -0.0, "name": "tiny"},
    }


def test_verify_full_reports_changed_values(tmp_path: Path, capsys) -> None:
    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    torch.save(_training(), a)
    torch.save(_training(epoch=4, loss=0.125, lr=5e-4), b)
    assert verify(a, b).same  # the weights are the same: without --full only they count
    result = verify(a, b, full=True)
    assert not result.same and result.compared == 4
    got = {d.name: (d.kind, d.a, d.b) for d in result.differences}
    assert got == {"epoch": ("value", 3, 4), "loss": ("value", 0.25, 0.125),
                   "optimizer_state_dict.param_groups.0.lr": ("value", 1e-3, 5e-4)}
    assert main(["verify", str(a), str(b), "--full"]) == 1
    out = capsys.readouterr().out
    assert "value optimizer_state_dict.param_groups.0.lr: 0.001 -> 0.0005" in out
    assert "epoch: 3 -> 4" in out and out.rstrip().endswith("values compared")
    assert main(["verify", str(a), str(b), "--full", "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    epoch = next(d for d in data["differences"] if d["name"] == "epoch")
    assert (epoch["kind"], epoch["a"], epoch["b"]) == ("value", 3, 4)
    assert data["values_compared"] == result.values_compared > 15


def test_diff_full_reports_changed_values(tmp_path: Path, capsys) -> None:
    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    torch.save(_training(), a)
    changed = _training(epoch=4)
    changed["scheduler"] = {"last_epoch": 4}
    del changed["hparams"]["name"]
    torch.save(changed, b)
    assert diff(a, b).same
    result = diff(a, b, full=True)
    assert sorted((v.path, v.kind, v.a, v.b) for v in result.values) == [
        ("epoch", "changed", 3, 4), ("hparams.name", "only-a", "tiny", None),
        ("scheduler", "only-b", None, {"last_epoch": 4})]
    assert main(["diff", str(a), str(b), "--full"]) == 1
    out = capsys.readouterr().out
    assert "~ epoch" in out and "3 -> 4" in out and '+ scheduler' in out
    assert "values: " in out and "1 added, 1 removed, 1 changed" in out
    assert main(["diff", str(a), str(b), "--full", "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert {"path": "epoch", "kind": "changed", "a": 3, "b": 4} in data["values"]


def test_values_survive_a_full_round_trip_through_safetensors(tmp_path: Path, capsys) -> None:
    src, st, back = tmp_path / "a.pt", tmp_path / "full.safetensors", tmp_path / "back.pt"
    torch.save(_training(), src)
    convert(src, st, full=True)
    convert(st, back, full=True)
    for other in (st, back):
        result = verify(src, other, full=True)
        assert result.same, result.differences
        assert result.values_compared > 15 and result.compared == 4
    assert main(["verify", str(src), str(back), "--full"]) == 0
    assert capsys.readouterr().out.startswith("same: 4 tensors and ")
    assert diff(src, back, full=True).same


def test_values_are_compared_strictly(tmp_path: Path) -> None:
    base = {"w": torch.ones(2), "epoch": 3, "flag": True, "betas": (0.9, 0.99), "x": 0.0}
    torch.save(base, tmp_path / "a.pt")
    torch.save(dict(base, epoch=3.0, flag=1, betas=[0.9, 0.99], x=-0.0), tmp_path / "b.pt")
    got = {d.name for d in verify(tmp_path / "a.pt", tmp_path / "b.pt", full=True).differences}
    assert got == {"epoch", "flag", "betas", "x"}
