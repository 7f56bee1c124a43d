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

from ..errors import ModelportError
from ..scan.context import Scan
from ..scan.findings import Severity

__all__ = ["scan_checkpoint"]


def scan_checkpoint(scan: Scan, path: str) -> None:
    """An ``.index`` file: decoded like the reader, its shards and offsets checked."""
    from .tf_checkpoint import _Reader, read_bundle

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
