"""Planning without torch: sizes, targets, sharding (against huggingface_hub's), dedupe, notes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelport.classify import classify
from modelport.convert.plan import (
    Target,
    make_plan,
    parse_size,
    resolve_target,
    split_units,
    view_id,
)
from modelport.dtypes import by_name
from modelport.errors import UsageError
from modelport.model import Storage, TensorEntry

F32, BF16, I64 = by_name("F32"), by_name("BF16"), by_name("I64")


def entry(shape: tuple[int, ...], dtype=F32, storage: Storage | None = None, offset: int = 0):
    n = int(np.prod(shape)) * dtype.itemsize
    st_ = storage or Storage(n, data=bytes(n), key=f"s{id(object())}")
    return TensorEntry("", dtype, shape, st_, offset)


@pytest.mark.parametrize(("text", "size"), [("5GB", 5 * 10**9), ("500MB", 500 * 10**6),
                                            ("2GiB", 2 * 2**30), ("1000", 1000), ("1.5kb", 1500),
                                            (" 64 B ", 64), (7, 7)])
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("bad", ["", "5 GBs", "-1MB", "0", "huge"])
def test_parse_size_refuses(bad: str) -> None:
    with pytest.raises(UsageError):
        parse_size(bad)


@pytest.mark.parametrize(("dst", "to", "want"), [
    ("m.safetensors", None, Target("safetensors", False)),
    ("m.PTH", None, Target("torch", False)),
    ("pytorch_model.bin", None, Target("torch", False)),
    ("m.bin", "safetensors", Target("safetensors", False)),
    ("arrays.npz", None, Target("npz", False)),
    ("out", None, Target("safetensors", True)),
    ("out/", "torch", Target("torch", True)),
    ("v1.2/model.ckpt", None, Target("torch", False)),
])
def test_resolve_target(dst: str, to: str | None, want: Target) -> None:
    assert resolve_target(dst, to) == want


def test_resolve_target_refuses() -> None:
    with pytest.raises(UsageError, match="cannot tell"):
        resolve_target("model.weights")
    with pytest.raises(UsageError, match="no folder layout"):
        resolve_target("out", "npz")
    with pytest.raises(UsageError, match="unknown output format"):
        resolve_target("m.pt", "coreml")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 1000), max_size=40), st.integers(1, 1500),
       st.lists(st.integers(0, 39), max_size=10))
def test_sharding_is_huggingface_hubs(sizes: list[int], limit: int, ties: list[int]) -> None:
    """Same shards as huggingface_hub.split_state_dict_into_shards_factory, tied tensors
    (one storage) included; a unit over the limit gets a shard of its own."""
    hub = pytest.importorskip("huggingface_hub.serialization._base")
    storage = {f"t{i}": f"t{i}" for i in range(len(sizes))}
    for i in ties:  # tie t_i to t_0's storage
        if 0 < i < len(sizes):
            storage[f"t{i}"] = "t0"
            sizes[i] = sizes[0]
    state = {f"t{i}": (storage[f"t{i}"], n) for i, n in enumerate(sizes)}
    split = hub.split_state_dict_into_shards_factory(
        state, get_storage_size=lambda t: t[1], get_storage_id=lambda t: t[0],
        filename_pattern="m{suffix}", max_shard_size=limit)
    theirs = [set(v) for v in split.filename_to_tensors.values()] if state else [set()]
    units: dict[str, list[str]] = {}
    for name, (sid, _) in state.items():
        units.setdefault(sid, []).append(name)
    ours = split_units([(names, state[names[0]][1]) for names in units.values()], limit)
    assert [set(s) for s in ours] == theirs


def _ck(tree: dict) -> object:
    return classify("/x/model.pt", "torch-zip", tree)


def test_plan_shards_and_index() -> None:
    tree = {f"layer.{i}.weight": entry((10, 10)) for i in range(5)}
    tree["big"] = entry((100, 100))  # 40 kB: a shard of its own
    plan = make_plan(_ck(tree), Target("safetensors", True), max_shard_size="1KB")
    files = [s.file for s in plan.shards]
    assert files[0] == "model-00001-of-00004.safetensors" and len(files) == 4
    assert [it.name for it in plan.shards[2].items] == ["big"]
    assert plan.index["weight_map"]["big"] == files[2]
    assert plan.index["metadata"] == {"total_parameters": 10500, "total_size": 42000}


def test_plan_one_shard_has_no_index() -> None:
    plan = make_plan(_ck({"a": entry((2,))}), Target("torch", True))
    assert [s.file for s in plan.shards] == ["pytorch_model.bin"] and plan.index is None


def test_plan_dedupe_and_cast() -> None:
    tied = entry((4, 4))
    tree = {"wte": tied, "lm_head": tied, "step": entry((), I64), "other": entry((4, 4))}
    plan = make_plan(_ck(tree), Target("safetensors", False), dedupe=True, dtype="bf16")
    items = plan.shards[0].items
    assert [it.name for it in items] == ["wte", "step", "other"]
    assert [it.dtype.name for it in items] == ["BF16", "I64", "BF16"]
    assert plan.aliases == {"lm_head": "wte"}
    assert plan.shards[0].metadata == {"format": "pt", "lm_head": "wte"}
    assert any("1 left as they are (I64" in n for n in plan.notes)
    assert view_id(tree["wte"]) == view_id(tree["lm_head"]) != view_id(tree["other"])


def test_plan_checks_types() -> None:
    c128 = by_name("C128")
    with pytest.raises(UsageError, match="C128 is a type safetensors cannot hold") as exc:
        make_plan(_ck({"z": entry((2,), c128)}), Target("safetensors", False))
    assert exc.value.tensor == "z"
    with pytest.raises(UsageError, match="BF16 is a type npz cannot hold"):
        make_plan(_ck({"z": entry((2,), BF16)}), Target("npz", False))
    with pytest.raises(UsageError, match="cast to one of"):
        make_plan(_ck({"z": entry((2,))}), Target("npz", False), dtype="I8")


def test_left_out_note() -> None:
    tree = {"epoch": 3, "model": {"w": entry((2,))}, "optimizer": {"state": {0: {
        "exp_avg": entry((2,))}}}, "loss": 0.125, "config": {"lr": 1e-3}}
    plan = make_plan(_ck(tree), Target("safetensors", False))
    assert plan.notes == ["left out optimizer: 1 tensor, epoch=3, loss=0.125, config; "
                          "use --full to keep them"]
    assert [it.name for it in plan.shards[0].items] == ["w"]


def test_full_tree_in_metadata() -> None:
    tied = entry((3,))
    tree = {"a": {1: tied, 2: (tied, None)}, "b": [1.5, float("inf")]}
    plan = make_plan(_ck(tree), Target("safetensors", False), full=True, dedupe=True)
    meta = plan.shards[0].metadata
    assert [it.name for it in plan.shards[0].items] == ["a.1"]
    assert json.loads(meta["modelport.tree"]) == {
        "a": {"__dict__": [[1, {"__tensor__": "a.1"}],
                           [2, {"__tuple__": [{"__tensor__": "a.1"}, None]}]]},
        "b": [1.5, {"__float__": "inf"}]}
