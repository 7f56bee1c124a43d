"""merge-lora on a >= 2 GB base: modelport vs peft's merge_and_unload() + save_pretrained().

    python bench/lora_bench.py [--keep]

Builds (once, into bench/data/lora/, gitignored) a LLaMA-style base with random F32 weights
(about 2.2 GB, written tensor by tensor with safetensors, so building it needs no model in
memory) and a rank-16 PEFT adapter on every attention and MLP projection. Then, each in a fresh
interpreter (bench/measure.py: wall seconds, peak RSS):

    modelport   merge_lora(base, adapter, out/)                   streams, one weight at a time
    peft        AutoModelForCausalLM.from_pretrained(base) -> PeftModel.from_pretrained(...)
                -> merge_and_unload() -> save_pretrained(out/)

and checks that both outputs hold the same tensors (bit for bit). Results go to the "merge-lora"
section of bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from measure import measure, write_section  # noqa: E402

DATA = os.path.join(HERE, "data", "lora")
CONFIG = dict(vocab_size=32000, hidden_size=2048, intermediate_size=5632, num_hidden_layers=8,
              num_attention_heads=16, num_key_value_heads=16, max_position_embeddings=2048,
              rms_norm_eps=1e-5, tie_word_embeddings=False)
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
RANK = 16


def build() -> tuple[str, str]:
    import numpy as np
    from safetensors.numpy import save_file

    base, adapter = os.path.join(DATA, "base"), os.path.join(DATA, "adapter")
    if os.path.exists(os.path.join(base, "model.safetensors.index.json")) and \
            os.path.exists(os.path.join(adapter, "adapter_model.safetensors")):
        return base, adapter
    shutil.rmtree(DATA, ignore_errors=True)
    os.makedirs(base)
    os.makedirs(adapter)
    rng = np.random.default_rng(0)
    h, ff, v, n = (CONFIG[k] for k in ("hidden_size", "intermediate_size", "vocab_size",
                                       "num_hidden_layers"))

    def w(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape, dtype=np.float32) * 0.02)

    shapes = {"q_proj": (h, h), "k_proj": (h, h), "v_proj": (h, h), "o_proj": (h, h),
              "gate_proj": (ff, h), "up_proj": (ff, h), "down_proj": (h, ff)}
    # One shard per layer (as save_pretrained's 5 GB limit would not split these; smaller shards
    # keep the builder's own memory low), embeddings and head in their own shards.
    weight_map: dict[str, str] = {}
    shards = [("embed", {"model.embed_tokens.weight": w(v, h)}),
              ("head", {"lm_head.weight": w(v, h), "model.norm.weight": np.ones(h, np.float32)})]
    total = 0
    for i, (label, state) in enumerate(shards + [(f"layer{j}", None) for j in range(n)]):
        if state is None:
            j = int(label[5:])
            p = f"model.layers.{j}."
            state = {p + ("self_attn." if m[0] in "qkvo" else "mlp.") + m + ".weight": w(*s)
                     for m, s in shapes.items()}
            state[p + "input_layernorm.weight"] = np.ones(h, np.float32)
            state[p + "post_attention_layernorm.weight"] = np.ones(h, np.float32)
        name = f"model-{i + 1:05d}-of-{n + 2:05d}.safetensors"
        save_file(state, os.path.join(base, name), metadata={"format": "pt"})
        total += sum(a.nbytes for a in state.values())
        weight_map |= {k: name for k in state}
        del state
    with open(os.path.join(base, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f)
    with open(os.path.join(base, "config.json"), "w") as f:
        json.dump({"architectures": ["LlamaForCausalLM"], "model_type": "llama",
                   "torch_dtype": "float32", **CONFIG}, f)
    lora = {}
    for j in range(n):
        for m, (out_dim, in_dim) in shapes.items():
            key = f"base_model.model.model.layers.{j}.{'self_attn' if m[0] in 'qkvo' else 'mlp'}.{m}"
            lora[key + ".lora_A.weight"] = w(RANK, in_dim)
            lora[key + ".lora_B.weight"] = w(out_dim, RANK)
    save_file(lora, os.path.join(adapter, "adapter_model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(adapter, "adapter_config.json"), "w") as f:
        json.dump({"peft_type": "LORA", "r": RANK, "lora_alpha": 32, "target_modules": TARGETS,
                   "base_model_name_or_path": base, "fan_in_fan_out": False, "bias": "none",
                   "task_type": "CAUSAL_LM", "lora_dropout": 0.05}, f)
    return base, adapter


MODELPORT = """
from modelport.lora.merge import merge_lora
merge_lora(P + "/base", P + "/adapter", P + "/out_modelport")
"""

PEFT = """
import torch, peft, transformers
m = transformers.AutoModelForCausalLM.from_pretrained(P + "/base", dtype=torch.float32)
m = peft.PeftModel.from_pretrained(m, P + "/adapter").merge_and_unload()
m.save_pretrained(P + "/out_peft")
"""

SAME = """
import os
from safetensors import safe_open
def tensors(d):
    for f in sorted(os.listdir(d)):
        if f.endswith(".safetensors"):
            with safe_open(os.path.join(d, f), "numpy") as s:
                for k in s.keys():
                    yield k, os.path.join(d, f)
