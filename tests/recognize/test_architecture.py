"""Architecture recognition: from names and shapes to a family, a class and a config.

Models are built by transformers with random configs (tests/recognize/zoo.py), saved the way
people save them, read back by modelport (no torch.load) and recognised; every field the file
fixes (exact or derived) must equal the config the model was built from.
"""

from __future__ import annotations

import json
import zlib

import pytest
import zoo

import modelport
from modelport.cli import main
from modelport.recognize import recognize
from modelport.recognize.rules import FAMILIES

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

# Fields that are constructor arguments or whose config value transformers normalises.
_NOT_CONFIG = {"add_pooling_layer"}


def _check_fields(arch, cfg, lookalike: bool = False) -> None:
    assert arch.config, "a recognised file has a config"
    for name, setting in arch.config.items():
        assert setting.how in ("exact", "derived", "assumed"), name
        if setting.how == "assumed" or name in _NOT_CONFIG:
            continue
        if lookalike and not hasattr(cfg, name):
            continue  # LLaMA's attention_bias read against a Mistral config
        assert getattr(cfg, name) == setting.value, f"{name}: {setting.value} vs {getattr(cfg, name)}"


WRITTEN = [("bert", "bare"), ("roberta", "module."), ("gpt2", "state_dict"),
           ("llama", "_orig_mod."), ("qwen2", "bare"), ("vit", "module._orig_mod.")]


@pytest.mark.parametrize("family, how", WRITTEN)
def test_saved_state_dict_is_recognised(tmp_path, family, how):
    model, cfg = zoo.build(family, seed=zlib.crc32(family.encode()) % 1000)
    path = tmp_path / "model.pt"
    torch.save(zoo.wrap(model.state_dict(), how), path)
    arch = recognize(modelport.open(path))
    assert arch.verified, arch.mismatches
    assert arch.cls == type(model).__name__
    assert arch.family == family
    _check_fields(arch, cfg)
    # the class's name of every tensor of the file: what export loads the weights by
    assert set(arch.names.values()) <= set(model.state_dict())


@pytest.mark.parametrize("family", sorted(zoo.FAMILIES))
@pytest.mark.parametrize("seed", [1, 2])
def test_every_family_from_shapes(family, seed):
    """Names and shapes of a meta-device model (no weights anywhere) for each table family."""
    model, cfg = zoo.build(family, seed, device="meta")
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    arch = recognize(shapes)
    assert arch.verified, arch.mismatches
    assert type(model).__name__ in arch.candidates
    _check_fields(arch, cfg, lookalike=arch.cls != type(model).__name__)


def test_lookalikes_are_named():
    model, _ = zoo.build("mistral", 3, device="meta")
    arch = recognize({k: tuple(v.shape) for k, v in model.state_dict().items()})
    assert arch.cls == "LlamaForCausalLM"
    assert arch.candidates == ["LlamaForCausalLM", "MistralForCausalLM"]
    bert, _ = zoo.build("bert", 3, device="meta")
    arch = recognize({k: tuple(v.shape) for k, v in bert.state_dict().items()})
    assert arch.candidates == ["BertModel", "RobertaModel"]  # two token types: BERT first


def test_tied_head_left_out_is_derived():
    model, cfg = zoo.build("qwen2", 4, device="meta")
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items() if k != "lm_head.weight"}
    arch = recognize(shapes)
    assert arch.verified and arch.cls == "Qwen2ForCausalLM"
    assert arch.config["tie_word_embeddings"].to_json() == {"value": True, "how": "derived"}


def test_legacy_vit_names():
    """ViTs written before transformers 5 (every ViT on the Hub) name blocks BERT's way."""
    model, cfg = zoo.build("vit", 5, device="meta")
    old = {}
    for k, v in model.state_dict().items():
        k = (k.replace("vit.layers.", "vit.encoder.layer.")
             .replace("attention.q_proj", "attention.attention.query")
             .replace("attention.k_proj", "attention.attention.key")
             .replace("attention.v_proj", "attention.attention.value")
             .replace("attention.o_proj", "attention.output.dense")
             .replace("mlp.fc1", "intermediate.dense").replace("mlp.fc2", "output.dense"))
        old[k] = tuple(v.shape)
    arch = recognize(old)
    assert arch.verified and arch.cls == "ViTForImageClassification"
    assert arch.names["vit.encoder.layer.0.attention.attention.query.weight"] == \
        "vit.layers.0.attention.q_proj.weight"
    _check_fields(arch, cfg)


