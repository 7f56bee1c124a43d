"""TensorFlow checkpoints (TF1 ``Saver`` and TF2 ``tf.train.Checkpoint``, the "V2" tensor bundle),
read in place without TensorFlow.

    <prefix>.index                  an SSTable (containers/sstable.py) mapping key -> proto:
                                    key ""  BundleHeaderProto  1 num_shards  2 endianness
                                                               (0 LITTLE, 1 BIG)  3 version
                                    others  BundleEntryProto   1 dtype  2 shape  3 shard_id
                                            4 offset  5 size  6 crc32c (masked)  7 slices*
    <prefix>.data-NNNNN-of-MMMMM    tensor bytes, shard NNNNN of MMMMM, at each entry's offset
                                    (no alignment; byte order as the header says)
    checkpoint                      text proto naming the latest prefix (model_checkpoint_path)

Tensor bytes are the C-order elements. A DT_STRING tensor is ``varint64 length`` per element,
a masked CRC-32C of the lengths (as uint32 each), then the bytes; strings are values, not
weights. A variable saved in slices (TF1 ``partitioner=``) has an entry with no bytes but a
``slices`` list (TensorSliceProto: 1 extent* -> 1 start, 2 length, absent = whole axis); each
slice is an entry of its own under an OrderedCode key::

    \\x00  name (0x00 -> 00 ff, 0xff -> ff 00, then 00 01)  rank (length byte + big-endian)
    then per axis: start, length as OrderedCode signed numbers (-1 = whole axis)

A TF2 checkpoint holds ``_CHECKPOINTABLE_OBJECT_GRAPH``, a string scalar holding a
TrackableObjectGraph (1 nodes* -> 1 children* (1 node_id, 2 local_name), 2 attributes*
(1 name, 2 full_name, 3 checkpoint_key), 3 slot_variables* (1 original_variable_node_id,
2 slot_name, 3 slot_variable_node_id)). It gives each variable the name its framework gave it
(``full_name``: ``sequential/dense/kernel``) and says which variables an optimizer owns; the
raw keys (``model/layer_with_weights-0/kernel/.ATTRIBUTES/VARIABLE_VALUE``) are kept in
``info["tf_checkpoint"]["keys"]``.

The tree: ``weights`` (model variables, by framework name), one subtree per optimizer (slots
and its own variables), root-level variables (``save_counter``, ``step``, ``global_step``)
as training state, and ``strings`` (string tensors, as values).
"""

from __future__ import annotations

import builtins
import os
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from ...classify import classify
from ...containers.crc32c import crc32c, mask
from ...containers.protobuf import I32, LEN, VARINT, Field, Schema, decode, read_varint, text
from ...containers.sstable import Table
from ...dtypes import TF_OTHER_TYPES, by_tf
from ...errors import (
    FileMissing,
    LimitExceeded,
    MalformedHeader,
    ModelportError,
    Truncated,
    UnknownFormat,
)
from ...limits import DEFAULT_LIMITS, Limits
from ...model import Checkpoint, Storage, TensorEntry
from ...tensors import storage_buffer
from ..base import Options
from . import FORMAT_ID

__all__ = ["FORMAT_ID", "Bundle", "BundleEntry", "read_bundle", "find_prefix", "open",
           "check_checksums", "object_graph_names", "OBJECT_GRAPH_KEY"]

OBJECT_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"
VALUE_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"
_STRING, _RESOURCE, _VARIANT = 7, 20, 21
_R = True

HEADER: Schema = {1: ("num_shards", VARINT, False), 2: ("endianness", VARINT, False),
                  3: ("version", LEN, False)}
VERSION: Schema = {1: ("producer", VARINT, False), 2: ("min_consumer", VARINT, False)}
ENTRY: Schema = {1: ("dtype", VARINT, False), 2: ("shape", LEN, False),
                 3: ("shard_id", VARINT, False), 4: ("offset", VARINT, False),
                 5: ("size", VARINT, False), 6: ("crc32c", I32, False),
                 7: ("slices", LEN, _R)}
SHAPE: Schema = {2: ("dim", LEN, _R), 3: ("unknown_rank", VARINT, False)}
DIM: Schema = {1: ("size", VARINT, False)}
SLICE: Schema = {1: ("extent", LEN, _R)}
EXTENT: Schema = {1: ("start", VARINT, False), 2: ("length", VARINT, False)}
GRAPH: Schema = {1: ("nodes", LEN, _R)}
NODE: Schema = {1: ("children", LEN, _R), 2: ("attributes", LEN, _R),
                3: ("slot_variables", LEN, _R)}
CHILD: Schema = {1: ("node_id", VARINT, False), 2: ("local_name", LEN, False)}
ATTR: Schema = {1: ("name", LEN, False), 2: ("full_name", LEN, False),
                3: ("checkpoint_key", LEN, False)}
