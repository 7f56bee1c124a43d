"""npy/npz object dtypes decided as numpy decides them, and one header decoder for reader and
scanner. numpy's own ``descr_to_dtype`` is the oracle here (tests only): it builds a dtype
description, nothing is unpickled."""

from __future__ import annotations

import io
import struct
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelport.containers import npy
from modelport.errors import MalformedHeader
from modelport.scan import scan_file

from .corpus import P

CODES = ["O", "|O", "<O", ">O", "=O", "O8", "O4", "object", "object_", "<f4", ">i8", "|b1",
         "u1", "f8", "S3", "U2", "V8", "|V4", "M8[ns]", "<m8[s]", "c16", "?", "e", "i", "b",
         "Ob", "O0", "f4O", "objectx", "o", "V", "S", "V0", "U"]


def _comma() -> st.SearchStrategy[str]:
    item = st.tuples(st.sampled_from(["", "<", ">", "|", "="]),
                     st.sampled_from(["", "2", "(2,3)", "(2,)", " 3 ", "(1)"]),
                     st.sampled_from([c for c in CODES if c[0] not in "<>|="]))
    return st.lists(item, min_size=1, max_size=4).flatmap(
        lambda items: st.sampled_from([", ", ",", " ,"]).map(
            lambda sep: sep.join(o + r + c for o, r, c in items)))


def _descrs() -> st.SearchStrategy[object]:
    leaf = st.one_of(st.sampled_from(CODES), _comma())
    names = st.sampled_from(["a", "b", "", "ab", ("t", "c")])
    shapes = st.sampled_from([(), (2,), 2, (1, 2), 0])

    def extend(inner: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
        field = st.one_of(st.tuples(names, inner), st.tuples(names, inner, shapes))
        return st.one_of(
            st.tuples(inner, shapes),
            st.tuples(inner, st.sampled_from(CODES)),  # the (base, new) form
            st.lists(field, min_size=1, max_size=4),
            st.lists(st.sampled_from(["aO", "bf", "ci", "d8", "xO"]), min_size=1, max_size=3),
            st.dictionaries(st.sampled_from(["aO", "bf", "ci", "Ob"]), st.integers(0, 1),
                            min_size=1, max_size=3),
        )

    return st.recursive(leaf, extend, max_leaves=8)


def _numpy_hasobject(descr: object) -> bool | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return bool(np.lib.format.descr_to_dtype(descr).hasobject)
        except Exception:  # noqa: BLE001 - numpy refuses the descr: np.load would too
            return None


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_descrs())
def test_has_object_is_numpys_answer(descr: object) -> None:
    expected = _numpy_hasobject(descr)
    if expected is None:
        return  # numpy refuses it (np.load raises before reading data): any answer is safe
    assert npy.descr_has_object(descr) == expected, descr


@pytest.mark.parametrize("descr", [
    "O", "|O", "O8", "object", "i4,O", "2O", "(2,3)O", "i4, (2)O", ("O", (2,)), [("a", "O")],
    [("a", "<f4"), ("b", [("c", "O")])], [("a", "<f4", (2,)), ("b", "O", (3,))],
    [(("title", "a"), "O")], ["aO"], {"aO": 0}, [("", "|V4"), ("b", "|O")],
    (("<f4", 0), "O"),  # found by the property test: new's flags over a zero-size base
])
def test_object_descrs(descr: object) -> None:
    assert _numpy_hasobject(descr) is True
    assert npy.descr_has_object(descr)


@pytest.mark.parametrize("descr", [("S", "O"), (("S", 0), "O"), ("U0", "O"), ("a", "O"),
                                   (("<f4", 0), "<i8"), ("S", [("a", "O")])])
def test_zero_size_string_bases_hold_no_objects(descr: object) -> None:
    # numpy sizes an unsized string base like the new type and keeps it a string
    assert _numpy_hasobject(descr) is False
    assert not npy.descr_has_object(descr)


def _npy(header: str, body: bytes, version: tuple[int, int] = (1, 0)) -> bytes:
    text = header.encode("latin1" if version < (3, 0) else "utf8")
    lfmt = "<H" if version == (1, 0) else "<I"
    return b"\x93NUMPY" + bytes(version) + struct.pack(lfmt, len(text)) + text + body


def _gadget(canary: Path) -> bytes:
    return P.pickle(P.glob("os", "system") + P.MARK + P.s(f"touch {canary}") + P.TUPLE +
                    P.REDUCE, proto=2)


@pytest.mark.parametrize("header", [
    "{'descr': 'i4,O', 'fortran_order': False, 'shape': (1,), }",
    "{'descr': '(2,)O', 'fortran_order': False, 'shape': (1,), }",
    "{'descr': {'aO': 1}, 'fortran_order': False, 'shape': (1,), }",
    "{'descr': [('a', [('b', '|O')])], 'fortran_order': False, 'shape': (1,), }",
    "{'descr': '|O', 'fortran_order': False, 'shape': (1L,), }",  # a Python 2 header
    "{'descr': '|O', 'fortran_order': False, 'shape': (-1,), }",  # numpy unpickles first
    "{'descr': '|O', 'fortran_order': False, 'shape': (True,), }",
])
def test_object_arrays_numpy_would_unpickle(header: str, tmp_path: Path) -> None:
    canary = tmp_path / "CANARY"
    data = _npy(header, _gadget(canary))
    # numpy's own header reader accepts it (no data is read, nothing is unpickled)
    fp = io.BytesIO(data)
    fmt = getattr(np.lib, "_format_impl", np.lib.format)  # numpy 2 moved the private reader
    version = fmt.read_magic(fp)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, _, dt = fmt._read_array_header(fp, version, max_header_size=1 << 20)
    assert dt.hasobject
    path = tmp_path / "a.npy"
    path.write_bytes(data)
    report = scan_file(path)
    assert report.verdict == "unsafe", report.to_json()
    zpath = tmp_path / "a.npz"
    with zipfile.ZipFile(zpath, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("w.npy", np.lib.format.header_data_from_array_1_0(np.zeros(2)) and
                    _npy("{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }",
                         bytes(16)))
        zf.writestr("x.npy", data)
    assert scan_file(zpath).verdict == "unsafe"
    assert not canary.exists()


def test_numeric_records_stay_clean(tmp_path: Path) -> None:
    path = tmp_path / "rec.npz"
    np.savez(path, rec=np.zeros(3, dtype=[("a", "<f4"), ("b", "<i8", (2,))]),
             w=np.ones((2, 2), dtype="<f2"), big=np.arange(4, dtype=">i4"))
    assert scan_file(path).verdict == "clean"


def test_one_header_decoder(tmp_path: Path) -> None:
    """The reader and the scanner read headers through containers.npy: a header numpy refuses
    is refused by both, with the byte offset."""
    from modelport.formats.numpy import reader

    data = _npy("{'descr': '<f4', 'fortran_order': 0, 'shape': (1,), }", bytes(4))
    with pytest.raises(MalformedHeader) as info:
        npy.header_of_bytes(data)
    assert "fortran_order" in info.value.message and info.value.offset == 10
    path = tmp_path / "bad.npy"
    path.write_bytes(data)
    with pytest.raises(MalformedHeader):
        reader.open(path)
    assert scan_file(path).verdict == "error"
    assert not hasattr(__import__("modelport.scan.archives").scan.archives, "_npy_header")
