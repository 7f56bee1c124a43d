"""Model inputs: named as transformers names them, derived from the architecture or given.

``--input name:1x3x224x224:float32`` gives one input; without any, the recognised family says
which ones the model takes (token ids and mask for text, pixel values for vision, log-mel
features and decoder ids for Whisper). Values are drawn from a seeded generator (token ids
inside the vocabulary, token types inside their table), so the PyTorch run and the onnxruntime
run see the same arrays. Batch and sequence axes are dynamic in the export: parity runs other
sizes than the trace did, which proves it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from ..errors import UsageError

if TYPE_CHECKING:
    import numpy as np

    from ..recognize import Architecture

__all__ = ["InputSpec", "parse_input", "derive", "arrays", "resize"]

_DTYPES = ("float32", "float16", "float64", "int64", "int32", "bool", "bfloat16")


@dataclass(frozen=True)
class InputSpec:
    """One input: name, shape, dtype, the axes that may vary (axis -> name) and the range of
    integer values (token ids must stay inside the vocabulary)."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    dynamic: tuple[tuple[int, str], ...] = ()
    high: int | None = None  # integer inputs: values in [0, high)
    fill: int | None = None  # a constant (attention masks are ones)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype,
                "dynamic": {str(a): n for a, n in self.dynamic}}

    def describe(self) -> str:
        dyn = dict(self.dynamic)
        dims = ", ".join(dyn.get(i, str(d)) for i, d in enumerate(self.shape))
        return f"{self.name}[{dims}] {self.dtype}"


def parse_input(text: str) -> InputSpec:
    """``name:1x3x224x224:float32`` (dtype defaults to float32; axis 0 is dynamic)."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or not parts[0]:
        raise UsageError(f"--input {text!r}: expected name:DIMS[:dtype], e.g. "
                         "pixel_values:1x3x224x224:float32")
    name, dims = parts[0], parts[1]
    dtype = parts[2] if len(parts) == 3 else "float32"
    if dtype not in _DTYPES:
        raise UsageError(f"--input {text!r}: dtype {dtype!r} is not one of {', '.join(_DTYPES)}")
    try:
        shape = tuple(int(d) for d in dims.lower().split("x")) if dims else ()
    except ValueError:
        raise UsageError(f"--input {text!r}: dimensions are integers joined by x, "
                         "e.g. 1x3x224x224") from None
    if any(d <= 0 for d in shape):
        raise UsageError(f"--input {text!r}: dimensions must be positive")
    return InputSpec(name, shape, dtype, dynamic=((0, "batch"),) if shape else ())


def derive(arch: Architecture, batch: int = 2, seq: int = 8) -> list[InputSpec]:
    """The inputs the recognised class takes, as transformers names them."""
    c = {k: s.value for k, s in arch.config.items()}
    vocab = c.get("vocab_size")
    limit = c.get("max_position_embeddings") or c.get("n_positions")
    if arch.family == "roberta" and limit:
        limit -= 2  # positions start after the padding index (RoBERTa's offset of 2)
    seq = min(seq, limit) if limit else seq
    text = ((0, "batch"), (1, "sequence"))
    ids = InputSpec("input_ids", (batch, seq), "int64", text, high=vocab)
    mask = InputSpec("attention_mask", (batch, seq), "int64", text, fill=1)
    kind = arch.inputs
    if kind == "text":
        return [ids, mask]
    if kind == "text-pair":
        return [ids, mask, InputSpec("token_type_ids", (batch, seq), "int64", text,
                                     high=c.get("type_vocab_size") or 1)]
    if kind == "image":
        size = c.get("image_size", 224)
        return [InputSpec("pixel_values", (batch, c.get("num_channels", 3), size, size),
                          "float32", ((0, "batch"),))]
    if kind == "seq2seq":
        return [ids, mask, replace(ids, name="decoder_input_ids",
                                   dynamic=((0, "batch"), (1, "decoder_sequence")))]
    if kind == "audio":
        frames = 2 * c["max_source_positions"]  # two frames per position (conv stride 2)
        dec = min(seq, c.get("max_target_positions") or seq)
        return [InputSpec("input_features", (batch, c["num_mel_bins"], frames), "float32",
                          ((0, "batch"),)),
                InputSpec("decoder_input_ids", (batch, dec), "int64",
                          ((0, "batch"), (1, "decoder_sequence")), high=vocab),
                # Without a mask transformers looks for packed sequences with aten::diff,
                # which the TorchScript-based exporter cannot export.
                InputSpec("decoder_attention_mask", (batch, dec), "int64",
                          ((0, "batch"), (1, "decoder_sequence")), fill=1)]
    raise UsageError(f"no input recipe for {arch.cls}", hint="give the inputs with --input")


def resize(specs: list[InputSpec], batch: int, seq: int) -> list[InputSpec]:
    """The same inputs at another batch size and sequence length (dynamic axes only)."""
    out = []
    for s in specs:
        shape = list(s.shape)
        for axis, name in s.dynamic:
            shape[axis] = batch if name == "batch" else min(seq, shape[axis])
        out.append(replace(s, shape=tuple(shape)))
    return out


def arrays(specs: list[InputSpec], seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded values for each input."""
    import numpy as np

    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for s in specs:
        if s.fill is not None:
            out[s.name] = np.full(s.shape, s.fill, dtype=s.dtype)
        elif s.dtype == "bool":
            out[s.name] = rng.random(s.shape) < 0.5
        elif s.dtype.startswith("int"):
            out[s.name] = rng.integers(0, s.high or 2, s.shape).astype(s.dtype)
        elif s.dtype == "bfloat16":
            import ml_dtypes

            out[s.name] = rng.standard_normal(s.shape).astype(ml_dtypes.bfloat16)
        else:
            out[s.name] = rng.standard_normal(s.shape).astype(s.dtype)
    return out
