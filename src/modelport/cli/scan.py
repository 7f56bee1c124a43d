"""Flag every file a loader would run code from; nothing in the files is executed.

Files and folders (walked; every file is judged by its bytes, whatever its name). Every pickle
is run by modelport's symbolic unpickler and what it would import or call is checked against
one allowlist, fail closed. Exit codes: 0 clean, 1 unsafe, 2 error (an error never hides a
finding: a file that is unsafe and partly unreadable exits 1 and lists both).

examples:
  modelport scan pytorch_model.bin
  modelport scan ~/models --json | jq '.files[] | select(.verdict != "clean")'
  modelport scan ./checkpoints --sarif > modelport.sarif      # upload to code scanning
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .. import __version__
from ..scan import FileReport, Severity, scan_paths
from ..scan.sarif import to_sarif

__all__ = ["add_arguments", "run", "render", "exit_code"]

EXIT_CLEAN, EXIT_UNSAFE, EXIT_ERROR = 0, 1, 2


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", metavar="PATH", help="model files or folders")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="one JSON object (for scripts)")
    out.add_argument("--sarif", action="store_true", help="SARIF 2.1.0 (for CI code scanning)")
    p.add_argument("--strict", action="store_true", help="allowlist only: no ecosystem profiles "
                   "(Lightning, transformers, numpy RNG, OmegaConf) and LOW findings are unsafe")
    p.add_argument("-v", "--verbose", action="store_true", help="also show notes (INFO) and "
                   "what was checked in clean files")


def exit_code(reports: list[FileReport]) -> int:
    verdicts = {r.verdict for r in reports}
    if "unsafe" in verdicts:
        return EXIT_UNSAFE
    return EXIT_ERROR if "error" in verdicts or not reports else EXIT_CLEAN


def _overall(reports: list[FileReport]) -> str:
    return {EXIT_CLEAN: "clean", EXIT_UNSAFE: "unsafe", EXIT_ERROR: "error"}[exit_code(reports)]


def run(args: argparse.Namespace) -> int:
    reports = scan_paths(args.paths, strict=args.strict)
    if args.json:
        doc: dict[str, Any] = {"verdict": _overall(reports), "files": [r.to_json()
                                                                      for r in reports]}
        remote = getattr(args, "_remote", None)
        if remote is not None:
            doc["remote"] = remote.to_json()
        json.dump(doc, sys.stdout, indent=1, default=str)
        print()
    elif args.sarif:
        json.dump(to_sarif(reports, __version__), sys.stdout, indent=1)
        print()
    else:
        sys.stdout.write(render(reports, verbose=args.verbose))
    return exit_code(reports)


def render(reports: list[FileReport], verbose: bool = False) -> str:
    lines: list[str] = []
    for r in reports:
        fmt = f" [{r.format}]" if r.format else ""
        lines.append(f"{r.verdict.upper():<7} {r.path}{fmt}: {r.reason}")
        shown = [f for f in sorted(r.findings, key=lambda f: -f.severity)
                 if verbose or f.severity > Severity.INFO]
        for f in shown:
            where = f"  [{f.location()}]" if f.location() else ""
            what = f"{f.subject}: " if f.subject and f.subject not in f.message else ""
            lines.append(f"  {f.severity.name:<8} {f.rule:<20} {what}{f.message}{where}")
            if f.why:
                lines.append(f"  {'':<8} {'':<20} why: {f.why}")
        for e in r.errors:
            lines.append(f"  ERROR    {e}")
        if verbose and r.scanned:
            lines.append(f"  checked  {', '.join(r.scanned[:20])}"
                         + (f" and {len(r.scanned) - 20} more" if len(r.scanned) > 20 else ""))
    counts = {v: sum(r.verdict == v for r in reports) for v in ("clean", "unsafe", "error")}
    lines.append(f"{len(reports)} file(s): {counts['clean']} clean, {counts['unsafe']} unsafe, "
                 f"{counts['error']} error(s)")
    return "\n".join(lines) + "\n"
