"""LoRA adapters recognised by their tensor names: PEFT's and the flat files image tools share.

PEFT (``peft.PeftModel.save_pretrained``): a folder with ``adapter_config.json`` and
``adapter_model.safetensors`` (or ``adapter_model.bin``, a torch.save zip)::

    base_model.model.<module>.lora_A.weight          [r, in]      (Linear)
    base_model.model.<module>.lora_B.weight          [out, r]
    base_model.model.<module>.lora_embedding_A       [r, num]     (Embedding)
    base_model.model.<module>.lora_embedding_B       [dim, r]
    base_model.model.<module>.lora_magnitude_vector  [out]        (DoRA)
    base_model.model.<module>.bias / modules_to_save copies       (replace the base's tensor)

    adapter_config.json: r, lora_alpha, rank_pattern, alpha_pattern, use_rslora, use_dora,
    fan_in_fan_out, target_modules, base_model_name_or_path, peft_type, task_type

``scaling = lora_alpha / r`` (``lora_alpha / sqrt(r)`` with ``use_rslora``), r and alpha taken
from ``rank_pattern``/``alpha_pattern`` when a pattern matches the module (peft
``tuners_utils.get_pattern_key``: the pattern matched against the end of the module's name).

kohya / sd-scripts (Stable Diffusion LoRA files, one flat safetensors)::

    lora_unet_<module_with_underscores>.lora_down.weight   [r, in] (or [r, in, kh, kw])
    lora_unet_<module_with_underscores>.lora_up.weight     [out, r]
    lora_unet_<module_with_underscores>.alpha              scalar: scaling = alpha / r
    lora_te_... / lora_te1_... / lora_te2_...              the text encoder(s)

diffusers' own LoRA files use ``<module>.lora.down.weight`` / ``.lora.up.weight`` (no alpha:
scaling 1), recognised as kohya-style pairs too.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ..model import TensorEntry

__all__ = ["LoraPair", "Adapter", "find_pairs", "summary", "pattern_value"]

PEFT_PREFIX = "base_model.model."
# (A suffix, B suffix, style): A is the down projection [r, in], B the up projection [out, r].
_SUFFIXES = (
    (".lora_A.weight", ".lora_B.weight", "peft"),
    (".lora_embedding_A", ".lora_embedding_B", "peft"),
    (".lora_down.weight", ".lora_up.weight", "kohya"),
    (".lora.down.weight", ".lora.up.weight", "kohya"),
)
_ADAPTER_NAME = re.compile(r"\.(lora_A|lora_B|lora_embedding_A|lora_embedding_B|"
                           r"lora_magnitude_vector)\.(?!weight$)[A-Za-z_][\w-]*(\.weight)?$")
_KOHYA_PREFIX = re.compile(r"^lora_(unet|te\d?|transformer)_")


@dataclass(frozen=True)
class LoraPair:
    """One adapted module: A [r, in...], B [out, r], its scale, and where it came from."""

    module: str  # the module's name, without PEFT's base_model.model. prefix
    a: TensorEntry
    b: TensorEntry
    style: str  # peft | kohya
    embedding: bool = False
    alpha_entry: TensorEntry | None = None  # kohya's per-module alpha scalar
    magnitude: TensorEntry | None = None  # DoRA's magnitude vector

    @property
    def rank(self) -> int:
        return self.a.shape[0] if self.a.shape else 0


@dataclass
class Adapter:
    """Every LoRA pair of a file or folder, with its config (``{}`` for flat files)."""

    pairs: list[LoraPair]
    config: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, TensorEntry] = field(default_factory=dict)  # other tensors (bias, copies)
    metadata: dict[str, str] = field(default_factory=dict)  # safetensors __metadata__

    @property
    def style(self) -> str:
        return self.pairs[0].style if self.pairs else "peft"

    def alpha(self, pair: LoraPair, alpha_value: float | None = None) -> float:
        """The module's alpha: kohya's scalar, PEFT's alpha_pattern or lora_alpha; else r."""
        if alpha_value is not None:
            return alpha_value
        if pair.style == "peft":
            pat = self.config.get("alpha_pattern") or {}
            hit = pattern_value(pat, pair.module)
            if hit is not None:
                return float(hit)
            alpha = self.config.get("lora_alpha")
            return float(alpha) if isinstance(alpha, (int, float)) else float(pair.rank)
        return float(pair.rank)  # diffusers pairs without alpha: scale 1

    def scale(self, pair: LoraPair, alpha_value: float | None = None) -> float:
        r = pair.rank
        alpha = self.alpha(pair, alpha_value)
        if self.config.get("use_rslora"):
            return alpha / math.sqrt(r)
        return alpha / r


