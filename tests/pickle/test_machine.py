"""The symbolic unpickler: plain data comes out as pickle.loads would build it, for every
protocol, and nothing named in a pickle is ever imported or called."""

from __future__ import annotations

import collections
import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelport.errors import LimitExceeded, PickleError
from modelport.limits import Limits
from modelport.model import Opaque
from modelport.pickle import Ref, unpickle
from modelport.tensors import to_numpy

scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(max_size=20) | st.binary(max_size=20)
)
plain = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=5)
    | st.tuples(inner, inner)
    | st.dictionaries(st.text(max_size=8) | st.integers(), inner, max_size=5),
    max_leaves=30,
)


@settings(max_examples=150, deadline=None)
@given(value=plain, protocol=st.integers(0, 5))
def test_plain_data_equals_pickle_loads(value, protocol):
    data = pickle.dumps(value, protocol=protocol)
    # Test-written data only: the reference reader is the standard unpickler.
    assert unpickle(data).value == pickle.loads(data)


@pytest.mark.parametrize("protocol", range(6))
def test_containers_and_numpy(protocol):
    value = {
        "od": collections.OrderedDict(b=1, a=2),
        "set": {1, 2},
        "frozen": frozenset({3}),
        "big": 2**100,
        "arr": np.arange(6, dtype=np.float32).reshape(2, 3),
        "fortran": np.asfortranarray(np.arange(6, dtype=np.int16).reshape(2, 3)),
        "scalar": np.float64(2.5),
    }
    out = unpickle(pickle.dumps(value, protocol=protocol)).value
    assert out["od"] == {"b": 1, "a": 2} and list(out["od"]) == ["b", "a"]
    assert out["set"] == {1, 2} and out["frozen"] == frozenset({3})
    assert out["big"] == 2**100
    np.testing.assert_array_equal(to_numpy(out["arr"]), value["arr"])
    np.testing.assert_array_equal(to_numpy(out["fortran"]), value["fortran"])
    assert out["scalar"] == 2.5


class Gadget:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_unknown_calls_become_inert_placeholders(capsys):
    r = unpickle(pickle.dumps({"x": Gadget()}, protocol=4))
    obj = r.value["x"]
    assert isinstance(obj, Opaque) and obj.cls == "builtins.print"
    assert obj.args == ("this must never run",)
    assert [g.qualname for g in r.globals] == ["builtins.print"]
    assert capsys.readouterr().out == ""


def test_globals_carry_byte_offsets():
    data = b"\x80\x02cos\nsystem\nq\x00X\x02\x00\x00\x00idq\x01\x85q\x02Rq\x03."
    r = unpickle(data)
    assert r.globals[0].qualname == "os.system"
    assert r.globals[0].offset == 2 and r.globals[0].opcode == "GLOBAL"
    assert r.calls[0].target == "os.system" and r.calls[0].args == ("id",)


def test_stack_global_with_computed_operands_is_recorded():
    # STACK_GLOBAL whose module name is the result of a call, not a string opcode.
    data = (b"\x80\x04\x8c\x08builtins\x8c\x03str\x93)R\x8c\x04eval\x93.")
    r = unpickle(data)
    assert any(a.kind == "computed-global" for a in r.anomalies)
    assert isinstance(r.value, Ref)


@pytest.mark.parametrize(
    "data, message",
    [
        (b"\x80\x02]q\x00(K\x01K\x02", "without STOP"),
        (b"\x80\x02X\xff\x00\x00\x00ab.", "runs past the end"),
        (b"\x80\x02h\x05.", "memo key 5"),
        (b"\x80\x02\xff.", "unknown opcode 0xff"),
        (b"\x80\x02e.", "MARK"),
        (b"\x80\x02K\x01K\x02s.", "SETITEM"),
    ],
)
def test_broken_pickles_raise_located_errors(data, message):
    with pytest.raises(PickleError, match=message) as info:
        unpickle(data)
    assert info.value.offset is not None


def test_limits_are_checked_before_allocating():
    deep = b"\x80\x02" + b"(" * 50 + b"."
    with pytest.raises(LimitExceeded, match="nested"):
        unpickle(deep, limits=Limits(depth=10))
    many = b"\x80\x02" + b"N0" * 100 + b"N."
    with pytest.raises(LimitExceeded, match="opcodes"):
        unpickle(many, limits=Limits(pickle_ops=50))


def test_proto_mid_stream_and_ext_are_anomalies():
    r = unpickle(b"\x80\x02N0\x80\x02\x82\x01.")
    kinds = {a.kind for a in r.anomalies}
    assert {"proto-mid-stream", "ext"} <= kinds
