"""Export a model to ONNX and check it: the same inputs through PyTorch and onnxruntime.

The PyTorch model comes from SRC: weights of a recognised architecture (BERT, RoBERTa, GPT-2,
LLaMA, Mistral, Qwen2, ViT, Whisper, T5, ConvNeXt ...: see `modelport inspect`) are loaded into
the transformers class built from the config their shapes give, no class needed from you; a
TorchScript archive exports as it is; `--model pkg.module:Class` uses your class; a whole
pickled model only with `--trust-code` (the modules it imports are named first, then it is
loaded in a child process: nothing else in modelport runs code from a file). Inputs are named
as transformers names them (input_ids, attention_mask, pixel_values, input_features ...) or
given with --input; batch and sequence axes are dynamic. Parity always follows (unless
--no-check), on other batch and sequence sizes than the trace: per output the max absolute and
relative error. Exit 0 ok, 1 parity failed, 2 error. Needs `pip install 'modelport[export]'`.

examples:
  modelport export pytorch_model.bin model.onnx
  modelport export ./vit-folder vit.onnx --opset 18
  modelport export weights.pt net.onnx --model mypkg.nets:Net --init '{"width": 64}' \\
      --input x:1x3x32x32:float32
  modelport export traced.pt traced.onnx --input x:2x16:float32
  modelport export whole_model.pt model.onnx --trust-code --input x:1x10:float32
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..errors import UsageError
from . import human_bytes

__all__ = ["add_arguments", "run", "common_arguments", "options", "print_parity"]


def common_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", metavar="MODULE:CLASS", help="your nn.Module class, e.g. "
                   "mypkg.nets:Net (imported: it is your code); the file holds its weights")
    p.add_argument("--init", metavar="JSON", help="keyword arguments for --model's class")
    p.add_argument("--trust-code", action="store_true", help="allow loading a whole pickled "
                   "model (runs the code it imports, in a child process, after naming it)")
    p.add_argument("--input", action="append", default=[], metavar="NAME:DIMS[:DTYPE]",
                   help="one input, e.g. pixel_values:1x3x224x224:float32 (repeat for each)")
    p.add_argument("--atol", type=float, help="absolute tolerance (default per dtype: "
                   "float32 1e-4, float16 1e-2, bfloat16 5e-2)")
    p.add_argument("--rtol", type=float, help="relative tolerance (default per dtype: "
                   "float32 1e-3, float16 1e-2, bfloat16 5e-2)")
    p.add_argument("--select", metavar="PATH", help="the subtree of SRC holding the weights")
    p.add_argument("--quiet", "-q", action="store_true", help="print nothing unless parity "
                   "fails (the exit code says)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("src", help="weights (state_dict, safetensors, HF folder), a TorchScript "
                   "archive or a pickled model")
    p.add_argument("dst", help="the .onnx file to write")
    common_arguments(p)
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    p.add_argument("--no-check", action="store_true", help="skip the parity check")
    p.add_argument("--external-data", choices=("auto", "always", "never"), default="auto",
                   help="weights in DST.data beside the .onnx: auto above 2 GB (default)")


def options(args: argparse.Namespace) -> dict[str, Any]:
    from ..export import parse_input

    init = None
    if args.init:
        try:
            init = json.loads(args.init)
        except ValueError as exc:
            raise UsageError(f"--init is not JSON: {exc}") from None
        if not isinstance(init, dict):
            raise UsageError("--init must be a JSON object of keyword arguments")
    quiet = args.json or args.quiet
    return dict(model=args.model, init=init, trust_code=args.trust_code,
                inputs=[parse_input(t) for t in args.input] or None, atol=args.atol,
                rtol=args.rtol, select=args.select,
                announce=(lambda s: None) if quiet else
                (lambda s: print(f"modelport: {s}", file=sys.stderr, flush=True)))


def print_parity(parity: Any) -> None:
    shapes = ", ".join(s.describe().split(" ")[0].split("[")[0] + str(list(s.shape))
                       for s in parity.inputs)
    print(f"parity (onnxruntime vs PyTorch, inputs {shapes}):")
    width = max([len(o.name) for o in parity.outputs] + [6])
    for o in parity.outputs:
        verdict = "ok" if o.ok else "FAILED"
        print(f"  {o.name:<{width}}  {o.dtype:<8} {str(o.shape):<16} max abs {o.max_abs:.2e}  "
              f"max rel {o.max_rel:.2e}  {verdict} (atol {o.atol:g}, rtol {o.rtol:g})")


def run(args: argparse.Namespace) -> int:
    from ..export import export

    external = {"auto": None, "always": True, "never": False}[args.external_data]
    result = export(args.src, args.dst, opset=args.opset, check=not args.no_check,
                    external_data=external, **options(args))
    if args.json:
        json.dump(result.to_json(), sys.stdout, indent=1)
        print()
    elif args.quiet:
        if result.parity is not None and not result.parity.ok:
            print_parity(result.parity)
    else:
        ins = ", ".join(s.describe() for s in result.inputs)
        extra = f" + {', '.join(result.external_data)}" if result.external_data else ""
        print(f"wrote {result.dst}{extra} ({result.cls}, {result.source}; opset {result.opset}; "
              f"{human_bytes(result.nbytes)}) in {result.seconds:.1f} s")
        print(f"  inputs   {ins}")
        print(f"  outputs  {', '.join(result.outputs)}")
        if result.parity is not None:
            print_parity(result.parity)
    return 0 if result.parity is None or result.parity.ok else 1
