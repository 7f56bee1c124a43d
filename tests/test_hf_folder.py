"""A Hugging Face folder explained file by file; its custom code flagged by scan, never imported.

The folder is built here the way repos are: save_pretrained weights (both formats), a real
tokenizer (tokenizers' BPE, written by transformers), a SentencePiece model trained by the
sentencepiece library, a chat template, and custom code named by auto_map (a modeling file
that imports os, a cross-repo entry). A canary proves nothing in the folder ran.
"""

from __future__ import annotations

import json
import sys
import warnings

import pytest

from modelport.cli import main

MODELING = '''\
import os
import torch
from transformers import PreTrainedModel

open(os.environ["MODELPORT_CANARY"], "w").write("ran")  # importing this file runs it


class TinyConfigured(PreTrainedModel):
    def forward(self, x):
        return x


class TinyForCausalLM(TinyConfigured):
    pass
'''


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    pytest.importorskip("transformers")
    spm = pytest.importorskip("sentencepiece")
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    root = tmp_path_factory.mktemp("hf") / "repo"
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=64,
                                       n_positions=16, bos_token_id=0, eos_token_id=0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.save_pretrained(root)  # model.safetensors
    # the older format next to it, as many repos carry both
    torch.save({k: v.contiguous() for k, v in model.state_dict().items()},
               root / "pytorch_model.bin")
    text = ["the quick brown fox jumps over the lazy dog"] * 50
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel()
    tok.train_from_iterator(text, trainers.BpeTrainer(vocab_size=60, special_tokens=["<unk>",
                                                                                    "<s>"]))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="<s>",
                                   unk_token="<unk>")
    fast.chat_template = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    fast.save_pretrained(root)
    tok.model.save(str(root))  # vocab.json + merges.txt, as slow GPT-2 tokenizers read them
    # transformers 5 no longer writes it; repos saved earlier carry it
    (root / "special_tokens_map.json").write_text(json.dumps(
        {"bos_token": "<s>", "eos_token": "<s>", "unk_token": "<unk>"}))
    corpus = root.parent / "corpus.txt"
    corpus.write_text("\n".join(f"sentence number {i} about tokenizers" for i in range(200)))
    spm.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(root.parent / "sp"),
                                   vocab_size=40, model_type="bpe")
    (root / "tokenizer.model").write_bytes((root.parent / "sp.model").read_bytes())
    cfg = json.loads((root / "config.json").read_text())
    cfg["auto_map"] = {"AutoConfig": "configuration_tiny.TinyConfig",
                       "AutoModelForCausalLM": "modeling_tiny.TinyForCausalLM",
                       "AutoModel": "someone/other-repo--modeling_other.OtherModel"}
    (root / "config.json").write_text(json.dumps(cfg))
    (root / "modeling_tiny.py").write_text(MODELING)
    return root


def tok_merges(folder):
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(folder / "tokenizer.json")).to_str() and json.loads(
        (folder / "tokenizer.json").read_text())["model"]["merges"]


