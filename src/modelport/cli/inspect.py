"""Show what a model file holds: format, kind, weights, other tensors, plain values, safety.

Nothing in the file is executed: pickles are interpreted symbolically and tensors are never
read (only headers and the pickle), so inspecting a multi-GB file reads well under a megabyte.

examples:
  modelport inspect model.pth
  modelport inspect ./bert-base --all          every tensor, no collapsing
  modelport inspect last.ckpt --json | jq .metadata.epoch
  modelport inspect a.pt b.safetensors ./repo   several at once, in order
  modelport inspect weights.bin --layout model.pth   a raw buffer, laid out as model.pth's weights
  modelport inspect ./train/model.ckpt --checksums   a TF checkpoint prefix, every CRC checked
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections import Counter
from typing import Any

from .. import open as open_checkpoint
from .. import sniff
from ..formats.safetensors import METADATA_FORMATS
from ..model import Checkpoint, TensorEntry
from ..recognize import Architecture
from . import human_bytes, plural

__all__ = ["add_arguments", "run", "report"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="model files or Hugging Face model folders (local, https://, hf://)")
    p.add_argument("--json", action="store_true", help="print one JSON object (for scripts); "
                   "with several paths, a list of them")
    p.add_argument("--all", action="store_true", help="list every tensor; do not collapse "
                   "repeated layers")
    p.add_argument("--layout", metavar="REF", help="PATH is a raw buffer (tensors end to end, "
                   "no header) laid out as REF says: a model file or a JSON [{name, dtype, shape}]")
    p.add_argument("--select", metavar="PATH", help="dotted path of the subtree holding the "
                   "weights (overrides the automatic choice), e.g. model_state_dict")
    verify = p.add_mutually_exclusive_group()
    verify.add_argument("--verify", action="store_true", help="verify the recognised "
                        "architecture by instantiating its class on torch's meta device "
                        "(imports torch and transformers: a few seconds; export always does)")
    verify.add_argument("--no-verify", action="store_true", help="recognise from names and "
                        "shapes only (the default; kept for scripts that pass it)")
    p.add_argument("--checksums", action="store_true", help="also check the checksums the "
                   "file stores for its tensor data (TensorFlow checkpoints' CRC-32C); reads "
                   "every tensor byte")


def _scan(path: str) -> dict[str, Any] | None:
    try:
        from ..scan import scan_file
    except ImportError:
        return None
    return scan_file(path).summary()


def _architecture(ck: Checkpoint, verify: bool = True) -> Architecture:
    from ..recognize import recognize

    return recognize(ck, verify=verify)


def report(ck: Checkpoint, safety: dict[str, Any] | None = None,
           arch: Architecture | None = None) -> dict[str, Any]:
    """The ``inspect --json`` object (DESIGN.md contract)."""
    dtypes: Counter[str] = Counter()
    for t in ck.weights.values():
        dtypes[t.dtype.name] += t.numel
    arch = arch or _architecture(ck)
    return {
        "path": ck.path,
        "format": ck.format,
        "kind": ck.kind,
        "file_size": ck.file_size,
        "parameters": ck.parameters,
        "tied": tied_weights(ck),  # names that share one tensor: count it once
        "dtypes": dict(dtypes.most_common()),
        "weights_path": ck.weights_path,
        "weights": [_tensor_json(t) for t in ck.weights.values()],
        "other_tensors": [_tensor_json(t) for t in ck.other_tensors.values()],
        "metadata": ck.metadata,
        "info": ck.info,
        "needs": ck.needs,
        "safety": safety,
        **usage(ck, arch),
        "architecture": arch.to_json(),
    }


def usage(ck: Checkpoint, arch: Architecture | None = None) -> dict[str, Any]:
    """What the file is good for (``can``), its LoRA adapter (``lora``), a folder's files."""
    from ..can import can
    from ..lora import describe

    adapter = describe(ck)
    known = arch.cls if arch is not None and arch.family is not None else None
    out: dict[str, Any] = {"can": can(ck, adapter, architecture=known)}
    if adapter is not None:
        out["lora"] = adapter
    if os.path.isdir(ck.path):  # a folder: every file's role, and what loading lacks
        from ..hfrepo_files import explain

        folder = explain(ck.path)
        out["files"] = folder.pop("files")
        out["folder"] = folder
    return out


def _tensor_json(t: TensorEntry) -> dict[str, Any]:
    return {"name": t.name, "dtype": t.dtype.name, "shape": list(t.shape), "nbytes": t.nbytes}


