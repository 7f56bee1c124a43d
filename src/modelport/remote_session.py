"""The HTTP side of remote inputs (see ``remote.py``): a command's ``Session``, each mirrored
``RemoteFile`` with the ranges it holds, and the ``_Client`` that fetches them. Imported only
when a remote input is opened: local commands load ``remote.py``'s hooks alone.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import InputError, LimitExceeded

if TYPE_CHECKING:
    import http.client

__all__ = ["Session", "RemoteFile", "Stats", "BLOCK"]

BLOCK = 64 << 10  # fetch granularity: a header read pulls one block, not a byte at a time
_HUB_URL = re.compile(r"^hf://(?:(models|datasets|spaces)/)?([^/@]+/[^/@]+)(?:@([^/]+))?(?:/(.*))?$")
_MAX_REDIRECTS = 5
# Files of a Hub folder fetched whole when the folder is mirrored (configs, indexes, tokenizer
# side files); bigger non-weight files are left out of the mirror and named in the notes.
_SMALL = 1 << 20
_WEIGHTS = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf", ".onnx", ".h5", ".keras",
            ".tflite", ".npz", ".npy", ".msgpack", ".pkl")


@dataclass
class Stats:
    requests: int = 0
    bytes: int = 0

    def to_json(self) -> dict[str, int]:
        return {"requests": self.requests, "bytes_fetched": self.bytes}


class _Client:
    """GET with Range over http.client; one connection per host, kept open."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._conns: dict[tuple[str, str], http.client.HTTPConnection] = {}

    def _conn(self, scheme: str, netloc: str) -> http.client.HTTPConnection:
        import http.client

        key = (scheme, netloc)
        c = self._conns.get(key)
        if c is None:
            cls = http.client.HTTPSConnection if scheme == "https" else http.client.HTTPConnection
            c = cls(netloc, timeout=self.session.timeout)
            self._conns[key] = c
        return c

    def request(self, url: str, headers: dict[str, str], method: str = "GET",
                origin: str | None = None) -> tuple[http.client.HTTPResponse, str]:
        """The response after redirects (Range kept; Authorization only to the first host)."""
        import http.client
        import urllib.parse

        from . import __version__

        origin = origin or urllib.parse.urlsplit(url).netloc
        for _ in range(_MAX_REDIRECTS + 1):
            parts = urllib.parse.urlsplit(url)
            if parts.scheme not in ("http", "https"):
                raise InputError(f"cannot fetch a {parts.scheme or 'schemeless'} URL", path=url)
            hdrs = {"User-Agent": f"modelport/{__version__}", **headers}
            if parts.netloc != origin:
                hdrs.pop("Authorization", None)  # never hand a Hub token to a CDN or mirror
            target = parts.path or "/"
            if parts.query:
                target += "?" + parts.query
            conn = self._conn(parts.scheme, parts.netloc)
            try:
                conn.request(method, target, headers=hdrs)
                resp = conn.getresponse()
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                self._conns.pop((parts.scheme, parts.netloc), None)
                raise InputError(f"cannot fetch: {exc}", path=url,
                                 hint="check the URL and the network") from exc
            self.session.stats.requests += 1
            if resp.status in (301, 302, 303, 307, 308):
                resp.read()
                location = resp.getheader("Location")
                if not location:
                    raise InputError(f"HTTP {resp.status} without a Location", path=url)
                url = urllib.parse.urljoin(url, location)
                continue
            return resp, url
        raise InputError(f"more than {_MAX_REDIRECTS} redirects", path=url)

    def close(self) -> None:
        for c in self._conns.values():
            c.close()
        self._conns.clear()


