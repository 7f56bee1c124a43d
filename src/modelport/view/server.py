"""The local server behind ``modelport view``: one page and a JSON API over the opened files.

Bound to 127.0.0.1 only. No path from a URL ever reaches the file system: files are opened once,
when the command starts, and the API addresses them by index (``f=0``, ``f=1``) and tensors by
name in their dictionary. A request whose Host header is not this server's (a DNS-rebinding
page in the user's browser) gets 421 and nothing else.

    GET /                                  the page (static files shipped in the package)
    GET /static/<app.js|app.css>
    GET /api/summary?f=0                   inspect --json's object, plus the scan findings
    GET /api/tensors?f=0&query=Q           [{name, dtype, shape, numel, nbytes, shard, offset}]
    GET /api/tensor/NAME/stats?f=0&bins=64 statistics and histogram (cached)
    GET /api/tensor/NAME/npy?f=0           the tensor as a .npy download
    GET /api/diff                          the diff of the two files (needs two)
    GET /api/diff/NAME                     max abs / relative difference, cosine similarity
"""

from __future__ import annotations

import json
import math
import os
import threading
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any

from ..errors import ModelportError, UsageError
from ..model import Checkpoint, TensorEntry

__all__ = ["Viewer", "serve"]

_STATIC = {"app.js": "text/javascript; charset=utf-8", "app.css": "text/css; charset=utf-8",
           "index.html": "text/html; charset=utf-8"}


@dataclass
class Opened:
    path: str
    ck: Checkpoint
    tensors: dict[str, TensorEntry]
    summary: dict[str, Any] | None = None