def pattern_value(patterns: Any, module: str) -> Any:
    """peft's ``get_pattern_key``: a key equal to the module's name, or matching its end."""
    if not isinstance(patterns, dict) or not patterns:
        return None
    if module in patterns:
        return patterns[module]
    for key, value in patterns.items():
        try:
            if re.match(rf"(.*\.)?({key})$", module):
                return value
        except re.error:
            continue
    return None


def _strip(name: str) -> str:
    """PEFT names as saved: no ``base_model.model.`` prefix, no adapter name."""
    name = _ADAPTER_NAME.sub(lambda m: f".{m.group(1)}{m.group(2) or ''}", name)
    return name


def find_pairs(tensors: dict[str, TensorEntry]) -> tuple[list[LoraPair], dict[str, TensorEntry]]:
    """LoRA pairs among ``tensors`` (in their order), and the tensors that are not part of one."""
    names = {_strip(n): n for n in tensors}
    used: set[str] = set()
    pairs: list[LoraPair] = []
    for clean, raw in names.items():
        for sa, sb, style in _SUFFIXES:
            if not clean.endswith(sa):
                continue
            base = clean[: -len(sa)]
            braw = names.get(base + sb)
            if braw is None:
                continue
            module = base[len(PEFT_PREFIX):] if base.startswith(PEFT_PREFIX) else base
            alpha = names.get(base + ".alpha")
            mag = names.get(base + ".lora_magnitude_vector") or names.get(
                base + ".lora_magnitude_vector.weight")
            pairs.append(LoraPair(module, tensors[raw], tensors[braw], style,
                                  embedding="embedding" in sa,
                                  alpha_entry=tensors[alpha] if alpha else None,
                                  magnitude=tensors[mag] if mag else None))
            used.update(x for x in (raw, braw, alpha, mag) if x)
            break
    rest = {n: t for n, t in tensors.items() if n not in used}
    return pairs, rest


def _alpha_value(entry: TensorEntry | None) -> float | None:
    if entry is None or entry.numel != 1:
        return None
    from ..tensors import to_numpy

    try:
        return float(to_numpy(entry).reshape(-1)[0])
    except Exception:  # noqa: BLE001 - an unreadable scalar is reported as unknown
        return None


def _target_name(module: str, style: str) -> str:
    if style == "kohya":  # lora_unet_down_blocks_0_attentions_0_proj_in -> proj_in
        return re.split(r"_\d+_", _KOHYA_PREFIX.sub("", module))[-1]
    return module.rsplit(".", 1)[-1]


def summary(adapter: Adapter) -> dict[str, Any]:
    """What ``inspect`` shows: style, rank, alpha, targets, base model, parameter count."""
    cfg = adapter.config
    ranks: Counter[int] = Counter(p.rank for p in adapter.pairs)
    alphas: Counter[float] = Counter()
    for p in adapter.pairs:
        alphas[adapter.alpha(p, _alpha_value(p.alpha_entry))] += 1
    targets = sorted({_target_name(p.module, p.style) for p in adapter.pairs})
    if isinstance(cfg.get("target_modules"), (list, str)):
        configured: Any = cfg["target_modules"]
    else:
        configured = None
    base = cfg.get("base_model_name_or_path") or adapter.metadata.get("ss_sd_model_name") \
        or adapter.metadata.get("ss_base_model_version")
    params = sum(p.a.numel + p.b.numel + (p.magnitude.numel if p.magnitude else 0)
                 for p in adapter.pairs)
    out: dict[str, Any] = {
        "style": adapter.style,
        "peft_type": cfg.get("peft_type") or ("LORA" if adapter.pairs else None),
        "rank": ranks.most_common(1)[0][0] if ranks else None,
        "ranks": {str(r): n for r, n in sorted(ranks.items())} if len(ranks) > 1 else None,
        "alpha": alphas.most_common(1)[0][0] if alphas else None,
        "alphas": {str(a): n for a, n in sorted(alphas.items())} if len(alphas) > 1 else None,
        "use_rslora": bool(cfg.get("use_rslora")),
        "use_dora": bool(cfg.get("use_dora")) or any(p.magnitude for p in adapter.pairs),
        "fan_in_fan_out": bool(cfg.get("fan_in_fan_out")),
        "modules": len(adapter.pairs),
        "target_modules": configured if configured is not None else targets,
        "base_model": base,
        "task_type": cfg.get("task_type"),
        "parameters": params,
        "other_tensors": sorted(adapter.extra)[:20],
    }
    return {k: v for k, v in out.items() if v is not None}