@dataclass
class RemoteFile:
    session: Session
    url: str
    local: str
    size: int = -1
    etag: str | None = None
    have: list[tuple[int, int]] = field(default_factory=list)  # sorted, disjoint
    multi: bool | None = None  # does the server answer multipart/byteranges?

    # -- intervals ------------------------------------------------------------------------------

    def _missing(self, ranges: list[tuple[int, int]], align: bool = True
                 ) -> list[tuple[int, int]]:
        """The parts of ``ranges`` not present yet. ``align``: widen each missing part to whole
        blocks (the next header read is probably next to this one); a batch of ranges is taken
        as it is, the caller knows what it needs."""
        out: list[tuple[int, int]] = []
        for a, b in sorted(ranges):
            a, b = max(0, a), min(self.size, b)
            for ha, hb in self.have:
                if a >= b:
                    break
                if hb <= a or ha >= b:
                    continue
                if ha <= a:
                    a = max(a, hb)
                else:  # present inside: the part before it is missing
                    out.append((a, ha))
                    a = min(b, hb)
            if a < b:
                out.append((a, b))
        if align:
            out = [(a - a % BLOCK, min(self.size, -(-b // BLOCK) * BLOCK)) for a, b in out]
            return self._missing(out, align=False) if out else out
        merged: list[tuple[int, int]] = []
        for a, b in sorted(out):
            if merged and a <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], b))
            else:
                merged.append((a, b))
        return merged

    def _add(self, a: int, b: int) -> None:
        merged: list[tuple[int, int]] = []
        for ha, hb in sorted([*self.have, (a, b)]):
            if merged and ha <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], hb))
            else:
                merged.append((ha, hb))
        self.have = merged

    # -- fetching -------------------------------------------------------------------------------

    def ensure(self, ranges: list[tuple[int, int]]) -> None:
        with self.session.lock:
            missing = self._missing(ranges, align=len(ranges) == 1)
            if not missing:
                return
            need = sum(b - a for a, b in missing)
            if self.session.stats.bytes + need > self.session.budget:
                raise LimitExceeded(
                    f"reading this needs {need:,} more bytes from the server, past the budget "
                    f"of {self.session.budget:,} bytes for one command", path=self.url,
                    hint="download the file and run modelport on the local copy, or raise "
                    "MODELPORT_REMOTE_BUDGET")
            if len(missing) > 1 and self.multi is not False and self._fetch_multi(missing):
                return
            for a, b in missing:
                self._fetch(a, b)

    def _headers(self, spec: str) -> dict[str, str]:
        h = {"Range": f"bytes={spec}", "Accept-Encoding": "identity"}
        h.update(self.session.auth_for(self.url))
        return h

    def _check_etag(self, resp: http.client.HTTPResponse) -> None:
        tag = resp.getheader("X-Linked-Etag") or resp.getheader("ETag")
        if tag and self.etag and tag != self.etag:
            raise InputError(f"the file changed on the server while it was read (ETag {self.etag}"
                             f" became {tag})", path=self.url,
                             hint="run the command again (pin a revision with @REV)")
        self.etag = self.etag or tag

    def open_first(self) -> None:
        """The first request: block 0, which also tells the size and the ETag."""
        resp, _ = self.session.client.request(self.url, self._headers(f"0-{BLOCK - 1}"))
        if resp.status == 416:  # an empty file has no byte 0
            resp.read()
            self.size = 0
            self._truncate()
            return
        if resp.status == 200:
            length = resp.getheader("Content-Length")
            resp.close()
            self.session.client.close()
            raise InputError(f"the server ignores Range requests: looking inside would download "
                             f"the whole file ({length or 'unknown'} bytes)", path=self.url,
                             hint="download it first and run modelport on the local copy")
        if resp.status != 206:
            body = resp.read(200)
            raise InputError(f"HTTP {resp.status} {resp.reason}{_brief(body)}", path=self.url,
                             hint=_status_hint(resp.status))
        total = _total(resp.getheader("Content-Range"), self.url)
        self.size = total
        self._check_etag(resp)
        self._truncate()
        data = resp.read()
        self._store(0, data)

    def _truncate(self) -> None:
        with open(self.local, "wb") as f:
            f.truncate(self.size)  # sparse: only fetched blocks take disk space

    def _store(self, offset: int, data: bytes) -> None:
        fd = os.open(self.local, os.O_WRONLY)
        try:
            os.pwrite(fd, data, offset)
        finally:
            os.close(fd)
        self.session.stats.bytes += len(data)
        self._add(offset, offset + len(data))

    def _fetch(self, a: int, b: int) -> None:
        resp, _ = self.session.client.request(self.url, self._headers(f"{a}-{b - 1}"))
        if resp.status != 206:
            resp.close()
            raise InputError(f"HTTP {resp.status} for bytes {a}-{b - 1}", path=self.url,
                             offset=a, hint="the server stopped answering Range requests; "
                             "download the file first")
        self._check_etag(resp)
        got = _range(resp.getheader("Content-Range"), self.url)
        data = resp.read()
        if got != (a, b - 1) or len(data) != b - a:
            raise InputError(f"asked for bytes {a}-{b - 1}, got {got} ({len(data)} bytes)",
                             path=self.url, offset=a, hint="the server answered another range")
        self._store(a, data)

    def _fetch_multi(self, missing: list[tuple[int, int]]) -> bool:
        spec = ",".join(f"{a}-{b - 1}" for a, b in missing)
        resp, _ = self.session.client.request(self.url, self._headers(spec))
        ctype = resp.getheader("Content-Type") or ""
        if resp.status != 206 or "multipart/byteranges" not in ctype:
            # A server that answers one range (or the whole file) to a list: ranges one by one.
            resp.close()
            self.session.client.close()
            self.multi = False
            return False
        self._check_etag(resp)
        m = re.search(r'boundary="?([^";]+)"?', ctype)
        if not m:
            raise InputError("multipart answer without a boundary", path=self.url)
        body = resp.read()
        parts = body.split(b"--" + m.group(1).encode())
        stored = 0
        for part in parts:
            head, sep, data = part.partition(b"\r\n\r\n")
            if not sep:
                continue
            cr = re.search(rb"content-range:\s*bytes (\d+)-(\d+)/", head, re.IGNORECASE)
            if not cr:
                continue
            a, b = int(cr.group(1)), int(cr.group(2)) + 1
            if data.endswith(b"\r\n"):
                data = data[:-2]
            if len(data) != b - a or a < 0 or b > self.size:
                raise InputError(f"multipart part for bytes {a}-{b - 1} holds {len(data)} bytes",
                                 path=self.url, offset=a)
            self._store(a, data)
            stored += 1
        self.multi = True
        left = self._missing(missing, align=False)
        for a, b in left:  # the server left some out: fetch those one by one
            self._fetch(a, b)
        return stored > 0


