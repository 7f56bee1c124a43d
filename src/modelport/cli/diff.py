"""Show tensors added, removed and changed between two files (dtype, shape, max |a - b|).

With --full, every tensor of the tree and every plain value: the epoch, loss, learning rate or
hyper-parameters that changed, as path  old -> new. Exit 0 same, 1 differ, 2 error.

examples:
  modelport diff before.pt after.pt
  modelport diff epoch3.ckpt epoch4.ckpt --full        # what training changed
  modelport diff ./repo-v1 ./repo-v2 --json | jq .changed
"""

from __future__ import annotations

import argparse
import json
import sys

from ..convert import diff
from ..convert.values import show
from .verify import progress_for

__all__ = ["add_arguments", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("a", help="a model file or folder")
    p.add_argument("b", help="another model file or folder")
    p.add_argument("--full", action="store_true",
                   help="every tensor of the tree and every plain value, not only weights")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--jobs", "-j", type=int, default=2, metavar="N", help="compare N tensors at once")
    p.add_argument("--quiet", "-q", action="store_true",
                   help="no progress and no summary line: only what changed")


def run(args: argparse.Namespace) -> int:
    progress = progress_for(args)
    try:
        result = diff(args.a, args.b, full=args.full, jobs=args.jobs, progress=progress)
    finally:
        if progress is not None:
            progress.finish()
    if args.json:
        json.dump(result.to_json(), sys.stdout, indent=1)
        print()
        return 0 if result.same else 1
    names = [c.name for c in result.added + result.removed + result.changed]
    width = max([len(n) for n in names + [v.path for v in result.values]] + [10])
    for c in result.removed:
        print(f"- {c.name:<{width}}  {c.a}")
    for c in result.added:
        print(f"+ {c.name:<{width}}  {c.b}")
    for c in result.changed:
        what = c.a if c.a == c.b else f"{c.a} -> {c.b}"
        delta = f"  max |a - b| {c.max_abs:.6g}" if c.max_abs is not None else ""
        print(f"~ {c.name:<{width}}  {what}{delta}")
    marks = {"only-a": "-", "only-b": "+", "changed": "~"}
    for v in result.values:
        shown = show(v.a) if v.kind == "only-a" else show(v.b) if v.kind == "only-b" \
            else f"{show(v.a)} -> {show(v.b)}"
        print(f"{marks[v.kind]} {v.path:<{width}}  {shown}")
    line = (f"{result.unchanged} unchanged, {len(result.added)} added, {len(result.removed)} "
            f"removed, {len(result.changed)} changed")
    if args.full:
        count = {k: sum(v.kind == k for v in result.values) for k in marks}
        line += (f"; values: {result.values_unchanged} unchanged, {count['only-b']} added, "
                 f"{count['only-a']} removed, {count['changed']} changed")
    if not args.quiet:
        print(line)
    return 0 if result.same else 1
