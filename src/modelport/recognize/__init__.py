"""Which architecture a set of weights belongs to, from names and shapes only (no bytes read).

    >>> arch = modelport.recognize.recognize(modelport.open("pytorch_model.bin"))
    >>> arch.family, arch.cls, arch.config["num_hidden_layers"].value, arch.verified

Steps, all data-driven by ``rules.FAMILIES``:

1. Names are normalised: ``module.`` (DataParallel/DDP) and ``_orig_mod.`` (torch.compile) are
   stripped from each name; a ``{'state_dict': ...}`` wrapper was already unwrapped by
   ``classify``. Any other prefix shared by the weights (a Lightning ``model.``) is found by
   locating the family's anchor key.
2. Every (family, class) whose identifying keys are present is a candidate; candidates are
   ranked by how much of the file they explain (identifying keys, head keys, no outer prefix).
3. The config follows from the shapes by the family's rules, each field marked exact, derived
   or assumed.
4. Verified, not guessed: the class is instantiated on torch's ``meta`` device through
   transformers (no memory, no weights) and its state_dict must match every key and shape of
   the file; tied copies (an LM head tied to the embeddings) may be absent, and buffers older
   transformers versions saved may be present. Look-alikes that verify too (LLaMA and
   Mistral, BERT and RoBERTa) are the ``candidates``. Nothing verifies: the answer is unknown,
   with the nearest candidate and what did not match.

Without torch and transformers the answer comes from the rules alone, ``verified: false``.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..model import Checkpoint, TensorEntry
from .rules import FAMILIES, LEGACY_BUFFERS, Family, Shapes, Variant

__all__ = ["recognize", "Architecture", "Setting", "WRAPPERS", "normalise", "meta_state",
           "transformers_config"]

# Prefixes wrappers put on every name: DataParallel/DDP's module, torch.compile's _orig_mod.
WRAPPERS = ("module.", "_orig_mod.")
_MAX_MISMATCHES = 20
_MAX_VERIFY = 8  # meta instantiations per file (a 7B LLaMA takes ~0.2 s each)


@dataclass(frozen=True)
class Setting:
    value: Any
    how: str  # exact | derived | assumed

    def to_json(self) -> dict[str, Any]:
        return {"value": self.value, "how": self.how}


@dataclass
class Match:
    """One (family, class) that fits the file's keys, with where its names start."""

    family: Family
    variant: Variant
    outer: str  # prefix on the file's names in front of the class's own names
    root: dict[str, tuple[int, ...]]  # names relative to the class
    source: dict[str, str]  # the file's (normalised) name of each root name
    rank: tuple[int, ...]
    config: dict[str, Setting] = field(default_factory=dict)
    mismatches: list[dict[str, Any]] = field(default_factory=list)
    verified: bool | None = None

    @property
    def label(self) -> dict[str, str]:
        return {"family": self.family.name, "class": self.variant.cls}


