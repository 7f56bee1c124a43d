"""Containers: where pickles hide in model files, and the header checks that are findings.

    file            decided by its first bytes: zip, .npy, legacy torch / raw pickle, safetensors,
                    ONNX, gzip/bz2/xz/zlib/lz4 stream, tar; a zip directory at the end of a file
                    that does not start as a zip is a polyglot, and both parts are scanned
    zip             modelport's zip reader (every local and central header): its anomalies,
                    unusual flag bits and CRC mismatches are findings; EVERY member is sniffed
                    by content and scanned, duplicates included; torch storages
                    (``<archive>/data/N``) are only sniffed (their first bytes), never read
    TorchScript     data.pkl/constants.pkl may name ``__torch__`` classes; the code/ it carries
                    is listed and searched for file and system operations
    .npy / .npz     object dtypes (structured too) are pickles np.load(allow_pickle=True) runs
    tar             legacy torch tar archives (sys_info, pickle, storages, tensors), record by
                    record
    compressed      joblib's compressors: decompressed within limits, then scanned by content
    safetensors     the reader's strict header validation, as findings
    ONNX            external data outside the model folder (the reader refuses it) and links
"""

from __future__ import annotations

import contextlib
import io
import mmap
import os
import re
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

from .. import dtypes
from ..containers import compress, npy
from ..containers import tar as tarfmt
from ..containers.zip import ZipArchive, ZipMember
from ..containers.zip import decompressor as zip_decompressor
from ..errors import InputError, LimitExceeded, ModelportError, Truncated
from ..pickle.machine import Ref
from . import pickles
from .context import Scan, pickle_strength
from .findings import Severity

__all__ = ["scan_path", "scan_zip", "scan_npy", "scan_tar", "scan_compressed"]

S = Severity
_HEAD = 4096

# ZipArchive anomaly kind -> (severity, rule, why it matters).
ZIP_RULES: dict[str, tuple[Severity, str, str]] = {
    "prefix": (S.MEDIUM, "zip-prefix", "bytes before the first zip header make a polyglot: "
               "torch.load checks only the first four bytes and unpickles the file as a legacy "
               "torch file, while zip tools see a clean archive"),
    "name-mismatch": (S.MEDIUM, "zip-name-mismatch", "the local header names the member "
                      "differently from the central directory: zipfile refuses it (scanners "
                      "crash, CVE-2025-1944) while torch reads it"),
    "duplicate": (S.MEDIUM, "zip-duplicate", "two members share a name: readers disagree on "
                  "which one is loaded (both were scanned)"),
    "encrypted": (S.MEDIUM, "zip-flags", "the encryption flag is set: zipfile refuses the "
                  "member (scanners crash, CVE-2025-1945) while torch ignores the flag"),
    "method": (S.MEDIUM, "zip-method", "a compression method model writers never use: "
               "scanners cannot read the member, some loaders can"),
    "method-mismatch": (S.MEDIUM, "zip-method", "local and central headers disagree on the "
                        "compression method: readers disagree on the bytes"),
    "bomb": (S.MEDIUM, "zip-bomb", "a member that expands far beyond its compressed size"),
}
_FLAG_OK = 0x1 | 0x2 | 0x4 | 0x8 | 0x800  # encrypted (own rule), deflate level, descriptor, UTF-8
_FLAG_WHY = ("flag bits no model writer sets (patched data 0x20, strong encryption 0x40, masked "
             "header 0x2000, reserved): zipfile refuses the member while torch ignores them "
             "(CVE-2025-1945)")
_SMALL = 64 << 20  # members read whole to check their CRC (pickles, code, small files)

# -- files --------------------------------------------------------------------------------------


