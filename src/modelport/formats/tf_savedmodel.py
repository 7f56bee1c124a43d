"""TensorFlow SavedModel: a folder with saved_model.pb (or the .pb itself); reading and
scanning land with issue [2/7].

    saved_model.pb   SavedModel proto: 1 saved_model_schema_version (varint), 2 meta_graphs
    variables/       a TF checkpoint (variables.index, variables.data-*)
    assets/          files the graph reads
"""

from __future__ import annotations

from .base import Format, Probe


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


_WHY = "SavedModels are recognised but not read or analysed yet (their graphs can read and " \
       "write files)"
FORMATS = (
    Format("tf-savedmodel", "tensorflow", _sniff_dir, order=81, folder=True,
           title="TensorFlow SavedModel folder", unsupported=_WHY),
    Format("tf-savedmodel-pb", "tensorflow", _sniff_file, order=65,
           title="TensorFlow SavedModel graph (saved_model.pb)", unsupported=_WHY),
)
