"""The PyTorch half of export and parity: build the module, run it, trace it to ONNX.

Imported only by ``modelport.export`` (and its child process), never by the core: it needs
torch, and transformers for recognised architectures. Weights reach torch through modelport's
own readers (``to_numpy`` over the file's bytes), never through ``torch.load``; the two
exceptions, a whole pickled model and a TorchScript archive, are loaded in ``child.py`` in a
separate process.
"""

from __future__ import annotations

import importlib
import inspect
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..errors import InputError, UsageError
from ..model import Checkpoint, TensorEntry
from ..tensors import to_numpy
from .inputs import InputSpec

if TYPE_CHECKING:
    from ..recognize import Architecture

__all__ = ["torch_tensor", "build_recognised", "build_user", "Wrapped", "run", "trace"]


def torch_tensor(entry: TensorEntry) -> torch.Tensor:
    """A tensor's values as a torch tensor (a copy), bf16/fp8 through their bit patterns."""
    arr = np.asarray(to_numpy(entry))
    target = getattr(torch, entry.dtype.torch) if entry.dtype.torch else None
    if arr.dtype.kind not in "biufc" and target is not None:  # ml_dtypes: opaque to torch
        bits = np.ascontiguousarray(arr).view(f"i{arr.dtype.itemsize}")
        return torch.from_numpy(bits.copy()).view(target)
    t = torch.from_numpy(np.array(arr))
    return t.to(target) if target is not None and t.dtype != target else t


