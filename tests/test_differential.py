"""modelport's reading of real files equals the reference readers', bit for bit.

References: ``torch.load(weights_only=True)`` (or, for a whole pickled model and a TorchScript
archive, which it refuses, the model's ``state_dict()`` saved next to it),
``safetensors.safe_open``, ``onnx.numpy_helper`` and ``np.load``. Fixtures come from
tests/fixtures/generate.py (the ``corpus`` fixture).
"""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import modelport  # noqa: E402
import modelport.errors  # noqa: E402
from modelport.dtypes import by_numpy, by_onnx, by_torch  # noqa: E402
from modelport.tensors import to_numpy  # noqa: E402

SAMPLE = Path(__file__).parent.parent / "examples" / "sample_checkpoint.pt"


# --------------------------------------------------------------------------- helpers


def need(corpus: dict[str, Path], name: str) -> Path:
    if name not in corpus:
        pytest.skip(f"fixture {name!r} needs a library that is not installed")
    return corpus[name]


def torch_bytes(t: Any) -> bytes:
    return t.detach().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def assert_tensor(entry: Any, ref: Any, where: str) -> None:
    """Same dtype, shape and bytes as the torch tensor ``ref``."""
    want = by_torch(str(ref.dtype).removeprefix("torch."))
    assert want is not None, f"{where}: no modelport dtype for {ref.dtype}"
    assert entry.dtype.name == want.name, f"{where}: dtype {entry.dtype.name} != {want.name}"
    assert tuple(entry.shape) == tuple(ref.shape), f"{where}: shape {entry.shape} != {ref.shape}"
    arr = to_numpy(entry)
    assert arr.shape == tuple(ref.shape), f"{where}: to_numpy shape {arr.shape}"
    got, exp = arr.tobytes(), torch_bytes(ref)
    if got != exp:
        diff = [i for i, (a, b) in enumerate(zip(got, exp)) if a != b]
        first = diff[0] if diff else min(len(got), len(exp))
        pytest.fail(f"{where}: bytes differ ({len(got)} vs {len(exp)} bytes, first at {first})")


def assert_state(weights: dict[str, Any], ref: dict[str, Any], *, ordered: bool = True) -> None:
    names, ref_names = list(weights), list(ref)
    if ordered:
        assert names == ref_names
    else:
        assert sorted(names) == sorted(ref_names)
    for name in ref_names:
        assert_tensor(weights[name], ref[name], name)


def groups(items: dict[str, Any], key: Any) -> set[frozenset[str]]:
    """Names partitioned by storage (empty storages share nothing)."""
    by: dict[Any, set[str]] = {}
    for name, t in items.items():
        k = key(t)
        if k is not None:
            by.setdefault(k, set()).add(name)
    return {frozenset(g) for g in by.values()}


def torch_storage(t: Any) -> Any:
    s = t.untyped_storage()
    return s.data_ptr() if s.nbytes() else None


def entry_storage(e: Any) -> Any:
    return e.storage.identity if e.storage.nbytes else None


def assert_sharing(weights: dict[str, Any], ref: dict[str, Any]) -> None:
    assert groups(weights, entry_storage) == groups(ref, torch_storage)