@dataclass
class Architecture:
    """The answer: ``family`` None means unknown (see ``nearest`` and ``mismatches``)."""

    family: str | None
    cls: str | None
    candidates: list[str]
    config: dict[str, Setting]
    verified: bool
    mismatches: list[dict[str, Any]]
    nearest: dict[str, str] | None = None
    model_type: str | None = None
    task: str | None = None
    inputs: str | None = None
    prefix: str = ""  # outer prefix stripped from the file's names (after wrappers)
    init: dict[str, Any] = field(default_factory=dict)  # constructor arguments, not config
    note: str = ""
    names: dict[str, str] = field(default_factory=dict)  # file name -> the class's name

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "family": self.family, "class": self.cls, "candidates": self.candidates,
            "config": {k: v.to_json() for k, v in self.config.items()},
            "verified": self.verified, "mismatches": self.mismatches,
        }
        if self.family is None:
            out["nearest"] = self.nearest
        else:
            out.update(model_type=self.model_type, task=self.task, prefix=self.prefix)
        if self.note:
            out["note"] = self.note
        return out

    def config_values(self) -> dict[str, Any]:
        """Config fields for ``transformers.AutoConfig.for_model`` (constructor args left out)."""
        return {k: s.value for k, s in self.config.items() if k not in self.init}

    def describe(self) -> str:
        """One line for ``inspect``."""
        if self.family is None:
            if not self.nearest:
                return "unknown (no known family's keys)"
            first = "; ".join(_mismatch_text(m) for m in self.mismatches[:3])
            more = len(self.mismatches) - 3
            return (f"unknown: nearest {self.nearest['class']}, but {first}"
                    + (f" (+{more} more)" if more > 0 else ""))
        main = ("num_hidden_layers", "n_layer", "num_layers", "encoder_layers", "hidden_size",
                "n_embd", "d_model", "hidden_sizes", "num_attention_heads", "n_head",
                "num_heads", "num_key_value_heads", "vocab_size")
        fields = ", ".join(f"{k}={self.config[k].value}" for k in main if k in self.config)
        others = [c for c in self.candidates if c != self.cls]
        alike = f" (keys alike: {', '.join(others)})" if others else ""
        check = "verified on the meta device" if self.verified else "NOT verified"
        return f"{self.cls}{alike}; {fields}; {check}"


def _mismatch_text(m: dict[str, Any]) -> str:
    if m.get("expected") is None:
        return f"{m['name']} {m.get('got')} is not in the class"
    if m.get("got") is None:
        return f"{m['name']} {m['expected']} is missing"
    return f"{m['name']} is {m['got']}, the class has {m['expected']}"


def normalise(names: Sequence[str]) -> dict[str, str]:
    """File name -> the name without wrapper prefixes (kept as is if stripping collides)."""
    out: dict[str, str] = {}
    for n in names:
        s = n
        while s.startswith(WRAPPERS):
            s = s.split(".", 1)[1]
        out[n] = s
    stripped = list(out.values())
    if len(set(stripped)) != len(stripped):
        return {n: n for n in names}  # "module.x" and "x" both there: the prefix is real
    return out


