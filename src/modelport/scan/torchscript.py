"""TorchScript code, parsed with ``ast`` (never compiled, never run).

A TorchScript archive carries its program as Python-syntax source under ``code/`` (what
``torch.jit.save`` serialises; ``torch.jit.load`` compiles it with TorchScript's own
environment, torch/csrc/jit/serialization/import_source.cpp). The names that environment
resolves are few: ``torch``, ``ops`` (registered operators), ``__torch__`` (the archive's own
classes), ``CONSTANTS`` (the archive's constant tensors), the TorchScript builtins and types.
Each method is parsed and every name it reads is resolved against its own locals, the file's
classes and functions, and that environment::

    rule                    severity  what
    torchscript-file-op     HIGH      a call of torch/ops save, load, from_file ... (reads or
                                      writes files when the program runs)
    torchscript-system-op   HIGH      open/exec/eval/__import__, or a system module (os,
                                      subprocess, socket ...) named anywhere
    torchscript-import      HIGH      an import statement
    torchscript-global      MEDIUM    any other name outside that environment
    torchscript-custom-op   MEDIUM    ops.<namespace> other than aten/prim/quantized ..., or
                                      torch.classes: native code of a library the process loaded
    torchscript-code        INFO      the methods the program has

Code that ``ast`` cannot parse is an error (not clean).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass

from .findings import Severity

__all__ = ["Hit", "analyse", "dotted_name", "ENVIRONMENT"]

S = Severity

# What TorchScript's source importer resolves besides the file's own definitions: its roots,
# builtins (torch/jit/_builtins.py, torch/csrc/jit/frontend/ir_emitter.cpp) and type names.
ENVIRONMENT = frozenset((
    "torch", "ops", "__torch__", "CONSTANTS", "fork", "wait", "annotate", "unchecked_cast",
    "uninitialized", "isinstance", "range", "len", "int", "float", "bool", "str", "list", "dict",
    "tuple", "min", "max", "abs", "round", "print", "enumerate", "zip", "sorted", "reversed",
    "any", "all", "sum", "divmod", "hash", "ord", "chr", "hex", "oct", "bin", "getattr",
    "hasattr", "id", "complex", "math", "inf", "nan", "infj", "nanj", "NoneType", "Tensor",
    "Optional", "List", "Dict", "Tuple", "Union", "Any", "Future", "Await", "RRef", "Device",
    "Stream", "Final", "number", "Module", "Enum", "NamedTuple", "Interface", "Storage",
    "Generator", "Capsule", "Scalar", "Layout", "MemoryFormat", "ScalarType", "QScheme",
    "AnyEnumType", "AnyClassType", "Quantizer", "self", "super", "True", "False", "None"))
_FILE_OPS = frozenset({"save", "load", "from_file", "_load_for_mobile", "_save_for_mobile",
                       "_save_parameters", "_load_parameters", "read_file", "write_file",
                       "_load_from_bytes", "open"})
_SYSTEM_CALLS = frozenset({"open", "exec", "eval", "compile", "__import__", "execfile",
                           "breakpoint", "input"})
_SYSTEM_MODULES = frozenset({"os", "subprocess", "sys", "shutil", "socket", "builtins",
                             "importlib", "pickle", "ctypes", "posix", "nt", "pty", "urllib",
                             "requests", "http", "pathlib", "io", "runpy", "marshal", "shelve",
                             "tempfile", "webbrowser", "multiprocessing", "threading"})
_OPS_NAMESPACES = frozenset({"aten", "prim", "quantized", "_caffe2", "profiler", "_quantized",
                             "quantized_decomposed", "_c10d_functional", "c10d"})


@dataclass(frozen=True)
class Hit:
    severity: Severity
    rule: str
    subject: str
    line: int
    why: str


def dotted_name(node: ast.AST) -> str | None:
    """``a.b.c`` for a chain of attributes on a name (what a call or base class names)."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