def run(args: argparse.Namespace) -> int:
    """Each path in turn, in the order given; one failing path does not stop the others (its
    error is printed where its report would be, and the exit code is 2)."""
    if len(args.paths) == 1:
        args.path = args.paths[0]
        return _one(args, None)
    from ..errors import ModelportError

    docs: list[dict[str, Any]] = []
    code = 0
    for i, path in enumerate(args.paths):
        args.path = path
        try:
            _one(args, docs)
        except ModelportError as exc:
            code = 2
            print(f"modelport inspect: error: {exc}", file=sys.stderr)
            if args.json:
                docs.append({"path": path, "error": str(exc)})
        if not args.json and i < len(args.paths) - 1:
            sys.stdout.write("\n")
    if args.json:
        json.dump(docs, sys.stdout, indent=1, default=str)
        print()
    return code


def _one(args: argparse.Namespace, docs: list[dict[str, Any]] | None) -> int:
    """Inspect ``args.path``; with ``docs``, the JSON report goes there instead of stdout."""
    fmt = "raw" if args.layout else sniff(args.path)
    if fmt == "raw":
        ck = open_checkpoint(args.path, select=args.select, layout=args.layout)
    elif fmt in METADATA_FORMATS:
        # A file modelport wrote with --full or --dedupe records its tree and tied names in
        # the safetensors metadata: show the checkpoint as it was, not as a flat dict.
        from ..convert.source import load

        ck = load(args.path, args.select)
    else:
        ck = open_checkpoint(args.path, select=args.select, format=fmt,
                             checksums=getattr(args, "checksums", False))
    remote = getattr(args, "_remote", None)
    safety: dict[str, Any] | None
    if remote is not None and args.path.startswith(remote.root):
        # A full scan reads every byte; inspect of a remote file reads headers only.
        safety = {"verdict": "not-scanned", "reason": "a remote file: `modelport scan` on it "
                  "fetches and judges every byte"}
    else:
        safety = _scan(args.path)
    # Off by default: importing torch and transformers costs seconds, and inspect's contract
    # (DESIGN.md) is to read a 2 GB file in about picklescan's time.
    arch = _architecture(ck, verify=args.verify)
    if args.json:
        doc = report(ck, safety, arch)
        if remote is not None:
            doc["remote"] = remote.to_json()
        if docs is not None:
            docs.append(doc)
            return 0
        json.dump(doc, sys.stdout, indent=1, default=str)
        print()
        return 0
    sys.stdout.write(_printable(render(ck, safety, expand=args.all, arch=arch)))
    return 0


def _printable(text: str) -> str:
    """Text stdout can take: names from a file may hold lone surrogates (pickle's BINUNICODE
    lets them through) or characters the terminal's encoding lacks, which a strict stdout
    refuses with a traceback."""
    enc = getattr(sys.stdout, "encoding", None) or "utf-8"
    try:
        return text.encode(enc, "backslashreplace").decode(enc)
    except LookupError:
        return text.encode("ascii", "backslashreplace").decode("ascii")


# -- the human view -----------------------------------------------------------------------------


def _count(n: int) -> str:
    for unit, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n:,} ({n / scale:.1f}{unit})"
    return f"{n:,}"


def _shape(t: TensorEntry) -> str:
    return f"{t.dtype.name:<5} [{', '.join(map(str, t.shape))}]"


_NUM = re.compile(r"\.(\d+)\.")


def _collapse(names: list[tuple[str, TensorEntry]]) -> list[str]:
    """Tensor lines, with runs of layers that look alike (`h.0.`, `h.1.`, ...) folded into one."""
    groups: dict[str, dict[int, list[tuple[str, TensorEntry]]]] = {}
    order: list[tuple[str, Any]] = []
    for name, t in names:
        m = _NUM.search(name)
        if m:
            key = name[: m.start()]
            if key not in groups:
                groups[key] = {}
                order.append(("group", key))
            groups[key].setdefault(int(m.group(1)), []).append((name[m.end():], t))
        else:
            order.append(("one", (name, t)))
    lines: list[str] = []
    for kind, item in order:
        if kind == "one":
            name, t = item
            lines.append(f"  {name:<48} {_shape(t)}")
            continue
        layers = groups[item]
        idx = sorted(layers)
        # Shards may store a layer's tensors in another order: compare layers as sets.
        sig = sorted((r, t.dtype.name, t.shape) for r, t in layers[idx[0]])
        same = all(sorted((r, t.dtype.name, t.shape) for r, t in layers[i]) == sig for i in idx)
        if same and len(idx) > 1:
            lines.append(f"  {item}.{{{idx[0]}..{idx[-1]}}}  ({len(idx)} alike layers, each:)")
            for rest, t in layers[idx[0]]:
                lines.append(f"      .{rest:<44} {_shape(t)}")
        else:
            for i in idx:
                for rest, t in layers[i]:
                    lines.append(f"  {f'{item}.{i}.{rest}':<48} {_shape(t)}")
    return lines


