"""Parse parity with CPython, proven differentially (issue #7, item 3).

The oracle (``pickle_oracle.py``) is CPython's own C unpickler with an inert ``find_class`` and
``persistent_load``: nothing is imported, nothing runs. The property: every global the oracle
resolves is among the globals modelport's machine records, in every protocol, read as
``pickle.loads`` reads bytes and as ``torch.load`` reads ``data.pkl`` (a file object without
peek()); and the scanner reports every one that is not allowlisted. Inputs: opcode streams
generated from ``pickletools.opcodes`` with tricky operands, and mutations of real pickles.
"""

from __future__ import annotations

import collections
import os
import pickle
import pickletools
import struct
from pathlib import Path

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from pickle_oracle import covered, machine_globals, oracle_globals, py3  # noqa: E402

from modelport.scan import scan_file  # noqa: E402
from modelport.scan.policy import judge  # noqa: E402

# Names the streams use: gadgets, a user class, allowlisted ones, Python 2 spellings.
NAMES = [("os", "system"), ("builtins", "eval"), ("mylib.models", "Net"),
         ("collections", "OrderedDict"), ("torch._utils", "_rebuild_tensor_v2"),
         ("__builtin__", "eval"), ("copy_reg", "_reconstructor"), ("UserDict", "UserDict"),
         ("numpy.core.multiarray", "_reconstruct"), ("subprocess", "Popen")]
# Text operands where the two unpicklers and a naive parser disagree.
TEXTS = [b"010", b"0x1f", b" 1", b"1_000", b"12\x00junk", b"01", b"00", b"-0", b"+1", b"1L",
         b"0x10L", b"", b"abc", b"1e5", b"nan", b"'x'", b'"y"', b"'z\\x41'", b"0", b"3",
         b"\t7 ", b"99999999999999999999", b"1.5\x00x", b"0o17", b"0b101"]


def _arg(op: pickletools.OpcodeInfo, draw: st.DrawFn) -> bytes:
    """Operand bytes for ``op``, by its argument descriptor (Lib/pickletools.py)."""
    a = op.arg
    if a is None:
        return b""
    if op.name in ("GLOBAL", "INST"):
        module, name = draw(st.sampled_from(NAMES))
        return f"{module}\n{name}\n".encode()
    if a.n == pickletools.UP_TO_NEWLINE:
        return draw(st.sampled_from(TEXTS)) + b"\n"
    if a.n > 0:  # fixed width: small values keep lengths and memo keys meaningful
        return draw(st.integers(0, min(255, 256 ** a.n - 1))).to_bytes(a.n, "little")
    # counted: a length prefix, then that many bytes (strings are names half the time)
    width = {pickletools.TAKEN_FROM_ARGUMENT1: 1, pickletools.TAKEN_FROM_ARGUMENT4: 4,
             pickletools.TAKEN_FROM_ARGUMENT4U: 4, pickletools.TAKEN_FROM_ARGUMENT8U: 8}[a.n]
    body = draw(st.sampled_from([m for pair in NAMES for m in pair]).map(str.encode)
                | st.binary(max_size=6))
    return len(body).to_bytes(width, "little") + body


@st.composite
def opcode_streams(draw: st.DrawFn) -> bytes:
    ops = draw(st.lists(st.sampled_from(pickletools.opcodes), min_size=1, max_size=30))
    out = bytearray()
    if draw(st.booleans()):
        out += bytes([0x80, draw(st.integers(0, 5))])
    for op in ops:
        if op.name == "FRAME":  # a frame that ends somewhere in what follows
            out += b"\x95" + struct.pack("<Q", draw(st.integers(0, 40)))
            continue
        out += op.code.encode("latin1") + _arg(op, draw)
    if draw(st.booleans()):
        out += b"."
    return bytes(out)


class Net:
    """A user's model class (pickled by reference as ``test_parity.Net``, like __main__.Net)."""

    def __init__(self) -> None:
        self.hidden = 4


class _Call:
    """Pickles as ``os.system("echo")``: only the name is written, nothing runs."""

    def __reduce__(self) -> tuple[object, ...]:
        return (os.system, ("echo",))


def _real(protocol: int) -> bytes:
    """A checkpoint-like value with a class instance and a call in it, pickled by CPython."""
    value = {"state": collections.OrderedDict(w=[1.0, 2.0]), "epoch": 3, "name": "net",
             "cfg": {"lr": 0.1, "betas": (0.9, 0.99)}, "model": Net(), "hook": _Call()}
    return pickle.dumps(value, protocol=protocol)


REAL = {p: _real(p) for p in range(6)}


