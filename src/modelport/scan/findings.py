"""What a scan reports: findings with an ordered severity, and one report per file.

A ``Finding`` says what was seen (rule, the global or opcode), where (member, byte offset) and
why it matters. Findings that count (MEDIUM or worse; LOW or worse with --strict) fall in one
of two categories, so that the verdict says what to do:

    malicious    known gadgets, obfuscation (names or callees built at run time, dotted and
                 dunder names, payloads fed to loaders), structural tricks (zip and framing
                 tricks, memo misses, streams that break after a call, resource limits)
    needs-code   a global that is on no list: loading the file imports its module (a user's
                 ``__main__.Net``, a library's model class). modelport cannot say what that
                 code does; ``scan --allow NAME`` or ``--policy FILE`` vouches for it

A ``FileReport`` collects the findings and errors of one path and derives the verdict, fail
closed, in this order (an error never hides a finding: its errors are still listed)::

    unsafe       some malicious indicator
    needs-code   only needs-code findings: the file is as safe as the code it names
    error        no finding, but part of the file could not be judged
    clean        everything a loader would execute is on the allowlist
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

__all__ = ["Severity", "Finding", "FileReport", "NEEDS_CODE_RULES", "VERDICTS"]


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

# Rules whose findings mean "this file imports code modelport cannot vouch for", nothing worse.
NEEDS_CODE_RULES = frozenset({"unknown-import", "remote-code"})  # remote-code: a .py file
# that trust_remote_code imports (scan/python_code.py)
VERDICTS = ("clean", "needs-code", "unsafe", "error")


@dataclass(frozen=True)
class Finding:
    severity: Severity
    rule: str  # a stable id: gadget-import, unknown-import, zip-name-mismatch, ...
    message: str  # what was seen, one line
    subject: str | None = None  # the global (module.qualname) or opcode
    member: str | None = None  # archive member, nested payload or stacked pickle
    offset: int | None = None  # byte offset in the file (or in the member for compressed ones)
    why: str = ""  # one line on why it matters

    @property
    def category(self) -> str:
        """needs-code (an import off the allowlist), malicious (anything else that counts), or
        note (below the unsafe threshold: decided by the report's mode)."""
        return "needs-code" if self.rule in NEEDS_CODE_RULES else "malicious"

    def location(self) -> str:
        parts = [p for p in (self.member, None if self.offset is None else f"byte {self.offset}")
                 if p]
        return ", ".join(parts)

    def to_json(self) -> dict[str, Any]:
        return {"severity": self.severity.name, "rule": self.rule, "message": self.message,
                "subject": self.subject, "member": self.member, "offset": self.offset,
                "why": self.why, "category": self.category}


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
        """Every finding that counts (either category)."""
        floor = UNSAFE_AT[self.strict]
        return [f for f in self.findings if f.severity >= floor]

    @property
    def malicious(self) -> list[Finding]:
        return [f for f in self.unsafe_findings if f.category == "malicious"]

    @property
    def needs_code(self) -> list[str]:
        """The globals a loader would import that no list vouches for, in file order."""
        return list(dict.fromkeys(f.subject or f.message for f in self.unsafe_findings
                                  if f.category == "needs-code"))

    @property
    def verdict(self) -> str:
        if self.malicious:
            return "unsafe"
        if self.unsafe_findings:
            return "needs-code"
        return "error" if self.errors else "clean"

    def worst(self) -> Finding | None:
        return max(self.findings, key=lambda f: f.severity, default=None)

    @property
    def reason(self) -> str:
        """One short sentence for the verdict line."""
        verdict = self.verdict
        if verdict == "unsafe":
            top = max(self.malicious, key=lambda f: f.severity)
            more = len(self.unsafe_findings) - 1
            where = f" ({top.location()})" if top.location() else ""
            return top.message + where + (f"; {more} more finding(s)" if more else "")
        if verdict == "needs-code":
            names = self.needs_code
            shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4
                                             else "")
            return (f"loading it imports code no allowlist vouches for: {shown} (no known "
                    "gadget; --allow NAME if you trust it)")
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
            "malicious": len(self.malicious),
            "needs_code": self.needs_code,
        }

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "format": self.format, "verdict": self.verdict,
                "reason": self.reason, "strict": self.strict,
                "findings": [f.to_json() for f in sorted(self.findings,
                                                         key=lambda f: -f.severity)],
                "needs_code": self.needs_code, "errors": list(self.errors),
                "scanned": list(self.scanned)}

    def __str__(self) -> str:
        return json.dumps(self.to_json(), indent=1)
