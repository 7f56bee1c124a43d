"""Tiny transformers models and PEFT LoRA adapters trained on them for a few steps.

Built once per session (a few seconds): a LLaMA-style model and a GPT-2 (whose Conv1D layers
store weights transposed, PEFT's ``fan_in_fan_out``), each saved with ``save_pretrained``; and
adapters trained three steps so that lora_B is not the zeros it starts as.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest


@dataclass
class Built:
    base: Path  # the base model folder (save_pretrained)
    adapters: dict[str, Path]  # variant -> adapter folder
    make_base: Any  # () -> a fresh base model with the saved weights
    inputs: Any  # token ids for a logits check


def _train(model: Any, vocab: int, steps: int = 3) -> None:
    import torch

    g = torch.Generator().manual_seed(1)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=2e-2)
    model.train()
    for _ in range(steps):
        ids = torch.randint(0, vocab, (2, 8), generator=g)
        loss = model(input_ids=ids, labels=ids).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()


def _adapter(make_base: Any, out: Path, vocab: int, safe: bool = True, **cfg: Any) -> Path:
    import peft
    import torch

    torch.manual_seed(5)
    model = peft.get_peft_model(make_base(), peft.LoraConfig(**cfg))
    _train(model, vocab)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.save_pretrained(out, safe_serialization=safe)
    return out


@pytest.fixture(scope="session")
def llama(tmp_path_factory: pytest.TempPathFactory) -> Built:
    pytest.importorskip("peft")
    torch = pytest.importorskip("torch")
    from transformers import LlamaConfig, LlamaForCausalLM

    root = tmp_path_factory.mktemp("llama")
    cfg = LlamaConfig(vocab_size=96, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32,
                      tie_word_embeddings=False)
    torch.manual_seed(0)
    LlamaForCausalLM(cfg).save_pretrained(root / "base")

    def make_base() -> Any:
        return LlamaForCausalLM.from_pretrained(root / "base")

    common = dict(r=4, lora_alpha=8, lora_dropout=0.1,
                  target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "down_proj"])
    ads = {
        "st": _adapter(make_base, root / "lora_st", 96, **common),
        "bin": _adapter(make_base, root / "lora_bin", 96, safe=False, **common),
        "rslora": _adapter(make_base, root / "lora_rs", 96, use_rslora=True,
                           rank_pattern={"o_proj": 2}, alpha_pattern={"layers.1.self_attn.q_proj": 3},
                           **common),
        "dora": _adapter(make_base, root / "lora_dora", 96, use_dora=True, r=4, lora_alpha=8,
                         target_modules=["q_proj", "v_proj"]),
    }
    ids = torch.randint(0, 96, (2, 7), generator=torch.Generator().manual_seed(3))
    return Built(root / "base", ads, make_base, ids)


@pytest.fixture(scope="session")
def gpt2(tmp_path_factory: pytest.TempPathFactory) -> Built:
    pytest.importorskip("peft")
    torch = pytest.importorskip("torch")
    from transformers import GPT2Config, GPT2LMHeadModel

    root = tmp_path_factory.mktemp("gpt2")
    cfg = GPT2Config(n_layer=2, n_embd=32, n_head=4, vocab_size=80, n_positions=32,
                     bos_token_id=0, eos_token_id=0)
    torch.manual_seed(0)
    GPT2LMHeadModel(cfg).save_pretrained(root / "base")

    def make_base() -> Any:
        return GPT2LMHeadModel.from_pretrained(root / "base")

    ads = {"st": _adapter(make_base, root / "lora_st", 80, r=4, lora_alpha=16,
                          target_modules=["c_attn", "c_proj", "c_fc"], fan_in_fan_out=True)}
    ids = torch.randint(0, 80, (2, 7), generator=torch.Generator().manual_seed(3))
    return Built(root / "base", ads, make_base, ids)
