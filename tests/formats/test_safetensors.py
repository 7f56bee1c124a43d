"""safetensors reader: what safetensors writes reads back bit for bit; every bad header is refused.

Files are written by ``safetensors.numpy.save_file`` / ``safetensors.torch.save_file`` and read
back against ``safetensors.safe_open``. Malformed files are built byte by byte, one per check of
the reference validator (safetensors/src/tensor.rs) plus the stricter ones modelport adds.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelport.errors import InputError, LimitExceeded, MalformedHeader, Truncated
from modelport.formats import safetensors as st_format
from modelport.limits import Limits
from modelport.tensors import to_numpy

safetensors = pytest.importorskip("safetensors")

NUMPY_DTYPES = ["<f8", "<f4", "<f2", "<i8", "<i4", "<i2", "|i1", "<u8", "<u4", "<u2", "|u1",
                "|b1", "<c8"]
TORCH_DTYPES = ["float64", "float32", "float16", "bfloat16", "float8_e4m3fn", "float8_e5m2",
                "float8_e4m3fnuz", "float8_e5m2fnuz", "float8_e8m0fnu", "int64", "int32", "int16",
                "int8", "uint8", "uint16", "uint32", "uint64", "bool", "complex64"]
SHAPES = [(3, 5), (), (0, 4), (2, 0, 3), (7,)]


def _random(dtype: np.dtype, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Random bit patterns (NaNs included) so the comparison is of bytes, not values."""
    n = int(np.prod(shape))
    if dtype.kind == "b":
        return rng.integers(0, 2, n).astype(bool).reshape(shape)
    return np.frombuffer(rng.bytes(n * dtype.itemsize), dtype=dtype).reshape(shape).copy()


def _header_order(path: Path) -> list[str]:
    """Tensor names sorted by their data offsets, from the raw JSON."""
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    doc = json.loads(raw[8 : 8 + n])
    doc.pop("__metadata__", None)
    return sorted(doc, key=lambda k: doc[k]["data_offsets"])


def test_numpy_writer_every_dtype(tmp_path: Path) -> None:
    from safetensors.numpy import save_file

    rng = np.random.default_rng(0)
    arrays = {f"{np.dtype(dt).name}.{i}": _random(np.dtype(dt), shape, rng)
              for dt in NUMPY_DTYPES for i, shape in enumerate(SHAPES)}
    path = tmp_path / "np.safetensors"
    save_file(arrays, str(path), metadata={"format": "np", "note": "héllo"})

    ck = st_format.open(path)
    assert ck.format == "safetensors" and ck.kind == "weights"
    assert list(ck.weights) == _header_order(path)
    assert ck.info["metadata"] == {"format": "np", "note": "héllo"}
    with safetensors.safe_open(str(path), framework="numpy") as ref:
        assert set(ref.keys()) == set(ck.weights)
        assert ref.metadata() == ck.info["metadata"]
        for name in ref.keys():  # noqa: SIM118 - safe_open is not iterable
            want, got = ref.get_tensor(name), to_numpy(ck.weights[name])
            assert got.dtype == want.dtype and got.shape == want.shape, name
            assert got.tobytes() == want.tobytes(), name
            assert ck.weights[name].nbytes == want.nbytes


