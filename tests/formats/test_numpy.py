"""NumPy reader: np.save / np.savez / np.savez_compressed read back bit for bit, no pickle ever run.

Every file is written by numpy into tmp_path and compared with ``np.load(allow_pickle=False)``.
Object arrays are refused (and a pickle that would leave a trace if it ran proves it did not).
"""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest

from modelport.detect import is_npz_listing
from modelport.errors import InputError, LimitExceeded, MalformedHeader, Truncated
from modelport.formats import numpy as np_registration
from modelport.formats.numpy import reader as np_format
from modelport.limits import Limits
from modelport.tensors import to_numpy

DTYPES = ["|b1", "|i1", "<i2", "<i4", "<i8", "|u1", "<u2", "<u4", "<u8", "<f2", "<f4", "<f8",
          "<c8", "<c16"]
SHAPES = [(3, 4), (), (0, 3), (2, 3, 4), (5,)]


def _random(dtype: str, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Random bit patterns (NaNs included): the comparison is of bytes."""
    dt, rng = np.dtype(dtype), np.random.default_rng(seed)
    n = int(np.prod(shape))
    if dt.kind == "b":
        return rng.integers(0, 2, n).astype(bool).reshape(shape)
    return np.frombuffer(rng.bytes(n * dt.itemsize), dtype=dt).reshape(shape).copy()


def _same(got: np.ndarray, want: np.ndarray) -> None:
    assert got.dtype == want.dtype and got.shape == want.shape
    assert got.tobytes() == want.tobytes()  # C-order bytes of both, whatever their layout


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES)
def test_npy_every_dtype(tmp_path: Path, dtype: str, shape: tuple[int, ...]) -> None:
    path = tmp_path / "weights.npy"
    np.save(path, _random(dtype, shape))
    ck = np_format.open(path)
    assert ck.format == "numpy-npy" and ck.kind == "weights"
    assert list(ck.weights) == ["weights"]
    entry = ck.weights["weights"]
    assert entry.storage.data is None  # read in place
    _same(to_numpy(entry), np.load(path, allow_pickle=False))


@pytest.mark.parametrize("shape", [(3, 4), (2, 3, 4), (4, 1, 2)], ids=str)
def test_npy_fortran_order_is_strided_not_copied(tmp_path: Path, shape: tuple[int, ...]) -> None:
    path = tmp_path / "f.npy"
    np.save(path, np.asfortranarray(_random("<f4", shape)))
    with path.open("rb") as f:
        np.lib.format.read_magic(f)
        assert np.lib.format.read_array_header_1_0(f)[1] is True  # numpy wrote Fortran order
    entry = np_format.open(path).weights["f"]
    got = to_numpy(entry)
    _same(got, np.load(path, allow_pickle=False))
    assert entry.strides is not None and not got.flags.owndata and got.flags.f_contiguous


@pytest.mark.parametrize("shape", [(1, 5), (5, 1), (0, 3), (3, 0, 2), (), (4,), (2, 1, 3)], ids=str)
def test_npy_fortran_flag_on_degenerate_shapes(tmp_path: Path, shape: tuple[int, ...]) -> None:
    """numpy writes these C order; a file may still say fortran_order (np.load honours it)."""
    arr = _random("<i2", shape)
    header = repr({"descr": "<i2", "fortran_order": True, "shape": shape}).encode() + b"\n"
    path = tmp_path / "d.npy"
    path.write_bytes(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header
                     + arr.tobytes(order="F"))
    _same(to_numpy(np_format.open(path).weights["d"]), np.load(path, allow_pickle=False))


@pytest.mark.parametrize("version", [(1, 0), (2, 0), (3, 0)])
def test_npy_versions(tmp_path: Path, version: tuple[int, int]) -> None:
    path = tmp_path / "v.npy"
    arr = _random("<i4", (3, 2))
    with path.open("wb") as f:
        np.lib.format.write_array(f, arr, version=version)
    ck = np_format.open(path)
    assert ck.info["npy_version"] == "%d.%d" % version
    _same(to_numpy(ck.weights["v"]), np.load(path, allow_pickle=False))


@pytest.mark.parametrize("writer", ["savez", "savez_compressed"])
def test_npz(tmp_path: Path, writer: str) -> None:
    arrays = {f"{np.dtype(dt).name}_{i}": _random(dt, shape, seed=i)
              for i, shape in enumerate(SHAPES) for dt in DTYPES}
    arrays["fortran"] = np.asfortranarray(_random("<f8", (3, 5)))
    path = tmp_path / "a.npz"
    getattr(np, writer)(path, _random("<f4", (2, 2)), **arrays)  # positional -> "arr_0"
    ck = np_format.open(path)
    assert ck.format == "numpy-npz" and ck.kind == "weights"
    assert ck.info["compressed"] is (writer == "savez_compressed")
    with np.load(path, allow_pickle=False) as ref:
        assert list(ck.weights) == list(ref.files)
        for name in ref.files:
            _same(to_numpy(ck.weights[name]), ref[name])
    in_place = {e.storage.data is None for e in ck.weights.values() if e.nbytes}
    assert in_place == {writer == "savez"}
    assert ck.weights["fortran"].strides == (1, 3)


def test_npz_empty(tmp_path: Path) -> None:
    path = tmp_path / "e.npz"
    np.savez(path)
    assert np_format.open(path).weights == {}


def test_sniff(tmp_path: Path) -> None:
    path = tmp_path / "s.npy"
    np.save(path, np.zeros(2))
    assert np_registration.sniff(path.read_bytes()[:16])
    assert not np_registration.sniff(b"PK\x03\x04")
    assert is_npz_listing(["a.npy", "b.npy"])
    assert not is_npz_listing(["archive/data.pkl", "archive/data/0"])


# ---------------------------------------------------------------------------- refusals

# protocol 2: os.mkdir(<path>) through GLOBAL + REDUCE. If anything unpickled it, the dir appears.
def _trap(target: Path) -> bytes:
    arg = str(target).encode()
    return b"\x80\x02cos\nmkdir\nq\x00X" + struct.pack("<I", len(arg)) + arg + b"\x85R."


def _object_npy(path: Path, payload: bytes, descr: object = "|O") -> None:
    header = repr({"descr": descr, "fortran_order": False, "shape": ()}).encode()
    header += b" " * ((-len(header) - 11) % 64) + b"\n"
    path.write_bytes(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + payload)


def test_object_npy_is_refused_never_unpickled(tmp_path: Path) -> None:
    trap, path = tmp_path / "pwned", tmp_path / "obj.npy"
    _object_npy(path, _trap(trap))
    with pytest.raises(InputError, match="never unpickles") as info:
        np_format.open(path)
    assert "pickled" in str(info.value) and str(path) in str(info.value)
    assert not trap.exists()


def test_object_npy_written_by_numpy(tmp_path: Path) -> None:
    path = tmp_path / "obj.npy"
    np.save(path, np.array([1, "a", None], dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match="pickled"):
        np_format.open(path)


def test_structured_with_object_field_is_pickled(tmp_path: Path) -> None:
    path = tmp_path / "rec.npy"
    np.save(path, np.zeros(2, dtype=[("a", "O"), ("b", "<f4")]), allow_pickle=True)
    with pytest.raises(InputError, match="pickled"):
        np_format.open(path)


def test_object_member_in_npz_is_refused(tmp_path: Path) -> None:
    trap, obj = tmp_path / "pwned", tmp_path / "obj.npy"
    _object_npy(obj, _trap(trap))
    path = tmp_path / "o.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("fine.npy", _npy_bytes(np.arange(3)))
        zf.write(obj, "bad.npy")
    with pytest.raises(InputError, match="never unpickles") as info:
        np_format.open(path)
    assert info.value.member == "bad.npy" and "member bad.npy" in str(info.value)
    assert not trap.exists()


def _npy_bytes(arr: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


@pytest.mark.parametrize(
    "arr, message",
    [
        (np.zeros(3, dtype=[("x", "<f4"), ("y", "<i4")]), "structured"),
        (np.array(["ab", "c"]), "no tensor dtype"),
        (np.array(["2020-01-01"], dtype="datetime64[D]"), "no tensor dtype"),
        (np.zeros(2, dtype=np.longdouble), "no tensor dtype"),
    ],
    ids=["record", "unicode", "datetime", "longdouble"],
)
def test_non_tensor_dtypes_are_refused(tmp_path: Path, arr: np.ndarray, message: str) -> None:
    path = tmp_path / "x.npy"
    np.save(path, arr)
    with pytest.raises(InputError, match=message) as info:
        np_format.open(path)
    assert not isinstance(info.value, MalformedHeader) and info.value.hint


# ---------------------------------------------------------------------------- malformed input

@pytest.mark.parametrize("keep", [3, 9, 40, -1], ids=["magic", "preamble", "header", "data"])
def test_truncated_npy(tmp_path: Path, keep: int) -> None:
    whole = _npy_bytes(np.arange(10, dtype="<i8"))
    path = tmp_path / "t.npy"
    path.write_bytes(whole[:keep])
    with pytest.raises(Truncated) as info:
        np_format.open(path)
    assert str(path) in str(info.value) and "byte" in str(info.value)


def _npy_with_header(path: Path, header: bytes, version: bytes = b"\x01\x00") -> None:
    path.write_bytes(b"\x93NUMPY" + version + struct.pack("<H", len(header)) + header + b"\0" * 64)


@pytest.mark.parametrize(
    "header, version",
    [
        (b"{'descr': __import__('os').getcwd(), 'fortran_order': False, 'shape': (2,)}\n",
         b"\x01\x00"),
        (b"{'descr': '<f4', 'shape': (2,)}\n", b"\x01\x00"),
        (b"{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'extra': 1}\n", b"\x01\x00"),
        (b"{'descr': '<f4', 'fortran_order': 0, 'shape': (2,)}\n", b"\x01\x00"),
        (b"{'descr': '<f4', 'fortran_order': False, 'shape': (-2,)}\n", b"\x01\x00"),
        (b"{'descr': '<f4', 'fortran_order': False, 'shape': [2]}\n", b"\x01\x00"),
        (b"{'descr': '<q9', 'fortran_order': False, 'shape': (2,)}\n", b"\x01\x00"),
        (b"['descr', '<f4']\n", b"\x01\x00"),
        (b"{'descr': '<f4', 'fortran_order': False, 'shape': (2,)}\n", b"\x09\x00"),
    ],
    ids=["call", "missing-key", "extra-key", "fortran-int", "negative-dim", "shape-list",
         "bad-descr", "not-dict", "version"],
)
def test_malformed_npy_header(tmp_path: Path, header: bytes, version: bytes) -> None:
    path = tmp_path / "m.npy"
    _npy_with_header(path, header, version)
    with pytest.raises(MalformedHeader) as info:
        np_format.open(path)
    assert str(path) in str(info.value) and info.value.offset is not None


def test_not_numpy(tmp_path: Path) -> None:
    path = tmp_path / "x.npy"
    path.write_bytes(b"GGUF" + b"\0" * 32)
    with pytest.raises(MalformedHeader):
        np_format.open(path)


def test_npz_bomb_is_bounded(tmp_path: Path) -> None:
    path = tmp_path / "z.npz"
    np.savez_compressed(path, z=np.zeros(1 << 16))
    assert np_format.open(path).weights["z"].numel == 1 << 16
    with pytest.raises(LimitExceeded, match="limit") as info:
        np_format.open(path, Limits(ratio=10))
    assert info.value.member == "z.npy"
    with pytest.raises(LimitExceeded):
        np_format.open(path, Limits(member_bytes=1 << 10))


def test_npz_lying_size_is_caught(tmp_path: Path) -> None:
    """The central directory understates the inflated size: decompression stops at the claim."""
    path = tmp_path / "z.npz"
    np.savez_compressed(path, z=np.zeros(1 << 12))
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("z.npy")
    cd = raw.rfind(b"PK\x01\x02")
    struct.pack_into("<I", raw, cd + 24, info.file_size // 2)  # uncompressed size
    path.write_bytes(bytes(raw))
    with pytest.raises(LimitExceeded, match="declared"):
        np_format.open(path)


def test_npz_local_name_mismatch(tmp_path: Path) -> None:
    path = tmp_path / "n.npz"
    np.savez(path, xx=np.arange(3))
    raw = path.read_bytes()
    path.write_bytes(raw.replace(b"xx.npy", b"yy.npy", 1))  # the local header comes first
    with pytest.raises(MalformedHeader, match="local header names 'yy.npy'"):
        np_format.open(path)


def test_npz_corrupt_compressed_member(tmp_path: Path) -> None:
    path = tmp_path / "c.npz"
    np.savez_compressed(path, c=np.arange(1000))
    with zipfile.ZipFile(path) as zf:
        m = zf.getinfo("c.npy")
    raw = bytearray(path.read_bytes())
    start = m.header_offset + 30 + len(m.filename) + len(m.extra)
    for i in range(start + 20, start + 40):
        raw[i] ^= 0x55
    path.write_bytes(bytes(raw))
    with pytest.raises(MalformedHeader) as info:
        np_format.open(path)
    assert info.value.member == "c.npy"


def test_npz_truncated(tmp_path: Path) -> None:
    path = tmp_path / "t.npz"
    np.savez(path, a=np.arange(100))
    path.write_bytes(path.read_bytes()[:-30])
    with pytest.raises(MalformedHeader, match="zip directory"):
        np_format.open(path)


def test_npz_duplicate_member(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    with pytest.warns(UserWarning), zipfile.ZipFile(path, "w") as zf:
        zf.writestr("a.npy", _npy_bytes(np.arange(2)))
        zf.writestr("a.npy", _npy_bytes(np.arange(3)))
    with pytest.raises(MalformedHeader, match="twice"):
        np_format.open(path)


def test_an_empty_npz_is_an_npz_with_no_tensors(tmp_path):
    path = tmp_path / "empty.npz"
    np.savez(path)
    import modelport

    ck = modelport.open(path)
    assert (ck.format, ck.weights) == ("numpy-npz", {})


@pytest.mark.parametrize("descr", [">i4", ">f8", ">f2", ">c8"])
def test_big_endian_arrays_are_byte_swapped(tmp_path: Path, descr: str) -> None:
    arr = (np.arange(12).reshape(3, 4) * 1.5 - 3).astype(descr)
    path = tmp_path / "be.npy"
    np.save(path, arr)
    ck = np_format.open(path)
    out = to_numpy(ck.weights["be"])
    assert out.dtype.byteorder in ("<", "=", "|")
    np.testing.assert_array_equal(out, np.load(path))


def test_a_big_endian_copy_is_bounded(tmp_path: Path) -> None:
    path = tmp_path / "be.npy"
    np.save(path, np.zeros(1000, dtype=">f8"))
    with pytest.raises(LimitExceeded, match="byte-swapped"):
        np_format.open(path, Limits(member_bytes=4000))


@pytest.mark.parametrize("method", ["deflate", "bzip2", "lzma"])
def test_npz_members_compressed_as_zipfile_compresses_them(tmp_path: Path, method: str) -> None:
    """np.load reads npz members that zipfile compressed with deflate, bzip2 or LZMA; so does
    modelport (LZMA members: a 4-byte header, LZMA1 properties, a raw stream)."""
    import io

    kind = {"deflate": zipfile.ZIP_DEFLATED, "bzip2": zipfile.ZIP_BZIP2,
            "lzma": zipfile.ZIP_LZMA}[method]
    want = np.arange(1000, dtype=np.float32).reshape(10, 100)
    buf = io.BytesIO()
    np.save(buf, want)
    path = tmp_path / f"{method}.npz"
    with zipfile.ZipFile(path, "w", compression=kind) as z:
        z.writestr("w.npy", buf.getvalue())
    _same(to_numpy(np_format.open(path).weights["w"]), np.load(path)["w"])
