"""The tree codecs: the pickle emitter against CPython's pickler, and the JSON tree encoding.

For plain data the emitter must write exactly what ``pickle.dumps(obj, protocol=2)`` writes
(same opcodes, same memo), which is what torch.save writes around its tensors; and
``decode(encode(tree))`` must give back an equal tree with the same types (int keys, tuples).
"""

from __future__ import annotations

import math
import pickle
from collections import OrderedDict
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelport.convert.pickler import Emitter
from modelport.convert.tree import decode, encode, prepare
from modelport.errors import UsageError
from modelport.model import Opaque

scalars = (st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.text(max_size=8)
           | st.floats(allow_nan=False) | st.binary(max_size=6) | st.complex_numbers(
               allow_nan=False))
keys = st.integers(-5, 300) | st.text(max_size=6) | st.tuples(st.integers(0, 3))


def containers(children: Any) -> Any:
    return (st.lists(children, max_size=5) | st.tuples(children, children)
            | st.tuples(children, children, children, children)
            | st.dictionaries(keys, children, max_size=5)
            | st.frozensets(st.integers(0, 9), max_size=4) | st.sets(st.text(max_size=3),
                                                                     max_size=3))


trees = st.recursive(scalars, containers, max_leaves=30)


def _no_tensor(entry: Any) -> Any:
    raise AssertionError("no tensors here")


@settings(max_examples=300, deadline=None)
@given(trees)
def test_emitter_writes_what_cpython_writes(tree: Any) -> None:
    assert Emitter(_no_tensor).dumps(tree) == pickle.dumps(tree, protocol=2)


@pytest.mark.parametrize("n", [0, 1, 2, 999, 1000, 1001, 2000, 2500])
def test_emitter_batches_like_the_c_pickler(n: int) -> None:
    """Batches of 1000 and their edge cases (C and Python picklers differ there)."""
    trees = [{i: [str(i)] * (i % 3) for i in range(n)}, OrderedDict((f"k{i}", i) for i in range(n)),
             [list(range(n)), 2**40, -(2**31) - 1], set(range(n))]
    for tree in trees:
        assert Emitter(_no_tensor).dumps(tree) == pickle.dumps(tree, protocol=2)


def test_emitter_refuses_objects() -> None:
    with pytest.raises(UsageError, match="<some.Class>"):
        Emitter(_no_tensor).dumps({"m": Opaque("some.Class")})


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    return a == b


@settings(max_examples=300, deadline=None)
@given(st.recursive(scalars | st.floats(), containers, max_leaves=30))
def test_json_tree_round_trip(tree: Any) -> None:
    import json

    data = json.loads(json.dumps(encode(prepare(tree), lambda p, e: "")))
    assert _equal(decode(data, {}), tree)


def test_tagged_keys_do_not_confuse_the_decoder() -> None:
    tree = {"__tensor__": "not a tensor", "x": {"__tuple__": [1]}}
    assert decode(encode(tree, lambda p, e: ""), {}) == tree


def test_prepare_says_where_the_placeholders_are() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(UsageError, match=r"opt\.hp = <argparse\.Namespace>.*loop\.0 \(refers"):
        prepare({"opt": {"hp": Opaque("argparse.Namespace")}, "loop": loop})