class Session:
    """One command's remote inputs. Use as a context manager (``session()``)."""

    def __init__(self, budget: int | None = None, timeout: float = 30.0,
                 whole_folders: bool = False) -> None:
        self.whole_folders = whole_folders  # scan: every file of a repository is mirrored
        env = os.environ.get("MODELPORT_REMOTE_BUDGET")
        self.budget = budget if budget is not None else int(env) if env else 1 << 40
        import tempfile

        self.timeout = timeout
        self.root = tempfile.mkdtemp(prefix="modelport-remote-")
        self.files: dict[str, RemoteFile] = {}
        self.stats = Stats()
        import threading

        self.lock = threading.RLock()
        self.client = _Client(self)
        self.names: dict[str, str] = {}  # mirror path -> what the user typed
        self.revisions: dict[str, str] = {}  # repo -> resolved commit
        self.notes: list[str] = []

    # -- auth -----------------------------------------------------------------------------------

    def auth_for(self, url: str) -> dict[str, str]:
        """The Hub token (HF_TOKEN, HUGGING_FACE_HUB_TOKEN, or the token file huggingface_hub
        writes), for the Hub endpoint only."""
        if not url.startswith(_endpoint()):
            return {}
        token = os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")
        if not token:
            home = os.environ.get("HF_HOME") or os.path.join(
                os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "huggingface")
            path = os.environ.get("HF_TOKEN_PATH") or os.path.join(home, "token")
            with contextlib.suppress(OSError), open(path, encoding="utf-8") as f:
                token = f.read().strip()
        return {"Authorization": f"Bearer {token}"} if token else {}

    # -- inputs ---------------------------------------------------------------------------------

    def localize(self, text: str) -> str:
        """The local path that stands for ``text`` (a URL or Hub id), fetching what it takes to
        open it: a file's first block, a repository's listing and small files."""
        if text.startswith(("https://", "http://")):
            return self._file(text, self._mirror_path(text))
        m = _HUB_URL.match(text) if text.startswith("hf://") else None
        if text.startswith("hf://") and not m:
            raise InputError("not a Hub address: write hf://owner/repo[@revision][/path]",
                             path=text)
        kind, repo, rev, sub = (m.groups() if m else (None, text, None, None))
        for part in [*repo.split("/"), *(sub.split("/") if sub else []), rev or "main"]:
            # the mirror is a folder tree: a part that is empty, "." or ".." would leave it
            if part in ("", ".", "..") or "\\" in part or "\0" in part:
                raise InputError(f"not a Hub address: {part!r} is not a repository, revision "
                                 "or file name", path=text,
                                 hint="write hf://owner/repo[@revision][/path]")
        kind = kind or "models"
        commit = self._revision(kind, repo, rev or "main")
        base = os.path.join(self.root, "hf", kind, repo)
        if sub:
            return self._file(self._resolve_url(kind, repo, commit, sub),
                              os.path.join(base, sub), name=text)
        return self._folder(kind, repo, commit, base, text)

    def _mirror_path(self, url: str) -> str:
        import urllib.parse

        parts = urllib.parse.urlsplit(url)
        rel = (parts.netloc + parts.path).replace("..", "_")
        return os.path.join(self.root, "url", rel.strip("/") or "index")

    def _file(self, url: str, local: str, name: str | None = None) -> str:
        root = os.path.realpath(self.root)
        if os.path.commonpath([root, os.path.realpath(local)]) != root:
            raise InputError("a remote file would be mirrored outside modelport's temporary "
                             "folder", path=name or url, hint="check the address")
        os.makedirs(os.path.dirname(local), exist_ok=True)
        rf = RemoteFile(self, url, local)
        rf.open_first()
        self.files[os.path.realpath(local)] = rf
        self.names[local] = name or url
        return local

    def _api(self, url: str) -> Any:
        import json

        resp, _ = self.client.request(url, {"Accept": "application/json",
                                            **self.auth_for(url)})
        body = resp.read()
        self.stats.bytes += len(body)
        if resp.status != 200:
            raise InputError(f"HTTP {resp.status} {resp.reason}{_brief(body)}", path=url,
                             hint=_status_hint(resp.status))
        try:
            return json.loads(body)
        except ValueError as exc:
            raise InputError(f"the Hub answered something that is not JSON: {exc}",
                             path=url) from exc

    def _revision(self, kind: str, repo: str, rev: str) -> str:
        """Pin the revision once for the whole command: a branch becomes its commit."""
        import urllib.parse

        key = f"{kind}/{repo}@{rev}"
        if key not in self.revisions:
            info = self._api(f"{_endpoint()}/api/{kind}/{repo}/revision/"
                             f"{urllib.parse.quote(rev, safe='')}")
            sha = info.get("sha") if isinstance(info, dict) else None
            self.revisions[key] = sha if isinstance(sha, str) and sha else rev
        return self.revisions[key]

    def _resolve_url(self, kind: str, repo: str, commit: str, path: str) -> str:
        import urllib.parse

        prefix = "" if kind == "models" else f"{kind}/"
        return (f"{_endpoint()}/{prefix}{repo}/resolve/{commit}/"
                f"{urllib.parse.quote(path)}")

    def _folder(self, kind: str, repo: str, commit: str, base: str, name: str) -> str:
        listing = self._api(f"{_endpoint()}/api/{kind}/{repo}/tree/{commit}?recursive=true")
        if not isinstance(listing, list):
            raise InputError("the Hub's file listing is not a list", path=name)
        os.makedirs(base, exist_ok=True)
        for entry in listing:
            if not isinstance(entry, dict) or entry.get("type") != "file":
                continue
            rel = str(entry.get("path", ""))
            parts = rel.split("/")
            if not rel or any(p in ("", ".", "..") for p in parts) or rel.startswith("/"):
                self.notes.append(f"skipped a listed file with an unsafe path: {rel!r}")
                continue
            size = int(entry.get("size") or 0)
            local = os.path.join(base, *parts)
            url = self._resolve_url(kind, repo, commit, rel)
            if rel.lower().endswith(_WEIGHTS):
                self._file(url, local, name=f"{name}/{rel}")
            elif size <= _SMALL:
                self._file(url, local, name=f"{name}/{rel}")
                ensure_all_of(self.files[os.path.realpath(local)])
            elif self.whole_folders:
                self._file(url, local, name=f"{name}/{rel}")  # fetched when it is scanned
            else:
                self.notes.append(f"not fetched (not weights, {size:,} bytes): {rel}")
        self.names[base] = name
        return base

    def display(self, text: str) -> str:
        """``text`` with mirror paths written as what the user typed."""
        for local, name in sorted(self.names.items(), key=lambda kv: -len(kv[0])):
            text = text.replace(local, name)
        return text.replace(self.root, "<remote>")

    def to_json(self) -> dict[str, Any]:
        return {**self.stats.to_json(), "revisions": dict(self.revisions),
                "notes": list(self.notes)}

    def close(self) -> None:
        import shutil

        self.client.close()
        shutil.rmtree(self.root, ignore_errors=True)


def ensure_all_of(rf: RemoteFile) -> None:
    rf.ensure([(0, rf.size)])




def _endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")


def _total(content_range: str | None, url: str) -> int:
    m = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", (content_range or "").strip())
    if not m:
        raise InputError(f"the server's Content-Range {content_range!r} does not give the size",
                         path=url, hint="download the file first")
    return int(m.group(3))


def _range(content_range: str | None, url: str) -> tuple[int, int]:
    m = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+|\*)", (content_range or "").strip())
    if not m:
        raise InputError(f"bad Content-Range {content_range!r}", path=url)
    return int(m.group(1)), int(m.group(2))


def _brief(body: bytes) -> str:
    text = body[:120].decode("utf-8", "replace").strip().replace("\n", " ")
    return f": {text}" if text else ""


def _status_hint(status: int) -> str:
    if status in (401, 403):
        return "a gated or private repository needs a token: set HF_TOKEN or run " \
               "`huggingface-cli login`"
    if status == 404:
        return "check the repository, revision and file name"
    return "try again later"