def scan_path(scan: Scan, path: str) -> None:
    """Scan one file on disk by its content; the bytes are mapped, never read whole.

    The registry decides the format (the same decision ``detect`` makes, so the scanner's
    label and the reader's always agree) and its scan hook judges the file. A format that is
    recognised but has no hook yet is never clean: its report gets an error saying so, and its
    bytes still go through the generic container pass so that no finding is hidden. Bytes no
    format claims (compressed streams, tar, zips, anything a pickle loader would take) go
    through that generic pass alone."""
    from ..formats import Probe, identify

    probe = Probe.of_path(path, scan.limits)
    if not probe.size:
        scan.report.format = "empty"
        return
    fmt = identify(probe)
    scan.probe = probe
    with _mapped(path) as view:
        # One map of the file for every pass below (hooks, byte 0, the zip's members).
        scan.view = view
        try:
            if fmt is not None:
                scan.report.format = fmt.id
                hook = fmt.scanner()
                if hook is not None:
                    hook(scan, path)
                else:
                    scan.error(f"{path}: "
                               f"{fmt.unsupported or fmt.title + ' is recognised but not analysed'}"
                               " (not clean: nothing in it was judged)")
                    _generic(scan, path, probe.head, probe.size)
            else:
                _generic(scan, path, probe.head, probe.size)
            if not scan.from_zero:
                # Whatever the format, pickle.load / torch.load(weights_only=False) on this file
                # parses it as a pickle from byte 0 (torch.load does for anything but a zip).
                scan_pickle_file(scan, path, label=False)
        finally:
            scan.view = None
    if not probe.head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        _polyglot(scan, path, probe.size)


@contextlib.contextmanager
def _mapped(path: str, scan: Scan | None = None) -> Iterator[memoryview]:
    """The file's bytes, mapped (never read whole); the map closes after the block (or when
    the last view a finished machine still holds goes, see ``_close``). The map ``scan_path``
    holds for the file being scanned is reused, not made again."""
    if scan is not None and scan.view is not None and scan.probe.path == path:
        yield scan.view
        return
    with open(path, "rb") as f:
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if os.fstat(f.fileno()).st_size \
            else None
    view = memoryview(mm if mm is not None else b"")
    try:
        yield view
    finally:
        try:
            view.release()
        except BufferError:
            pass  # a slice of it is still referenced: the map closes with it
        if mm is not None:
            _close(mm)


def _generic(scan: Scan, path: str, head: bytes, size: int) -> None:
    """Containers and streams that are not model formats of their own."""
    rep = scan.report
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        scan_zip_file(scan, path)  # with the directory the registry's sniffers already read
        return
    if head.startswith(SEVEN_Z):
        rep.format = rep.format or "7z"
        with _mapped(path, scan) as data:
            scan_7z(scan, data, member=None)
        return
    kind = compress.kind_of(head)
    tar = tarfmt.is_tar(head)
    with _mapped(path, scan) as data:
        if kind:
            rep.format = rep.format or f"compressed-{kind}"
            scan_compressed(scan, data, kind, member=None)
        if kind in compress.MAGIC_KINDS:
            return  # a magic number no pickle reading gets past (scan_path still tries)
        if tar:
            rep.format = rep.format or "tar"
            scan_tar(scan, data, member=None)
        # The same bytes may also be a tar or a no-magic stream: every reading is judged. Any
        # bytes are a pickle to CPython until an invalid opcode: parsed from byte 0.
        _pickle_from_zero(scan, data, label=True)


# -- registry hooks: (scan, path) -----------------------------------------------------------


def scan_zip_file(scan: Scan, path: str) -> None:
    probe = scan.probe
    # The probe's archive is None when the directory cannot be read: scan_zip reads it again
    # and reports why.
    archive = probe.zip_archive if probe is not None and probe.path == path else None
    scan_zip(scan, path, member=None, archive=archive)


def scan_pickle_file(scan: Scan, path: str, label: bool = True) -> None:
    """The file as a pickle from byte 0 (stacked pickles to its end)."""
    with _mapped(path, scan) as data:
        _pickle_from_zero(scan, data, label)


def _pickle_from_zero(scan: Scan, data: memoryview, label: bool) -> None:
    """``label``: name the format "pickle" if no format claimed the file and the parse judged
    something."""
    scan.from_zero = True
    before = len(scan.report.scanned)
    pickles.scan_stream(scan, data, member=None, loader=pickle_strength(bytes(data[:80])) == 2)
    if label and scan.report.format is None and len(scan.report.scanned) > before:
        scan.report.format = "pickle"