# Subtrees people look for first in a checkpoint's plain values.
_FIRST = ("hyper_parameters", "hparams", "config", "args", "cfg", "hyper_params")


def _leaves(meta: Any) -> int:
    if isinstance(meta, dict) and "__class__" not in meta:
        return sum(_leaves(v) for v in meta.values())
    return 1


def _line(key: str, value: Any) -> str:
    if isinstance(value, list) and len(value) > 8:  # token lists: 100K+ items
        head = json.dumps(value[:8], default=str)[:-1]
        return f"  {key} = {head[:100]}, ...]  ({len(value):,} items)"
    text = json.dumps(value, default=str)
    return f"  {key} = {text[:100] + ('...' if len(text) > 100 else '')}"


# Classes that are only a bag of attributes: shown as their attributes (args.lr = 0.1).
_BAGS = frozenset({"argparse.Namespace", "types.SimpleNamespace", "easydict.EasyDict",
                   "attrdict.AttrDict", "addict.addict.Dict", "ml_collections.ConfigDict"})


def _unwrap(v: Any) -> Any:
    if isinstance(v, dict) and v.get("__class__") in _BAGS and isinstance(v.get("state"), dict):
        return v["state"]
    return v


def _values(meta: Any, limit: int = 40) -> list[str]:
    """Plain values, most useful first: top-level scalars, then hyper-parameters and config,
    then the rest; a large subtree of bookkeeping (Lightning's loops) becomes one line."""
    if not isinstance(meta, dict):
        return [_line("value", meta)]
    meta = {k: _unwrap(v) for k, v in meta.items()}
    first = [(k, meta[k]) for k in _FIRST if isinstance(meta.get(k), dict)
             and "__class__" not in meta[k]]
    shown = {k for k, _ in first}
    flat = [(k, v) for k, v in meta.items()
            if k not in shown and (not isinstance(v, dict) or "__class__" in v)]
    rest = [(k, v) for k, v in meta.items()
            if isinstance(v, dict) and "__class__" not in v and k not in shown]
    out = [_line(str(k), v) for k, v in flat]

    def walk(prefix: str, tree: Any) -> None:
        if isinstance(tree, dict) and "__class__" not in tree and tree:
            for k, v in tree.items():
                walk(f"{prefix}.{k}", v)
        else:
            out.append(_line(prefix, tree))

    for k, v in first:
        walk(str(k), v)
    for k, v in rest:
        n = _leaves(v)
        if n > 8:
            out.append(f"  {k} = {{...}}  ({n} values; --json shows them)")
        else:
            walk(str(k), v)
    if len(out) > limit:
        out = out[:limit] + [f"  ... {len(out) - limit} more (--json shows them all)"]
    return out


def tied_weights(ck: Checkpoint) -> list[list[str]]:
    """Groups of weight names that are one tensor (same storage bytes, offset, shape, strides
    and dtype): tied weights, e.g. an embedding and the output head."""
    groups: dict[tuple, list[str]] = {}
    for name, t in ck.weights.items():
        key = (t.storage.identity, t.storage_offset, t.shape, t.strides or t.contiguous_strides,
               t.dtype.name)
        groups.setdefault(key, []).append(name)
    return [names for names in groups.values() if len(names) > 1]


def _parameters(ck: Checkpoint) -> str:
    """Parameters with a tied tensor counted once; the count with every name beside it."""
    tied = tied_weights(ck)
    line = f"{_count(ck.parameters)} in {plural(len(ck.weights), 'tensor')}"
    if not tied:
        return line
    extra = sum(ck.weights[n].numel for names in tied for n in names[1:])
    shown = "; ".join(" = ".join(names) for names in tied[:3]) + ("; ..." if len(tied) > 3 else "")
    return (f"{_count(ck.parameters - extra)} unique in {plural(len(ck.weights), 'tensor')} "
            f"({_count(ck.parameters)} counting every name; tied, one storage: {shown})")


