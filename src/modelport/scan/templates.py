"""Chat templates: Jinja code that front-ends render, parsed with Jinja's parser, never rendered.

A chat template turns a list of messages into the prompt text. llama-cpp-python rendered the
``tokenizer.chat_template`` of a GGUF file in a non-sandboxed ``jinja2.Environment``
(CVE-2024-34359): ``{{ ().__class__.__base__.__subclasses__() }}`` reached ``os.popen``. Even
``ImmutableSandboxedEnvironment`` (transformers' choice) has had escapes through ``str.format``
and ``|attr``. So a template is judged by its syntax tree (``jinja2.Environment().parse``: the
parser only, nothing compiled or run) against the shapes every known escape needs::

    private attribute   ``x.__class__``, ``x['__globals__']``, ``x._private``: CRITICAL for the
                        attributes escape chains walk through, HIGH for any other ``_`` name
    ``|attr(...)``      attribute access by a computed name
    dunder strings      ``'__class__'`` anywhere (``map(attribute=...)``, ``str.format``, keys)
    computed keys       ``x['__cla' ~ 'ss__']``, ``x[name|reverse]``: names the parser cannot see
    globals             attributes of ``cycler``, ``joiner``, ``namespace``, ``lipsum``, ``range``,
                        ``dict`` (their ``__init__.__globals__`` is the module); ``self``
                        (``self._TemplateReference__context``); Flask's ``config``, ``request``,
                        ``session``, ``g``, ``url_for``, ``get_flashed_messages``
    str.format          ``'{0.__class__}'.format(x)`` reaches attributes inside the string
    loading             ``{% include %}``, ``{% import %}``, ``{% extends %}`` read other files
    frame objects       ``gi_frame``, ``f_globals``, ``mro``, ``func_globals``, ...

The templates real models ship (Llama 3, Qwen2, Mistral, ChatML, Gemma, Phi-3, Command-R) use
none of these and are clean. A template Jinja cannot parse is an error (never clean): a renderer
with other extensions might still run it.

Where templates are: a GGUF file's ``tokenizer.chat_template`` and ``tokenizer.chat_template.*``
keys (``scan_gguf``), a Hugging Face folder's ``tokenizer_config.json`` ``chat_template`` (a
string, or a list of ``{name, template}``), ``chat_template.json`` and ``chat_template.jinja`` /
``*.jinja`` files (``scan_template_file``).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from typing import Any

from ..errors import ModelportError, Truncated
from .context import Scan
from .findings import Severity

__all__ = ["check_template", "scan_gguf", "scan_template_file", "template_problems"]

S = Severity

# Attributes the published escape chains walk through (CVE-2024-34359, the Jinja SSTI
# literature): reaching any of them from template data means reaching Python internals.
_GADGET_ATTRS = frozenset({
    "__class__", "__base__", "__bases__", "__mro__", "__subclasses__", "__globals__",
    "__builtins__", "__import__", "__init__", "__dict__", "__getattribute__", "__reduce__",
    "__reduce_ex__", "__code__", "__closure__", "__func__", "__self__", "__module__",
    "__loader__", "__spec__", "__getitem__", "_module", "_TemplateReference__context",
})
# Non-underscore attributes of Python internals (frames, generators, functions, types).
_INTERNAL_ATTRS = frozenset({
    "mro", "func_globals", "func_code", "f_globals", "f_locals", "f_back", "f_builtins",
    "gi_frame", "gi_code", "cr_frame", "cr_code", "ag_frame", "tb_frame", "tb_next", "co_code",
    "im_func", "im_self", "environment", "_TemplateReference__context",
})
# Jinja globals whose attributes lead to their module's globals, and the names that only mean
# something in a web framework's context.
_GLOBAL_OBJECTS = frozenset({"cycler", "joiner", "namespace", "lipsum", "range", "dict"})
_UNUSUAL_GLOBALS = frozenset({"cycler", "joiner", "lipsum"})
_FRAMEWORK_GLOBALS = frozenset({"config", "request", "session", "g", "url_for",
                                "get_flashed_messages"})
# Filters that take an attribute name (``map(attribute='x')``, ``sort(attribute='x')``).
_ATTRIBUTE_FILTERS = frozenset({"map", "selectattr", "rejectattr", "sort", "groupby", "sum",
                                "unique", "min", "max"})
_DUNDER = re.compile(r"__\w+__")
_WHY_ESCAPE = ("a sandbox escape shape: rendering the template (llama-cpp-python, "
               "CVE-2024-34359) runs code through Python internals")


def _jinja() -> Any:
    try:
        import jinja2
        from jinja2 import nodes
        from jinja2.ext import Extension
    except ImportError:
        return None

    class _Generation(Extension):
        """transformers' ``{% generation %}...{% endgeneration %}`` tag (AssistantTracker):
        parsed as a plain block so its body is checked like the rest."""

        tags = {"generation"}

        def parse(self, parser: Any) -> Any:
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return nodes.Scope(body).set_lineno(lineno)

    # The extensions transformers' renderer enables ({% break %}, {% continue %}) and {% do %}:
    # a template using them must parse, or it could never be judged clean.
    env = jinja2.Environment(extensions=["jinja2.ext.loopcontrols", "jinja2.ext.do",
                                         _Generation])
    return env, nodes


def _fold(node: Any, nodes: Any, consts: dict[str, str] | None = None) -> str | None:
    """The string an expression of constants makes (``'__cla' ~ 'ss__'``, ``'_' * 2``, a name
    ``{% set %}`` to such an expression earlier), else None."""
    consts = consts or {}
    if isinstance(node, nodes.Const) and isinstance(node.value, str):
        return node.value
    if isinstance(node, nodes.Name) and node.name in consts:
        return consts[node.name]
    if isinstance(node, nodes.Concat):
        parts = [_fold(n, nodes, consts) for n in node.nodes]
        return None if any(p is None for p in parts) else "".join(parts)  # type: ignore[arg-type]
    if isinstance(node, nodes.Add):
        left, right = _fold(node.left, nodes, consts), _fold(node.right, nodes, consts)
        return None if left is None or right is None else left + right
    if isinstance(node, nodes.Mul):
        for text_side, count_side in ((node.left, node.right), (node.right, node.left)):
            text = _fold(text_side, nodes, consts)
            if text is not None and isinstance(count_side, nodes.Const) and \
                    isinstance(count_side.value, int) and 0 <= count_side.value <= 64:
                return text * count_side.value
    return None


def _computed_string(node: Any, nodes: Any, tainted: set[str] | None = None) -> bool:
    """An expression that builds a string at render time (concatenation, repetition, filters,
    %), or a name ``{% set %}`` to one."""
    if isinstance(node, nodes.Name):
        return node.name in (tainted or set())
    return isinstance(node, (nodes.Concat, nodes.Add, nodes.Mul, nodes.Filter, nodes.Mod,
                             nodes.CondExpr))


Problem = tuple[Severity, str, str, int]  # severity, rule, message, line


def _walk(tree: Any) -> Iterator[Any]:
    """Every node, iteratively (a template nested thousands deep must not blow the stack)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(reversed(list(node.iter_child_nodes())))


