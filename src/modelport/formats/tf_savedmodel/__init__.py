"""TensorFlow SavedModel folders, their ``saved_model.pb`` and TF1 ``.meta`` graphs. The
reader is ``reader.py``; this registers the formats and is all the registry imports until one
is met."""

from __future__ import annotations

from ..base import Format, Probe

__all__ = ["FORMATS"]


def _sniff_file(probe: Probe) -> bool:
    # schema version 1 (field 1, varint), then a MetaGraphDef (field 2, length-delimited) that
    # starts with its MetaInfoDef (field 1, length-delimited). ONNX's field 2 is a text
    # producer name, and its ir_version is never 1 for files written since 2017.
    head = probe.head
    if not head.startswith(b"\x08\x01\x12"):
        return False
    pos = 3
    while pos < len(head) and head[pos] & 0x80:
        pos += 1
    return pos + 1 < len(head) and head[pos + 1] == 0x0A


def _sniff_dir(probe: Probe) -> bool:
    return "saved_model.pb" in probe.listing or "saved_model.pbtxt" in probe.listing


def _sniff_meta(probe: Probe) -> bool:
    if probe.head[:1] != b"\x0a":  # a MetaGraphDef starts with its MetaInfoDef (field 1)
        return False
    from .reader import is_meta_graph

    return is_meta_graph(probe.head)


_UNREAD = "saved_model.pbtxt (text form) is not read; save the model in binary form"
FORMATS = (
    Format("tf-savedmodel", "tensorflow", _sniff_dir, order=81, folder=True,
           open=f"{__name__}.reader:open_folder", title="TensorFlow SavedModel folder",
           unsupported=_UNREAD),
    Format("tf-savedmodel-pb", "tensorflow", _sniff_file, order=65,
           open=f"{__name__}.reader:open_folder", scan="modelport.formats.tf_scan:scan_saved_model",
           title="TensorFlow SavedModel graph (saved_model.pb)"),
    Format("tf-metagraph", "tensorflow", _sniff_meta, order=66,
           open=f"{__name__}.reader:open_meta", scan="modelport.formats.tf_scan:scan_meta_graph",
           title="TensorFlow 1 meta graph (.meta)"),
)