def scan_npy_file(scan: Scan, path: str) -> None:
    with _mapped(path, scan) as data:
        scan_npy(scan, data, member=None)


def scan_safetensors(scan: Scan, path: str) -> None:
    _safetensors(scan, path)


def scan_onnx(scan: Scan, path: str) -> None:
    _onnx(scan, path)


def _close(mm: mmap.mmap) -> None:
    try:
        mm.close()
    except BufferError:
        pass  # a view is still referenced (by a finished machine): the map closes with it


def _polyglot(scan: Scan, path: str, size: int) -> None:
    """A zip directory at the end of a file that does not start as a zip: zip tools read the
    archive, torch.load reads what comes first. Both parts are scanned."""
    with open(path, "rb") as f:
        tail = os.pread(f.fileno(), min(size, 65557), max(0, size - 65557))
    if b"PK\x05\x06" not in tail:
        return
    try:
        archive = ZipArchive.open(path, scan.limits)
    except (ModelportError, OSError, ValueError, struct.error) as exc:
        # Usually the signature is a coincidence in some data. But if Python's zipfile (what
        # zip tools and many loaders use) reads an archive there, modelport must not shrug:
        # it cannot judge what that archive holds.
        import zipfile

        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()  # the central directory only; no member is extracted
        except (zipfile.BadZipFile, OSError, ValueError, EOFError, struct.error):
            return
        if names:
            scan.add(S.MEDIUM, "polyglot", f"the file is also a zip archive of {len(names)} "
                     "member(s) that modelport's zip reader cannot read "
                     f"({getattr(exc, 'message', exc)})", offset=0,
                     why="zip tools read content from this file that was not judged")
            scan.error(f"{path}: the zip archive inside it cannot be read, so its members were "
                       "not scanned")
        return
    if not archive.members:
        return
    scan.add(S.MEDIUM, "polyglot", f"the file is also a zip archive of {len(archive.members)} "
             f"member(s) starting at byte {min(m.header_offset for m in archive.members)}",
             offset=0, why="loaders that decide by the first bytes and zip tools read different "
             "content from the same file")
    scan_zip(scan, path, member=None, archive=archive, before=False)


# -- zip ----------------------------------------------------------------------------------------


def scan_zip(scan: Scan, path: str, *, member: str | None,
             archive: ZipArchive | None = None, before: bool = True) -> None:
    """Every member of a zip, by content. ``before``: also scan what precedes the archive
    (False when the caller already scanned the file from its first byte)."""
    try:
        archive = archive or ZipArchive.open(path, scan.limits)
    except LimitExceeded as exc:
        _limit(scan, exc, member)
        return
    except ModelportError as exc:
        scan.error(_where(str(exc), member))
        return
    except (ValueError, struct.error) as exc:  # names that are not UTF-8, short records
        scan.error(_where(f"{path}: the zip directory cannot be read: {exc}", member))
        return
    label = (member + " > ") if member else ""
    for a in archive.anomalies:
        sev, rule, why = ZIP_RULES.get(a.kind, (S.LOW, f"zip-{a.kind}", "an irregular archive"))
        scan.add(sev, rule, a.detail, member=label + (a.member or ""), offset=a.offset, why=why)
    names = [m.name for m in archive.members]
    folders = {n.rsplit("/", 1)[0] + "/" for n in names if n.endswith("/data.pkl")}
    folders |= {""} if "data.pkl" in names else set()
    script = {f for f in folders if f + "constants.pkl" in names
              or any(n.startswith(f + "code/") for n in names)}
    loaders = {f + "data.pkl" for f in folders} | {f + "constants.pkl" for f in script}
    if member is None and scan.report.format in (None, "pickle", "torch-legacy"):
        from ..formats.numpy import is_npz_listing
        from ..formats.torch_zip import archive_kind

        kind = archive_kind(names) or ("numpy-npz" if is_npz_listing(names) else "zip")
        scan.report.format = kind if scan.report.format is None else \
            f"{scan.report.format}+{kind}"
    with _mapped(archive.path, scan) as buf:
        for m in archive.members:
            in_script = any(m.name.startswith(s) for s in script)
            storage = any(m.name.startswith(fo + "data/") for fo in folders)
            _member(scan, archive, buf, m, label, loader=m.name in loaders,
                    storage=storage, torchscript=in_script)
        first = min((m.header_offset for m in archive.members), default=0)
        if first and before:
            # What precedes the archive: a pickle here is what torch.load would run.
            scan.bytes(buf[:first], member=label + "<before the zip>")
    for s in sorted(script):
        _torchscript_code(scan, archive, s, label)