def flatten(obj: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(obj, torch.Tensor):
        yield prefix.rstrip("."), obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from flatten(v, f"{prefix}{k}.")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from flatten(v, f"{prefix}{i}.")


def load(path: Path) -> Any:
    return torch.load(path, weights_only=True, map_location="cpu")


# --------------------------------------------------------------------------- torch files

# fixture: (format, kind, reference fixture or None for the file itself, key of its weights)
TORCH_CASES = {
    "dtypes_zip": ("torch-zip", "weights", None, None),
    "dtypes_legacy": ("torch-legacy", "weights", None, None),
    "layouts_zip": ("torch-zip", "weights", None, None),
    "layouts_legacy": ("torch-legacy", "weights", None, None),
    "training_zip": ("torch-zip", "training-checkpoint", None, "model_state_dict"),
    "training_legacy": ("torch-legacy", "training-checkpoint", None, "model_state_dict"),
    "lightning": ("torch-zip", "training-checkpoint", None, "state_dict"),
    "full_model": ("torch-zip", "full-model", "full_model_ref", None),
    "torchscript": ("torchscript", "torchscript", "torchscript_ref", None),
    "protocol4_zip": ("torch-zip", "weights", "layouts_zip", None),  # same tensors, protocol 2
    "no_byteorder_zip": ("torch-zip", "weights", None, None),
}


def torch_reference(corpus: dict[str, Path], case: str) -> dict[str, Any]:
    _, _, ref_name, key = TORCH_CASES[case]
    ref = load(need(corpus, ref_name or case))
    return ref[key] if key else ref


@pytest.mark.parametrize("case", TORCH_CASES)
def test_torch_format_and_kind(corpus: dict[str, Path], case: str) -> None:
    fmt, kind, _, key = TORCH_CASES[case]
    ck = modelport.open(need(corpus, case))
    assert (ck.format, ck.kind) == (fmt, kind)
    if key:
        assert ck.weights_path == key


@pytest.mark.parametrize("case", TORCH_CASES)
def test_torch_weights_equal_reference(corpus: dict[str, Path], case: str) -> None:
    ck = modelport.open(need(corpus, case))
    ref = torch_reference(corpus, case)
    assert_state(ck.weights, ref)
    if TORCH_CASES[case][2] is None:  # the same file: requires_grad (nn.Parameter) survives too
        for name, t in ref.items():
            assert ck.weights[name].requires_grad == t.requires_grad, name


@pytest.mark.parametrize("case", TORCH_CASES)
def test_torch_shared_storages_still_share(corpus: dict[str, Path], case: str) -> None:
    ck = modelport.open(need(corpus, case))
    assert_sharing(ck.weights, torch_reference(corpus, case))


def test_every_dtype_is_covered(corpus: dict[str, Path]) -> None:
    gen = sys.modules["modelport_fixture_generate"]
    names = set(modelport.open(corpus["dtypes_zip"]).weights)
    assert {f"t_{str(d).removeprefix('torch.')}" for d in gen.DTYPES_ZIP} <= names
    assert len(gen.DTYPES_ZIP) >= 17


def test_layouts_are_what_they_claim(corpus: dict[str, Path]) -> None:
    """The layout fixture really holds views and strides (else the layout tests prove nothing)."""
    w = modelport.open(corpus["layouts_zip"]).weights
    assert w["slice"].storage_offset == 2 and w["narrow"].storage_offset == 4
    assert w["transposed"].strides == (1, 6) and w["every_other"].strides == (8, 2)
    assert w["expanded"].strides == (0, 1) and not w["channels_last"].is_contiguous
    assert w["d"].storage_offset == 8 and w["bf16_view"].storage_offset == 1
    assert w["scalar"].shape == () and w["empty_2d"].shape == (3, 0)


@pytest.mark.parametrize("case", ["training_zip", "training_legacy"])
def test_training_checkpoint_keeps_optimizer_state(corpus: dict[str, Path], case: str) -> None:
    ck = modelport.open(corpus[case])
    ref = load(corpus[case])
    optim = dict(flatten(ref["optimizer_state_dict"], "optimizer_state_dict."))
    assert len(optim) == 12  # 4 parameters x (step, exp_avg, exp_avg_sq)
    assert set(optim) <= set(ck.other_tensors)
    for name, t in optim.items():
        assert_tensor(ck.other_tensors[name], t, name)
    assert not set(ck.other_tensors) & {f"model_state_dict.{n}" for n in ref["model_state_dict"]}


@pytest.mark.parametrize("case", ["training_zip", "training_legacy"])
def test_training_checkpoint_metadata(corpus: dict[str, Path], case: str) -> None:
    ck = modelport.open(corpus[case])
    assert ck.metadata["epoch"] == 3 and ck.metadata["loss"] == 0.12
    assert ck.metadata["optimizer_state_dict"]["param_groups"][0]["lr"] == 1e-3
    json.dumps(ck.metadata)  # plain JSON-able values
    assert ck.parameters == sum(t.numel() for t in load(corpus[case])["model_state_dict"].values())


def test_select_overrides_the_weights(corpus: dict[str, Path]) -> None:
    ck = modelport.open(corpus["training_zip"], select="optimizer_state_dict.state.0")
    assert_state(ck.weights, load(corpus["training_zip"])["optimizer_state_dict"]["state"][0])


def test_open_takes_str_and_pathlike(corpus: dict[str, Path]) -> None:
    a = modelport.open(str(corpus["layouts_zip"]))
    b = modelport.open(corpus["layouts_zip"])
    assert list(a.weights) == list(b.weights) and a.path == b.path == str(corpus["layouts_zip"])


def test_lightning_checkpoint(corpus: dict[str, Path]) -> None:
    path = need(corpus, "lightning")
    ck, ref = modelport.open(path), load(path)
    assert ck.metadata["hyper_parameters"] == {"in_dim": 8, "hidden": 16, "lr": 0.01}
    assert ref["hyper_parameters"] == ck.metadata["hyper_parameters"]
    assert (ck.metadata["epoch"], ck.metadata["global_step"]) == (ref["epoch"], ref["global_step"])
    assert ck.metadata["global_step"] == 2
    for name, t in flatten(ref["optimizer_states"], "optimizer_states."):
        assert_tensor(ck.other_tensors[name], t, name)
    json.dumps(ck.metadata)


@pytest.mark.filterwarnings("ignore:TypedStorage is deprecated")
def test_quantized_tensors(corpus: dict[str, Path]) -> None:
    """Quantized storages hold the integer representation; scale and zero point ride along."""
    ck, ref = modelport.open(corpus["quantized_zip"]), load(corpus["quantized_zip"])
    assert list(ck.weights) == list(ref)
    assert_tensor(ck.weights["fc.bias"], ref["fc.bias"], "fc.bias")
    for name, dtype in (("fc.weight", "QI8"), ("fc.act", "QU8")):
        entry, q = ck.weights[name], ref[name]
        assert (entry.dtype.name, entry.shape) == (dtype, tuple(q.shape)), name
        assert to_numpy(entry).tobytes() == torch_bytes(q.int_repr()), name
        assert entry.quant, name


def test_full_model_needs_no_class(corpus: dict[str, Path]) -> None:
    """The model's class module is gone: torch cannot load it, modelport reads its weights."""
    path = need(corpus, "full_model")
    assert importlib.util.find_spec("train_netmod") is None
    ck = modelport.open(path)
    assert "train_netmod" not in sys.modules
    assert "cache" not in ck.weights  # a non-persistent buffer is not in state_dict
    assert ck.weights["head.weight"].storage.identity == ck.weights["embed.weight"].storage.identity


# --------------------------------------------------------------------------- Hugging Face repos


# repo fixture: model whose state_dict it holds, weight file suffix, sharded
HF_CASES = {
    "hf_bert_st": ("bert", ".safetensors", True),
    "hf_gpt2_st": ("gpt2", ".safetensors", True),
    "hf_bert_bin": ("bert", ".bin", True),
    "hf_gpt2_bin": ("gpt2", ".bin", True),
    "hf_gpt2_single_st": ("gpt2", ".safetensors", False),
    "hf_bert_single_bin": ("bert", ".bin", False),
}


def hf_reference(repo: Path, suffix: str) -> dict[str, Any]:
    """The repo's tensors as the reference readers see them, every weight file in turn."""
    ref: dict[str, Any] = {}
    for shard in sorted(repo.glob(f"*{suffix}")):
        if suffix == ".bin":
            ref |= load(shard)
        else:
            with pytest.importorskip("safetensors").safe_open(shard, framework="pt") as f:
                ref |= {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    return ref


@pytest.mark.parametrize("case", HF_CASES)
def test_hf_repo(corpus: dict[str, Path], case: str) -> None:
    model, suffix, sharded = HF_CASES[case]
    repo = need(corpus, case)
    stem = "model.safetensors" if suffix == ".safetensors" else "pytorch_model.bin"
    index = repo / f"{stem}.index.json"
    assert index.exists() == sharded
    if sharded:
        weight_map = json.loads(index.read_text())["weight_map"]
        assert len(set(weight_map.values())) >= 2
    ref = hf_reference(repo, suffix)
    ck = modelport.open(repo)
    assert (ck.format, ck.kind) == ("hf-repo", "weights")
    assert_state(ck.weights, ref, ordered=False)
    if sharded:
        assert set(ck.weights) == set(weight_map)
    if suffix == ".bin":
        assert_sharing(ck.weights, ref)  # gpt2: lm_head.weight is wte, in the same shard
    assert ck.info["config"] == json.loads((repo / "config.json").read_text())
    # The files hold the model's state_dict; safetensors leaves out the tied lm_head.weight.
    state = load(corpus[f"hf_{model}_ref"])
    dropped = {"lm_head.weight"} if suffix == ".safetensors" else set()
    assert set(state) - set(ck.weights) <= dropped
    for name, entry in ck.weights.items():
        assert_tensor(entry, state[name], name)


def test_safetensors_file(corpus: dict[str, Path]) -> None:
    shard = next(need(corpus, "hf_bert_st").glob("*.safetensors"))
    ck = modelport.open(shard)
    assert (ck.format, ck.kind) == ("safetensors", "weights")
    assert_state(ck.weights, hf_reference(shard.parent, shard.name), ordered=False)


# --------------------------------------------------------------------------- ONNX and NumPy


def assert_array(entry: Any, ref: np.ndarray, where: str) -> None:
    """Same dtype, shape and values bit for bit (compared little-endian, as modelport's are)."""
    assert entry.dtype.name == by_numpy(ref.dtype).name, where
    assert tuple(entry.shape) == ref.shape, where
    got = to_numpy(entry)
    le = ref.dtype.newbyteorder("<") if ref.dtype.itemsize > 1 else ref.dtype
    assert got.shape == ref.shape, where
    assert got.astype(le).tobytes() == np.ascontiguousarray(ref.astype(le)).tobytes(), where


@pytest.mark.parametrize("case", ["onnx", "onnx_external"])
def test_onnx_initializers(corpus: dict[str, Path], case: str) -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import numpy_helper

    path = need(corpus, case)
    graph = onnx.load(path).graph  # resolves external data
    ck = modelport.open(path)
    assert (ck.format, ck.kind) == ("onnx", "onnx-graph")
    assert list(ck.weights) == [init.name for init in graph.initializer]
    for init in graph.initializer:
        assert ck.weights[init.name].dtype.name == by_onnx(init.data_type).name, init.name
        assert_array(ck.weights[init.name], numpy_helper.to_array(init), init.name)




@pytest.mark.parametrize(
    "case", ["npz", "npz_compressed", "npz_bigendian"]
)
def test_npz(corpus: dict[str, Path], case: str) -> None:
    path = corpus[case]
    ck = modelport.open(path)
    assert (ck.format, ck.kind) == ("numpy-npz", "weights")
    with np.load(path, allow_pickle=False) as ref:
        assert list(ck.weights) == list(ref.files)
        for name in ref.files:
            assert_array(ck.weights[name], ref[name], name)


@pytest.mark.parametrize("case", ["npy", "npy_fortran"])
def test_npy(corpus: dict[str, Path], case: str) -> None:
    path = corpus[case]
    ck = modelport.open(path)
    assert (ck.format, ck.kind) == ("numpy-npy", "weights")
    (entry,) = ck.weights.values()
    assert_array(entry, np.load(path, allow_pickle=False), case)


# --------------------------------------------------------------------------- the demo sample


def test_sample_checkpoint() -> None:
    if not SAMPLE.exists():
        pytest.skip("no examples/sample_checkpoint.pt (tests/fixtures/generate.py --sample)")
    assert SAMPLE.stat().st_size < 300_000
    ck, ref = modelport.open(SAMPLE), load(SAMPLE)
    assert (ck.format, ck.kind) == ("torch-zip", "training-checkpoint")
    assert_state(ck.weights, ref["model_state_dict"])
    assert ck.metadata["config"] == ref["config"] and ck.metadata["epoch"] == ref["epoch"]
    for name, t in flatten(ref["optimizer_state_dict"], "optimizer_state_dict."):
        assert_tensor(ck.other_tensors[name], t, name)
