"""modelport view on a 2.2 GB torch.save checkpoint: time until the page's first load is served,
and the bytes read from the model file for it. Writes the "view" section of bench/README.md.

    .venv/bin/python bench/remote_bench.py   # builds bench/data/remote/gpt.pt (sparse) first
    .venv/bin/python bench/view_bench.py
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from measure import measure, write_section  # noqa: E402

FILE = HERE / "data" / "remote" / "gpt.pt"

# The page's first load: the HTML, its script and style, the file list, the summary (inspect
# plus the scan) and the full tensor table, as the browser asks for them.
JOB = r"""
import http.client
import importlib
from modelport.view import Viewer, serve
# Import what the first load uses before counting, so rchar counts the model file's bytes.
for m in ("modelport.scan", "modelport.scan.archives", "modelport.scan.pickles",
          "modelport.cli.inspect", "modelport.convert.source", "modelport.view.search",
          "modelport.formats.torch_zip", "json", "urllib.parse"):
    importlib.import_module(m)
importlib.import_module("modelport.formats").registry()  # imports every format module
FILE_READ = rchar()
t = time.perf_counter()
httpd = serve(Viewer.open([P]))
port = httpd.server_address[1]
for path in ("/", "/static/app.js", "/static/app.css", "/api/files", "/api/summary?f=0",
             "/api/tensors?f=0&query="):
    c = http.client.HTTPConnection("127.0.0.1", port)
    c.request("GET", path)
    r = c.getresponse()
    assert r.status == 200, (path, r.status)
    r.read()
    c.close()
print("first load", time.perf_counter() - t, file=sys.stderr)
httpd.shutdown()
"""


def main() -> None:
    if not FILE.exists():
        raise SystemExit(f"{FILE} is missing: run bench/remote_bench.py first")
    runs = [measure(JOB, str(FILE)) for _ in range(3)]
    best = min(runs, key=lambda r: r["seconds"])
    size = os.path.getsize(FILE)
    text = "\n".join([
        "## view", "",
        f"`.venv/bin/python bench/view_bench.py` on x86_64, 2 cores; file: {size / 1e9:.2f} GB "
        "torch.save state_dict (GPT-style, 241 tensors), in the page cache. A fresh process opens "
        "it with `Viewer.open`, starts the server and serves the page's first load (HTML, JS, "
        "CSS, /api/files, /api/summary with the scan, /api/tensors). Best of 3.", "",
        "| job | wall s (process) | job s (after imports) | bytes read after imports | peak RSS MiB |",
        "| --- | ---: | ---: | ---: | ---: |",
        f"| view: open + first page load | {best['seconds']:.3f} | {best['job_seconds']:.3f} | "
        f"{best['after_imports']:,} | {best['maxrss_kb'] / 1024:.0f} |", "",
        "bytes read: `rchar` of /proc/self/io after the imports (the zip directory, data.pkl and "
        "the scanner's reads of each member's first bytes); tensor bytes are read only when a "
        "tensor's statistics are asked for."])
    write_section("view", text)
    print(text)


if __name__ == "__main__":
    main()
