"""Scanning pickle streams: one pickle, stacked pickles to the end, and payloads inside them.

Each pickle is run by modelport's symbolic machine (``modelport.pickle.Machine``), the same one
the readers use, and what it recorded is judged against ``policy``::

    globals      every GLOBAL/STACK_GLOBAL/INST, with its offset   -> allowlist, profile, gadget
    calls        every REDUCE/NEWOBJ/OBJ/INST target and its args  -> hooks, profile arguments,
                                                                       payloads of loader gadgets
    anomalies    what loaders tolerate and scanners trip on        -> ANOMALIES below
    an error     the stream breaks: fine if nothing ran before it, unsafe if a loader would
                 already have called something off the allowlist (payload, then garbage)

A stream is scanned to its end: after a STOP, more pickle bytes are another pickle (a legacy
torch file has five; an attacker hides a second one behind a benign first). Legacy torch files
are followed through their storage records, which are read as sizes only.
"""

from __future__ import annotations

import base64
import binascii
import re
import struct
from collections.abc import Callable
from typing import Any

from .. import dtypes
from ..errors import LimitExceeded, ModelportError
from ..model import Opaque, Storage, TensorEntry
from ..pickle import Machine, StorageRef
from ..pickle.machine import OPCODE_BYTES, OPCODE_NAMES, Ref
from . import policy
from .context import Scan, decompress_errors, decompressor
from .findings import Severity

__all__ = ["scan_stream", "scan_one", "may_be_pickle", "torch_persistent_load", "LEGACY_MAGIC"]

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # torch/serialization.py MAGIC_NUMBER
_MAX_STACKED = 10_000  # pickles in one stream

S = Severity
# Machine anomaly kind -> (severity, rule, why it matters). dotted/dunder names are judged with
# their global; build-on-data depends on what BUILD targets.
ANOMALIES: dict[str, tuple[Severity, str, str]] = {
    "ext": (S.HIGH, "ext-opcode", "EXT1/2/4 name a global through copyreg's extension registry: "
            "the loader imports whatever the running process registered; no model writer emits "
            "them"),
    "proto-mid-stream": (S.MEDIUM, "proto-mid-stream", "a PROTO opcode after the start changes "
                         "how the rest decodes; parsers that disagree on it see different code"),
    "memo-miss": (S.HIGH, "memo-miss", "the stream reads a memo slot it never wrote: loaders "
                  "and scanners that keep their memo differently see different objects"),
    "frame": (S.MEDIUM, "frame", "a FRAME that overlaps or overruns: framing tricks make "
              "streaming parsers and loaders disagree about where opcodes are"),
    "computed-global": (S.HIGH, "computed-global", "the module or name of a global is built "
                        "at run time, so no list of names can tell what gets imported"),
    "computed-call": (S.HIGH, "computed-call", "the stream calls an object it built at run time "
                      "(the result of another call): the real callee is only known to a loader"),
    "buffer": (S.MEDIUM, "out-of-band-buffer", "NEXT_BUFFER needs buffers the file does not "
               "hold; a model file never uses them"),
    "persistent-id": (S.LOW, "persistent-id", "a persistent id in a plain pickle: pickle.load "
                      "refuses it, other loaders resolve it with their own code"),
    "builder-args": (S.LOW, "unreadable-call", "an allowlisted call with arguments modelport "
                     "cannot rebuild as data; the file may not read as expected"),
}
_SKIPPED = {"dotted-name", "dunder-name", "build-on-data"}
_HOOK_FUNCS = {q for q in policy.ALLOWLIST if q.startswith("torch._utils._rebuild")}


# -- persistent ids ---------------------------------------------------------------------------


