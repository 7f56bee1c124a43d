"""GGUF (llama.cpp): recognised by its magic; reading and scanning land with issue [3/7].

    "GGUF" u32 version, u64 tensor_count, u64 kv_count, metadata kv, tensor infos, data
"""

from __future__ import annotations

from .base import Format, Probe

MAGIC = b"GGUF"


def _sniff(probe: Probe) -> bool:
    return probe.head.startswith(MAGIC)


FORMAT = Format("gguf", "llama.cpp", _sniff, order=25, title="GGUF (llama.cpp)",
                unsupported="GGUF is recognised but not read or analysed yet (its Jinja chat "
                "template is code a front-end renders)")