def _head(buf: memoryview, m: ZipMember, n: int) -> bytes:
    """The first ``n`` bytes of a member, decompressing only what that takes."""
    raw = bytes(buf[m.data_offset:m.data_offset + min(m.csize, n if m.stored else
                                                        max(n, 1 << 16))])
    if m.stored or m.method not in (8, 12, 14):
        return raw
    try:
        d, start = zip_decompressor(m.method, raw)
        return d.decompress(raw[start:], n)
    except compress.errors():
        return b""


def _member(scan: Scan, archive: ZipArchive, buf: memoryview, m: ZipMember, label: str,
            *, loader: bool, storage: bool, torchscript: bool) -> None:
    name = label + m.name
    lflags, lcrc = m.local_flags, m.local_crc
    for flags in {m.flags, lflags}:
        odd = flags & ~_FLAG_OK
        if odd:
            scan.add(S.MEDIUM, "zip-flags", f"general purpose flags 0x{flags:04x}", member=name,
                     offset=m.header_offset, why=_FLAG_WHY)
    if lcrc and lcrc != m.crc:
        scan.add(S.MEDIUM, "zip-crc", f"local CRC {lcrc:08x} differs from central {m.crc:08x}",
                 member=name, offset=m.header_offset, why=_CRC_WHY)
    head = _head(buf, m, 512)
    if storage and not loader and not m.stored:
        scan.add(S.MEDIUM, "compressed-storage", f"tensor storage compressed with method "
                 f"{m.method}", member=name, offset=m.header_offset,
                 why="torch never compresses storages: readers that map them in place and "
                 "torch see different bytes")
    if not (loader or m.stored or pickle_strength(head) or compress.kind_of(head) or
            head.startswith((b"\x93NUMPY", b"PK\x03\x04", SEVEN_Z)) or tarfmt.is_tar(head)) \
            and not pickles.may_be_pickle(head, m.usize):
        # A compressed member whose first bytes CPython would already refuse as a pickle:
        # the whole member would be refused at the same opcode, no need to inflate it.
        return
    if head.startswith(b"\x93NUMPY") and not _npy_has_object(head):
        scan.note_scanned(f"{name} (.npy header)")
        return  # a numeric array: the header says it all, the data is never read
    data, base = _member_bytes(scan, archive, buf, m, name)
    if data is None:
        return
    if len(data) <= _SMALL and (loader or not storage) and zlib.crc32(data) != m.crc:
        scan.add(S.MEDIUM, "zip-crc", f"CRC {zlib.crc32(data):08x} of the data differs from "
                 f"the recorded {m.crc:08x}", member=name, offset=m.header_offset, why=_CRC_WHY)
    if loader or pickle_strength(head) or storage:
        # Every member, storages too, is parsed as a pickle from its first byte: tensor bytes
        # stop CPython's parser within a few opcodes, a payload does not.
        pickles.scan_stream(scan, data, member=name, base=base,
                            loader=loader or (pickle_strength(head) == 2 and not storage),
                            torchscript=torchscript)
    else:
        scan.bytes(data, member=name, base=base)


_CRC_WHY = ("a CRC mismatch makes zipfile-based scanners fail on the member while torch loads "
            "it (CVE-2025-10156)")


def _member_bytes(scan: Scan, archive: ZipArchive, buf: memoryview, m: ZipMember,
                  name: str) -> tuple[Any, int]:
    if m.stored or m.method not in (8, 12, 14):
        # In place: a view of the mapped file, so a storage member is only paged in as parsed.
        return buf[m.data_offset:m.data_offset + m.csize], m.data_offset
    try:
        # The scanner holds a decompressed member in memory: cap it lower than a reader would.
        limits = replace(scan.limits, member_bytes=min(scan.limits.member_bytes,
                                                       scan.limits.scan_bytes))
        return archive.read(m, limits), 0
    except LimitExceeded as exc:
        _limit(scan, exc, name)
    except ModelportError as exc:
        scan.error(_where(str(exc), None))
    return None, 0