def torch_persistent_load(scan: Scan, member: str | None,
                          storages: dict[str, Any] | None = None) -> Callable[[Any, int], Any]:
    """Resolve torch's ``('storage', Type, key, location, numel[, view])`` ids to sized storage
    stand-ins (no bytes are read); ``storages`` collects key -> dtype for the legacy walk.
    A legacy ``('module', cls, file, source)`` id resolves to the class (torch returns it)."""

    def load(pid: Any, offset: int) -> Any:
        if isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage":
            stype = pid[1]
            name = stype.name if isinstance(stype, Ref) else str(stype)
            dt = dtypes.by_torch_storage(name) or (
                dtypes.by_name("U8") if name in ("UntypedStorage", "TypedStorage") else None)
            if dt is not None and isinstance(pid[4], int):
                if storages is not None:
                    storages.setdefault(str(pid[2]), dt)
                return StorageRef(Storage(max(pid[4], 0) * dt.itemsize, key=str(pid[2])), dt)
        if isinstance(pid, tuple) and len(pid) == 4 and pid[0] == "module":
            return pid[1]
        scan.add(S.LOW, "persistent-id", f"persistent id {str(pid)[:80]} is not a torch storage",
                 member=member, offset=offset, why="torch.load refuses unknown ids; other "
                 "loaders resolve them with their own code")
        return Opaque("<persistent>", (pid,), how="persid")

    return load


# -- one pickle -------------------------------------------------------------------------------


def scan_one(scan: Scan, data: bytes | memoryview, pos: int, *, member: str | None, base: int,
             loader: bool, torchscript: bool = False,
             persistent: Callable[[Any, int], Any] | None = None) -> tuple[bool, Any, int]:
    """Run one pickle at ``data[pos:]`` as CPython would, and judge it. Returns (it was a
    pickle, value, end).

    Any bytes are a pickle to CPython's unpickler until it meets an invalid opcode, whatever
    the first byte. ``loader=False`` (bytes no loader is known to unpickle) judges the stream
    only if CPython would get as far as an import or a call, or to STOP; otherwise the bytes
    are not a pickle and nothing is said. What a stream imported or called before it broke is
    always judged, and the error is reported with it, never instead of it."""
    if not loader and data[pos] not in OPCODE_BYTES:
        return False, None, pos  # "invalid load key": CPython stops at the first byte
    if not loader and len(data) - pos > 1 << 16 and data[pos] == data[pos + 1] \
            and _uniform_tail(data, pos):
        # One byte repeated to the end (a constant tensor): no pickle is a single repeated
        # opcode, and interpreting millions of NONEs or MARKs would only cost time and memory.
        return False, None, pos
    m, value, error = _run(scan, data, pos, member=member, base=base, persistent=persistent)
    if not loader and not _reached_code(m, error):
        if isinstance(error, LimitExceeded) and not _uniform_tail(data, m.op_offset):
            # CPython has no such limit and would go on: what follows was never judged.
            loader = True
        else:
            return False, None, pos
    where = base + pos
    label = f"{member or 'pickle'} @{where}"
    scan.note_scanned(label)
    _judge(scan, m, member, torchscript)
    for start, end in m.skipped:
        # joblib.load steps over array bytes; pickle.load of the same file parses them.
        scan.bytes(m.data[start:end], member=f"{member or 'pickle'} (array bytes @{base + start})",
                   base=base + start)
    if m.straddled:
        # An opcode runs across a FRAME's end: the C unpickler reading a file object (torch's
        # data.pkl, any pickle.load(f) without peek) sees other bytes than pickle.loads.
        f, _, ferror = _run(scan, data, pos, member=member, base=base, persistent=persistent,
                            file_mode=True)
        _judge(scan, f, member, torchscript)
        if ferror is not None:
            _broken(scan, f, member, ferror, torchscript)
    if error is not None:
        _broken(scan, m, member, error, torchscript)
        return True, None, len(data)
    return True, value, m.end


def _run(scan: Scan, data: bytes | memoryview, pos: int, *, member: str | None, base: int,
         persistent: Callable[[Any, int], Any] | None,
         file_mode: bool = False) -> tuple[Machine, Any, BaseException | None]:
    m = Machine(data, pos, base=base, member=member, path=scan.path, persistent_load=persistent,
                limits=scan.limits, file_mode=file_mode)
    try:
        return m, m.run(), None
    except (ModelportError, RecursionError, MemoryError) as exc:
        return m, None, exc
    except Exception as exc:  # noqa: BLE001 - a machine bug must not hide what it recorded
        return m, None, _Internal(f"{type(exc).__name__}: {exc}")


