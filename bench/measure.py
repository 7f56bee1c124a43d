"""Shared by the benchmarks: run a snippet in a fresh interpreter (wall seconds, peak RSS, bytes
read), and replace one section of bench/README.md."""

from __future__ import annotations

import json
import os
import subprocess
import sys

_CHILD = r"""
import json, resource, sys, time
P = sys.argv[1]
t0 = time.perf_counter()
def rchar():
    return int(dict(l.split(": ") for l in open("/proc/self/io").read().splitlines())["rchar"])
exec(compile(sys.argv[2], "<job>", "exec"))
dt = time.perf_counter() - t0
io = dict(l.split(": ") for l in open("/proc/self/io").read().splitlines())
# VmHWM, not ru_maxrss: Linux keeps ru_maxrss across execve, so a child of a big parent
# would report the parent's peak.
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
# A job may set FILE_READ = rchar() after its imports to count only what it reads afterwards.
print(json.dumps({"job_seconds": dt, "maxrss_kb": int(hwm), "rchar": int(io["rchar"]),
                  "after_imports": int(io["rchar"]) - FILE_READ if "FILE_READ" in dir() else None}))
"""


def measure(code: str, path: str) -> dict:
    import time

    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", _CHILD, path, code], capture_output=True,
                         text=True, check=True)
    wall = time.perf_counter() - t0
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["seconds"] = wall
    return result


def write_section(name: str, text: str) -> None:
    """Replace the ``## name`` section of bench/README.md (``text`` starts with that heading);
    the other benchmarks' sections stay as they are."""
    readme = os.path.join(os.path.dirname(os.path.abspath(__file__)), "README.md")
    old = "# Benchmarks\n"
    if os.path.exists(readme):
        with open(readme) as f:
            old = f.read()
    parts = old.split("\n## ")
    head, sections = parts[0], {p.split("\n", 1)[0].strip(): "## " + p for p in parts[1:]}
    sections[name] = text.rstrip() + "\n"
    body = head.rstrip() + "\n\n" + "\n".join(s.rstrip() + "\n" for s in sections.values())
    with open(readme + ".tmp", "w") as f:
        f.write(body)
    os.replace(readme + ".tmp", readme)
