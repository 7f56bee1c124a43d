"""The search syntax of ``modelport view``, shared by the page (it asks the API) and the API.

    attention query            every space-separated term must match (case-insensitive)
    "encoder.layer.0."         quoted: an exact substring, spaces and all
    F16   bf16   I64           a dtype code (any case): tensors of that dtype (or names with it)
    [768,768]  768x768         a shape: tensors of exactly that shape
    /layer\\.(1|2)\\./           slashes: a regular expression over the name

This is Netron's search (terms that must all match, a dtype or a shape as a term) plus regular
expressions.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable

from ..dtypes import by_name
from ..errors import UsageError
from ..model import TensorEntry

__all__ = ["compile_query"]

_SHAPE = re.compile(r"^\[?\s*(\d+(?:\s*[,x×]\s*\d+)*)?\s*\]?$")


def _term(term: str, quoted: bool) -> Callable[[str, TensorEntry], bool]:
    if quoted:
        return lambda name, t: term in name
    if len(term) > 2 and term.startswith("/") and term.endswith("/"):
        try:
            rx = re.compile(term[1:-1], re.IGNORECASE)
        except re.error as exc:
            raise UsageError(f"bad regular expression {term}: {exc}") from None
        return lambda name, t: rx.search(name) is not None
    if by_name(term.upper()) is not None:
        # a dtype code (any case) matches tensors of that dtype, and names that contain it
        code, low = term.upper(), term.lower()
        return lambda name, t: t.dtype.name == code or low in name.lower()
    m = _SHAPE.match(term)
    if m and ("[" in term or "x" in term or "×" in term or "," in term):
        dims = tuple(int(d) for d in re.split(r"\s*[,x×]\s*", m.group(1))) if m.group(1) else ()
        return lambda name, t: tuple(t.shape) == dims
    low = term.lower()
    return lambda name, t: low in name.lower()


def compile_query(query: str) -> Callable[[str, TensorEntry], bool]:
    """A predicate over (name, entry) for ``query``; UsageError for a malformed query."""
    query = query.strip()
    if not query:
        return lambda name, t: True
    lexer = shlex.shlex(query, posix=True)
    lexer.whitespace_split = True
    lexer.commenters = ""
    preds = []
    try:
        raw = list(lexer)
    except ValueError as exc:  # an unclosed quote
        raise UsageError(f"bad query {query!r}: {exc}") from None
    # shlex drops the quotes: find which terms were quoted in the text
    quoted = set(re.findall(r'"([^"]*)"|\'([^\']*)\'', query))
    quoted_terms = {a or b for a, b in quoted}
    for term in raw:
        preds.append(_term(term, term in quoted_terms))
    return lambda name, t: all(p(name, t) for p in preds)
