"""Run a snippet in a fresh interpreter; report wall seconds, peak RSS and bytes read."""

from __future__ import annotations

import json
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
