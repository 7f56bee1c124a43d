"""Tied weights (issue #13): inspect names the names that share one tensor and counts it once;
convert to a format that copies them says so and suggests --dedupe. numpy only: the source is
a committed fixture (layouts_zip.pt ties encoder.embed.weight and decoder.proj.weight; c and d
are two rows of one storage, which is sharing but not tying)."""

from __future__ import annotations

import json
from pathlib import Path

from modelport.cli import main

LAYOUTS = Path(__file__).parents[1] / "fixtures" / "files" / "layouts_zip.pt"


def test_inspect_counts_a_tied_tensor_once(capsys) -> None:
    assert main(["inspect", str(LAYOUTS), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["tied"] == [["encoder.embed.weight", "decoder.proj.weight"]]
    assert main(["inspect", str(LAYOUTS)]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if "parameters" in ln)
    unique = data["parameters"] - 12  # the 3x4 tied tensor counted once
    assert line.split()[1:3] == [str(unique), "unique"]
    assert f"{data['parameters']} counting every name" in line
    assert "encoder.embed.weight = decoder.proj.weight" in line


def test_convert_suggests_dedupe_where_tied_names_become_copies(tmp_path: Path, capsys) -> None:
    assert main(["convert", str(LAYOUTS), str(tmp_path / "a.safetensors")]) == 0
    err = capsys.readouterr().err
    assert "1 tied tensor name(s) (decoder.proj.weight = encoder.embed.weight)" in err
    assert "--dedupe" in err
    assert main(["convert", str(LAYOUTS), str(tmp_path / "b.safetensors"), "--dedupe"]) == 0
    assert "separate copies" not in capsys.readouterr().err
    assert main(["convert", str(LAYOUTS), str(tmp_path / "c.pt")]) == 0  # torch keeps the tie
    assert "tied" not in capsys.readouterr().err