@dataclass
class Viewer:
    """The opened files and the caches; the server's state."""

    files: list[Opened]
    stats: dict[tuple[int, str, int], dict[str, Any]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    diff_cache: dict[str, Any] | None = None

    @classmethod
    def open(cls, paths: list[str]) -> Viewer:
        from ..convert.source import load

        files = []
        for p in paths:
            ck = load(p)
            tensors = dict(ck.weights)
            for name, t in ck.other_tensors.items():
                tensors.setdefault(name, t)
            files.append(Opened(p, ck, tensors))
        return cls(files)

    def summary(self, i: int) -> dict[str, Any]:
        f = self.files[i]
        if f.summary is None:
            from ..cli.inspect import report

            try:
                from ..scan import scan_file

                rep = scan_file(f.path)
                safety = rep.summary()
                safety["findings"] = [x.to_json() for x in rep.findings]
                safety["errors"] = list(rep.errors)
            except Exception as exc:  # noqa: BLE001 - shown as the verdict, never hidden
                safety = {"verdict": "error", "reason": f"the scan failed: {exc}"}
            doc = report(f.ck, safety)
            doc["weights_count"] = len(f.ck.weights)
            doc.pop("weights", None)  # /api/tensors serves them, searchable
            doc["other_tensors"] = len(f.ck.other_tensors)
            f.summary = _safe(doc)
        return f.summary

    def tensors(self, i: int, query: str) -> list[dict[str, Any]]:
        from .search import compile_query

        match = compile_query(query)
        f = self.files[i]
        weights = set(f.ck.weights)
        out = []
        for name, t in f.tensors.items():
            if match(name, t):
                out.append({"name": name, "dtype": t.dtype.name, "shape": list(t.shape),
                            "numel": t.numel, "nbytes": t.nbytes, "weight": name in weights,
                            "shard": os.path.basename(t.storage.path) if t.storage.path else None,
                            "offset": t.storage.offset + t.byte_offset
                            if t.storage.path else None})
        return out

    def tensor(self, i: int, name: str) -> TensorEntry:
        try:
            return self.files[i].tensors[name]
        except KeyError:
            raise LookupError(f"no tensor named {name!r}") from None

    def tensor_stats(self, i: int, name: str, bins: int) -> dict[str, Any]:
        from .stats import tensor_stats

        key = (i, name, bins)
        with self.lock:
            cached = self.stats.get(key)
        if cached is None:
            cached = _safe(tensor_stats(self.tensor(i, name), bins))
            with self.lock:
                self.stats[key] = cached
        return cached

    def diff(self) -> dict[str, Any]:
        if len(self.files) < 2:
            raise LookupError("open two files to compare them: modelport view A B")
        if self.diff_cache is None:
            from ..convert.diff import diff

            self.diff_cache = diff(self.files[0].path, self.files[1].path).to_json()
        return self.diff_cache

    def diff_tensor(self, name: str) -> dict[str, Any]:
        from .stats import compare

        if len(self.files) < 2:
            raise LookupError("open two files to compare them")
        return _safe(compare(self.tensor(0, name), self.tensor(1, name)))


def _safe(doc: Any) -> Any:
    """JSON without NaN/Infinity tokens (which browsers' JSON.parse refuses): as strings."""
    if isinstance(doc, float) and not math.isfinite(doc):
        return str(doc)
    if isinstance(doc, dict):
        return {str(k): _safe(v) for k, v in doc.items()}
    if isinstance(doc, (list, tuple)):
        return [_safe(v) for v in doc]
    return doc


def _handler(viewer: Viewer, port_box: list[int]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "modelport-view"

        def log_message(self, *args: Any) -> None:
            pass  # the terminal shows the URL, not a line per request

        def _send(self, status: int, body: bytes, ctype: str,
                  extra: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Cache-Control", "no-store")
            for k, v in (extra or {}).items():
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _json(self, doc: Any, status: int = 200) -> None:
            self._send(status, json.dumps(doc).encode(), "application/json")

        def _error(self, status: int, message: str) -> None:
            self._json({"error": message}, status)

        def do_GET(self) -> None:  # noqa: N802
            host = self.headers.get("Host", "")
            if host not in (f"127.0.0.1:{port_box[0]}", f"localhost:{port_box[0]}"):
                self._error(421, "wrong Host header")
                return
            url = urllib.parse.urlsplit(self.path)
            q = urllib.parse.parse_qs(url.query)
            parts = [urllib.parse.unquote(p) for p in url.path.split("/")[1:]]
            try:
                i = int(q.get("f", ["0"])[0])
                if not 0 <= i < len(viewer.files):
                    raise LookupError(f"no file {i}")
                self._route(parts, q, i)
            except (LookupError, ValueError) as exc:
                self._error(404 if isinstance(exc, LookupError) else 400, str(exc))
            except UsageError as exc:  # a malformed query
                self._error(400, str(exc))
            except ModelportError as exc:  # the file cannot give what was asked
                self._error(422, str(exc))

        def _route(self, parts: list[str], q: dict[str, list[str]], i: int) -> None:
            if parts in ([""], ["index.html"]):
                self._static("index.html")
            elif len(parts) == 2 and parts[0] == "static" and parts[1] in _STATIC:
                self._static(parts[1])
            elif parts == ["api", "summary"]:
                self._json(viewer.summary(i))
            elif parts == ["api", "files"]:
                self._json([{"index": n, "path": f.path, "format": f.ck.format}
                            for n, f in enumerate(viewer.files)])
            elif parts == ["api", "tensors"]:
                self._json(viewer.tensors(i, q.get("query", [""])[0]))
            elif len(parts) >= 4 and parts[:2] == ["api", "tensor"] and parts[-1] == "stats":
                bins = min(max(int(q.get("bins", ["64"])[0]), 2), 1024)
                self._json(viewer.tensor_stats(i, "/".join(parts[2:-1]), bins))
            elif len(parts) >= 4 and parts[:2] == ["api", "tensor"] and parts[-1] == "npy":
                self._npy(viewer.tensor(i, "/".join(parts[2:-1])))
            elif parts == ["api", "diff"]:
                self._json(viewer.diff())
            elif len(parts) >= 3 and parts[:2] == ["api", "diff"]:
                self._json(viewer.diff_tensor("/".join(parts[2:])))
            else:
                raise LookupError("no such page")

        def _static(self, name: str) -> None:
            body = resources.files(__package__).joinpath("static", name).read_bytes()
            self._send(200, body, _STATIC[name],
                       {"Content-Security-Policy": "default-src 'self'; img-src 'self' data:"})

        def _npy(self, entry: TensorEntry) -> None:
            from ..convert.writers import npy_header
            from ..tensors import iter_bytes

            if entry.dtype.numpy is None:
                raise LookupError(f"{entry.dtype.name} has no .npy type")
            head = npy_header(entry.dtype, entry.shape)
            safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in entry.name)
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(head) + entry.nbytes))
            self.send_header("Content-Disposition", f'attachment; filename="{safe}.npy"')
            self.end_headers()
            self.wfile.write(head)
            for chunk in iter_bytes(entry):
                self.wfile.write(chunk)

    return Handler


def serve(viewer: Viewer, port: int = 0) -> ThreadingHTTPServer:
    """A started server on 127.0.0.1 (``port`` 0: any free one); ``server_address`` tells."""
    box = [port]
    httpd = ThreadingHTTPServer(("127.0.0.1", port), _handler(viewer, box))
    httpd.daemon_threads = True
    box[0] = httpd.server_address[1]
    threading.Thread(target=httpd.serve_forever, daemon=True, name="modelport-view").start()
    return httpd
