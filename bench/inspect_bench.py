"""Inspect the 2.1 GB reference file: modelport vs torch.load(mmap=True) vs picklescan.

Every job runs in a fresh child process (``bench/measure.py``) that reports wall time, peak RSS
and bytes read through read()/pread() (``rchar`` of /proc/self/io, minus the interpreter's own
start-up reads measured by an empty job). The file is in the page cache for every job (read
once first), so the times compare parsing work, not the disk.

    .venv/bin/python bench/inspect_bench.py            # writes bench/data/reference-2.1g.pt
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from measure import measure, write_section  # noqa: E402
from reference import ensure  # noqa: E402

JOBS = {
    "empty interpreter (baseline)": "pass",
    "modelport inspect --json": (
        "import io, contextlib\nfrom modelport.cli import main\n"
        "import modelport.cli.inspect, modelport.formats.torch_zip, modelport.scan\n"
        # every module inspect imports on its way (the registry's format modules, can,
        # recognize, the scanner's parts), so the last column counts the model file's bytes
        "import modelport.formats, modelport.can, modelport.recognize, modelport.scan.archives\n"
        "import modelport.scan.pickles\nmodelport.formats.registry()\n"
        "FILE_READ = rchar()\n"
        "with contextlib.redirect_stdout(io.StringIO()): assert main(['inspect', P, '--json']) == 0"
    ),
    "modelport.open (library)": "import modelport, modelport.formats.torch_zip\n"
                                "modelport.formats.registry()\nFILE_READ = rchar()\n"
                                "ck = modelport.open(P)\nassert ck.parameters",
    "torch.load(mmap=True, weights_only=True)": (
        "import torch\nsd = torch.load(P, mmap=True, weights_only=True)\nassert len(sd)"
    ),
    "picklescan (scan_file_path, what its CLI runs)": (
        "import io, contextlib\nfrom picklescan.scanner import scan_file_path\n"
        "r = scan_file_path(P)\nassert r.scanned_files == 1 and not r.scan_err and r.globals"
    ),
}


def main() -> None:
    path = ensure(os.path.join(HERE, "data", "reference-2.1g.pt"), 2.1)
    subprocess.run(["cat", path], stdout=subprocess.DEVNULL, check=True)  # warm the cache
    rows = []
    for name, code in JOBS.items():
        best = min((measure(code, path) for _ in range(3)), key=lambda r: r["seconds"])
        rows.append((name, best))
        print(name, best, flush=True)
    base = rows[0][1]
    ps = dict(rows)["picklescan (scan_file_path, what its CLI runs)"]["seconds"] - base["seconds"]
    lines = [
        "## inspect",
        "",
        f"`{sys.executable} bench/inspect_bench.py` on {platform.machine()}, "
        f"{os.cpu_count()} cores; file: {os.path.getsize(path) / 1e9:.2f} GB torch.save "
        "state_dict (GPT-style, one tied weight), in the page cache. Best of 3 runs, each a "
        "fresh process; times include interpreter start-up, the last column subtracts it.",
        "",
        "| job | wall s | s minus start-up | vs picklescan | peak RSS MiB | bytes read | "
        "bytes read after imports |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, r in rows:
        net = r["seconds"] - base["seconds"]
        ratio = f"{net / ps:.2f}x" if name != rows[0][0] and ps > 0 else ""
        read = r["rchar"] - base["rchar"] if name != rows[0][0] else r["rchar"]
        lines.append(f"| {name} | {r['seconds']:.3f} | {net:.3f} | {ratio} | "
                     f"{r['maxrss_kb'] / 1024:.0f} | {read:,} | "
                     f"{'' if r['after_imports'] is None else format(r['after_imports'], ',')} |")
    lines.append("")
    lines.append("bytes read: `rchar` of /proc/self/io (read()/pread() calls, module files "
                 "included) minus the empty interpreter's; the last column counts only what the "
                 "job read after its imports, i.e. from the model file. modelport reads the zip "
                 "directory and data.pkl and never maps tensor data for inspect; torch.load maps "
                 "the whole file (mapped pages are not in rchar but show in its RSS).")
    write_section("inspect", "\n".join(lines))


if __name__ == "__main__":
    main()
