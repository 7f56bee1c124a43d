"""Remote inputs: ``https://...``, ``hf://owner/repo[@rev][/path]`` and ``owner/repo`` ids, read
by HTTP range requests, never downloaded whole to look at a header.

How it fits the readers without teaching each of them HTTP: a remote file becomes a *sparse
mirror*, a local file of the remote's size in a private temporary folder, in which only the byte
ranges that were fetched hold data. Every place that reads a file's bytes by offset (the
registry's probe, the zip decoder, the safetensors header parser, tensor reads) first calls
``ensure(path, offset, length)``, a dictionary lookup that does nothing for a local file and
fetches the missing blocks of a mirror. Formats whose readers read through those primitives are
marked ``ranged`` in the registry; for every other format the whole file is fetched before its
reader runs (within the byte budget), so no reader ever sees a hole.

    Session          one command's remote state: mirrors, budget, counters, pinned revision
      RemoteFile     url, size, ETag, the mirror path, which ranges are present
      _Client        http.client with Range, manual redirects (Range kept, Authorization dropped
                     across hosts), multipart/byteranges when the server answers them

Those three live in ``remote_session.py``, imported when a session opens; this module is only
the hooks every reader calls, so that a local command does not load the HTTP side.

The revision of a Hub repository is resolved once (to a commit) and used for every file of the
command; a file whose ETag changes mid-command is an error. A server that answers a Range
request with the whole body (200) is refused in one line rather than downloaded.
"""

from __future__ import annotations

import _thread
import contextlib
import os
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .remote_session import RemoteFile, Session

# The readers import this module for ``ensure``; http.client, json, tempfile, threading and
# urllib are imported only when a remote input is opened, so local commands do not pay for them.

__all__ = ["is_remote", "session", "ensure", "ensure_ranges", "ensure_all", "active", "sibling"]
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}$")

_lock = _thread.allocate_lock()  # threading.Lock() without importing threading
_sessions: list[Session] = []


def is_remote(text: str) -> bool:
    """A URL or a Hub id (``owner/repo`` that is not a local path)."""
    if text.startswith(("https://", "http://", "hf://")):
        return True
    return bool(_HUB_ID.match(text)) and not os.path.exists(text)


def active() -> bool:
    return bool(_sessions)


def ensure(path: str, offset: int, length: int) -> None:
    """Make ``length`` bytes at ``offset`` of ``path`` present, if ``path`` is a mirror."""
    if not _sessions or length <= 0:
        return
    rf = _find(path)
    if rf is not None:
        rf.ensure([(offset, offset + length)])


def ensure_ranges(path: str, ranges: list[tuple[int, int]]) -> None:
    """Several ``(start, end)`` ranges at once: one request where the server allows it."""
    if not _sessions:
        return
    rf = _find(path)
    if rf is not None:
        rf.ensure(ranges)


def ensure_all(path: str) -> None:
    """The whole file (for readers that map it whole)."""
    if not _sessions:
        return
    rf = _find(path)
    if rf is not None:
        rf.ensure([(0, rf.size)])


def sibling(of: str, path: str) -> None:
    """Mirror ``path`` (a file next to the mirror ``of``, e.g. ONNX external data) from the URL
    next to ``of``'s, if ``of`` is remote and ``path`` is not mirrored yet. Only its first block
    is fetched; readers ``ensure`` the rest."""
    if not _sessions:
        return
    rf = _find(of)
    if rf is None or _find(path) is not None:
        return
    import urllib.parse

    rel = os.path.relpath(path, os.path.dirname(rf.local))
    if rel.startswith(".."):
        return  # outside the mirror's folder: the reader refuses it
    url = urllib.parse.urljoin(rf.url, urllib.parse.quote(rel.replace(os.sep, "/")))
    rf.session._file(url, path, name=url)


def _find(path: str) -> RemoteFile | None:
    for s in _sessions:
        if path.startswith(s.root):
            return s.files.get(os.path.realpath(path)) or s.files.get(path)
    return None


@contextlib.contextmanager
def session(budget: int | None = None, whole_folders: bool = False) -> Iterator[Session]:
    """One command's remote inputs (``remote_session.Session``), registered so that
    ``ensure`` finds its mirrors; closed (mirrors deleted) when the block ends."""
    from .remote_session import Session

    s = Session(budget, whole_folders=whole_folders)
    with _lock:
        _sessions.append(s)
    try:
        yield s
    finally:
        with _lock:
            _sessions.remove(s)
        s.close()