SLOT: Schema = {1: ("original", VARINT, False), 2: ("slot_name", LEN, False),
                3: ("node", VARINT, False)}

# TF1 optimizer slot suffixes (tf.compat.v1.train.*Optimizer slot names) and its own variables.
_TF1_SLOTS = re.compile(r"/(Adam|Adam_1|Momentum|RMSProp|RMSProp_1|Adagrad|AdagradDA|Ftrl|Ftrl_1|"
                        r"Adadelta|Adadelta_1|ProximalAdagrad|accumulator|gradient_accumulator|"
                        r"gradient_squared_accumulator|m|v)$")
_TF1_OPT_VARS = re.compile(r"^(beta1_power|beta2_power)(_\d+)?$")
_ROOT_STATE = re.compile(r"^(global_step|save_counter|step|epoch|iteration|iterations)$")


def _signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


# ---------------------------------------------------------------------------------- the bundle


@dataclass(frozen=True)
class BundleEntry:
    key: str
    dtype: int
    shape: tuple[int, ...]
    shard: int
    offset: int
    size: int
    crc32c: int | None
    slices: tuple[tuple[tuple[int, int], ...], ...]  # per slice: (start, length|-1) per axis
    index_offset: int  # where its record's value is in the .index (errors point there)

    @property
    def type_name(self) -> str:
        d = by_tf(self.dtype)
        return d.name if d else TF_OTHER_TYPES.get(self.dtype, f"tf:{self.dtype}")


@dataclass
class Bundle:
    """An ``.index`` read: its header, its entries (slices under their raw keys), shard files."""

    prefix: str
    index: str
    num_shards: int
    big_endian: bool
    version: dict[str, int]
    entries: dict[str, BundleEntry]  # printable keys (slices: raw bytes decoded latin-1)
    slice_keys: dict[bytes, BundleEntry] = field(default_factory=dict)
    compressed_blocks: int = 0

    def shard_path(self, shard: int) -> str:
        return f"{self.prefix}.data-{shard:05d}-of-{self.num_shards:05d}"


def _entry(buf: bytes, key: str, offset: int) -> BundleEntry:
    try:
        m = decode(buf, 0, len(buf), ENTRY)
        shape: tuple[int, ...] = ()
        if "shape" in m:
            s = decode(buf, m["shape"].offset, m["shape"].end, SHAPE)
            if s.get("unknown_rank") and s["unknown_rank"].value:
                raise MalformedHeader("entry has a shape of unknown rank")
            shape = tuple(_signed(decode(buf, d.offset, d.end, DIM).get("size", _ZERO).value)
                          for d in s.get("dim", ()))
        slices = []
        for sf in m.get("slices", ()):
            extents = []
            for ef in decode(buf, sf.offset, sf.end, SLICE).get("extent", ()):
                e = decode(buf, ef.offset, ef.end, EXTENT)
                length = _signed(e["length"].value) if "length" in e else -1
                extents.append((_signed(e.get("start", _ZERO).value), length))
            slices.append(tuple(extents))
    except ModelportError as exc:
        # Offsets from the decoder are relative to the record's value.
        if exc.offset is not None:
            exc.offset += offset
        raise exc.located(tensor=key, offset=offset) from None
    crc = m.get("crc32c")
    return BundleEntry(key, m["dtype"].value if "dtype" in m else 0, shape,
                       m["shard_id"].value if "shard_id" in m else 0,
                       _signed(m["offset"].value) if "offset" in m else 0,
                       _signed(m["size"].value) if "size" in m else 0,
                       crc.value if crc is not None else None, tuple(slices), offset)


_ZERO = Field(0, VARINT, 0, 0)


def read_bundle(index: str, limits: Limits = DEFAULT_LIMITS) -> Bundle:
    """Parse ``<prefix>.index`` (every block CRC checked). Errors carry the index path."""
    prefix = index[:-len(".index")] if index.endswith(".index") else index
    size = os.path.getsize(index)
    buf = storage_buffer(Storage(nbytes=size, path=index)) if size else memoryview(b"")
    try:
        table = Table(buf, limits)
        records = iter(table.records())
        first = next(records, None)
        if first is None or first.key != b"":
            raise MalformedHeader("the first record is not the bundle header (key \"\")",
                                  offset=first.offset if first else 0,
                                  hint="the file is not a TensorFlow checkpoint index")
        h = decode(first.value, 0, len(first.value), HEADER)
        v = h.get("version")
        version = {k: f.value for k, f in decode(first.value, v.offset, v.end, VERSION).items()} \
            if v is not None else {}
        num_shards = h["num_shards"].value if "num_shards" in h else 0
        endian = h["endianness"].value if "endianness" in h else 0
        if endian not in (0, 1):
            raise MalformedHeader(f"unknown endianness {endian}", offset=first.offset)
        if not 1 <= num_shards <= 99999:
            raise MalformedHeader(f"header says {num_shards} data shards", offset=first.offset,
                                  hint="the index file is corrupt")
        bundle = Bundle(prefix, index, num_shards, endian == 1, version, {})
        for rec in records:
            if len(bundle.entries) + len(bundle.slice_keys) >= limits.tensors:
                raise LimitExceeded(f"more than {limits.tensors} entries",
                                    hint="raise Limits.tensors if the checkpoint is genuine")
            if rec.key[:1] == b"\x00":
                bundle.slice_keys[rec.key] = _entry(rec.value, repr(rec.key)[2:-1], rec.offset)
            else:
                key = rec.key.decode("utf-8", "replace")
                bundle.entries[key] = _entry(rec.value, key, rec.offset)
        bundle.compressed_blocks = table.compressed_blocks
    except ModelportError as exc:
        raise exc.located(path=index, format=FORMAT_ID) from None
    return bundle


