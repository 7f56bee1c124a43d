"""Regressions from the round's review: each was a false CLEAN, an escape or a second opinion."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from modelport.cli import main


def test_onnx_external_location_that_is_a_folder_is_not_clean(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    (tmp_path / "sub").mkdir()
    t = helper.make_tensor("w", TensorProto.FLOAT, [4], [1, 2, 3, 4])
    t.ClearField("float_data")
    t.data_location = TensorProto.EXTERNAL
    for k, v in (("location", "sub"), ("offset", "0"), ("length", "16")):
        e = t.external_data.add()
        e.key, e.value = k, v
    g = helper.make_graph([helper.make_node("Identity", ["w"], ["y"])], "g", [],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])], [t])
    (tmp_path / "m.onnx").write_bytes(helper.make_model(g).SerializeToString())
    assert main(["scan", str(tmp_path / "m.onnx")]) == 2
    assert "is not a file" in capsys.readouterr().out


def test_a_v7_tar_is_named_a_tar_by_inspect_as_by_scan(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo("x.bin")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"abcd"))
    data = bytearray(buf.getvalue())
    data[257:265] = bytes(8)  # v7: no "ustar" magic; fix the header checksum as v7 writers do
    data[148:156] = b" " * 8
    data[148:156] = f"{sum(data[:512]):06o}\0 ".encode()
    path = tmp_path / "old.tar"
    path.write_bytes(bytes(data))
    assert main(["scan", str(path), "--json"]) == 0
    assert '"format": "tar"' in capsys.readouterr().out
    assert main(["inspect", str(path)]) == 2
    err = capsys.readouterr().err
    assert "tar archive" in err and "raw float32" not in err
