"""Converted Hugging Face folders load with ``transformers.from_pretrained`` and compute the same.

Sources are the corpus's small BERT and GPT-2 (built from a config), saved by transformers as
safetensors shards and as ``pytorch_model-*.bin`` shards; the original is loaded from its own
folder, the converted one from ours, and their outputs must be equal, exactly.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from convert_helpers import need  # noqa: E402

from modelport.convert import convert  # noqa: E402
from modelport.formats.safetensors import parse_header  # noqa: E402

IDS = torch.tensor([[5, 17, 42, 3, 98, 11, 7]])


def _load(cls: type, path: Path, **kw: object) -> object:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return cls.from_pretrained(path, **kw).eval()


def _bert_out(path: Path) -> torch.Tensor:
    with torch.no_grad():
        return _load(transformers.BertModel, path)(IDS).last_hidden_state


def _gpt2_logits(path: Path, **kw: object) -> torch.Tensor:
    with torch.no_grad():
        return _load(transformers.GPT2LMHeadModel, path, **kw)(IDS).logits


def test_bert_bin_shards_to_safetensors_shards(corpus: dict[str, Path], tmp_path: Path) -> None:
    dst = tmp_path / "bert"
    result = convert(need(corpus, "hf_bert_bin"), dst, max_shard_size="30KB", jobs=3)
    shards = sorted(p.name for p in dst.glob("model-*.safetensors"))
    assert len(shards) > 1 and (dst / "model.safetensors.index.json").exists()
    assert (dst / "config.json").read_bytes() == (need(corpus, "hf_bert_bin") / "config.json").read_bytes()
    assert "config.json" in result.files
    assert not any("left out" in n for n in result.notes)  # config.json is copied, not dropped
    assert torch.equal(_bert_out(dst), _bert_out(need(corpus, "hf_bert_st")))


def test_gpt2_safetensors_to_torch_shards(corpus: dict[str, Path], tmp_path: Path) -> None:
    dst = tmp_path / "gpt2"
    convert(need(corpus, "hf_gpt2_st"), dst, to="torch", max_shard_size="40KB")
    assert sorted(p.name for p in dst.glob("pytorch_model-*.bin"))
    assert (dst / "pytorch_model.bin.index.json").exists()
    assert (dst / "generation_config.json").exists()
    want = _gpt2_logits(need(corpus, "hf_gpt2_st"))
    assert torch.equal(_gpt2_logits(dst, use_safetensors=False), want)


def test_gpt2_merged_with_dedupe(corpus: dict[str, Path], tmp_path: Path) -> None:
    """Tied lm_head/wte stored once, the alias recorded as safetensors.torch.save_model does."""
    dst = tmp_path / "gpt2"
    result = convert(need(corpus, "hf_gpt2_bin"), dst, dedupe=True, max_shard_size="1GB")
    assert sorted(p.name for p in dst.iterdir()) == ["config.json", "generation_config.json",
                                                      "model.safetensors"]
    _, entries, meta = parse_header(dst / "model.safetensors")
    assert "lm_head.weight" not in {e.name for e in entries}
    assert meta["lm_head.weight"] == "transformer.wte.weight"
    assert any("dedupe" in n for n in result.notes)
    assert torch.equal(_gpt2_logits(dst), _gpt2_logits(need(corpus, "hf_gpt2_st")))
    # Converting back restores the alias as a tied tensor.
    back = tmp_path / "back.pt"
    convert(dst, back)
    sd = torch.load(back, weights_only=True)
    assert sd["lm_head.weight"].data_ptr() == sd["transformer.wte.weight"].data_ptr()


def test_gpt2_cast_to_bf16(corpus: dict[str, Path], tmp_path: Path) -> None:
    """--dtype BF16 gives the weights model.to(torch.bfloat16) has, and says so in config."""
    dst = tmp_path / "gpt2"
    result = convert(need(corpus, "hf_gpt2_st"), dst, dtype="BF16", verify=True)
    cfg = json.loads((dst / "config.json").read_text())
    assert cfg.get("torch_dtype", cfg.get("dtype")) == "bfloat16"
    assert result.verified.same
    ref = _load(transformers.GPT2LMHeadModel, need(corpus, "hf_gpt2_st")).to(torch.bfloat16)
    got = _load(transformers.GPT2LMHeadModel, dst, dtype=torch.bfloat16)
    for (n, a), (m, b) in zip(ref.state_dict().items(), got.state_dict().items()):
        assert n == m and a.dtype == b.dtype and torch.equal(a, b), n
    with torch.no_grad():
        assert torch.equal(got(IDS).logits, ref(IDS).logits)
