"""LoRA adapters: recognised (``adapter``), described for ``inspect``, merged into their base
(``merge``) without loading either into a framework.

    >>> from modelport import lora
    >>> ad = lora.read("adapter/")            # a PEFT folder, or a flat LoRA safetensors file
    >>> lora.summary(ad)["rank"]
    >>> lora.merge("base/", "adapter/", "merged/")
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from .adapter import Adapter, LoraPair, find_pairs, pattern_value, summary

if TYPE_CHECKING:
    from ..model import Checkpoint

__all__ = ["Adapter", "LoraPair", "find_pairs", "pattern_value", "summary", "read", "adapter_of",
           "from_checkpoint", "describe", "merge"]


def from_checkpoint(ck: Checkpoint) -> Adapter | None:
    """The LoRA adapter a checkpoint holds, or None when its weights are no LoRA pairs."""
    pairs, rest = find_pairs(ck.weights)
    if not pairs:
        return None
    cfg = ck.info.get("adapter_config") if isinstance(ck.info.get("adapter_config"), dict) else {}
    meta = ck.info.get("metadata") if isinstance(ck.info.get("metadata"), dict) else {}
    return Adapter(pairs, dict(cfg or {}), rest, {str(k): str(v) for k, v in (meta or {}).items()})


def describe(ck: Checkpoint) -> dict[str, Any] | None:
    """``inspect``'s ``lora`` object: rank, alpha, targets, base model, parameters."""
    ad = from_checkpoint(ck)
    return summary(ad) if ad is not None else None


def read(path: str | os.PathLike[str]) -> Adapter:
    """A PEFT adapter folder or a flat LoRA file; InputError when it holds no LoRA pairs."""
    from .. import open as open_checkpoint

    path = os.fspath(path)
    return adapter_of(open_checkpoint(path), path)


def adapter_of(ck: Checkpoint, path: str) -> Adapter:
    """The adapter ``ck`` (read from ``path``) holds; InputError when it holds no LoRA pairs."""
    from ..errors import InputError

    ad = from_checkpoint(ck)
    if ad is None:
        raise InputError(f"no LoRA pairs (lora_A/lora_B or lora_down/lora_up tensors) in this "
                         f"{ck.format} file", path=path,
                         hint="ADAPTER is a PEFT folder (adapter_config.json + adapter_model) "
                         "or a LoRA safetensors file")
    return ad


def merge(*args: Any, **kwargs: Any) -> Any:
    """``merge(base, adapter, out, ...)``: see ``modelport.lora.merge.merge_lora``."""
    from .merge import merge_lora

    return merge_lora(*args, **kwargs)
