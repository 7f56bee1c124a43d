"""``convert/values.py``: the walk that compares plain values, on trees built in memory."""

from __future__ import annotations

import pytest

from modelport import dtypes
from modelport.convert.values import compare_values
from modelport.errors import LimitExceeded
from modelport.model import Opaque, Storage, TensorEntry
from modelport.pickle.machine import Ref


def _t(n: int = 2) -> TensorEntry:
    return TensorEntry("t", dtypes.by_name("F32"), (n,), Storage(4 * n, data=bytes(4 * n)))


def _cmp(a, b):
    changes, n = compare_values({"": a}, {"": b})
    return {(c.path, c.kind) for c in changes}, n


def test_equal_trees_and_what_counts_as_a_value():
    tree = {"w": _t(), "lr": 0.1, "groups": [{"betas": (0.9, 0.99)}], "empty": {},
            "dtype": Ref("torch", "float32"), "nan": float("nan")}
    assert _cmp(tree, {**tree, "w": _t(3)}) == (set(), 6)  # tensors are not values


def test_tensor_only_subtrees_are_left_to_the_tensor_comparison():
    assert _cmp({"model": {"w": _t()}, "epoch": 1}, {"epoch": 1})[0] == set()
    assert _cmp({"opt": {"lr": 0.1, "m": _t()}}, {}) == ({("opt", "only-a")}, 0)
    assert _cmp({"x": _t()}, {"x": 3})[0] == {("x", "only-b")}


def test_opaque_objects_compare_by_class_and_state():
    a = Opaque("argparse.Namespace", (), {"lr": 0.1}, how="newobj")
    b = Opaque("argparse.Namespace", (), {"lr": 0.2}, how="newobj")
    assert _cmp({"args": a}, {"args": b})[0] == {("args.(state).lr", "changed")}
    c = Opaque("other.Namespace", (), {"lr": 0.1}, how="newobj")
    assert _cmp({"args": a}, {"args": c})[0] == {("args", "changed")}


def test_a_list_that_holds_itself_is_compared_once():
    a: list = [1]
    a.append(a)
    b: list = [2]
    b.append(b)
    assert _cmp(a, b)[0] == {("0", "changed")}


def test_shared_containers_cannot_blow_up_the_walk():
    node: list = [0.5]
    for _ in range(40):  # 2**40 paths through 40 lists
        node = [node, node]
    with pytest.raises(LimitExceeded, match="pickle bomb"):
        compare_values({"": node}, {"": node})