a, b = dict(tensors(P + "/out_modelport")), dict(tensors(P + "/out_peft"))
assert set(a) == set(b), set(a) ^ set(b)
differ = 0
for k in a:
    with safe_open(a[k], "numpy") as x, safe_open(b[k], "numpy") as y:
        differ += not (x.get_tensor(k) == y.get_tensor(k)).all()
print("DIFFER", differ, "OF", len(a))
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep", action="store_true", help="keep the merged outputs")
    args = ap.parse_args()
    base, adapter = build()
    size = sum(os.path.getsize(os.path.join(base, f)) for f in os.listdir(base))
    for out in ("out_modelport", "out_peft"):
        shutil.rmtree(os.path.join(DATA, out), ignore_errors=True)
    ours = measure(MODELPORT, DATA)
    theirs = measure(PEFT, DATA)
    import subprocess

    check = subprocess.run([sys.executable, "-c", f"P = {DATA!r}\n" + SAME],
                           capture_output=True, text=True, check=True).stdout.split()
    if not args.keep:
        for out in ("out_modelport", "out_peft"):
            shutil.rmtree(os.path.join(DATA, out), ignore_errors=True)
    rows = [("modelport merge-lora", ours), ("peft merge_and_unload + save_pretrained", theirs)]
    lines = [
        "## merge-lora",
        "",
        f"`python bench/lora_bench.py`: a LLaMA-style base of {size / 1e9:.2f} GB (F32, "
        f"{CONFIG['num_hidden_layers']} layers, hidden {CONFIG['hidden_size']}, sharded per "
        f"layer) and a rank-{RANK} PEFT adapter on all 7 projections of every layer "
        f"({CONFIG['num_hidden_layers'] * 7} updates); both write a Hugging Face folder. Each "
        "job in a fresh interpreter; peak RSS is the process's VmHWM.",
        "",
        "| job | seconds | peak RSS |",
        "| --- | ---: | ---: |",
    ]
    for label, r in rows:
        lines.append(f"| {label} | {r['seconds']:.1f} | {r['maxrss_kb'] / 1024:.0f} MiB |")
    lines += [
        "",
        f"Outputs compared tensor by tensor: {check[1]} of {check[3]} differ (0 = bit for bit).",
        f"modelport: {ours['seconds'] / theirs['seconds']:.2f}x peft's time, "
        f"{ours['maxrss_kb'] / theirs['maxrss_kb']:.2f}x its peak memory. modelport streams the "
        "base shard by shard and computes each targeted weight when the writer reaches it "
        "(float32 row blocks), so its peak is about one merged weight plus numpy and the "
        "interpreter; peft holds the whole model (and transformers' loading buffers).",
    ]
    write_section("merge-lora", "\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
