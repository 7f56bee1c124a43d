"""Bad input gets one clear line naming the file and where, exit code 2, no traceback."""

from __future__ import annotations

import json
import shutil

import pytest

from modelport.cli import main

torch = pytest.importorskip("torch")


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _assert_one_line_error(code, err, *needles):
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.fixture
def state_dict_file(tmp_path):
    path = tmp_path / "model.pt"
    torch.save({"w": torch.arange(1000, dtype=torch.float32), "b": torch.ones(3)}, path)
    return path


def test_truncated_zip(tmp_path, state_dict_file, capsys):
    data = state_dict_file.read_bytes()
    bad = tmp_path / "truncated.pt"
    bad.write_bytes(data[: len(data) // 2])
    code, _, err = _run(capsys, "inspect", str(bad))
    _assert_one_line_error(code, err, str(bad), "truncated")


def test_storage_cut_short_is_located(tmp_path, capsys):
    # The central directory survives but a storage member's bytes are cut: zip headers disagree.
    path = tmp_path / "m.pt"
    torch.save({"w": torch.zeros(100000)}, path)
    data = bytearray(path.read_bytes())
    del data[1000:2000]
    path.write_bytes(bytes(data))
    code, _, err = _run(capsys, "inspect", str(path))
    _assert_one_line_error(code, err, str(path), "byte")


def test_pickle_that_fails_midway(tmp_path, state_dict_file, capsys):
    # Rewrite data.pkl inside the archive with a pickle cut before STOP.
    import zipfile

    src = zipfile.ZipFile(state_dict_file)
    bad = tmp_path / "broken.pt"
    with zipfile.ZipFile(bad, "w", zipfile.ZIP_STORED) as out:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith("data.pkl"):
                data = data[: len(data) // 2]
            out.writestr(info.filename, data)
    code, _, err = _run(capsys, "inspect", str(bad))
    _assert_one_line_error(code, err, str(bad), "data.pkl", "byte")


@pytest.mark.parametrize(
    "content, needle",
    [
        (b"", "empty"),
        (b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\n", "git lfs pull"),
        (b"<!DOCTYPE html><html>Not found</html>", "HTML"),
        (bytes(range(7, 71)) + b"\x00" * 64, "first bytes"),
    ],
)
def test_unknown_format_says_what_the_bytes_look_like(tmp_path, capsys, content, needle):
    path = tmp_path / "model.bin"
    path.write_bytes(content)
    code, _, err = _run(capsys, "inspect", str(path))
    _assert_one_line_error(code, err, str(path), needle)


def test_missing_file(tmp_path, capsys):
    code, _, err = _run(capsys, "inspect", str(tmp_path / "nope.pt"))
    _assert_one_line_error(code, err, "nope.pt")


def test_wrong_extension_never_matters(tmp_path, state_dict_file, capsys):
    disguised = tmp_path / "weights.safetensors"
    shutil.copy(state_dict_file, disguised)
    code, out, _ = _run(capsys, "inspect", str(disguised), "--json")
    assert code == 0
    assert json.loads(out)["format"] == "torch-zip"


def _sharded_repo(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    torch.save({"a": torch.ones(2)}, repo / "pytorch_model-00001-of-00002.bin")
    torch.save({"b": torch.zeros(3)}, repo / "pytorch_model-00002-of-00002.bin")
    index = {"metadata": {"total_size": 20}, "weight_map": {
        "a": "pytorch_model-00001-of-00002.bin", "b": "pytorch_model-00002-of-00002.bin"}}
    (repo / "pytorch_model.bin.index.json").write_text(json.dumps(index))
    (repo / "config.json").write_text(json.dumps({"model_type": "toy"}))
    return repo


def test_sharded_repo_reads(tmp_path, capsys):
    repo = _sharded_repo(tmp_path)
    code, out, _ = _run(capsys, "inspect", str(repo), "--json")
    assert code == 0
    d = json.loads(out)
    assert d["format"] == "hf-repo"
    assert [w["name"] for w in d["weights"]] == ["a", "b"]
    assert d["metadata"]["config"]["model_type"] == "toy"


def test_missing_shard(tmp_path, capsys):
    repo = _sharded_repo(tmp_path)
    (repo / "pytorch_model-00002-of-00002.bin").unlink()
    code, _, err = _run(capsys, "inspect", str(repo))
    _assert_one_line_error(code, err, "pytorch_model-00002-of-00002.bin", "missing")


def test_extra_shard(tmp_path, capsys):
    repo = _sharded_repo(tmp_path)
    torch.save({"c": torch.zeros(1)}, repo / "pytorch_model-00003-of-00003.bin")
    code, _, err = _run(capsys, "inspect", str(repo))
    _assert_one_line_error(code, err, "pytorch_model-00003-of-00003.bin", "not in")


def test_debug_shows_the_traceback(tmp_path, capsys):
    path = tmp_path / "x.bin"
    path.write_bytes(b"garbage")
    code = main(["inspect", str(path), "--debug"])
    assert code == 2
    assert "Traceback" in capsys.readouterr().err
