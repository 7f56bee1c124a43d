"""Flag every file a loader would run code from; nothing in the files is executed.

Files and folders (walked; every file is judged by its bytes, whatever its name; a Hugging Face
cache's snapshot links and the blobs they point at are scanned once). Every pickle is run by
modelport's symbolic unpickler and what it would import or call is checked against one
allowlist, fail closed. Each file gets one verdict:

  CLEAN       everything a loader would import or call is on the allowlist
  NEEDS-CODE  loading it imports classes or functions no list vouches for (your own
              __main__.Net, a library's model class): no known gadget, but the file is only as
              safe as that code. --allow NAME / --policy FILE vouch for names you trust;
              `convert` extracts the weights without importing anything
  UNSAFE      a malicious indicator: a known gadget, a name or call built at run time, a
              payload fed to a loader, an archive or framing trick
  ERROR       part of the file could not be judged (never clean)

Exit codes: 0 clean, 1 unsafe or needs-code, 2 error. An error never hides a finding: a file
that is unsafe and partly unreadable exits 1 and lists both.

examples:
  modelport scan pytorch_model.bin
  modelport scan ~/.cache/huggingface/hub -q                  # only files that are not clean
  modelport scan model.pt --allow __main__.Net --allow 'mylib.models.*'
  modelport scan ./checkpoints --policy trusted.toml          # [[allow]] name=... reason=...
  modelport scan ~/models --json | jq '.files[] | select(.verdict != "clean")'
  modelport scan ./checkpoints --sarif > modelport.sarif      # upload to code scanning
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from .. import __version__
from ..scan import FileReport, Severity, UserAllow, load_policy, scan_paths
from ..scan.findings import VERDICTS

__all__ = ["add_arguments", "run", "render", "exit_code"]

EXIT_CLEAN, EXIT_UNSAFE, EXIT_ERROR = 0, 1, 2


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", metavar="PATH", help="model files or folders")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="one JSON object (for scripts): the "
                     "overall verdict, counts per verdict, modelport's version, every file")
    out.add_argument("--sarif", action="store_true", help="SARIF 2.1.0 (for CI code scanning)")
    p.add_argument("--strict", action="store_true", help="allowlist only: no ecosystem profiles "
                   "(Lightning, transformers, numpy RNG, OmegaConf) and LOW findings count")
    p.add_argument("--allow", action="append", default=[], metavar="NAME",
                   help="vouch for a global (module.qualname, or module.* for a module and its "
                   "submodules); repeatable. Never allows a known gadget")
    p.add_argument("--policy", metavar="FILE", help="a JSON or TOML list of names to allow, "
                   "each with its reason: [{\"name\": \"mylib.*\", \"reason\": \"...\"}] or "
                   "[[allow]] tables")
    p.add_argument("--jobs", "-j", type=int, default=1, metavar="N",
                   help="scan N files at once (processes); reports stay in the order given")
    p.add_argument("-q", "--quiet", action="store_true", help="print only files that are not "
                   "clean, and the summary line")
    p.add_argument("-v", "--verbose", action="store_true", help="also show notes (INFO) and "
                   "what was checked in clean files")


def exit_code(reports: list[FileReport]) -> int:
    verdicts = {r.verdict for r in reports}
    if verdicts & {"unsafe", "needs-code"}:
        return EXIT_UNSAFE
    return EXIT_ERROR if "error" in verdicts or not reports else EXIT_CLEAN


def _overall(reports: list[FileReport]) -> str:
    verdicts = {r.verdict for r in reports}
    for v in ("unsafe", "needs-code", "error"):
        if v in verdicts:
            return v
    return "clean" if reports else "error"


def _allow(args: argparse.Namespace) -> UserAllow | None:
    allow = UserAllow.of([(n, "allowed on the command line (--allow)") for n in args.allow])
    if args.policy:
        allow = allow.merged(load_policy(args.policy))
    return allow or None


def counts(reports: list[FileReport]) -> dict[str, int]:
    return {v: sum(r.verdict == v for r in reports) for v in VERDICTS}


def run(args: argparse.Namespace) -> int:
    reports = scan_paths(args.paths, strict=args.strict, allow=_allow(args), jobs=args.jobs)
    if args.json:
        doc: dict[str, Any] = {"modelport": __version__, "verdict": _overall(reports),
                               "counts": counts(reports),
                               "files": [r.to_json() for r in reports
                                         if not args.quiet or r.verdict != "clean"]}
        json.dump(doc, sys.stdout, indent=1, default=str)
        print()
    elif args.sarif:
        from ..scan.sarif import to_sarif  # its URL and path helpers only for --sarif

        json.dump(to_sarif(reports, __version__), sys.stdout, indent=1)
        print()
    else:
        sys.stdout.write(render(reports, verbose=args.verbose, quiet=args.quiet,
                                colour=use_colour(sys.stdout)))
    return exit_code(reports)


# Verdict colours (ANSI), used only on a terminal and never when NO_COLOR is set
# (https://no-color.org): scripts and logs get plain text.
_COLOURS = {"clean": "32", "needs-code": "33", "unsafe": "1;31", "error": "35"}


def use_colour(stream: Any) -> bool:
    return bool(getattr(stream, "isatty", lambda: False)()) and not os.environ.get("NO_COLOR")


def render(reports: list[FileReport], verbose: bool = False, quiet: bool = False,
           colour: bool = False) -> str:
    lines: list[str] = []
    for r in reports:
        if quiet and r.verdict == "clean":
            continue
        fmt = f" [{r.format}]" if r.format else ""
        word = f"{r.verdict.upper():<10}"
        if colour and r.verdict in _COLOURS:
            word = f"\033[{_COLOURS[r.verdict]}m{word}\033[0m"
        lines.append(f"{word} {r.path}{fmt}: {r.reason}")
        shown = [f for f in sorted(r.findings, key=lambda f: (f.category != "malicious",
                                                              -f.severity))
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
    c = counts(reports)
    lines.append(f"{len(reports)} file(s): {c['clean']} clean, {c['needs-code']} needs-code, "
                 f"{c['unsafe']} unsafe, {c['error']} error(s)")
    return "\n".join(lines) + "\n"
