"""Open a local page to look inside a model file, or two side by side.

The page shows what `inspect` shows (format, kind, parameters, dtypes, the scan verdict and its
findings), the weights as a tree with repeated layers folded beside a sortable table, search
(terms that must all match, "quoted" exact, a dtype or a shape as a term, /regex/), and per
tensor: min, max, mean, std, zeros, NaN/Inf counts, L2 norm and a histogram, computed on this
machine over the memory map (no size cap), a heat map for 2-D tensors and "save as .npy".
With two files, a diff: added, removed and changed tensors with max abs / relative difference
and cosine similarity. The server listens on 127.0.0.1 only and serves only the opened files;
nothing is uploaded anywhere. Ctrl-C stops it.

API (for scripts): /api/summary, /api/tensors?query=Q, /api/tensor/NAME/stats,
/api/tensor/NAME/npy, /api/diff, /api/diff/NAME; ?f=1 addresses the second file.

examples:
  modelport view model.safetensors
  modelport view last.ckpt --port 8765 --no-browser
  modelport view before.pt after.pt             diff view
"""

from __future__ import annotations

import argparse
import sys
import threading

__all__ = ["add_arguments", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", help="a model file or folder")
    p.add_argument("path2", nargs="?", help="a second file: compare the two")
    p.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: any free)")
    p.add_argument("--no-browser", action="store_true", help="print the URL, do not open it")


def run(args: argparse.Namespace, stop: threading.Event | None = None) -> int:
    from ..view import Viewer, serve

    viewer = Viewer.open([args.path] + ([args.path2] if args.path2 else []))
    try:
        httpd = serve(viewer, args.port)
    except OSError as exc:
        from ..errors import UsageError

        raise UsageError(f"cannot listen on 127.0.0.1:{args.port}: {exc.strerror}",
                         hint="choose another --port, or 0 for any free one") from exc
    url = f"http://127.0.0.1:{httpd.server_address[1]}/"
    print(f"modelport view: {url}  (Ctrl-C to stop)", flush=True)
    if not args.no_browser:
        import webbrowser

        webbrowser.open(url)
    try:
        (stop or threading.Event()).wait()
    except KeyboardInterrupt:
        print("", file=sys.stderr)
    finally:
        httpd.shutdown()
        httpd.server_close()
    return 0