def template_problems(text: str) -> list[Problem] | str:
    """The sandbox-escape shapes in a template, or a string saying why it could not be judged
    (jinja2 missing, or a template Jinja's parser refuses)."""
    got = _jinja()
    if got is None:
        return "jinja2 is not installed: pip install 'modelport[gguf]' to analyse chat templates"
    env, nodes = got
    try:
        tree = env.parse(text)
    except RecursionError:
        return "the template nests too deeply for Jinja's parser"
    except Exception as exc:  # noqa: BLE001 - TemplateSyntaxError and whatever a hostile
        # template makes the parser raise: either way it was not judged
        line = getattr(exc, "lineno", None)
        return f"Jinja cannot parse the template ({type(exc).__name__}: {exc}" + (
            f", line {line})" if line else ")")
    out: list[Problem] = []

    def add(sev: Severity, rule: str, msg: str, node: Any) -> None:
        out.append((sev, rule, msg, getattr(node, "lineno", 0) or 0))

    def attribute(name: str, node: Any, how: str) -> None:
        if name in _GADGET_ATTRS:
            add(S.CRITICAL, "jinja-gadget-attr", f"{how} {name!r}, a link of known sandbox "
                "escape chains", node)
        elif name.startswith("_"):
            add(S.HIGH, "jinja-private-attr", f"{how} private attribute {name!r}", node)
        elif name in _INTERNAL_ATTRS:
            add(S.HIGH, "jinja-internal-attr", f"{how} {name!r}, an attribute of Python "
                "internals", node)

    # Names {% set %} to a string built from pieces: their value when it is constant (so
    # ()[c] with c = '_'*2 ~ 'class' ~ '_'*2 is read as ()['__class__']), else tainted.
    consts: dict[str, str] = {}
    tainted: set[str] = set()
    for node in _walk(tree):
        if isinstance(node, nodes.Assign) and isinstance(node.target, nodes.Name):
            name = node.target.name
            value = _fold(node.node, nodes, consts)
            if value is not None:
                consts[name] = value
            elif _computed_string(node.node, nodes, tainted) or any(
                    isinstance(n, nodes.Name) and n.name in tainted for n in _walk(node.node)):
                tainted.add(name)
                consts.pop(name, None)
            else:
                consts.pop(name, None)
        elif isinstance(node, nodes.AssignBlock) and isinstance(node.target, nodes.Name):
            tainted.add(node.target.name)  # {% set x %}...{% endset %}: text built at render
    for node in _walk(tree):
        if isinstance(node, nodes.Getattr):
            attribute(node.attr, node, "reads attribute")
            base = node.node
            if isinstance(base, nodes.Name) and base.name in _GLOBAL_OBJECTS:
                add(S.HIGH, "jinja-global-object", f"reads {base.name}.{node.attr}: the "
                    "attributes of Jinja's global objects lead to their module's globals", node)
            if node.attr in ("format", "format_map"):
                add(S.MEDIUM, "jinja-str-format", f"calls .{node.attr}(): format strings "
                    "read attributes of their arguments inside the string", node)
        elif isinstance(node, nodes.Getitem):
            key = _fold(node.arg, nodes, consts)
            if key is not None:
                attribute(key, node, "reads item")
            elif _computed_string(node.arg, nodes, tainted):
                # Jinja turns a failed item read into an attribute read: x[k] with a built
                # k reaches whatever attribute k spells
                add(S.HIGH, "jinja-computed-key", "reads an item whose name is built at "
                    "render time (the parser cannot see which; x[k] falls back to an "
                    "attribute read)", node)
        elif isinstance(node, nodes.Filter):
            if node.name == "attr":
                add(S.HIGH, "jinja-attr-filter", "uses the |attr filter: attribute access by "
                    "a computed name", node)
            elif node.name in _ATTRIBUTE_FILTERS:
                for arg in list(node.args) + [k.value for k in node.kwargs]:
                    name = _fold(arg, nodes, consts)
                    if name is not None and any(p.startswith("_") for p in name.split(".")):
                        attribute(name.split(".")[-1] if name.split(".")[-1].startswith("_")
                                  else name, node, f"|{node.name} reads attribute")
                    elif name is None and _computed_string(arg, nodes, tainted):
                        add(S.MEDIUM, "jinja-computed-key", f"|{node.name} reads an attribute "
                            "whose name is computed at render time", node)
        elif isinstance(node, nodes.Name):
            if node.name == "self":
                add(S.HIGH, "jinja-self", "uses 'self', the template reference "
                    "(self._TemplateReference__context reaches the render context)", node)
            elif node.name in _FRAMEWORK_GLOBALS:
                add(S.MEDIUM, "jinja-framework-global", f"uses {node.name!r}, a web "
                    "framework's global (SSTI payloads read secrets and modules through it)",
                    node)
            elif node.name in _UNUSUAL_GLOBALS:
                add(S.MEDIUM, "jinja-global-object", f"uses {node.name!r}, a Jinja global "
                    "chat templates have no use for and escape chains start from", node)
        elif isinstance(node, nodes.Const) and isinstance(node.value, str):
            for m in _DUNDER.finditer(node.value):
                add(S.HIGH if m.group(0) not in _GADGET_ATTRS else S.CRITICAL,
                    "jinja-dunder-string", f"names {m.group(0)!r} in a string (read as an "
                    "attribute by |attr, |map(attribute=), str.format or an item access)", node)
                break
        elif isinstance(node, (nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends)):
            add(S.MEDIUM, "jinja-load", f"{{% {type(node).__name__.lower()} %}} makes the "
                "renderer load another template file", node)
        elif isinstance(node, nodes.Call) and isinstance(node.node, nodes.Name) and \
                node.node.name == "range":
            for arg in node.args:
                if isinstance(arg, nodes.Const) and isinstance(arg.value, int) and \
                        abs(arg.value) > 1_000_000:
                    add(S.MEDIUM, "jinja-huge-range", f"range({arg.value}): a loop that "
                        "exhausts memory or time when rendered", node)
    return out


