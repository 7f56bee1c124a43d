"""Check that two files hold the same tensors: names, dtypes, shapes and bytes.

Works across formats (a .pth against its .safetensors, a folder of shards against one merged
file): every tensor is hashed while streaming, so nothing is loaded whole. --full compares every
tensor of the tree and every plain value too (epoch, loss, hyper-parameters, optimizer
param_groups, config), naming each value that changed as path: old -> new. --atol/--rtol compare
values instead of bytes, for files cast by another tool. Exit 0 same, 1 differ, 2 error.

examples:
  modelport verify model.pth model.safetensors
  modelport verify last.ckpt roundtrip.pt --full        # training state and values too
  modelport verify model.pth model-bf16.safetensors --cast BF16
  modelport verify ./repo-fp32 ./repo-bf16 --atol 1e-2 --rtol 1e-2
"""

from __future__ import annotations

import argparse
import json
import sys

from ..convert import verify
from ..convert.cast import dtype_code
from .convert import Progress

__all__ = ["add_arguments", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("a", help="a model file or folder")
    p.add_argument("b", help="another model file or folder")
    p.add_argument("--atol", type=float, help="absolute tolerance: compare values, not bytes")
    p.add_argument("--rtol", type=float, help="relative tolerance: compare values, not bytes")
    p.add_argument("--cast", type=dtype_code, metavar="DTYPE",
                   help="B was converted with --dtype DTYPE: compare it with A cast the same way")
    p.add_argument("--full", action="store_true",
                   help="every tensor of the tree and every plain value, not only weights")
    p.add_argument("--select", metavar="PATH", help="compare this subtree of A")
    p.add_argument("--layout", metavar="REF", help="A is a raw buffer laid out as REF says "
                   "(a model file, or a JSON [{name, dtype, shape}])")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--jobs", "-j", type=int, default=2, metavar="N", help="hash N tensors at once")
    p.add_argument("--quiet", "-q", action="store_true",
                   help="no progress and no summary: only the differences (the exit code says)")


def run(args: argparse.Namespace) -> int:
    progress = progress_for(args)
    try:
        result = verify(args.a, args.b, args.atol, args.rtol, cast=args.cast, full=args.full,
                        select=args.select, jobs=args.jobs, layout=args.layout,
                        progress=progress)
    finally:
        if progress is not None:
            progress.finish()
    if args.json:
        json.dump(result.to_json(), sys.stdout, indent=1)
        print()
    elif result.same:
        if not args.quiet:
            print(f"same: {result.summary()}")
    else:
        width = max(len(d.kind) for d in result.differences)
        for d in result.differences:
            print(f"  {d.kind:<{width}} {d.name}: {d.detail}")
        if not args.quiet:
            print(f"differ: {len(result.differences)} difference(s) in {result.summary()} "
                  "compared")
            if result.hint:
                print(f"hint: {result.hint}")
    return 0 if result.same else 1


def progress_for(args: argparse.Namespace) -> Progress | None:
    """The progress line on a terminal's stderr, unless --quiet or --json."""
    err = sys.stderr
    return Progress(err) if err.isatty() and not (args.quiet or args.json) else None