@pytest.mark.parametrize("change", ["renamed", "reshaped", "extra"])
def test_one_tensor_off_is_unknown(change):
    model, _ = zoo.build("llama", 6, device="meta")
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    victim = "model.layers.0.mlp.up_proj.weight"
    if change == "renamed":
        shapes["model.layers.0.mlp.up_projection.weight"] = shapes.pop(victim)
        want = {(victim, True, False), ("model.layers.0.mlp.up_projection.weight", False, True)}
    elif change == "reshaped":
        shapes[victim] = (shapes[victim][0] + 1, shapes[victim][1])
        want = {(victim, True, True)}
    else:
        shapes["model.layers.0.extra.weight"] = (3,)
        want = {("model.layers.0.extra.weight", False, True)}
    arch = recognize(shapes)
    assert arch.family is None and arch.cls is None and not arch.verified
    assert arch.nearest == {"family": "llama", "class": "LlamaForCausalLM"}
    got = {(m["name"], m["expected"] is not None, m["got"] is not None) for m in arch.mismatches}
    assert got == want
    if change == "reshaped":
        (m,) = arch.mismatches
        assert m["got"][0] == m["expected"][0] + 1
    assert "unknown: nearest LlamaForCausalLM" in arch.describe()


def test_nothing_known():
    arch = recognize({"conv.weight": (3, 3), "fc.weight": (10, 3)})
    assert arch.to_json() == {"family": None, "class": None, "candidates": [], "config": {},
                              "verified": False, "mismatches": [], "nearest": None}


def test_without_torch_still_answers(monkeypatch):
    import builtins

    real = builtins.__import__

    def no_torch(name, *a, **k):
        if name.split(".")[0] in ("torch", "transformers"):
            raise ImportError(name=name.split(".")[0])
        return real(name, *a, **k)

    model, cfg = zoo.build("gpt2", 7, device="meta")
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    monkeypatch.setattr(builtins, "__import__", no_torch)
    arch = recognize(shapes)
    assert arch.cls == "GPT2LMHeadModel" and arch.verified is False
    assert "not installed" in arch.note
    _check_fields(arch, cfg)


def test_table_is_consistent():
    """Every rule table entry names a real transformers class and model type."""
    import transformers

    for fam in FAMILIES:
        transformers.AutoConfig.for_model(fam.model_type)
        for var in fam.variants:
            assert hasattr(transformers, var.cls), var.cls
            assert var.base in ("",) or var.base.endswith(".")


def test_inspect_shows_it(tmp_path, capsys):
    model, cfg = zoo.build("gpt2", 8)
    path = tmp_path / "gpt2.pt"
    torch.save(model.state_dict(), path)
    assert main(["inspect", str(path), "--json", "--verify"]) == 0
    arch = json.loads(capsys.readouterr().out)["architecture"]
    assert (arch["family"], arch["class"], arch["verified"]) == ("gpt2", "GPT2LMHeadModel", True)
    assert arch["config"]["n_layer"] == {"value": cfg.n_layer, "how": "derived"}
    assert arch["config"]["n_embd"] == {"value": cfg.n_embd, "how": "exact"}
    assert arch["config"]["n_head"]["how"] == "assumed"
    assert main(["inspect", str(path), "--verify"]) == 0
    out = capsys.readouterr().out
    assert f"architecture GPT2LMHeadModel; n_layer={cfg.n_layer}" in out
    assert "verified on the meta device" in out
    assert main(["inspect", str(path)]) == 0  # by default from names and shapes: no torch
    out = capsys.readouterr().out
    assert f"architecture GPT2LMHeadModel; n_layer={cfg.n_layer}" in out
    assert "verified on the meta device" not in out


def test_hf_folder_without_config(tmp_path):
    st = pytest.importorskip("safetensors.torch")
    model, cfg = zoo.build("qwen2", 21)
    folder = tmp_path / "repo"
    folder.mkdir()
    st.save_file({k: v.contiguous() for k, v in model.state_dict().items()
                  if k != "lm_head.weight"}, folder / "model.safetensors")
    arch = recognize(modelport.open(folder))
    assert (arch.cls, arch.verified) == ("Qwen2ForCausalLM", True)
    _check_fields(arch, cfg)


def test_whole_pickled_model(tmp_path):
    """torch.save(model): modelport reads its parameters without unpickling anything."""
    model, cfg = zoo.build("gpt2", 22)
    path = tmp_path / "whole.pt"
    torch.save(model, path)
    ck = modelport.open(path)
    assert ck.kind == "full-model"
    arch = recognize(ck)
    assert (arch.cls, arch.verified) == ("GPT2LMHeadModel", True)
    _check_fields(arch, cfg)
