"""The records every reader produces: byte sources, tensor entries, placeholders and checkpoints.

A ``TensorEntry`` never holds tensor data. It points into a ``Storage`` (a run of bytes in a file,
or a small in-memory buffer for bytes that had to be decoded) and describes the tensor as torch
does: element offset into the storage, shape and element strides. Bytes are read lazily by
``modelport.tensors``.

A ``Checkpoint`` is the tree a file holds (dicts, lists, tuples, plain values, ``TensorEntry``
and ``Opaque`` placeholders) plus the classification ``inspect`` reports: which subtree holds the
model weights, what other tensors there are, the plain values, and the kind of file.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from .dtypes import DType

__all__ = [
    "Storage",
    "TensorEntry",
    "Opaque",
    "GlobalRef",
    "Checkpoint",
    "KINDS",
    "WEIGHT_KEYS",
]

KINDS = ("weights", "training-checkpoint", "full-model", "torchscript", "onnx-graph", "tf-graph")

# Subtrees that hold model weights, in order of preference (DESIGN.md "Weights").
WEIGHT_KEYS = (
    "state_dict",
    "model_state_dict",
    "model_state",
    "model",
    "module",
    "net",
    "network",
    "params",
    "params_ema",
    "weights",
    "ema_state_dict",
)

# Keys whose presence next to weights marks a training checkpoint.
_TRAINING_KEYS = frozenset(
    ["optimizer", "optimizer_state_dict", "optimizer_states", "optimizers", "lr_scheduler", "lr_schedulers", "scheduler", "scheduler_state_dict", "epoch", "global_step", "step", "iteration", "loss", "best_loss", "amp", "scaler", "loops", "callbacks"]
)


@dataclass(frozen=True)
class Storage:
    """A run of bytes: ``nbytes`` at ``offset`` in the file ``path``, held in ``data``, or
    made by ``compute`` when they are read.

    ``key`` identifies the storage inside its file (torch's storage key, a safetensors tensor
    name): two entries with the same (path, key) share memory.

    ``parts``: the storage is these storages' bytes one after another (``path`` and ``data``
    are then None). A TensorFlow variable saved in slices (a partitioned embedding) is one
    tensor whose rows live in several runs of a file, or in several files; with parts it stays
    one entry, read in place (``tensors`` concatenates only when a caller asks for an array,
    ``convert`` copies part by part), instead of being copied into memory at open time.

    ``compute`` returns the bytes afresh on every call and nothing keeps them: a tensor made on
    the fly (a weight with a LoRA update merged in) costs memory only while a writer streams it.
    """

    nbytes: int
    path: str | None = None
    offset: int = 0
    data: bytes | memoryview | None = field(default=None, repr=False, compare=False)
    key: str = ""
    parts: tuple[Storage, ...] = field(default=(), repr=False)
    compute: Callable[[], bytes | bytearray | memoryview] | None = field(
        default=None, repr=False, compare=False)

    @property
    def in_memory(self) -> bool:
        """The bytes are not a run of a file (held, or computed when read)."""
        return self.data is not None or self.compute is not None

    @classmethod
    def joined(cls, parts: tuple[Storage, ...], key: str = "") -> Storage:
        """One storage over ``parts`` (a single part is returned as it is)."""
        if len(parts) == 1:
            return parts[0]
        return cls(nbytes=sum(p.nbytes for p in parts), key=key, parts=parts)

    def runs(self, start: int, length: int) -> list[tuple[Storage, int, int]]:
        """The (part, offset within part, length) runs that hold bytes ``start..start+length``
        (``[(self, start, length)]`` for a storage without parts)."""
        if not self.parts:
            return [(self, start, length)]
        out, pos, end = [], 0, start + length
        for p in self.parts:
            lo, hi = max(start, pos), min(end, pos + p.nbytes)
            if lo < hi:
                out.append((p, lo - pos, hi - lo))
            pos += p.nbytes
        return out

    @property
    def files(self) -> tuple[str, ...]:
        """Every file this storage's bytes come from."""
        if self.parts:
            return tuple(dict.fromkeys(f for p in self.parts for f in p.files))
        return (self.path,) if self.path is not None else ()

    @property
    def identity(self) -> tuple[str | None, str, int]:
        return (self.path, self.key, self.offset)


