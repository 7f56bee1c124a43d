"""What a local `scan` and `inspect` load: start-up is most of their time on one file (see
bench/README.md, scan time), so modules only some runs need stay out of the others. Speed
itself is measured by the benchmarks; this checks the module set, which does not vary."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures" / "files"

# Loaded only by the runs that need them: remote inputs, --sarif, help text width, threads.
NOT_FOR_LOCAL = ("modelport.remote_session", "modelport.scan.sarif", "http.client",
                 "urllib.parse", "shutil", "threading", "modelport.containers.hdf5",
                 "modelport.containers.sstable", "modelport.containers.flatbuffers", "bz2")


def _loaded(args: list[str]) -> list[str]:
    code = ("import contextlib, io, json, sys\nfrom modelport.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            f"    code = main({args!r})\n"
            f"print(json.dumps([code, sorted(m for m in {NOT_FOR_LOCAL!r} "
            "if m in sys.modules)]))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    code_, loaded = json.loads(out)
    assert code_ == 0, out
    return list(loaded)


@pytest.mark.parametrize("command", ["scan", "inspect"])
def test_a_local_torch_file_loads_no_remote_sarif_or_other_formats_decoders(command: str
                                                                           ) -> None:
    path = next(p for p in sorted(FIXTURES.glob("*.pt")) if "legacy" not in p.name)
    assert _loaded([command, str(path)]) == []
