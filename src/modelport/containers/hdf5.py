"""A bounded reader of the HDF5 subset Keras and h5py write; no libhdf5, nothing allocated that
the file's size does not justify, every address checked before it is read.

Why not h5py or pyfive on untrusted input: libhdf5 is C and has a long record of memory-safety
bugs on crafted files (heap overflows and out-of-bounds reads in its object-header, datatype,
B-tree and filter code: CVE-2020-10810, CVE-2021-37501, CVE-2024-29158 ... CVE-2024-33877), and
it runs in the reader's process. pyfive is pure Python but checks structure with ``assert``
(gone under ``python -O``), inflates chunks with an unbounded ``zlib.decompress``, follows tree
and continuation addresses without a visited set, and hands out arrays, not file offsets. What
Keras needs is small, so modelport reads exactly that (HDF5 File Format Specification 3.0):

    superblock    "\\x89HDF\\r\\n\\x1a\\n" at 0, 512, 1024 ...; v0/v1: sizes of offsets and
                  lengths, base address, root symbol-table entry; v2/v3: root object header
    object header v1: version 1, message count, header size, messages (type u16, size u16,
                  flags) padded to 8 bytes; v2: "OHDR", flags, chunk size, messages (type u8);
                  continuation messages (0x10) chain further blocks ("OCHK" in v2)
    groups        symbol table message (0x11): a v1 B-tree (type 0, "TREE") of "SNOD" nodes
                  whose entries name objects by offsets into a local heap ("HEAP"); or link
                  messages (0x06) in the header (HDF5 1.8 compact groups)
    datasets      dataspace (0x01), datatype (0x03: fixed-point, float, string, enum, vlen),
                  layout (0x08): compact, contiguous (address, size), chunked (v3: v1 B-tree
                  type 1; v4: single chunk, implicit, fixed array), filters (0x0B): deflate,
                  shuffle, fletcher32
    attributes    (0x0C) v1-v3: name, datatype, dataspace, data; variable-length strings via
                  the global heap ("GCOL")

Not read (a clear error says which): dense link or attribute storage (fractal heaps, from
HDF5 1.8 groups with more than 8 links or many attributes), extensible-array and v2-B-tree chunk
indexes, filters other than the three above, external and virtual storage.

Contiguous, unfiltered little-endian data becomes a ``Storage`` pointing at its bytes in the
file (zero-copy); chunked, filtered or big-endian data is decoded into memory, within
``Limits.member_bytes`` in all.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field
from typing import Any

from ..errors import LimitExceeded, MalformedHeader, Truncated, UnsupportedFormat
from ..limits import DEFAULT_LIMITS, Limits

__all__ = ["SIGNATURE", "H5File", "Group", "Dataset", "H5Type", "find_superblock"]

SIGNATURE = b"\x89HDF\r\n\x1a\n"


def lookup3(data: bytes | memoryview) -> int:
    """Bob Jenkins' lookup3 ``hashlittle`` with seed 0: HDF5's metadata checksum
    (H5_checksum_lookup3), over superblocks v2/v3, v2 object headers and their continuations."""
    m = 0xFFFFFFFF

    def rot(x: int, k: int) -> int:
        return ((x << k) | (x >> (32 - k))) & m

    k = bytes(data)
    n = len(k)
    a = b = c = (0xDEADBEEF + n) & m
    i = 0
    while n > 12:
        a = (a + int.from_bytes(k[i:i + 4], "little")) & m
        b = (b + int.from_bytes(k[i + 4:i + 8], "little")) & m
        c = (c + int.from_bytes(k[i + 8:i + 12], "little")) & m
        a = (a - c) & m; a ^= rot(c, 4); c = (c + b) & m  # noqa: E702 - lookup3's mix()
        b = (b - a) & m; b ^= rot(a, 6); a = (a + c) & m  # noqa: E702
        c = (c - b) & m; c ^= rot(b, 8); b = (b + a) & m  # noqa: E702
        a = (a - c) & m; a ^= rot(c, 16); c = (c + b) & m  # noqa: E702
        b = (b - a) & m; b ^= rot(a, 19); a = (a + c) & m  # noqa: E702
        c = (c - b) & m; c ^= rot(b, 4); b = (b + a) & m  # noqa: E702
        n -= 12
        i += 12
    if n == 0:
        return c
    tail = k[i:i + n] + bytes(12 - n)
    a = (a + int.from_bytes(tail[0:4], "little")) & m
    b = (b + int.from_bytes(tail[4:8], "little")) & m
    c = (c + int.from_bytes(tail[8:12], "little")) & m
    c ^= b; c = (c - rot(b, 14)) & m  # noqa: E702 - lookup3's final()
    a ^= c; a = (a - rot(c, 11)) & m  # noqa: E702
    b ^= a; b = (b - rot(a, 25)) & m  # noqa: E702
    c ^= b; c = (c - rot(b, 16)) & m  # noqa: E702
    a ^= c; a = (a - rot(c, 4)) & m  # noqa: E702
    b ^= a; b = (b - rot(a, 14)) & m  # noqa: E702
    c ^= b; c = (c - rot(b, 24)) & m  # noqa: E702
    return c


def find_superblock(head: bytes | memoryview) -> int | None:
    """Offset of the signature: 0, or after a user block of 512 * 2**k bytes."""
    at = 0
    while at + 8 <= len(head):
        if bytes(head[at:at + 8]) == SIGNATURE:
            return at
        at = 512 if at == 0 else at * 2
    return None


@dataclass(frozen=True)
class H5Type:
    """A datatype message, as far as modelport uses it."""

    cls: int  # 0 fixed-point, 1 float, 3 string, 6 compound, 8 enum, 9 vlen, ...
    size: int
    numpy: str | None = None  # "<f4", ">i2", "|b1" ... for numbers; None otherwise
    vlen_string: bool = False

    @property
    def name(self) -> str:
        names = {0: "integer", 1: "float", 2: "time", 3: "string", 4: "bitfield", 5: "opaque",
                 6: "compound", 7: "reference", 8: "enum", 9: "variable-length", 10: "array"}
        return self.numpy or ("vlen string" if self.vlen_string else names.get(self.cls, "?"))


@dataclass
class Dataset:
    path: str
    shape: tuple[int, ...]
    dtype: H5Type
    layout: str  # compact, contiguous, chunked
    offset: int | None = None  # position in the buffer of contiguous/compact bytes
    nbytes: int = 0
    chunks: tuple[int, ...] | None = None
    filters: list[tuple[int, int, list[int]]] = field(default_factory=list)  # (id, flags, values)
    chunk_index: list[tuple[tuple[int, ...], int, int, int]] = field(default_factory=list)
    attrs: dict[str, Any] = field(default_factory=dict)
    header: int = 0  # object header position, for errors

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass
class Group:
    path: str
    members: dict[str, Group | Dataset] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)
    header: int = 0

    def get(self, path: str) -> Group | Dataset | None:
        node: Group | Dataset | None = self
        for part in filter(None, path.split("/")):
            if not isinstance(node, Group):
                return None
            node = node.members.get(part)
        return node

    def walk(self) -> list[Dataset]:
        """Every dataset below, depth first, in each group's stored order."""
        out: list[Dataset] = []
        for m in self.members.values():
            out += m.walk() if isinstance(m, Group) else [m]
        return out


