"""SARIF 2.1.0 output for CI (GitHub code scanning and others).

One run; one rule per finding rule id; one result per finding, located by the file's path, the
byte offset (``region.byteOffset``) and the archive member (a logical location). Errors go to
the invocation's notifications, so a file that could not be read is visible too. Levels:
findings that make a file unsafe are ``error``, the other LOW ones ``warning``, INFO ``note``.
"""

from __future__ import annotations

import os
import urllib.parse
from pathlib import Path
from typing import Any

from .findings import UNSAFE_AT, FileReport, Finding, Severity

__all__ = ["to_sarif"]

SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"


def _level(f: Finding, strict: bool) -> str:
    if f.severity >= UNSAFE_AT[strict]:
        return "error"
    return "warning" if f.severity >= Severity.LOW else "note"


def _artifact(path: str, root: str) -> dict[str, str]:
    """A path relative to the scan root (SRCROOT), as code scanning maps results to a
    repository's files; a file outside the root gets an absolute file:// URI."""
    full = os.path.abspath(path)
    rel = os.path.relpath(full, root)
    if rel.startswith(".."):
        return {"uri": Path(full).as_uri()}
    return {"uri": urllib.parse.quote(rel.replace(os.sep, "/")), "uriBaseId": "SRCROOT"}


def _result(rep: FileReport, f: Finding, root: str) -> dict[str, Any]:
    region = {"byteOffset": f.offset, "byteLength": 1} if f.offset is not None else None
    physical: dict[str, Any] = {"artifactLocation": _artifact(rep.path, root)}
    if region:
        physical["region"] = region
    location: dict[str, Any] = {"physicalLocation": physical}
    if f.member:
        location["logicalLocations"] = [{"name": f.member, "kind": "member"}]
    return {
        "ruleId": f.rule,
        "level": _level(f, rep.strict),
        "message": {"text": f"{f.message}. {f.why}".strip()},
        "locations": [location],
        "properties": {"severity": f.severity.name, "subject": f.subject,
                       "category": f.category, "verdict": rep.verdict},
    }


def to_sarif(reports: list[FileReport], version: str = "0.1.0",
             root: str | None = None) -> dict[str, Any]:
    """``root``: the folder URIs are relative to (default: the current directory)."""
    root = os.path.abspath(root or os.getcwd())
    rules: dict[str, dict[str, Any]] = {}
    results = []
    for rep in reports:
        for f in sorted(rep.findings, key=lambda f: -f.severity):
            rules.setdefault(f.rule, {
                "id": f.rule, "name": f.rule,
                "shortDescription": {"text": f.rule.replace("-", " ")},
                "fullDescription": {"text": f.why or f.rule},
                "properties": {"severity": f.severity.name},
            })
            results.append(_result(rep, f, root))
    notes = [{"level": "error", "message": {"text": e},
              "locations": [{"physicalLocation": {"artifactLocation": _artifact(r.path, root)}}]}
             for r in reports for e in r.errors]
    return {
        "$schema": SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "originalUriBaseIds": {"SRCROOT": {"uri": Path(root).as_uri() + "/"}},
            "tool": {"driver": {"name": "modelport", "version": version,
                                "rules": list(rules.values())}},
            "invocations": [{"executionSuccessful": not notes,
                             "toolExecutionNotifications": notes}],
            "results": results,
        }],
    }
