"""safetensors: an 8-byte header length, a JSON header, then one contiguous byte buffer.

Layout (huggingface/safetensors README and ``safetensors/src/tensor.rs``)::

    byte 0        8                     8+N                                        file end
         +--------+---------------------+------------------------------------------+
         | N: u64 | JSON header, UTF-8, | byte buffer: the tensors back to back,   |
         | little | N bytes, starts     | tensor T at [8+N+begin, 8+N+end)         |
         | endian | with '{', may end   | little-endian, C order                   |
         |        | in space padding    |                                          |
         +--------+---------------------+------------------------------------------+

    header = {"__metadata__": {"key": "text", ...},           optional, str -> str only
              "NAME": {"dtype": "F32", "shape": [d0, d1], "data_offsets": [begin, end]}, ...}

The reference reader (``SafeTensors::read_metadata`` and ``Metadata::validate``) rejects:
HeaderTooSmall (< 8 bytes), HeaderTooLarge (N > 100 MB), InvalidHeaderLength (8+N past the end),
InvalidHeader (not UTF-8), InvalidHeaderStart (no '{'), InvalidHeaderDeserialization (bad JSON
or field types), InvalidOffset(name) (sorted by offsets, each tensor must start where the
previous one ended: no hole, no overlap), ValidationOverflow (shape * bits overflows u64),
MisalignedSlice (sub-byte types that do not end on a byte), TensorInvalidInfo (end - begin is not
shape * dtype size) and MetadataIncompleteBuffer (the last tensor must end at the end of the file).

modelport checks all of those and more, because two readers that disagree about one file are an
attack surface: a repeated key anywhere in the JSON (serde keeps the last one, other parsers the
first), unknown keys in a tensor record, NaN/Infinity literals, ``__metadata__`` that is not a
flat str -> str object, dtype codes it does not know, dims that are not non-negative integers.
"""

from __future__ import annotations

import builtins
import itertools
import json
import os
import re
import struct
from typing import Any

from ..classify import classify, reselect
from ..dtypes import by_name
from ..errors import InputError, LimitExceeded, MalformedHeader, Truncated
from ..limits import DEFAULT_LIMITS, Limits
from ..model import Checkpoint, Storage, TensorEntry
from .base import Format, Options, Probe, Writer

__all__ = ["FORMAT_ID", "sniff", "parse_header", "open", "METADATA_FORMATS"]

FORMAT_ID = "safetensors"
# Formats whose files carry safetensors __metadata__ (a file, or an HF folder of shards): where
# modelport's own outputs record their tree, tied names and ggml blocks (convert/source.py).
METADATA_FORMATS = (FORMAT_ID, "hf-repo")

_LEN = struct.Struct("<Q")
_U64 = 1 << 64  # the reference does this arithmetic in u64 (usize): anything at or above overflows
_TENSOR_KEYS = ("data_offsets", "dtype", "shape")
# Packed sub-byte codes the reference knows (F4 is torch.float4_e2m1fn_x2) but modelport's dtype
# table cannot hold yet: they take part in validation (MisalignedSlice), then are refused.
_SUBBYTE_BITS = {"F4": 4, "F6_E2M3": 6, "F6_E3M2": 6}
_CORRUPT = "the file is corrupt or was not written by a safetensors writer; export it again"


def sniff(head: bytes) -> bool:
    """The first bytes of a file look like safetensors: a plausible u64 length, then '{'."""
    if len(head) < 9:
        return False
    (n,) = _LEN.unpack_from(head)
    return 2 <= n <= DEFAULT_LIMITS.header_bytes and head[8:9] == b"{"


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _key_offset(text: str, key: str, nth: int = 0) -> int:
    """File offset of the ``nth`` ``"key":`` in the header, to locate an error (8: not found)."""
    pattern = re.compile(re.escape(json.dumps(key, ensure_ascii=False)) + r"\s*:")
    hits = list(itertools.islice(pattern.finditer(text), nth + 1))
    return 8 + len(text[: hits[nth].start()].encode()) if len(hits) > nth else 8


def _is_u64(x: Any) -> bool:
    # bool is an int subclass in Python but not a JSON number; serde rejects it as usize.
    return type(x) is int and 0 <= x < _U64


