"""GGUF (llama.cpp): typed key-value metadata, tensor infos, then aligned tensor data.

Layout (ggml ``docs/gguf.md``; ``ggml/src/gguf.cpp`` ``gguf_init_from_reader``), little-endian::

    byte 0  "GGUF"  u32 version (1, 2 or 3)
            u64 N tensors, u64 K key-value pairs                      (v1: u32 each)
            K x  key: string | u32 value type | value
            N x  name: string | u32 n_dims | n_dims x u64 ne (v1: u32), ne[0] innermost
                 | u32 ggml type | u64 offset into the data section
            zero padding up to a multiple of general.alignment (u32, a power of two, 32 if
            absent), counted from byte 0
    data    tensor T: data + offset_T, a multiple of the alignment, ggml_nbytes(T) bytes;
            llama.cpp wants the tensors in info order, each padded to the alignment

    string  u64 length (v1: u32), then that many bytes (UTF-8, no terminator)
    value   0 u8  1 i8  2 u16  3 i16  4 u32  5 i32  6 f32  7 bool (1 byte)  8 string
            9 array: u32 element type, u64 count (v1: u32), the elements  10 u64  11 i64  12 f64

A tensor's size comes from the ggml type table in ``dtypes`` (block size and bytes per block);
``ne`` is listed innermost first, so the numpy/torch shape is ``ne`` reversed. A file written on a
big-endian machine has the version's low 16 bits zero when read little-endian (gguf.cpp's test).

Every count and length is checked against the bytes that remain before anything is allocated
(the gguf package's reader trusts them: an array length of 2**63 hangs it), as are the tensor
shapes (products that overflow int64), types (unknown and removed ggml ids), offsets (aligned,
inside the data section, no two tensors overlapping) and the alignment itself. What llama.cpp
refuses but the gguf package reads (arrays of arrays, more than 4 dims, names of 64 bytes or more,
tensors out of llama.cpp's order) is read and listed in ``notes``, which the scanner reports.
"""

from __future__ import annotations

import builtins
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ...classify import classify, reselect
from ...dtypes import GGML_REMOVED, DType, by_ggml
from ...errors import InputError, LimitExceeded, MalformedHeader, Truncated, UnsupportedFormat
from ...limits import DEFAULT_LIMITS, Limits
from ...model import Checkpoint, Storage, TensorEntry
from ..base import Options
from . import FORMAT_ID, MAGIC

__all__ = ["FORMAT_ID", "MAGIC", "KV", "TensorInfo", "Header", "parse", "open", "read",
           "VALUE_TYPES", "FILE_TYPES", "summary", "metadata_dict"]

DEFAULT_ALIGNMENT = 32
MAX_DIMS = 4  # GGML_MAX_DIMS: llama.cpp refuses more
MAX_NAME = 64  # GGML_MAX_NAME: llama.cpp refuses names of this length or longer
_I64 = 1 << 63
_CORRUPT = "the file is corrupt or was not written by a GGUF writer; download or convert it again"
_TRUNC = "the file is truncated; download it again"

# Value type id -> (short name used in type descriptors, struct code; "" for string/array).
VALUE_TYPES: dict[int, tuple[str, str]] = {
    0: ("u8", "B"), 1: ("i8", "b"), 2: ("u16", "H"), 3: ("i16", "h"), 4: ("u32", "I"),
    5: ("i32", "i"), 6: ("f32", "f"), 7: ("bool", "?"), 8: ("str", ""), 9: ("array", ""),
    10: ("u64", "Q"), 11: ("i64", "q"), 12: ("f64", "d"),
}
TYPE_IDS = {name: code for code, (name, _) in VALUE_TYPES.items()}
STRING, ARRAY = 8, 9

