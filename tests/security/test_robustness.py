"""The scanner survives whatever it is given: mutated and truncated samples never crash it
(no "internal error"), and a verdict always comes out. Mutations may well make a sample clean
(a flipped byte can break the payload's name); what must never happen is a traceback."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from testkit import edits, mutate  # noqa: E402

from modelport.scan import scan_file  # noqa: E402
from modelport.scan.findings import VERDICTS  # noqa: E402

from .conftest import load_corpus  # noqa: E402


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(index=st.integers(0, len(load_corpus().SAMPLES) - 1),
       edit_list=st.lists(edits(), min_size=1, max_size=4))
def test_mutated_samples_never_crash_the_scanner(index: int, edit_list: list) -> None:
    sample = load_corpus().SAMPLES[index]
    if sample.needs:
        return  # keep this property free of optional libraries
    with tempfile.TemporaryDirectory() as tmp:
        canary = Path(tmp) / "CANARY"
        path = Path(tmp) / sample.name
        path.write_bytes(mutate(sample.build(str(canary)), edit_list, insert=7, delete=13))
        report = scan_file(path)
        assert report.verdict in VERDICTS
        assert not [e for e in report.errors if "internal error" in e], report.errors
        assert not canary.exists()


def test_the_scanner_caps_what_it_decompresses_into_memory(tmp_path):
    import gzip
    import pickle
    import random

    from modelport.limits import Limits
    from modelport.scan import scan_file

    path = tmp_path / "bomb.pkl.gz"
    # 2 MB of incompressible bytes: under the ratio limit, over a 1 MB in-memory cap.
    path.write_bytes(gzip.compress(pickle.dumps(random.Random(0).randbytes(2 << 20))))
    report = scan_file(str(path), limits=Limits(scan_bytes=1 << 20))
    assert report.verdict == "unsafe"
    assert any(f.rule == "bomb" for f in report.findings)
    assert scan_file(str(path)).verdict == "clean"  # under the default cap it is just data
