"""Merge a LoRA adapter into its base model: W' = W + (alpha/r) * B @ A per targeted weight.

BASE is a model file or Hugging Face folder; ADAPTER a PEFT adapter folder (adapter_config.json
+ adapter_model.safetensors or .bin) or a flat LoRA safetensors file (lora_up/lora_down/alpha).
rsLoRA (alpha/sqrt(r)), fan_in_fan_out layers (GPT-2 Conv1D), embeddings and DoRA on linear
layers are merged as peft's merge_and_unload() merges them; lora_dropout is ignored (it only
acts in training). Other adapter types (LoHa, LoKr, IA3, AdaLoRA, ...) are refused by name.

Nothing is loaded whole: the base is streamed shard by shard and each targeted weight is
computed when it is written (memory: about one merged weight), in the base's dtype with the
arithmetic in float32. OUT is any format `convert` writes; a folder OUT of a folder BASE is a
loadable Hugging Face folder (config, tokenizer and other side files copied along). OUT is
written through a temporary sibling and renamed: an error leaves nothing behind.

examples:
  modelport merge-lora ./Llama-3.2-1B ./my-adapter ./merged
  modelport merge-lora ./base ./adapter merged.safetensors
  modelport merge-lora sd15.safetensors style_lora.safetensors sd15-style.safetensors
  modelport merge-lora ./base ./adapter ./merged --max-shard-size 2GB --dtype BF16
"""

from __future__ import annotations

import argparse
import json
import sys

from ..convert.cast import TARGETS
from ..formats import writer_names
from . import human_bytes

__all__ = ["add_arguments", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("base", help="the base model: a model file or a Hugging Face folder")
    p.add_argument("adapter", help="a PEFT adapter folder or a flat LoRA safetensors file")
    p.add_argument("out", help="the merged model to write: a folder or a file (never an input)")
    p.add_argument("--to", choices=writer_names(), help="output format, when OUT's name does "
                   "not say it")
    p.add_argument("--max-shard-size", metavar="SIZE",
                   help="largest shard of a folder OUT, e.g. 5GB (the default), 2GiB")
    p.add_argument("--dtype", type=str.upper, choices=TARGETS,
                   help="cast the merged weights to this type (default: the base's)")
    p.add_argument("--force", action="store_true", help="replace OUT if it exists")
    p.add_argument("--jobs", "-j", type=int, default=1, metavar="N",
                   help="write N shards in parallel")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress, notes or summary")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.add_argument("--allow-unsafe", action="store_true",
                   help="merge from inputs the scanner flags (nothing is executed either way)")


def run(args: argparse.Namespace) -> int:
    from ..lora.merge import merge_lora
    from .convert import Progress, _terminate_as_interrupt

    err = sys.stderr
    progress = Progress(err) if err.isatty() and not (args.quiet or args.json) else None
    try:
        with _terminate_as_interrupt():
            result = merge_lora(args.base, args.adapter, args.out, to=args.to, dtype=args.dtype,
                                max_shard_size=args.max_shard_size, force=args.force,
                                jobs=args.jobs, allow_unsafe=args.allow_unsafe,
                                progress=progress)
    finally:
        if progress is not None:
            progress.finish()
    if args.json:
        json.dump({"base": args.base, "adapter": args.adapter, "out": result.dst,
                   "format": result.format, "files": result.files, "tensors": result.tensors,
                   "bytes": result.bytes, "seconds": round(result.seconds, 3),
                   "notes": result.notes}, sys.stdout, indent=1)
        print()
    elif not args.quiet:
        for note in result.notes:
            print(f"modelport merge-lora: note: {note}", file=err)
        what = f"{len(result.files)} files" if len(result.files) > 1 else result.files[0]
        print(f"wrote {result.dst} ({result.format}, {what}, {result.tensors} tensors, "
              f"{human_bytes(result.bytes)}) in {result.seconds:.2f} s", file=err)
    return 0