# general.file_type (llama.h ``llama_ftype``; gguf.constants.LlamaFileType) -> the name llama.cpp's
# quantize tool and file names use.
FILE_TYPES: dict[int, str] = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 4: "Q4_1_SOME_F16", 7: "Q8_0", 8: "Q5_0",
    9: "Q5_1", 10: "Q2_K", 11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M",
    16: "Q5_K_S", 17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S",
    22: "IQ3_XS", 23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S",
    29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16", 36: "TQ1_0", 37: "TQ2_0",
    38: "MXFP4_MOE", 39: "NVFP4", 40: "Q1_0", 1024: "GUESSED",
}


@dataclass(frozen=True)
class KV:
    """One metadata pair. ``type`` describes the value: ``u32``, ``str``, ``[str]``,
    ``[[u8]]`` (an array's element type in brackets; for arrays of arrays, the first inner
    array's, ``[[*]]`` when inner arrays differ)."""

    key: str
    type: str
    value: Any
    offset: int  # where the key starts


@dataclass(frozen=True)
class TensorInfo:
    name: str
    ne: tuple[int, ...]  # ggml order: ne[0] is the innermost (contiguous) dimension
    dtype: DType
    offset: int  # relative to the data section
    start: int  # absolute file offset of the first byte
    nbytes: int
    at: int  # where the info record starts

    @property
    def shape(self) -> tuple[int, ...]:
        """numpy/torch order (C order): ``ne`` reversed."""
        return tuple(reversed(self.ne))


@dataclass
class Header:
    path: str
    version: int
    byteorder: str  # "<" or ">" (a file written on a big-endian machine)
    kv: list[KV]
    tensors: list[TensorInfo]
    alignment: int
    data_start: int  # absolute offset of the data section (after the padding)
    size: int  # file size
    header_end: int  # where the tensor infos end (before the padding)
    # (rule, message, offset, tensor) for what llama.cpp refuses but modelport reads
    notes: list[tuple[str, str, int | None, str | None]] = field(default_factory=list)

    def get(self, key: str, default: Any = None) -> Any:
        for kv in self.kv:
            if kv.key == key:
                return kv.value
        return default


_FIRST_READ = 1 << 20  # the header of most files (their token lists too) fits in a few MB


