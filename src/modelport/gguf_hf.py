"""Hugging Face LLaMA-family folders <-> GGUF as llama.cpp writes and transformers reads them.

HF -> GGUF (llama.cpp ``convert_hf_to_gguf.py``, ``LlamaModel`` and ``Qwen2Model``):

* architecture keys from config.json: ``{arch}.context_length`` (max_position_embeddings),
  ``embedding_length``, ``block_count``, ``feed_forward_length``, ``attention.head_count``,
  ``attention.head_count_kv``, ``attention.layer_norm_rms_epsilon``, ``rope.freq_base``,
  ``rope.dimension_count`` and ``vocab_size`` (llama), ``general.file_type``,
  ``general.quantization_version``; set through the gguf package's ``GGUFWriter`` (used here to
  collect the pairs with llama.cpp's key names and types; modelport streams the file itself);
* tensor names from the gguf package's ``get_tensor_name_map`` (``model.layers.0.self_attn.
  q_proj.weight`` -> ``blk.0.attn_q.weight``);
* for llama and mistral (llama.cpp's ``undo_permute``), the rows of q_proj and k_proj (weights
  and biases) permuted as ``LlamaModel.permute`` does: ``w.reshape(n_head, 2, d/2, ...)
  .swapaxes(1, 2)``, n_head being the kv head count for k; here a strided view, streamed;
* a sentencepiece ``tokenizer.model`` (Llama 2, Mistral) as ``tokenizer.ggml.model`` ``llama``:
  pieces, scores and types in id order, decoded with modelport's protobuf reader;
* else the tokenizer from tokenizer.json (a BPE model: ``tokenizer.ggml.model`` ``gpt2``, tokens in
  id order, token types NORMAL / CONTROL for special added tokens / USER_DEFINED / UNUSED for
  ids with no token, written ``[PAD{id}]``, merges), the pre-tokenizer named by its split regex,
  special token ids, add_bos/add_eos and the chat template through the gguf package's
  ``SpecialVocab`` (it reads tokenizer_config.json, chat_template.jinja; nothing is run).

GGUF -> HF (transformers ``modeling_gguf_pytorch_utils``): each GGUF name gets the first
Hugging Face-style name (``model.*``, ``lm_head``) that the gguf package's table maps to it,
and for the llama architecture the q/k permutation is undone as ``LlamaTensorProcessor.
_reverse_permute_weights`` does (``w.reshape(n_head, d/2, 2, ...).swapaxes(2, 1)``).
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

from .errors import MissingExtra, UsageError
from .model import TensorEntry

if TYPE_CHECKING:
    from .convert.plan import Item
    from .model import Checkpoint

__all__ = ["ARCHS", "from_hf", "to_hf", "permuted", "hf_config"]

# config.json model_type -> (gguf architecture, q/k rows permuted as llama.cpp does)
ARCHS = {"llama": ("llama", True), "mistral": ("llama", True), "qwen2": ("qwen2", False)}

# tokenizer.json Split regexes -> tokenizer.ggml.pre (llama.cpp names these pre-tokenizers by a
# hash of their output; the regex is what makes that output).
_PRE = {
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+": "llama-bpe",
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+": "qwen2",
}
_NORMAL, _CONTROL, _USER_DEFINED, _UNUSED = 1, 3, 4, 5


def _gguf() -> Any:
    try:
        import gguf
    except ImportError:
        raise MissingExtra("gguf", "gguf", "llama.cpp names and metadata") from None
    return gguf


def permuted(entry: TensorEntry, n_head: int, forward: bool) -> tuple[TensorEntry, tuple]:
    """A strided view whose C-order reading is llama.cpp's q/k row permutation (``forward``)
    or its inverse, and the shape it is written as."""
    rows = entry.shape[0]
    rest = entry.shape[1:]
    if rows % (2 * n_head) or not entry.is_contiguous:
        raise UsageError(f"cannot permute {rows} rows for {n_head} heads", tensor=entry.name)
    d = rows // n_head // 2
    inner = 1
    for x in rest:
        inner *= x
    tail = [1] * len(rest)
    for i in range(len(rest) - 2, -1, -1):
        tail[i] = tail[i + 1] * rest[i + 1]
    if forward:  # reshape(n_head, 2, d, *rest).swapaxes(1, 2)
        shape = (n_head, d, 2, *rest)
        strides = (2 * d * inner, inner, d * inner, *tail)
    else:  # reshape(n_head, d, 2, *rest).swapaxes(2, 1)
        shape = (n_head, 2, d, *rest)
        strides = (2 * d * inner, inner, 2 * inner, *tail)
    view = TensorEntry(entry.name, entry.dtype, shape, entry.storage, entry.storage_offset,
                       strides)
    return view, entry.shape


def _desc(value: Any, vtype: Any, sub: Any, gguf: Any) -> str:
    from .formats.gguf.reader import VALUE_TYPES

    if vtype == gguf.GGUFValueType.ARRAY:
        if sub is not None:
            return f"[{VALUE_TYPES[int(sub)][0]}]"
        first = value[0]
        kind = ("str" if isinstance(first, (str, bytes)) else "bool" if isinstance(first, bool)
                else "i32" if isinstance(first, int) else "f32")
        return f"[{kind}]"
    return VALUE_TYPES[int(vtype)][0]


_SPM_PIECE = {1: ("piece", 2, False), 2: ("score", 5, False), 3: ("type", 0, False)}
_SPM_BYTE, _SPM_UNKNOWN = 6, 2
_SPM_LIMIT = 64 << 20  # a sentencepiece model: a few MB for the largest vocabularies


def _spm_pieces(path: str) -> list[tuple[str, float, int]]:
    """(piece, score, type) of a sentencepiece ``tokenizer.model`` (ModelProto field 1,
    SentencePiece {1 piece, 2 score, 3 type}), decoded by modelport's protobuf reader: the
    file is data, nothing of sentencepiece runs."""
    import struct

    from .containers import protobuf as pb

    if os.path.getsize(path) > _SPM_LIMIT:
        raise UsageError(f"tokenizer.model is larger than {_SPM_LIMIT} bytes", path=path)
    with open(path, "rb") as f:
        buf = f.read()
    out = []
    for field in pb.iter_fields(buf):
        if field.number != 1 or field.wire != pb.LEN:
            continue
        sp = pb.decode(buf, field.offset, field.end, _SPM_PIECE)
        score = struct.unpack("<f", struct.pack("<I", sp["score"].value))[0] \
            if "score" in sp else 0.0
        out.append((pb.text(buf, sp.get("piece")), score,
                    sp["type"].value if "type" in sp else _NORMAL))
    return out


def _spm_tokenizer(folder: str, cfg: dict[str, Any], gw: Any, gguf: Any) -> None:
    """llama.cpp's ``_set_vocab_sentencepiece``: tokens, scores and types in id order, ids past
    the model padded as ``[PAD{id}]`` (UNUSED, -10000), then added_tokens.json (USER_DEFINED,
    -1000) and tokenizer_config.json's added_tokens_decoder (CONTROL if special)."""
    pieces = _spm_pieces(os.path.join(folder, "tokenizer.model"))
    size = int(cfg.get("vocab_size") or len(pieces))
    tokens = [f"[PAD{i}]" for i in range(size)]
    scores = [-10000.0] * size
    types = [_UNUSED] * size
    for i, (piece, score, kind) in enumerate(pieces[:size]):
        # sentencepiece's USER_DEFINED pieces count as NORMAL here, as in llama.cpp
        tokens[i], scores[i] = piece, score
        types[i] = kind if kind in (_SPM_UNKNOWN, _CONTROL, _UNUSED, _SPM_BYTE) else _NORMAL
    added = os.path.join(folder, "added_tokens.json")
    if os.path.isfile(added):
        with open(added, encoding="utf-8") as f:
            for text, i in json.load(f).items():
                if isinstance(i, int) and 0 <= i < size:
                    tokens[i], scores[i], types[i] = text, -1000.0, _USER_DEFINED
    config = os.path.join(folder, "tokenizer_config.json")
    if os.path.isfile(config):
        with open(config, encoding="utf-8") as f:
            decoder = json.load(f).get("added_tokens_decoder") or {}
        for key, data in decoder.items():
            i = int(key)
            if 0 <= i < size and isinstance(data, dict) and isinstance(data.get("content"), str):
                special = bool(data.get("special"))
                tokens[i] = data["content"] if special else data["content"].replace("\u2581", " ")
                types[i] = _CONTROL if special else _USER_DEFINED
    gw.add_tokenizer_model("llama")
    gw.add_tokenizer_pre("default")
    gw.add_token_list(tokens)
    gw.add_token_scores(scores)
    gw.add_token_types(types)
    gguf.SpecialVocab(folder, n_vocab=len(tokens)).add_to_gguf(gw, quiet=True)