# ---------------------------------------------------------------------- where the files are


_CKPT_LINE = re.compile(r'^\s*model_checkpoint_path\s*:\s*"((?:[^"\\]|\\.)*)"\s*$', re.M)


def _unescape(s: str) -> str:
    """A text-proto string: C escapes (\\", \\\\, \\n, octal) as TensorFlow writes them."""
    try:
        return bytes(s, "latin-1", "backslashreplace").decode("unicode_escape") \
            .encode("latin-1").decode("utf-8", "replace")
    except UnicodeError:
        return s


def _latest(folder: str) -> str | None:
    """The prefix the folder's ``checkpoint`` file names, as a path in this folder: a path
    written on another machine (absolute, or relative to where it was) falls back to its base
    name here."""
    state = os.path.join(folder, "checkpoint")
    if not os.path.isfile(state):
        return None
    with builtins.open(state, "rb") as f:
        content = f.read(1 << 20).decode("utf-8", "replace")
    m = _CKPT_LINE.search(content)
    if not m:
        return None
    named = _unescape(m.group(1))
    for cand in (named if os.path.isabs(named) else os.path.join(folder, named),
                 os.path.join(folder, os.path.basename(named))):
        if os.path.isfile(cand + ".index"):
            return cand
    return None


def _index_files(folder: str) -> list[str]:
    try:
        return sorted(n for n in os.listdir(folder) if n.endswith(".index"))
    except OSError:
        return []


def find_prefix(path: str) -> str:
    """The checkpoint prefix for a prefix, an ``.index`` file or a folder (its ``checkpoint``
    file's latest, else its only ``.index``)."""
    if os.path.isdir(path):
        latest = _latest(path)
        if latest is not None:
            return latest
        names = _index_files(path)
        if len(names) == 1:
            return os.path.join(path, names[0][:-len(".index")])
        if not names:
            raise FileMissing("no checkpoint .index file in this folder", path=path,
                              hint="point at a checkpoint prefix or its .index file")
        raise UnknownFormat(f"{len(names)} checkpoints in this folder and no `checkpoint` file "
                            f"naming the latest ({', '.join(names[:4])})", path=path,
                            hint="name one: the path without .index")
    if path.endswith(".index") or not os.path.exists(path + ".index"):
        return path[:-len(".index")] if path.endswith(".index") else path
    return path


# -------------------------------------------------------------------------------- tensors


def _string_values(data: memoryview, n: int, e: BundleEntry, path: str,
                   big_endian: bool = False) -> list[Any]:
    """A DT_STRING tensor's elements: varint64 lengths, a masked CRC of them, the bytes. The
    CRC covers the lengths as the writer's machine held them (uint32, uint64 when larger) and
    is stored in its byte order."""
    order: Literal["big", "little"] = "big" if big_endian else "little"
    pos, lengths, crc = 0, [], 0
    for _ in range(n):
        ln, pos = read_varint(data, pos, len(data))
        lengths.append(ln)
        crc = crc32c(ln.to_bytes(4 if ln <= 0xFFFFFFFF else 8, order), crc)
    if pos + 4 > len(data):
        raise Truncated("string tensor ends inside its length checksum", path=path,
                        tensor=e.key, offset=e.offset + pos)
    stored = int.from_bytes(data[pos:pos + 4], order)
    if mask(crc) != stored:
        raise MalformedHeader("string lengths fail their checksum", path=path, tensor=e.key,
                              offset=e.offset + pos, hint="the data file is corrupt")
    pos += 4
    if sum(lengths) != len(data) - pos:
        raise MalformedHeader(f"string lengths add up to {sum(lengths)} bytes, the entry holds "
                              f"{len(data) - pos}", path=path, tensor=e.key, offset=e.offset,
                              hint="the data file is corrupt")
    out: list[Any] = []
    for ln in lengths:
        raw = bytes(data[pos:pos + ln])
        pos += ln
        try:
            out.append(raw.decode("utf-8"))
        except UnicodeDecodeError:
            out.append(raw)
    return out