def _limit(scan: Scan, exc: ModelportError, member: str | None) -> None:
    scan.add(S.MEDIUM, "limit", f"resource limit hit: {exc.message}", member=member,
             offset=exc.offset, why="the rest was not scanned; a loader would go on")


def _where(message: str, member: str | None) -> str:
    return f"{member}: {message}" if member else message


def _torchscript_code(scan: Scan, archive: ZipArchive, folder: str, label: str) -> None:
    """The program under code/, parsed with ast (scan/torchscript.py), never compiled."""
    from . import torchscript

    methods: list[str] = []
    for m in archive.members:
        if not (m.name.startswith(folder + "code/") and m.name.endswith(".py")):
            continue
        try:
            text = archive.read(m, scan.limits).decode("utf-8", "replace")
            hits, names = torchscript.analyse(text)
        except ModelportError as exc:
            scan.error(_where(str(exc), label + m.name))
            continue
        except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
            scan.error(_where(f"{scan.path}: TorchScript code cannot be parsed ({exc}); "
                              "not judged", label + m.name))
            continue
        methods += names
        for h in hits:
            scan.add(h.severity, h.rule, f"TorchScript code uses {h.subject} (line {h.line})",
                     subject=h.subject, member=label + m.name, why=h.why)
    if methods:
        shown = ", ".join(sorted(set(methods))[:8])
        scan.add(S.INFO, "torchscript-code", f"a TorchScript program with {len(methods)} "
                 f"method(s): {shown}", member=label + folder + "code/",
                 why="torch.jit.load compiles it and runs __setstate__ methods; inference runs "
                 "the rest")


# -- numpy ----------------------------------------------------------------------------------------


def _npy_has_object(head: bytes) -> bool:
    try:
        return npy.descr_has_object(npy.header_of_bytes(head).descr)
    except ModelportError:
        return True  # cannot tell from the first bytes: read it, scan_npy decides


def scan_npy(scan: Scan, data: Any, *, member: str | None, base: int = 0) -> None:
    """A .npy stream: its header decoded as numpy decodes it (containers.npy); an object
    dtype means np.load(allow_pickle=True) unpickles what follows the header."""
    try:
        header = npy.header_of_bytes(data, replace(scan.limits, header_bytes=max(
            scan.limits.header_bytes, len(data))), path=scan.path, member=member, offset=base)
    except ModelportError as exc:
        scan.error(_where(f"{scan.path}: .npy header cannot be parsed: {exc.message}", member))
        return
    scan.note_scanned(f"{member or 'npy'} (.npy header)")
    if not npy.descr_has_object(header.descr):
        return
    scan.add(S.LOW, "npy-object", f"an object array (dtype {header.descr!r}): its data is a "
             "pickle", member=member, offset=base + header.data_offset,
             why="np.load(allow_pickle=True) unpickles it; its pickle is scanned")
    pickles.scan_stream(scan, data, member=(member or "npy") + " (object data)", base=base,
                        start=header.data_offset, loader=True, persistent=False)


# -- compressed streams and tar -----------------------------------------------------------------