def check_template(scan: Scan, text: str, *, label: str, member: str | None = None,
                   offset: int | None = None) -> None:
    """Judge one template; findings name ``label`` (the key or file) and the line."""
    result = template_problems(text)
    if isinstance(result, str):
        where = f"{member}: " if member else ""
        scan.error(f"{scan.path}: {where}{label}: {result} (not clean: the template was not "
                   "judged)")
        return
    scan.note_scanned(f"chat template {label}")
    for sev, rule, msg, line in result:
        scan.add(sev, rule, f"chat template {label}, line {line}: {msg}", subject=label,
                 member=member, offset=offset, why=_WHY_ESCAPE)


# -- GGUF ------------------------------------------------------------------------------------------

# Header problems -> (severity, why). A header parsers read differently is MEDIUM (a file that
# llama.cpp refuses while the gguf package reads it can show a scanner one thing and a loader
# another); a truncated file is an error with a LOW finding.
_NOTE_WHY = "llama.cpp refuses what the gguf package reads: two loaders see different files"


def scan_gguf(scan: Scan, path: str) -> None:
    """The registry's hook for GGUF: the header's structure, then every chat template."""
    from ..formats.gguf import reader as gguf

    try:
        header = gguf.parse(path, scan.limits)
    except Truncated as exc:
        scan.add(S.LOW, "gguf-header", exc.message, subject=exc.tensor, offset=exc.offset,
                 why="the file ends before its header says it does")
        scan.error(str(exc.located(path=path)))
        return
    except ModelportError as exc:
        scan.add(S.MEDIUM, "gguf-header", exc.message, subject=exc.tensor, offset=exc.offset,
                 why="a GGUF header that readers refuse or read differently (counts, lengths, "
                 "alignment or offsets that do not fit the file): crafted or corrupt, and not "
                 "analysed further")
        return
    scan.note_scanned("gguf header")
    for rule, message, offset, tensor in header.notes:
        scan.add(S.LOW, rule, message, subject=tensor, offset=offset, why=_NOTE_WHY)
    for key, text, offset in gguf.iter_templates(header):
        check_template(scan, text, label=key, offset=offset)