class _Internal(Exception):
    """A bug in modelport's machine, met while interpreting a stream."""


# A name a loader could import: dotted components of word characters (or '-': __import__
# takes any file name on sys.path). Lines of binary data that happen to follow a GLOBAL byte
# are not: their import fails before any module code runs.
_IMPORTABLE = re.compile(r"^[\w-]+(\.[\w-]+)*$")


def _importable(g: Any) -> bool:
    return bool(_IMPORTABLE.match(g.module)) and bool(_IMPORTABLE.match(g.name))


def _reached_code(m: Machine, error: BaseException | None) -> bool:
    """Whether CPython reading these bytes as a pickle would import or call something, or
    finish a pickle (a STOP): then the stream is judged like any pickle."""
    return error is None or any(_importable(g) for g in m.globals if g.opcode != "EXT") \
        or bool(m.calls)


def may_be_pickle(head: bytes, size: int) -> bool:
    """Given only the first bytes of ``size``, whether the whole could be judged a pickle:
    False when CPython's parser already stops inside ``head`` at a bad opcode, before any
    import or call (the whole would stop at the same byte)."""
    m = Machine(head)
    try:
        m.run()
    except (ModelportError, RecursionError, MemoryError) as exc:
        return _reached_code(m, exc) or (m.truncated and len(head) < size)
    except Exception:  # noqa: BLE001 - a machine bug: read the whole member to find out
        return True
    return True


def _uniform_tail(data: bytes | memoryview, pos: int) -> bool:
    """Whether ``data[pos:]`` repeats one byte (a tensor of one value: 10 001 MARKs, 50M
    NONEs): CPython runs out of bytes there without importing anything."""
    n = len(data)
    if pos >= n:
        return True
    step = 1 << 20
    first = bytes(data[pos:pos + 1]) * step
    while pos < n:
        chunk = bytes(data[pos:pos + step])
        if chunk != first[:len(chunk)]:
            return False
        pos += step
    return True


def _opcode_at(m: Machine, offset: int) -> str | None:
    i = offset - m.base
    return OPCODE_NAMES.get(bytes(m.data[i:i + 1])) if 0 <= i < len(m.data) else None


def _broken(scan: Scan, m: Machine, member: str | None, error: BaseException,
            torchscript: bool) -> None:
    at = m.base + m.op_offset
    if isinstance(error, (LimitExceeded, RecursionError, MemoryError)):
        scan.add(S.MEDIUM, "limit", f"resource limit hit: {getattr(error, 'message', error)}",
                 subject=_opcode_at(m, at), member=member, offset=at,
                 why="the rest of the pickle was not scanned; a loader would go on")
    ran = [c.target for c in m.calls
           if not policy.is_plain(c.target, torchscript=torchscript, profiles=scan.profiles,
                                  allow=scan.allow)]
    if ran:
        scan.add(S.HIGH, "broken-after-code", f"the pickle breaks at byte {at} after calling "
                 f"{ran[0]}", subject=ran[0], member=member, offset=at,
                 why="a loader runs the calls before it reaches the break; scanners that give "
                 "up on a broken pickle miss them")
    if isinstance(error, ModelportError):
        msg = str(error)
    elif isinstance(error, _Internal):
        msg = (f"{scan.path}: {member + ': ' if member else ''}byte {at}: internal error while "
               f"interpreting the pickle ({error}); please report it")
    else:
        msg = f"{member or scan.path}: {error}"
    scan.error(msg)


# -- judging what the machine recorded ----------------------------------------------------------


