"""The architecture table: one entry per family, read by ``modelport.recognize``.

An entry says which keys identify the family (relative to its base model: ``layers.0...`` for
LLaMA, whatever prefix a head class or a training wrapper adds), which classes it comes in (the
base model, a causal-LM or classification head, each with the prefix its base model sits under
and the keys its head adds) and how each config field follows from the names and shapes:

    S(key, dim)        exact    a dimension of one tensor's shape
    Layers(prefix)     derived  how many numbered blocks ``prefix.N.`` there are
    Has(key)           derived  whether a tensor is there (a bias, a pooler)
    Tied(key)          derived  an LM head left out because tied (present: assumed untied)
    Calc(fn)           derived  computed from shapes and the fields before it
    Heads(field)       assumed  heads at the family's usual head width (64; 128 for LLaMA-family
                                models of hidden size 4096 and up): no shape fixes it
    A(value)           assumed  a default nothing in the file fixes (layer_norm_eps, rope_theta)

Keys are relative to the base model; a key starting with ``/`` is relative to the class (a head's
``/classifier.weight``). ``{i}`` never appears: block 0 stands for all (the verification on the
meta device checks every block). Adding a family is one entry here; ``recognize`` and ``export``
need nothing else.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["S", "Layers", "Has", "Tied", "Calc", "Heads", "A", "Variant", "Family", "FAMILIES",
           "LEGACY_BUFFERS", "Shapes"]


class Shapes:
    """Names -> shapes of one candidate, relative to its base model (``/`` for the class)."""

    def __init__(self, base: dict[str, tuple[int, ...]], root: dict[str, tuple[int, ...]]):
        self.base, self.root = base, root

    def get(self, key: str) -> tuple[int, ...] | None:
        return self.root.get(key[1:]) if key.startswith("/") else self.base.get(key)

    def __contains__(self, key: str) -> bool:
        return self.get(key) is not None

    def shape(self, key: str) -> tuple[int, ...]:
        got = self.get(key)
        if got is None:
            raise LookupError(key)
        return got

    def dim(self, key: str, dim: int) -> int:
        return self.shape(key)[dim]

    def blocks(self, prefix: str) -> list[int]:
        """The numbers N of ``prefix.N.`` blocks, sorted."""
        p = prefix.rstrip(".") + "."
        found = set()
        for name in self.base:
            if name.startswith(p):
                head = name[len(p):].split(".", 1)[0]
                if head.isdigit():
                    found.add(int(head))
        return sorted(found)


@dataclass(frozen=True)
class S:
    """Exact: ``shape(key)[dim]``; the first of several keys that is present."""

    key: str | tuple[str, ...]
    dim: int
    how = "exact"

    def __call__(self, s: Shapes, cfg: dict[str, Any]) -> Any:
        keys = (self.key,) if isinstance(self.key, str) else self.key
        for k in keys:
            if k in s:
                return s.dim(k, self.dim)
        raise LookupError(keys[0])


@dataclass(frozen=True)
class Layers:
    """Derived: the number of ``prefix.N.`` blocks (0..N-1 must all be there)."""

    prefix: str
    how = "derived"

    def __call__(self, s: Shapes, cfg: dict[str, Any]) -> Any:
        found = s.blocks(self.prefix)
        if not found:
            raise LookupError(f"{self.prefix}.0")
        return found[-1] + 1


@dataclass(frozen=True)
class Has:
    """Derived: whether ``key`` is there (or, ``negate``, absent)."""

    key: str
    negate: bool = False
    how = "derived"

    def __call__(self, s: Shapes, cfg: dict[str, Any]) -> Any:
        return (self.key in s) != self.negate


@dataclass(frozen=True)
class Tied:
    """``tie_word_embeddings``: an absent head was tied (derived); a present one may have been
    tied or not (its values would tell, and are not read): untied is assumed, which computes
    the same either way since the file carries the head's own weights."""

    key: str
    how = "derived"

    def __call__(self, s: Shapes, cfg: dict[str, Any]) -> Any:
        return self.key not in s

    def judge(self, s: Shapes) -> str:
        return "derived" if self.key not in s else "assumed"


