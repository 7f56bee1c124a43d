"""Small transformers models with random configs, for recognition and export tests.

Every size the file can reveal (layers, widths, vocabulary, MLP width, positions) is drawn at
random from a seeded generator, never left at the family's default; heads follow the family's
usual head width (64), and the values no shape shows (epsilons) the released models' ones, as
recognition assumes. ``wrap`` puts the state_dict the way training
code leaves it: under ``module.`` (DDP), ``_orig_mod.`` (torch.compile) or ``{'state_dict': ...}``.
"""

from __future__ import annotations

import random
from typing import Any

# family -> (transformers class, model_type, config maker)
FAMILIES: dict[str, tuple[str, str, Any]] = {}


def _family(name: str, cls: str, model_type: str):
    def deco(fn):
        FAMILIES[name] = (cls, model_type, fn)
        return fn
    return deco


def _width(r: random.Random) -> int:
    return 64 * r.randint(1, 2)


@_family("bert", "BertModel", "bert")
def _bert(r: random.Random) -> dict[str, Any]:
    h = _width(r)
    return dict(hidden_size=h, num_attention_heads=h // 64, num_hidden_layers=r.randint(1, 3),
                intermediate_size=r.randint(40, 200), vocab_size=r.randint(90, 400),
                max_position_embeddings=r.randint(40, 100), type_vocab_size=2)


@_family("roberta", "RobertaForMaskedLM", "roberta")
def _roberta(r: random.Random) -> dict[str, Any]:
    h = _width(r)
    return dict(hidden_size=h, num_attention_heads=h // 64, num_hidden_layers=r.randint(1, 3),
                intermediate_size=r.randint(40, 200), vocab_size=r.randint(90, 400),
                max_position_embeddings=r.randint(40, 100), type_vocab_size=1, pad_token_id=1,
                bos_token_id=0, eos_token_id=2,
                layer_norm_eps=1e-5)  # assumed by recognition: what released RoBERTas use


@_family("gpt2", "GPT2LMHeadModel", "gpt2")
def _gpt2(r: random.Random) -> dict[str, Any]:
    h = _width(r)
    return dict(n_embd=h, n_head=h // 64, n_layer=r.randint(1, 3), n_inner=r.randint(40, 200),
                vocab_size=r.randint(90, 400), n_positions=r.randint(40, 100), bos_token_id=0,
                eos_token_id=0)


@_family("llama", "LlamaForCausalLM", "llama")
def _llama(r: random.Random) -> dict[str, Any]:
    h = 64 * r.randint(2, 3)
    heads = h // 64
    return dict(hidden_size=h, num_attention_heads=heads, num_key_value_heads=1,
                num_hidden_layers=r.randint(1, 3), intermediate_size=r.randint(40, 200),
                vocab_size=r.randint(90, 400), tie_word_embeddings=False, bos_token_id=0,
                eos_token_id=1, pad_token_id=None)


@_family("qwen2", "Qwen2ForCausalLM", "qwen2")
def _qwen2(r: random.Random) -> dict[str, Any]:
    h = 64 * r.randint(2, 4)
    return dict(hidden_size=h, num_attention_heads=h // 64, num_key_value_heads=h // 128 or 1,
                num_hidden_layers=r.randint(1, 3), intermediate_size=r.randint(40, 200),
                vocab_size=r.randint(90, 400), tie_word_embeddings=True, bos_token_id=0,
                eos_token_id=1, pad_token_id=None)


@_family("vit", "ViTForImageClassification", "vit")
def _vit(r: random.Random) -> dict[str, Any]:
    h = _width(r)
    patch = r.choice([4, 8])
    return dict(hidden_size=h, num_attention_heads=h // 64, num_hidden_layers=r.randint(1, 3),
                intermediate_size=r.randint(40, 200), patch_size=patch,
                image_size=patch * r.randint(2, 4), num_labels=r.randint(2, 9))


# Recognised only (no export in the tests): built on the meta device, names and shapes.
@_family("mistral", "MistralForCausalLM", "mistral")
def _mistral(r: random.Random) -> dict[str, Any]:
    return _llama(r)


@_family("whisper", "WhisperForConditionalGeneration", "whisper")
def _whisper(r: random.Random) -> dict[str, Any]:
    h = _width(r)
    return dict(d_model=h, encoder_attention_heads=h // 64, decoder_attention_heads=h // 64,
                encoder_layers=r.randint(1, 3), decoder_layers=r.randint(1, 3),
                encoder_ffn_dim=r.randint(40, 200), decoder_ffn_dim=r.randint(40, 200),
                vocab_size=r.randint(90, 400), num_mel_bins=r.randint(10, 80),
                max_source_positions=r.randint(20, 60), max_target_positions=r.randint(20, 60),
                pad_token_id=1, bos_token_id=2, eos_token_id=2, decoder_start_token_id=3)


@_family("t5", "T5ForConditionalGeneration", "t5")
def _t5(r: random.Random) -> dict[str, Any]:
    return dict(d_model=_width(r), num_heads=r.randint(1, 4), d_kv=r.choice([8, 16, 32]),
                num_layers=r.randint(1, 3), num_decoder_layers=r.randint(1, 3),
                d_ff=r.randint(40, 200), vocab_size=r.randint(90, 400),
                relative_attention_num_buckets=r.randint(8, 32),
                feed_forward_proj="gated-gelu", tie_word_embeddings=False)


@_family("convnext", "ConvNextModel", "convnext")
def _convnext(r: random.Random) -> dict[str, Any]:
    stages = r.randint(2, 4)
    return dict(num_stages=stages, hidden_sizes=[8 * r.randint(1, 6) for _ in range(stages)],
                depths=[r.randint(1, 3) for _ in range(stages)], patch_size=r.choice([2, 4]),
                num_channels=r.choice([1, 3]))


@_family("qwen3", "Qwen3ForCausalLM", "qwen3")
def _qwen3(r: random.Random) -> dict[str, Any]:
    return dict(hidden_size=_width(r), num_attention_heads=r.randint(2, 4), head_dim=32,
                num_key_value_heads=1, num_hidden_layers=r.randint(1, 3),
                intermediate_size=r.randint(40, 200), vocab_size=r.randint(90, 400),
                bos_token_id=0, eos_token_id=1, pad_token_id=None)


def config(family: str, seed: int) -> tuple[str, Any]:
    """The class name and a random transformers config of ``family``."""
    import transformers

    cls, model_type, make = FAMILIES[family]
    cfg = transformers.AutoConfig.for_model(model_type, **make(random.Random(seed)))
    return cls, cfg


def build(family: str, seed: int, device: str = "cpu") -> tuple[Any, Any]:
    """A model of ``family`` with random config and seeded random weights, in eval mode."""
    import torch
    import transformers

    cls, cfg = config(family, seed)
    torch.manual_seed(seed)
    with torch.device(device):
        model = getattr(transformers, cls)(cfg)
    return model.eval(), cfg


def wrap(state: dict[str, Any], how: str) -> Any:
    """The state_dict as training code saves it."""
    if how == "bare":
        return dict(state)
    if how in ("module.", "_orig_mod.", "module._orig_mod."):
        return {how + k: v for k, v in state.items()}
    if how == "state_dict":
        return {"state_dict": dict(state), "epoch": 3}
    raise ValueError(how)