class _Reader:
    """A cursor over the file's first bytes, read as far as parsing gets (a buffer that grows
    by doubling, so a 4 GB file with a 2 MB header costs about 2 MB of reads); every read is
    checked against the file's end first."""

    def __init__(self, f: Any, path: str, size: int, order: str, limits: Limits) -> None:
        self.f, self.path, self.size, self.o, self.limits = f, path, size, order, limits
        self.buf = bytearray()
        self.pos = 0
        self.v1 = False
        self.decoded = 0  # bytes of metadata decoded into Python objects

    def load(self, end: int) -> None:
        """Make bytes up to ``end`` (at most the file's size) available in ``buf``."""
        have = len(self.buf)
        if end <= have:
            return
        want = min(self.size, max(end, 2 * have, _FIRST_READ))
        from ... import remote

        remote.ensure(self.path, have, want - have)  # a no-op for a local file
        chunk = os.pread(self.f.fileno(), want - have, have)
        if len(chunk) != want - have:
            raise self.fail(f"the file changed while it was read (got {len(chunk)} bytes at "
                            f"byte {have})", have, Truncated, hint=_TRUNC)
        self.buf += chunk

    def fail(self, msg: str, offset: int, cls: type[InputError] = MalformedHeader,
             tensor: str | None = None, hint: str = _CORRUPT) -> InputError:
        return cls(msg, path=self.path, format=FORMAT_ID, offset=offset, tensor=tensor, hint=hint)

    def need(self, n: int, what: str) -> None:
        if n > self.size - self.pos:
            raise self.fail(f"the file ends at byte {self.size} inside {what} ({n} bytes at "
                            f"byte {self.pos})", self.pos, Truncated, hint=_TRUNC)
        self.load(self.pos + n)

    def unpack(self, code: str, what: str) -> Any:
        st = struct.Struct(self.o + code)
        self.need(st.size, what)
        (value,) = st.unpack_from(self.buf, self.pos)
        self.pos += st.size
        return value

    def count(self, what: str) -> int:
        """A length or count: u32 in version 1, u64 after."""
        return int(self.unpack("I" if self.v1 else "Q", what))

    def room(self, n: int, each: int, what: str, at: int) -> None:
        """``n`` items of at least ``each`` bytes must fit in what remains of the file."""
        left = self.size - self.pos
        if n > left // max(each, 1):
            raise self.fail(f"{what}: count {n} needs at least {n * each} bytes but only {left} "
                            "remain in the file", at)

    def string(self, what: str) -> str:
        at = self.pos
        n = self.count(f"the length of {what}")
        if n > self.size - self.pos:
            raise self.fail(f"{what}: string length {n} runs past the end of the file "
                            f"({self.size - self.pos} bytes remain)", at,
                            Truncated if n < 1 << 40 else MalformedHeader)
        self.load(self.pos + n)
        raw = bytes(self.buf[self.pos:self.pos + n])
        self.pos += n
        self.account(n, at)
        # Tokens are bytes to llama.cpp; invalid UTF-8 is kept byte for byte (surrogateescape).
        return raw.decode("utf-8", "surrogateescape")

    def strings(self, n: int, key: str) -> list[str]:
        """``n`` strings in a row (token lists: hundreds of thousands), checked one by one."""
        out: list[str] = []
        buf, pos, size = self.buf, self.pos, self.size
        head = struct.Struct(self.o + ("I" if self.v1 else "Q"))
        width = head.size
        unpack = head.unpack_from
        for i in range(n):
            if pos + width > len(buf):
                self.pos = pos
                self.need(width, f"the length of element {i} of {key!r}")
            (k,) = unpack(buf, pos)
            pos += width
            if k > size - pos:
                self.pos = pos - width
                raise self.fail(f"element {i} of {key!r}: string length {k} runs past the end "
                                f"of the file ({size - pos} bytes remain)", pos - width,
                                Truncated if k < 1 << 40 else MalformedHeader)
            if pos + k > len(buf):
                self.load(pos + k)
            out.append(buf[pos:pos + k].decode("utf-8", "surrogateescape"))
            pos += k
        self.account(pos - self.pos, self.pos)
        self.pos = pos
        return out

    def account(self, n: int, at: int) -> None:
        self.decoded += n
        if self.decoded > self.limits.gguf_metadata_bytes:
            raise self.fail(f"metadata decodes to more than {self.limits.gguf_metadata_bytes} "
                            "bytes", at, LimitExceeded,
                            hint="raise Limits.gguf_metadata_bytes if you trust this file")

    def value(self, vtype: int, key: str, depth: int = 0) -> tuple[str, Any]:
        """(type descriptor, value) of one value of type ``vtype``."""
        if vtype == STRING:
            return "str", self.string(f"the value of {key!r}")
        if vtype == ARRAY:
            return self.array(key, depth + 1)
        spec = VALUE_TYPES.get(vtype)
        if spec is None:
            raise self.fail(f"key {key!r} has unknown value type {vtype}", self.pos - 4)
        name, code = spec
        value = self.unpack(code, f"the value of {key!r}")
        self.account(8, self.pos)
        return name, value

    def array(self, key: str, depth: int) -> tuple[str, Any]:
        at = self.pos
        if depth > self.limits.gguf_nesting:
            raise self.fail(f"key {key!r}: arrays nest more than {self.limits.gguf_nesting} deep",
                            at, LimitExceeded, hint="the file is corrupt or hostile")
        etype = int(self.unpack("I", f"the element type of {key!r}"))
        n = self.count(f"the length of {key!r}")
        if n > self.limits.gguf_array:
            raise self.fail(f"key {key!r}: array of {n} elements exceeds the limit of "
                            f"{self.limits.gguf_array}", at, LimitExceeded,
                            hint="raise Limits.gguf_array if you trust this file")
        if etype == STRING:
            self.room(n, 4 if self.v1 else 8, f"key {key!r}", at)
            self.account(8 * n, at)
            return "[str]", self.strings(n, key)
        if etype == ARRAY:
            self.room(n, 8 if self.v1 else 12, f"key {key!r}", at)
            items = [self.array(key, depth + 1) for _ in range(n)]
            kinds = {t for t, _ in items}
            inner = kinds.pop() if len(kinds) == 1 else "[*]" if kinds else "[?]"
            return f"[{inner}]", [v for _, v in items]
        spec = VALUE_TYPES.get(etype)
        if spec is None:
            raise self.fail(f"key {key!r} is an array of unknown value type {etype}", at)
        name, code = spec
        st = struct.Struct(self.o + code)
        self.room(n, st.size, f"key {key!r}", at)
        self.account(8 * n, at)
        self.load(self.pos + n * st.size)
        values = list(struct.unpack_from(f"{self.o}{n}{code}", self.buf, self.pos)) if n else []
        self.pos += n * st.size
        return f"[{name}]", values


