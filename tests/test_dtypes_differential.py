"""Every dtype torch 2.13 can save reads, converts and verifies, bit for bit (issue #7 item 7).

For each dtype torch.save accepts, in both serializations (zip, and the legacy stacked pickles
of ``_use_new_zipfile_serialization=False``), a file holds the same bytes three ways: a
contiguous tensor, its transpose and a slice with a storage offset. modelport must open it,
``to_numpy`` must give torch's bytes in C order (compared as raw bytes, so NaN payloads and
bits types count), ``convert`` must write it to every target that can hold the dtype (checked
by that target's own reader: ``torch.load``, ``safetensors.torch.load_file``, ``np.load``) and
refuse the others, and ``verify`` must call source and output the same.

The dtype list is torch's, not modelport's: a dtype torch can save that ``dtypes.py`` does not
know fails ``test_every_savable_dtype_has_a_row``.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import pytest

from modelport import dtypes
from modelport import open as mp_open
from modelport.convert import convert, verify
from modelport.errors import UsageError
from modelport.tensors import to_numpy

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch

warnings.filterwarnings("ignore", message=".*(ComplexHalf|quantize_per|deprecated).*")

_QUANTIZED = {torch.qint8, torch.quint8, torch.qint32, torch.quint4x2, torch.quint2x4}
# Same-width integer types: ``Tensor.view(dtype)`` of one keeps any strides, and torch copies
# them, where it cannot copy bits8 or float4 pairs themselves.
_HOLDERS = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def _all_dtypes() -> list[torch.dtype]:
    return sorted({v for v in vars(torch).values() if isinstance(v, torch.dtype)}, key=str)


def _make(dtype: torch.dtype, rows: int = 4, cols: int = 6) -> torch.Tensor:
    """A (rows, cols) tensor of ``dtype`` whose bytes are random (NaNs and odd bit patterns
    included); bool stays 0/1 and quantized types get real quantized values."""
    g = torch.Generator().manual_seed(7)
    if dtype in _QUANTIZED:
        x = torch.randn(rows, cols, generator=g) * 4
        return torch.quantize_per_tensor(x, 0.25, 3 if dtype != torch.qint8 else 0, dtype)
    if dtype == torch.bool:
        return torch.rand(rows, cols, generator=g) > 0.5
    width = torch.empty(0, dtype=dtype).element_size()
    raw = torch.randint(0, 256, (rows * cols * width,), dtype=torch.uint8, generator=g)
    return raw.view(dtype).reshape(rows, cols)


def _savable(dtype: torch.dtype) -> bool:
    try:
        torch.save(_make(dtype), io.BytesIO())
    except Exception:  # torch refuses it (int1..int7, uint1..uint7: "not recognized")
        return False
    return True


SAVABLE = [d for d in _all_dtypes() if _savable(d)]
_PACKED = {torch.quint4x2, torch.quint2x4}


def _torch_bytes(t: torch.Tensor) -> bytes:
    """The tensor's bytes in C order, as torch itself lays them out."""
    if t.is_quantized:
        t = t.int_repr()  # packed types: their packed bytes
    u = t.view(_HOLDERS[t.element_size()]) if t.element_size() in _HOLDERS else t
    return u.contiguous().numpy().tobytes()


def _views(dtype: torch.dtype) -> dict[str, torch.Tensor]:
    base = _make(dtype)
    if dtype in _PACKED:  # no element has an address: torch cannot take a strided view's bytes
        return {"c": base}
    return {"c": base, "t": base.t(), "s": base[1:, 2:5]}


def _name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def test_every_savable_dtype_has_a_row():
    assert len(SAVABLE) >= 25  # torch 2.13 saves 28; a smaller list means the probe broke
    unknown = [_name(d) for d in SAVABLE if dtypes.by_torch(_name(d)) is None]
    assert not unknown


def _write(tmp: Path, dtype: torch.dtype, zipped: bool) -> tuple[Path, dict[str, torch.Tensor]]:
    views = _views(dtype)
    path = tmp / f"{_name(dtype)}-{'zip' if zipped else 'legacy'}.pt"
    torch.save(views, path, _use_new_zipfile_serialization=zipped)
    return path, views


def _holds(target: str, dt: dtypes.DType, quantized: bool) -> bool:
    """Whether the target format can hold the dtype, from the target's own side."""
    if quantized:
        return False  # modelport does not convert quantized tensors yet (plan._check)
    if target == "torch":
        return True
    if target == "npz":  # numpy's own types only: ml_dtypes types have no .npy descr
        return dt.numpy is not None and dt.numpy[0] in "<|"
    # safetensors: whatever safetensors.torch itself can write. float4 pairs it writes as F4
    # with twice the last dimension: modelport does not map that shape yet.
    from safetensors.torch import save

    try:
        save({"x": _make(getattr(torch, str(dt.torch)))})
    except Exception:  # "KeyError: torch.complex128", ...
        return False
    return dt.name != "F4_X2"


def _read_back(target: str, path: Path) -> dict[str, bytes]:
    if target == "torch":
        out = torch.load(path, weights_only=True)
        return {k: _torch_bytes(v) for k, v in out.items()}
    if target == "safetensors":
        from safetensors.torch import load_file

        return {k: _torch_bytes(v) for k, v in load_file(path).items()}
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k].tobytes() for k in z.files}


@pytest.mark.parametrize("zipped", [True, False], ids=["zip", "legacy"])
@pytest.mark.parametrize("dtype", SAVABLE, ids=_name)
def test_dtype_reads_converts_and_verifies(tmp_path, dtype, zipped):
    src, views = _write(tmp_path, dtype, zipped)
    ck = mp_open(src)
    want = dtypes.by_torch(_name(dtype))
    assert sorted(ck.weights) == sorted(views)
    for name, t in views.items():
        entry = ck.weights[name]
        assert entry.dtype == want and entry.shape == tuple(t.shape)
        arr = to_numpy(entry)
        assert np.ascontiguousarray(arr).tobytes() == _torch_bytes(t), name
        if dtype not in _PACKED:
            assert arr.shape == tuple(t.shape) and arr.dtype.itemsize == t.element_size()

    for target, suffix in (("torch", ".pt"), ("safetensors", ".safetensors"), ("npz", ".npz")):
        dst = tmp_path / f"out{suffix}"
        if not _holds(target, want, dtype in _QUANTIZED):
            with pytest.raises(UsageError):
                convert(src, dst)
            assert not dst.exists()
            continue
        convert(src, dst)
        assert _read_back(target, dst) == {k: _torch_bytes(v) for k, v in views.items()}
        result = verify(src, dst)
        assert result.same and result.compared == len(views), result.differences


def test_zip_and_legacy_files_of_every_dtype_verify_as_the_same(tmp_path):
    """One file per serialization with every savable non-quantized dtype: the two agree."""
    trees = {_name(d) + "." + k: v for d in SAVABLE if d not in _QUANTIZED
             for k, v in _views(d).items()}
    a, b = tmp_path / "all.zip.pt", tmp_path / "all.legacy.pt"
    torch.save(trees, a)
    torch.save(trees, b, _use_new_zipfile_serialization=False)
    result = verify(a, b)
    assert result.same and result.compared == len(trees)
