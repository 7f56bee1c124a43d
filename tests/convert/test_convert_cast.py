"""--dtype casts bit for bit as ``torch.Tensor.to`` on a contiguous CPU tensor does.

Every 16-bit pattern (NaNs, subnormals, infinities included) is checked exhaustively; 32- and
64-bit sources on a few million random patterns plus the edge cases rounding gets wrong (ties,
overflow to infinity, the largest finite values, NaN payloads, signed zeros). Then the same
through ``convert``: chunked, strided sources and all.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from modelport.convert import convert  # noqa: E402
from modelport.convert.cast import cast_array  # noqa: E402
from modelport.dtypes import by_name  # noqa: E402

TORCH = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
         "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2}
INT = {8: (np.uint64, torch.int64), 4: (np.uint32, torch.int32), 2: (np.uint16, torch.int16),
       1: (np.uint8, torch.uint8)}
EDGES32 = [0x00000000, 0x80000000, 0x7F800000, 0xFF800000, 0x7FC00000, 0xFFC00ABC, 0x7F800001,
           0x7FC00ABC, 0x477FEFFF, 0x477FF000, 0x477FE000, 0x7F7FFFFF, 0x33000000, 0x33000001,
           0x387FC000, 0x00000001, 0x80000001, 0x3F808000, 0x3F818000, 0x3F80FFFF, 0x7F7F8000]


def _patterns(name: str) -> np.ndarray:
    size = by_name(name).itemsize
    uint = INT[size][0]
    if size == 2:
        return np.arange(1 << 16, dtype=np.uint32).astype(uint)
    rng = np.random.default_rng(size)
    bits = rng.integers(0, np.iinfo(uint).max, 2_000_000, dtype=uint, endpoint=True)
    if size == 4:
        bits = np.concatenate([bits, np.array(EDGES32, dtype=uint)])
    return bits


@pytest.mark.parametrize(("src", "dst"), [(s, d) for s in ("F64", "F32", "F16", "BF16")
                                          for d in ("F32", "F16", "BF16", "F8_E4M3", "F8_E5M2")
                                          if s != d])
def test_cast_matches_torch(src: str, dst: str) -> None:
    bits = _patterns(src)
    x = bits.view(by_name(src).np_dtype())
    got = cast_array(x, by_name(src), by_name(dst))
    size = by_name(dst).itemsize
    t = torch.from_numpy(bits.view(f"i{bits.dtype.itemsize}").copy()).view(TORCH[src])
    want = t.to(TORCH[dst]).view(INT[size][1]).numpy().view(INT[size][0])
    g = got.view(INT[size][0])
    bad = np.nonzero(g != want)[0]
    assert bad.size == 0, [(hex(bits[i]), hex(g[i]), hex(want[i])) for i in bad[:5]]


def test_convert_casts_chunk_by_chunk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Through convert: small chunks, a strided view, integers and bool untouched."""
    import modelport.convert.stream as stream

    monkeypatch.setattr(stream, "CHUNK", 4096)
    g = torch.Generator().manual_seed(5)
    w = torch.randn(64, 300, generator=g) * 1000
    w.view(-1)[::97] = float("nan")
    sd = {"w": w, "wt": w.t(), "h": torch.randn(99, generator=g).to(torch.float16),
          "d": torch.randn(7, 5, generator=g, dtype=torch.float64), "i": torch.arange(9),
          "m": torch.rand(4) > 0.5, "e": torch.empty(0, 3)}
    torch.save(sd, tmp_path / "a.pt")
    convert(tmp_path / "a.pt", tmp_path / "b.safetensors", dtype="BF16", verify=True)
    from safetensors.torch import load_file

    out = load_file(tmp_path / "b.safetensors")
    def raw(t: torch.Tensor) -> torch.Tensor:
        return t.contiguous().reshape(-1).view(torch.uint8)

    for k, v in sd.items():
        want = v.contiguous().to(torch.bfloat16) if v.is_floating_point() else v
        assert out[k].dtype == want.dtype and torch.equal(raw(out[k]), raw(want)), k


@pytest.mark.parametrize(("spelling", "code"), [
    ("fp16", "F16"), ("float16", "F16"), ("half", "F16"), ("bf16", "BF16"),
    ("bfloat16", "BF16"), ("fp32", "F32"), ("float32", "F32"), ("F32", "F32"),
    ("fp8", "F8_E4M3"), ("float8_e5m2", "F8_E5M2")])
def test_dtype_spellings(tmp_path: Path, spelling: str, code: str,
                         capsys: pytest.CaptureFixture[str]) -> None:
    from modelport.cli import main

    torch.save({"w": torch.randn(4, 4)}, tmp_path / "a.pt")
    out = tmp_path / f"{spelling}.safetensors"
    assert main(["convert", str(tmp_path / "a.pt"), str(out), "--dtype", spelling, "-q"]) == 0
    from safetensors.torch import load_file

    assert load_file(out)["w"].dtype == TORCH[code]
    assert main(["verify", str(tmp_path / "a.pt"), str(out), "--cast", spelling]) == 0
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["convert", str(tmp_path / "a.pt"), str(out), "--dtype", "fp17"])
    assert "unknown dtype 'fp17'" in capsys.readouterr().err
