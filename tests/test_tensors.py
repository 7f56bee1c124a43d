"""Lazy tensor reads: zero-copy views, strided views, bounded chunks, bounds checked."""

from __future__ import annotations

import numpy as np
import pytest

from modelport import dtypes
from modelport.errors import MalformedHeader, Truncated
from modelport.model import Storage, TensorEntry
from modelport.tensors import contiguous_bytes, iter_bytes, to_numpy, values

F32 = dtypes.by_name("F32")


@pytest.fixture
def storage(tmp_path):
    data = np.arange(24, dtype=np.float32)
    path = tmp_path / "raw.bin"
    path.write_bytes(b"HEAD" + data.tobytes())
    return Storage(nbytes=data.nbytes, path=str(path), offset=4, key="0"), data


def test_contiguous_view_is_zero_copy(storage):
    st, data = storage
    e = TensorEntry("w", F32, (2, 3), st, storage_offset=6)
    arr = to_numpy(e)
    np.testing.assert_array_equal(arr, data[6:12].reshape(2, 3))
    assert not arr.flags.owndata and not arr.flags.writeable
    assert bytes(contiguous_bytes(e)) == data[6:12].tobytes()


def test_strided_view_matches_numpy(storage):
    st, data = storage
    e = TensorEntry("t", F32, (4, 3), st, storage_offset=1, strides=(1, 8))
    expect = np.lib.stride_tricks.as_strided(data[1:], (4, 3), (4, 32))
    np.testing.assert_array_equal(to_numpy(e), expect)
    assert contiguous_bytes(e) is None
    assert b"".join(bytes(c) for c in iter_bytes(e, chunk=8)) == np.ascontiguousarray(expect).tobytes()


def test_chunks_are_bounded(storage):
    st, data = storage
    e = TensorEntry("w", F32, (24,), st)
    chunks = list(iter_bytes(e, chunk=16))
    assert max(len(c) for c in chunks) <= 16
    assert b"".join(bytes(c) for c in chunks) == data.tobytes()


def test_a_tensor_reaching_past_its_storage_is_refused(storage):
    st, _ = storage
    with pytest.raises(MalformedHeader, match="reaches byte"):
        to_numpy(TensorEntry("w", F32, (5, 5), st))
    with pytest.raises(MalformedHeader):
        to_numpy(TensorEntry("w", F32, (3,), st, storage_offset=23))


def test_a_storage_past_the_end_of_the_file_is_truncated(storage):
    st, _ = storage
    big = Storage(nbytes=st.nbytes * 2, path=st.path, offset=st.offset, key="0")
    with pytest.raises(Truncated, match="truncated"):
        to_numpy(TensorEntry("w", F32, (48,), big))


def test_empty_and_scalar(storage):
    st, data = storage
    assert to_numpy(TensorEntry("e", F32, (0, 3), st)).shape == (0, 3)
    assert to_numpy(TensorEntry("s", F32, (), st, storage_offset=5)) == data[5]


@pytest.mark.parametrize("name", ["BF16", "F8_E4M3", "F16"])
def test_strided_chunks_of_ml_dtypes(tmp_path, name):
    dt = dtypes.by_name(name)
    raw = bytes(range(24 * dt.itemsize))
    path = tmp_path / "raw.bin"
    path.write_bytes(raw)
    st = Storage(nbytes=len(raw), path=str(path), key="0")
    e = TensorEntry("t", dt, (4, 6), st, strides=(1, 4))  # a transpose
    expect = np.ascontiguousarray(to_numpy(e)).view(np.uint8).tobytes()
    assert b"".join(bytes(c) for c in iter_bytes(e, chunk=8)) == expect


@pytest.mark.parametrize("name", ["F8_E5M2", "F8_E4M3FNUZ", "F8_E8M0", "C32", "B16", "C128"])
def test_strided_views_of_types_numpy_cannot_name(tmp_path, name):
    """as_strided could not parse ml_dtypes' '<f1' type string back; records and holders too."""
    dt = dtypes.by_name(name)
    raw = np.random.default_rng(1).integers(0, 256, 24 * dt.itemsize, dtype=np.uint8).tobytes()
    st = Storage(nbytes=len(raw), data=raw, key="0")
    arr = to_numpy(TensorEntry("t", dt, (4, 6), st, strides=(1, 4)))  # a transpose of (6, 4)
    rows = np.frombuffer(raw, np.uint8).reshape(6, 4, dt.itemsize)
    assert arr.dtype == dt.np_dtype() and arr.shape == (4, 6) and not arr.flags.writeable
    assert np.ascontiguousarray(arr).tobytes() == rows.transpose(1, 0, 2).tobytes()


def test_complex32_reads_as_half_pairs_and_computes_as_complex64():
    halves = np.array([1.5, -2.0, np.inf, 0.25, np.nan, 3.0], dtype="<f2")
    st = Storage(nbytes=halves.nbytes, data=halves.tobytes(), key="0")
    arr = to_numpy(TensorEntry("z", dtypes.by_name("C32"), (3,), st))
    assert arr.tobytes() == halves.tobytes()
    z = values(arr)
    assert z.dtype == np.complex64
    np.testing.assert_array_equal(z, halves.astype(np.float32).view(np.complex64))


def test_packed_types_read_as_their_bytes_and_refuse_strided_views():
    qu4 = dtypes.by_name("QU4X2")
    st = Storage(nbytes=4, data=bytes([0x31, 0x75, 0xB9, 0xFD]), key="0")
    assert to_numpy(TensorEntry("q", qu4, (2, 4), st)).tolist() == [0x31, 0x75, 0xB9, 0xFD]
    with pytest.raises(MalformedHeader, match="packs 2 elements per byte"):
        to_numpy(TensorEntry("q", qu4, (4, 2), st, strides=(1, 4)))
