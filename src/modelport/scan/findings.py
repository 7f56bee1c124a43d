"""What a scan reports: findings with an ordered severity, and one report per file.

A ``Finding`` says what was seen (rule, the global or opcode), where (member, byte offset) and
why it matters. A ``FileReport`` collects the findings and errors of one path and derives the
verdict from them, fail closed::

    unsafe   some finding is MEDIUM or worse (LOW or worse with --strict)
    error    nothing unsafe, but part of the file could not be read (an error never hides a
             finding: a file with both is unsafe, and its errors are still listed)
    clean    everything a loader would execute is on the allowlist
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

__all__ = ["Severity", "Finding", "FileReport"]


class Severity(IntEnum):
    INFO = 0  # what the file is or carries (an ecosystem object, TorchScript methods)
    LOW = 1  # odd but not code execution (trailing bytes, a persistent id in a plain pickle)
    MEDIUM = 2  # a loader imports something outside the allowlist, or parsers may disagree
    HIGH = 3  # a loader calls something outside the allowlist, or the stream hides its calls
    CRITICAL = 4  # a known code-execution gadget

    def __str__(self) -> str:
        return self.name


# The lowest severity that makes a file unsafe, by mode.
UNSAFE_AT = {False: Severity.MEDIUM, True: Severity.LOW}


@dataclass(frozen=True)
class Finding:
    severity: Severity
    rule: str  # a stable id: gadget-import, unknown-import, zip-name-mismatch, ...
    message: str  # what was seen, one line
    subject: str | None = None  # the global (module.qualname) or opcode
    member: str | None = None  # archive member, nested payload or stacked pickle
    offset: int | None = None  # byte offset in the file (or in the member for compressed ones)
    why: str = ""  # one line on why it matters

    def location(self) -> str:
        parts = [p for p in (self.member, None if self.offset is None else f"byte {self.offset}")
                 if p]
        return ", ".join(parts)

    def to_json(self) -> dict[str, Any]:
        return {"severity": self.severity.name, "rule": self.rule, "message": self.message,
                "subject": self.subject, "member": self.member, "offset": self.offset,
                "why": self.why}


@dataclass
class FileReport:
    path: str
    format: str | None = None  # what the content was recognised as (not the extension)
    findings: list[Finding] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    scanned: list[str] = field(default_factory=list)  # pickles and headers looked at
    strict: bool = False

    @property
    def unsafe_findings(self) -> list[Finding]:
        floor = UNSAFE_AT[self.strict]
        return [f for f in self.findings if f.severity >= floor]

    @property
    def verdict(self) -> str:
        if self.unsafe_findings:
            return "unsafe"
        return "error" if self.errors else "clean"

    def worst(self) -> Finding | None:
        return max(self.findings, key=lambda f: f.severity, default=None)

    @property
    def reason(self) -> str:
        """One short sentence for the verdict line."""
        verdict = self.verdict
        if verdict == "unsafe":
            top = max(self.unsafe_findings, key=lambda f: f.severity)
            more = len(self.unsafe_findings) - 1
            where = f" ({top.location()})" if top.location() else ""
            return top.message + where + (f"; {more} more finding(s)" if more else "")
        if verdict == "error":
            return self.errors[0]
        notes = [f for f in self.findings if f.severity == Severity.INFO]
        if not self.scanned and not notes:
            return "no pickle or model header in it: nothing a loader would execute"
        names = list(dict.fromkeys(self.scanned))
        listed = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        what = f"only allowlisted data in {listed}"
        if notes:
            rules = sorted({f.rule for f in notes})
            return f"{what}; {len(notes)} note(s): {', '.join(rules)}"
        return what

    def summary(self) -> dict[str, Any]:
        """What ``inspect`` shows and ``convert`` decides on."""
        worst = self.worst()
        return {
            "verdict": self.verdict,
            "reason": self.reason,
            "findings": sum(f.severity > Severity.INFO for f in self.findings),
            "notes": sum(f.severity == Severity.INFO for f in self.findings),
            "severity": worst.severity.name if worst else None,
            "errors": len(self.errors),
        }

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "format": self.format, "verdict": self.verdict,
                "reason": self.reason, "strict": self.strict,
                "findings": [f.to_json() for f in sorted(self.findings,
                                                         key=lambda f: -f.severity)],
                "errors": list(self.errors), "scanned": list(self.scanned)}

    def __str__(self) -> str:
        return json.dumps(self.to_json(), indent=1)