def scan_compressed(scan: Scan, data: Any, kind: str, *, member: str | None,
                    base: int = 0) -> None:
    """Every stream of a compressed run (containers.compress), then its content by content."""
    cap = min(scan.limits.scan_bytes, max(len(data), 1) * scan.limits.ratio)
    try:
        out = compress.decompress(data, kind, cap)
    except compress.MissingCodec as exc:
        scan.error(_where(f"{scan.path}: {exc}; install it to scan inside (not clean: nothing "
                          "in the stream was judged)", member))
        return
    guessed = kind not in compress.MAGIC_KINDS  # zlib / LZMA-alone: no magic number
    where = f"{member or os.path.basename(scan.path)} ({kind})"
    if out.error and not guessed:
        scan.error(_where(f"{scan.path}: byte {base + out.end}: the {kind} stream is corrupt: "
                          f"{out.error} (what it held before was scanned)", member))
    if out.over:
        scan.add(S.MEDIUM, "bomb", f"the {kind} stream expands beyond {cap} bytes",
                 member=member, offset=base, why="a decompression bomb; the first "
                 f"{cap} bytes were scanned")
    if out.trailing and out.streams:
        scan.add(S.LOW, "compressed-trailing", f"{out.trailing} bytes after the last {kind} "
                 "stream are not another stream", member=member, offset=base + out.end,
                 why="readers stop there (gzip raises after handing over what came before): "
                 "data no loader reads, a place to hide a payload for another tool")
    if out.streams or not guessed:
        scan.add(S.INFO, "compressed-stream", f"{out.streams} {kind} stream(s), {len(out.data)} "
                 "bytes, scanned inside", member=member, offset=base,
                 why="joblib and others compress pickles; the loader decompresses every stream "
                 "and unpickles what they hold")
    # A stream that broke is still judged on what came out before: a streaming loader
    # (GzipFile, LZMAFile) has already handed that to the unpickler.
    scan.bytes(out.data, member=where)


# Legacy torch tar members whose pickles are interleaved with raw records (torch/serialization.py
# ``_legacy_load.legacy_load``): member -> walker(data) -> records callback.
def _tar_storages(data: bytes) -> Callable[[int, Any, int], int | None]:
    def step(i: int, value: Any, pos: int) -> int | None:
        if i == 0 or not (isinstance(value, tuple) and len(value) == 3):
            return pos  # the count, or the storage views after the records
        stype = value[2].name if isinstance(value[2], Ref) else str(value[2])
        dt = dtypes.by_torch_storage(stype)
        if dt is None or pos + 8 > len(data):
            return None
        (count,) = struct.unpack_from("<q", data, pos)
        return pos + 8 + max(count, 0) * dt.itemsize
    return step


def _tar_tensors(data: bytes) -> Callable[[int, Any, int], int | None]:
    def step(i: int, value: Any, pos: int) -> int | None:
        if i == 0:
            return pos
        if pos + 8 > len(data):
            return None
        (ndim,) = struct.unpack_from("<i", data, pos)
        return pos + 8 + 16 * max(ndim, 0) + 8
    return step


_TAR_RECORDS = {"storages": _tar_storages, "tensors": _tar_tensors}


_TAR_KINDS = {"1": "hardlink", "2": "symlink", "3": "device", "4": "device", "6": "fifo"}
_TORCH_TAR = ("storages", "tensors", "pickle")  # what torch's legacy loader extracts and unpickles


def scan_tar(scan: Scan, data: bytes | memoryview, *, member: str | None) -> None:
    """Every member of a tar (containers.tar decides it is one), by content; names and links
    that extraction would follow out of its folder are findings. ``ignore_zeros``: members
    after an end-of-archive block are read too (``tar -i`` and tarfile(ignore_zeros) do)."""
    import tarfile

    label = (member + " > ") if member else ""
    view = memoryview(data)
    try:
        with tarfile.open(fileobj=_ViewFile(view), mode="r:", ignore_zeros=True) as tar:
            for info in tar:
                name = label + info.name
                kind = "file" if info.isreg() else "dir" if info.isdir() else \
                    _TAR_KINDS.get(info.type.decode("latin1"), "other")
                for rule, what, outside in tarfmt.hazards(info.name, kind, info.linkname):
                    torch_member = info.name in _TORCH_TAR and kind != "file"
                    sev = S.MEDIUM if outside or torch_member else S.LOW
                    scan.add(sev, rule, what, member=name, offset=info.offset, why=(
                        "extracting it writes or reads outside the extraction folder "
                        "(tarfile without a filter, torch's legacy tar loader)" if sev > S.LOW
                        else "extraction follows it; no model writer emits one"))
                if not info.isreg():
                    continue
                if info.issparse():
                    f = tar.extractfile(info)
                    if info.size > scan.limits.scan_bytes:
                        _limit(scan, LimitExceeded(f"sparse tar member of {info.size} bytes"),
                               name)
                        continue
                    body: Any = f.read() if f is not None else b""
                else:
                    body = view[info.offset_data:info.offset_data + info.size]
                strength = pickle_strength(body[:80])
                walker = _TAR_RECORDS.get(info.name)
                if walker is not None and strength:
                    pickles.scan_stream(scan, body, member=name, base=info.offset_data,
                                        records=walker(body), persistent=_tar_pid)
                elif info.name in _TORCH_TAR or strength:
                    pickles.scan_stream(scan, body, member=name, base=info.offset_data,
                                        persistent=_tar_pid,
                                        loader=info.name in _TORCH_TAR or strength == 2)
                    if not strength:
                        scan.bytes(body, member=name, base=info.offset_data)
                else:
                    scan.bytes(body, member=name, base=info.offset_data)
    except (tarfile.TarError, EOFError) as exc:
        scan.error(_where(f"{scan.path}: tar archive cannot be read: {exc}", member))