def _judge(scan: Scan, m: Machine, member: str | None, torchscript: bool) -> None:
    called = {c.target for c in m.calls}
    seen: set[str] = set()
    for g in m.globals:
        qual = f"{g.module}.{g.name}"
        if g.opcode == "EXT" or qual in seen:
            continue  # EXT is an anomaly of its own; one finding per global per pickle
        seen.add(qual)
        j = policy.judge(g.module, g.name, torchscript=torchscript, profiles=scan.profiles,
                     allow=scan.allow)
        if j.kind == "allow":
            continue
        if j.kind == "profile":
            scan.add(S.INFO, "ecosystem-object", f"{qual}: {j.why} ({j.profile} profile)",
                     subject=qual, member=member, offset=g.offset,
                     why="a known ecosystem object, rebuilt from plain data")
            continue
        dotted, dunder = "." in g.name, any(p.startswith("__") for p in g.name.split("."))
        how = "calls" if qual in called else "imports"
        if j.kind == "gadget":
            scan.add(S.CRITICAL, "gadget-import", f"{how} {qual} ({g.opcode}), a known "
                     "code-execution gadget", subject=qual, member=member, offset=g.offset,
                     why=f"{j.why}: loading the file runs it")
        elif dotted or dunder:
            rule = "dotted-name" if dotted else "dunder-name"
            scan.add(S.HIGH, rule, f"{how} {qual} ({g.opcode}): a "
                     f"{'dotted' if dotted else 'dunder'} name", subject=qual, member=member,
                     offset=g.offset, why="walks attributes past the module a scanner sees "
                     "(torch.serialization + os.system); no checkpoint writer needs it")
        else:
            scan.add(S.HIGH if qual in called else S.MEDIUM, "unknown-import",
                     f"{how} {qual} ({g.opcode}), which is not on the allowlist", subject=qual,
                     member=member, offset=g.offset, why=j.why)
    for a in m.anomalies:
        if a.kind == "build-on-data":
            if a.detail.endswith(" Ref"):
                scan.add(S.HIGH, "build-on-global", "BUILD sets attributes on a class or "
                         "function", subject="BUILD", member=member, offset=a.offset,
                         why="setattr on an imported class patches it for the whole process")
            continue
        if a.kind in _SKIPPED:
            continue
        sev, rule, why = ANOMALIES.get(a.kind, (S.MEDIUM, a.kind, "an irregular pickle"))
        scan.add(sev, rule, a.detail, subject=_opcode_at(m, a.offset), member=member,
                 offset=a.offset, why=why)
    for c in m.calls:
        if c.target in _HOOK_FUNCS and _has_code(c.args, scan, torchscript):
            scan.add(S.HIGH, "tensor-hooks", f"{c.target} is given callables (backward hooks "
                     "or state) that are not data", subject=c.target, member=member,
                     offset=c.offset, why="torch keeps tensor hooks and calls them later")
        j = policy.judge(*_split(c.target), torchscript=torchscript, profiles=scan.profiles,
                     allow=scan.allow)
        if j.kind == "profile" and _has_code(c.args, scan, torchscript,
                                             worse_than_unknown=True):
            scan.add(S.HIGH, "profile-args", f"{c.target} is built from values that are not "
                     "data", subject=c.target, member=member, offset=c.offset,
                     why="an ecosystem class applied to a callable or an unknown object is "
                     "a gadget, not a config")
        if c.target in policy.LOADERS:
            _nested(scan, c.target, c.args, member, c.offset)


def _split(qual: str) -> tuple[str, str]:
    module, _, name = qual.rpartition(".")
    return module, name