def _load(model: torch.nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    """Load ``state``; only tied copies may be missing (the head tied to the embeddings)."""
    missing, _unexpected = model.load_state_dict(state, strict=False)
    groups: dict[int, set[str]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        groups.setdefault(id(p), set()).add(name)
    tied = {n for g in groups.values() if g & set(state) for n in g}
    real = [m for m in missing if m not in tied]
    if real:
        raise InputError(f"{what} needs tensors the file does not have: {', '.join(real[:5])}"
                         + (f" (+{len(real) - 5} more)" if len(real) > 5 else ""),
                         hint="check the class and its --init arguments")


def build_recognised(ck: Checkpoint, arch: Architecture) -> torch.nn.Module:
    """The recognised transformers class, built from the derived config, with the file's
    weights loaded (names mapped from the file's to the class's)."""
    import transformers

    from ..recognize import transformers_config

    cfg = transformers_config(arch.model_type or "", arch.config_values())
    cfg._attn_implementation = "eager"  # the plainest attention traces to the plainest graph
    level = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    try:
        model = getattr(transformers, arch.cls or "")(cfg, **arch.init)
    finally:
        transformers.logging.set_verbosity(level)
    state = {arch.names[n]: torch_tensor(e) for n, e in ck.weights.items() if n in arch.names}
    _load(model, state, arch.cls or "the class")
    return model.eval()


def build_user(spec: str, init: dict[str, Any], ck: Checkpoint) -> torch.nn.Module:
    """``pkg.module:Class`` (code the user named, imported because they named it), built with
    ``init`` and loaded strictly with the file's weights (wrapper prefixes stripped)."""
    from ..recognize import normalise

    mod_name, _, cls_name = spec.partition(":")
    if not mod_name or not cls_name:
        raise UsageError(f"--model {spec!r}: expected pkg.module:Class")
    try:
        cls = getattr(importlib.import_module(mod_name), cls_name)
    except (ImportError, AttributeError) as exc:
        raise UsageError(f"--model {spec!r}: {exc}",
                         hint="the module must be importable (PYTHONPATH) and define the class") from exc
    model = cls(**init)
    if not isinstance(model, torch.nn.Module):
        raise UsageError(f"--model {spec!r} is not a torch.nn.Module")
    names = normalise(list(ck.weights))
    state = {names[n]: torch_tensor(e) for n, e in ck.weights.items()}
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    shapes = [f"{k} {list(state[k].shape)} vs {list(v)}" for k, v in expected.items()
              if k in state and tuple(state[k].shape) != v]
    if missing or extra or shapes:
        raise InputError(f"{cls_name}'s state_dict and the file's weights differ: missing "
                         f"{missing[:5]}, unexpected {extra[:5]}, shapes (file vs class) "
                         f"{shapes[:3]}",
                         hint="check --init, or --select the subtree that holds the weights")
    model.load_state_dict(state, strict=True)
    return model.eval()


class Wrapped(torch.nn.Module):
    """Positional inputs -> the model's keyword arguments; outputs -> a flat tuple of tensors
    (a transformers ModelOutput's tensor fields, by name). ``names`` records the output names
    of the first call."""

    def __init__(self, model: torch.nn.Module, input_names: list[str], hf: bool) -> None:
        super().__init__()
        self.model = model
        self.input_names = input_names
        self.hf = hf
        self.names: list[str] = []
        self.eval()
        self.extra = {"return_dict": True} if hf else {}
        # (a TorchScript method has no Python signature: only transformers models are asked)
        if hf and "use_cache" in inspect.signature(model.forward).parameters:
            self.extra["use_cache"] = False  # past key values are not an output worth tracing

    def forward(self, *args: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if self.hf:
            out = self.model(**dict(zip(self.input_names, args)), **self.extra)
            items = [(k, v) for k, v in out.items() if isinstance(v, torch.Tensor)]
        else:
            out = self.model(*args)
            items = list(_flatten("output", out))
        self.names = [k for k, _ in items]
        return tuple(v for _, v in items)


def _flatten(prefix: str, out: Any) -> list[tuple[str, torch.Tensor]]:
    if isinstance(out, torch.Tensor):
        return [(prefix, out)]
    if isinstance(out, dict):
        return [x for k, v in out.items() for x in _flatten(f"{prefix}.{k}", v)]
    if isinstance(out, (list, tuple)):
        return [x for i, v in enumerate(out) for x in _flatten(f"{prefix}_{i}", v)]
    return []


def _tensors(specs: list[InputSpec], arrays: dict[str, np.ndarray]) -> tuple[torch.Tensor, ...]:
    out = []
    for s in specs:
        a = arrays[s.name]
        if a.dtype.kind not in "biufc":
            out.append(torch.from_numpy(a.view(np.int16).copy()).view(torch.bfloat16))
        else:
            out.append(torch.from_numpy(np.ascontiguousarray(a)))
    return tuple(out)


def run(module: Wrapped, specs: list[InputSpec], arrays: dict[str, np.ndarray]
        ) -> dict[str, np.ndarray]:
    """The module's outputs on ``arrays``, by output name."""
    # torch.onnx.export puts the module back in the mode it found it in, recursively: a wrapper
    # made in training mode would switch dropout back on in the model it wraps.
    module.eval()
    with torch.no_grad():
        outs = module(*_tensors(specs, arrays))
    return {n: o.detach().float().numpy() if o.dtype == torch.bfloat16 else o.detach().numpy()
            for n, o in zip(module.names, outs)}


def trace(module: Wrapped, specs: list[InputSpec], arrays: dict[str, np.ndarray], path: str,
          opset: int, progress: Callable[[str], None] | None = None) -> list[str]:
    """Export ``module`` to ``path`` (torch's TorchScript-based exporter, constant folding on);
    batch and sequence axes dynamic. Returns the output names."""
    import warnings

    ref = run(module, specs, arrays)
    names = list(ref)
    seq = {s.shape[a] for s in specs for a, n in s.dynamic if n != "batch"}
    batch = {s.shape[a] for s in specs for a, n in s.dynamic if n == "batch"}
    dynamic: dict[str, dict[int, str]] = {s.name: dict(s.dynamic) for s in specs if s.dynamic}
    for n, o in ref.items():
        axes = {}
        if o.ndim and o.shape[0] in batch:
            axes[0] = "batch"
        if o.ndim > 1 and o.shape[1] in seq:
            axes[1] = "sequence"
        if axes:
            dynamic[n] = axes
    if progress:
        progress(f"tracing {type(module.model).__name__} with torch.onnx.export (opset {opset})")
    with warnings.catch_warnings():
        # The TorchScript-based exporter is deprecated in favour of one that needs onnxscript;
        # its tracer warns about every Python branch on shapes, which transformers is full of.
        warnings.simplefilter("ignore")
        # A TorchScript module is exported as it is (it cannot be traced from inside a wrapper)
        target = module.model if isinstance(module.model, torch.jit.ScriptModule) else module
        torch.onnx.export(target, _tensors(specs, arrays), path, dynamo=False,
                          do_constant_folding=True, input_names=[s.name for s in specs],
                          output_names=names, dynamic_axes=dynamic, opset_version=opset)
    return names


def job_json(specs: list[InputSpec]) -> str:
    return json.dumps([s.to_json() | {"high": s.high, "fill": s.fill} for s in specs])
