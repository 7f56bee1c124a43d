"""A local HTTP server for remote-input tests: byte ranges (single and multipart), redirects, a
Hugging Face Hub emulation (revision, tree, resolve), request and byte counting, and modes that
misbehave (no Range support, an ETag that changes). Bound to 127.0.0.1 only."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

__all__ = ["RangeServer"]


class RangeServer:
    """``with RangeServer(root) as srv: srv.url("files/x.bin")``; counters in ``srv.log``."""

    def __init__(self, root: Path, *, ranges: bool = True, multipart: bool = True,
                 token: str | None = None, redirect_to: RangeServer | None = None) -> None:
        self.root = root
        self.ranges = ranges  # False: answer every GET with the whole body (200)
        self.multipart = multipart  # False: answer a list of ranges with the first one only
        self.token = token  # required on /api and /resolve when set
        self.redirect_to = redirect_to  # /resolve redirects to this server ("the CDN")
        self.etag_bump_after: int | None = None  # change the ETag after this many GETs
        self.log: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        handler = type("Handler", (_Handler,), {"server_state": self})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> RangeServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}"

    @property
    def requests(self) -> int:
        return len(self.log)

    @property
    def body_bytes(self) -> int:
        return sum(e["bytes"] for e in self.log)

    def reset(self) -> None:
        with self.lock:
            self.log.clear()


class _Handler(BaseHTTPRequestHandler):
    server_state: RangeServer
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def _record(self, nbytes: int, status: int) -> dict[str, Any]:
        st = self.server_state
        entry = {"path": self.path, "range": self.headers.get("Range"),
                 "auth": self.headers.get("Authorization"), "status": status, "bytes": nbytes}
        with st.lock:
            st.log.append(entry)
        return entry

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self._record(len(body) if self.command != "HEAD" else 0, status)

    def _authorized(self) -> bool:
        st = self.server_state
        if st.token is None:
            return True
        if self.headers.get("Authorization") == f"Bearer {st.token}":
            return True
        self._send(401, b"unauthorized")
        return False

    def do_HEAD(self) -> None:  # noqa: N802
        self.do_GET()

    def do_GET(self) -> None:  # noqa: N802
        parts = urllib.parse.urlsplit(self.path)
        path = urllib.parse.unquote(parts.path)
        st = self.server_state
        m = re.fullmatch(r"/api/models/([^/]+/[^/]+)/revision/([^/]+)", path)
        if m:
            if self._authorized():
                sha = hashlib.sha1(m.group(1).encode()).hexdigest()
                self._send(200, json.dumps({"id": m.group(1), "sha": sha}).encode(),
                           {"Content-Type": "application/json"})
            return
        m = re.fullmatch(r"/api/models/([^/]+/[^/]+)/tree/([^/]+)", path)
        if m:
            if self._authorized():
                base = st.root / m.group(1)
                listing = [{"type": "file", "path": str(p.relative_to(base)),
                            "size": p.stat().st_size} for p in sorted(base.rglob("*"))
                           if p.is_file()]
                self._send(200, json.dumps(listing).encode(), {"Content-Type": "application/json"})
            return
        m = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
        if m:
            if self._authorized():
                target = st.redirect_to or st
                self._send(302, b"", {"Location": target.url(f"files/{m.group(1)}/{m.group(3)}")})
            return
        if path.startswith("/redirect/"):
            self._send(307, b"", {"Location": st.url("files/" + path[len("/redirect/"):])})
            return
        if not path.startswith("/files/"):
            self._send(404, b"not found")
            return
        file = st.root / path[len("/files/"):]
        if ".." in Path(path).parts or not file.is_file():
            self._send(404, b"not found")
            return
        size = file.stat().st_size
        with st.lock:
            gets = sum(1 for e in st.log if e["path"] == self.path)
        bump = st.etag_bump_after is not None and gets >= st.etag_bump_after
        stat = file.stat()
        etag = f'"{stat.st_mtime_ns:x}-{size:x}{"-new" if bump else ""}"'

        def read(a: int, n: int) -> bytes:
            with open(file, "rb") as f:
                f.seek(a)
                return f.read(n)

        spec = self.headers.get("Range")
        if not spec or not st.ranges:
            self._send_file(file, size, etag)
            return
        wanted = []
        for item in spec.removeprefix("bytes=").split(","):
            a, _, b = item.strip().partition("-")
            if a == "":
                start, end = max(0, size - int(b)), size - 1
            else:
                start, end = int(a), min(size - 1, int(b) if b else size - 1)
            if start <= end and start < size:
                wanted.append((start, end))
        if not wanted:
            self._send(416, b"", {"Content-Range": f"bytes */{size}"})
            return
        if len(wanted) == 1 or not st.multipart:
            a, b = wanted[0]
            self._send(206, read(a, b - a + 1), {"ETag": etag,
                                                 "Content-Range": f"bytes {a}-{b}/{size}"})
            return
        boundary = "modelportboundary"
        body = b""
        for a, b in wanted:
            body += (f"--{boundary}\r\nContent-Type: application/octet-stream\r\n"
                     f"Content-Range: bytes {a}-{b}/{size}\r\n\r\n").encode()
            body += read(a, b - a + 1) + b"\r\n"
        body += f"--{boundary}--\r\n".encode()
        self._send(206, body, {"ETag": etag,
                               "Content-Type": f"multipart/byteranges; boundary={boundary}"})

    def _send_file(self, file: Path, size: int, etag: str) -> None:
        """The whole file (a server that ignores Range); stops when the client hangs up."""
        entry = self._record(0, 200)  # counted before the body: the client may hang up at once
        self.send_response(200)
        self.send_header("ETag", etag)
        self.send_header("Content-Length", str(size))
        self.end_headers()
        if self.command != "HEAD":
            with open(file, "rb") as f, contextlib.suppress(OSError):
                while chunk := f.read(1 << 20):
                    self.wfile.write(chunk)
                    entry["bytes"] += len(chunk)
        self.close_connection = True


def env_endpoint(server: RangeServer) -> dict[str, str]:
    return {"HF_ENDPOINT": f"http://127.0.0.1:{server.port}"}


if __name__ == "__main__":  # serve a folder by hand: python tests/rangeserver.py DIR
    import sys

    with RangeServer(Path(sys.argv[1])) as srv:
        print(srv.url("files/"), flush=True)
        threading.Event().wait()
    os._exit(0)


class SparseFile:
    """A file object for torch.save that leaves runs of zero bytes as holes: a 2 GB checkpoint
    of zero tensors is written in a second and takes no disk (its bytes read back as zeros)."""

    def __init__(self, path: Path) -> None:
        self.f = open(path, "wb")  # noqa: SIM115 - closed in close()

    def write(self, data: bytes | memoryview) -> int:
        view = memoryview(data).cast("B")
        if len(view) >= 1 << 16 and bytes(view).count(0) == len(view):
            self.f.seek(len(view), 1)
        else:
            self.f.write(view)
        return len(view)

    def tell(self) -> int:
        return self.f.tell()

    def seek(self, *args: int) -> int:
        return self.f.seek(*args)

    def flush(self) -> None:
        self.f.flush()

    def close(self) -> None:
        self.f.truncate(self.f.tell())
        self.f.close()