class _ViewFile(io.RawIOBase):
    """A read-only file over a memoryview (a mapped file or decompressed bytes), so tarfile
    walks headers without a copy of the archive."""

    def __init__(self, view: memoryview) -> None:
        self._view, self._pos = view, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        self._pos = max(0, offset if whence == 0 else self._pos + offset if whence == 1
                        else len(self._view) + offset)
        return self._pos

    def readinto(self, buf: Any) -> int:
        chunk = self._view[self._pos:self._pos + len(buf)]
        buf[:len(chunk)] = chunk
        self._pos += len(chunk)
        return len(chunk)


SEVEN_Z = b"7z\xbc\xaf\x27\x1c"  # 7z signature header (7zFormat.txt)


def scan_7z(scan: Scan, data: bytes | memoryview, *, member: str | None) -> None:
    """A 7z archive: listed and every member scanned by content when py7zr is installed;
    without it, an error (never clean). Extraction is bounded by Limits.scan_bytes in all."""
    label = (member + " > ") if member else ""
    try:
        import py7zr  # type: ignore[import-untyped]
        from py7zr.io import Py7zIO, WriterFactory  # type: ignore[import-untyped]
    except ImportError:
        scan.error(_where(f"{scan.path}: 7z archive: not scanned (install py7zr)", member))
        return
    budget = scan.limits.scan_bytes

    class Sink(Py7zIO):  # type: ignore[misc]  # py7zr's writer interface, in memory, bounded
        def __init__(self) -> None:
            self.buf = bytearray()
            self.over = False

        def write(self, s: bytes | bytearray) -> int:
            nonlocal budget
            take = min(len(s), max(budget, 0))
            self.buf += s[:take]
            budget -= take
            self.over = self.over or take < len(s)
            return len(s)

        def read(self, size: int | None = None) -> bytes:
            return b""

        def seek(self, offset: int, whence: int = 0) -> int:
            return 0

        def flush(self) -> None:
            return None

        def size(self) -> int:
            return len(self.buf)

    class Sinks(WriterFactory):  # type: ignore[misc]
        def __init__(self) -> None:
            self.products: dict[str, Sink] = {}

        def create(self, filename: str) -> Sink:
            self.products[filename] = Sink()
            return self.products[filename]

    sinks = Sinks()
    try:
        with py7zr.SevenZipFile(io.BufferedReader(_ViewFile(memoryview(data))), mode="r") as z:
            infos = z.list()
            for info in infos:
                kind = "symlink" if getattr(info, "is_symlink", False) else \
                    "dir" if info.is_directory else "file"
                for rule, what, outside in tarfmt.hazards(info.filename, kind, ""):
                    scan.add(S.MEDIUM if outside else S.LOW, rule.replace("tar-", "7z-"), what,
                             member=label + info.filename,
                             why="extracting it writes outside the extraction folder")
            z.extract(factory=sinks)
    except Exception as exc:  # noqa: BLE001 - py7zr raises many types on hostile archives
        scan.error(_where(f"{scan.path}: 7z archive cannot be read: {type(exc).__name__}: {exc}",
                          member))
        return
    scan.add(S.INFO, "7z-archive", f"a 7z archive of {len(infos)} member(s), scanned inside",
             member=member, why="its members are what a loader extracts and reads")
    for name, sink in sinks.products.items():
        if sink.over:
            _limit(scan, LimitExceeded(f"7z members exceed {scan.limits.scan_bytes} bytes"),
                   label + name)
        scan.bytes(bytes(sink.buf), member=label + name)


