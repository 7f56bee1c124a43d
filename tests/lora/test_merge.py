"""`merge-lora` against peft's merge_and_unload(): same weights, same logits, refusals by name.

The adapters are trained for a few steps on tiny LLaMA-style and GPT-2 models (conftest). The
reference is peft itself: PeftModel.from_pretrained(base, adapter).merge_and_unload().
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from modelport.cli import main

torch = pytest.importorskip("torch")
pytest.importorskip("peft")


def _peft_merged(built, variant):
    import peft

    model = peft.PeftModel.from_pretrained(built.make_base(), built.adapters[variant])
    return model.merge_and_unload()


def _merge(capsys, base, adapter, out, *extra):
    assert main(["merge-lora", str(base), str(adapter), str(out), "--json", *extra]) == 0
    return json.loads(capsys.readouterr().out)


def _read(path):
    from safetensors.torch import load_file

    if os.path.isdir(path):
        state = {}
        for f in sorted(os.listdir(path)):
            if f.endswith(".safetensors"):
                state |= load_file(os.path.join(path, f))
        return state
    if str(path).endswith(".safetensors"):
        return load_file(path)
    return torch.load(path, weights_only=True)


def _compare(ours, ref, base, touched_min, exact=True):
    """Untouched tensors bit for bit; merged ones bit for bit when the arithmetic is peft's
    (F32: (B @ A) * scale, then + W), else (DoRA's norm) within 1e-6."""
    assert set(ours) == set(ref)
    touched = 0
    for name, want in ref.items():
        got = ours[name]
        assert got.dtype == want.dtype and got.shape == want.shape, name
        if torch.equal(base[name], want):  # untouched by the adapter: bit for bit
            assert torch.equal(got, want), name
            continue
        touched += 1
        diff = (got.double() - want.double()).abs().max().item()
        assert diff <= 1e-6, (name, diff)
        if exact:
            assert torch.equal(got, want), (name, diff)
    assert touched >= touched_min
    return touched


@pytest.mark.parametrize("variant", ["st", "bin"])
def test_llama_weights_and_logits(llama, tmp_path, capsys, variant):
    import transformers

    merged = _peft_merged(llama, variant)
    ref = {k: v.detach() for k, v in merged.state_dict().items()}
    base = {k: v.detach() for k, v in llama.make_base().state_dict().items()}
    out = tmp_path / "merged"
    res = _merge(capsys, llama.base, llama.adapters[variant], out)
    assert any("merged 10 LoRA update(s) into 10 weight(s)" in n for n in res["notes"])
    assert sorted(os.listdir(out)) == sorted(os.listdir(llama.base))  # config etc. came along
    _compare(_read(out), {k: v for k, v in ref.items() if k in _read(out)}, base, 10)
    loaded = transformers.LlamaForCausalLM.from_pretrained(out)
    with torch.no_grad():
        a = loaded(llama.inputs).logits
        b = merged(llama.inputs).logits
    assert torch.allclose(a, b, atol=1e-5, rtol=0), (a - b).abs().max()


def test_gpt2_fan_in_fan_out(gpt2, tmp_path, capsys):
    import transformers

    merged = _peft_merged(gpt2, "st")
    ref = {k: v.detach() for k, v in merged.state_dict().items()}
    base = {k: v.detach() for k, v in gpt2.make_base().state_dict().items()}
    out = tmp_path / "merged"
    _merge(capsys, gpt2.base, gpt2.adapters["st"], out)
    ours = _read(out)
    touched = _compare(ours, {k: ref[k] for k in ours}, base, 1)
    assert touched == 2 * 4  # per layer: attn.c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj
    loaded = transformers.GPT2LMHeadModel.from_pretrained(out)
    with torch.no_grad():
        assert torch.allclose(loaded(gpt2.inputs).logits, merged(gpt2.inputs).logits, atol=1e-5)


def test_rslora_has_its_own_scale(llama, tmp_path, capsys):
    merged = _peft_merged(llama, "rslora")
    ref = {k: v.detach() for k, v in merged.state_dict().items()}
    base = {k: v.detach() for k, v in llama.make_base().state_dict().items()}
    out = tmp_path / "m.safetensors"
    res = _merge(capsys, llama.base, llama.adapters["rslora"], out)
    assert any("rsLoRA" in n for n in res["notes"])
    ours = _read(out)
    _compare(ours, {k: ref[k] for k in ours}, base, 10)


def test_dora_merged_as_peft_merges_it(llama, tmp_path, capsys):
    merged = _peft_merged(llama, "dora")
    ref = {k: v.detach() for k, v in merged.state_dict().items()}
    base = {k: v.detach() for k, v in llama.make_base().state_dict().items()}
    out = tmp_path / "m.safetensors"
    res = _merge(capsys, llama.base, llama.adapters["dora"], out)
    assert any("DoRA" in n for n in res["notes"])
    ours = _read(out)
    _compare(ours, {k: ref[k] for k in ours}, base, 4, exact=False)


def test_torch_output_and_bf16_base(llama, tmp_path, capsys):
    """A torch.save output, and a BF16 base: arithmetic in float32, rounded once to BF16."""
    import peft

    bf = tmp_path / "base_bf16"
    assert main(["convert", str(llama.base), str(bf), "--dtype", "BF16", "-q"]) == 0
    out = tmp_path / "merged.pt"
    _merge(capsys, bf, llama.adapters["st"], out)
    import transformers

    model = transformers.LlamaForCausalLM.from_pretrained(bf, dtype=torch.bfloat16)
    ref = peft.PeftModel.from_pretrained(model, llama.adapters["st"]).merge_and_unload()
    ref_state = {k: v.detach() for k, v in ref.state_dict().items()}
    ours = _read(out)
    diffs = [k for k in ours if not torch.equal(ours[k], ref_state[k])]
    # same arithmetic (f32 sum, one rounding): bit for bit but for rare double-rounding ties
    for k in diffs:
        d = (ours[k].float() - ref_state[k].float()).abs().max().item()
        assert d <= ours[k].float().abs().max().item() * 2 ** -7, (k, d)
    assert len(diffs) <= 2


def test_refusals(llama, gpt2, tmp_path, capsys):
    # the adapter's modules are not in this base
    assert main(["merge-lora", str(gpt2.base), str(llama.adapters["st"]),
                 str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "has no weight in BASE" in err and not (tmp_path / "x").exists()
    # another peft type, refused by name
    other = tmp_path / "loha"
    other.mkdir()
    for f in os.listdir(llama.adapters["st"]):
        data = (llama.adapters["st"] / f).read_bytes()
        if f == "adapter_config.json":
            cfg = json.loads(data)
            cfg["peft_type"] = "LOHA"
            data = json.dumps(cfg).encode()
        (other / f).write_bytes(data)
    assert main(["merge-lora", str(llama.base), str(other), str(tmp_path / "y")]) == 2
    assert "LoHa" in capsys.readouterr().err
    # not an adapter at all
    assert main(["merge-lora", str(llama.base), str(llama.base), str(tmp_path / "z")]) == 2
    assert "no LoRA pairs" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == ["loha"]


def test_kohya_flat_file(tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    g = torch.Generator().manual_seed(0)
    base = {"down_blocks.0.proj_in.weight": torch.randn(24, 16, generator=g),
            "down_blocks.0.proj_in.bias": torch.randn(24, generator=g),
            "conv.weight": torch.randn(8, 4, 3, 3, generator=g)}
    lora = {"lora_unet_down_blocks_0_proj_in.lora_down.weight": torch.randn(4, 16, generator=g),
            "lora_unet_down_blocks_0_proj_in.lora_up.weight": torch.randn(24, 4, generator=g),
            "lora_unet_down_blocks_0_proj_in.alpha": torch.tensor(2.0),
            "lora_unet_conv.lora_down.weight": torch.randn(2, 4, 3, 3, generator=g),
            "lora_unet_conv.lora_up.weight": torch.randn(8, 2, 1, 1, generator=g),
            "lora_unet_conv.alpha": torch.tensor(1.0)}
    save_file(base, tmp_path / "base.safetensors")
    save_file(lora, tmp_path / "lora.safetensors")
    _merge(capsys, tmp_path / "base.safetensors", tmp_path / "lora.safetensors",
           tmp_path / "out.safetensors")
    out = load_file(tmp_path / "out.safetensors")
    p = "lora_unet_down_blocks_0_proj_in"
    want = base["down_blocks.0.proj_in.weight"] + (2.0 / 4) * (
        lora[f"{p}.lora_up.weight"] @ lora[f"{p}.lora_down.weight"])
    assert np.allclose(out["down_blocks.0.proj_in.weight"].numpy(), want.numpy(), atol=1e-6)
    conv = base["conv.weight"] + 0.5 * (lora["lora_unet_conv.lora_up.weight"].reshape(8, 2) @
                                        lora["lora_unet_conv.lora_down.weight"].reshape(2, -1)
                                        ).reshape(8, 4, 3, 3)
    assert np.allclose(out["conv.weight"].numpy(), conv.numpy(), atol=1e-6)
    assert torch.equal(out["down_blocks.0.proj_in.bias"], base["down_blocks.0.proj_in.bias"])


def test_extract_lora_round_trip(llama, tmp_path, capsys):
    """merge-lora then extract-lora at the same rank gives the adapter's update back: peft
    loads the extracted adapter and its logits equal the merged model's."""
    import peft

    merged = tmp_path / "merged"
    _merge(capsys, llama.base, llama.adapters["st"], merged)
    adapter = tmp_path / "extracted"
    assert main(["extract-lora", str(llama.base), str(merged), str(adapter), "--rank", "4",
                 "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert len(res["modules"]) == 10 and res["rank"] == 4
    model = peft.PeftModel.from_pretrained(llama.make_base(), adapter)
    ref = _peft_merged(llama, "st")
    with torch.no_grad():
        a, b = model(llama.inputs).logits, ref(llama.inputs).logits
    assert torch.allclose(a, b, atol=1e-4), (a - b).abs().max()
    # and merge-lora reads it too
    again = tmp_path / "again.safetensors"
    _merge(capsys, llama.base, adapter, again)
    ours, want = _read(again), _read(merged)
    for k in want:
        assert torch.allclose(ours[k], want[k], atol=1e-5), k
