"""Readers never show a traceback (DESIGN.md property 5): whatever bytes they are given,
``modelport.open`` either reads them or raises a ``ModelportError`` that names where, and what
inspect does with a checkpoint it opened (``report``, ``render``, ``to_numpy`` on every tensor)
raises nothing else either. No hang, no allocation the file's size does not justify.

Inputs are real files of every format (the session ``corpus``) truncated and flipped where their
structure lives (headers, the zip central directory, data.pkl, the safetensors JSON, the ONNX
protobuf), torch archives whose data.pkl is rewritten, and hand-written hostile pickles: deep
nesting, self-referencing containers, "billion laughs" sharing, giant declared lengths, tensor
records with impossible sizes, strides, offsets and storage ids.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import shutil
import struct
import tracemalloc
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from testkit import (  # noqa: E402
    binunicode,
    data_pkl,
    deadline,
    edits,
    mutate,
    rezip,
    torch_zip,
)

import modelport  # noqa: E402
from modelport import errors  # noqa: E402
from modelport.classify import flatten_tensors, plain  # noqa: E402
from modelport.cli import main  # noqa: E402
from modelport.cli.inspect import render, report  # noqa: E402
from modelport.dtypes import by_name  # noqa: E402
from modelport.errors import ModelportError  # noqa: E402
from modelport.model import Storage, TensorEntry  # noqa: E402

# -- the property ---------------------------------------------------------------------------------


def exercise(path: Path | str, seconds: float = 10) -> Exception | modelport.Checkpoint:
    """Open ``path`` and do what ``inspect`` does with it; only ModelportError may escape.

    Returns the error or the checkpoint, so a test can say which one it expects.
    """
    with deadline(seconds):
        try:
            ck = modelport.open(path)
        except ModelportError as exc:
            _check_error(exc)
            return exc
        json.dumps(report(ck), default=str)
        render(ck, None)
        for t in ck.tensors():
            try:
                modelport.to_numpy(t)
            except ModelportError as exc:
                _check_error(exc)
        return ck


def _check_error(exc: ModelportError) -> None:
    """One line that says where: a file (or, for in-memory tensors, the tensor's name)."""
    text = str(exc)
    assert len(text.splitlines()) == 1, text
    assert exc.path or exc.tensor, f"error without a location: {text}"


def _files(corpus: dict[str, Path]) -> list[str]:
    return sorted(n for n, p in corpus.items() if p.is_file())


_COUNTER = iter(range(10**9))


def _write(tmp: Path, data: bytes, suffix: str = ".bin") -> Path:
    # A fresh name per case: the zip reader caches archives by (path, inode, size, mtime).
    p = tmp / f"case{next(_COUNTER)}{suffix}"
    p.write_bytes(data)
    return p


# -- truncation and byte flips in every format -----------------------------------------------------


def _structure_offsets(path: Path, data: bytes) -> set[int]:
    """Where a format's structure lives: the torch data.pkl, a safetensors JSON header."""
    out: set[int] = set()
    if data[:4] == b"PK\x03\x04":
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                if info.filename.endswith(".pkl") or info.filename.endswith(".npy"):
                    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
                    out |= set(range(start, start + info.compress_size,
                                     max(1, info.compress_size // 60)))
    elif len(data) > 8 and data[8:9] == b"{":
        hlen = min(int.from_bytes(data[:8], "little"), len(data) - 8)
        out |= set(range(8, 8 + hlen, max(1, hlen // 200)))
    return out


def _cut_offsets(path: Path) -> list[int]:
    data = path.read_bytes()
    n = len(data)
    cuts = set(range(0, min(n, 160), 2))  # magic numbers, the first headers
    cuts |= set(range(0, n, max(1, n // 60)))
    cuts |= set(range(max(0, n - 400), n, 3))  # zip: central directory, zip64 records, EOCD
    cuts |= _structure_offsets(path, data)
    return sorted(c for c in cuts if c < n)


def test_truncated_files(corpus: dict[str, Path], tmp_path: Path) -> None:
    errors_seen = 0
    for name in _files(corpus):
        data = corpus[name].read_bytes()
        for cut in _cut_offsets(corpus[name]):
            got = exercise(_write(tmp_path, data[:cut], corpus[name].suffix))
            errors_seen += isinstance(got, ModelportError)
    assert errors_seen > 1000  # truncation is noticed, not read as a smaller model


def _flips(data: bytes, rng: random.Random, lo: int, hi: int) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        i = rng.randrange(lo, hi)
        buf[i] = rng.choice([0x00, 0xFF, rng.randrange(256), buf[i] ^ (1 << rng.randrange(8))])
    return bytes(buf)


def test_flipped_bytes_in_headers_and_directories(corpus: dict[str, Path], tmp_path: Path) -> None:
    for name in _files(corpus):
        data = corpus[name].read_bytes()
        n = len(data)
        rng = random.Random(name)
        for lo, hi in ((0, min(n, 4096)), (max(0, n - 4096), n)):  # headers; the zip directory
            for _ in range(30):
                exercise(_write(tmp_path, _flips(data, rng, lo, hi), corpus[name].suffix))


_REPOS = ("hf_bert_st", "hf_bert_bin", "hf_gpt2_single_st", "hf_bert_single_bin")


@pytest.mark.parametrize("repo", _REPOS)
def test_mutated_repo_shards(corpus: dict[str, Path], tmp_path: Path, repo: str) -> None:
    if repo not in corpus:
        pytest.skip(f"{repo} not in the corpus")
    src = corpus[repo]
    shard = sorted(p.name for p in src.iterdir() if p.suffix in (".safetensors", ".bin"))[0]
    data = (src / shard).read_bytes()
    rng = random.Random(repo)
    variants = [data[:cut] for cut in sorted({*range(0, 200, 7), *range(0, len(data),
                                                                       max(1, len(data) // 25))})]
    variants += [_flips(data, rng, 0, min(len(data), 4096)) for _ in range(15)]
    variants += [_flips(data, rng, max(0, len(data) - 4096), len(data)) for _ in range(15)]
    for i, blob in enumerate(variants):
        folder = tmp_path / f"v{i}"  # a fresh folder: the shard's path must change per case
        shutil.copytree(src, folder)
        (folder / shard).write_bytes(blob)
        exercise(folder)


# -- torch archives whose data.pkl is rewritten ----------------------------------------------------

_ARCHIVES = ("dtypes_zip", "layouts_zip", "protocol4_zip", "quantized_zip", "training_zip",
             "lightning", "full_model", "torchscript")


@settings(max_examples=250, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(archive=st.sampled_from(_ARCHIVES), edit_list=st.lists(edits(), min_size=1, max_size=4))
def test_mutated_data_pkl(corpus: dict[str, Path], tmp_path: Path, archive: str,
                          edit_list: list) -> None:
    src = corpus[archive]
    exercise(rezip(src, mutate(data_pkl(src), edit_list), tmp_path / f"{next(_COUNTER)}.pt"))


@pytest.mark.parametrize("archive", _ARCHIVES)
def test_data_pkl_truncated_everywhere(corpus: dict[str, Path], tmp_path: Path,
                                       archive: str) -> None:
    pkl = data_pkl(corpus[archive])
    for cut in range(0, len(pkl), max(1, len(pkl) // 80)):
        got = exercise(rezip(corpus[archive], pkl[:cut], tmp_path / f"{cut}.pt"))
        assert isinstance(got, errors.PickleError), got  # a pickle without its STOP


# -- hand-written hostile pickles ------------------------------------------------------------------
# Opcodes are spelled out (Lib/pickletools.py); nothing here is ever given to pickle.loads.

P2 = b"\x80\x02"


s = binunicode  # short: the hostile pickles below use it on every line


def i(v: int) -> bytes:  # BININT or LONG1/LONG4
    if -(2**31) <= v < 2**31:
        return b"J" + struct.pack("<i", v)
    raw = v.to_bytes((v.bit_length() + 8) // 8, "little", signed=True)
    head = b"\x8a" + bytes([len(raw)]) if len(raw) < 256 else b"\x8b" + struct.pack("<i", len(raw))
    return head + raw


def tup(*items: bytes) -> bytes:
    return b"(" + b"".join(items) + b"t"


def glob(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def nested_list(depth: int) -> bytes:
    return b"]" * depth + b"a" * (depth - 1)


def dag(levels: int) -> bytes:
    """x0 = []; x(k+1) = [xk, xk]: 2**levels paths through 10 bytes a level."""
    out = b"]q\x00"
    for k in range(levels):
        out += b"(h" + bytes([k]) + b"h" + bytes([k]) + b"lq" + bytes([k + 1])
    return out


def pid(stype: str = "FloatStorage", key: bytes | None = None, numel: bytes | None = None) -> bytes:
    """torch's persistent id ('storage', torch.<stype>, key, 'cpu', numel)."""
    return tup(s("storage"), glob("torch", stype), key or s("0"), s("cpu"), numel or i(6)) + b"Q"


def rebuild(storage: bytes | None = None, offset: bytes = i(0), size: bytes = tup(i(2), i(3)),
            stride: bytes = tup(i(3), i(1))) -> bytes:
    return glob("torch._utils", "_rebuild_tensor_v2") + tup(
        storage or pid(), offset, size, stride, b"\x89", glob("collections", "OrderedDict") + b")R"
    ) + b"R"


def state_dict(value: bytes) -> bytes:
    return P2 + b"}" + s("w") + value + b"s."


def module(body: bytes) -> bytes:
    """A pickled nn.Module: NEWOBJ, then BUILD with its __dict__."""
    return glob("torch.nn", "Linear") + b")\x81" + b"}(" + body + b"ub"


Expect = type[ModelportError] | None  # None: it reads; else the error class it must raise
L, PE, OK = errors.LimitExceeded, errors.PickleError, None

# name -> (pickle, what a reader must answer)
HOSTILE: dict[str, tuple[bytes, Expect]] = {
    "control": (state_dict(rebuild()), OK),
    # nesting: the machine builds it iteratively; every walk after it must not recurse
    "deep-list": (P2 + nested_list(100_000) + b".", L),
    "deep-tuple": (P2 + b"N" + b"\x85" * 100_000 + b".", L),
    "deep-dict": (P2 + b"}" + (s("k") + b"}") * 5000 + b"s" * 5000 + b".", L),
    "deep-marks": (P2 + b"(" * 20_000 + b".", L),
    "deep-module-tree": (P2 + (glob("torch.nn", "Linear") + b")\x81}(" + s("_parameters") + b"}"
                               + s("_modules") + b"}" + s("sub")) * 3000 + b"N" + b"sub" * 3000
                         + b".", L),
    # CPython hashes tuples by unguarded C recursion: this key would kill the process
    "deep-tuple-key": (P2 + b"}" + b"N" + b"\x85" * 100_000 + b"Ns.", L),
    "deep-frozenset-item": (P2 + b"(N" + b"\x85" * 100_000 + b"\x91.", L),
    "deep-set-item-by-builder": (P2 + glob("builtins", "set") + b"((N" + b"\x85" * 100_000
                                 + b"ltR.", L),
    "deep-ordered-dict-key": (P2 + glob("collections", "OrderedDict") + b"(((N" + b"\x85" * 100_000
                              + b"K\x01tltR.", L),
    "tuple-key-shared-40-levels": (P2 + b"Nq\x00" + b"".join(
        b"h" + bytes([k]) + b"h" + bytes([k]) + b"\x86q" + bytes([k + 1]) for k in range(40))
        + b"}\x94h\x28K\x01s.", L),
    # (PUT, POP, GET, GET, TUPLE2) per level: one shared tuple on the stack, not forty, so the
    # REDUCE calls slice (without the POP it would call a tuple, which CPython refuses)
    "slice-of-a-shared-tuple": (P2 + glob("builtins", "slice") + b"N" + b"".join(
        b"q" + bytes([k]) + b"0h" + bytes([k]) + b"h" + bytes([k]) + b"\x86" for k in range(40))
        + b"\x85R.", L),
    "deep-repr-in-a-global": (P2 + nested_list(5000) + s("x") + b"\x93.", OK),
    # (a list is not callable, so CPython and the machine refuse REDUCE on one: the deep value
    # goes into the arguments of an unknown call, whose result is then called)
    "deep-repr-in-a-call": (P2 + glob("mylib", "f") + nested_list(5000) + b"\x85R)R.", OK),
    "deep-torch-device": (P2 + glob("torch", "device") + nested_list(5000) + b"\x85R.", OK),
    # self-reference through the memo: pickle.loads builds these, and so must modelport
    "list-holds-itself": (P2 + b"]q\x00h\x00a.", OK),
    "list-holds-itself-twice": (P2 + b"]q\x00(h\x00h\x00e.", OK),
    "dict-holds-itself": (P2 + b"}q\x00" + s("a") + b"h\x00s.", OK),
    "module-is-its-own-child": (P2 + glob("torch.nn", "Linear") + b")\x81q\x00}(" +
                                s("_parameters") + b"}" + s("_modules") + b"}" + s("sub") +
                                b"h\x00sub.", OK),
    "state-dict-holds-itself": (P2 + b"}q\x00" + s("w") + rebuild() + b"s" + s("self")
                                + b"h\x00s.", OK),
    # sharing: 2**40 paths through 400 bytes
    "billion-laughs-lists": (P2 + dag(40) + b".", L),
    "billion-laughs-dicts": (P2 + b"}q\x00" + b"".join(
        b"}(" + s("a") + b"h" + bytes([k]) + s("b") + b"h" + bytes([k]) + b"uq" + bytes([k + 1])
        for k in range(40)) + b".", L),
    "billion-laughs-with-a-tensor": (P2 + rebuild() + b"\x85q\x00" + b"".join(
        b"(h" + bytes([k]) + b"h" + bytes([k]) + b"lq" + bytes([k + 1]) for k in range(40))
        + b".", L),
    # declared lengths far past the data
    "long4-2GB": (P2 + b"\x8b\xff\xff\xff\x7f.", PE),
    "long4-negative": (P2 + b"\x8b\xff\xff\xff\xff.", PE),
    "binunicode8-giant": (P2 + b"\x8d" + struct.pack("<Q", 2**63) + b".", PE),
    "binbytes8-giant": (P2 + b"\x8e" + struct.pack("<Q", 2**64 - 1) + b".", PE),
    "bytearray8-1TB": (P2 + b"\x96" + struct.pack("<Q", 2**40) + b".", PE),
    "binstring-negative": (P2 + b"T\xff\xff\xff\xff.", PE),
    "frame-giant": (b"\x80\x04\x95" + struct.pack("<Q", 2**63) + b"N.", PE),
    # values no printer takes
    "int-of-24000-bits": (P2 + b"}" + s("a") + b"\x8b" + struct.pack("<i", 3000) + b"\x01" * 3000
                          + b"s.", OK),
    "int-of-24000-bits-as-key": (P2 + b"}\x8b" + struct.pack("<i", 3000) + b"\x01" * 3000
                                 + b"K\x01s.", OK),
    "complex-of-a-huge-int": (P2 + glob("builtins", "complex") + i(2**1600) + b"\x85R.", OK),
    "lone-surrogate-key": (P2 + b"}" + s("\ud800") + b"K\x01s.", OK),
    "bad-string-escape": (b"(S'\\x'\n.", PE),
    "bad-unicode-escape": (b"(V\\u12\n.", PE),
    # memo abuse
    "memo-key-4G": (P2 + b"Nr\xff\xff\xff\xff0j\xff\xff\xff\xff.", OK),
    "memo-miss": (P2 + b"h\x05.", PE),
    "memoize-empty-stack": (b"\x80\x04\x94.", PE),
    # tensor records a loader refuses
    "negative-size": (state_dict(rebuild(size=tup(i(-2), i(3)))), PE),
    "size-past-int64": (state_dict(rebuild(size=tup(i(0), i(2**70)), stride=tup(i(1), i(1)))), PE),
    "numel-past-int64": (state_dict(rebuild(size=tup(i(2**62), i(2**62)), stride=tup(i(1), i(1)))),
                         PE),
    "1000-dims": (state_dict(rebuild(size=tup(*[i(2**62)] * 1000), stride=tup(*[i(0)] * 1000))),
                  PE),
    "negative-stride": (state_dict(rebuild(stride=tup(i(-3), i(1)))), PE),
    "gigantic-stride": (state_dict(rebuild(stride=tup(i(2**70), i(1)))), PE),
    "stride-of-other-rank": (state_dict(rebuild(stride=tup(i(1)))), PE),
    "negative-offset": (state_dict(rebuild(offset=i(-1))), PE),
    "gigantic-offset": (state_dict(rebuild(offset=i(2**70))), PE),
    "string-offset": (state_dict(rebuild(offset=s("0"))), PE),
    "float-size": (state_dict(rebuild(size=tup(b"G" + struct.pack(">d", 2.0), i(3)))), PE),
    "torch-size-of-strings": (state_dict(rebuild(
        size=glob("torch", "Size") + tup(tup(s("a"), i(3))) + b"R")), PE),
    "torch-size-of-ints": (state_dict(rebuild(size=glob("torch", "Size") + tup(tup(i(2), i(3)))
                                              + b"R")), OK),
    "storage-is-an-int": (state_dict(rebuild(storage=i(5))), OK),  # inert, as in a bare pickle
    "storage-numel-past-the-member": (state_dict(rebuild(storage=pid(numel=i(2**70)))),
                                      errors.MalformedHeader),
    "storage-numel-of-6000-digits": (state_dict(rebuild(storage=pid(numel=i(2**20000)))),
                                     errors.MalformedHeader),
    "storage-numel-negative": (state_dict(rebuild(storage=pid(numel=i(-5)))), OK),
    "storage-numel-a-string": (state_dict(rebuild(storage=pid(numel=s("x")))), OK),
    "tensor-reaches-past-storage": (state_dict(rebuild(size=tup(i(20), i(3)))), OK),  # to_numpy
    # persistent ids of the wrong shape
    "pid-short": (state_dict(rebuild(storage=tup(s("storage"), glob("torch", "FloatStorage"))
                                     + b"Q")), PE),
    "pid-a-dict": (state_dict(rebuild(storage=b"}Q")), PE),
    "pid-nested-deep": (state_dict(rebuild(storage=nested_list(5000) + b"Q")), PE),
    "pid-key-a-list": (state_dict(rebuild(storage=pid(key=b"]"))), errors.MalformedHeader),
    "pid-key-nested-deep": (state_dict(rebuild(storage=pid(key=nested_list(5000)))),
                            errors.MalformedHeader),
    "pid-key-of-6000-digits": (state_dict(rebuild(storage=pid(key=i(2**20000)))),
                               errors.MalformedHeader),
    "pid-storage-type-nested-deep": (state_dict(rebuild(storage=tup(
        s("storage"), nested_list(5000), s("0"), s("cpu"), i(6)) + b"Q")), PE),
    "pid-unknown-storage-type": (state_dict(rebuild(storage=pid(stype="NopeStorage"))), PE),
    "pid-storage-type-with-a-newline": (state_dict(rebuild(storage=tup(
        s("storage"), s("torch") + s("Float\nStorage") + b"\x93", s("0"), s("cpu"), i(6)) + b"Q")),
        PE),
    "pid-missing-member": (state_dict(rebuild(storage=pid(key=s("9")))), errors.MalformedHeader),
    # builders given arguments they do not know: inert, never a crash
    "qtensor-qparams-an-int": (state_dict(glob("torch._utils", "_rebuild_qtensor") + tup(
        pid(), i(0), tup(i(2), i(3)), tup(i(3), i(1)), i(5)) + b"R"), OK),
    "v3-dtype-a-string": (state_dict(glob("torch._utils", "_rebuild_tensor_v3") + tup(
        pid(), i(0), tup(i(2), i(3)), tup(i(3), i(1)), b"\x89",
        glob("collections", "OrderedDict") + b")R", s("x")) + b"R"), OK),
    "parameter-of-an-int": (state_dict(glob("torch._utils", "_rebuild_parameter")
                                       + tup(i(1), b"\x88") + b"R"), OK),
    "ordered-dict-of-triples": (P2 + glob("collections", "OrderedDict") + tup(tup(i(1), i(2), i(3)))
                                + b"R.", OK),
    "set-of-a-list": (P2 + glob("builtins", "set") + tup(tup(b"]")) + b"R.", OK),
    "non-persistent-buffers-unhashable": (P2 + module(s("_parameters") + b"}" + s(
        "_non_persistent_buffers_set") + b"(]]l") + b".", OK),
    "ndarray-shape-past-int64": (P2 + glob("numpy.core.multiarray", "_reconstruct") + tup(
        glob("numpy", "ndarray"), tup(i(0)), s("b")) + b"R" + tup(
        i(1), tup(i(0), i(2**70)), glob("numpy", "dtype") + tup(s("f4"), b"\x89", b"\x88") + b"R",
        b"\x89", b"C\x00") + b"b.", PE),
    "ndarray-negative-shape": (P2 + glob("numpy.core.multiarray", "_reconstruct") + tup(
        glob("numpy", "ndarray"), tup(i(0)), s("b")) + b"R" + tup(
        i(1), tup(i(-1), i(-4)), glob("numpy", "dtype") + tup(s("f4"), b"\x89", b"\x88") + b"R",
        b"\x89", b"C\x04abcd") + b"b.", PE),
}


@contextlib.contextmanager
def _bounded_memory(limit: int = 64 << 20) -> Iterator[None]:
    """Peak Python + numpy allocations stay under ``limit`` (a 2 GB LONG4 must not be made)."""
    tracemalloc.start()
    try:
        yield
        _, peak = tracemalloc.get_traced_memory()
        assert peak < limit, f"{peak} bytes allocated"
    finally:
        tracemalloc.stop()


_HUGE_LENGTHS = {"long4-2GB", "binunicode8-giant", "binbytes8-giant", "bytearray8-1TB",
                 "frame-giant", "storage-numel-past-the-member", "size-past-int64",
                 "numel-past-int64", "1000-dims", "gigantic-offset", "gigantic-stride"}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_pickles(tmp_path: Path, name: str) -> None:
    data, expect = HOSTILE[name]
    path = torch_zip(data, tmp_path / "in.pt")
    # tracemalloc slows Python down tenfold: measure only where a length is declared
    with _bounded_memory() if name in _HUGE_LENGTHS else contextlib.nullcontext():
        got = exercise(path, seconds=20)
    if expect is None:
        assert isinstance(got, modelport.Checkpoint), got
    else:
        assert isinstance(got, expect), got
        assert got.path == str(path)
    if isinstance(got, errors.PickleError):
        assert got.member == "archive/data.pkl" and got.offset is not None, got
    if data.startswith(P2):  # and as a bare pickle, where storages are not persistent ids
        exercise(_write(tmp_path, data, ".pkl"), seconds=20)


def test_bad_tensor_record_names_its_opcode(tmp_path: Path) -> None:
    data = state_dict(rebuild(size=tup(i(-2), i(3))))
    path = torch_zip(data, tmp_path / "neg.pt")
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("archive/data.pkl")
        base = info.header_offset + 30 + len(info.filename) + len(info.extra)
    with pytest.raises(errors.PickleError) as raised:
        modelport.open(path)
    assert "size (-2, 3)" in str(raised.value)
    assert raised.value.offset == base + len(data) - len(b"Rs.")  # the REDUCE of the tensor


def test_self_referencing_trees_keep_their_tensors(tmp_path: Path) -> None:
    # {"w": tensor, "self": <the dict itself>}: the tensor is named once, the cycle shown as "..."
    data = P2 + b"}q\x00" + s("w") + rebuild() + b"s" + s("self") + b"h\x00s."
    ck = exercise(torch_zip(data, tmp_path / "cyc.pt"))
    assert isinstance(ck, modelport.Checkpoint)
    assert list(ck.weights) == ["w"] and not ck.other_tensors
    assert ck.metadata == {"self": "..."}
    loop: list = []
    loop.append(loop)
    loop.append({"again": loop})
    assert plain(loop) == ["...", {"again": "..."}]
    assert list(flatten_tensors(loop)) == []


def test_to_numpy_refuses_shapes_numpy_cannot_hold() -> None:
    for shape, strides in (((0, 2**62, 2**62), None), ((2**31, 2**31), (0, 0)), ((-3,), None)):
        entry = TensorEntry("t", by_name("F32"), shape,
                            Storage(16, data=bytes(16), key="k"), strides=strides)
        with pytest.raises(errors.MalformedHeader) as info:
            modelport.to_numpy(entry)
        assert info.value.tensor == "t"


def test_compressed_byteorder_is_not_inflated(tmp_path: Path) -> None:
    path = tmp_path / "bomb.pt"  # 50 KB on disk, 50 MB inflated, to say "little"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", P2 + b"}.")
        zf.writestr(zipfile.ZipInfo("archive/byteorder"), bytes(50 << 20),
                    compress_type=zipfile.ZIP_DEFLATED)
    with _bounded_memory(16 << 20):
        got = exercise(path)
    assert isinstance(got, errors.LimitExceeded) and got.member == "archive/byteorder", got


# -- legacy (pre-1.6) files ------------------------------------------------------------------------

_MAGIC = b"\x80\x02\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little") + b"."
_SYS_INFO = P2 + b"}(" + s("protocol_version") + i(1001) + s("little_endian") + b"\x88u."


def legacy(persistent_id: bytes, *, sys_info: bytes = _SYS_INFO, count: int = 6,
           keys: bytes = P2 + b"(" + s("0") + b"l.") -> bytes:
    tree = state_dict(rebuild(storage=persistent_id))
    return (_MAGIC + P2 + b"M\xe9\x03." + sys_info + tree + keys + struct.pack("<q", count)
            + bytes(range(24)))


def legacy_pid(view: bytes | None = None, numel: bytes = i(6)) -> bytes:
    parts = [s("storage"), glob("torch", "FloatStorage"), s("0"), s("cpu"), numel]
    return tup(*parts, *([view] if view is not None else [])) + b"Q"


LEGACY: dict[str, tuple[bytes, Expect]] = {
    "control": (legacy(legacy_pid()), OK),
    "view": (legacy(legacy_pid(tup(s("v"), i(0), i(6)))), OK),
    "view-an-int": (legacy(legacy_pid(i(5))), PE),
    "view-of-two": (legacy(legacy_pid(tup(s("v"), i(0)))), PE),
    "view-offset-a-string": (legacy(legacy_pid(tup(s("v"), s("a"), i(6)))), PE),
    "view-offset-negative": (legacy(legacy_pid(tup(s("v"), i(-1), i(6)))), PE),
    "view-past-its-storage": (legacy(legacy_pid(tup(s("v"), i(4), i(6)))), errors.MalformedHeader),
    "view-offset-2**70": (legacy(legacy_pid(tup(s("v"), i(2**70), i(6)))), errors.MalformedHeader),
    "numel-negative": (legacy(legacy_pid(numel=i(-1))), PE),
    "numel-a-string": (legacy(legacy_pid(numel=s("x"))), PE),
    "count-negative": (legacy(legacy_pid(), count=-5), errors.Truncated),
    "count-2**62": (legacy(legacy_pid(), count=2**62), errors.Truncated),
    "key-list-an-int": (legacy(legacy_pid(), keys=P2 + b"K\x05."), errors.MalformedHeader),
    "key-nested-deep": (legacy(legacy_pid(), keys=P2 + b"(" + nested_list(5000) + b"l."),
                        errors.MalformedHeader),
    "key-of-6000-digits": (legacy(legacy_pid(), keys=P2 + b"(" + i(2**20000) + b"l."),
                           errors.MalformedHeader),
    "sys-info-holds-itself": (legacy(legacy_pid(), sys_info=P2 + b"}q\x00" + s("a") + b"h\x00s."),
                              OK),
    "sys-info-of-a-huge-int": (legacy(legacy_pid(), sys_info=P2 + b"}" + s("a") + i(2**20000)
                                      + b"s."), OK),
}


@pytest.mark.parametrize("name", list(LEGACY))
def test_hostile_legacy_files(tmp_path: Path, name: str) -> None:
    data, expect = LEGACY[name]
    got = exercise(_write(tmp_path, data, ".pt"))
    if expect is None:
        assert isinstance(got, modelport.Checkpoint) and got.format == "torch-legacy", got
    else:
        assert isinstance(got, expect), got


# -- zip directories -------------------------------------------------------------------------------


def test_zip64_offsets_past_2_63(corpus: dict[str, Path], tmp_path: Path) -> None:
    """pread takes a signed off_t: a zip64 offset of 2**64-1 must be an error, not OverflowError."""
    data = bytearray(corpus["layouts_zip"].read_bytes())
    loc = data.rindex(b"PK\x06\x07")  # zip64 end-of-central-directory locator
    struct.pack_into("<Q", data, loc + 8, 2**64 - 1)
    exercise(_write(tmp_path, bytes(data), ".pt"))
    data = bytearray(corpus["layouts_zip"].read_bytes())
    central = data.index(b"PK\x01\x02")
    struct.pack_into("<I", data, central + 42, 0xFFFFFFFF)  # header offset -> zip64 extra
    exercise(_write(tmp_path, bytes(data), ".pt"))


# -- Hugging Face folders --------------------------------------------------------------------------


def _repo(corpus: dict[str, Path], tmp: Path, name: str = "hf_bert_st") -> Path:
    out = tmp / f"repo{next(_COUNTER)}"
    shutil.copytree(corpus[name], out)
    return out


def _only_index(repo: Path, weight_map: dict[str, str]) -> None:
    for p in repo.glob("model-*"):
        p.unlink()
    (repo / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))


REPO_CASES: dict[str, Callable[[Path], None]] = {
    "config-nested-100k": lambda r: (r / "config.json").write_text("[" * 100_000 + "]" * 100_000),
    "config-nested-900": lambda r: (r / "config.json").write_text('{"a":' * 900 + "1" + "}" * 900),
    "config-int-of-5000-digits": lambda r: (r / "config.json").write_text(
        '{"a": ' + "9" * 5000 + "}"),
    "config-not-utf8": lambda r: (r / "config.json").write_bytes(b'{"a": "\xff"}'),
    "index-nested-100k": lambda r: (r / "model.safetensors.index.json").write_text(
        "[" * 100_000 + "]" * 100_000),
    "index-a-list": lambda r: (r / "model.safetensors.index.json").write_text("[1]"),
    "shard-is-a-folder": lambda r: (_only_index(r, {"a": "sub"}), (r / "sub").mkdir()),
    "shard-links-to-its-folder": lambda r: (_only_index(r, {"a": "loop"}),
                                            (r / "loop").symlink_to(".")),
    "shard-is-a-fifo": lambda r: (_only_index(r, {"a": "fifo"}), os.mkfifo(r / "fifo")),
    "shard-is-the-index": lambda r: _only_index(r, {"a": "model.safetensors.index.json"}),
    "shard-name-with-nul": lambda r: _only_index(r, {"a": "x\x00y"}),
    "shard-outside": lambda r: _only_index(r, {"a": "../x.safetensors"}),
}


@pytest.mark.parametrize("name", list(REPO_CASES))
def test_hostile_repo_folders(corpus: dict[str, Path], tmp_path: Path, name: str) -> None:
    if name == "shard-is-a-fifo" and not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs here")
    repo = _repo(corpus, tmp_path)
    REPO_CASES[name](repo)
    got = exercise(repo, seconds=10)
    assert isinstance(got, ModelportError), got


def test_fifo_is_refused_not_read(tmp_path: Path) -> None:
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs here")
    os.mkfifo(tmp_path / "pipe.pt")
    got = exercise(tmp_path / "pipe.pt", seconds=5)  # opening it for reading would block
    assert isinstance(got, errors.UnknownFormat) and "not a regular file" in str(got)


# -- the command line: exit 0 or 2, never more than one line on stderr -----------------------------


def _cli_cases(corpus: dict[str, Path], tmp: Path) -> list[Path]:
    data = corpus["training_zip"].read_bytes()
    return [
        corpus["training_zip"],
        _write(tmp, data[: len(data) // 2], ".pt"),  # truncated inside the storages
        _write(tmp, data[:-30], ".pt"),  # truncated inside the central directory
        torch_zip(HOSTILE["deep-list"][0], tmp / "deep.pt"),
        torch_zip(HOSTILE["negative-size"][0], tmp / "negative.pt"),
        torch_zip(HOSTILE["lone-surrogate-key"][0], tmp / "surrogate.pt"),
        torch_zip(HOSTILE["dict-holds-itself"][0], tmp / "cycle.pt"),
        torch_zip(HOSTILE["pid-storage-type-with-a-newline"][0], tmp / "newline.pt"),
        _write(tmp, corpus["onnx"].read_bytes()[:100], ".onnx"),
        _write(tmp, b"\x00" * 64, ".safetensors"),
    ]


@pytest.mark.parametrize("as_json", [False, True], ids=["table", "json"])
def test_cli_inspect_exit_codes(corpus: dict[str, Path], tmp_path: Path, as_json: bool) -> None:
    codes = set()
    for path in _cli_cases(corpus, tmp_path):
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), deadline(20):
            code = main(["inspect", str(path), *(["--json"] if as_json else [])])
        lines = err.getvalue().splitlines()
        assert code in (0, 2), (path, code, lines)
        if code == 2:
            assert len(lines) == 1 and lines[0].startswith("modelport inspect: error: "), lines
            assert str(path) in lines[0]
        else:
            assert lines == [], lines
            out.getvalue().encode("utf-8")  # printable as it stands: no lone surrogates
            if as_json:
                json.loads(out.getvalue())
        codes.add(code)
    assert codes == {0, 2}


# -- regressions: bugs once found in the safetensors, numpy and onnx readers ----------------------------------


def _npy(header: str) -> bytes:
    h = header.encode("latin1")
    h += b" " * ((64 - (10 + len(h) + 1) % 64) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(h)) + h + bytes(8)


def _npz_patched(patch: Callable[[bytearray, int], None]) -> bytes:
    np = pytest.importorskip("numpy")
    buf = io.BytesIO()
    np.savez(buf, a=np.zeros(2))
    data = bytearray(buf.getvalue())
    patch(data, data.rindex(b"PK\x01\x02"))
    return bytes(data)


def _version_99(data: bytearray, central: int) -> None:
    data[central + 6] = 0xFF  # "version needed to extract" 25.5


def _nul_name(data: bytearray, central: int) -> None:
    data[central + 46] = 0  # "a.npy" -> "\0.npy": zipfile cuts the name at the NUL


def _safetensors(header: dict) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + bytes(16)


def _onnx_thousand_dims() -> bytes:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    t = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[2**62] * 1000)
    graph = helper.make_graph([], "g", [], [helper.make_tensor_value_info("y", 1, [1])], [t])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return onnx._serialize(model) if hasattr(onnx, "_serialize") else model.SerializeToString()


def _xfail(owner: str, what: str) -> pytest.MarkDecorator:
    return pytest.mark.xfail(strict=True, reason=f"{owner}: {what}; drop this mark once fixed")


UPSTREAM = [
    pytest.param(lambda: _npy("{'descr': '(,4)<f8', 'fortran_order': False, 'shape': (1,), }"),
                 ".npy", id="npy-descr-syntax-error"),
    pytest.param(lambda: _npz_patched(_version_99), ".npz", id="npz-extract-version"),
    pytest.param(lambda: _npz_patched(_nul_name), ".npz", id="npz-nul-in-member-name"),
    pytest.param(lambda: _safetensors({"w": {"dtype": ["F32"], "shape": [4],
                                             "data_offsets": [0, 16]}}),
                 ".safetensors", id="safetensors-dtype-a-list"),
    pytest.param(_onnx_thousand_dims, ".onnx", id="onnx-1000-dims-no-data"),
]


@pytest.mark.parametrize(("build", "suffix"), UPSTREAM)
def test_other_readers(tmp_path: Path, build: Callable[[], bytes], suffix: str) -> None:
    exercise(_write(tmp_path, build(), suffix))


def test_nesting_inside_files_is_one_limit(tmp_path: Path) -> None:
    """``Limits.nesting`` bounds the structures nested inside a file: a repo's JSON and HDF5
    groups (and ONNX subgraphs), refused in one line past it, read at the default."""
    from modelport.errors import LimitExceeded, RepoError
    from modelport.limits import Limits

    repo = tmp_path / "repo"
    repo.mkdir()
    import numpy as np
    from safetensors.numpy import save_file

    save_file({"w": np.zeros(2, np.float32)}, str(repo / "model.safetensors"))
    deep: object = 1
    for _ in range(10):
        deep = {"k": deep}
    (repo / "config.json").write_text(json.dumps({"model_type": "x", "extra": deep}))
    assert modelport.open(repo).info["config"]["model_type"] == "x"
    with pytest.raises(RepoError, match="JSON nests more than 5 levels deep"):
        modelport.open(repo, limits=Limits(nesting=5))
    h5 = Path(__file__).parent / "fixtures" / "keras" / "latest.h5"
    assert modelport.open(h5).weights
    with pytest.raises(LimitExceeded, match="nest more than 1 deep"):
        modelport.open(h5, limits=Limits(nesting=1))
