"""One scan's state, and the dispatch that decides by content what a run of bytes holds.

Every file, archive member, decompressed stream and nested payload goes through ``Scan.bytes``:
the first bytes decide (never a name or an extension), so a pickle named ``.bin``, a zip inside a
gzip stream or a torch archive passed to ``torch.storage._load_from_bytes`` all get the same
scrutiny. Nesting is bounded by ``limits.nested_pickles``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

from ..containers import compress
from ..containers.tar import is_tar
from ..limits import DEFAULT_LIMITS, Limits
from .findings import FileReport, Finding, Severity
from .policy import UserAllow

__all__ = ["Scan", "looks_like_pickle", "pickle_strength", "decompressor", "decompress_errors"]

# Opcode bytes of protocols 0-5 (Lib/pickletools.py); a pickle's second byte is one of them too.
_OPCODES = frozenset(b"(.012FIJKLMNPQRSTUVXabcdeghijlopqrstu}])G\x80\x81\x82\x83\x84\x85\x86"
                     b"\x87\x88\x89\x8a\x8b\x8c\x8d\x8e\x8f\x90\x91\x92\x93\x94\x95\x96\x97\x98BC")
# A protocol 0/1 pickle that starts with a global: "cmodule\nname\n" (what `cos\nsystem` is).
_TEXT_GLOBAL = re.compile(rb"^[ci][A-Za-z_][\w.]*\n[A-Za-z_][\w.]*\n")
_WEAK_FIRST = frozenset(b"(}])N")


def pickle_strength(head: bytes | memoryview) -> int:
    """A hint, not a decision (every run of bytes is parsed as a pickle from byte 0; see
    ``pickles.scan_one``): 2: PROTO 2..5 then an opcode, written as a pickle, so a broken
    parse is an error; 1: looks like a protocol 0/1 pickle; 0: no sign of one."""
    head = bytes(head[:80])
    if len(head) >= 2 and head[0] == 0x80 and head[1] <= 5:
        if len(head) == 2 or head[2] in _OPCODES:
            return 2 if head[1] >= 2 else 1
        return 0
    if _TEXT_GLOBAL.match(head):
        return 1
    if head[:1] and head[0] in _WEAK_FIRST and (len(head) < 2 or head[1] in _OPCODES):
        return 1
    return 0


def looks_like_pickle(head: bytes | memoryview) -> bool:
    return pickle_strength(head) > 0


class _EveryStream:
    """``decompress(data, max_length)`` over every stream of ``data``, as bz2.decompress,
    lzma.decompress and gzip.decompress read them (and joblib's zlib reader): a payload split
    over two streams is judged whole. Raises what a decompressor raises if nothing decodes."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def decompress(self, data: bytes, max_length: int) -> bytes:
        out = compress.decompress(data, self.kind, max_length)
        if out.error and not out.data:
            raise ValueError(out.error)
        return out.data


def decompressor(kind: str) -> Any:
    """For the pickle payload decoders (zlib.decompress, gzip.decompress ... called by a
    pickle): every stream of the payload, through containers.compress."""
    return _EveryStream(kind)


def decompress_errors() -> tuple[type[Exception], ...]:
    """What a decompressor raises on bytes that are not its stream."""
    return compress.errors()


@dataclass
class Scan:
    """The state of one file's scan: where, how strict, what was found."""

    path: str
    limits: Limits = DEFAULT_LIMITS
    strict: bool = False
    report: FileReport = field(init=False)
    depth: int = 0  # nesting of payloads inside payloads
    from_zero: bool = False  # the file itself was parsed as a pickle from byte 0
    allow: UserAllow | None = None  # the user's own allowlist (scan --allow, --policy)
    # The registry's Probe of this file (scan_path): the zip hook takes the zip directory the
    # sniffers already read instead of reading and parsing it a second time.
    probe: Any = None
    # The probed file, mapped once by scan_path for all of its passes (archives ``_mapped``).
    view: memoryview | None = None
    _seen: set[tuple[Any, ...]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.report = FileReport(self.path, strict=self.strict)

    @property
    def profiles(self) -> bool:
        return not self.strict

    def add(self, severity: Severity, rule: str, message: str, *, subject: str | None = None,
            member: str | None = None, offset: int | None = None, why: str = "") -> None:
        key = (rule, subject, member, offset, message)
        if key not in self._seen:  # one finding per thing, even if two passes see it
            self._seen.add(key)
            self.report.findings.append(
                Finding(severity, rule, message, subject, member, offset, why))

    def error(self, message: str) -> None:
        if message not in self.report.errors:
            self.report.errors.append(message)

    def note_scanned(self, what: str) -> None:
        self.report.scanned.append(what)

    # -- dispatch by content ----------------------------------------------------------------

    def bytes(self, data: bytes | memoryview, *, member: str | None, base: int = 0,
              loader: bool = False) -> None:
        """Scan a run of bytes by what it holds. ``loader``: a loader is known to unpickle it
        (a payload passed to pickle.loads), so a broken pickle is an error, not noise."""
        from . import archives, pickles

        head = bytes(data[:512])
        if not head:
            return
        if self.depth > self.limits.nested_pickles:
            self.add(Severity.MEDIUM, "limit", f"payloads nested more than "
                     f"{self.limits.nested_pickles} deep", member=member, offset=base,
                     why="resource limits exceeded: the rest was not scanned")
            return
        self.depth += 1
        try:
            kind = compress.kind_of(data[:1 << 16])
            if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
                import tempfile  # the zip reader works on a path: a nested archive gets one

                with tempfile.NamedTemporaryFile(suffix=".zip") as tmp:
                    tmp.write(data)
                    tmp.flush()
                    archives.scan_zip(self, tmp.name, member=member)
            elif head.startswith(b"\x93NUMPY"):
                archives.scan_npy(self, data, member=member, base=base)
            elif head.startswith(archives.SEVEN_Z):
                archives.scan_7z(self, data, member=member)
            elif kind in compress.MAGIC_KINDS:
                archives.scan_compressed(self, data, kind, member=member, base=base)
            else:
                # Kinds without a magic number (zlib, LZMA-alone) and tar headers can share
                # their first bytes with a pickle: every reading a loader may take is judged.
                if kind:
                    archives.scan_compressed(self, data, kind, member=member, base=base)
                if is_tar(head):
                    archives.scan_tar(self, data, member=member)
                # Any bytes are a pickle to CPython until an invalid opcode: parsed from byte
                # 0 whatever it is, judged if the parse reaches an import, a call or a STOP.
                pickles.scan_stream(self, data, member=member, base=base,
                                    loader=loader or pickle_strength(head) == 2)
        finally:
            self.depth -= 1

    def file(self, path: str) -> None:
        """Scan a file on disk: mapped, never read whole."""
        from . import archives

        archives.scan_path(self, path)


def relpath(path: str, root: str) -> str:
    rel = os.path.relpath(path, root)
    return path if rel.startswith("..") else rel
