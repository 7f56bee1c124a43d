"""Helpers for the conversion tests: reference tensors and the real consumers of each output.

Tensors are compared in one canonical form, ``{name: (dtype code, shape, bytes in C order)}``,
built from whatever the reference reader returns (torch tensors, numpy arrays), so that a
safetensors file read by ``safe_open`` and a .pt read by ``torch.load(weights_only=True)`` are
checked against the same expectation bit for bit.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelport.dtypes import by_numpy, by_torch

Canon = dict[str, tuple[str, tuple[int, ...], bytes]]

# Fixture name -> the file of the corpus whose torch.load state_dict is the reference, and the
# subtree of it holding the weights.
TORCH_REFS = {
    "dtypes_zip": ("dtypes_zip", None), "dtypes_legacy": ("dtypes_legacy", None),
    "layouts_zip": ("layouts_zip", None), "layouts_legacy": ("layouts_legacy", None),
    "training_zip": ("training_zip", "model_state_dict"),
    "training_legacy": ("training_legacy", "model_state_dict"),
    "lightning": ("lightning", "state_dict"),
    "full_model": ("full_model_ref", None), "torchscript": ("torchscript_ref", None),
    "hf_bert_bin": ("hf_bert_ref", None), "hf_gpt2_bin": ("hf_gpt2_ref", None),
}
SAFETENSORS_REFS = ("hf_bert_st", "hf_gpt2_st")
NUMPY_REFS = ("npz", "npz_compressed", "npy", "npy_fortran")
ONNX_REFS = ("onnx", "onnx_external")
ALL_SOURCES = tuple(TORCH_REFS) + SAFETENSORS_REFS + NUMPY_REFS + ONNX_REFS
# Sources whose scan verdict is unsafe by design (a whole pickled model): converted with
# allow_unsafe=True, as a user who read `modelport scan` would.
UNSAFE = frozenset({"full_model"})


def need(corpus: dict[str, Path], name: str) -> Path:
    if name not in corpus:
        pytest.skip(f"fixture {name!r} needs a library that is not installed")
    return corpus[name]


def canon_torch(t: Any) -> tuple[str, tuple[int, ...], bytes]:
    import torch

    dt = by_torch(str(t.dtype).removeprefix("torch."))
    assert dt is not None, t.dtype
    raw = t.detach().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
    return dt.name, tuple(t.shape), raw


def canon_numpy(a: np.ndarray) -> tuple[str, tuple[int, ...], bytes]:
    dt = by_numpy(a.dtype)
    assert dt is not None, a.dtype
    return dt.name, tuple(a.shape), np.ascontiguousarray(a).tobytes()


def canon(obj: dict[str, Any]) -> Canon:
    out: Canon = {}
    for k, v in obj.items():
        out[k] = canon_numpy(v) if isinstance(v, np.ndarray) else canon_torch(v)
    return out


def reference(corpus: dict[str, Path], name: str) -> Canon:
    """What the reference reader of the source gives for its weights."""
    path = need(corpus, name)
    if name in TORCH_REFS:
        import torch

        ref, sub = TORCH_REFS[name]
        obj = torch.load(need(corpus, ref), weights_only=True)
        return canon(obj[sub] if sub else obj)
    if name in SAFETENSORS_REFS:
        return read_output(path)
    if name in NUMPY_REFS:
        if str(path).endswith(".npy"):
            return {Path(path).stem: canon_numpy(np.load(path))}  # named after the file
        with np.load(path) as z:
            return {k: canon_numpy(z[k]) for k in z.files}
    onnx = pytest.importorskip("onnx")
    from onnx import numpy_helper

    model = onnx.load(str(path))
    return {i.name: canon_numpy(numpy_helper.to_array(i, base_dir=os.path.dirname(path)))
            for i in model.graph.initializer}


def read_output(path: str | Path) -> Canon:
    """The tensors of a converted file or folder, as its real consumer reads them."""
    path = Path(path)
    if path.is_dir():
        out: Canon = {}
        for f in sorted(path.iterdir()):
            if f.suffix in (".safetensors", ".bin") and not f.name.startswith("."):
                part = read_output(f)
                assert not set(part) & set(out), f"tensor in two shards of {path}"
                out.update(part)
        return out
    head = path.read_bytes()[:4]
    if head == b"PK\x03\x04" and path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            return {k: canon_numpy(z[k]) for k in z.files}
    if head == b"PK\x03\x04":
        import torch

        obj = torch.load(path, weights_only=True)
        return canon(obj)
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return {k: canon_torch(f.get_tensor(k)) for k in f.keys()}  # noqa: SIM118


def assert_same(got: Canon, want: Canon, where: str = "") -> None:
    assert set(got) == set(want), f"{where}: names differ: {set(got) ^ set(want)}"
    for k in want:
        assert got[k][:2] == want[k][:2], f"{where}: {k}: {got[k][:2]} != {want[k][:2]}"
        assert got[k][2] == want[k][2], f"{where}: {k}: bytes differ"