@dataclass(frozen=True)
class Calc:
    """Computed from shapes and earlier fields; ``how`` says whether a default went in."""

    fn: Callable[[Shapes, dict[str, Any]], Any]
    how: str = "derived"

    def __call__(self, s: Shapes, cfg: dict[str, Any]) -> Any:
        return self.fn(s, cfg)


@dataclass(frozen=True)
class Heads:
    """Assumed: ``cfg[field] // width``, width 64, or 128 for LLaMA-family hidden sizes >= 4096."""

    field: str
    llama: bool = False
    how = "assumed"

    def __call__(self, s: Shapes, cfg: dict[str, Any]) -> Any:
        hidden = cfg[self.field]
        width = 128 if self.llama and hidden >= 4096 else 64
        return max(1, hidden // width)


@dataclass(frozen=True)
class A:
    """Assumed: the family's default; nothing in the file fixes it."""

    value: Any
    how = "assumed"

    def __call__(self, s: Shapes, cfg: dict[str, Any]) -> Any:
        return self.value


Rule = S | Layers | Has | Tied | Calc | Heads | A


@dataclass(frozen=True)
class Variant:
    """One class of a family: where its base model sits and the keys its head adds.

    ``head`` keys must all be present; a key ending in ``?`` may be absent because it is tied to
    another (an LM head tied to the embeddings: ``save_pretrained`` leaves it out). ``init``
    names constructor arguments (not config fields) computed by ``config`` rules.
    """

    cls: str
    base: str = ""
    head: tuple[str, ...] = ()
    forbids: tuple[str, ...] = ()  # keys (relative to the class) this class never has
    config: tuple[tuple[str, Rule], ...] = ()
    init: tuple[str, ...] = ()
    task: str = "base"  # what the outputs are: base (hidden states), causal-lm, masked-lm, ...


@dataclass(frozen=True)
class Family:
    name: str
    model_type: str  # transformers' config model_type
    requires: tuple[str, ...]  # base-relative keys that identify the family; the first anchors it
    config: tuple[tuple[str, Rule], ...]
    variants: tuple[Variant, ...]
    forbids: tuple[str, ...] = ()
    prefer: tuple[str, Any] | None = None  # among look-alikes, first when cfg[field] == value
    inputs: str = "text"  # text, text-pair (token types), image, audio, seq2seq
    renames: tuple[tuple[str, str], ...] = ()  # older names -> the class's (regex, replacement)


def _pos_image(s: Shapes, cfg: dict[str, Any]) -> int:
    """ViT: position embeddings hold one row per patch plus the class token, on a square grid."""
    patches = s.dim("embeddings.position_embeddings", 1) - 1
    side = math.isqrt(patches)
    if side * side != patches:
        raise LookupError("embeddings.position_embeddings")
    return side * cfg["patch_size"]


def _kv(key: str) -> Callable[[Shapes, dict[str, Any]], int]:
    """Key/value heads: the k projection's width over the head width."""
    return lambda s, c: s.dim(key, 0) // (c["hidden_size"] // c["num_attention_heads"])


def _stages(what: str) -> Callable[[Shapes, dict[str, Any]], list[int]]:
    def fn(s: Shapes, c: dict[str, Any]) -> list[int]:
        out = []
        for i in s.blocks("encoder.stages"):
            if what == "depth":
                out.append(len(s.blocks(f"encoder.stages.{i}.layers")))
            else:
                out.append(s.dim(f"encoder.stages.{i}.layers.0.dwconv.weight", 0))
        return out
    return fn


# -- the table ------------------------------------------------------------------------------------

_BERT_LIKE = (
    ("vocab_size", S("embeddings.word_embeddings.weight", 0)),
    ("hidden_size", S("embeddings.word_embeddings.weight", 1)),
    ("max_position_embeddings", S("embeddings.position_embeddings.weight", 0)),
    ("type_vocab_size", S("embeddings.token_type_embeddings.weight", 0)),
    ("num_hidden_layers", Layers("encoder.layer")),
    ("intermediate_size", S("encoder.layer.0.intermediate.dense.weight", 0)),
    ("num_attention_heads", Heads("hidden_size")),
    ("hidden_act", A("gelu")),
)
_BERT_REQ = ("encoder.layer.0.attention.self.query.weight", "embeddings.word_embeddings.weight",
             "embeddings.token_type_embeddings.weight")
_POOLER = (("add_pooling_layer", Has("pooler.dense.weight")),)


def _llama_like(*extra: tuple[str, Rule]) -> tuple[tuple[str, Rule], ...]:
    return (
        ("vocab_size", S("embed_tokens.weight", 0)),
        ("hidden_size", S("embed_tokens.weight", 1)),
        ("intermediate_size", S("layers.0.mlp.gate_proj.weight", 0)),
        ("num_hidden_layers", Layers("layers")),
        ("num_attention_heads", Heads("hidden_size", llama=True)),
        ("num_key_value_heads", Calc(_kv("layers.0.self_attn.k_proj.weight"))),
        *extra,
        ("rms_norm_eps", A(1e-6)),
        ("max_position_embeddings", A(4096)),
    )


def _causal(prefix: str) -> tuple[Variant, ...]:
    return (
        Variant(f"{prefix}ForCausalLM", "model.", ("lm_head.weight?",), task="causal-lm",
                config=(("tie_word_embeddings", Tied("/lm_head.weight")),)),
        Variant(f"{prefix}ForSequenceClassification", "model.", ("score.weight",),
                task="sequence-classification", config=(("num_labels", S("/score.weight", 0)),)),
        Variant(f"{prefix}Model", ""),
    )


_LLAMA_REQ = ("layers.0.self_attn.q_proj.weight", "embed_tokens.weight",
              "layers.0.mlp.gate_proj.weight", "layers.0.self_attn.k_proj.weight")

FAMILIES: tuple[Family, ...] = (
    Family(
        "bert", "bert", _BERT_REQ, _BERT_LIKE + (("layer_norm_eps", A(1e-12)),),
        (
            Variant("BertForMaskedLM", "bert.", ("cls.predictions.transform.dense.weight",
                                                 "cls.predictions.decoder.weight?"),
                    forbids=("/bert.pooler.dense.weight",), task="masked-lm"),
            Variant("BertForSequenceClassification", "bert.", ("classifier.weight",),
                    task="sequence-classification",
                    config=(("num_labels", S("/classifier.weight", 0)),)),
            Variant("BertModel", "", config=_POOLER, init=("add_pooling_layer",)),
        ),
        prefer=("type_vocab_size", 2), inputs="text-pair",
    ),
    Family(
        "roberta", "roberta", _BERT_REQ,
        _BERT_LIKE + (("layer_norm_eps", A(1e-5)), ("pad_token_id", A(1))),
        (
            Variant("RobertaForMaskedLM", "roberta.", ("lm_head.dense.weight",
                                                       "lm_head.decoder.weight?"),
                    forbids=("/roberta.pooler.dense.weight",), task="masked-lm"),
            Variant("RobertaForSequenceClassification", "roberta.",
                    ("classifier.dense.weight", "classifier.out_proj.weight"),
                    task="sequence-classification",
                    config=(("num_labels", S("/classifier.out_proj.weight", 0)),)),
            Variant("RobertaModel", "", config=_POOLER, init=("add_pooling_layer",)),
        ),
        # RoBERTa keeps one token type; BERT two. Keys alike, so this only orders candidates.
        prefer=("type_vocab_size", 1), inputs="text-pair",
    ),
    Family(
        "gpt2", "gpt2", ("h.0.attn.c_attn.weight", "wte.weight", "wpe.weight"),
        (
            ("vocab_size", S("wte.weight", 0)),
            ("n_embd", S("wte.weight", 1)),
            ("n_positions", S("wpe.weight", 0)),
            ("n_layer", Layers("h")),
            ("n_inner", S("h.0.mlp.c_fc.weight", 1)),
            ("n_head", Heads("n_embd")),
            ("layer_norm_epsilon", A(1e-5)),
        ),
        (
            Variant("GPT2LMHeadModel", "transformer.", ("lm_head.weight?",), task="causal-lm",
                    config=(("tie_word_embeddings", Tied("/lm_head.weight")),)),
            Variant("GPT2ForSequenceClassification", "transformer.", ("score.weight",),
                    task="sequence-classification", config=(("num_labels", S("/score.weight", 0)),)),
            Variant("GPT2Model", ""),
        ),
    ),
    Family(
        "qwen3", "qwen3", _LLAMA_REQ + ("layers.0.self_attn.q_norm.weight",),
        (
            ("vocab_size", S("embed_tokens.weight", 0)),
            ("hidden_size", S("embed_tokens.weight", 1)),
            ("intermediate_size", S("layers.0.mlp.gate_proj.weight", 0)),
            ("num_hidden_layers", Layers("layers")),
            # Qwen3 normalises each head: the norm's width is the head width, so heads follow.
            ("head_dim", S("layers.0.self_attn.q_norm.weight", 0)),
            ("num_attention_heads", Calc(lambda s, c: s.dim("layers.0.self_attn.q_proj.weight", 0)
                                         // c["head_dim"])),
            ("num_key_value_heads", Calc(lambda s, c: s.dim("layers.0.self_attn.k_proj.weight", 0)
                                         // c["head_dim"])),
            ("attention_bias", Has("layers.0.self_attn.q_proj.bias")),
            ("rms_norm_eps", A(1e-6)),
            ("max_position_embeddings", A(4096)),
        ),
        _causal("Qwen3"),
    ),
    Family(
        "qwen2", "qwen2", _LLAMA_REQ + ("layers.0.self_attn.q_proj.bias",),
        _llama_like(),
        _causal("Qwen2"),
        forbids=("layers.0.self_attn.o_proj.bias", "layers.0.self_attn.q_norm.weight"),
    ),
    Family(
        "llama", "llama", _LLAMA_REQ,
        _llama_like(("attention_bias", Has("layers.0.self_attn.q_proj.bias")),
                    ("mlp_bias", Has("layers.0.mlp.gate_proj.bias")),
                    ("rope_theta", A(10000.0))),
        _causal("Llama"),
        forbids=("layers.0.self_attn.q_norm.weight",),
    ),
    Family(
        "mistral", "mistral", _LLAMA_REQ,
        _llama_like(("rope_theta", A(10000.0)), ("sliding_window", A(4096))),
        _causal("Mistral"),
        forbids=("layers.0.self_attn.q_norm.weight", "layers.0.self_attn.q_proj.bias"),
    ),
    Family(
        "vit", "vit", ("layers.0.attention.q_proj.weight", "embeddings.cls_token",
                       "embeddings.patch_embeddings.projection.weight",
                       "embeddings.position_embeddings"),
        (
            ("hidden_size", S("embeddings.cls_token", 2)),
            ("num_channels", S("embeddings.patch_embeddings.projection.weight", 1)),
            ("patch_size", S("embeddings.patch_embeddings.projection.weight", 2)),
            ("image_size", Calc(_pos_image)),
            ("num_hidden_layers", Layers("layers")),
            ("intermediate_size", S("layers.0.mlp.fc1.weight", 0)),
            ("qkv_bias", Has("layers.0.attention.q_proj.bias")),
            ("num_attention_heads", Heads("hidden_size")),
            ("layer_norm_eps", A(1e-12)),
        ),
        (
            Variant("ViTForImageClassification", "vit.", ("classifier.weight",),
                    task="image-classification", forbids=("/vit.pooler.dense.weight",),
                    config=(("num_labels", S("/classifier.weight", 0)),)),
            Variant("ViTModel", "", config=_POOLER, init=("add_pooling_layer",)),
        ),
        inputs="image",
        # Files written before transformers 5 (every ViT on the Hub) name the blocks BERT's
        # way; transformers renames them on load (conversion_mapping.py, "ViTModel").
        renames=((r"encoder\.layer\.", "layers."), (r"attention\.query", "q_proj"),
                 (r"attention\.key", "k_proj"), (r"attention\.value", "v_proj"),
                 (r"attention\.output\.dense", "attention.o_proj"),
                 (r"intermediate\.dense", "mlp.fc1"), (r"output\.dense", "mlp.fc2")),
    ),
    Family(
        "convnext", "convnext", ("encoder.stages.0.layers.0.dwconv.weight",
                                 "embeddings.patch_embeddings.weight"),
        (
            ("num_channels", S("embeddings.patch_embeddings.weight", 1)),
            ("patch_size", S("embeddings.patch_embeddings.weight", 2)),
            ("num_stages", Layers("encoder.stages")),
            ("hidden_sizes", Calc(_stages("width"), how="exact")),
            ("depths", Calc(_stages("depth"))),
            ("layer_scale_init_value",
             Calc(lambda s, c: 1e-6 if "encoder.stages.0.layers.0.layer_scale_parameter" in s
                  else 0.0, how="assumed")),
            ("image_size", A(224)),
        ),
        (
            Variant("ConvNextForImageClassification", "convnext.", ("classifier.weight",),
                    task="image-classification",
                    config=(("num_labels", S("/classifier.weight", 0)),)),
            Variant("ConvNextModel", ""),
        ),
        inputs="image",
    ),
    Family(
        "whisper", "whisper", ("encoder.conv1.weight", "decoder.layers.0.encoder_attn.q_proj.weight",
                               "decoder.embed_tokens.weight", "encoder.embed_positions.weight"),
        (
            ("d_model", S("encoder.conv1.weight", 0)),
            ("num_mel_bins", S("encoder.conv1.weight", 1)),
            ("vocab_size", S("decoder.embed_tokens.weight", 0)),
            ("max_source_positions", S("encoder.embed_positions.weight", 0)),
            ("max_target_positions", S("decoder.embed_positions.weight", 0)),
            ("encoder_layers", Layers("encoder.layers")),
            ("decoder_layers", Layers("decoder.layers")),
            ("encoder_ffn_dim", S("encoder.layers.0.fc1.weight", 0)),
            ("decoder_ffn_dim", S("decoder.layers.0.fc1.weight", 0)),
            ("encoder_attention_heads", Heads("d_model")),
            ("decoder_attention_heads", Heads("d_model")),
        ),
        (
            Variant("WhisperForConditionalGeneration", "model.", ("proj_out.weight?",),
                    task="seq2seq-lm", config=(("tie_word_embeddings", Tied("/proj_out.weight")),)),
            Variant("WhisperModel", ""),
        ),
        inputs="audio",
    ),
    Family(
        "t5", "t5", ("encoder.block.0.layer.0.SelfAttention.q.weight", "shared.weight"),
        (
            ("vocab_size", S("shared.weight", 0)),
            ("d_model", S("shared.weight", 1)),
            ("num_layers", Layers("encoder.block")),
            ("num_decoder_layers", Calc(lambda s, c: len(s.blocks("decoder.block")))),
            # T5 stores one learned bias per head in the first block: heads are exact here.
            ("num_heads", S("encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
                            1)),
            ("relative_attention_num_buckets",
             S("encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight", 0)),
            ("d_kv", Calc(lambda s, c: s.dim("encoder.block.0.layer.0.SelfAttention.q.weight", 0)
                          // c["num_heads"])),
            ("d_ff", S(("encoder.block.0.layer.1.DenseReluDense.wi.weight",
                        "encoder.block.0.layer.1.DenseReluDense.wi_0.weight"), 0)),
            # Gated or not is in the keys; the activation (gelu for v1.1) is not.
            ("feed_forward_proj",
             Calc(lambda s, c: "gated-gelu" if "encoder.block.0.layer.1.DenseReluDense.wi_0.weight"
                  in s else "relu", how="assumed")),
        ),
        (
            Variant("T5ForConditionalGeneration", "", ("lm_head.weight?",), task="seq2seq-lm",
                    config=(("tie_word_embeddings", Tied("/lm_head.weight")),)),
            Variant("T5Model", ""),
            Variant("T5EncoderModel", "", forbids=("/decoder.final_layer_norm.weight",)),
        ),
        inputs="seq2seq",
    ),
)

# Buffers older transformers versions saved and newer ones no longer have (or keep
# non-persistent): a file that carries them still fits the class.
LEGACY_BUFFERS = (
    "embeddings.position_ids",
    "attn.bias",
    "attn.masked_bias",
    "rotary_emb.inv_freq",
    "embeddings.token_type_ids",
)
