"""Show tensors added, removed and changed between two files (dtype, shape, max |a - b|).

examples:
  modelport diff before.pt after.pt
  modelport diff ./repo-v1 ./repo-v2 --json | jq .changed
"""

from __future__ import annotations

import argparse
import json
import sys

from ..convert import diff

__all__ = ["add_arguments", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("a", help="a model file or folder")
    p.add_argument("b", help="another model file or folder")
    p.add_argument("--full", action="store_true", help="every tensor of the tree, not only weights")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--jobs", "-j", type=int, default=2, metavar="N", help="compare N tensors at once")


def run(args: argparse.Namespace) -> int:
    result = diff(args.a, args.b, full=args.full, jobs=args.jobs)
    if args.json:
        json.dump(result.to_json(), sys.stdout, indent=1)
        print()
        return 0 if result.same else 1
    width = max([len(c.name) for c in result.added + result.removed + result.changed] + [10])
    for c in result.removed:
        print(f"- {c.name:<{width}}  {c.a}")
    for c in result.added:
        print(f"+ {c.name:<{width}}  {c.b}")
    for c in result.changed:
        what = c.a if c.a == c.b else f"{c.a} -> {c.b}"
        delta = f"  max |a - b| {c.max_abs:.6g}" if c.max_abs is not None else ""
        print(f"~ {c.name:<{width}}  {what}{delta}")
    print(f"{result.unchanged} unchanged, {len(result.added)} added, {len(result.removed)} "
          f"removed, {len(result.changed)} changed")
    return 0 if result.same else 1
