"""Fixtures of the conversion tests (the shared corpus is tests/conftest.py's ``corpus``)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def dtype_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """torch.save files with every dtype safetensors holds, and every dtype numpy holds."""
    torch = pytest.importorskip("torch")
    out = tmp_path_factory.mktemp("dtypes")
    g = torch.Generator().manual_seed(11)

    def sample(dt: torch.dtype) -> torch.Tensor:
        if dt == torch.bool:
            return torch.rand(3, 2, generator=g) > 0.5
        if dt.is_floating_point or dt.is_complex:
            return (torch.randn(3, 2, generator=g) * 3).to(dt)
        hi = min(torch.iinfo(dt).max, 2**62)
        return torch.randint(0, hi, (3, 2), generator=g, dtype=torch.int64).to(dt)

    st = [torch.float64, torch.float32, torch.float16, torch.bfloat16, torch.float8_e4m3fn,
          torch.float8_e5m2, torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8,
          torch.uint16, torch.uint32, torch.uint64, torch.bool, torch.complex64]
    np_ = [torch.float64, torch.float32, torch.float16, torch.int64, torch.int32, torch.int16,
           torch.int8, torch.uint8, torch.uint16, torch.uint32, torch.uint64, torch.bool,
           torch.complex64, torch.complex128]
    paths = {}
    for name, dts in (("dtypes_st", st), ("dtypes_np", np_)):
        paths[name] = out / f"{name}.pt"
        torch.save({str(d).removeprefix("torch."): sample(d) for d in dts}, paths[name])
    return paths
