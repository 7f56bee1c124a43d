"""``modelport scan`` of this tree against an older revision and picklescan, on the same file,
runs interleaved so that both see the same machine load (the ratios in run.py's tables move
with the load of a shared machine; an A/B taken in turns does not).

    .venv/bin/python bench/scan/against.py FILE [--rev 56084b1] [--runs 15]

Each run is a fresh interpreter with bytecode caching on (as an installed package has it):
``from modelport.cli import main; main(['scan', FILE])``. Prints best-of-N seconds minus an
empty interpreter for each; nothing is written.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(code: str, env: dict[str, str]) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("file")
    ap.add_argument("--rev", default="56084b1", help="the older revision (default: the scanner "
                    "before the format registry)")
    ap.add_argument("--runs", type=int, default=15)
    args = ap.parse_args()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    with tempfile.TemporaryDirectory() as old:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.rev, "src"],
                                 check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", old], input=archive, check=True)
        scan = f"from modelport.cli import main\nmain(['scan', {args.file!r}])"
        jobs = {
            "empty interpreter": ("pass", env),
            "modelport scan (this tree)": (scan, dict(env, PYTHONPATH=str(ROOT / "src"))),
            f"modelport scan ({args.rev})": (scan, dict(env, PYTHONPATH=f"{old}/src")),
            "picklescan": ("from picklescan.scanner import scan_directory_path, scan_file_path"
                           f"\nimport os\np = {args.file!r}\n"
                           "(scan_directory_path if os.path.isdir(p) else scan_file_path)(p)",
                           env),
        }
        for code, e in jobs.values():  # warm the bytecode caches and the page cache
            subprocess.run([sys.executable, "-c", code], env=e, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
        best = dict.fromkeys(jobs, float("inf"))
        for _ in range(args.runs):
            for name, (code, e) in jobs.items():
                best[name] = min(best[name], _run(code, e))
    base = best.pop("empty interpreter")
    ps = best["picklescan"] - base
    print(f"best of {args.runs}, seconds minus an empty interpreter ({base:.3f} s):")
    for name, s in best.items():
        print(f"  {name:32} {s - base:.3f}  {(s - base) / ps:.2f}x picklescan")


if __name__ == "__main__":
    main()