def _has_code(value: Any, scan: Scan, torchscript: bool, depth: int = 0,
              worse_than_unknown: bool = False) -> bool:
    """Whether a call's arguments hold anything but data: a global or an object off the lists.

    ``worse_than_unknown``: count only what is worse than a class on no list (a gadget, a
    callee or name built at run time, a dotted or dunder name). A user's own config class in
    Lightning hyper-parameters is needs-code through its own global, not a profile abused."""
    if depth > 50:
        return False
    rec = lambda v: _has_code(v, scan, torchscript, depth + 1, worse_than_unknown)  # noqa: E731
    name = value.qualname if isinstance(value, Ref) else \
        value.cls if isinstance(value, Opaque) else None
    if name is not None:
        module, _, attr = name.rpartition(".")
        kind = policy.judge(module, attr, torchscript=torchscript, profiles=scan.profiles,
                            allow=scan.allow).kind
        worse = kind == "gadget" or not _IMPORTABLE.match(name) or attr.startswith("__")
        if kind not in ("allow", "profile") and (worse or not worse_than_unknown):
            return True
        if isinstance(value, Opaque):
            return any(rec(p) for p in (value.args, value.state, value.items, value.setitems))
        return False
    if isinstance(value, dict):
        return any(rec(k) or rec(v) for k, v in value.items())
    if isinstance(value, (list, tuple, set, frozenset)):
        return any(rec(v) for v in value)
    return False


# -- payloads of loader gadgets ---------------------------------------------------------------


def _bounded(kind: str) -> Callable[[bytes, Scan], bytes]:
    def run(raw: bytes, scan: Scan) -> bytes:
        cap = min(scan.limits.scan_bytes, max(len(raw), 1) * scan.limits.ratio)
        return decompressor(kind).decompress(raw, cap)
    return run


def _text(fn: Callable[[bytes], bytes]) -> Callable[[Any, Scan], bytes]:
    return lambda raw, scan: fn(raw.encode("latin1") if isinstance(raw, str) else raw)


# Decoder call -> its effect on the first argument, computed here (these are pure functions).
_DECODE: dict[str, Callable[[Any, Scan], bytes]] = {
    **{f"base64.{n}": _text(getattr(base64, n)) for n in (
        ["b64decode", "standard_b64decode", "urlsafe_b64decode", "b32decode", "b16decode", "b85decode", "a85decode", "decodebytes"])},
    "binascii.a2b_base64": _text(binascii.a2b_base64),
    "binascii.a2b_hex": _text(binascii.a2b_hex),
    "binascii.unhexlify": _text(binascii.unhexlify),
    "zlib.decompress": _bounded("zlib"), "bz2.decompress": _bounded("bz2"),
    "lzma.decompress": _bounded("xz"), "gzip.decompress": _bounded("gzip"),
    "io.BytesIO": lambda raw, scan: raw, "_io.BytesIO": lambda raw, scan: raw,
    "builtins.bytes": lambda raw, scan: raw,
    "_codecs.encode": lambda raw, scan: raw.encode("latin1"),
}


def payloads(value: Any, scan: Scan, depth: int = 0) -> list[bytes]:
    """Byte strings an argument amounts to, decoding base64/zlib/BytesIO wrappers symbolically."""
    if depth > 20:
        return []
    if isinstance(value, (bytes, bytearray)):
        return [bytes(value)]
    if isinstance(value, (list, tuple)):
        return [p for v in value for p in payloads(v, scan, depth + 1)]
    if isinstance(value, dict):
        return [p for v in value.values() for p in payloads(v, scan, depth + 1)]
    if isinstance(value, Opaque):
        args = value.args if isinstance(value.args, tuple) else (value.args,)
        decode = _DECODE.get(value.cls)
        if decode is not None and args:
            for raw in payloads(args[0], scan, depth + 1) or [args[0]]:
                if isinstance(raw, (bytes, str)):
                    try:
                        return [bytes(decode(raw, scan))]
                    except (TypeError, binascii.Error) + decompress_errors():
                        return []
            return []
        return [p for a in args for p in payloads(a, scan, depth + 1)]
    return []


def _nested(scan: Scan, target: str, args: Any, member: str | None, offset: int) -> None:
    for i, payload in enumerate(payloads(args, scan)):
        where = f"{member or 'pickle'} > {target}@{offset}" + (f"#{i}" if i else "")
        scan.add(S.INFO, "nested-payload", f"{target} is given {len(payload)} bytes: scanned "
                 "as a nested payload", subject=target, member=member, offset=offset,
                 why="what a loader gadget would load is scanned like a file")
        scan.bytes(payload, member=where, loader=target not in ("marshal.loads",))


