"""Check an ONNX model against the PyTorch model it came from, with onnxruntime.

SRC is what `modelport export` takes (recognised weights, --model, a TorchScript archive,
--trust-code for a pickled model); the inputs are derived from its architecture or given with
--input, at batch 3 and sequence 5. Per output: the max absolute and relative error against a
tolerance per dtype (--atol/--rtol). Exit 0 ok, 1 parity failed, 2 error.

examples:
  modelport parity model.onnx pytorch_model.bin
  modelport parity net.onnx weights.pt --model mypkg.nets:Net --input x:1x3x32x32:float32
"""

from __future__ import annotations

import argparse
import json
import sys

from .export import common_arguments, options, print_parity

__all__ = ["add_arguments", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("onnx", help="the .onnx model")
    p.add_argument("src", help="the PyTorch source: weights, TorchScript or a pickled model")
    common_arguments(p)


def run(args: argparse.Namespace) -> int:
    from ..export import parity

    result = parity(args.onnx, args.src, **options(args))
    if args.json:
        json.dump(result.to_json(), sys.stdout, indent=1)
        print()
    elif not (args.quiet and result.ok):
        print_parity(result)
    return 0 if result.ok else 1