def render(ck: Checkpoint, safety: dict[str, Any] | None, expand: bool = False,
           arch: Architecture | None = None) -> str:
    lines = [f"{ck.path}", f"  format      {ck.format}", f"  kind        {ck.kind}",
             f"  size        {human_bytes(ck.file_size, digits=1)}",
             f"  parameters  {_parameters(ck)}"]
    dt: Counter[str] = Counter()
    for t in ck.weights.values():
        dt[t.dtype.name] += t.nbytes
    total = sum(dt.values()) or 1
    if dt:
        shown = [(k, v) for k, v in dt.most_common() if round(100 * v / total) >= 1]
        rest = len(dt) - len(shown)  # shares that round to 0% say nothing; count them instead
        lines.append("  dtypes      " + ", ".join(f"{k} {v / total:.0%}" for k, v in shown)
                     + (f" (+{rest} more under 1%)" if rest else ""))
    if safety is not None:
        lines.append(f"  safety      {safety.get('verdict')}: {safety.get('reason', '')}")
    # Format-neutral: a reader puts {label: text or [lines]} in info["summary"] (a TF
    # checkpoint's layout, a SavedModel's signatures, a Keras config) and it is shown as is.
    for label, text in (ck.info.get("summary") or {}).items():
        rows = text if isinstance(text, list) else [text]
        for i, row in enumerate(rows[:12]):
            lines.append(f"  {label if i == 0 else '':<11} {row}")
        if len(rows) > 12:
            lines.append(f"  {'':<11} ... {len(rows) - 12} more (--json shows them all)")
    if arch is not None and (arch.family or arch.nearest):
        lines.append(f"  architecture {arch.describe()}")
        if arch.note:
            lines.append(f"               ({arch.note})")
    if "graph" in ck.info:
        g = ck.info["graph"]
        ops = ", ".join(f"{k} {v}" for k, v in list(g.get("op_counts", {}).items())[:8])
        opsets = ", ".join(f"{d} {v}" for d, v in (g.get("opset_import") or {}).items())
        lines.append(f"  graph       {g.get('node_count')} nodes ({ops}); opset {opsets}; "
                     f"producer {g.get('producer_name') or '?'}")
        mapped, unmapped = g.get("state_dict_names") or {}, g.get("unmapped_names") or []
        if g.get("constant_count") or mapped or unmapped:
            first = next(iter(mapped.items()), None)
            example = f" ({first[0]} -> {first[1]['name']}{' transposed' * first[1]['transposed']})" \
                if first else ""
            lines.append(f"  tensors     {g.get('initializer_count')} initializers, "
                         f"{g.get('constant_count', 0)} Constant nodes; {len(mapped)} renamed by "
                         f"the exporter mapped to layer names{example}, {len(unmapped)} unmapped")
        for io in ("inputs", "outputs"):
            specs = ", ".join(
                f"{t.get('name')} {t.get('dtype')}"
                f"[{', '.join('?' if d is None else str(d) for d in t.get('shape') or [])}]"
                for t in g.get(io, [])[:6])
            lines.append(f"  {io:<11} {specs or '(none)'}")
        data = list(g.get("external_data") or [])
        if data:  # the files that must travel with the .onnx
            lines.append(f"  data        {', '.join(data[:4])}"
                         + (f" and {len(data) - 4} more" if len(data) > 4 else "")
                         + " (external data: keep next to the .onnx)")
    where = f" (under {ck.weights_path!r})" if ck.weights_path else ""
    lines.append(f"\nweights{where}:")
    names = list(ck.weights.items())
    body = ([f"  {n:<48} {_shape(t)}" for n, t in names] if expand else _collapse(names))
    lines.extend(body or ["  (none)"])
    if ck.other_tensors:
        groups: Counter[str] = Counter()
        nbytes: Counter[str] = Counter()
        for name, t in ck.other_tensors.items():
            # the first two parts of the name, whichever separator it uses (TF names use /)
            m = re.match(r"[^./]+(?:[./][^./]+)?", name)
            key = m.group(0) if m else name
            groups[key] += 1
            nbytes[key] += t.nbytes
        lines.append("\nother tensors:")
        for key, n in groups.most_common(12):
            lines.append(f"  {key:<48} {n} tensors, {human_bytes(nbytes[key], digits=1)}")
    vals = _values(ck.metadata)
    if vals:
        lines.append("\nvalues:")
        lines.extend(vals)
    for need in ck.needs:
        lines.append(f"\nnote: {need}")
    from ..can import render_usage

    lines += render_usage(usage(ck, arch))
    return "\n".join(lines) + "\n"