def parse(path: str | os.PathLike[str], limits: Limits = DEFAULT_LIMITS) -> Header:
    """Read and validate everything before the tensor data; no tensor byte is read.

    Raises ``Truncated`` when the file ends inside a structure, ``LimitExceeded`` past a limit,
    ``UnsupportedFormat`` for a version or ggml type modelport cannot read, and
    ``MalformedHeader`` for everything else GGUF forbids.
    """
    path = os.fspath(path)
    with builtins.open(path, "rb") as f:
        return _parse(f, path, os.fstat(f.fileno()).st_size, limits)


def _parse(f: Any, path: str, size: int, limits: Limits) -> Header:
    r = _Reader(f, path, size, "<", limits)
    r.need(8, "the GGUF magic and version")
    buf = r.buf
    if bytes(buf[:4]) != MAGIC:
        raise r.fail(f"not a GGUF file: the magic is {bytes(buf[:4])!r}, not b'GGUF'", 0)
    version = struct.unpack_from("<I", buf, 4)[0]
    if version and not version & 0xFFFF:
        r.o = ">"  # written on a big-endian machine (gguf.cpp tells them apart the same way)
        version = struct.unpack_from(">I", buf, 4)[0]
    r.pos = 8
    if version not in (1, 2, 3):
        cls = UnsupportedFormat if version > 3 else MalformedHeader
        raise r.fail(f"GGUF version {version} (modelport reads versions 1 to 3)", 4, cls,
                     hint="a newer llama.cpp may read it" if version > 3 else _CORRUPT)
    r.v1 = version == 1
    n_tensors = r.count("the tensor count")
    n_kv = r.count("the key-value count")
    if n_kv > limits.gguf_kv:
        raise r.fail(f"{n_kv} key-value pairs exceed the limit of {limits.gguf_kv}", 16,
                     LimitExceeded, hint="raise Limits.gguf_kv if you trust this file")
    if n_tensors > limits.tensors:
        raise r.fail(f"{n_tensors} tensors exceed the limit of {limits.tensors}", 8,
                     LimitExceeded, hint="raise Limits.tensors if you trust this file")
    # The smallest key-value pair: an empty key's length, a type, a one-byte value.
    r.room(n_kv, (4 if r.v1 else 8) + 4 + 1, "the key-value count", 8 if r.v1 else 16)
    # The smallest tensor info: a name length, n_dims, type and offset.
    r.room(n_tensors, (4 if r.v1 else 8) + 4 + 4 + 8, "the tensor count", 8)

    kvs: list[KV] = []
    keys: set[str] = set()
    notes: list[tuple[str, str, int | None, str | None]] = []
    for i in range(n_kv):
        at = r.pos
        key = r.string(f"key {i}")
        if not key:
            raise r.fail(f"key {i} is empty", at)
        if key in keys:
            # gguf.cpp and the gguf package both refuse a repeated key: which copy wins would
            # depend on the reader.
            raise r.fail(f"key {key!r} appears twice", at)
        keys.add(key)
        vtype = int(r.unpack("I", f"the type of {key!r}"))
        if vtype not in VALUE_TYPES:
            raise r.fail(f"key {key!r} has unknown value type {vtype}", r.pos - 4)
        desc, value = r.value(vtype, key)
        if desc.startswith("[["):
            notes.append(("gguf-nested-array", f"key {key!r} is an array of arrays, which "
                          "llama.cpp refuses to load (the gguf package reads it)", at, None))
        kvs.append(KV(key, desc, value, at))

    alignment = DEFAULT_ALIGNMENT
    for kv in kvs:
        if kv.key == "general.alignment":
            if kv.type != "u32":
                raise r.fail(f"general.alignment is of type {kv.type}; GGUF requires u32",
                             kv.offset)
            alignment = kv.value
            if alignment == 0 or alignment & (alignment - 1):
                raise r.fail(f"general.alignment {alignment} is not a power of two", kv.offset)

    infos = []
    names: set[str] = set()
    for i in range(n_tensors):
        at = r.pos
        name = r.string(f"the name of tensor {i}")
        if name in names:
            raise r.fail(f"tensor name {name!r} appears twice", at, tensor=name)
        names.add(name)
        if len(name.encode("utf-8", "surrogateescape")) >= MAX_NAME:
            notes.append(("gguf-long-name", f"tensor name of {len(name)} characters; llama.cpp "
                          f"refuses names of {MAX_NAME} bytes or more", at, name))
        n_dims = int(r.unpack("I", f"the dimension count of {name!r}"))
        r.room(n_dims, 4 if r.v1 else 8, f"tensor {name!r} dimension count", at)
        if n_dims > MAX_DIMS:
            notes.append(("gguf-dims", f"tensor has {n_dims} dimensions; llama.cpp refuses "
                          f"more than {MAX_DIMS}", at, name))
        ne = tuple(r.count(f"the dimensions of {name!r}") for _ in range(n_dims))
        numel = 1
        for d in ne:
            numel *= d
            if d >= _I64 or numel >= _I64:
                raise r.fail(f"tensor shape {list(ne)} overflows a 64-bit element count", at,
                             tensor=name)
        type_at = r.pos
        gtype = int(r.unpack("I", f"the type of {name!r}"))
        dtype = by_ggml(gtype)
        if dtype is None:
            if gtype in GGML_REMOVED:
                raise r.fail(f"ggml type {GGML_REMOVED[gtype]} ({gtype}) was removed from "
                             "ggml; no current reader knows its layout", type_at,
                             UnsupportedFormat, tensor=name,
                             hint="convert the original model again with a current llama.cpp")
            raise r.fail(f"unknown ggml type {gtype}", type_at, tensor=name)
        if ne and ne[0] % dtype.block:
            raise r.fail(f"a row of {ne[0]} elements is not a whole number of {dtype.name} "
                         f"blocks ({dtype.block} elements each)", type_at, tensor=name)
        if not ne and dtype.block > 1:
            raise r.fail(f"a scalar cannot be stored as {dtype.name} blocks", type_at,
                         tensor=name)
        offset = int(r.unpack("Q", f"the data offset of {name!r}"))
        infos.append((name, ne, dtype, offset, at, numel))
    header_end = r.pos

    data_start = header_end + (-header_end % alignment) if n_tensors else header_end
    if n_tensors and data_start > size:
        raise r.fail(f"the data section starts at byte {data_start} but the file has {size}",
                     header_end, Truncated, hint=_TRUNC)
    tensors = []
    for name, ne, dtype, offset, at, numel in infos:
        nbytes = dtype.size(numel)
        if offset % alignment:
            raise r.fail(f"data offset {offset} is not a multiple of the alignment {alignment}",
                         at, tensor=name)
        if offset > size - data_start:
            raise r.fail(f"data offset {offset} is outside the data section "
                         f"({size - data_start} bytes from byte {data_start})", at, tensor=name)
        if nbytes > size - data_start - offset:
            raise r.fail(f"{nbytes} bytes at data offset {offset} run past the end of the file "
                         f"({size} bytes)", data_start + offset, Truncated, tensor=name,
                         hint=_TRUNC)
        tensors.append(TensorInfo(name, ne, dtype, offset, data_start + offset, nbytes, at))

    # Two tensors sharing bytes: writing one changes the other, and llama.cpp refuses the file.
    spans = sorted((t.offset, t.offset + t.nbytes, t.name) for t in tensors if t.nbytes)
    for (_, e0, n0), (b1, _, n1) in zip(spans, spans[1:]):
        if b1 < e0:
            raise r.fail(f"bytes {data_start + b1}..{data_start + e0} belong to tensor {n0!r} "
                         "too: tensors overlap", data_start + b1, tensor=n1)
    expect = 0
    for t in tensors:
        if t.offset != expect:  # gguf.cpp: "tensor has offset ..., expected ..."
            notes.append(("gguf-order", f"tensor at data offset {t.offset} where llama.cpp "
                          f"expects {expect} (tensors in info order, each padded to the "
                          f"alignment); llama.cpp refuses the file", t.at, t.name))
            break
        expect += t.nbytes + (-t.nbytes % alignment)
    return Header(path, version, r.o, kvs, tensors, alignment, data_start, size, header_end,
                  notes)


