"""TensorFlow Lite models (``.tflite``): one FlatBuffer with the identifier ``TFL3``. The reader
and its scan hook are ``reader.py``; this registers the format and is all the registry imports
until a TFLite file is met."""

from __future__ import annotations

from ..base import Format, Probe

__all__ = ["FORMAT", "FORMAT_ID", "IDENTIFIER"]

FORMAT_ID = "tflite"
IDENTIFIER = b"TFL3"  # the FlatBuffer file identifier, bytes 4-8


def _sniff(probe: Probe) -> bool:
    return probe.head[4:8] == IDENTIFIER


FORMAT = Format(FORMAT_ID, "tensorflow", _sniff, order=28, title="TensorFlow Lite model",
                open=f"{__name__}.reader:read", scan=f"{__name__}.reader:scan")