# -- streams ----------------------------------------------------------------------------------


Records = Callable[[int, Any, int], "int | None"]


def scan_stream(scan: Scan, data: bytes | memoryview, *, member: str | None, base: int = 0,
                start: int = 0, loader: bool = True, torchscript: bool = False,
                persistent: Callable[[Any, int], Any] | None | bool = True,
                records: Records | None = None) -> None:
    """Every pickle in ``data`` from ``start`` to the end: stacked pickles, legacy torch files
    (five pickles, then storage records walked by their sizes), trailing bytes reported.

    ``records(index, value, end)`` is called after each pickle for formats that put raw records
    between pickles; it returns where the next pickle starts, or None to stop."""
    n = len(data)
    pos, count = start, 0
    legacy: dict[str, Any] | None = None
    while pos < n:
        if count >= _MAX_STACKED:
            scan.add(S.MEDIUM, "limit", f"more than {_MAX_STACKED} stacked pickles",
                     member=member, offset=base + pos, why="the rest was not scanned")
            return
        load = persistent if callable(persistent) else (
            torch_persistent_load(scan, member, legacy) if persistent else None)
        if not loader and count == 0 and not callable(persistent):
            # Bytes not known to be a pickle: pickle.load (and torch.load's first pickle, the
            # legacy magic number) resolves no persistent ids; the machine notes them.
            load = None
        # The second and later pickles are read like the first, from whatever byte follows
        # the STOP (a loader calling load() again accepts any first opcode too).
        ok, value, end = scan_one(scan, data, pos, member=member, base=base,
                                  loader=loader if count == 0 else False,
                                  torchscript=torchscript, persistent=load)
        if not ok:
            if count:
                _trailing(scan, n - pos, member, base + pos)
            return
        if count == 0 and value == LEGACY_MAGIC and records is None:
            legacy = {}  # a legacy torch file: pickles 2-5, then the storage records
        elif count and legacy is None and records is None:
            scan.add(S.INFO, "stacked-pickle", f"pickle #{count + 1} at byte {base + pos}",
                     member=member, offset=base + pos,
                     why="a second pickle runs when a loader calls load() again (joblib, "
                     "legacy torch); scanned like the first")
        count += 1
        pos = end
        if records is not None:
            nxt = records(count - 1, value, pos)
            if nxt is None:
                return
            pos = nxt
        elif legacy is not None and count == 5:
            nxt = _legacy_storages(scan, data, pos, value, legacy, member, base)
            legacy = None
            if nxt is None:
                return
            pos = nxt


def _trailing(scan: Scan, size: int, member: str | None, offset: int) -> None:
    scan.add(S.LOW, "trailing-bytes", f"{size} bytes after the last pickle are not a pickle",
             member=member, offset=offset,
             why="data no loader reads; a place to hide a payload for another tool")


def _legacy_storages(scan: Scan, data: bytes | memoryview, pos: int, keys: Any,
                     storages: dict[str, Any], member: str | None, base: int) -> int | None:
    """Skip the storage records of a legacy file: per key, an int64 element count, the bytes."""
    if not isinstance(keys, list):
        scan.error(f"{scan.path}: byte {base + pos}: legacy storage key list is not a list")
        return None
    n = len(data)
    for key in keys:
        dt = storages.get(str(key))
        if dt is None or pos + 8 > n:
            scan.error(f"{scan.path}: byte {base + pos}: legacy storage {key!r} has no record")
            return None
        (count,) = struct.unpack_from("<q", data, pos)
        size = count * dt.itemsize
        if count < 0 or pos + 8 + size > n:
            scan.error(f"{scan.path}: byte {base + pos}: legacy storage {key!r} runs past the end")
            return None
        pos += 8 + size
    return pos


def tensor_like(value: Any) -> bool:
    return isinstance(value, (TensorEntry, StorageRef))