def test_torch_writer_every_dtype(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file

    gen = torch.Generator().manual_seed(0)
    tensors = {}
    for dt in TORCH_DTYPES:
        dtype = getattr(torch, dt)
        for i, shape in enumerate(SHAPES):
            if dtype == torch.bool:
                t = torch.randint(0, 2, shape, generator=gen).bool()
            else:
                nbytes = int(np.prod(shape)) * dtype.itemsize
                t = torch.randint(0, 256, (nbytes,), dtype=torch.uint8, generator=gen)
                t = t.view(dtype).reshape(shape)
            tensors[f"{dt}.{i}"] = t
    path = tmp_path / "pt.safetensors"
    save_file(tensors, str(path), metadata={"format": "pt"})

    ck = st_format.open(path)
    assert list(ck.weights) == _header_order(path)
    assert ck.info["metadata"] == {"format": "pt"}
    offsets = [e.storage.offset for e in ck.weights.values()]
    assert offsets == sorted(offsets)
    with safetensors.safe_open(str(path), framework="pt") as ref:
        assert set(ref.keys()) == set(ck.weights)
        for name in ref.keys():  # noqa: SIM118 - safe_open is not iterable
            want, entry = ref.get_tensor(name), ck.weights[name]
            assert entry.dtype.torch == str(want.dtype).removeprefix("torch."), name
            assert entry.shape == tuple(want.shape), name
            raw = want.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
            assert to_numpy(entry).tobytes() == raw, name


def test_empty_file_and_no_metadata(tmp_path: Path) -> None:
    from safetensors.numpy import save_file

    path = tmp_path / "empty.safetensors"
    save_file({}, str(path))
    ck = st_format.open(path)
    assert ck.weights == {} and ck.info["metadata"] == {}
    assert ck.file_size == path.stat().st_size


def test_sniff(tmp_path: Path) -> None:
    from safetensors.numpy import save_file

    path = tmp_path / "a.safetensors"
    save_file({"a": np.zeros(3, np.float32)}, str(path))
    head = path.read_bytes()[:64]
    assert st_format.sniff(head)
    assert not st_format.sniff(b"\x93NUMPY\x01\x00" + b"x" * 64)
    assert not st_format.sniff(b"PK\x03\x04" + b"\0" * 60)
    assert not st_format.sniff(struct.pack("<Q", 1 << 40) + b"{")  # implausible length
    assert not st_format.sniff(head[:8])


# ---------------------------------------------------------------------------- malformed headers

F32_4 = {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}


def _file(tmp_path: Path, header: Any, data: bytes = b"", n: int | None = None) -> Path:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    path = tmp_path / "bad.safetensors"
    path.write_bytes(struct.pack("<Q", len(raw) if n is None else n) + raw + data)
    return path


# id, header (JSON-able or raw bytes), data, header length override, error, tensor named,
# and whether safetensors' own reader rejects it too (False: modelport is stricter).
MALFORMED = [
    ("header-too-small", None, b"", None, Truncated, None, True),
    ("header-length-past-eof", b'{"a":1}', b"", 4096, Truncated, None, True),
    ("header-larger-than-file-and-limit", b"{}", b"", 1 << 62, MalformedHeader, None, True),
    ("not-utf8", b'{"a\xff":1}', b"", None, MalformedHeader, None, True),
    ("no-brace", b'[{"a":1}]', b"", None, MalformedHeader, None, True),
    ("leading-space", b' {"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', b"\0" * 4,
     None, MalformedHeader, None, False),
    ("bad-json", b'{"a":{"dtype":"F32",}}', b"", None, MalformedHeader, None, True),
    ("trailing-garbage", b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}\0', b"\0" * 4,
     None, MalformedHeader, None, True),
    ("nan-literal", b'{"a":{"dtype":"F32","shape":[NaN],"data_offsets":[0,4]}}', b"\0" * 4,
     None, MalformedHeader, None, True),
    ("duplicate-tensor", b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},'
     b'"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', b"\0" * 4, None,
     MalformedHeader, None, False),
    ("duplicate-field", b'{"a":{"dtype":"F32","dtype":"I32","shape":[1],"data_offsets":[0,4]}}',
     b"\0" * 4, None, MalformedHeader, None, False),
    ("unknown-dtype", {"a": {**F32_4, "dtype": "F128"}}, b"\0" * 4, None, MalformedHeader, "a",
     True),
    ("dtype-not-string", {"a": {**F32_4, "dtype": 1}}, b"\0" * 4, None, MalformedHeader, "a", True),
    ("negative-dim", {"a": {**F32_4, "shape": [-1]}}, b"\0" * 4, None, MalformedHeader, "a", True),
    ("float-dim", {"a": {**F32_4, "shape": [1.0]}}, b"\0" * 4, None, MalformedHeader, "a", True),
    ("bool-dim", {"a": {**F32_4, "shape": [True]}}, b"\0" * 4, None, MalformedHeader, "a", True),
    ("shape-not-list", {"a": {**F32_4, "shape": 1}}, b"\0" * 4, None, MalformedHeader, "a", True),
    ("offsets-three", {"a": {**F32_4, "data_offsets": [0, 4, 8]}}, b"\0" * 4, None,
     MalformedHeader, "a", True),
    ("offsets-negative", {"a": {**F32_4, "data_offsets": [-4, 0]}}, b"\0" * 4, None,
     MalformedHeader, "a", True),
    ("missing-field", {"a": {"dtype": "F32", "shape": [1]}}, b"\0" * 4, None,
     MalformedHeader, "a", True),
    ("extra-field", {"a": {**F32_4, "offset": 0}}, b"\0" * 4, None, MalformedHeader, "a", False),
    ("record-not-object", {"a": [1, 2]}, b"", None, MalformedHeader, "a", True),
    ("end-before-begin", {"a": {**F32_4, "data_offsets": [4, 0]}}, b"\0" * 4, None,
     MalformedHeader, "a", True),
    ("hole-at-start", {"a": {**F32_4, "data_offsets": [4, 8]}}, b"\0" * 8, None,
     MalformedHeader, "a", True),
    ("hole-between", {"a": F32_4, "b": {**F32_4, "data_offsets": [8, 12]}}, b"\0" * 12, None,
     MalformedHeader, "b", True),
    ("overlap", {"a": {**F32_4, "shape": [2], "data_offsets": [0, 8]},
                 "b": {**F32_4, "data_offsets": [4, 8]}}, b"\0" * 8, None, MalformedHeader, "b",
     True),
    ("size-mismatch", {"a": {**F32_4, "shape": [2]}}, b"\0" * 4, None, MalformedHeader, "a", True),
    ("overflow", {"a": {**F32_4, "shape": [1 << 40, 1 << 40, 0], "data_offsets": [0, 0]}}, b"",
     None, MalformedHeader, "a", True),
    ("overflow-bits", {"a": {**F32_4, "shape": [1 << 62], "data_offsets": [0, 0]}}, b"",
     None, MalformedHeader, "a", True),
    ("dim-over-u64", {"a": {**F32_4, "shape": [1 << 64], "data_offsets": [0, 0]}}, b"",
     None, MalformedHeader, "a", True),
    ("misaligned-subbyte", {"a": {"dtype": "F4", "shape": [3], "data_offsets": [0, 1]}}, b"\0",
     None, MalformedHeader, "a", True),
    ("buffer-too-long", {"a": F32_4}, b"\0" * 5, None, MalformedHeader, None, True),
    ("buffer-too-short", {"a": F32_4}, b"\0" * 3, None, Truncated, "a", True),
    ("metadata-not-object", {"__metadata__": ["x"], "a": F32_4}, b"\0" * 4, None,
     MalformedHeader, None, True),
    ("metadata-int-value", {"__metadata__": {"x": 1}, "a": F32_4}, b"\0" * 4, None,
     MalformedHeader, None, True),
    ("metadata-nested", {"__metadata__": {"x": {"y": "z"}}, "a": F32_4}, b"\0" * 4, None,
     MalformedHeader, None, True),
    ("metadata-null", {"__metadata__": None, "a": F32_4}, b"\0" * 4, None, MalformedHeader, None,
     False),
]


