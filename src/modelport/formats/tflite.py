"""TensorFlow Lite flatbuffers: "TFL3" file identifier at bytes 4..8; read and scanned with
issue [2/7]."""

from __future__ import annotations

from .base import Format, Probe


def _sniff(probe: Probe) -> bool:
    return probe.head[4:8] == b"TFL3"


FORMAT = Format("tflite", "tensorflow", _sniff, order=28, title="TensorFlow Lite model",
                unsupported="TFLite files are recognised but not read or analysed yet (custom "
                "and Flex ops run native code)")
