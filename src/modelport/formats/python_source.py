"""Python source files (``modeling_*.py`` and the like in Hugging Face folders): code that
``trust_remote_code=True`` imports. No tensors; recognised so that the scanner judges them.

    UTF-8 text (no NUL byte) whose first 64 KiB hold a Python statement at the start of a
    line: ``import x``, ``from x import y``, ``def f(``, ``class C(`` or ``class C:``

Decided by content, as every format is: a ``.py`` name proves nothing (a loader imports a module
by the name ``auto_map`` gives it, whatever the bytes), and code saved under another name is
still code. JSON, vocabularies and merges files never start a line with those statements
(vocab.txt holds bare words: ``import`` alone on a line is not a statement). Markdown is not
Python even when its code blocks are: a model card (YAML front matter ``---`` first, or a
code fence ````` at the start of a line, which Python source does not have outside indented
docstrings) would otherwise be claimed and fail to parse. A file only
``exec``-ed by a loader is found by the same rule. Files that look like Python but do not parse
are errors for the scanner (not judged, never clean).
"""

from __future__ import annotations

import re

from .base import Format, Probe

_STATEMENT = re.compile(rb"^(?:import[ \t]+[A-Za-z_][\w.]*|from[ \t]+\.*[A-Za-z_][\w.]*[ \t]+"
                        rb"import[ \t]|from[ \t]+\.+[ \t]+import[ \t]|def[ \t]+\w+[ \t]*\(|"
                        rb"class[ \t]+\w+[ \t]*[(:])", re.M)


_FENCE = re.compile(rb"^(```|~~~)", re.M)


def _sniff(probe: Probe) -> bool:
    head = probe.head
    if not head or b"\x00" in head or head[:1] in (b"{", b"["):
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # a character cut by the 64 KiB probe is fine
            return False
    if head.lstrip().startswith(b"---") or _FENCE.search(head):
        return False  # Markdown (a model card), whatever code its blocks show
    return _STATEMENT.search(head) is not None


FORMAT = Format("python-source", "python", _sniff, order=95, title="Python source",
                scan="modelport.scan.python_code:scan_python_file",
                unsupported="Python source holds no tensors; `modelport scan` lists the classes "
                "it defines and the modules it imports (parsed, never imported)")
