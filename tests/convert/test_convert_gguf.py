"""GGUF both ways: a tiny LLaMA-family Hugging Face model (random weights, a BPE tokenizer trained
here, a chat template) converted to GGUF and read back by the gguf package; GGUF -> safetensors
-> GGUF byte for byte; GGUF -> Hugging Face folder with the names and q/k rows restored; blocks
dequantized as the gguf package dequantizes them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import modelport
from modelport.cli import main
from modelport.errors import UsageError

gguf = pytest.importorskip("gguf")


def _tiny_model(folder: Path, model_type: str) -> Path:
    pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    tokenizers = pytest.importorskip("tokenizers")
    import torch

    tok = tokenizers.Tokenizer(tokenizers.models.BPE())
    tok.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = tokenizers.decoders.ByteLevel()
    trainer = tokenizers.trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<s>", "</s>", "<unk>"],
        initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(["hello world, the quick brown fox jumps over the lazy dog"] * 20,
                            trainer)
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>",
                                                eos_token="</s>", unk_token="<unk>")
    fast.chat_template = ("{% for m in messages %}{{ '<s>' + m['role'] + ': ' + m['content'] "
                          "+ '</s>' }}{% endfor %}")
    fast.save_pretrained(folder)
    torch.manual_seed(0)
    cls, model = {"llama": ("LlamaConfig", "LlamaForCausalLM"),
                  "qwen2": ("Qwen2Config", "Qwen2ForCausalLM")}[model_type]
    cfg = getattr(transformers, cls)(
        vocab_size=len(fast), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
        tie_word_embeddings=False)
    getattr(transformers, model)(cfg).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _tiny_model(tmp_path_factory.mktemp("llama"), "llama")


def _hf_tensors(folder: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(folder / "model.safetensors")


def _permute(w: np.ndarray, n_head: int) -> np.ndarray:  # llama.cpp's LlamaModel.permute
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2) \
        .reshape(w.shape)


def _fields(path: Path) -> dict:
    r = gguf.GGUFReader(path)
    return {k: f.contents() for k, f in r.fields.items() if not k.startswith("GGUF.")}


def test_hf_llama_to_gguf_is_what_llama_cpp_expects(llama: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.gguf"
    assert main(["convert", str(llama), str(out), "-q"]) == 0
    meta = _fields(out)
    cfg = json.loads((llama / "config.json").read_text())
    tokj = json.loads((llama / "tokenizer.json").read_text())
    assert meta["general.architecture"] == "llama"
    assert meta["llama.block_count"] == 2 and meta["llama.context_length"] == 128
    assert meta["llama.attention.head_count"] == 4 and meta["llama.attention.head_count_kv"] == 2
    assert meta["llama.embedding_length"] == 64 and meta["llama.feed_forward_length"] == 128
    assert meta["llama.rope.dimension_count"] == 16 and meta["general.file_type"] == 0
    assert meta["tokenizer.ggml.model"] == "gpt2"
    vocab = tokj["model"]["vocab"]
    assert meta["tokenizer.ggml.tokens"] == sorted(vocab, key=vocab.get)
    assert len(meta["tokenizer.ggml.tokens"]) == cfg["vocab_size"]
    assert meta["tokenizer.ggml.token_type"][:4] == [3, 3, 3, 1]  # special added tokens: CONTROL
    merges = tokj["model"]["merges"]
    assert meta["tokenizer.ggml.merges"] == [m if isinstance(m, str) else " ".join(m)
                                             for m in merges]
    assert meta["tokenizer.ggml.bos_token_id"] == 0 and meta["tokenizer.ggml.eos_token_id"] == 1
    assert meta["tokenizer.chat_template"].startswith("{% for m in messages %}")
    # Tensors: llama.cpp's names, q/k rows permuted, F32 bit for bit.
    hf = _hf_tensors(llama)
    r = gguf.GGUFReader(out)
    got = {t.name: np.asarray(t.data) for t in r.tensors}
    tmap = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, 2)
    assert len(got) == len(hf)
    for name, w in hf.items():
        new = tmap.get_name(name, try_suffixes=(".weight", ".bias"))
        expect = _permute(w, 4) if "q_proj" in name else _permute(w, 2) if "k_proj" in name else w
        assert np.array_equal(got[new], expect), name
    assert modelport.scan.scan_file(out).verdict == "clean"


def test_q8_0_equals_gguf_quantization_and_f16_is_exact(llama: Path, tmp_path: Path) -> None:
    hf = _hf_tensors(llama)
    q8, f16 = tmp_path / "q8.gguf", tmp_path / "f16.gguf"
    modelport.convert(llama, q8, dtype="Q8_0")
    modelport.convert(llama, f16, dtype="F16")
    r8 = {t.name: t for t in gguf.GGUFReader(q8).tensors}
    r16 = {t.name: t for t in gguf.GGUFReader(f16).tensors}
    assert _fields(q8)["general.file_type"] == 7 and _fields(f16)["general.file_type"] == 1
    w = _permute(hf["model.layers.1.self_attn.q_proj.weight"], 4)
    ref = gguf.quants.quantize(w, gguf.GGMLQuantizationType.Q8_0)
    assert r8["blk.1.attn_q.weight"].tensor_type.name == "Q8_0"
    assert np.array_equal(np.asarray(r8["blk.1.attn_q.weight"].data), ref)
    assert r8["blk.1.attn_norm.weight"].tensor_type.name == "F32"  # 1-D stays F32, as llama.cpp
    assert np.array_equal(np.asarray(r16["token_embd.weight"].data),
                          hf["model.embed_tokens.weight"].astype(np.float16))


def test_gguf_to_safetensors_and_back_keeps_the_bytes(llama: Path, tmp_path: Path) -> None:
    q8 = tmp_path / "q8.gguf"
    modelport.convert(llama, q8, dtype="Q8_0")
    kept, back = tmp_path / "kept.safetensors", tmp_path / "back.gguf"
    result = modelport.convert(q8, kept, keep_quantized=True)
    assert any("keep-quantized" in n for n in result.notes)
    from safetensors import safe_open

    with safe_open(kept, "np") as f:
        assert f.get_tensor("blk.0.attn_q.weight").dtype == np.uint8
        assert "modelport.gguf" in f.metadata() and "modelport.ggml" in f.metadata()
    assert modelport.open(kept).weights  # readable; inspect shows the ggml types again
    from modelport.convert import load

    assert load(str(kept)).weights["blk.0.attn_q.weight"].dtype.name == "Q8_0"
    modelport.convert(kept, back)
    assert back.read_bytes() == q8.read_bytes()
    # Dequantized to F32 by default, equal to the gguf package's dequantization (and --verify
    # dequantizes A the same way to compare).
    deq, f32 = tmp_path / "deq.safetensors", tmp_path / "f32.gguf"
    assert modelport.convert(q8, deq, verify=True).verified.same
    from safetensors.numpy import load_file

    values = load_file(deq)
    for t in gguf.GGUFReader(q8).tensors:
        ref = gguf.quants.dequantize(np.asarray(t.data), t.tensor_type)
        assert np.array_equal(values[t.name], ref.reshape(values[t.name].shape)), t.name
    modelport.convert(llama, f32)
    st, again = tmp_path / "f.safetensors", tmp_path / "again.gguf"
    modelport.convert(f32, st)
    modelport.convert(st, again)
    assert again.read_bytes() == f32.read_bytes()


def test_gguf_to_hf_folder_restores_names_and_rows(llama: Path, tmp_path: Path) -> None:
    f32 = tmp_path / "m.gguf"
    modelport.convert(llama, f32)
    out = tmp_path / "hf"
    assert main(["convert", str(f32), str(out), "-q"]) == 0
    assert main(["verify", str(llama / "model.safetensors"), str(out / "model.safetensors")]) == 0
    with pytest.raises(UsageError, match="renames"):  # verify pairs tensors by name
        modelport.convert(f32, tmp_path / "hf-v", verify=True)
    # The folder loads with transformers (config.json from the GGUF's metadata) and computes
    # what the original model computes.
    import torch
    import transformers

    ids = torch.tensor([[0, 5, 17, 42, 3]])
    with torch.no_grad():
        want = transformers.LlamaForCausalLM.from_pretrained(llama)(ids).logits
        got = transformers.AutoModelForCausalLM.from_pretrained(out)(ids).logits
    assert torch.equal(want, got)
    q8, out8 = tmp_path / "q8.gguf", tmp_path / "hf8"
    modelport.convert(llama, q8, dtype="Q8_0")
    modelport.convert(q8, out8, dtype="F16")
    hf, back = _hf_tensors(llama), _hf_tensors(out8)
    assert set(back) == set(hf)
    q = back["model.layers.0.self_attn.q_proj.weight"]
    assert q.dtype == np.float16
    assert np.abs(q.astype(np.float32) - hf["model.layers.0.self_attn.q_proj.weight"]).max() < 0.01


def test_qwen2_is_not_permuted(tmp_path: Path) -> None:
    folder = _tiny_model(tmp_path / "qwen", "qwen2")
    out = tmp_path / "q.gguf"
    modelport.convert(folder, out)
    meta = _fields(out)
    assert meta["general.architecture"] == "qwen2" and meta["qwen2.block_count"] == 2
    got = {t.name: np.asarray(t.data) for t in gguf.GGUFReader(out).tensors}
    hf = _hf_tensors(folder)
    assert np.array_equal(got["blk.0.attn_q.weight"], hf["model.layers.0.self_attn.q_proj.weight"])
    assert np.array_equal(got["blk.0.attn_q.bias"], hf["model.layers.0.self_attn.q_proj.bias"])


def test_sentencepiece_tokenizer_is_llama_cpps_llama_vocab(llama: Path, tmp_path: Path) -> None:
    spm = pytest.importorskip("sentencepiece")
    import io
    import shutil

    folder = tmp_path / "spm"
    shutil.copytree(llama, folder)
    (folder / "tokenizer.json").unlink()
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(["hello world, the quick brown fox jumps over the lazy dog"] * 50),
        model_writer=model, vocab_size=295, model_type="bpe", byte_fallback=True,
        hard_vocab_limit=False,
        user_defined_symbols=["<tool>"])
    (folder / "tokenizer.model").write_bytes(model.getvalue())
    out = tmp_path / "spm.gguf"
    modelport.convert(folder, out)
    meta = _fields(out)
    sp = spm.SentencePieceProcessor(model_proto=model.getvalue())
    n = sp.vocab_size()
    assert meta["tokenizer.ggml.model"] == "llama" and meta["tokenizer.ggml.pre"] == "default"
    tokens, scores, types = (meta["tokenizer.ggml.tokens"], meta["tokenizer.ggml.scores"],
                             meta["tokenizer.ggml.token_type"])
    size = json.loads((folder / "config.json").read_text())["vocab_size"]
    assert len(tokens) == len(scores) == len(types) == size
    assert tokens[:n] == [sp.id_to_piece(i) for i in range(n)]
    assert scores[:n] == [sp.get_score(i) for i in range(n)]
    kinds = [2 if sp.is_unknown(i) else 3 if sp.is_control(i) else 5 if sp.is_unused(i)
             else 6 if sp.is_byte(i) else 1 for i in range(n)]
    assert types[:n] == kinds and 6 in kinds and 3 in kinds
    assert tokens[n:] == [f"[PAD{i}]" for i in range(n, size)] and set(types[n:]) == {5}


def _k_quant_gguf(path: Path) -> dict[str, np.ndarray]:
    """A GGUF (written by the gguf package) with random but valid K-quant blocks."""
    rng = np.random.default_rng(5)
    w = gguf.GGUFWriter(str(path), "llama")
    raws = {}
    for name, off in (("Q2_K", [80, 82]), ("Q3_K", [108]), ("Q4_K", [0, 2]), ("Q5_K", [0, 2]),
                      ("Q6_K", [208]), ("Q4_0", [0]), ("Q5_1", [0, 2])):
        q = gguf.GGMLQuantizationType[name]
        block, size = gguf.GGML_QUANT_SIZES[q]
        raw = rng.integers(0, 256, (3, 512 // block * size), dtype=np.uint8)
        blocks = raw.reshape(-1, size)
        for o in off:
            blocks[:, o:o + 2] = rng.uniform(-1, 1, (len(blocks), 1)).astype("<f2").view(np.uint8)
        w.add_tensor(name.lower(), raw, raw_dtype=q)
        raws[name.lower()] = gguf.quants.dequantize(raw, q)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return raws


def test_k_quants_dequantize_in_conversion(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "k.gguf"
    ref = _k_quant_gguf(src)
    assert main(["inspect", str(src)]) == 0
    assert "Q2_K" in capsys.readouterr().out
    out = tmp_path / "k.npz"
    modelport.convert(src, out)
    with np.load(out) as z:
        for name, values in ref.items():
            assert np.array_equal(z[name], values), name
    bf = tmp_path / "k.safetensors"
    modelport.convert(src, bf, dtype="BF16")
    assert modelport.open(bf).weights["q4_k"].dtype.name == "BF16"


def test_iq_types_are_refused_by_name_unless_kept(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "iq.gguf"
    w = gguf.GGUFWriter(str(src), "llama")
    q = gguf.GGMLQuantizationType.IQ2_XS
    w.add_tensor("w", np.zeros((2, gguf.GGML_QUANT_SIZES[q][1]), np.uint8), raw_dtype=q)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    assert modelport.open(src).weights["w"].dtype.name == "IQ2_XS"
    assert main(["convert", str(src), str(tmp_path / "x.safetensors")]) == 2
    err = capsys.readouterr().err
    assert "IQ2_XS" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.safetensors").exists()
    kept = tmp_path / "kept.safetensors"
    modelport.convert(src, kept, keep_quantized=True)
    modelport.convert(kept, tmp_path / "back.gguf")
    assert (tmp_path / "back.gguf").read_bytes() == src.read_bytes()
    with pytest.raises(UsageError, match="keep-quantized"):
        modelport.convert(src, tmp_path / "x.npz", keep_quantized=True)
