"""Python source in model folders (``modeling_*.py``, ``configuration_*.py``,
``tokenization_*.py``): code transformers imports and runs under ``trust_remote_code=True``.

Read with ``ast`` (parsed, never imported or compiled to bytecode): the classes it defines, the
modules it imports, and the calls that reach the system. Every such file is a *needs-code*
finding (``remote-code``: loading the model runs it, modelport cannot vouch for it) naming its
classes and imports; imports of the system modules a model has no need for (processes,
sockets, native code, the network) and calls that run strings as code (exec, eval, compile,
__import__, os.system, ...) are findings of their own that make the file unsafe.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field

from .context import Scan
from .findings import Severity
from .torchscript import dotted_name

__all__ = ["Summary", "analyze", "scan_python_file", "SYSTEM_MODULES", "CODE_CALLS"]

# Modules whose import in model code reaches the system: processes, sockets and the network,
# native code, terminals. (os, sys, shutil, pathlib are common in honest modeling files: they
# are listed in the remote-code finding, not flagged on their own; os.system & co. are calls.)
SYSTEM_MODULES = frozenset({
    "subprocess", "socket", "ctypes", "cffi", "pty", "urllib", "http", "requests", "httpx",
    "ftplib", "smtplib", "telnetlib", "paramiko", "webbrowser", "marshal", "pickle", "dill",
    "cloudpickle", "shelve", "runpy", "code", "codeop",
})
# Calls that run strings or commands: (module or None for a builtin, function name).
CODE_CALLS = frozenset({
    (None, "exec"), (None, "eval"), (None, "compile"), (None, "__import__"),
    ("os", "system"), ("os", "popen"), ("os", "execv"), ("os", "execve"), ("os", "execl"),
    ("os", "execvp"), ("os", "spawnv"), ("os", "spawnl"), ("os", "fork"), ("os", "remove"),
    ("os", "unlink"), ("os", "rmdir"), ("shutil", "rmtree"), ("subprocess", "run"),
    ("subprocess", "Popen"), ("subprocess", "call"), ("subprocess", "check_output"),
    ("subprocess", "check_call"), ("pickle", "loads"), ("pickle", "load"),
    ("marshal", "loads"), ("importlib", "import_module"),
})
MAX_SOURCE = 64 << 20  # bytes of one source file parsed (real modeling files are < 1 MB)


@dataclass
class Summary:
    classes: list[str] = field(default_factory=list)  # top-level and nested, with bases
    imports: list[str] = field(default_factory=list)  # modules, in order of first import
    system: list[tuple[str, int]] = field(default_factory=list)  # (module, line)
    calls: list[tuple[str, int]] = field(default_factory=list)  # (dotted call, line)
    error: str | None = None  # the file does not parse


def analyze(text: str) -> Summary:
    """Classes, imports and system reach of Python source (parsed with ast, never run)."""
    out = Summary()
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        out.error = f"does not parse as Python: {type(exc).__name__}: {exc}".splitlines()[0]
        return out
    aliases: dict[str, str] = {}  # local name -> module.attr it stands for
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                out.imports.append(a.name)
                aliases[(a.asname or a.name).split(".")[0]] = a.name if a.asname else \
                    a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom):
            mod = ("." * node.level) + (node.module or "")
            out.imports.append(mod)
            for a in node.names:
                aliases[a.asname or a.name] = f"{mod}.{a.name}"
        elif isinstance(node, ast.ClassDef):
            bases = [b for b in (dotted_name(x) for x in node.bases) if b]
            out.classes.append(f"{node.name}({', '.join(bases)})" if bases else node.name)
    out.imports = list(dict.fromkeys(out.imports))
    for mod in out.imports:
        top = mod.lstrip(".").split(".")[0]
        if top in SYSTEM_MODULES and not mod.startswith("."):
            line = next((n.lineno for n in ast.walk(tree) if isinstance(
                n, (ast.Import, ast.ImportFrom)) and mod in (
                [a.name for a in n.names] if isinstance(n, ast.Import) else
                [("." * n.level) + (n.module or "")])), 0)
            out.system.append((mod, line))
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = dotted_name(node.func)
        if name is None:
            continue
        head, _, rest = name.partition(".")
        full = f"{aliases[head]}.{rest}" if head in aliases and rest else aliases.get(head, name)
        mod, _, fn = full.rpartition(".")
        if (mod or None, fn) in CODE_CALLS or (None, name) in CODE_CALLS and "." not in name:
            out.calls.append((full, node.lineno))
    return out


def scan_python_file(scan: Scan, path: str) -> None:
    """The registry's hook for ``python-source``: what importing the file would run."""
    with open(path, "rb") as f:
        data = f.read(MAX_SOURCE + 1)
    if len(data) > MAX_SOURCE:
        scan.error(f"{path}: Python source larger than {MAX_SOURCE >> 20} MiB; not judged")
        return
    text = data.decode("utf-8", errors="replace")
    s = analyze(text)
    if s.error:
        scan.error(f"{path}: Python source that {s.error}; it was not judged")
        return
    classes = ", ".join(s.classes[:12]) + (" ..." if len(s.classes) > 12 else "") or "none"
    imports = ", ".join(s.imports[:20]) + (" ..." if len(s.imports) > 20 else "") or "none"
    scan.add(Severity.MEDIUM, "remote-code",
             f"Python code a loader imports under trust_remote_code: classes {classes}; "
             f"imports {imports}", subject=", ".join(s.classes[:3]) or None,
             why="transformers runs this file when a model, config or tokenizer is loaded with "
             "trust_remote_code=True (auto_map); modelport parsed it, never ran it: review it")
    for mod, line in s.system:
        scan.add(Severity.HIGH, "remote-code-system-import",
                 f"imports {mod} (line {line}): model code has no need for processes, sockets, "
                 "the network or native code", subject=mod,
                 why="importing the model would give this file that reach")
    for call, line in s.calls:
        scan.add(Severity.HIGH, "remote-code-exec", f"calls {call} (line {line})", subject=call,
                 why="runs strings or commands, loads pickles or deletes files when the model "
                 "is loaded")
    scan.note_scanned(f"Python source: {len(s.classes)} classes, {len(s.imports)} imports")
