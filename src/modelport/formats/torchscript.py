"""TorchScript archives (``torch.jit.save``): the module tree pickled as ``__torch__`` objects.

Layout (torch/csrc/jit/serialization/export_module.cpp)::

    <archive>/data.pkl        __torch__.<Class>() with BUILD state {attr: value}; tensors are
                              _rebuild_tensor_v2 over ('storage', Type, key, 'cpu', numel)
    <archive>/data/<key>      storages, as in a torch.save zip
    <archive>/constants.pkl   tensor constants of the code
    <archive>/code/<module path>.py   the TorchScript source; each class lists its
                              ``__parameters__`` and ``__buffers__``

Weights are named as the module's ``state_dict()`` names them: for each object, its parameters
and buffers in the order the class declares them, then its submodules in attribute order.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace

from ..classify import classify
from ..containers.zip import ZipArchive
from ..limits import DEFAULT_LIMITS, Limits
from ..model import Checkpoint, Opaque, TensorEntry
from . import torch_zip
from .base import Format, Options, Probe

FORMAT_ID = "torchscript"

_CLASS = re.compile(r"^class (\w+)\(Module\):\n((?:  .*\n)*)", re.M)
_LIST = re.compile(r"^  __(parameters|buffers)__ = \[(.*)\]", re.M)


def _declarations(archive: ZipArchive, prefix: str, limits: Limits) -> dict[str, dict[str, list[str]]]:
    """``{"__torch__.Sub": {"parameters": [...], "buffers": [...]}}`` from the code/ files."""
    out: dict[str, dict[str, list[str]]] = {}
    limits = replace(limits, member_bytes=min(limits.member_bytes, limits.header_bytes))
    for m in archive.members:
        if not (m.name.startswith(prefix + "code/") and m.name.endswith(".py")):
            continue
        module = m.name[len(prefix + "code/") : -3].replace("/", ".")
        text = archive.read(m, limits).decode("utf-8", "replace")
        for cls, body in _CLASS.findall(text):
            decl = out.setdefault(f"{module}.{cls}", {})
            for kind, items in _LIST.findall(body):
                decl[kind] = re.findall(r'"([^"]*)"', items)
    return out


def _walk(obj: Opaque, decls: dict[str, dict[str, list[str]]], prefix: str,
          seen: set[int]) -> Iterator[tuple[str, TensorEntry]]:
    if id(obj) in seen or not isinstance(obj.state, dict):
        return
    seen.add(id(obj))
    state = obj.state
    decl = decls.get(obj.cls)
    if decl is not None:
        names = decl.get("parameters", []) + decl.get("buffers", [])
    else:  # no code: every tensor attribute, in attribute order
        names = [k for k, v in state.items() if isinstance(v, TensorEntry)]
    for name in names:
        if isinstance(state.get(name), TensorEntry):
            yield prefix + name, state[name]
    for name, value in state.items():
        if isinstance(value, Opaque) and value.cls.startswith("__torch__"):
            yield from _walk(value, decls, f"{prefix}{name}.", seen)


def open(path: str, limits: Limits = DEFAULT_LIMITS, select: str | None = None) -> Checkpoint:
    t = torch_zip.load(path, limits)
    archive, prefix, members, root = t.archive, t.prefix, t.members, t.tree
    decls = _declarations(archive, prefix, limits)
    code = sorted(n[len(prefix):] for n in members if n.startswith(prefix + "code/")
                  and n.endswith(".py"))
    info = {"archive": prefix.rstrip("/"), "code": code,
            "class": root.cls if isinstance(root, Opaque) else None}
    ck = classify(path, FORMAT_ID, root, globals=t.result.globals, kind="torchscript", info=info,
                  select_path=select, file_size=archive.size)
    if select is None and isinstance(root, Opaque):
        ck.weights = {name: t.renamed(name) for name, t in _walk(root, decls, "", set())}
        ck.weights_path = ""
        ck.other_tensors = {}
        ck.metadata = {}  # the tree is the module itself; its tensors are the weights
    ck.needs.append("a TorchScript program: torch.jit.load runs its code; modelport reads only "
                    "its weights")
    return ck


def read(path: str, options: Options) -> Checkpoint:
    return open(path, options.limits, select=options.select)


def _sniff(probe: Probe) -> bool:
    names = probe.zip_names
    return names is not None and torch_zip.archive_kind(names) == "torchscript"


FORMAT = Format("torchscript", "pytorch", _sniff, order=9, title="TorchScript archive",
                open=f"{__name__}:read", ranged=True, scan="modelport.scan.archives:scan_zip_file")