def _tar_pid(pid: Any, offset: int) -> Any:
    # Legacy tar pickles refer to storages by key (str) and classes by ('module', cls, ...).
    if isinstance(pid, tuple) and pid and pid[0] == "module" and len(pid) == 4:
        return pid[1]
    from ..model import Opaque

    return Opaque("<storage>", (pid,), how="persid")


# -- headers --------------------------------------------------------------------------------------


def _safetensors(scan: Scan, path: str) -> None:
    from ..formats import safetensors

    try:
        safetensors.parse_header(path, scan.limits)
        scan.note_scanned("safetensors header")
    except Truncated as exc:
        scan.add(S.LOW, "safetensors-header", exc.message, offset=exc.offset,
                 why="the file ends before its header says it does")
        scan.error(str(exc))
    except (LimitExceeded, InputError) as exc:
        if type(exc) is InputError:  # a valid file with a dtype modelport does not map yet
            return
        scan.add(S.MEDIUM, "safetensors-header", exc.message, subject=exc.tensor,
                 offset=exc.offset, why="a header two safetensors readers may read differently "
                 "(the reference rejects it)")


def _onnx(scan: Scan, path: str) -> None:
    """External data of every tensor-bearing field (containers/onnx_tensors.py): locations
    out of the model's folder and links are findings; then the reader's own checks."""
    from ..containers import onnx_tensors
    from ..formats.onnx import reader as onnx

    folder = os.path.dirname(os.path.abspath(path))
    with _mapped(path, scan) as buf:
        try:
            for ref in onnx_tensors.walk(buf, scan.limits):
                _onnx_location(scan, folder, ref)
        except ModelportError as exc:
            scan.error(str(exc.located(path=path)))
    try:
        onnx.open(path, scan.limits)
    except ModelportError as exc:
        # The reader refused: unless a finding above already judged that location, it is an
        # error (a location that is a folder, say, is not "nothing to worry about").
        judged = {f.subject for f in scan.report.findings if f.rule.startswith("onnx-external")}
        if not (exc.tensor is not None and any(
                loc and loc in exc.message for loc in judged)):
            scan.error(str(exc.located(path=path)))
        return
    scan.note_scanned("onnx graph")


_ONNX_WHY = ("onnx and onnxruntime read external data relative to the model; a location out "
             "of its folder reads any file on the machine")


def _onnx_location(scan: Scan, folder: str, ref: Any) -> None:
    from ..containers.onnx_tensors import location_problem

    problem = location_problem(ref.location)
    if problem:
        scan.add(S.HIGH, "onnx-external-path", f"external data location {ref.location!r} of "
                 f"{ref.where} is {problem}", subject=ref.location, offset=ref.offset,
                 why=_ONNX_WHY)
        return
    parts = [p for p in re.split(r"[\\/]", ref.location) if p not in ("", ".")]
    links = [os.path.join(folder, *parts[:i + 1]) for i in range(len(parts))]
    target = os.path.join(folder, *parts)
    real, root = os.path.realpath(target), os.path.realpath(folder)
    if os.path.commonpath([real, root]) != root:
        scan.add(S.HIGH, "onnx-external-path", f"external data {ref.location!r} of {ref.where} "
                 f"resolves outside the model's folder (to {real})", subject=ref.location,
                 offset=ref.offset, why=_ONNX_WHY)
    elif any(os.path.islink(p) for p in links):
        scan.add(S.MEDIUM, "onnx-external-link", f"external data {ref.location!r} of "
                 f"{ref.where} is a link", subject=ref.location, offset=ref.offset,
                 why="a link in the model folder makes the loader read whatever it points at")
    elif os.path.isfile(target) and os.stat(target).st_nlink > 1:
        scan.add(S.LOW, "onnx-external-link", f"external data {ref.location!r} has "
                 f"{os.stat(target).st_nlink} hard links", subject=ref.location,
                 offset=ref.offset, why="the same bytes are reachable under another name")
