"""The byte plumbing: zip64 records, 64-byte alignment, kernel-copy fallbacks, bounded blocks."""

from __future__ import annotations

import errno
import io
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from convert_helpers import canon, read_output  # noqa: E402

import modelport  # noqa: E402
from modelport.convert import (
    convert,  # noqa: E402
    zipwrite,  # noqa: E402
)
from modelport.convert.plan import Item, Shard  # noqa: E402
from modelport.convert.stream import Sink, Sources, blocks, flat_chunks  # noqa: E402
from modelport.convert.writers import write_safetensors  # noqa: E402
from modelport.dtypes import by_name  # noqa: E402
from modelport.model import Storage, TensorEntry  # noqa: E402


@pytest.fixture
def state(tmp_path: Path) -> Path:
    g = torch.Generator().manual_seed(1)
    path = tmp_path / "src.pt"
    torch.save({"a": torch.randn(40, 30, generator=g), "b": torch.randn(7, generator=g),
                "c": torch.arange(100, dtype=torch.int16).reshape(10, 10).t()}, path)
    return path


def _data_offsets(path: Path) -> dict[str, int]:
    archive = modelport.containers.zip.ZipArchive.open(str(path))  # type: ignore[attr-defined]
    return {m.name: m.data_offset for m in archive.members}


@pytest.mark.parametrize("suffix", [".pt", ".npz"])
def test_zip64_records(state: Path, tmp_path: Path, suffix: str,
                       monkeypatch: pytest.MonkeyPatch) -> None:
    """With the 4 GiB threshold lowered to 100 bytes, sizes and offsets go to zip64 extras,
    as miniz writes them: torch.load, numpy, zipfile and modelport still read the file."""
    import modelport.containers.zip  # noqa: F401

    monkeypatch.setattr(zipwrite, "ZIP64_LIMIT", 100)
    dst = tmp_path / f"out{suffix}"
    convert(state, dst)
    with zipfile.ZipFile(dst) as z:
        assert z.testzip() is None  # every CRC checks out
        assert any(i.extra[:2] == b"\x01\x00" for i in z.infolist())
    want = canon({k: v.contiguous() for k, v in torch.load(state, weights_only=True).items()})
    assert read_output(dst) == want
    assert {n: t.shape for n, t in modelport.open(dst).weights.items()} == {
        "a": (40, 30), "b": (7,), "c": (10, 10)}


@pytest.mark.parametrize("suffix", [".pt", ".npz"])
def test_member_data_is_64_byte_aligned(state: Path, tmp_path: Path, suffix: str) -> None:
    import modelport.containers.zip  # noqa: F401

    dst = tmp_path / f"out{suffix}"
    convert(state, dst)
    offsets = _data_offsets(dst)
    assert offsets and all(off % 64 == 0 for off in offsets.values())
    if suffix == ".npz":  # and the array data inside each .npy member
        for name, off in offsets.items():
            raw = dst.read_bytes()[off:off + 10]
            hlen = int.from_bytes(raw[8:10], "little")
            assert (off + 10 + hlen) % 64 == 0, name


def _entry(path: Path, n: int) -> TensorEntry:
    return TensorEntry("w", by_name("F32"), (n,), Storage(4 * n, path=str(path)))


def _write(entry: TensorEntry, target: object) -> None:
    shard = Shard("", [Item("w", entry, entry.dtype)], metadata={"format": "pt"})
    with Sources() as sources:
        sink = Sink(target, "out", sources=sources)  # type: ignore[arg-type]
        write_safetensors(shard, sink, sources, None)
        sink.close(fsync=False)


@pytest.mark.parametrize("broken", ["none", "copy_file_range", "both"])
def test_kernel_copy_fallbacks(tmp_path: Path, broken: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """copy_file_range, else sendfile, else pread/write: the same bytes every way."""
    src = tmp_path / "raw"
    src.write_bytes(os.urandom(3 << 20))
    entry = _entry(src, 3 << 18)
    want = io.BytesIO()
    _write(entry, want)  # a file object: plain writes

    def fail(*a: object, **k: object) -> int:
        raise OSError(errno.EXDEV, "cross-device")

    if broken != "none":
        monkeypatch.setattr(os, "copy_file_range", fail)
    if broken == "both":
        monkeypatch.setattr(os, "sendfile", fail)
    fd = os.open(tmp_path / "out", os.O_WRONLY | os.O_CREAT)
    try:
        _write(entry, fd)
    finally:
        os.close(fd)
    assert (tmp_path / "out").read_bytes() == want.getvalue()


def test_truncated_source_is_an_error(tmp_path: Path) -> None:
    src = tmp_path / "raw"
    src.write_bytes(b"\0" * 1000)
    fd = os.open(tmp_path / "out", os.O_WRONLY | os.O_CREAT)
    try:
        with pytest.raises(modelport.errors.InputError):
            _write(_entry(src, 1000), fd)  # claims 4000 bytes
    finally:
        os.close(fd)


@pytest.mark.parametrize("shape_strides", [((6, 4), (1, 6)), ((3, 4, 5), (20, 1, 4)),
                                           ((4, 3), (0, 1)), ((2, 3, 2, 2), (12, 1, 6, 3))])
def test_blocks_are_bounded_and_in_c_order(tmp_path: Path, shape_strides: tuple) -> None:
    shape, strides = shape_strides
    base = np.arange(200, dtype=np.float32)
    path = tmp_path / "raw"
    path.write_bytes(base.tobytes())
    entry = TensorEntry("t", by_name("F32"), shape, Storage(800, path=str(path)), 3, strides)
    want = np.lib.stride_tricks.as_strided(base[3:], shape, [s * 4 for s in strides]).ravel()
    with Sources() as sources:
        got = list(blocks(entry, sources, budget_bytes=24))
        assert max(b.size for b in got) <= 6
        assert np.array_equal(np.concatenate(got), want)
        flat = list(flat_chunks(entry, sources, 5))
        assert [c.size for c in flat[:-1]] == [5] * (len(flat) - 1)
        assert np.array_equal(np.concatenate(flat), want)