def _inspect(capsys, path):
    assert main(["inspect", str(path), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_files_explained(folder, capsys, tmp_path, monkeypatch):
    canary = tmp_path / "canary"
    monkeypatch.setenv("MODELPORT_CANARY", str(canary))
    d = _inspect(capsys, folder)
    files = {f["path"]: f for f in d["files"]}
    assert {f: files[f]["role"] for f in ("config.json", "generation_config.json",
                                          "model.safetensors", "pytorch_model.bin",
                                          "tokenizer.json", "tokenizer_config.json",
                                          "special_tokens_map.json", "tokenizer.model",
                                          "vocab.json", "merges.txt", "modeling_tiny.py")} == {
        "config.json": "config", "generation_config.json": "generation config",
        "model.safetensors": "weights", "pytorch_model.bin": "weights",
        "tokenizer.json": "tokenizer", "tokenizer_config.json": "tokenizer",
        "special_tokens_map.json": "tokenizer", "tokenizer.model": "tokenizer",
        "vocab.json": "tokenizer", "merges.txt": "tokenizer", "modeling_tiny.py": "custom code"}
    merges = len(tok_merges(folder))
    assert files["merges.txt"]["notes"] == [f"BPE merge rules: {merges} merges"]
    assert "eos=<s>" in files["special_tokens_map.json"]["notes"][0].replace("_token", "")
    assert all(set(f) == {"path", "role", "format", "needs_code", "notes"} for f in d["files"])
    assert "architecture GPT2LMHeadModel" in files["config.json"]["notes"][0]
    assert "AutoModelForCausalLM -> modeling_tiny.TinyForCausalLM" in files["config.json"][
        "notes"][0]
    assert files["config.json"]["needs_code"] is True
    code = files["modeling_tiny.py"]
    assert code["needs_code"] is True and code["format"] == "python-source"
    assert "TinyConfigured(PreTrainedModel)" in code["notes"][0] and "os" in code["notes"][0]
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(folder / "tokenizer.model"))
    assert files["tokenizer.model"]["notes"][0].startswith(
        f"SentencePiece BPE model: {sp.get_piece_size()} pieces")
    from transformers import AutoTokenizer

    fast = AutoTokenizer.from_pretrained(folder)
    assert f"{len(fast.backend_tokenizer.get_vocab(with_added_tokens=False))} tokens" in \
        files["tokenizer.json"]["notes"][0]
    # transformers >= 4.50 saves the template as chat_template.jinja, older ones inline
    assert files.get("chat_template.jinja", {}).get("role") == "chat template" or \
        "chat template" in files["tokenizer_config.json"]["notes"][0]
    assert "not loaded: transformers prefers the safetensors" in " ".join(
        files["pytorch_model.bin"]["notes"])
    missing = " ".join(d["folder"]["missing"])
    assert "configuration_tiny.py (class TinyConfig), which is not in the folder" in missing
    assert "someone/other-repo" in missing
    assert "safetensors" in d["folder"]["loads"]
    can = d["can"]["inference"]
    assert "trust_remote_code=True" in can["how"]
    assert not canary.exists() and "modeling_tiny" not in sys.modules


def test_scan_flags_custom_code(folder, capsys, tmp_path, monkeypatch):
    canary = tmp_path / "canary"
    monkeypatch.setenv("MODELPORT_CANARY", str(canary))
    code = main(["scan", str(folder), "--json"])
    out = json.loads(capsys.readouterr().out)
    reports = out if isinstance(out, list) else out.get("files") or out.get("reports") or [out]
    found = [f for r in reports for f in r.get("findings", []) if f["rule"] == "remote-code"]
    assert len(found) == 1, found
    assert "TinyForCausalLM(TinyConfigured)" in found[0]["message"]
    assert "imports os, torch, transformers" in found[0]["message"]
    assert code != 0  # custom code is never clean
    assert not canary.exists() and "modeling_tiny" not in sys.modules


def test_missing_shard_and_tokenizer(corpus, tmp_path, capsys):
    import shutil

    repo = tmp_path / "repo"
    shutil.copytree(corpus["hf_gpt2_st"], repo)
    (repo / "model-00003-of-00008.safetensors").unlink()
    from modelport.hfrepo_files import explain

    missing = explain(str(repo))["missing"]
    assert any("model-00003-of-00008.safetensors, named by model.safetensors.index.json, is "
               "missing" in m for m in missing)
    assert any("no tokenizer files" in m for m in missing)


def test_model_card_with_code_is_not_python(tmp_path, capsys):
    """A README whose code blocks show Python is Markdown: scanned as data, not as source."""
    card = tmp_path / "README.md"
    card.write_text("---\nlicense: mit\n---\n# Tiny\n\n```python\nfrom transformers import "
                    "AutoModel\nimport os\nm = AutoModel.from_pretrained('x')\n```\n")
    fenced = tmp_path / "USAGE.md"
    fenced.write_text("Usage:\n\n```\nimport torch\nclass A: pass\n```\n")
    assert main(["scan", str(card), str(fenced), "--json"]) == 0
    out = capsys.readouterr().out
    assert "python-source" not in out and "remote-code" not in out


def test_code_that_reaches_the_system_is_unsafe(tmp_path, capsys):
    src = tmp_path / "modeling_evil.py"
    src.write_text("import subprocess as sp\nfrom os import system\n\nclass M:\n    def __init__("
                   "self):\n        system('id')\n        eval('1')\n        sp.run(['id'])\n")
    assert main(["scan", str(src), "--json"]) == 1
    out = capsys.readouterr().out
    for needle in ('"remote-code-system-import"', '"subject": "subprocess"',
                   '"subject": "os.system"', '"subject": "eval"', '"subject": "subprocess.run"'):
        assert needle in out, needle
