"""ONNX models (``.onnx``): one ModelProto. The reader is ``reader.py``; this registers the
format and is all the registry imports until an ONNX file is met."""

from __future__ import annotations

from ..base import Format, Probe

__all__ = ["FORMAT", "FORMAT_ID"]

FORMAT_ID = "onnx"


def _sniff(probe: Probe) -> bool:
    # Asked late (order 70), for bytes no earlier format claimed: the reader's field-by-field
    # check is imported only then.
    from .reader import sniff

    return sniff(probe.head)


FORMAT = Format(FORMAT_ID, "exchange", _sniff, order=70, title="ONNX model",
                open=f"{__name__}.reader:read", scan="modelport.scan.archives:scan_onnx")
