"""GGUF (llama.cpp): a header of typed key/value pairs and tensor infos, then aligned tensor
data. The reader is ``reader.py``, the writer ``convert/gguf.py``; this registers the format
and is all the registry imports until a GGUF file is met."""

from __future__ import annotations

from ..base import Format, Probe, Writer

__all__ = ["FORMAT", "FORMAT_ID", "MAGIC"]

FORMAT_ID = "gguf"
MAGIC = b"GGUF"


def _sniff(probe: Probe) -> bool:
    return probe.head.startswith(MAGIC)


FORMAT = Format(
    FORMAT_ID, "llama.cpp", _sniff, order=25, title="GGUF (llama.cpp)", ranged=True,
    open=f"{__name__}.reader:read", scan="modelport.scan.templates:scan_gguf",
    writer=Writer("gguf", "modelport.convert.gguf:write_gguf", suffixes=(".gguf",),
                  holds=lambda d: d.ggml is not None, blocks=True, casts=("Q8_0",),
                  refuse_hint="GGUF holds ggml types only (F32 F16 BF16 F64 I8-I64 and blocks); "
                  "use --dtype F32", prepare="modelport.convert.gguf:prepare"),
    extras={"plan_from": "modelport.convert.gguf:plan_from"})
