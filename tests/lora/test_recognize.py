"""LoRA adapters recognised: PEFT folders (.safetensors and .bin) and flat kohya-style files."""

from __future__ import annotations

import json

import pytest

from modelport.cli import main


def _json(capsys, path):
    assert main(["inspect", str(path), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("variant", ["st", "bin"])
def test_peft_folder(llama, capsys, variant):
    import peft

    path = llama.adapters[variant]
    d = _json(capsys, path)
    assert d["format"] == "peft-adapter"
    lora = d["lora"]
    model = peft.PeftModel.from_pretrained(llama.make_base(), path)
    lora_params = sum(p.numel() for n, p in model.named_parameters() if "lora_" in n)
    assert lora["parameters"] == lora_params
    assert (lora["rank"], lora["alpha"], lora["style"]) == (4, 8.0, "peft")
    assert sorted(lora["target_modules"]) == sorted(model.peft_config["default"].target_modules)
    assert lora["modules"] == 2 * 5
    can = d["can"]
    assert can["inference"]["answer"] == "after-conversion"
    assert "merge-lora" in can["inference"]["how"]
    assert can["lora"]["answer"] == "yes" and "is_trainable=True" in can["lora"]["how"]


def test_patterns_and_variants(llama, capsys):
    rs = _json(capsys, llama.adapters["rslora"])["lora"]
    assert rs["use_rslora"] is True
    assert rs["ranks"] == {"2": 2, "4": 8}  # rank_pattern {"o_proj": 2}
    assert rs["alphas"] == {"3.0": 1, "8.0": 9}  # alpha_pattern on one module
    dora = _json(capsys, llama.adapters["dora"])["lora"]
    assert dora["use_dora"] is True
    assert main(["inspect", str(llama.adapters["dora"])]) == 0
    assert "DoRA" in capsys.readouterr().out


def test_flat_kohya_file(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(0)
    state = {}
    for i, (rank, alpha) in enumerate([(4, 2.0), (4, 2.0), (8, 4.0)]):
        m = f"lora_unet_down_blocks_0_attentions_{i}_proj_in"
        state[f"{m}.lora_down.weight"] = torch.randn(rank, 16, generator=g)
        state[f"{m}.lora_up.weight"] = torch.randn(24, rank, generator=g)
        state[f"{m}.alpha"] = torch.tensor(alpha)
    path = tmp_path / "style.safetensors"
    save_file(state, path, metadata={"ss_sd_model_name": "v1-5-pruned.safetensors"})
    lora = _json(capsys, path)["lora"]
    assert lora["style"] == "kohya"
    assert (lora["rank"], lora["alpha"]) == (4, 2.0)
    assert lora["ranks"] == {"4": 2, "8": 1}
    assert lora["base_model"] == "v1-5-pruned.safetensors"
    assert lora["parameters"] == sum(t.numel() for n, t in state.items() if "alpha" not in n)
    assert lora["target_modules"] == ["proj_in"]


def test_plain_weights_are_no_adapter(corpus, capsys):
    assert "lora" not in _json(capsys, corpus["hf_gpt2_st"])
