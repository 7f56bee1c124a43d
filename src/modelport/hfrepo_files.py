"""A Hugging Face folder explained file by file: what each file is for, who reads it, whether
loading runs code, and what is missing for loading.

    config.json                  architecture, model_type, dtype, quantization_config, auto_map
    generation_config.json       decoding defaults (max_new_tokens, temperature, eos ...)
    tokenizer.json               fast tokenizer: model type (BPE, WordPiece, Unigram), vocabulary
    tokenizer.model              SentencePiece ModelProto, read with modelport's protobuf decoder:
                                   1 pieces (repeated SentencePiece {1 piece, 2 score, 3 type})
                                   2 trainer_spec {3 model_type: 1 UNIGRAM 2 BPE 3 WORD 4 CHAR,
                                                   4 vocab_size}
    vocab.txt / vocab.json       WordPiece / BPE vocabularies; merges.txt BPE merge rules
    special_tokens_map.json      bos/eos/unk/pad/... tokens
    tokenizer_config.json        tokenizer class, model_max_length, chat template, auto_map
    *.index.json                 shard index: the shards it names must all be there
    *.safetensors / *.bin        weights; transformers prefers safetensors when both are present
    modeling_*.py, ...           custom code: imported by transformers under trust_remote_code
                                 when auto_map names it (read with ast, never imported)
    adapter_config.json + ...    a PEFT adapter

Nothing here runs or imports anything from the folder; JSON is read with size and depth limits.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

__all__ = ["explain", "auto_map_entries"]

_JSON_MAX = 64 << 20  # bytes of one JSON side file read (tokenizer.json of big vocabularies)
_TEXT_MAX = 64 << 20
_WEIGHT_RE = re.compile(r"^(model|pytorch_model|tf_model|flax_model|adapter_model)"
                        r"(-\d+-of-\d+)?\.(safetensors|bin|h5|msgpack)$")
_SP_TYPES = {1: "Unigram", 2: "BPE", 3: "Word", 4: "Char"}
_TRAINER_FILES = {"optimizer.pt": "optimizer state (Trainer checkpoint)",
                  "scheduler.pt": "learning-rate scheduler state (Trainer checkpoint)",
                  "trainer_state.json": "Trainer progress: global step, epoch, log history",
                  "training_args.bin": "TrainingArguments, pickled (Trainer checkpoint)",
                  "rng_state.pth": "random number generator state (Trainer checkpoint)",
                  "scaler.pt": "AMP gradient scaler state (Trainer checkpoint)"}
_PLAIN = {"README.md": "model card", "LICENSE": "licence", "LICENSE.txt": "licence",
          ".gitattributes": "git attributes (LFS patterns)", "USE_POLICY.md": "use policy",
          "NOTICE": "licence notice"}


def _json(path: str) -> Any:
    if os.path.getsize(path) > _JSON_MAX:
        return None
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError, RecursionError):
        return None


def auto_map_entries(auto_map: Any) -> list[tuple[str, str, str | None, str]]:
    """(auto class, module file, repo or None, class) per ``auto_map`` entry.

    ``"AutoModelForCausalLM": "modeling_x.XForCausalLM"`` names ``modeling_x.py`` here;
    ``"other/repo--modeling_x.XForCausalLM"`` names it in another repo; tokenizers map to a
    ``[slow, fast]`` pair."""
    out: list[tuple[str, str, str | None, str]] = []
    if not isinstance(auto_map, dict):
        return out
    for auto, ref in auto_map.items():
        for r in (ref if isinstance(ref, list) else [ref]):
            if not isinstance(r, str) or "." not in r:
                continue
            repo, _, dotted = r.rpartition("--")
            module, _, cls = dotted.rpartition(".")
            out.append((str(auto), module.replace(".", "/") + ".py", repo or None, cls))
    return out


def _sentencepiece(path: str) -> tuple[str, list[str]]:
    """(role note, problems) of a SentencePiece model, decoded field by field, never run."""
    from .containers import protobuf as pb
    from .errors import ModelportError

    with open(path, "rb") as f:
        data = f.read(_TEXT_MAX + 1)
    if len(data) > _TEXT_MAX:
        return "SentencePiece model (too large to read)", []
    pieces = 0
    types: dict[int, int] = {}
    model_type = vocab = None
    try:
        for fld in pb.iter_fields(data):
            if fld.number == 1 and fld.wire == pb.LEN:
                pieces += 1
                for sub in pb.iter_fields(data, fld.offset, fld.end):
                    if sub.number == 3 and sub.wire == pb.VARINT:
                        types[sub.value] = types.get(sub.value, 0) + 1
            elif fld.number == 2 and fld.wire == pb.LEN:
                for sub in pb.iter_fields(data, fld.offset, fld.end):
                    if sub.number == 3 and sub.wire == pb.VARINT:
                        model_type = sub.value
                    elif sub.number == 4 and sub.wire == pb.VARINT:
                        vocab = sub.value
    except ModelportError as exc:
        return "not a SentencePiece model", [f"does not decode as a SentencePiece ModelProto: "
                                             f"{exc.message} (byte {exc.offset})"]
    kind = _SP_TYPES.get(model_type or 1, f"type {model_type}")  # proto default: UNIGRAM
    extra = f", {types.get(6, 0)} byte pieces" if types.get(6) else ""
    note = f"SentencePiece {kind} model: {pieces} pieces{extra}"
    if vocab is not None and vocab != pieces:
        note += f" (trained for vocab_size {vocab})"
    return note, []


def _tokenizer_json(data: Any) -> str:
    if not isinstance(data, dict):
        return "fast tokenizer (unreadable JSON)"
    model: dict[str, Any] = data["model"] if isinstance(data.get("model"), dict) else {}
    vocab = model.get("vocab")
    n = len(vocab) if isinstance(vocab, (dict, list)) else None
    added: list[Any] = data["added_tokens"] if isinstance(data.get("added_tokens"), list) \
        else []
    pre: dict[str, Any] = data["pre_tokenizer"] if isinstance(data.get("pre_tokenizer"), dict) \
        else {}
    return (f"fast tokenizer (tokenizers): {model.get('type') or '?'} model, "
            f"{n if n is not None else '?'} tokens, {len(added)} added tokens"
            + (f", pre-tokenizer {pre.get('type')}" if pre.get("type") else ""))


def _lines(path: str) -> int:
    with open(path, "rb") as f:
        return sum(1 for line in f if line.strip())


def _config(data: Any) -> tuple[str, bool]:
    if not isinstance(data, dict):
        return "model config (unreadable JSON)", False
    archs = data.get("architectures")
    parts = [f"architecture {', '.join(map(str, archs))}" if isinstance(archs, list) and archs
             else "no architectures listed"]
    if data.get("model_type"):
        parts.append(f"model_type {data['model_type']}")
    dt = data.get("torch_dtype") or data.get("dtype")
    if dt:
        parts.append(f"dtype {dt}")
    qc = data.get("quantization_config")
    if isinstance(qc, dict):
        bits = qc.get("bits") or ("4" if qc.get("load_in_4bit") else "8" if qc.get(
            "load_in_8bit") else None)
        parts.append(f"quantized: {qc.get('quant_method', '?')}"
                     + (f" {bits}-bit" if bits else ""))
    am = auto_map_entries(data.get("auto_map"))
    if am:
        parts.append("auto_map: " + ", ".join(
            f"{a} -> {(r + '--') if r else ''}{m[:-3]}.{c}" for a, m, r, c in am))
    return "model config: " + "; ".join(parts), bool(am)


def _tokenizer_config(data: Any) -> tuple[str, bool]:
    if not isinstance(data, dict):
        return "tokenizer config (unreadable JSON)", False
    parts = [f"class {data.get('tokenizer_class') or '?'}"]
    if data.get("model_max_length") and isinstance(data["model_max_length"], int) and \
            data["model_max_length"] < 10**12:
        parts.append(f"model_max_length {data['model_max_length']}")
    tpl = data.get("chat_template")
    if isinstance(tpl, str):
        parts.append(f"chat template ({len(tpl)} characters of Jinja, rendered by the "
                     "tokenizer's apply_chat_template; scanned, never rendered here)")
    elif isinstance(tpl, list):
        names = [str(t.get("name")) for t in tpl if isinstance(t, dict)]
        parts.append(f"{len(names)} named chat templates ({', '.join(names)})")
    am = auto_map_entries(data.get("auto_map"))
    if am:
        parts.append("auto_map: " + ", ".join(f"{a} -> {m[:-3]}.{c}" for a, m, _, c in am))
    return "tokenizer config: " + "; ".join(parts), bool(am)


def _file(root: str, name: str, code_modules: set[str]) -> dict[str, Any]:
    """One file's {path, role, format, needs_code, notes}."""
    from . import detect
    from .errors import ModelportError

    path = os.path.join(root, name)
    fmt: str | None
    try:
        fmt = detect.sniff(path)
    except (ModelportError, OSError):
        fmt = None
    role, notes, needs = "other", [], False
    base = os.path.basename(name)
    if base == "config.json":
        note, needs = _config(_json(path))
        role, notes = "config", [note]
    elif base == "generation_config.json":
        data = _json(path)
        keys = [f"{k}={data[k]}" for k in ("max_new_tokens", "max_length", "do_sample",
                                           "temperature", "top_p", "eos_token_id")
                if isinstance(data, dict) and k in data]
        role, notes = "generation config", ["decoding defaults for generate(): "
                                            + (", ".join(keys) or "none set")]
    elif base == "tokenizer.json":
        role, notes = "tokenizer", [_tokenizer_json(_json(path))]
    elif base == "tokenizer.model" or base.endswith(".model") and fmt is None:
        note, problems = _sentencepiece(path)
        role, notes = "tokenizer", [note, *problems]
    elif base in ("vocab.txt", "vocab.json", "merges.txt"):
        if base == "vocab.json":
            data = _json(path)
            n = len(data) if isinstance(data, dict) else "?"
            role, notes = "tokenizer", [f"BPE vocabulary: {n} tokens"]
        elif base == "vocab.txt":
            role, notes = "tokenizer", [f"WordPiece vocabulary: {_lines(path)} tokens"]
        else:
            n = _lines(path)
            role, notes = "tokenizer", [f"BPE merge rules: {n - 1 if n else 0} merges"]
    elif base == "special_tokens_map.json":
        data = _json(path)
        toks = [f"{k}={v.get('content') if isinstance(v, dict) else v}" for k, v in
                data.items() if not isinstance(v, list)] if isinstance(data, dict) else []
        role, notes = "tokenizer", ["special tokens: " + (", ".join(toks) or "none")]
    elif base == "tokenizer_config.json":
        note, needs = _tokenizer_config(_json(path))
        role, notes = "tokenizer", [note]
    elif base in ("chat_template.jinja", "chat_template.json") or base.endswith(".jinja"):
        role, notes = "chat template", ["Jinja chat template (rendered by apply_chat_template; "
                                        "scanned, never rendered here)"]
    elif base.endswith(".index.json"):
        data = _json(path)
        wmap = data.get("weight_map") if isinstance(data, dict) else None
        shards = sorted(set(wmap.values())) if isinstance(wmap, dict) else []
        role, notes = "shard index", [f"{len(wmap or {})} tensors in {len(shards)} shards"]
    elif base in ("adapter_config.json",) or base.startswith("adapter_model."):
        role = "adapter"
        notes = ["PEFT adapter " + ("config" if base.endswith(".json") else "weights")]
    elif base in _TRAINER_FILES:
        role, notes = "training state", [_TRAINER_FILES[base]]
    elif base in _PLAIN:
        role, notes = "documentation", [_PLAIN[base]]
    elif fmt == "python-source" or base.endswith(".py"):
        from .scan.python_code import analyze

        with open(path, "rb") as f:
            s = analyze(f.read(_TEXT_MAX).decode("utf-8", "replace"))
        needs = name in code_modules
        role = "custom code"
        if s.error:
            notes.append(f"Python source that {s.error}")
        else:
            notes.append(f"classes {', '.join(s.classes) or 'none'}; imports "
                         f"{', '.join(s.imports) or 'none'}")
            if s.system or s.calls:
                notes.append("reaches the system: " + ", ".join(
                    [m for m, _ in s.system] + [c for c, _ in s.calls]))
        notes.append("imported by transformers under trust_remote_code=True (named in "
                     "auto_map)" if needs else "not named by any auto_map (not imported by "
                     "from_pretrained, unless another .py imports it)")
    elif _WEIGHT_RE.match(base) or fmt in ("safetensors", "torch-zip", "torch-legacy"):
        role = "weights"
    return {"path": name, "role": role, "format": fmt, "needs_code": needs, "notes": notes}