def _shape(shape: tuple[int, ...]) -> list[Any]:
    return list(shape)


def _encode_num(v: int) -> bytes:
    """OrderedCode WriteNumIncreasing: a length byte, then the big-endian bytes."""
    body = v.to_bytes((v.bit_length() + 7) // 8, "big") if v else b""
    return bytes([len(body)]) + body


def _encode_signed(v: int) -> bytes:
    """OrderedCode WriteSignedNumIncreasing: n bytes of two's complement whose first n bits
    are the length in unary (1s for >= 0, 0s for < 0), 7n-1 value bits."""
    x = ~v if v < 0 else v
    n = 1
    while n < 10 and x >= 1 << (7 * n - 1):
        n += 1
    raw = bytearray((v & ((1 << (8 * n)) - 1)).to_bytes(n, "big"))
    header = ((1 << n) - 1) << (8 * n - n) if n <= 8 else None
    if header is not None:
        head = header.to_bytes(n, "big")
    else:  # 9 and 10 bytes: 0xff then 0x80 / 0xc0
        head = b"\xff" + (b"\x80" if n == 9 else b"\xc0") + bytes(n - 2)
    for i in range(min(2, n)):
        raw[i] ^= head[i]
    return bytes(raw)


def slice_key(name: str, extents: tuple[tuple[int, int], ...]) -> bytes:
    """checkpoint::EncodeTensorNameSlice: the key a slice of ``name`` is stored under."""
    esc = name.encode("utf-8").replace(b"\xff", b"\xff\x00").replace(b"\x00", b"\x00\xff")
    out = b"\x00" + esc + b"\x00\x01" + _encode_num(len(extents))
    for start, length in extents:
        out += _encode_signed(start) + _encode_signed(length)
    return out


@dataclass
class _Reader:
    bundle: Bundle
    limits: Limits
    shard_sizes: dict[int, int] = field(default_factory=dict)

    def shard(self, e: BundleEntry) -> tuple[str, int]:
        b = self.bundle
        if not 0 <= e.shard < b.num_shards:
            raise MalformedHeader(f"entry names data shard {e.shard} of {b.num_shards}",
                                  path=b.index, tensor=e.key, offset=e.index_offset,
                                  hint="the index file is corrupt")
        path = b.shard_path(e.shard)
        if e.shard not in self.shard_sizes:
            try:
                self.shard_sizes[e.shard] = os.path.getsize(path)
            except OSError:
                raise FileMissing(f"data shard {os.path.basename(path)} is missing",
                                  path=b.index, tensor=e.key,
                                  hint="copy every .data-NNNNN-of-NNNNN file next to the "
                                  ".index") from None
        size = self.shard_sizes[e.shard]
        if e.offset < 0 or e.size < 0 or e.offset + e.size > size:
            raise Truncated(f"bytes {e.offset}..{e.offset + e.size} are past the end of "
                            f"{os.path.basename(path)} ({size} bytes)", path=b.index,
                            tensor=e.key, offset=e.index_offset,
                            hint="the data shard is truncated or the index belongs to another "
                            "checkpoint")
        return path, size

    def storage(self, e: BundleEntry) -> Storage:
        path, _ = self.shard(e)
        return Storage(nbytes=e.size, path=path, offset=e.offset, key=e.key)

    def tensor(self, name: str, e: BundleEntry) -> TensorEntry | list[Any] | None:
        """A TensorEntry, a list of strings, or None (a type with no array form)."""
        if any(d < 0 for d in e.shape):
            raise MalformedHeader(f"negative dimension in shape {list(e.shape)}",
                                  path=self.bundle.index, tensor=e.key, offset=e.index_offset)
        if e.slices:
            return self.assembled(name, e)
        n = 1
        for d in e.shape:
            n *= d
        if e.dtype == _STRING:
            if e.size > self.limits.member_bytes:
                raise LimitExceeded(f"string tensor of {e.size} bytes", path=self.bundle.index,
                                    tensor=e.key, hint="raise Limits.member_bytes")
            if n > e.size:
                raise MalformedHeader(f"{n} strings cannot fit in {e.size} bytes",
                                      path=self.bundle.index, tensor=e.key,
                                      offset=e.index_offset, hint="the index file is corrupt")
            if e.size == 0:
                return [""] * n if n == 0 else []
            data = storage_buffer(self.storage(e))
            return _string_values(data, n, e, self.bundle.shard_path(e.shard),
                                  self.bundle.big_endian)
        dtype = by_tf(e.dtype)
        if dtype is None:
            return None
        if e.size != n * dtype.itemsize:
            raise MalformedHeader(f"entry holds {e.size} bytes, a {dtype.name} "
                                  f"{list(e.shape)} needs {n * dtype.itemsize}",
                                  path=self.bundle.index, tensor=e.key, offset=e.index_offset,
                                  hint="the index file is corrupt")
        st = self.storage(e)
        if self.bundle.big_endian and dtype.itemsize > 1:
            st = self.swapped(st, dtype.np_dtype().itemsize, e)
        return TensorEntry(name, dtype, e.shape, st)

    def swapped(self, st: Storage, item: int, e: BundleEntry) -> Storage:
        """A big-endian tensor's bytes, byte-swapped into memory (within member_bytes)."""
        import numpy as np

        if st.nbytes > self.limits.member_bytes:
            raise LimitExceeded(f"big-endian tensor of {st.nbytes} bytes must be byte-swapped "
                                "in memory", path=self.bundle.index, tensor=e.key,
                                hint="raise Limits.member_bytes")
        raw = np.frombuffer(storage_buffer(st), dtype=np.uint8)
        # Complex numbers swap each half: view them as pairs of floats of half the size.
        width = item // 2 if e.dtype in (8, 18) else item
        swapped = raw.view(f">u{width}").astype(f"<u{width}").tobytes()
        return Storage(nbytes=st.nbytes, data=swapped, key=st.key)

    def assembled(self, name: str, e: BundleEntry) -> TensorEntry | list[Any] | None:
        """A variable saved in slices, as one tensor: parts in place when the slices split
        only the first axis, else joined in memory (within member_bytes)."""
        dtype = by_tf(e.dtype)
        shape = e.shape
        pieces: list[tuple[tuple[tuple[int, int], ...], BundleEntry]] = []
        for ext in e.slices:
            if len(ext) != len(shape):
                raise MalformedHeader(f"slice of rank {len(ext)} for a tensor of rank "
                                      f"{len(shape)}", path=self.bundle.index, tensor=e.key,
                                      offset=e.index_offset)
            full = tuple((s, ln if ln >= 0 else d) for (s, ln), d in zip(ext, shape))
            for (s, ln), d in zip(full, shape):
                if s < 0 or ln < 0 or s + ln > d:
                    raise MalformedHeader(f"slice {list(full)} outside shape {list(shape)}",
                                          path=self.bundle.index, tensor=e.key,
                                          offset=e.index_offset)
            piece = self.bundle.slice_keys.get(slice_key(e.key, ext))
            if piece is None:
                raise MalformedHeader(f"slice {list(full)} has no entry", path=self.bundle.index,
                                      tensor=e.key, offset=e.index_offset,
                                      hint="the index file is corrupt")
            want = tuple(ln for _, ln in full)
            if piece.shape != want or piece.dtype != e.dtype:
                raise MalformedHeader(f"slice {list(full)} is stored as {piece.type_name} "
                                      f"{list(piece.shape)}", path=self.bundle.index,
                                      tensor=e.key, offset=piece.index_offset)
            pieces.append((full, piece))
        if dtype is None:
            return None  # string or variant slices: named as skipped
        total = 1
        for d in shape:
            total *= d
        covered = 0
        for full, _ in pieces:
            n = 1
            for _, ln in full:
                n *= ln
            covered += n
        axis0 = all(all(s == 0 and ln == d for (s, ln), d in zip(full[1:], shape[1:]))
                    for full, _ in pieces)
        if axis0:
            pieces.sort(key=lambda p: p[0][0][0] if p[0] else 0)
            pos = 0
            for full, _ in pieces:
                if full and full[0][0] != pos:
                    break
                pos += full[0][1] if full else 0
            else:
                if covered == total and (not shape or pos == shape[0]):
                    parts = []
                    for _, piece in pieces:
                        got = self.tensor(name, piece)
                        assert isinstance(got, TensorEntry)
                        parts.append(got.storage)
                    return TensorEntry(name, dtype, shape,
                                       Storage.joined(tuple(parts), key=e.key))
        return self.joined_in_memory(name, e, dtype, pieces, total)

    def joined_in_memory(self, name: str, e: BundleEntry, dtype: Any,
                         pieces: list[tuple[tuple[tuple[int, int], ...], BundleEntry]],
                         total: int) -> TensorEntry:
        import numpy as np

        nbytes = total * dtype.itemsize
        if nbytes > self.limits.member_bytes:
            raise LimitExceeded(f"a tensor saved in slices along several axes is joined in "
                                f"memory ({nbytes} bytes)", path=self.bundle.index,
                                tensor=e.key, hint="raise Limits.member_bytes")
        out = np.zeros(e.shape, dtype=dtype.np_dtype())
        filled = np.zeros(e.shape, dtype=bool)
        from ...tensors import to_numpy

        for full, piece in pieces:
            got = self.tensor(name, piece)
            assert isinstance(got, TensorEntry)
            index = tuple(slice(s, s + ln) for s, ln in full)
            out[index] = to_numpy(got)
            filled[index] = True
        if not filled.all():
            raise MalformedHeader("the slices do not cover the whole tensor",
                                  path=self.bundle.index, tensor=e.key, offset=e.index_offset,
                                  hint="the checkpoint is incomplete")
        data = out.tobytes()
        return TensorEntry(name, dtype, e.shape, Storage(nbytes=len(data), data=data, key=e.key))


# ------------------------------------------------------------------------ the object graph


@dataclass
class _Node:
    children: list[tuple[str, int]]
    attributes: list[tuple[str, str, str]]  # name, full_name, checkpoint_key
    slots: list[tuple[int, str, int]]  # original node, slot name, slot node


def _object_graph(raw: bytes) -> list[_Node]:
    nodes = []
    for nf in decode(raw, 0, len(raw), GRAPH).get("nodes", ()):
        n = decode(raw, nf.offset, nf.end, NODE)
        children = []
        for cf in n.get("children", ()):
            c = decode(raw, cf.offset, cf.end, CHILD)
            children.append((text(raw, c.get("local_name")),
                             c["node_id"].value if "node_id" in c else 0))
        attrs = []
        for af in n.get("attributes", ()):
            a = decode(raw, af.offset, af.end, ATTR)
            attrs.append((text(raw, a.get("name")), text(raw, a.get("full_name")),
                          text(raw, a.get("checkpoint_key"))))
        slots = []
        for sf in n.get("slot_variables", ()):
            s = decode(raw, sf.offset, sf.end, SLOT)
            slots.append((s["original"].value if "original" in s else 0,
                          text(raw, s.get("slot_name")), s["node"].value if "node" in s else 0))
        nodes.append(_Node(children, attrs, slots))
    return nodes


_ITERATIONS = frozenset(["iter", "_iterations", "iterations"])


def _optimizer_nodes(nodes: list[_Node]) -> set[int]:
    """Nodes that are optimizers: they own slot variables, keep an iteration counter (Keras 3
    optimizers hold their slots as plain variables), or an edge names them so. A model that
    tracks its optimizer (Keras's ``model.optimizer``) does not make the model one."""
    out = set()
    for i, n in enumerate(nodes):
        if n.slots or any(local in _ITERATIONS for local, _ in n.children):
            out.add(i)
        for local, child in n.children:
            if "optim" in local.lower() and 0 <= child < len(nodes):
                out.add(child)
    return out


def _reach(nodes: list[_Node], top: int, blocked: set[int]) -> list[int]:
    """Nodes reachable from ``top`` breadth first, not entering ``blocked`` ones."""
    if top in blocked or not 0 <= top < len(nodes):
        return []
    seen, todo, order = {top}, [top], []
    while todo:
        i = todo.pop(0)
        order.append(i)
        for _, child in nodes[i].children:
            if 0 <= child < len(nodes) and child not in seen and child not in blocked:
                seen.add(child)
                todo.append(child)
    return order


@dataclass(frozen=True)
class Placement:
    """Where one checkpoint key goes in the tree: a group ("weights", an optimizer's local name,
    "" for the root) and a name there."""

    group: str
    name: str
    order: int


def object_graph_names(nodes: list[_Node]) -> dict[str, Placement]:
    """checkpoint_key -> placement, from a TrackableObjectGraph (node 0 is the root)."""
    if not nodes:
        return {}
    out: dict[str, Placement] = {}
    slot_of: dict[int, tuple[int, str]] = {}
    for n in nodes:
        for orig, slot, node in n.slots:
            slot_of[node] = (orig, slot)
    optimizers = _optimizer_nodes(nodes)
    tops = {top: local for local, top in nodes[0].children}
    # Model variables: reachable from a root child without passing through an optimizer.
    model: set[int] = set()
    for _local, top in nodes[0].children:
        model.update(_reach(nodes, top, optimizers))
    # Everything else is named after the root child that reaches it ("optimizer" when that
    # child is not itself the optimizer, e.g. a model tracking its optimizer).
    owner: dict[int, str] = {}
    for local, top in nodes[0].children:
        for i in _reach(nodes, top, set()):
            owner.setdefault(i, local if top in optimizers else "optimizer")
    for i, n in enumerate(nodes):
        for attr, full, key in n.attributes:
            if not key:
                continue
            base = key[:-len(VALUE_SUFFIX)] if key.endswith(VALUE_SUFFIX) else key
            name = full or base
            if attr != "VARIABLE_VALUE":
                name = f"{name}/{attr}" if full else base
            if i in tops and _ROOT_STATE.match(tops[i]):  # save_counter, step: counters
                out[key] = Placement("", tops[i], i)
            elif i in slot_of:
                orig, slot = slot_of[i]
                var = next((f for _, f, _ in nodes[orig].attributes if f), None) \
                    if 0 <= orig < len(nodes) else None
                out[key] = Placement(owner.get(i, "optimizer"), f"{var or orig}/{slot}", i)
            elif i in model or i not in owner:
                out[key] = Placement("weights", name, i)
            else:
                out[key] = Placement(owner[i], name, i)
    return out


def _tf1_placement(key: str) -> Placement:
    if _ROOT_STATE.match(key):
        return Placement("", key, 0)
    if _TF1_SLOTS.search(key) or _TF1_OPT_VARS.match(key):
        return Placement("optimizer", key, 0)
    return Placement("weights", key, 0)


# ------------------------------------------------------------------------------------ open


def open(path: str, options: Options | None = None) -> Checkpoint:  # noqa: A001 - format verb
    """A checkpoint given as its prefix, its .index file or its folder."""
    prefix = find_prefix(path)
    index = prefix + ".index"
    if not os.path.isfile(index):
        raise FileMissing(f"no checkpoint index {os.path.basename(index)}", path=path,
                          hint="point at the prefix, the .index file or the folder")
    return open_bundle(path, index, options or Options())


def open_bundle(path: str, index: str, options: Options, *, kind: str | None = None,
                info: dict[str, Any] | None = None, fmt: str = FORMAT_ID) -> Checkpoint:
    """Read a bundle into a Checkpoint (also the variables of a SavedModel)."""
    limits = options.limits
    bundle = read_bundle(index, limits)
    reader = _Reader(bundle, limits)
    checked = check_checksums(reader) if options.checksums else None
    placements: dict[str, Placement] = {}
    graph_nodes = 0
    if OBJECT_GRAPH_KEY in bundle.entries:
        raw = reader.tensor(OBJECT_GRAPH_KEY, bundle.entries[OBJECT_GRAPH_KEY])
        if not isinstance(raw, list) or len(raw) != 1:
            raise MalformedHeader("the object graph entry is not one string", path=index,
                                  tensor=OBJECT_GRAPH_KEY)
        blob = raw[0] if isinstance(raw[0], bytes) else raw[0].encode("utf-8", "surrogateescape")
        try:
            nodes = _object_graph(blob)
        except ModelportError as exc:
            raise exc.located(path=index, tensor=OBJECT_GRAPH_KEY) from None
        graph_nodes = len(nodes)
        placements = object_graph_names(nodes)
    groups: dict[str, dict[str, Any]] = {"weights": {}}
    root: dict[str, Any] = {}
    strings: dict[str, Any] = {}
    keys: dict[str, str] = {}
    skipped: list[dict[str, Any]] = []
    duplicates: dict[str, str] = {}
    ordered = sorted(((placements.get(k) or _tf1_placement(k), k) for k in bundle.entries
                      if k != OBJECT_GRAPH_KEY), key=lambda pk: (pk[0].order, pk[1]))
    crc_of: dict[tuple[str, str], tuple[Any, ...]] = {}
    for place, key in ordered:
        e = bundle.entries[key]
        value = reader.tensor(place.name, e)
        if value is None:
            skipped.append({"key": key, "dtype": e.type_name, "shape": list(e.shape),
                            "why": "not an array of numbers"})
            continue
        if isinstance(value, list):
            strings[place.name] = value
            keys[f"strings.{place.name}"] = key
            continue
        target = root if place.group == "" else groups.setdefault(place.group, {})
        name = place.name
        if name in target:
            sig = (e.dtype, e.shape, e.crc32c, e.size)
            if crc_of.get((place.group, name)) == sig and e.crc32c is not None:
                duplicates[key] = keys[_dotted(place.group, name)]
                continue  # the same bytes saved twice under two keys (Keras export does this)
            n = 1
            while f"{name}#{n}" in target:
                n += 1
            name = f"{name}#{n}"
            value = value.renamed(name)
        crc_of[(place.group, name)] = (e.dtype, e.shape, e.crc32c, e.size)
        target[name] = value
        keys[_dotted(place.group, name)] = key
    tree: dict[str, Any] = {"weights": groups.pop("weights")}
    tree.update(groups)
    tree.update(root)
    if strings:
        tree["strings"] = strings
    shards = [bundle.shard_path(i) for i in range(bundle.num_shards)]
    size = os.path.getsize(index) + sum(reader.shard_sizes.values())
    summary = {
        "prefix": bundle.prefix,
        "index": index,
        "shards": shards,
        "version": bundle.version,
        "byte_order": "big" if bundle.big_endian else "little",
        "object_graph_nodes": graph_nodes,
        "style": "tf2-object-graph" if graph_nodes else "tf1-saver",
        "keys": keys,
        "duplicates": duplicates,
        "skipped": skipped,
        "sliced": [k for k, e in bundle.entries.items() if e.slices],
        "compressed_index_blocks": bundle.compressed_blocks,
        "checksums_checked": checked,
    }
    info = dict(info or {})
    info["tf_checkpoint"] = summary
    info["source_files"] = [*info.get("source_files", ()), index]
    select = options.select if options.select is not None else "weights"
    ck = classify(path, fmt, tree, info=info, select_path=select, file_size=size, kind=kind)
    ck.needs = [_needs(ck, graph_nodes)]
    info_lines = ck.info.setdefault("summary", {})
    info_lines.setdefault("checkpoint", _summary_line(summary, bundle))
    if checked is not None:
        info_lines["checksums"] = f"CRC-32C of {checked} tensor(s) checked: all match"
    if skipped:
        info_lines["left out"] = ", ".join(f"{s['key']} ({s['dtype']})" for s in skipped[:6])
    training = _training_line(tree, groups)
    if training:
        info_lines["training"] = training
    info_lines["layout"] = ("as stored by TensorFlow: a Dense kernel is [in, out] (torch's "
                            "nn.Linear weight is [out, in]); convolution kernels are "
                            "[h, w, in, out]")
    return ck


def _training_line(tree: dict[str, Any], groups: dict[str, dict[str, Any]]) -> str:
    """Counters (their values: a few bytes each) and optimizer state, in one line."""
    from ...tensors import to_numpy

    parts = []
    for name, t in tree.items():
        if isinstance(t, TensorEntry) and t.numel == 1 and t.dtype.kind in "iu":
            try:
                parts.append(f"{name} = {int(to_numpy(t).reshape(-1)[0])}")
            except ModelportError:
                parts.append(f"{name} = ?")
    for group, tensors in groups.items():
        n = sum(isinstance(v, TensorEntry) for v in tensors.values())
        parts.append(f"{group}: {n} tensor(s)")
    return ", ".join(parts)


def _dotted(group: str, name: str) -> str:
    return f"{group}.{name}" if group and group != "weights" else name


def _summary_line(s: dict[str, Any], bundle: Bundle) -> str:
    parts = [s["style"], f"{len(s['shards'])} data shard(s)", f"{s['byte_order']}-endian"]
    if s["sliced"]:
        parts.append(f"{len(s['sliced'])} variable(s) saved in slices, joined")
    if s["duplicates"]:
        parts.append(f"{len(s['duplicates'])} duplicate key(s) folded")
    return ", ".join(parts)


def _needs(ck: Checkpoint, graph_nodes: int) -> str:
    how = ("tf.train.Checkpoint(...).restore(prefix) with Python objects built like the ones "
           "that saved it" if graph_nodes else
           "tf.compat.v1.train.Saver().restore(sess, prefix) in a graph that defines the same "
           "variables (or import the .meta graph)")
    state = " plus optimizer state" if ck.kind == "training-checkpoint" else ""
    return (f"a TensorFlow checkpoint (weights{state}, no model code): restoring it natively "
            f"needs TensorFlow and {how}; modelport reads every tensor without either")


def _stored_crc(reader: _Reader, e: BundleEntry) -> int:
    """CRC-32C of an entry's bytes as TensorFlow computes it: the bytes themselves, or for a
    string tensor the lengths as uint32 (uint64 when larger), the stored length checksum and
    the string bytes."""
    st = reader.storage(e)
    if e.dtype != _STRING:
        crc = 0
        for part, off, n in st.runs(0, st.nbytes):
            assert part.path is not None
            crc = _file_crc(part.path, part.offset + off, n, crc)
        return crc
    data = storage_buffer(st)
    n = 1
    for d in e.shape:
        n *= d
    pos, crc = 0, 0
    order: Literal["big", "little"] = "big" if reader.bundle.big_endian else "little"
    for _ in range(n):
        ln, pos = read_varint(data, pos, len(data))
        crc = crc32c(ln.to_bytes(4 if ln <= 0xFFFFFFFF else 8, order), crc)
    return crc32c(data[pos:], crc)


def _file_crc(path: str, offset: int, n: int, crc: int, chunk: int = 4 << 20) -> int:
    with builtins.open(path, "rb") as f:
        f.seek(offset)
        while n:
            block = f.read(min(chunk, n))
            if not block:
                raise Truncated("data shard ends early", path=path, offset=offset)
            crc = crc32c(block, crc)
            n -= len(block)
    return crc


def check_checksums(reader: _Reader) -> int:
    """Every entry's CRC-32C against the index (reads every byte once); the first mismatch is
    an error naming the tensor and where its bytes are. Returns the entries checked."""
    b = reader.bundle
    checked = 0
    for e in list(b.entries.values()) + list(b.slice_keys.values()):
        if e.slices or e.crc32c is None or e.size == 0 or e.dtype in (_RESOURCE, _VARIANT):
            continue
        if mask(_stored_crc(reader, e)) != e.crc32c:
            raise MalformedHeader(
                f"CRC-32C mismatch in the tensor's bytes ({os.path.basename(b.shard_path(e.shard))}"
                f" bytes {e.offset}..{e.offset + e.size})", path=b.index, tensor=e.key,
                offset=e.index_offset, hint="the data shard is corrupt; restore it from a good "
                "copy")
        checked += 1
    return checked