@st.composite
def mutated_pickles(draw: st.DrawFn) -> bytes:
    data = bytearray(REAL[draw(st.integers(0, 5))])
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "insert", "delete", "splice", "truncate"]))
        i = draw(st.integers(0, len(data)))
        if kind == "flip" and i < len(data):
            data[i] = draw(st.integers(0, 255))
        elif kind == "insert":
            op = draw(st.sampled_from(pickletools.opcodes))
            data[i:i] = op.code.encode("latin1") + _arg(op, draw)
        elif kind == "delete":
            del data[i:i + draw(st.integers(1, 4))]
        elif kind == "splice":
            other = REAL[draw(st.integers(0, 5))]
            j = draw(st.integers(0, len(other)))
            data[i:i] = other[j:j + draw(st.integers(1, 40))]
        else:
            del data[i:]
    return bytes(data)


def _check(data: bytes) -> None:
    for file_mode in (False, True):
        found = oracle_globals(data, file_mode)
        names = machine_globals(data, file_mode)
        missing = [p for p in found if not covered(p, names)]
        assert not missing, (file_mode, missing, data)


_SETTINGS = settings(max_examples=300, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


@_SETTINGS
@given(data=opcode_streams())
@example(data=b"I010\ncos\nsystem\n.")
@example(data=b"\x80\x04\x95\x04\x00\x00\x00\x00\x00\x00\x00\x8c\x05abcde.!cos\nsystem\n.")
def test_generated_opcode_streams(data: bytes) -> None:
    _check(data)


@_SETTINGS
@given(data=mutated_pickles())
def test_mutated_real_pickles(data: bytes) -> None:
    _check(data)


# Bytes where a stricter or naive parser stops and CPython goes on to the import (each was a
# way past modelport's machine, or a peer's, before issue #7).
KNOWN = {
    "any-first-opcode": b"I1\n0cos\nsystem\n.",
    "int-octal-strtol": b"\x80\x02I010\n0cos\nsystem\n.",
    "int-nul": b"\x80\x02I12\x00junk\n0cos\nsystem\n.",
    "int-nul-first": b"I\x00\n0cos\nsystem\n.",  # found by hypothesis: _pickle.c reads 0
    "int-underscore-pickle.py": b"I1_000\n0cos\nsystem\n.",
    "long-base0": b"L0x10L\n0cos\nsystem\n.",
    "long-line": b"I" + b" " * 70_000 + b"1\n0cos\nsystem\n.",
    "float-nul": b"F1.5\x00x\n0cos\nsystem\n.",
    "setitem-on-list": b"]Na" + b"K\x00N" + b"s0cos\nsystem\n.",
    "appends-nothing-on-a-str": b"X\x01\x00\x00\x00a(e0cos\nsystem\n.",
    "unknown-object-as-dict-key": b"}cmylib\nX\n)RK\x01scos\nsystem\n.",
    "unknown-object-in-a-set": b"\x8f(cmylib\nX\n)R\x90cos\nsystem\n.",
    "unknown-object-in-a-tuple-key": b"}cmylib\nX\n)R\x85K\x01scos\nsystem\n.",
    "frame-straddle": b"\x80\x04\x95\x04\x00\x00\x00\x00\x00\x00\x00\x8c\x05abcde.!"
                      b"cos\nsystem\n.",
    "py2-module-name": b"cthread\nstart_new_thread\n.",
    # found by bench/pickle_fuzz.py: BINBYTES across a FRAME's end is read contiguously by
    # the C unpickler from a file too (_Unpickler_ReadInto uses the frame's rest first)
    "binbytes-across-a-frame": b"\x80\x05\x95\x03\x00\x00\x00\x00\x00\x00\x00C\x05a"
                               b"bcdecos\nsystem\n.",
}


@pytest.mark.parametrize("name", KNOWN)
def test_known_disagreements(name: str) -> None:
    data = KNOWN[name]
    both = set(oracle_globals(data, False)) | set(oracle_globals(data, True))
    assert {("os", "system"), ("thread", "start_new_thread")} & both  # CPython gets there
    _check(data)


@pytest.mark.parametrize("protocol", range(6))
def test_real_pickles_every_protocol(protocol: int) -> None:
    found = oracle_globals(REAL[protocol], file_mode=True)
    assert {m for m, _ in found} >= {"test_parity", "posix"}, found
    _check(REAL[protocol])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(data=opcode_streams() | mutated_pickles())
def test_the_scanner_reports_what_cpython_would_import(data: bytes, tmp_path: Path) -> None:
    """Every global the oracle resolves that is not allowlisted is a finding: never clean."""
    path = tmp_path / "x.bin"
    path.write_bytes(data)
    found = set(oracle_globals(data, False)) | set(oracle_globals(data, True))
    # A Python 2 spelling is judged as what it imports, unless the raw name is flagged itself.
    flagged = [p for p in found if judge(*p).kind not in ("allow", "profile")
               and judge(*py3(p)).kind not in ("allow", "profile")]
    if not flagged:
        return
    report = scan_file(path)
    assert report.verdict != "clean", (flagged, data)
    subjects = {f.subject for f in report.findings} | {
        s for f in report.findings for s in (f.message,)}
    for module, name in flagged:
        assert any(f"{module}.{name}" in s or name in s for s in subjects if s), (
            module, name, report.to_json())
    os.remove(path)
