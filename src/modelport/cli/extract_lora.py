"""Extract a LoRA adapter from a fine-tuned model: the rank-r truncated SVD of TUNED - BASE.

For every 2-D weight that changed, B @ A is the best rank-r approximation of the difference
(B = U sqrt(S), A = sqrt(S) Vt); lora_alpha = r, so the scale is 1. OUT is a PEFT adapter
folder (adapter_config.json + adapter_model.safetensors) that peft and `modelport merge-lora`
load. Changed tensors that are not 2-D weights (biases, norms, embeddings) are named in a note
and left out. One pair of weights is in memory at a time; OUT is written atomically.

examples:
  modelport extract-lora ./Llama-3.2-1B ./Llama-3.2-1B-finetuned ./adapter --rank 16
  modelport extract-lora base.safetensors tuned.safetensors ./adapter --rank 8 --json
"""

from __future__ import annotations

import argparse
import json
import sys

__all__ = ["add_arguments", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("base", help="the model before fine-tuning (file or Hugging Face folder)")
    p.add_argument("tuned", help="the fine-tuned model, with the same tensor names")
    p.add_argument("out", help="the adapter folder to write")
    p.add_argument("--rank", "-r", type=int, required=True, help="LoRA rank r (e.g. 8, 16, 64)")
    p.add_argument("--min-change", type=float, default=0.0, metavar="X",
                   help="ignore weights whose largest change is at most X (default 0)")
    p.add_argument("--force", action="store_true", help="replace OUT if it exists")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.add_argument("--quiet", "-q", action="store_true", help="no notes or summary")


def run(args: argparse.Namespace) -> int:
    from ..lora.extract import extract_lora

    res = extract_lora(args.base, args.tuned, args.out, rank=args.rank, force=args.force,
                       min_change=args.min_change)
    if args.json:
        json.dump({"out": res.out, "rank": res.rank, "modules": res.modules,
                   "parameters": res.parameters, "seconds": round(res.seconds, 3),
                   "notes": res.notes}, sys.stdout, indent=1)
        print()
        return 0
    if args.quiet:
        return 0
    for note in res.notes:
        print(f"modelport extract-lora: note: {note}", file=sys.stderr)
    print(f"wrote {res.out} (rank {res.rank}, {len(res.modules)} modules, {res.parameters:,} "
          f"parameters) in {res.seconds:.2f} s", file=sys.stderr)
    return 0