def metadata_dict(header: Header) -> dict[str, Any]:
    """Every key with its full value, in file order."""
    return {kv.key: kv.value for kv in header.kv}


def summary(header: Header) -> dict[str, Any]:
    """What ``inspect`` shows first: architecture, sizes, tokenizer, quantization."""
    arch = header.get("general.architecture")
    pre = f"{arch}." if isinstance(arch, str) else "\0"

    def arch_key(name: str) -> Any:
        return header.get(pre + name)

    tokens = header.get("tokenizer.ggml.tokens")
    quant: dict[str, int] = {}
    nbytes = numel = 0
    for t in header.tensors:
        quant[t.dtype.name] = quant.get(t.dtype.name, 0) + 1
        nbytes += t.nbytes
        n = 1
        for d in t.ne:
            n *= d
        numel += n
    ftype = header.get("general.file_type")
    templates = {kv.key: kv.value for kv in header.kv
                 if kv.key.startswith("tokenizer.chat_template") and isinstance(kv.value, str)}
    out = {
        "version": header.version,
        "byteorder": "big" if header.byteorder == ">" else "little",
        "alignment": header.alignment,
        "data_offset": header.data_start,
        "tensor_count": len(header.tensors),
        "kv_count": len(header.kv),
        "architecture": arch,
        "name": header.get("general.name"),
        "context_length": arch_key("context_length"),
        "embedding_length": arch_key("embedding_length"),
        "layers": arch_key("block_count"),
        "heads": arch_key("attention.head_count"),
        "heads_kv": arch_key("attention.head_count_kv"),
        "vocab_size": arch_key("vocab_size") or (len(tokens) if isinstance(tokens, list)
                                                 else None),
        "tokenizer_model": header.get("tokenizer.ggml.model"),
        "tokenizer_pre": header.get("tokenizer.ggml.pre"),
        "file_type": FILE_TYPES.get(ftype, f"unknown ({ftype})") if isinstance(ftype, int)
        else None,
        "bits_per_weight": round(nbytes * 8 / numel, 2) if numel else None,
        "quantization": dict(sorted(quant.items(), key=lambda kv: -kv[1])),
        "chat_templates": templates,
    }
    return out