def _bound(tree: ast.AST) -> set[str]:
    """Every name a scope binds: parameters, assignment/loop/with/except targets, defs."""
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            out.add(node.id)
        elif isinstance(node, ast.arg):
            out.add(node.arg)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) or \
                isinstance(node, ast.ExceptHandler) and node.name:
            out.add(str(node.name))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            out |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return out


def _scopes(tree: ast.Module) -> Iterator[tuple[ast.AST, set[str]]]:
    """(node, names bound around it): each method with its nested functions as one scope
    (TorchScript closures such as ``__forked_function`` read their method's locals)."""
    top = {n.name for n in tree.body if isinstance(n, (ast.ClassDef, ast.FunctionDef))}
    top |= {t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets
            if isinstance(t, ast.Name)}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            members = {b.name for b in node.body if isinstance(b, ast.FunctionDef)}
            for item in node.body:
                if isinstance(item, ast.FunctionDef):
                    yield item, top | members | _bound(item)
                else:  # class attributes: names, types, __annotations__["0"] = ... (traced)
                    yield item, top | members | {"__annotations__"}
            yield from ((b, top) for b in node.bases)
        elif isinstance(node, ast.FunctionDef):
            yield node, top | _bound(node)
        else:
            yield node, top


def analyse(text: str) -> tuple[list[Hit], list[str]]:
    """(findings, method names) of one code/*.py file; SyntaxError if ``ast`` cannot parse it."""
    tree = ast.parse(text)
    hits: list[Hit] = []
    methods = [n.name for c in tree.body if isinstance(c, ast.ClassDef) for n in c.body
               if isinstance(n, ast.FunctionDef)]
    methods += [n.name for n in tree.body if isinstance(n, ast.FunctionDef)]
    for scope, bound in _scopes(tree):
        for node in ast.walk(scope):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = ", ".join(a.name for a in node.names)
                hits.append(Hit(S.HIGH, "torchscript-import", names, node.lineno,
                                "TorchScript code never imports; this was written by hand"))
            elif isinstance(node, ast.Call):
                hits += _call(node)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
                name = dotted_name(node)
                if name and name.startswith(("ops.", "torch.classes.")):
                    hits += _namespace(name, node.lineno)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and \
                    node.id not in bound and node.id not in ENVIRONMENT:
                system = node.id in _SYSTEM_MODULES or node.id in _SYSTEM_CALLS
                hits.append(Hit(S.HIGH if system else S.MEDIUM,
                                "torchscript-system-op" if system else "torchscript-global",
                                node.id, node.lineno, "a name outside TorchScript's "
                                "environment (torch, ops, the archive's classes): a program "
                                "edited by hand, or one that reaches Python"))
    return hits, methods


def _call(node: ast.Call) -> list[Hit]:
    name = dotted_name(node.func)
    if name is None:
        return []
    root, last = name.split(".", 1)[0], name.rsplit(".", 1)[-1]
    if root in ("torch", "ops") and last in _FILE_OPS:
        return [Hit(S.HIGH, "torchscript-file-op", name, node.lineno,
                    "the program reads or writes files when it runs")]
    if name in _SYSTEM_CALLS or root in _SYSTEM_MODULES:
        return [Hit(S.HIGH, "torchscript-system-op", name, node.lineno,
                    "the program opens files, evaluates code or calls a system module")]
    return []


def _namespace(name: str, line: int) -> list[Hit]:
    parts = name.split(".")
    if parts[0] == "ops" and len(parts) >= 3 and parts[1] not in _OPS_NAMESPACES:
        return [Hit(S.MEDIUM, "torchscript-custom-op", ".".join(parts[:3]), line,
                    "a custom operator: native code from a library the loading process must "
                    "have loaded")]
    if parts[:2] == ["torch", "classes"] and len(parts) >= 4:
        return [Hit(S.MEDIUM, "torchscript-custom-op", ".".join(parts[:4]), line,
                    "a custom TorchBind class: native code from a loaded library")]
    return []