def _shapes(source: Checkpoint | Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    weights = source.weights if isinstance(source, Checkpoint) else source
    out = {}
    for name, t in weights.items():
        out[name] = tuple(t.shape) if isinstance(t, TensorEntry) else tuple(t)
    if isinstance(source, Checkpoint):
        # ONNX: weights an exporter transposed and renamed (onnx::MatMul_12) under the layer
        # name the graph gives them, in torch's layout.
        for name, m in (source.info.get("graph", {}).get("state_dict_names") or {}).items():
            shape = out.pop(name, None)
            if shape is not None and m["name"] not in out:
                out[m["name"]] = shape[::-1] if m.get("transposed") else shape
    return out


def _renamed(fam: Family, shapes: dict[str, tuple[int, ...]]
             ) -> tuple[dict[str, tuple[int, ...]], dict[str, str]]:
    """The file's names as the family's class names them today (older names renamed)."""
    if not fam.renames:
        return shapes, {n: n for n in shapes}
    view: dict[str, tuple[int, ...]] = {}
    source: dict[str, str] = {}
    for n, s in shapes.items():
        new = n
        for pattern, repl in fam.renames:
            new = re.sub(pattern, repl, new)
        if new in view:  # two names became one: the renames do not apply to this file
            return shapes, {n: n for n in shapes}
        view[new], source[new] = s, n
    return view, source


def _candidates(all_shapes: dict[str, tuple[int, ...]]) -> list[Match]:
    """Every (family, class) whose identifying keys the file has, best first."""
    found: list[Match] = []
    for fam in FAMILIES:
        shapes, source = _renamed(fam, all_shapes)
        names = list(shapes)
        for var in fam.variants:
            anchor = var.base + fam.requires[0]
            outers = sorted({n[: -len(anchor)] for n in names if n.endswith(anchor)
                             and (len(n) == len(anchor) or n[-len(anchor) - 1] == ".")}, key=len)
            for outer in outers[:1]:
                root = {n[len(outer):]: s for n, s in shapes.items() if n.startswith(outer)}
                base = {n[len(var.base):]: s for n, s in root.items() if n.startswith(var.base)}
                if any(k not in base for k in fam.requires) or any(k in base for k in fam.forbids):
                    continue
                heads = [h.rstrip("?") for h in var.head]
                if any(h not in root for h in var.head if not h.endswith("?")):
                    continue
                if any(f.lstrip("/") in root for f in var.forbids):
                    continue
                extra = sum(1 for n in root if not n.startswith(var.base) and n not in heads)
                rank = (len(fam.requires), sum(h in root for h in heads), -len(outer),
                        -extra - (len(shapes) - len(root)))
                found.append(Match(fam, var, outer, root,
                                   {n[len(outer):]: source[n] for n in names
                                    if n.startswith(outer)}, rank))
    found.sort(key=lambda m: m.rank, reverse=True)
    return found


def _configure(m: Match) -> bool:
    """Fill ``m.config`` from the rules; False (with a mismatch) if a key a rule reads is absent."""
    base = {n[len(m.variant.base):]: s for n, s in m.root.items() if n.startswith(m.variant.base)}
    s = Shapes(base, m.root)
    values: dict[str, Any] = {}
    for name, rule in m.family.config + m.variant.config:
        try:
            values[name] = rule(s, values)
        except (LookupError, ZeroDivisionError, IndexError) as exc:
            key = exc.args[0] if exc.args and isinstance(exc.args[0], str) else name
            m.mismatches = [{"name": key, "expected": f"a tensor giving {name}", "got": None}]
            return False
        judge = getattr(rule, "judge", None)
        m.config[name] = Setting(values[name], judge(s) if judge else rule.how)
    return True


def _prefer(m: Match) -> bool:
    p = m.family.prefer
    return p is not None and p[0] in m.config and m.config[p[0]].value == p[1]


# Special token ids a config defaults to (GPT-2's 50256, Whisper's 50257): outside a smaller
# vocabulary they break the embedding's padding row, and nothing in the weights names them.
_TOKEN_IDS = ("pad_token_id", "bos_token_id", "eos_token_id", "decoder_start_token_id",
              "start_token_id")


def transformers_config(model_type: str, config: Mapping[str, Any]) -> Any:
    """``transformers.AutoConfig.for_model(model_type, **config)``, with default special token
    ids that fall outside the vocabulary dropped."""
    import transformers

    cfg = transformers.AutoConfig.for_model(model_type, **dict(config))
    vocab = getattr(cfg, "vocab_size", None)
    for key in _TOKEN_IDS:
        value = getattr(cfg, key, None)
        if key not in config and isinstance(value, int) and vocab and value >= vocab:
            setattr(cfg, key, None if key != "decoder_start_token_id" else 0)
    return cfg


def meta_state(model_type: str, cls: str, config: Mapping[str, Any],
               init: Mapping[str, Any]) -> tuple[dict[str, tuple[int, ...]], list[set[str]]]:
    """The class's state_dict names and shapes, instantiated on the meta device (no memory),
    and the groups of names that are one tied tensor."""
    import torch
    import transformers

    level = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()  # "some weights not initialised": not ours to say
    try:
        cfg = transformers_config(model_type, config)
        with torch.device("meta"):
            model = getattr(transformers, cls)(cfg, **dict(init))
    finally:
        transformers.logging.set_verbosity(level)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    by_id: dict[int, set[str]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        by_id.setdefault(id(p), set()).add(name)
    return shapes, [g for g in by_id.values() if len(g) > 1]


def _verify(m: Match, everything: dict[str, tuple[int, ...]]) -> None:
    init = {k: m.config[k].value for k in m.variant.init if k in m.config}
    config = {k: s.value for k, s in m.config.items() if k not in m.variant.init}
    try:
        expected, tied = meta_state(m.family.model_type, m.variant.cls, config, init)
    except (ValueError, TypeError, AttributeError, RuntimeError, AssertionError) as exc:
        # transformers refuses the config (hidden size not a multiple of the heads ...)
        m.verified = False
        m.mismatches = [{"name": "(config)", "expected": m.variant.cls,
                         "got": f"{type(exc).__name__}: {exc}"}]
        return
    got = m.root
    mismatches: list[dict[str, Any]] = []
    for name, shape in expected.items():
        if name not in got:
            group = next((g for g in tied if name in g), set())
            if not any(n in got for n in group):
                mismatches.append({"name": name, "expected": list(shape), "got": None})
        elif tuple(got[name]) != shape:
            mismatches.append({"name": name, "expected": list(shape), "got": list(got[name])})
    for name, shape in got.items():
        if name not in expected and not name.endswith(LEGACY_BUFFERS):
            mismatches.append({"name": m.source.get(name, name), "expected": None,
                               "got": list(shape)})
    # Names outside the class's prefix (a loss module's weights next to a Lightning "model.")
    mismatches.extend({"name": n, "expected": None, "got": list(s)}
                      for n, s in everything.items() if not n.startswith(m.outer))
    m.verified = not mismatches
    m.mismatches = mismatches


def _can_verify() -> str | None:
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as exc:
        return (f"{exc.name} is not installed (pip install 'modelport[export]'): the match is by "
                "key names and shapes, not verified against the class")
    return None


def recognize(source: Checkpoint | Mapping[str, Any], verify: bool = True) -> Architecture:
    """The architecture of ``source``'s weights (a Checkpoint, or a mapping name -> shape)."""
    shapes_in = _shapes(source)
    norm = normalise(list(shapes_in))
    shapes = {norm[n]: s for n, s in shapes_in.items()}
    back = {v: k for k, v in norm.items()}
    matches = _candidates(shapes)
    configured = [m for m in matches if _configure(m)]
    if not configured:  # nothing to verify: torch is not even imported
        nearest = matches[0] if matches else None
        return Architecture(None, None, [], {}, False, nearest.mismatches if nearest else [],
                            nearest=nearest.label if nearest else None)
    note = _can_verify() if verify else "verification skipped"
    if note:
        top = configured[0].rank
        group = [m for m in configured if m.rank == top]
        group.sort(key=lambda m: not _prefer(m))
        return _answer(group[0], group, False, note, back)
    tried = 0
    verified: list[Match] = []
    for m in configured:
        if verified and m.rank != verified[0].rank:
            break
        if tried >= _MAX_VERIFY:
            break
        _verify(m, shapes)
        tried += 1
        if m.verified:
            verified.append(m)
    if verified:
        verified.sort(key=lambda m: not _prefer(m))  # stable: table order among the rest
        return _answer(verified[0], verified, True, "", back)
    nearest = min(configured[:tried], key=lambda m: len(m.mismatches))
    return Architecture(None, None, [], {}, False, nearest.mismatches[:_MAX_MISMATCHES],
                        nearest=nearest.label, note=(
                            f"{len(nearest.mismatches)} mismatches with {nearest.variant.cls}"
                            if len(nearest.mismatches) > _MAX_MISMATCHES else ""))


def _answer(m: Match, group: list[Match], verified: bool, note: str,
            back: dict[str, str]) -> Architecture:
    init = {k: m.config[k].value for k in m.variant.init if k in m.config}
    names = {back.get(m.source[n], m.source[n]): n for n in m.root}
    # The prefix in front of the class's names as the file spells it (wrappers included).
    prefixes = Counter(f[: -len(c)] if c and f.endswith(c) else "" for f, c in names.items())
    prefix = prefixes.most_common(1)[0][0] if prefixes else ""
    return Architecture(
        m.family.name, m.variant.cls, [g.variant.cls for g in group], m.config, verified, [],
        model_type=m.family.model_type, task=m.variant.task, inputs=m.family.inputs,
        prefix=prefix, init=init, note=note, names=names)
