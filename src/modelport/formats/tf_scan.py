"""The scanner's hooks for TensorFlow files: checkpoint indexes and graphs (SavedModel, .meta).

    checkpoint .index   the table and every entry decoded as the reader does (block CRCs,
                        record framing, key order); every entry's bytes must lie inside its data
                        shard, every shard must exist; slices must have entries. A checkpoint
                        holds no code: what is wrong with one is an error (not analysable),
                        never "clean".
    graphs              see ``scan_graph``: every node of the graph and of every function in its
                        library is judged against ``tf_ops`` (an allowlist with a reason per op)
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from ..errors import ModelportError
from ..scan.context import Scan
from ..scan.findings import Severity

if TYPE_CHECKING:
    from .tf_savedmodel.reader import GraphNode, MetaGraph

__all__ = ["scan_checkpoint", "scan_saved_model", "scan_meta_graph", "scan_graph"]


def scan_checkpoint(scan: Scan, path: str) -> None:
    """An ``.index`` file: decoded like the reader, its shards and offsets checked."""
    from .tf_checkpoint.reader import _Reader, read_bundle

    try:
        bundle = read_bundle(path, scan.limits)
    except ModelportError as exc:
        scan.error(str(exc.located(path=path)))
        return
    scan.note_scanned(f"checkpoint index ({len(bundle.entries)} entries, "
                      f"{bundle.num_shards} shard(s))")
    reader = _Reader(bundle, scan.limits)
    missing: set[int] = set()
    for e in list(bundle.entries.values()) + list(bundle.slice_keys.values()):
        if e.slices or e.shard in missing:
            continue
        if not os.path.exists(bundle.shard_path(e.shard)) and 0 <= e.shard < bundle.num_shards:
            missing.add(e.shard)
            scan.error(f"{path}: data shard {os.path.basename(bundle.shard_path(e.shard))} is "
                       "missing (its tensors were not checked)")
            continue
        try:
            reader.shard(e)
        except ModelportError as exc:
            scan.add(Severity.LOW, "tf-index-bounds", exc.message, subject=e.key,
                     offset=e.index_offset, why="an entry that points outside its data shard: "
                     "the checkpoint is truncated or was edited")
            scan.error(str(exc.located(path=path)))
    if scan.report.errors:
        return
    # Everything else the reader checks (shapes against sizes, slices, string tensors, the
    # object graph): a checkpoint the reader refuses is not analysed, so never clean.
    from .base import Options
    from .tf_checkpoint.reader import open_bundle

    try:
        open_bundle(path, path, Options(limits=scan.limits))
    except ModelportError as exc:
        scan.error(str(exc.located(path=path)))


# -- graphs ------------------------------------------------------------------------------------

_PLACEHOLDERS = frozenset(["Placeholder", "PlaceholderV2", "PlaceholderWithDefault", "_Arg"])


def _source(inp: str) -> str | None:
    """The node (or function argument) a data input comes from; None for control inputs."""
    if inp.startswith("^"):
        return None
    return inp.split(":", 1)[0]


def _tainted(nodes: list[GraphNode], args: set[str]) -> set[str]:
    """Names whose value depends on a function argument or a placeholder (what a caller
    passes), propagated forward along data edges."""
    users: dict[str, list[str]] = {}
    for n in nodes:
        for inp in n.inputs:
            src = _source(inp)
            if src is not None:
                users.setdefault(src, []).append(n.name)
    todo = list(args) + [n.name for n in nodes if n.op in _PLACEHOLDERS]
    seen = set(todo)
    while todo:
        for user in users.get(todo.pop(), ()):
            if user not in seen:
                seen.add(user)
                todo.append(user)
    return seen


def _constants(node: GraphNode, by_name: dict[str, GraphNode], limit: int = 8) -> list[str]:
    """String constants that flow into ``node`` (the paths a file op would use)."""
    out: list[str] = []
    seen: set[str] = set()
    todo = [s for s in map(_source, node.inputs) if s]
    while todo and len(seen) < 10_000 and len(out) < limit:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        n = by_name.get(name)
        if n is None:
            continue
        if n.op == "Const":
            out += [s for s in n.strings if s][: limit - len(out)]
        todo += [s for s in map(_source, n.inputs) if s]
    return out


# The checkpoint ops a Saver runs with the path its caller feeds into the filename tensor.
_SAVER_OPS = frozenset(["Save", "SaveV2", "SaveSlices", "Restore", "RestoreV2", "RestoreSlice",
                        "MergeV2Checkpoints", "ShardedFilename", "ShardedFilespec",
                        "DTensorRestoreV2"])


def _judge(scan: Scan, where: str, nodes: list[GraphNode], args: set[str],
           library: set[str], saver: set[str] | frozenset[str] = frozenset()) -> None:
    from ..scan import tf_ops
    from .tf_opset import OPS

    by_name = {n.name: n for n in nodes}
    tainted = _tainted(nodes, args)
    # The SaverDef names its filename tensor, but the file says so: an attacker can name its
    # own path constant. So only the Saver's own checkpoint ops may take a path from it; any
    # other op (a table initializer, a dataset cache) reading it reads a fixed path.
    from_saver = _tainted(nodes, set(saver)) if saver else set()
    for n in nodes:
        op = n.op
        consts = _constants(n, by_name) if op in tf_ops.FLAGGED or op in tf_ops.PATH_OPS \
            or op == "PrintV2" else []
        paths = f" (constants: {', '.join(map(repr, consts))})" if consts else ""
        if op in tf_ops.FLAGGED:
            sev, (why, rule) = tf_ops.FLAGGED[op]
            scan.add(sev, rule, f"{op} node {n.name!r} in {where}{paths}", subject=op,
                     member=where, offset=n.offset, why=why)
        elif op in tf_ops.PATH_OPS:
            for i in tf_ops.PATH_OPS[op]:
                src = _source(n.inputs[i]) if i < len(n.inputs) else None
                if src is not None and src not in tainted and not (
                        op in _SAVER_OPS and src in from_saver):
                    scan.add(Severity.HIGH, "tf-constant-path",
                             f"{op} node {n.name!r} in {where} uses a path fixed in the graph"
                             f"{paths}", subject=op, member=where, offset=n.offset,
                             why=tf_ops.CONSTANT_PATH_WHY)
                    break
        elif op == "PrintV2":
            stream = n.attrs.get("output_stream", "stderr")
            if stream not in tf_ops.PRINT_STREAMS:
                why, rule = tf_ops.FILE_IO
                scan.add(Severity.HIGH, rule, f"PrintV2 node {n.name!r} in {where} prints to "
                         f"{stream!r}", subject=op, member=where, offset=n.offset, why=why)
        elif op not in OPS and op not in library:
            scan.add(Severity.MEDIUM, "tf-custom-op", f"custom op {op!r} (node {n.name!r} in "
                     f"{where})", subject=op, member=where, offset=n.offset,
                     why=tf_ops.CUSTOM_WHY)
        for fn in n.funcs:
            if fn and fn not in library and fn not in OPS:
                scan.add(Severity.MEDIUM, "tf-missing-function",
                         f"node {n.name!r} in {where} calls function {fn!r}, which the graph's "
                         "library does not define", subject=fn, member=where, offset=n.offset,
                         why="the loader resolves it elsewhere (a registered op or function "
                         "of the loading process): what runs is not in the file")


def scan_graph(scan: Scan, g: MetaGraph, label: str) -> None:
    """Every node of a meta graph and of every function in its library."""
    library = {f.name for f in g.functions}
    # The Saver's filename tensor is what the loader feeds the checkpoint path into: a path
    # that flows from it is the caller's, even when the node is a Const (TF1's save/Const).
    _judge(scan, "graph", g.nodes, set(), library, saver={g.saver_filename} - {""})
    for f in g.functions:
        _judge(scan, f"function {f.name}", f.nodes, set(f.args), library)
    nodes = len(g.nodes) + sum(len(f.nodes) for f in g.functions)
    scan.note_scanned(f"{label}: {nodes} nodes in the graph and {len(g.functions)} functions")


def scan_saved_model(scan: Scan, path: str) -> None:
    from .tf_savedmodel.reader import read_saved_model

    try:
        _, graphs = read_saved_model(path, scan.limits)
    except ModelportError as exc:
        scan.error(str(exc.located(path=path)))
        return
    for i, g in enumerate(graphs):
        scan_graph(scan, g, f"meta graph {i} ({', '.join(g.tags) or 'no tags'})")


def scan_meta_graph(scan: Scan, path: str) -> None:
    from .tf_savedmodel.reader import read_meta_graph_file

    try:
        g = read_meta_graph_file(path, scan.limits)
    except ModelportError as exc:
        scan.error(str(exc.located(path=path)))
        return
    scan_graph(scan, g, "meta graph")