# -- Hugging Face files ---------------------------------------------------------------------------

_JSON_NAMES = ("tokenizer_config.json", "chat_template.json", "processor_config.json")


def is_template_file(name: str, head: bytes) -> bool:
    """A file a Hugging Face loader reads chat templates from, by name and content."""
    base = os.path.basename(name)
    if base.endswith(".jinja"):
        return True
    return base in _JSON_NAMES and b'"chat_template"' in head


def _json_templates(data: Any) -> Iterator[tuple[str, str]]:
    """(label, template) of a tokenizer_config.json / chat_template.json document."""
    value = data.get("chat_template") if isinstance(data, dict) else None
    if isinstance(value, str):
        yield "chat_template", value
    elif isinstance(value, list):  # [{"name": "default", "template": "..."}, ...]
        for i, item in enumerate(value):
            if isinstance(item, dict) and isinstance(item.get("template"), str):
                yield f"chat_template[{item.get('name', i)!s}]", item["template"]
            elif isinstance(item, str):
                yield f"chat_template[{i}]", item
    elif isinstance(value, dict):
        for name, text in value.items():
            if isinstance(text, str):
                yield f"chat_template[{name}]", text


def scan_template_file(scan: Scan, path: str) -> None:
    """The registry's hook for tokenizer_config.json, chat_template.json and .jinja files."""
    size = os.path.getsize(path)
    if size > scan.limits.header_bytes:
        scan.error(f"{path}: {size} bytes is more than a template file holds "
                   f"(Limits.header_bytes {scan.limits.header_bytes}); not analysed")
        return
    with open(path, "rb") as f:
        raw = f.read()
    text = raw.decode("utf-8", "replace")
    base = os.path.basename(path)
    if base.endswith(".jinja"):
        check_template(scan, text, label=base)
        return
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        scan.error(f"{path}: not valid JSON ({exc}); its chat template was not analysed")
        return
    found = False
    for label, template in _json_templates(data):
        found = True
        check_template(scan, template, label=f"{base} {label}")
    if not found:
        scan.note_scanned(f"{base}: no chat template")