def explain(root: str) -> dict[str, Any]:
    """``{"files": [...], "missing": [...], "loads": "..."}`` for a model folder."""
    names = sorted(n for n in os.listdir(root) if os.path.isfile(os.path.join(root, n)))
    cfg = _json(os.path.join(root, "config.json")) if "config.json" in names else None
    tok = _json(os.path.join(root, "tokenizer_config.json")) \
        if "tokenizer_config.json" in names else None
    maps = auto_map_entries(cfg.get("auto_map") if isinstance(cfg, dict) else None) + \
        auto_map_entries(tok.get("auto_map") if isinstance(tok, dict) else None)
    code_modules = {m for _, m, repo, _ in maps if repo is None}
    files = [_file(root, n, code_modules) for n in names]
    missing: list[str] = []
    for _, module, repo, cls in maps:
        if repo is not None:
            missing.append(f"auto_map loads {cls} from {module} in another repo, {repo}: "
                           "from_pretrained downloads and runs that code too")
        elif module not in names:
            missing.append(f"auto_map names {module} (class {cls}), which is not in the folder")
    for f in files:
        if f["role"] != "shard index":
            continue
        data = _json(os.path.join(root, f["path"]))
        wmap = data.get("weight_map") if isinstance(data, dict) else None
        for shard in sorted(set(wmap.values()) if isinstance(wmap, dict) else []):
            if shard not in names:
                missing.append(f"{shard}, named by {f['path']}, is missing")
    st = [n for n in names if n.endswith(".safetensors") and n.startswith("model")]
    pt = [n for n in names if n.endswith(".bin") and n.startswith("pytorch_model")]
    loads = None
    if st and pt:
        loads = ("both weight formats are here: transformers loads the safetensors files "
                 f"({len(st)}) and ignores the .bin files ({len(pt)}) unless "
                 "use_safetensors=False")
        for f in files:
            if f["path"] in pt:
                f["notes"].append("not loaded: transformers prefers the safetensors files")
            elif f["path"] in st:
                f["notes"].append("loaded by from_pretrained (safetensors preferred)")
    weights = any(f["role"] == "weights" for f in files)
    if weights and "config.json" not in names and "adapter_config.json" not in names:
        missing.append("config.json: from_pretrained needs it to build the model")
    tokenizer = {"tokenizer.json", "tokenizer.model", "vocab.txt", "vocab.json",
                 "spiece.model", "sentencepiece.bpe.model"} & set(names)
    if weights and not tokenizer and "adapter_config.json" not in names:
        missing.append("no tokenizer files (tokenizer.json, tokenizer.model, vocab.txt ...): "
                       "load the tokenizer from the base model's repo")
    if "adapter_config.json" in names:
        acfg = _json(os.path.join(root, "adapter_config.json"))
        base = acfg.get("base_model_name_or_path") if isinstance(acfg, dict) else None
        missing.append(f"the base model{f' ({base})' if base else ''}: an adapter loads on "
                       "top of it")
    return {"files": files, "missing": missing, "loads": loads}