@pytest.mark.parametrize("case", MALFORMED, ids=[c[0] for c in MALFORMED])
def test_malformed_header(tmp_path: Path, case: tuple) -> None:
    kind, header, data, n, exc, tensor, reference_rejects = case
    if header is None:
        path = tmp_path / "bad.safetensors"
        path.write_bytes(b"\x10\0\0")
    else:
        path = _file(tmp_path, header, data, n)
    with pytest.raises(exc) as info:
        st_format.open(path)
    err = info.value
    text = str(err)
    assert text.startswith(str(path)), text
    assert err.offset is not None and f"byte {err.offset}" in text, text
    assert err.hint, text
    if tensor is not None:
        assert err.tensor == tensor and repr(tensor) in text, text
    if reference_rejects:  # the reference agrees the file is bad
        with pytest.raises(Exception):
            with safetensors.safe_open(str(path), framework="numpy") as f:
                for k in f.keys():  # noqa: SIM118 - safe_open is not iterable
                    f.get_slice(k)


def test_header_over_limit(tmp_path: Path) -> None:
    path = _file(tmp_path, {"a": F32_4}, b"\0" * 4)
    with pytest.raises(LimitExceeded) as info:
        st_format.open(path, Limits(header_bytes=16))
    assert str(path) in str(info.value) and "header_bytes" in str(info.value)


