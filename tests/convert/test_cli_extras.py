"""convert CLI: --force guards unrelated folders; --json reports the result."""

from __future__ import annotations

import pytest

from modelport.cli import main


@pytest.fixture
def src(tmp_path):
    torch = pytest.importorskip("torch")
    path = tmp_path / "m.pt"
    torch.save({"w": torch.ones(4)}, path)
    return path


def test_force_refuses_an_unrelated_folder(src, tmp_path, capsys):
    home = tmp_path / "home"
    (home / "photos").mkdir(parents=True)
    (home / "notes.odt").write_text("keep me")
    assert main(["convert", str(src), str(home), "--force", "-q"]) == 2
    assert "not part of a model folder" in capsys.readouterr().err
    assert (home / "notes.odt").read_text() == "keep me" and (home / "photos").is_dir()


def test_force_replaces_a_previous_model_folder(src, tmp_path):
    out = tmp_path / "repo"
    assert main(["convert", str(src), str(out), "-q"]) == 0
    assert main(["convert", str(src), str(out), "--force", "-q"]) == 0
    assert (out / "model.safetensors").exists() or any(out.glob("model-*.safetensors"))


def test_convert_json_reports_what_was_written(src, tmp_path, capsys):
    import json

    out = tmp_path / "w.safetensors"
    assert main(["convert", str(src), str(out), "--json", "--verify"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["format"] == "safetensors" and d["tensors"] == 1 and d["bytes"] == 16
    assert d["files"] == ["w.safetensors"] and d["verified"] == {"same": True, "compared": 1}
