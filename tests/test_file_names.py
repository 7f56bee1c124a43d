"""Files modelport does not read are named in the error, with what to do (issue [3/7] item 6)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from modelport.cli import main

HEADS = {
    "7z": (b"7z\xbc\xaf\x27\x1c\x00\x04" + bytes(24), "7z archive"),
    "mxnet": (b"\x12\x01" + bytes(6) + bytes(16), "MXNet"),
    "tensorrt": (b"ftrt" + bytes(60), "TensorRT engine"),
    "openvino": (b'<?xml version="1.0"?>\n<net name="m" version="11">', "OpenVINO"),
    "lfs": (b"version https://git-lfs.github.com/spec/v1\noid sha256:ab\nsize 12\n", "git lfs pull"),
}


@pytest.mark.parametrize("kind", sorted(HEADS))
def test_a_foreign_file_is_named(tmp_path: Path, kind: str,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    data, words = HEADS[kind]
    f = tmp_path / "model.bin"
    f.write_bytes(data)
    assert main(["inspect", str(f)]) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1


def test_a_zip_of_a_model_says_unzip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "download.zip"
    with zipfile.ZipFile(f, "w") as z:
        z.writestr("my-model/model.safetensors", b"\x08" + bytes(7) + b"{}")
        z.writestr("my-model/README.md", "hi")
    assert main(["inspect", str(f)]) == 2
    err = capsys.readouterr().err
    assert "my-model/model.safetensors" in err and "unzip" in err


@pytest.mark.parametrize("names,words", [
    (["Manifest.json", "Data/"], "CoreML"),
    (["model.xml", "model.bin"], "OpenVINO"),
])
def test_a_foreign_folder_is_named(tmp_path: Path, names: list[str], words: str,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    for n in names:
        if n.endswith("/"):
            (tmp_path / n).mkdir()
        else:
            (tmp_path / n).write_bytes(b"x")
    assert main(["inspect", str(tmp_path)]) == 2
    assert words in capsys.readouterr().err


@pytest.mark.parametrize("suffix,words", [(".caffemodel", "Caffe"), (".pdiparams", "Paddle"),
                                          (".mlmodel", "CoreML")])
def test_foreign_names_word_the_error_when_the_bytes_say_nothing(
        tmp_path: Path, suffix: str, words: str, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / f"model{suffix}"
    f.write_bytes(b"\x0a\x04test\xa2\x06\x02\x0a\x00")
    assert main(["inspect", str(f)]) == 2
    err = capsys.readouterr().err
    assert words in err and "does not read" in err
    g = tmp_path / "model.bin"  # the same bytes under another name: no guess from the name
    g.write_bytes(f.read_bytes())
    assert main(["inspect", str(g)]) == 2
    assert words not in capsys.readouterr().err