def test_tensor_count_over_limit(tmp_path: Path) -> None:
    path = _file(tmp_path, {"a": F32_4, "b": {**F32_4, "data_offsets": [4, 8]}}, b"\0" * 8)
    assert len(st_format.open(path).weights) == 2
    with pytest.raises(LimitExceeded):
        st_format.open(path, Limits(tensors=1))


def test_error_offset_points_at_the_record(tmp_path: Path) -> None:
    path = _file(tmp_path, {"ok": F32_4, "bad": {**F32_4, "dtype": "Q7", "data_offsets": [4, 8]}},
                 b"\0" * 8)
    with pytest.raises(MalformedHeader) as info:
        st_format.open(path)
    raw = path.read_bytes()
    assert raw[info.value.offset :].startswith(b'"bad"')


def test_valid_subbyte_is_refused_not_misread(tmp_path: Path) -> None:
    path = _file(tmp_path, {"a": {"dtype": "F4", "shape": [4], "data_offsets": [0, 2]}}, b"\0\0")
    with safetensors.safe_open(str(path), framework="numpy"):
        pass  # the reference accepts it
    with pytest.raises(InputError, match="sub-byte") as info:
        st_format.open(path)
    assert info.value.tensor == "a"


def test_trailing_space_padding_is_accepted(tmp_path: Path) -> None:
    raw = json.dumps({"a": F32_4}).encode() + b"   \n\t\r"
    path = _file(tmp_path, raw, struct.pack("<f", 1.5))
    assert to_numpy(st_format.open(path).weights["a"]).tolist() == [1.5]


def test_out_of_order_offsets_are_sorted(tmp_path: Path) -> None:
    """Old writers did not sort records by offset; the reference sorts, so must we."""
    header = {"z": {**F32_4, "data_offsets": [4, 8]}, "y": F32_4}
    path = _file(tmp_path, header, struct.pack("<2f", 1.0, 2.0))
    ck = st_format.open(path)
    assert list(ck.weights) == ["y", "z"]
    assert to_numpy(ck.weights["z"]).tolist() == [2.0]


# ---------------------------------------------------------------------------- round trip property

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import assume, given, settings  # noqa: E402
from hypothesis import strategies as hst
from hypothesis.extra import numpy as hnp  # noqa: E402

_names = hst.text(min_size=1, max_size=12).filter(lambda s: s != "__metadata__")
_arrays = hst.sampled_from(NUMPY_DTYPES).flatmap(
    lambda dt: hnp.arrays(np.dtype(dt), hnp.array_shapes(min_dims=0, max_dims=3, min_side=0,
                                                         max_side=4)))


@settings(max_examples=60, deadline=None)
@given(tensors=hst.dictionaries(_names, _arrays, max_size=6),
       metadata=hst.none() | hst.dictionaries(hst.text(max_size=6), hst.text(max_size=12),
                                              max_size=3))
def test_roundtrip_property(tmp_path_factory: pytest.TempPathFactory, tensors: dict,
                            metadata: dict | None) -> None:
    from safetensors.numpy import save_file

    # safetensors 0.8 writes `{},"__metadata__":{}}` for no tensors and empty metadata: invalid
    # JSON that its own reader rejects too (found by this test).
    assume(tensors or metadata != {})
    path = tmp_path_factory.mktemp("rt") / "x.safetensors"
    save_file(tensors, str(path), metadata=metadata)
    ck = st_format.open(path)
    assert set(ck.weights) == set(tensors)
    assert ck.info["metadata"] == (metadata or {})
    for name, arr in tensors.items():
        got = to_numpy(ck.weights[name])
        assert got.dtype == arr.dtype and got.shape == arr.shape
        assert got.tobytes() == arr.tobytes()