# Control characters other than tab and newline shown escaped: a template must not drive the
# terminal it is shown on.
_CONTROL = {c: f"\\x{c:02x}" for c in [*range(32), 127] if c not in (9, 10)}


def summary_lines(g: dict[str, Any]) -> dict[str, str | list[str]]:
    """``inspect``'s lines (``info["summary"]``): model hyper-parameters, tokenizer,
    quantization ("Q4_K_M: 4.8 bits per weight"), and the chat templates, shown, never
    rendered."""
    def known(*pairs: tuple[str, Any]) -> str:
        return ", ".join(f"{v} {k}" if k else str(v) for k, v in pairs if v is not None)

    heads = g.get("heads")
    kv = g.get("heads_kv")
    if heads is not None and kv is not None and kv != heads:
        heads = f"{heads} ({kv if not isinstance(kv, list) else 'per-layer'} kv)"
    out: dict[str, str | list[str]] = {
        "gguf": f"version {g['version']}, {g['kv_count']} keys, {g['tensor_count']} tensors, "
        f"alignment {g['alignment']}" + (", big-endian" if g["byteorder"] == "big" else "")}
    model = known(("", g.get("architecture")), ("context", g.get("context_length")),
                  ("layers", g.get("layers")), ("heads", heads),
                  ("embedding", g.get("embedding_length")))
    if model:
        out["model"] = model
    if g.get("tokenizer_model") is not None or g.get("vocab_size") is not None:
        pre = f" (pre-tokenizer {g['tokenizer_pre']})" if g.get("tokenizer_pre") else ""
        out["tokenizer"] = f"{g.get('tokenizer_model')}{pre}, {g.get('vocab_size')} tokens"
    quant = ", ".join(f"{k} x{v}" for k, v in (g.get("quantization") or {}).items())
    if g.get("bits_per_weight") is not None:
        what = g.get("file_type") or "mixed"
        out["quantized"] = f"{what}: {g['bits_per_weight']:.1f} bits per weight ({quant})"
    elif g.get("file_type"):
        out["file type"] = g["file_type"]
    for key, text in (g.get("chat_templates") or {}).items():
        rows = text.translate(_CONTROL).split("\n")
        label = "template" if key == "tokenizer.chat_template" else key.rpartition(".")[2]
        out[label] = ["(shown, never rendered)"] + [f"| {r}" for r in rows]
    return out


