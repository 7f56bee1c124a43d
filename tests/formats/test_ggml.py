"""Dequantization of ggml block types equals the gguf package's, bit for bit.

Types the gguf package can quantize are compared on tensors its quantizer made; for the K-quants
(which it only dequantizes) random blocks with finite scales go through both dequantizers.
"""

from __future__ import annotations

import numpy as np
import pytest

from modelport import ggml
from modelport.dtypes import by_name
from modelport.errors import UsageError

gguf = pytest.importorskip("gguf")

QUANTIZED_BY_GGUF = ["Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "BF16"]
# Byte offsets of each block's f16 scale fields (ggml-common.h block_* structs).
SCALES = {"Q8_0": [0], "Q4_0": [0], "Q4_1": [0, 2], "Q5_0": [0], "Q5_1": [0, 2],
          "Q2_K": [80, 82], "Q3_K": [108], "Q4_K": [0, 2], "Q5_K": [0, 2], "Q6_K": [208]}


@pytest.mark.parametrize("name", QUANTIZED_BY_GGUF)
def test_dequantize_equals_gguf_on_its_quantizer_output(name: str) -> None:
    q = gguf.GGMLQuantizationType[name]
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((8, 256)) * rng.uniform(0.01, 100, (8, 1))).astype(np.float32)
    x[0, :64] = 0  # an all-zero block: d = 0
    blocks = gguf.quants.quantize(x, q)
    ref = gguf.quants.dequantize(blocks, q)
    mine = ggml.dequantize(by_name(name), blocks.reshape(-1)).reshape(ref.shape)
    assert np.array_equal(mine, ref)
    assert np.abs(mine - x).max() <= np.abs(x).max() / (4 if name in ("Q4_0", "Q4_1") else 8)


@pytest.mark.parametrize("name", sorted(SCALES))
def test_dequantize_equals_gguf_on_random_valid_blocks(name: str) -> None:
    q = gguf.GGMLQuantizationType[name]
    block, size = gguf.GGML_QUANT_SIZES[q]
    rng = np.random.default_rng(2)
    raw = rng.integers(0, 256, (40, size), dtype=np.uint8)
    for off in SCALES[name]:
        raw[:, off:off + 2] = rng.uniform(-2, 2, (40, 1)).astype("<f2").view(np.uint8)
    ref = gguf.quants.dequantize(raw.reshape(4, -1), q).reshape(-1)
    mine = ggml.dequantize(by_name(name), raw)
    assert mine.dtype == np.float32 and mine.shape == (40 * block,)
    assert np.isfinite(ref).all() and np.array_equal(mine, ref)


def test_quantize_q8_0_equals_gguf_bit_for_bit() -> None:
    rng = np.random.default_rng(3)
    x = rng.standard_normal(32 * 500).astype(np.float32) * 3
    x[:32] = 0
    x[32:64] = np.float32(0.5) * np.arange(32) / 127 * 127  # exact halves: rounding away from 0
    ref = gguf.quants.quantize(x.reshape(1, -1), gguf.GGMLQuantizationType.Q8_0).reshape(-1)
    assert np.array_equal(ggml.quantize_q8_0(x), ref)


@pytest.mark.parametrize("name", ["IQ2_XXS", "IQ4_NL", "TQ1_0", "MXFP4", "Q8_K"])
def test_other_types_are_refused_by_name(name: str) -> None:
    d = by_name(name)
    with pytest.raises(UsageError, match=name):
        ggml.dequantize(d, bytes(d.block_bytes))


def test_whole_blocks_recuts_chunks() -> None:
    data = np.arange(34 * 5, dtype=np.uint8)
    pieces = [data[:10], data[10:80], data[80:81], data[81:]]
    out = list(ggml.whole_blocks(pieces, 34))
    assert all(p.size % 34 == 0 for p in out)
    assert np.array_equal(np.concatenate(out), data)


def test_to_float_reads_a_gguf_tensor(tmp_path) -> None:
    import modelport

    x = np.random.default_rng(4).standard_normal((3, 64)).astype(np.float32)
    q = gguf.GGMLQuantizationType.Q8_0
    w = gguf.GGUFWriter(str(tmp_path / "t.gguf"), "llama")
    w.add_tensor("t", gguf.quants.quantize(x, q), raw_dtype=q)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    entry = modelport.open(tmp_path / "t.gguf").weights["t"]
    got = ggml.to_float(entry)
    assert got.shape == (3, 64) and got.dtype == np.float32
    assert np.array_equal(got, gguf.quants.dequantize(gguf.quants.quantize(x, q), q))
    assert ggml.to_float(entry, "F16").dtype == np.float16