def _tokenizer(folder: str, cfg: dict[str, Any], gw: Any, gguf: Any, notes: list[str]) -> None:
    if os.path.isfile(os.path.join(folder, "tokenizer.model")):  # llama.cpp tries it first
        _spm_tokenizer(folder, cfg, gw, gguf)
        return
    path = os.path.join(folder, "tokenizer.json")
    if not os.path.isfile(path):
        notes.append("no tokenizer.json: the GGUF has no tokenizer (llama.cpp needs one to run)")
        return
    with open(path, encoding="utf-8") as f:
        tok = json.load(f)
    model = tok.get("model") or {}
    if model.get("type") != "BPE" or not isinstance(model.get("vocab"), dict):
        notes.append(f"tokenizer.json holds a {model.get('type')} model; only BPE is converted")
        return
    ids: dict[int, tuple[str, int]] = {int(i): (t, _NORMAL) for t, i in model["vocab"].items()}
    for added in tok.get("added_tokens") or []:
        ids[int(added["id"])] = (added["content"], _CONTROL if added.get("special")
                                 else _USER_DEFINED)
    size = max(int(cfg.get("vocab_size") or 0), max(ids, default=-1) + 1)
    tokens, types = [], []
    for i in range(size):
        text, kind = ids.get(i, (f"[PAD{i}]", _UNUSED))
        tokens.append(text)
        types.append(kind)
    pre = tok.get("pre_tokenizer") or {}
    parts = pre.get("pretokenizers", [pre]) if isinstance(pre, dict) else []
    regex = next((p.get("pattern", {}).get("Regex") for p in parts
                  if isinstance(p, dict) and p.get("type") == "Split"), None)
    name = _PRE.get(regex or "", "gpt-2" if any(p.get("type") == "ByteLevel" for p in parts
                                                 if isinstance(p, dict)) else "default")
    gw.add_tokenizer_model("gpt2")
    gw.add_tokenizer_pre(name)
    gw.add_token_list(tokens)
    gw.add_token_types(types)
    special = gguf.SpecialVocab(folder, load_merges=True, n_vocab=len(tokens))
    special.add_to_gguf(gw, quiet=True)