def open(path: str | os.PathLike[str], limits: Limits = DEFAULT_LIMITS) -> Checkpoint:
    """The file as a Checkpoint: every tensor is a weight (named as in the file, shaped in
    numpy order); ``metadata`` holds every key with its full value; ``info["gguf"]`` the
    summary ``inspect`` shows."""
    path = os.fspath(path)
    header = parse(path, limits)
    if header.byteorder == ">" and header.tensors:
        raise UnsupportedFormat("a big-endian GGUF file: its tensors cannot be read yet",
                                path=path, format=FORMAT_ID, offset=4,
                                hint="convert it on the machine it was made for")
    tree = {t.name: entry(t, path) for t in header.tensors}
    g = summary(header)
    info = {"gguf": g, "gguf_notes": [n[1] for n in header.notes], "summary": summary_lines(g),
            "gguf_types": {kv.key: kv.type for kv in header.kv}}
    ck = classify(path, FORMAT_ID, tree, info=info, file_size=header.size)
    ck.metadata = metadata_dict(header)
    return ck


def entry(t: TensorInfo, path: str) -> TensorEntry:
    return TensorEntry(t.name, t.dtype, t.shape, Storage(t.nbytes, path, t.start, key=t.name))


def read(path: str, options: Options) -> Checkpoint:
    ck = open(path, options.limits)
    if options.select:
        meta = ck.metadata
        ck = reselect(ck, options.select)
        ck.metadata = meta
    return ck


def iter_templates(header: Header) -> Iterator[tuple[str, str, int]]:
    """(key, template text, offset) of every chat template in the metadata: the
    ``tokenizer.chat_template`` key, its named variants (``tokenizer.chat_template.rag``) and
    any other string that names itself a chat template."""
    for kv in header.kv:
        if "chat_template" in kv.key:
            if isinstance(kv.value, str):
                yield kv.key, kv.value, kv.offset
            elif isinstance(kv.value, list):
                for i, v in enumerate(kv.value):
                    if isinstance(v, str):
                        yield f"{kv.key}[{i}]", v, kv.offset