class H5File:
    """An HDF5 file in ``buf`` (the whole file, or a member of a zip); ``base`` is where
    ``buf`` starts in the file on disk, for the offsets of zero-copy storages."""

    def __init__(self, buf: memoryview, limits: Limits = DEFAULT_LIMITS) -> None:
        self.buf = buf
        self.size = len(buf)
        self.limits = limits
        self.objects = 0
        self.blocks = 0
        self.decoded = 0  # bytes decoded into memory so far
        # Objects already read: HDF5 allows one object under several names (hard links), and
        # a file where every group links twice to the next would have 2**n paths; each object
        # is entered once, under the first name that reaches it.
        self.seen: set[int] = set()
        sb = find_superblock(buf[:1 << 16])
        if sb is None:
            raise MalformedHeader("no HDF5 signature", offset=0, hint="not an HDF5 file")
        self.root = self._superblock(sb)

    # -- bounded reads --------------------------------------------------------------------------

    def need(self, pos: int, n: int, what: str) -> None:
        if pos < 0 or n < 0 or pos + n > self.size:
            cls = Truncated if pos >= 0 and pos + n > self.size else MalformedHeader
            raise cls(f"HDF5 {what} at byte {pos} needs {n} bytes, the file has {self.size}",
                      offset=pos, hint="the file is truncated or corrupt")

    def uint(self, pos: int, n: int, what: str) -> int:
        self.need(pos, n, what)
        return int.from_bytes(self.buf[pos:pos + n], "little")

    def addr(self, pos: int, what: str) -> int | None:
        """An address (relative to the base), as a buffer position; None when undefined."""
        v = self.uint(pos, self.so, what)
        if v == (1 << (8 * self.so)) - 1:
            return None
        return self.base + v

    def sig(self, pos: int, sig: bytes, what: str) -> None:
        self.need(pos, len(sig), what)
        if bytes(self.buf[pos:pos + len(sig)]) != sig:
            raise MalformedHeader(f"HDF5 {what} at byte {pos} lacks its {sig!r} signature",
                                  offset=pos, hint="the file is corrupt")

    def checksum(self, start: int, end: int, what: str) -> None:
        """The lookup3 checksum stored at ``end`` covers ``start .. end`` (libhdf5 refuses a
        block whose checksum does not match; so does modelport, so both read the same files)."""
        stored = self.uint(end, 4, f"{what} checksum")
        if lookup3(self.buf[start:end]) != stored:
            raise self.bad(f"{what} checksum does not match", end)

    def bad(self, message: str, pos: int) -> MalformedHeader:
        return MalformedHeader(f"HDF5 {message}", offset=pos, hint="the file is corrupt")

    def unsupported(self, message: str, pos: int) -> UnsupportedFormat:
        return UnsupportedFormat(f"HDF5 {message} is not read by modelport", offset=pos,
                                 hint="re-save the file with h5py's default (earliest) format, "
                                 "or report it")

    # -- superblock -----------------------------------------------------------------------------

    def _superblock(self, at: int) -> Group:
        version = self.uint(at + 8, 1, "superblock version")
        if version in (0, 1):
            self.so = self.uint(at + 13, 1, "size of offsets")
            self.sl = self.uint(at + 14, 1, "size of lengths")
            self._sizes(at)
            pos = at + 24 + (4 if version == 1 else 0)
            self.base = 0
            base = self.addr(pos, "base address")
            self.base = base or 0
            entry = pos + 4 * self.so  # base, free space, end of file, driver info
            header = self.addr(entry + self.so, "root object header")
        elif version in (2, 3):
            self.so = self.uint(at + 9, 1, "size of offsets")
            self.sl = self.uint(at + 10, 1, "size of lengths")
            self._sizes(at)
            self.base = 0
            base = self.addr(at + 12, "base address")
            self.base = base or 0
            header = self.addr(at + 12 + 3 * self.so, "root object header")
            self.checksum(at, at + 12 + 4 * self.so, "superblock")
        else:
            raise self.unsupported(f"superblock version {version}", at + 8)
        if header is None:
            raise self.bad("root group has no object header", at)
        return self._group("/", header, ())

    def _sizes(self, at: int) -> None:
        if self.so not in (2, 4, 8) or self.sl not in (2, 4, 8):
            raise self.bad(f"sizes of offsets/lengths {self.so}/{self.sl}", at + 13)

    # -- object headers ------------------------------------------------------------------------

    def _messages(self, at: int) -> list[tuple[int, int, int]]:
        """(type, data position, data size) of every message of the object header at ``at``."""
        self.objects += 1
        if self.objects > self.limits.tensors:
            raise LimitExceeded(f"more than {self.limits.tensors} HDF5 objects", offset=at,
                                hint="raise Limits.tensors if the file is genuine")
        self.need(at, 16, "object header")
        out: list[tuple[int, int, int]] = []
        if bytes(self.buf[at:at + 4]) == b"OHDR":
            version, flags = self.uint(at + 4, 1, "header"), self.uint(at + 5, 1, "header")
            if version != 2:
                raise self.bad(f"object header version {version}", at + 4)
            pos = at + 6 + (16 if flags & 0x20 else 0) + (4 if flags & 0x10 else 0)
            width = 1 << (flags & 3)
            size = self.uint(pos, width, "header chunk size")
            blocks = [(pos + width, size, True)]
            self.need(pos + width, size + 4, "object header")
            self.checksum(at, pos + width + size, "object header")
            crt = 2 if flags & 0x04 else 0
        else:
            version = self.uint(at, 1, "object header version")
            if version != 1:
                raise self.bad(f"object header version {version}", at)
            blocks = [(at + 16, self.uint(at + 8, 4, "header size"), False)]
            crt = 0
        seen: set[int] = set()
        while blocks:
            start, size, v2 = blocks.pop(0)
            if start in seen:
                raise self.bad("object header continuation loops back", start)
            seen.add(start)
            self.blocks += 1
            if self.blocks > self.limits.header_blocks:
                raise LimitExceeded(f"more than {self.limits.header_blocks} object header blocks",
                                    offset=start, hint="the file is hostile or corrupt")
            self.need(start, size, "object header block")
            end = start + size
            pos = start
            hdr = 4 + crt if v2 else 8
            while pos + hdr <= end:
                if v2:
                    mtype = self.buf[pos]
                    msize = self.uint(pos + 1, 2, "message size")
                else:
                    mtype = self.uint(pos, 2, "message type")
                    msize = self.uint(pos + 2, 2, "message size")
                data = pos + hdr
                if data + msize > end:
                    raise self.bad(f"message of {msize} bytes runs past its header block",
                                   pos)
                if mtype == 0x10:  # continuation: another block of messages
                    cont = self.addr(data, "continuation address")
                    length = self.uint(data + self.so, self.sl, "continuation length")
                    if cont is None:
                        raise self.bad("continuation without an address", data)
                    if v2:
                        self.sig(cont, b"OCHK", "continuation block")
                        self.need(cont, length, "continuation block")
                        if length < 8:
                            raise self.bad(f"continuation block of {length} bytes", cont)
                        self.checksum(cont, cont + length - 4, "continuation block")
                        # OCHK's length counts its signature and its checksum
                        blocks.append((cont + 4, length - 8, True))
                    else:
                        blocks.append((cont, length, False))
                elif mtype:
                    out.append((mtype, data, msize))
                pos = data + msize
        return out

    # -- groups ---------------------------------------------------------------------------------

    def _group(self, path: str, at: int, parents: tuple[int, ...],
               msgs: list[tuple[int, int, int]] | None = None) -> Group:
        if len(parents) > self.limits.nesting:
            raise LimitExceeded(f"groups nest more than {self.limits.nesting} deep", offset=at,
                                hint="the file is hostile or corrupt")
        if msgs is None:
            msgs = self._messages(at)
        group = Group(path, header=at)
        links: list[tuple[str, int]] = []
        for mtype, data, size in msgs:
            if mtype == 0x11:
                links += self._symbol_table(data)
            elif mtype == 0x06:
                link = self._link(data, size)
                if link is not None:
                    links.append(link)
            elif mtype == 0x02:
                heap = self._dense_address(data, 0x02)
                if heap is not None:
                    raise self.unsupported("dense link storage (a fractal heap of links)", data)
        group.attrs = self._attributes(msgs)
        self.seen.add(at)
        for name, target in links:
            if target in self.seen:
                continue  # a second name for an object already read (or a group on the path)
            self.seen.add(target)
            child = f"{path.rstrip('/')}/{name}"
            group.members[name] = self._object(child, target, (*parents, at))
        return group

    def _object(self, path: str, at: int, parents: tuple[int, ...]) -> Group | Dataset:
        msgs = self._messages(at)
        if any(t == 0x08 for t, _, _ in msgs):
            return self._dataset(path, at, msgs)
        return self._group(path, at, parents, msgs)

    def _dense_address(self, data: int, mtype: int) -> int | None:
        flags = self.uint(data + 1, 1, "info flags")
        pos = data + 2 + ((8 if mtype == 0x02 else 2) if flags & 1 else 0)
        return self.addr(pos, "fractal heap address")

    def _symbol_table(self, data: int) -> list[tuple[str, int]]:
        btree = self.addr(data, "symbol table B-tree")
        heap = self.addr(data + self.so, "local heap")
        if btree is None or heap is None:
            raise self.bad("symbol table without a B-tree or heap", data)
        self.sig(heap, b"HEAP", "local heap")
        heap_size = self.uint(heap + 8, self.sl, "local heap size")
        heap_data = self.addr(heap + 8 + 2 * self.sl, "local heap data")
        if heap_data is None:
            raise self.bad("local heap without data", heap)
        self.need(heap_data, heap_size, "local heap data")
        out: list[tuple[str, int]] = []
        for node in self._btree_leaves(btree, 0):
            self.sig(node, b"SNOD", "symbol table node")
            count = self.uint(node + 6, 2, "symbol count")
            entry = 2 * self.so + 24
            self.need(node + 8, count * entry, "symbol table entries")
            for i in range(count):
                pos = node + 8 + i * entry
                name_off = self.uint(pos, self.so, "link name offset")
                target = self.addr(pos + self.so, "object header address")
                if target is None:
                    raise self.bad("symbol without an object header", pos)
                out.append((self._heap_name(heap_data, heap_size, name_off, pos), target))
        return out

    def _heap_name(self, heap: int, size: int, off: int, pos: int) -> str:
        if off >= size:
            raise self.bad(f"name offset {off} past the local heap's {size} bytes", pos)
        raw = bytes(self.buf[heap + off:heap + size])
        end = raw.find(b"\0")
        if end < 0:
            raise self.bad("name without its terminating NUL", heap + off)
        return raw[:end].decode("utf-8", "replace")

    def _btree_leaves(self, at: int, node_type: int, dims: int = 0) -> list[int]:
        """Children of the level-0 nodes of a v1 B-tree (group nodes or chunk addresses); for
        chunk trees ``_chunk_keys`` collects the keys too."""
        out: list[int] = []
        self._keys: list[tuple[int, int, tuple[int, ...]]] = []
        seen: set[int] = set()

        def node(pos: int, level: int | None, depth: int) -> None:
            if pos in seen:
                raise self.bad("B-tree node reached twice", pos)
            seen.add(pos)
            if depth > self.limits.nesting:
                raise LimitExceeded(f"B-tree deeper than {self.limits.nesting}", offset=pos,
                                    hint="the file is hostile or corrupt")
            self.sig(pos, b"TREE", "B-tree node")
            ntype = self.uint(pos + 4, 1, "B-tree node type")
            lvl = self.uint(pos + 5, 1, "B-tree level")
            used = self.uint(pos + 6, 2, "B-tree entries")
            if ntype != node_type or (level is not None and lvl != level):
                raise self.bad(f"B-tree node type {ntype} level {lvl} where type {node_type} "
                               f"level {level} belongs", pos)
            key = self.sl if node_type == 0 else 8 + 8 * dims
            p = pos + 8 + 2 * self.so
            self.need(p, used * (key + self.so) + key, "B-tree entries")
            for _ in range(used):
                if node_type == 1:
                    size = self.uint(p, 4, "chunk size")
                    mask = self.uint(p + 4, 4, "filter mask")
                    offs = tuple(self.uint(p + 8 + 8 * d, 8, "chunk offset") for d in range(dims))
                child = self.addr(p + key, "B-tree child")
                if child is None:
                    raise self.bad("B-tree child without an address", p + key)
                if lvl:
                    node(child, lvl - 1, depth + 1)
                else:
                    out.append(child)
                    if node_type == 1:
                        self._keys.append((size, mask, offs))
                p += key + self.so

        node(at, None, 0)
        return out

    def _link(self, data: int, size: int) -> tuple[str, int] | None:
        """A link message: (name, object header) for hard links; None for soft/external."""
        end = data + size
        flags = self.uint(data + 1, 1, "link flags")
        pos = data + 2
        ltype = 0
        if flags & 0x08:
            ltype = self.uint(pos, 1, "link type")
            pos += 1
        if flags & 0x04:
            pos += 8
        if flags & 0x10:
            pos += 1
        width = 1 << (flags & 3)
        n = self.uint(pos, width, "link name length")
        pos += width
        if pos + n > end:
            raise self.bad("link name runs past its message", pos)
        name = bytes(self.buf[pos:pos + n]).decode("utf-8", "replace")
        if ltype != 0:
            return None  # soft and external links name other objects by path: not followed
        target = self.addr(pos + n, "link target")
        if target is None:
            raise self.bad(f"hard link {name!r} without an address", pos + n)
        return name, target

    # -- datasets -------------------------------------------------------------------------------

    def _dataset(self, path: str, at: int, msgs: list[tuple[int, int, int]]) -> Dataset:
        by = {t: (d, s) for t, d, s in msgs}
        if 0x01 not in by or 0x03 not in by:
            raise self.bad("dataset without a dataspace or datatype", at)
        shape = self._dataspace(*by[0x01])
        dtype = self._datatype(by[0x03][0], by[0x03][1])
        ds = Dataset(path, shape, dtype, "", header=at)
        if 0x0B in by:
            ds.filters = self._filters(*by[0x0B])
        self._layout(ds, *by[0x08])
        ds.attrs = self._attributes(msgs)
        return ds

    def _dataspace(self, data: int, size: int) -> tuple[int, ...]:
        version = self.uint(data, 1, "dataspace version")
        rank = self.uint(data + 1, 1, "dataspace rank")
        if version == 1:
            pos = data + 8
        elif version == 2:
            kind = self.uint(data + 3, 1, "dataspace type")
            if kind == 2:
                return (0,)  # a null dataspace holds nothing
            pos = data + 4
        else:
            raise self.bad(f"dataspace version {version}", data)
        if rank > 32:
            raise self.bad(f"dataspace of rank {rank} (HDF5 allows 32)", data + 1)
        self.need(pos, rank * self.sl, "dataspace dimensions")
        return tuple(self.uint(pos + i * self.sl, self.sl, "dimension") for i in range(rank))

    def _datatype(self, data: int, size: int, depth: int = 0) -> H5Type:
        if depth > 8:
            raise self.bad("datatypes nest too deep", data)
        b0, b1 = self.uint(data, 1, "datatype"), self.uint(data + 1, 1, "datatype")
        cls, tsize = b0 & 0x0F, self.uint(data + 4, 4, "datatype size")
        order = ">" if b1 & 1 else "<"
        if cls == 0 and tsize in (1, 2, 4, 8):
            prec = self.uint(data + 10, 2, "precision")
            if prec == tsize * 8 and not self.uint(data + 8, 2, "bit offset"):
                kind = "i" if b1 & 0x08 else "u"
                return H5Type(cls, tsize, f"{'|' if tsize == 1 else order}{kind}{tsize}")
        elif cls == 1 and not b1 & 0x40:
            exp, mant = self.uint(data + 13, 1, "exponent size"), \
                self.uint(data + 15, 1, "mantissa size")
            known = {(2, 5, 10): "f2", (4, 8, 23): "f4", (8, 11, 52): "f8",
                     (2, 8, 7): "bfloat16"}
            code = known.get((tsize, exp, mant))
            if code == "bfloat16":
                return H5Type(cls, tsize, code if order == "<" else None)
            if code:
                return H5Type(cls, tsize, order + code)
        elif cls == 8:
            base = self._datatype(data + 8, size - 8, depth + 1)
            n = b1 | self.uint(data + 2, 1, "enum count") << 8
            if base.numpy in ("|i1", "|u1") and n == 2:
                names = self._enum_names(data + 8, n)
                if names == ["FALSE", "TRUE"]:
                    return H5Type(cls, tsize, "|b1")  # h5py's bool
            return H5Type(cls, tsize, base.numpy)
        elif cls == 9:
            return H5Type(cls, tsize, vlen_string=(b1 & 0x0F) == 1)
        return H5Type(cls, tsize)

    def _enum_names(self, base: int, n: int) -> list[str]:
        # The base type message of an integer is 12 bytes; names follow, NUL-padded to 8.
        pos, names = base + 12, []
        for _ in range(n):
            self.need(pos, 1, "enum name")
            raw = bytes(self.buf[pos:pos + 256])
            end = raw.find(b"\0")
            if end < 0:
                raise self.bad("enum name without NUL", pos)
            names.append(raw[:end].decode("utf-8", "replace"))
            pos += (end + 8) // 8 * 8
        return names

    def _filters(self, data: int, size: int) -> list[tuple[int, int, list[int]]]:
        version, n = self.uint(data, 1, "filter version"), self.uint(data + 1, 1, "filters")
        pos = data + (8 if version == 1 else 2)
        out = []
        for _ in range(n):
            fid = self.uint(pos, 2, "filter id")
            if version == 1 or fid >= 256:
                name_len = self.uint(pos + 2, 2, "filter name length")
                pos += 2
            else:
                name_len = 0
            flags = self.uint(pos + 2, 2, "filter flags")
            nvals = self.uint(pos + 4, 2, "filter values")
            pos += 6
            if version == 1:
                name_len = (name_len + 7) // 8 * 8
            pos += name_len
            vals = [self.uint(pos + 4 * i, 4, "filter value") for i in range(nvals)]
            pos += 4 * nvals + (4 if version == 1 and nvals % 2 else 0)
            out.append((fid, flags, vals))
            if pos > data + size:
                raise self.bad("filter pipeline runs past its message", data)
        return out

    def _layout(self, ds: Dataset, data: int, size: int) -> None:
        version = self.uint(data, 1, "layout version")
        if version not in (3, 4):
            raise self.unsupported(f"data layout version {version}", data)
        cls = self.uint(data + 1, 1, "layout class")
        item = ds.dtype.size
        if cls == 0:
            ds.layout = "compact"
            ds.nbytes = self.uint(data + 2, 2, "compact size")
            ds.offset = data + 4
            self.need(ds.offset, ds.nbytes, "compact data")
        elif cls == 1:
            ds.layout = "contiguous"
            ds.offset = self.addr(data + 2, "data address")
            ds.nbytes = self.uint(data + 2 + self.so, self.sl, "data size")
        elif cls == 2:
            ds.layout = "chunked"
            self._chunked(ds, data, version, item)
        else:
            raise self.unsupported(f"layout class {cls} (virtual datasets)", data + 1)

    def _chunked(self, ds: Dataset, data: int, version: int, item: int) -> None:
        rank = len(ds.shape)
        if version == 3:
            dims = self.uint(data + 2, 1, "chunk rank")
            btree = self.addr(data + 3, "chunk B-tree")
            pos = data + 3 + self.so
            chunk = tuple(self.uint(pos + 4 * i, 4, "chunk dim") for i in range(dims))
            index = "btree1"
        else:
            flags = self.uint(data + 2, 1, "chunk flags")
            dims = self.uint(data + 3, 1, "chunk rank")
            width = self.uint(data + 4, 1, "chunk dim width")
            if width not in (1, 2, 4, 8):
                raise self.bad(f"chunk dimension width {width}", data + 4)
            pos = data + 5
            chunk = tuple(self.uint(pos + width * i, width, "chunk dim") for i in range(dims))
            pos += width * dims
            itype = self.uint(pos, 1, "chunk index type")
            pos += 1
            index = {1: "single", 2: "implicit", 3: "farray"}.get(itype, "")
            single_size, single_mask = None, 0
            if itype == 1 and flags & 2:
                single_size = self.uint(pos, self.sl, "filtered chunk size")
                single_mask = self.uint(pos + self.sl, 4, "filter mask")
                pos += self.sl + 4
            elif itype == 3:
                pos += 1
            elif not index:
                raise self.unsupported(f"chunk index type {itype} (extensible array or v2 "
                                       "B-tree)", pos - 1)
            btree = self.addr(pos, "chunk index address")
        if len(chunk) == rank + 1:
            chunk = chunk[:-1]  # the last "dimension" is the element size
        if len(chunk) != rank or any(c <= 0 for c in chunk):
            raise self.bad(f"chunk shape {chunk} for a dataset of shape {ds.shape}", data)
        ds.chunks = chunk
        if btree is None or ds.numel == 0:
            return  # nothing written yet
        grid = [range(0, d, c) for d, c in zip(ds.shape, chunk)]
        nchunks = math.prod(len(g) for g in grid)
        if nchunks > self.limits.tensors:
            raise LimitExceeded(f"{nchunks} chunks in one dataset", offset=data,
                                hint="raise Limits.tensors if the file is genuine")
        full = math.prod(chunk) * item
        if index == "btree1":
            addrs = self._btree_leaves(btree, 1, rank + 1)
            ds.chunk_index = [(offs[:rank], a, size, mask)
                              for (size, mask, offs), a in zip(self._keys, addrs)]
        elif index == "single":
            ds.chunk_index = [((0,) * rank, btree, single_size or full, single_mask)]
        elif index == "implicit":
            import itertools

            ds.chunk_index = [(offs, btree + i * full, full, 0)
                              for i, offs in enumerate(itertools.product(*grid))]
        else:
            ds.chunk_index = self._fixed_array(btree, grid, full, bool(ds.filters))

    def _fixed_array(self, at: int, grid: list[range], full: int,
                     filtered: bool) -> list[tuple[tuple[int, ...], int, int, int]]:
        import itertools

        self.sig(at, b"FAHD", "fixed array header")
        entry = self.uint(at + 6, 1, "fixed array entry size")
        page_bits = self.uint(at + 7, 1, "fixed array page bits")
        count = self.uint(at + 8, self.sl, "fixed array entries")
        block = self.addr(at + 8 + self.sl, "fixed array data block")
        if block is None:
            return []
        if count > 1 << page_bits:
            raise self.unsupported("a paged fixed-array chunk index", at)
        self.sig(block, b"FADB", "fixed array data block")
        pos = block + 6 + self.so
        offsets = list(itertools.product(*grid))
        if count != len(offsets):
            raise self.bad(f"fixed array of {count} chunks for a grid of {len(offsets)}", at)
        self.need(pos, count * entry, "fixed array entries")
        out = []
        for offs in offsets:
            a = self.addr(pos, "chunk address")
            if filtered:
                width = entry - self.so - 4
                size = self.uint(pos + self.so, width, "chunk size")
                mask = self.uint(pos + self.so + width, 4, "filter mask")
            else:
                size, mask = full, 0
            if a is not None:
                out.append((offs, a, size, mask))
            pos += entry
        return out

    # -- attributes -----------------------------------------------------------------------------

    def _attributes(self, msgs: list[tuple[int, int, int]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for mtype, data, size in msgs:
            if mtype == 0x15 and self._dense_address(data, 0x15) is not None:
                raise self.unsupported("dense attribute storage (a fractal heap of attributes)",
                                       data)
            if mtype != 0x0C:
                continue
            version = self.uint(data, 1, "attribute version")
            name_len = self.uint(data + 2, 2, "attribute name size")
            type_len = self.uint(data + 4, 2, "attribute datatype size")
            space_len = self.uint(data + 6, 2, "attribute dataspace size")
            pos = data + 8 + (1 if version == 3 else 0)

            def pad(n: int, version: int = version) -> int:
                return (n + 7) // 8 * 8 if version == 1 else n

            if version not in (1, 2, 3):
                raise self.bad(f"attribute version {version}", data)
            name = bytes(self.buf[pos:pos + name_len]).split(b"\0", 1)[0].decode(
                "utf-8", "replace")
            pos += pad(name_len)
            dtype = self._datatype(pos, type_len)
            pos += pad(type_len)
            shape = self._dataspace(pos, space_len)
            pos += pad(space_len)
            if pos > data + size:
                raise self.bad(f"attribute {name!r} runs past its message", data)
            out[name] = self._attr_value(dtype, shape, pos, data + size)
        return out

    def _attr_value(self, t: H5Type, shape: tuple[int, ...], pos: int, end: int) -> Any:
        n = math.prod(shape)
        if t.vlen_string:
            item = 4 + self.so + 4
            self.need(pos, n * item, "attribute data")
            vals = [self._vlen(pos + i * item) for i in range(n)]
        elif t.cls == 3:
            self.need(pos, n * t.size, "attribute data")
            vals = [bytes(self.buf[pos + i * t.size:pos + (i + 1) * t.size]).rstrip(b"\0 ")
                    .decode("utf-8", "replace") for i in range(n)]
        elif t.numpy is not None and t.numpy != "bfloat16":
            import numpy as np

            self.need(pos, n * t.size, "attribute data")
            arr = np.frombuffer(self.buf, dtype=t.numpy, count=n, offset=pos)
            vals = arr.tolist()
        else:
            return f"<{t.name} attribute>"
        return vals[0] if shape == () else vals

    def _vlen(self, pos: int) -> str:
        length = self.uint(pos, 4, "vlen length")
        coll = self.addr(pos + 4, "global heap")
        index = self.uint(pos + 4 + self.so, 4, "global heap index")
        if coll is None or not length:
            return ""
        self.sig(coll, b"GCOL", "global heap")
        csize = self.uint(coll + 8, self.sl, "global heap size")
        self.need(coll, csize, "global heap")
        p, end = coll + 8 + self.sl, coll + csize
        while p + 8 + self.sl <= end:
            idx = self.uint(p, 2, "heap object")
            osize = self.uint(p + 8, self.sl, "heap object size")
            if idx == 0:
                break
            data = p + 8 + self.sl
            if data + osize > end:
                raise self.bad("global heap object runs past its collection", p)
            if idx == index:
                return bytes(self.buf[data:data + min(osize, length)]).decode("utf-8", "replace")
            p = data + (osize + 7) // 8 * 8
        raise self.bad(f"global heap object {index} not found", coll)

    # -- data -----------------------------------------------------------------------------------

    def check(self, ds: Dataset) -> None:
        """The dataset's bytes lie where it says (contiguous/compact) and add up."""
        if ds.dtype.numpy is None:
            return
        need = ds.numel * ds.dtype.size
        if ds.layout in ("contiguous", "compact"):
            if ds.offset is None:
                if need:
                    raise self.bad(f"dataset {ds.path!r} has no data written", ds.header)
                return
            if ds.nbytes != need:
                raise self.bad(f"dataset {ds.path!r} stores {ds.nbytes} bytes, shape "
                               f"{list(ds.shape)} of {ds.dtype.name} needs {need}", ds.header)
            self.need(ds.offset, need, f"data of {ds.path!r}")

    def decode(self, ds: Dataset) -> bytes:
        """The dataset's bytes, little-endian, C order: chunks inflated and placed."""
        import numpy as np

        assert ds.dtype.numpy is not None
        dt = np.dtype(ds.dtype.numpy) if ds.dtype.numpy != "bfloat16" else np.dtype("<u2")
        need = ds.numel * dt.itemsize
        self.decoded += need
        if self.decoded > self.limits.member_bytes:
            raise LimitExceeded(f"decoding HDF5 data past {self.limits.member_bytes} bytes",
                                offset=ds.header, hint="raise Limits.member_bytes")
        if ds.layout != "chunked":
            if ds.offset is None:
                return b""
            arr = np.frombuffer(self.buf, dtype=dt, count=ds.numel, offset=ds.offset)
            return arr.astype(dt.newbyteorder("<")).tobytes()
        out = np.zeros(ds.shape, dtype=dt.newbyteorder("<"))
        assert ds.chunks is not None
        chunk_bytes = math.prod(ds.chunks) * dt.itemsize
        for offs, at, size, mask in ds.chunk_index:
            if any(o % c or o >= d for o, c, d in zip(offs, ds.chunks, ds.shape)):
                raise self.bad(f"chunk at {offs} outside dataset {ds.path!r} {ds.shape}", at)
            self.need(at, size, f"chunk of {ds.path!r}")
            raw = self._unfilter(bytes(self.buf[at:at + size]), ds, mask, chunk_bytes,
                                 dt.itemsize, at)
            block = np.frombuffer(raw, dtype=dt).reshape(ds.chunks)
            sel = tuple(slice(o, min(o + c, d)) for o, c, d in zip(offs, ds.chunks, ds.shape))
            out[sel] = block[tuple(slice(0, s.stop - s.start) for s in sel)]
        return out.tobytes()

    def _unfilter(self, raw: bytes, ds: Dataset, mask: int, want: int, item: int,
                  at: int) -> bytes:
        import numpy as np

        for i in reversed(range(len(ds.filters))):
            if mask & (1 << i):
                continue
            fid = ds.filters[i][0]
            if fid == 1:
                d = zlib.decompressobj()
                try:
                    raw = d.decompress(raw, want + 1)
                except zlib.error as exc:
                    raise self.bad(f"chunk of {ds.path!r} does not inflate: {exc}", at) \
                        from exc
            elif fid == 2:
                n = len(raw) // item
                body = np.frombuffer(raw[:n * item], np.uint8).reshape(item, n).T.tobytes()
                raw = body + raw[n * item:]
            elif fid == 3:
                raw = raw[:-4]  # fletcher32: the checksum is the last four bytes
            else:
                raise self.unsupported(f"filter {fid} on dataset {ds.path!r}", ds.header)
        if len(raw) != want:
            raise self.bad(f"chunk of {ds.path!r} holds {len(raw)} bytes, {want} expected", at)
        return raw