def from_hf(ck: Checkpoint, items: list[Item], notes: list[str]) -> tuple[list[Item], list] | None:
    """(items renamed and permuted, metadata pairs) for a LLaMA-family folder; None for any
    other model type."""
    from .convert.plan import Item

    cfg = ck.info.get("config")
    if not isinstance(cfg, dict) or cfg.get("model_type") not in ARCHS:
        return None
    arch, permute = ARCHS[cfg["model_type"]]
    gguf = _gguf()
    arch_id = next(k for k, v in gguf.MODEL_ARCH_NAMES.items() if v == arch)
    layers = int(cfg["num_hidden_layers"])
    tmap = gguf.get_tensor_name_map(arch_id, layers)
    n_head = int(cfg["num_attention_heads"])
    n_kv = int(cfg.get("num_key_value_heads") or n_head)
    out = []
    for it in items:
        name = tmap.get_name(it.name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise UsageError(f"llama.cpp has no name for {it.name!r} in a {arch} model",
                             tensor=it.name, path=ck.path)
        entry, shape = it.entry, it.out_shape
        if permute and it.name.endswith(("q_proj.weight", "q_proj.bias", "k_proj.weight",
                                         "k_proj.bias")):
            heads = n_head if ".q_proj." in it.name else n_kv
            entry, shape = permuted(it.entry, heads, forward=True)
        out.append(Item(name, entry, it.dtype, shape))

    gw = gguf.GGUFWriter(None, arch)  # collects the pairs only: nothing is written by it
    gw.add_name(os.path.basename(os.path.abspath(ck.path)))
    hidden = int(cfg["hidden_size"])
    if "max_position_embeddings" in cfg:
        gw.add_context_length(int(cfg["max_position_embeddings"]))
    gw.add_embedding_length(hidden)
    gw.add_block_count(layers)
    if "intermediate_size" in cfg:
        gw.add_feed_forward_length(int(cfg["intermediate_size"]))
    gw.add_head_count(n_head)
    gw.add_head_count_kv(n_kv)
    # transformers >= 5 keeps rope_theta under rope_parameters
    rope = cfg.get("rope_parameters")
    rope = rope if isinstance(rope, dict) else {}
    theta = cfg.get("rope_theta", rope.get("rope_theta"))
    if theta is not None:
        gw.add_rope_freq_base(float(theta))
    if cfg.get("rms_norm_eps") is not None:
        gw.add_layer_norm_rms_eps(float(cfg["rms_norm_eps"]))
    if arch == "llama":
        gw.add_vocab_size(int(cfg["vocab_size"]))
        gw.add_rope_dimension_count(int(cfg.get("head_dim") or hidden // n_head))
    gw.add_quantization_version(gguf.GGML_QUANT_VERSION)
    _tokenizer(ck.path, cfg, gw, gguf, notes)
    kv = [(k, _desc(v.value, v.type, v.sub_type, gguf), v.value)
          for k, v in gw.kv_data[0].items()]
    kv = [(k, t, [x.decode("utf-8", "surrogateescape") if isinstance(x, bytes) else x
                  for x in v] if isinstance(v, list) else v) for k, t, v in kv]
    counts: dict[str, int] = {}
    for it in out:
        counts[it.dtype.name] = counts.get(it.dtype.name, 0) + it.entry.numel
    main = max(counts, key=lambda k: counts[k]) if counts else "F32"
    from .convert.gguf import _FILE_TYPE

    kv.append(("general.file_type", "u32", _FILE_TYPE.get(main, 0)))
    notes.append(f"llama.cpp {arch} layout: {len(out)} tensors renamed"
                 + (", q/k rows permuted" if permute else ""))
    return out, kv


# gguf architecture -> (transformers model_type, class); the config keys transformers' GGUF loader
# maps (integrations/ggml.py GGUF_CONFIG_MAPPING): {arch}.<key> -> config.json key.
_HF_CLASSES = {"llama": ("llama", "LlamaForCausalLM"), "qwen2": ("qwen2", "Qwen2ForCausalLM")}
_HF_KEYS = {"context_length": "max_position_embeddings", "block_count": "num_hidden_layers",
            "feed_forward_length": "intermediate_size", "embedding_length": "hidden_size",
            "rope.freq_base": "rope_theta", "attention.head_count": "num_attention_heads",
            "attention.head_count_kv": "num_key_value_heads",
            "attention.layer_norm_rms_epsilon": "rms_norm_eps", "vocab_size": "vocab_size"}


def hf_config(ck: Checkpoint, items: list[Item]) -> dict[str, Any] | None:
    """config.json for the Hugging Face folder a LLaMA-family GGUF becomes, as transformers'
    GGUF loader builds it from the metadata; None for other architectures."""
    meta = ck.metadata
    arch = meta.get("general.architecture")
    if arch not in _HF_CLASSES:
        return None
    model_type, cls = _HF_CLASSES[arch]
    cfg: dict[str, Any] = {"architectures": [cls], "model_type": model_type}
    for key, name in _HF_KEYS.items():
        value = meta.get(f"{arch}.{key}")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            # f32 metadata as the shortest decimal that is the same float32 (1e-05, not
            # 9.999999747378752e-06)
            cfg[name] = float(f"{value:.8g}") if isinstance(value, float) else value
    tokens = meta.get("tokenizer.ggml.tokens")
    if "vocab_size" not in cfg and isinstance(tokens, list):
        cfg["vocab_size"] = len(tokens)
    for key, name in (("bos_token_id", "bos_token_id"), ("eos_token_id", "eos_token_id")):
        if isinstance(meta.get(f"tokenizer.ggml.{key}"), int):
            cfg[name] = meta[f"tokenizer.ggml.{key}"]
    names = {it.name for it in items}
    cfg["tie_word_embeddings"] = "lm_head.weight" not in names
    kinds = {it.dtype for it in items}
    if len(kinds) == 1 and next(iter(kinds)).name in ("F32", "F16", "BF16"):
        cfg["torch_dtype"] = next(iter(kinds)).torch  # the dtypes table's torch name
    return cfg


def to_hf(ck: Checkpoint, items: list[Item], notes: list[str]) -> list[Item]:
    """GGUF names back to Hugging Face names, the q/k permutation undone (llama)."""
    from .convert.plan import Item

    meta = ck.metadata
    arch = meta.get("general.architecture")
    if arch not in ("llama", "qwen2"):
        return items
    gguf = _gguf()
    arch_id = next((k for k, v in gguf.MODEL_ARCH_NAMES.items() if v == arch), None)
    layers = meta.get(f"{arch}.block_count")
    if arch_id is None or not isinstance(layers, int):
        return items
    tmap = gguf.get_tensor_name_map(arch_id, layers)
    reverse: dict[str, str] = {}
    for key, (_, name) in tmap.mapping.items():
        if (key.startswith("model.") or key == "lm_head") and name not in reverse \
                and tmap.get_name(key) == name:
            reverse[name] = key
    n_head = meta.get(f"{arch}.attention.head_count")
    n_kv = meta.get(f"{arch}.attention.head_count_kv") or n_head
    out = []
    for it in items:
        base, dot, suffix = it.name.rpartition(".")
        hf = reverse.get(base) if suffix in ("weight", "bias") else None
        if hf is None:
            out.append(it)
            continue
        entry, shape = it.entry, it.out_shape
        if arch == "llama" and isinstance(n_head, int) and (".attn_q." in it.name or
                                                            ".attn_k." in it.name):
            heads = n_head if ".attn_q." in it.name else int(n_kv or n_head)
            entry, shape = permuted(it.entry, heads, forward=False)
        out.append(Item(f"{hf}.{suffix}", entry, it.dtype, shape))
    notes.append(f"Hugging Face names for the {arch} tensors"
                 + (", q/k permutation undone" if arch == "llama" else ""))
    return out
