"""Every fixture of the corpus, into every writable format and back, read by the real consumers.

The expectation is always what the source's reference reader gives (``torch.load(weights_only=
True)``, ``safe_open``, ``np.load``, ``onnx.numpy_helper``); the outputs are read with
``safetensors.safe_open``, ``torch.load(weights_only=True)`` and ``numpy.load``. Equality is bit
for bit: dtype code, shape and the bytes in C order.
"""

from __future__ import annotations

import json
import struct
import zipfile
from collections import OrderedDict
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from convert_helpers import ALL_SOURCES, UNSAFE, assert_same, canon, need, read_output, reference  # noqa: E402

from modelport.convert import convert  # noqa: E402
from modelport.errors import UsageError  # noqa: E402

SUFFIX = {"safetensors": ".safetensors", "torch": ".pt", "npz": ".npz"}
# A format refuses a source that holds a type it cannot represent, naming the type.
REFUSED = {
    ("dtypes_zip", "safetensors"): "C128", ("dtypes_legacy", "safetensors"): "C128",
    ("dtypes_zip", "npz"): "BF16", ("dtypes_legacy", "npz"): "BF16",
    ("layouts_zip", "npz"): "BF16", ("layouts_legacy", "npz"): "BF16",
    ("onnx", "npz"): "BF16", ("onnx_external", "npz"): "BF16",
}


@pytest.mark.parametrize("fmt", list(SUFFIX))
@pytest.mark.parametrize("name", ALL_SOURCES)
def test_round_trip(corpus: dict[str, Path], tmp_path: Path, name: str, fmt: str) -> None:
    src = need(corpus, name)
    want = reference(corpus, name)
    dst = tmp_path / f"out{SUFFIX[fmt]}"
    if (name, fmt) in REFUSED:
        with pytest.raises(UsageError, match=REFUSED[name, fmt]):
            convert(src, dst, allow_unsafe=name in UNSAFE)
        assert list(tmp_path.iterdir()) == []  # not even a temporary file is left
        return
    convert(src, dst, allow_unsafe=name in UNSAFE)
    assert_same(read_output(dst), want, f"{name} -> {fmt}")
    back = tmp_path / "back.pt"
    convert(dst, back)
    assert_same(read_output(back), want, f"{name} -> {fmt} -> torch")


@pytest.mark.parametrize("fmt", ["safetensors", "torch"])
@pytest.mark.parametrize("name", ["hf_bert_bin", "hf_gpt2_st", "layouts_zip", "npz", "onnx"])
def test_folder_round_trip(corpus: dict[str, Path], tmp_path: Path, name: str, fmt: str) -> None:
    """Sharded folders: every tensor in exactly one shard, the index matches the shards."""
    src = need(corpus, name)
    want = reference(corpus, name)
    dst = tmp_path / "repo"
    convert(src, dst, to=fmt, max_shard_size="64B")
    assert_same(read_output(dst), want, f"{name} -> {fmt} folder")
    stem, index = (("model", "model.safetensors.index.json") if fmt == "safetensors"
                   else ("pytorch_model", "pytorch_model.bin.index.json"))
    data = json.loads((dst / index).read_text())
    shards = sorted(p.name for p in dst.iterdir() if p.name.startswith(stem + "-"))
    assert sorted(set(data["weight_map"].values())) == shards
    assert shards[0].startswith(f"{stem}-00001-of-{len(shards):05d}")
    assert set(data["weight_map"]) == set(want)
    if fmt == "safetensors":  # no storage is shared: the sizes add up exactly
        assert data["metadata"]["total_size"] == sum(len(v[2]) for v in want.values())
    back = tmp_path / "merged.pt"
    convert(dst, back)
    assert_same(read_output(back), want, f"{name} -> {fmt} folder -> merged")


@pytest.mark.parametrize(("name", "fmt"), [("dtypes_st", "safetensors"), ("dtypes_np", "npz"),
                                           ("dtypes_st", "torch"), ("dtypes_np", "torch")])
def test_every_dtype_a_format_holds(dtype_files: dict[str, Path], tmp_path: Path, name: str,
                                    fmt: str) -> None:
    src = dtype_files[name]
    want = canon(torch.load(src, weights_only=True))
    dst = tmp_path / f"out{SUFFIX[fmt]}"
    convert(src, dst)
    assert_same(read_output(dst), want, name)
    back = tmp_path / "back.pt"
    convert(dst, back)
    assert_same(read_output(back), want, name)


# -- the torch zip layout --------------------------------------------------------------------------


def _without_serialization_id(path: Path) -> bytes:
    """The file's bytes with the random serialization id (and its CRC) blanked out."""
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        info = next(i for i in z.infolist() if i.filename.endswith(".data/serialization_id"))
        ident = z.read(info)
    at = raw.find(ident)
    raw[at:at + len(ident)] = b"0" * len(ident)
    return bytes(raw).replace(struct.pack("<I", info.CRC), b"\0" * 4)


def test_torch_output_is_laid_out_as_torch_save(tmp_path: Path) -> None:
    """A state_dict written by modelport is torch.save's file, byte for byte (but for the
    random serialization id): same pickle, member order, padding, zip64 records."""
    g = torch.Generator().manual_seed(3)
    tied = torch.randn(4, 3, generator=g)
    sd = OrderedDict([("emb.weight", tied), ("ln.bias", torch.zeros(3, dtype=torch.bfloat16)),
                      ("step", torch.tensor(7)), ("empty", torch.empty(0)),
                      ("u16", torch.zeros(5, dtype=torch.uint16)), ("head.weight", tied)])
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    torch.save(sd, tmp_path / "a" / "model.pt")
    convert(tmp_path / "a" / "model.pt", tmp_path / "b" / "model.pt")
    assert (_without_serialization_id(tmp_path / "b" / "model.pt")
            == _without_serialization_id(tmp_path / "a" / "model.pt"))


def test_full_torch_output_is_torch_saves_file(corpus: dict[str, Path], tmp_path: Path) -> None:
    """--full rewrites a whole tree: views, strides, offsets, a Parameter, tied weights."""
    src = need(corpus, "layouts_zip")
    (tmp_path / "out").mkdir()
    dst = tmp_path / "out" / src.name
    convert(src, dst, full=True)
    assert _without_serialization_id(dst) == _without_serialization_id(src)
    a, b = torch.load(src, weights_only=True), torch.load(dst, weights_only=True)
    assert b["decoder.proj.weight"].data_ptr() == b["encoder.embed.weight"].data_ptr()
    assert isinstance(b["param"], torch.nn.Parameter)
    assert b["transposed"].stride() == a["transposed"].stride()


def test_tied_weights_stay_tied_in_torch(corpus: dict[str, Path], tmp_path: Path) -> None:
    dst = tmp_path / "gpt2.pt"
    convert(need(corpus, "hf_gpt2_bin"), dst)
    sd = torch.load(dst, weights_only=True)
    assert sd["lm_head.weight"].data_ptr() == sd["transformer.wte.weight"].data_ptr()