def parse_header(
    path: str | os.PathLike[str], limits: Limits = DEFAULT_LIMITS
) -> tuple[int, list[TensorEntry], dict[str, str]]:
    """Read and validate the header: (N, entries in file-offset order, ``__metadata__``).

    Reads only the first 8 + N bytes. Raises ``Truncated`` when the file is shorter than the
    header says, ``LimitExceeded`` for a header over ``limits.header_bytes`` or too many tensors,
    ``MalformedHeader`` for everything else the format forbids.
    """
    path = os.fspath(path)

    def bad(msg: str, offset: int, tensor: str | None = None, hint: str = _CORRUPT,
            cls: type[InputError] = MalformedHeader) -> InputError:
        return cls(msg, path=path, format=FORMAT_ID, tensor=tensor, offset=offset, hint=hint)

    from .. import remote

    with builtins.open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        remote.ensure(path, 0, 8)
        head = f.read(8)
        if len(head) < 8:  # HeaderTooSmall
            raise bad(f"the file has {size} bytes, fewer than the 8-byte header length", 0,
                      cls=Truncated, hint="the file is truncated; download it again")
        (n,) = _LEN.unpack(head)
        if n > limits.header_bytes:  # HeaderTooLarge
            if 8 + n > size:  # a length no file could back: garbage, not a big header
                raise bad(f"header length {n} is larger than the file ({size} bytes)", 0)
            raise bad(f"JSON header of {n} bytes exceeds the limit of {limits.header_bytes}", 0,
                      cls=LimitExceeded, hint="raise Limits.header_bytes if you trust this file")
        if 8 + n > size:  # InvalidHeaderLength
            raise bad(f"header length {n} needs {8 + n} bytes but the file has {size}", 8,
                      cls=Truncated, hint="the file is truncated; download it again")
        remote.ensure(path, 8, n)
        raw = f.read(n)

    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:  # InvalidHeader
        raise bad("the JSON header is not valid UTF-8", 8 + e.start) from e
    if not raw.startswith(b"{"):  # InvalidHeaderStart
        raise bad(f"the JSON header starts with {raw[:1]!r}, not '{{'", 8)
    try:  # InvalidHeaderDeserialization, and stricter: repeated keys, NaN/Infinity
        doc = json.loads(text, object_pairs_hook=_unique_pairs, parse_constant=_no_constant)
    except _DuplicateKey as e:
        raise bad(f"the JSON header repeats the key {e.key!r}", _key_offset(text, e.key, 1),
                  hint="readers disagree on which copy wins; the file is corrupt or crafted") from e
    except json.JSONDecodeError as e:
        raise bad(f"the header is not valid JSON: {e.msg}", 8 + len(text[: e.pos].encode())) from e
    except (ValueError, RecursionError) as e:
        raise bad(f"the header is not valid JSON: {e}", 8) from e

    metadata = doc.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise bad("__metadata__ must be an object of string values",
                  _key_offset(text, "__metadata__"))
    if len(doc) > limits.tensors:
        raise bad(f"{len(doc)} tensors exceed the limit of {limits.tensors}", 8, cls=LimitExceeded,
                  hint="raise Limits.tensors if you trust this file")

    def bad_record(msg: str, name: str, hint: str = _CORRUPT) -> InputError:
        # The record's offset is searched for only when raising: per tensor it would be quadratic.
        return bad(msg, _key_offset(text, name), name, hint)

    records = []  # (begin, end, name, code, shape)
    for name, rec in doc.items():
        if not isinstance(rec, dict) or tuple(sorted(rec)) != _TENSOR_KEYS:
            keys = sorted(rec) if isinstance(rec, dict) else type(rec).__name__
            raise bad_record("a tensor record needs exactly the keys dtype, shape, "
                             f"data_offsets; got {keys}", name)
        code, shape, offsets = rec["dtype"], rec["shape"], rec["data_offsets"]
        dtype = by_name(code) if isinstance(code, str) else None
        bits = (dtype.bits if dtype is not None and dtype.safetensors
                else _SUBBYTE_BITS.get(code) if isinstance(code, str) else None)
        if bits is None:
            raise bad_record(f"unknown dtype {code!r}", name, hint="safetensors codes are "
                             "F64 F32 F16 BF16 F8_E4M3 F8_E5M2 I64 ... BOOL")
        if not isinstance(shape, list) or not all(map(_is_u64, shape)):
            raise bad_record(f"shape {shape!r} is not a list of non-negative integers", name)
        if not isinstance(offsets, list) or len(offsets) != 2 or not all(map(_is_u64, offsets)):
            raise bad_record(f"data_offsets {offsets!r} is not a pair of non-negative integers",
                             name)
        begin, end = offsets
        if end < begin:  # InvalidOffset
            raise bad_record(f"data_offsets [{begin}, {end}] end before they begin", name)
        numel = 1
        for d in shape:  # overflow-safe like the reference's try_fold(checked_mul): stop early
            numel *= d
            if numel >= _U64:
                break
        if numel >= _U64 or numel * bits >= _U64:  # ValidationOverflow
            raise bad_record(f"shape {shape} of {code} overflows a 64-bit byte count", name)
        if numel * bits % 8:  # MisalignedSlice
            raise bad_record(f"{numel} elements of {code} do not end on a byte boundary", name)
        if end - begin != numel * bits // 8:  # TensorInvalidInfo
            raise bad_record(f"shape {shape} of {code} needs {numel * bits // 8} bytes but "
                             f"data_offsets [{begin}, {end}] hold {end - begin}", name)
        records.append((begin, end, name, code, tuple(shape)))

    # The reference sorts by offsets, then requires the tensors to tile the buffer exactly.
    records.sort(key=lambda r: (r[0], r[1]))
    base, start, prev = 8 + n, 0, None
    for begin, end, name, _, _ in records:
        if begin != start:  # InvalidOffset
            what = (f"leaves bytes {start}..{begin} of the buffer unused" if begin > start
                    else f"overlaps tensor {prev!r}, which ends at buffer byte {start}")
            raise bad(f"data_offsets [{begin}, {end}] {what}", base + min(begin, start), name)
        start, prev = end, name
    if base + start > size:  # the buffer is cut short
        raise bad(f"tensor {prev!r} ends at byte {base + start} but the file has {size}",
                  size, prev, cls=Truncated, hint="the file is truncated; download it again")
    if base + start < size:  # MetadataIncompleteBuffer
        raise bad(f"{size - base - start} bytes after the last tensor belong to no tensor",
                  base + start, hint="the header does not cover the file; it is corrupt or crafted")

    entries = []
    for begin, end, name, code, shape in records:
        dtype = by_name(code)
        if dtype is None or not dtype.safetensors:
            raise InputError(f"packed sub-byte dtype {code} is not supported by modelport yet",
                             path=path, format=FORMAT_ID, tensor=name, offset=base + begin,
                             hint="read it with safetensors.torch (torch.float4_e2m1fn_x2)")
        storage = Storage(nbytes=end - begin, path=path, offset=base + begin, key=name)
        entries.append(TensorEntry(name, dtype, shape, storage))
    return n, entries, metadata


def open(path: str | os.PathLike[str], limits: Limits = DEFAULT_LIMITS) -> Checkpoint:
    """The file as a Checkpoint: a flat dict of tensors in file-offset order.

    ``__metadata__`` goes to ``info["metadata"]``; ``info["header_bytes"]`` is N.
    """
    path = os.fspath(path)
    n, entries, metadata = parse_header(path, limits)
    tree = {e.name: e for e in entries}
    info = {"metadata": metadata, "header_bytes": n}
    return classify(path, FORMAT_ID, tree, info=info, file_size=os.path.getsize(path))


def _sniff(probe: Probe) -> bool:
    return sniff(probe.head)


def read(path: str, options: Options) -> Checkpoint:
    return reselect(open(path, options.limits), options.select)


FORMAT = Format(
    "safetensors", "huggingface", _sniff, order=30, title="safetensors",
    open=f"{__name__}:read", ranged=True, scan="modelport.scan.archives:scan_safetensors",
    writer=Writer("safetensors", "modelport.convert.writers:write_safetensors",
                  suffixes=(".safetensors",), aliases=("st",),
                  holds=lambda d: bool(d.safetensors), refuse_hint="--to torch keeps it",
                  folder=("model", ".safetensors", "model.safetensors.index.json")))
