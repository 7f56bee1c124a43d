"""The reference file of DESIGN.md: a GPT-style fp32 state_dict written by torch.save.

``python bench/reference.py OUT --gb 2.1`` writes it (one tied weight: lm_head.weight is
wte.weight, as GPT-2 ties them). Shapes follow GPT-2: d_model 1600, vocab 50257, 4x MLP;
the layer count is chosen to reach the requested size.
"""

from __future__ import annotations

import argparse
import os

VOCAB, CTX = 50257, 1024


def gpt_state_dict(d: int, layers: int, vocab: int = VOCAB, ctx: int = CTX) -> dict:
    """GPT-2 names and shapes, fp32, seeded; lm_head.weight is wte.weight (the tied weight)."""
    import torch

    g = torch.Generator().manual_seed(0)

    def t(*shape):
        return torch.empty(*shape).normal_(0, 0.02, generator=g)

    sd = {"transformer.wte.weight": t(vocab, d), "transformer.wpe.weight": t(ctx, d)}
    for i in range(layers):
        p = f"transformer.h.{i}."
        sd[p + "ln_1.weight"], sd[p + "ln_1.bias"] = torch.ones(d), torch.zeros(d)
        sd[p + "attn.c_attn.weight"], sd[p + "attn.c_attn.bias"] = t(d, 3 * d), t(3 * d)
        sd[p + "attn.c_proj.weight"], sd[p + "attn.c_proj.bias"] = t(d, d), t(d)
        sd[p + "ln_2.weight"], sd[p + "ln_2.bias"] = torch.ones(d), torch.zeros(d)
        sd[p + "mlp.c_fc.weight"], sd[p + "mlp.c_fc.bias"] = t(d, 4 * d), t(4 * d)
        sd[p + "mlp.c_proj.weight"], sd[p + "mlp.c_proj.bias"] = t(4 * d, d), t(d)
    sd["transformer.ln_f.weight"], sd["transformer.ln_f.bias"] = torch.ones(d), torch.zeros(d)
    sd["lm_head.weight"] = sd["transformer.wte.weight"]  # the tied weight
    return sd


def build(gb: float) -> dict:
    """The reference file's state_dict: d_model 1600, as many layers as reach ``gb``."""
    d = 1600
    per_layer = (4 * d * d + 4 * d) + (8 * d * d + 5 * d) + 4 * d  # attn, mlp, norms
    fixed = VOCAB * d + CTX * d + 2 * d
    return gpt_state_dict(d, max(1, int((gb * 1e9 / 4 - fixed) // per_layer)))


def ensure(path: str, gb: float) -> str:
    """Write the reference file unless a file of about that size is already there."""
    if os.path.exists(path) and abs(os.path.getsize(path) / 1e9 - gb) < 0.3:
        return path
    import torch

    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    torch.save(build(gb), path + ".tmp")
    os.replace(path + ".tmp", path)
    return path


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("out")
    ap.add_argument("--gb", type=float, default=2.1)
    a = ap.parse_args()
    print(ensure(a.out, a.gb), os.path.getsize(a.out))
