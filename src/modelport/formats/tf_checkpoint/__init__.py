"""TensorFlow checkpoints: a bundle's ``.index`` (a LevelDB table of BundleEntryProtos) and its
``.data-*`` shards, named by their prefix, or the folder that holds them. The reader is
``reader.py``; this registers the formats and is all the registry imports until a checkpoint
is met."""

from __future__ import annotations

import os

from ..base import Format, Probe

__all__ = ["FORMATS", "FORMAT_ID", "TABLE_MAGIC", "resolve_path"]

FORMAT_ID = "tf-checkpoint"
# An index is a LevelDB table: its 48-byte footer ends with this magic (containers/sstable.py
# reads the table; its MAGIC is this value).
TABLE_MAGIC = (0xDB4775248B80FB57).to_bytes(8, "little")


def resolve_path(path: str) -> str | None:
    """A prefix (``model.ckpt``, no such file) -> its ``.index`` file, if there is one."""
    index = path + ".index"
    return index if not os.path.exists(path) and os.path.isfile(index) else None


def _starts_with_header(head: bytes) -> bool:
    """The first record of every bundle index: key "" (shared 0, non-shared 0), then a
    BundleHeaderProto made only of its own fields, with a version. Recognising it claims an
    index whose end (and magic) was cut off, so that it is reported as a broken checkpoint
    instead of unknown bytes."""
    if len(head) < 8 or head[:2] != b"\x00\x00" or head[2] >= 0x80 or head[3] != 0x08:
        return False
    value = head[3:3 + head[2]]
    if len(value) != head[2]:
        return False
    from ...containers.protobuf import LEN, iter_fields
    from ...errors import ModelportError

    try:
        fields = {f.number: f for f in iter_fields(value)}
    except ModelportError:
        return False
    return 3 in fields and set(fields) <= {1, 2, 3} and fields[3].wire == LEN


def _sniff(probe: Probe) -> bool:
    return (probe.size >= 48 and probe.tail.endswith(TABLE_MAGIC)) or \
        _starts_with_header(probe.head)


def _sniff_dir(probe: Probe) -> bool:
    names = probe.listing
    if not any(n.endswith(".index") for n in names):
        return False
    return "checkpoint" in names or any(".data-00000-of-" in n for n in names)


FORMATS = (
    Format(FORMAT_ID, "tensorflow", _sniff, order=26, open=f"{__name__}.reader:open",
           scan="modelport.formats.tf_scan:scan_checkpoint",
           resolve_path=resolve_path, title="TensorFlow checkpoint index"),
    Format("tf-checkpoint-dir", "tensorflow", _sniff_dir, order=80, folder=True,
           open=f"{__name__}.reader:open", title="TensorFlow checkpoint folder"),
)