@dataclass(frozen=True)
class TensorEntry:
    """One tensor: dtype and shape over a storage, with torch's element offset and strides."""

    name: str
    dtype: DType
    shape: tuple[int, ...]
    storage: Storage
    storage_offset: int = 0  # in elements
    strides: tuple[int, ...] | None = None  # in elements; None means C-contiguous
    requires_grad: bool = False
    quant: dict[str, Any] | None = None  # scale/zero_point for quantized tensors

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.dtype.size(self.numel)  # ggml block types: whole blocks

    @property
    def contiguous_strides(self) -> tuple[int, ...]:
        strides, acc = [], 1
        for dim in reversed(self.shape):
            strides.append(acc)
            acc *= max(dim, 1)
        return tuple(reversed(strides))

    @property
    def is_contiguous(self) -> bool:
        """C-contiguous: its bytes are one run in the storage (size-1 dims may have any stride)."""
        if self.strides is None or self.numel <= 1:
            return True
        expect = self.contiguous_strides
        return all(s == e or d == 1 for s, e, d in zip(self.strides, expect, self.shape))

    @property
    def byte_offset(self) -> int:
        """Offset of the first element from the start of the storage, in bytes."""
        return self.dtype.size(self.storage_offset)

    @property
    def span(self) -> int:
        """Bytes of storage this tensor's elements reach, from its first element (0 if empty)."""
        if self.numel == 0:
            return 0
        strides = self.strides if self.strides is not None else self.contiguous_strides
        last = sum((d - 1) * s for d, s in zip(self.shape, strides))
        return self.dtype.size(last + 1)

    def renamed(self, name: str) -> TensorEntry:
        return replace(self, name=name)


@dataclass
class Opaque:
    """An object modelport did not build: its class, constructor arguments and state.

    ``how`` says which opcode made it (``reduce``, ``newobj``, ``obj``, ``inst``, ``global``).
    The object is inert: nothing was imported or called to make it.
    """

    cls: str
    args: Any = ()
    state: Any = None
    how: str = "reduce"
    items: list[Any] = field(default_factory=list)  # APPENDS onto it
    setitems: list[tuple[Any, Any]] = field(default_factory=list)  # SETITEMS onto it

    def __repr__(self) -> str:
        return f"<{self.cls}>"


@dataclass(frozen=True)
class GlobalRef:
    """A global a pickle names, with the opcode and byte offset where it does."""

    module: str
    name: str
    opcode: str
    offset: int
    member: str | None = None

    @property
    def qualname(self) -> str:
        return f"{self.module}.{self.name}"


@dataclass
class Checkpoint:
    """What a model file holds, classified."""

    path: str
    format: str
    kind: str
    tree: Any
    weights: dict[str, TensorEntry]
    weights_path: str | None  # dotted path of the weights subtree, "" for the root
    other_tensors: dict[str, TensorEntry]
    metadata: dict[str, Any]
    globals: list[GlobalRef] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)  # format extras (graph summary, config)
    needs: list[str] = field(default_factory=list)  # what loading it with its framework takes
    file_size: int = 0

    @property
    def parameters(self) -> int:
        return sum(t.numel for t in self.weights.values())

    def tensors(self) -> Iterator[TensorEntry]:
        """Weights, then every other tensor."""
        yield from self.weights.values()
        yield from self.other_tensors.values()

    def __repr__(self) -> str:  # the dataclass repr would print every tensor of the tree
        return (f"<Checkpoint {self.format} {self.kind} {self.path!r}: "
                f"{len(self.weights)} weights, {self.parameters:,} parameters>")

    def close(self) -> None:
        """Close the memory maps opened to read this checkpoint's tensors (arrays made from
        them must not be used afterwards). Reading a tensor again maps its file again."""
        from .tensors import release

        release({t.storage.path for t in self.tensors() if t.storage.path is not None})

    def __enter__(self) -> Checkpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
