"""``convert(src, dst, **options)``: check, plan, stream every shard, verify, then commit.

Output is atomic: everything is written under a temporary sibling of DST
(``.NAME.modelport-PID-RAND.tmp``, a file or a folder), each file fsynced, then renamed into
place and the parent folder fsynced. An error, Ctrl-C (KeyboardInterrupt) or a full disk
removes the temporary sibling; only SIGKILL can leave one behind, and never a partial DST.
SRC is never written: DST may not be SRC, one of the files SRC reads, or a folder holding them.
"""

from __future__ import annotations

import errno
import json
import os
import re
import secrets
import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ..errors import InputError, OutputError, UnsafeInput, UsageError
from ..model import Checkpoint
from .plan import Plan, Shard, make_plan, resolve_target
from .source import load, source_files
from .stream import Cancelled, Sink, Sources

__all__ = ["convert", "ConvertResult", "side_files", "Atomic", "check_paths_against"]

# Files of a Hugging Face folder that are weights (rewritten, never copied along) or pickles
# (code a loader would run: not carried into a converted, safe folder).
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".h5",
                    ".msgpack", ".onnx", ".gguf", ".npz", ".npy", ".joblib", ".ot", ".keras")
# os.link errors that mean "this file system has no hard links" (Linux vfat: EPERM).
_NO_LINKS = frozenset({errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS, errno.EMLINK})


@dataclass
class ConvertResult:
    src: str
    dst: str
    format: str
    files: list[str]  # written, relative to DST for a folder
    tensors: int
    bytes: int  # tensor bytes written
    seconds: float
    notes: list[str] = field(default_factory=list)
    verified: Any = None  # a VerifyResult when verify=True


def side_files(folder: str) -> tuple[list[str], list[str]]:
    """(copied along, left out) among the top-level files of a Hugging Face folder."""
    copy: list[str] = []
    skip: list[str] = []
    for name in sorted(os.listdir(folder)):
        if name.startswith(".") or not os.path.isfile(os.path.join(folder, name)):
            continue
        if name.endswith(".index.json"):
            continue
        (skip if name.lower().endswith(_WEIGHT_SUFFIXES) else copy).append(name)
    return copy, skip


class Atomic:
    """A temporary sibling of ``dst`` that becomes ``dst`` on ``commit``, or disappears."""

    def __init__(self, dst: str, folder: bool, force: bool) -> None:
        self.dst = os.path.abspath(dst)
        self.parent = os.path.dirname(self.dst)
        if not os.path.isdir(self.parent):
            raise OutputError("the folder DST goes into does not exist", path=self.parent,
                              hint="create it first")
        self.folder, self.force = folder, force
        self.tmp = os.path.join(self.parent, f".{os.path.basename(self.dst)}.modelport-"
                                f"{os.getpid()}-{secrets.token_hex(4)}.tmp")
        self.done = False
        self.extra: list[str] = []  # side files next to tmp, removed if the conversion fails

    def __enter__(self) -> Atomic:
        try:
            if self.folder:
                os.mkdir(self.tmp)
        except OSError as exc:
            raise OutputError(f"cannot create a file next to DST: {exc.strerror}",
                              path=self.dst) from exc
        return self

    def path(self, name: str = "") -> str:
        return os.path.join(self.tmp, name) if self.folder else self.tmp

    def commit(self) -> None:
        if self.folder:
            _fsync_dir(self.tmp)
        if os.path.lexists(self.dst):
            if not self.force:
                raise OutputError("DST appeared while converting", path=self.dst,
                                  hint="use --force to replace it")
            if os.path.isdir(self.dst) or self.folder:
                trash = self.tmp + ".old"
                os.rename(self.dst, trash)
                try:
                    os.rename(self.tmp, self.dst)
                except BaseException:
                    os.rename(trash, self.dst)  # the old DST back: a failure replaces nothing
                    raise
                _remove(trash)
            else:
                os.replace(self.tmp, self.dst)
        elif self.folder:
            os.rename(self.tmp, self.dst)
        else:
            try:
                os.link(self.tmp, self.dst)  # fails if DST appeared meanwhile: never clobbers
            except FileExistsError:
                raise OutputError("DST appeared while converting", path=self.dst,
                                  hint="use --force to replace it") from None
            except OSError as exc:
                # File systems without hard links (FAT, exFAT, some FUSE and network mounts):
                # a plain rename, DST having been checked just above.
                if exc.errno not in _NO_LINKS:
                    raise
                os.rename(self.tmp, self.dst)
            else:
                os.unlink(self.tmp)
        self.done = True
        _fsync_dir(self.parent)

    def __exit__(self, *exc: object) -> None:
        if not self.done:
            _remove(self.tmp)
            for extra in self.extra:
                _remove(extra)


def _remove(path: str) -> None:
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        elif os.path.lexists(path):
            os.unlink(path)
    except OSError:
        pass


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems cannot fsync a directory; the data itself was fsynced
    finally:
        os.close(fd)


def _check_paths(src: str, dst: str, force: bool) -> None:
    if not os.path.exists(src):
        raise InputError("no such file or folder", path=src)
    if not os.access(src, os.R_OK):
        raise InputError("cannot read: permission denied", path=src)
    if os.path.exists(dst) and os.path.realpath(dst) == os.path.realpath(src):
        raise OutputError("DST is SRC: a conversion never overwrites its input", path=dst,
                          hint="name another DST")
    if os.path.lexists(dst) and not force:
        raise OutputError("DST exists", path=dst, hint="use --force to replace it")


# What a model folder holds (weights, indexes, configs, tokenizer and card files): --force
# replaces a folder only when every entry is one of these, so a typo cannot delete a home folder.
_MODEL_FOLDER_FILE = re.compile(
    r"\.(safetensors|bin|pt|pth|ckpt|npz|json|txt|model|msgpack|onnx|md|jinja|py)$"
    r"|^(tokenizer|vocab|merges|special_tokens_map|generation_config|config|README|LICENSE)",
    re.IGNORECASE)


def _check_replaceable(dst: str) -> None:
    for entry in os.scandir(dst):
        if entry.is_dir(follow_symlinks=False) or not _MODEL_FOLDER_FILE.search(entry.name):
            raise OutputError(f"DST is a folder holding {entry.name!r}, which is not part of a "
                              "model folder; --force replaces only model folders", path=dst,
                              hint="remove it yourself, or name another DST")


def check_paths_against(files: set[str], dst: str, allow_unsafe: bool) -> list[str]:
    """Files read besides SRC (a LoRA adapter): never DST or inside it, and scanned like SRC
    (the scanner's notes returned)."""
    _check_sources(files, dst)
    return _scan(files, allow_unsafe)


def _check_sources(files: set[str], dst: str) -> None:
    real = os.path.realpath(dst)
    for f in files:
        if f == real or f.startswith(real.rstrip(os.sep) + os.sep):
            raise OutputError(f"DST {'is' if f == real else 'holds'} a file SRC is read from "
                              f"({f})", path=dst, hint="name another DST")


def _scan(files: set[str], allow_unsafe: bool) -> list[str]:
    """Refuse a source the scanner calls unsafe, or could not judge in full (an error: the
    part it could not read may hold what it would have flagged). modelport never runs the
    source, but its output would look safe. The scanner is part of the core: if it cannot be
    imported the install is broken, and that is raised, never skipped.

    A *needs-code* source (a ``torch.save(model)`` file naming ``__main__.Net``) is not
    refused: nothing in it is run, and its weights in safetensors are exactly the remedy.
    Returns the notes that say which classes it names."""
    from ..scan import scan_file

    notes: list[str] = []
    for f in sorted(files):
        report = scan_file(f)
        if report.needs_code:
            names = report.needs_code
            notes.append(f"{os.path.basename(f)} names code off the allowlist, which "
                         f"torch.load would import (modelport did not): "
                         f"{', '.join(names[:6])}{' ...' if len(names) > 6 else ''}")
        if allow_unsafe:
            continue
        if report.verdict == "unsafe":
            raise UnsafeInput(f"the scanner found code a loader would run in this file "
                              f"({report.reason})", path=f,
                              hint="modelport never runs it; see `modelport scan`, and use "
                              "--allow-unsafe to convert its tensors anyway")
        if report.errors:
            raise UnsafeInput(f"the scanner could not judge all of this file: "
                              f"{report.errors[0]}", path=f,
                              hint="see `modelport scan`; --allow-unsafe converts it anyway")
    return notes


def _refuse_if_unsafe(src: str, exc: InputError, allow_unsafe: bool) -> None:
    """SRC cannot be read; if the scanner also calls it unsafe, that is what the user must hear
    (a shard swapped for a malicious pickle reads as "tensors missing" otherwise). A folder's
    weight files are scanned, at its top level only: SRC may be any folder at all."""
    if allow_unsafe:
        return
    from ..scan import scan_file

    try:
        names = sorted(os.listdir(src))[:10_000] if os.path.isdir(src) else None
    except OSError:
        return  # the load error says what is wrong with SRC
    files = [src] if names is None else [os.path.join(src, n) for n in names
                                         if n.lower().endswith(_WEIGHT_SUFFIXES)]
    for f in files:
        report = scan_file(f)
        if report.verdict != "unsafe":
            continue
        worst = max(report.unsafe_findings, key=lambda x: x.severity)
        raise UnsafeInput(f"the scanner found code a loader would run in this file "
                          f"({worst.message}), and it cannot be read as a model either: "
                          f"{exc.message}", path=f,
                          hint="modelport never runs it; see `modelport scan`. --allow-unsafe "
                          "converts the tensors of an unsafe file, but not of an unreadable one"
                          ) from exc


class _Counter:
    def __init__(self, total: int, cb: Callable[[int, int], None] | None) -> None:
        self.total, self.done, self.cb = total, 0, cb
        self.lock = threading.Lock()

    def add(self, n: int) -> None:
        if self.cb is None:
            return
        with self.lock:
            self.done += n
            done = self.done
        self.cb(done, self.total)


def _write_shard(plan: Plan, shard: Shard, out: Atomic, final: str, sources: Sources,
                 counter: _Counter, cancel: threading.Event) -> None:
    path = out.path(shard.file)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o644)
    try:
        sink = Sink(fd, final, sources=sources, progress=counter.add, cancel=cancel)
        writer = _writer(plan.target.format)
        if plan.target.format == "torch":
            stem = os.path.splitext(os.path.basename(final))[0] or "archive"
            writer(shard, sink, sources, plan.cast, archive=stem)  # type: ignore[call-arg]
        else:
            writer(shard, sink, sources, plan.cast)
        sink.close(fsync=True)
    finally:
        os.close(fd)


def _write_all(plan: Plan, out: Atomic, dst: str, jobs: int, sources: Sources,
               counter: _Counter) -> None:
    cancel = threading.Event()
    tasks = [(s, os.path.join(dst, s.file) if s.file else dst) for s in plan.shards]
    if jobs <= 1 or len(tasks) == 1:
        for shard, final in tasks:
            _write_shard(plan, shard, out, final, sources, counter, cancel)
        return
    pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="modelport-convert")
    try:
        futures = [pool.submit(_write_shard, plan, s, out, f, sources, counter, cancel)
                   for s, f in tasks]
        for fut in futures:
            fut.result()
    except BaseException:
        cancel.set()  # the other workers stop at their next chunk
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    finally:
        pool.shutdown(wait=True)


def _sidecar(plan: Plan, out: Atomic, dst: str) -> tuple[str, str] | None:
    """Write the target format's side file (a raw buffer's layout) next to DST's temporary
    file; the caller renames it in once DST is in place. Removed with DST's on failure."""
    from ..formats import writer_for
    from ..formats.base import resolve

    writer = writer_for(plan.target.format)
    if writer.sidecar is None or plan.target.folder:
        return None
    suffix, data = resolve(writer.sidecar)(plan)
    tmp = out.tmp + suffix
    with open(tmp, "xb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    out.extra.append(tmp)
    return tmp, dst + suffix


def _write_json(path: str, data: Any) -> None:
    with open(path, "x", encoding="utf-8") as f:
        f.write(json.dumps(data, indent=2, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _copy_side(src_dir: str, names: list[str], out: Atomic, plan: Plan) -> list[str]:
    notes = []
    for name in names:
        src, dst = os.path.join(src_dir, name), out.path(name)
        if name == "config.json" and plan.cast is not None:
            try:
                with open(src, encoding="utf-8") as f:
                    cfg = json.load(f)
            except (OSError, ValueError):
                cfg = None
            keys = [k for k in ("torch_dtype", "dtype") if isinstance(cfg, dict) and k in cfg]
            torch_name = plan.cast.torch  # the dtypes table's torch name: "bfloat16"
            if keys and torch_name:
                for k in keys:
                    cfg[k] = torch_name
                _write_json(dst, cfg)
                notes.append(f"config.json: {'/'.join(keys)} set to {torch_name}")
                continue
            if keys:  # no torch dtype names it: the config is copied as it was, and said so
                notes.append(f"config.json: {'/'.join(keys)} left as it was ({plan.cast.name} "
                             "has no torch dtype)")
        shutil.copyfile(src, dst)
        fd = os.open(dst, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    return notes


def convert(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    *,
    to: str | None = None,
    max_shard_size: int | str | None = None,
    dtype: str | None = None,
    full: bool = False,
    verify: bool = False,
    select: str | None = None,
    dedupe: bool = False,
    force: bool = False,
    jobs: int = 1,
    allow_unsafe: bool = False,
    layout: str | None = None,
    keep_quantized: bool = False,
    progress: Callable[[int, int], None] | None = None,
    transform: Callable[[Checkpoint], Checkpoint] | None = None,
    verify_progress: Callable[[int, int], None] | None = None,
) -> ConvertResult:
    """Convert SRC (any file or folder modelport reads) into DST; see ``modelport convert -h``.

    Nothing in SRC is executed; DST is written through a temporary sibling and renamed, so an
    error leaves nothing behind.

    to             output format when DST's name does not say it (``formats.writer_names()``)
    max_shard_size largest shard of a folder DST: bytes or "5GB", "500MiB" (default 5GB)
    dtype          cast float tensors: "F16", "BF16", "F32", "F8_E4M3"... or fp16, half, bf16
    full           every tensor and plain value of the checkpoint, not only the weights
    verify         compare DST with SRC tensor by tensor before renaming it in (``.verified``)
    select         dotted path of the subtree that holds the weights
    dedupe         write tensors that share storage once, recording the other names
    force          replace DST if it exists (a folder only if it holds model files)
    jobs           write this many shards at once
    allow_unsafe   convert a source the scanner calls unsafe or cannot judge
    layout         SRC is a raw buffer laid out as this model file or JSON says
    progress       ``progress(done_bytes, total_bytes)``, called as tensor bytes are written
    verify_progress  the same, for the ``verify`` phase
    transform      ``transform(checkpoint) -> checkpoint`` rewrites SRC's weights before planning
                   (``merge-lora`` swaps targeted weights for entries computed when written);
                   SRC was scanned first, what the transform reads besides is its caller's
    """
    t0 = time.perf_counter()
    if dtype is not None:
        from .cast import normalize

        dtype = normalize(dtype)
    from ..detect import resolve

    src, dst = resolve(src), os.fspath(dst)  # a TF checkpoint prefix names its .index
    target = resolve_target(dst, to)
    _check_paths(src, dst, force)
    if force and os.path.isdir(dst):  # an existing folder is always a folder target
        _check_replaceable(dst)
    try:
        ck = load(src, select, layout=layout)
    except InputError as exc:
        _refuse_if_unsafe(src, exc, allow_unsafe)
        raise
    files = source_files(ck)
    _check_sources(files, dst)
    scan_notes = _scan(files, allow_unsafe)
    if transform is not None:
        if verify:
            raise UsageError("--verify compares DST with SRC, which a transform changes")
        ck = transform(ck)
    try:
        plan = make_plan(ck, target, dtype=dtype, full=full, select=select, dedupe=dedupe,
                         keep_quantized=keep_quantized,
                         max_shard_size=max_shard_size)
    except InputError as exc:
        raise exc.located(path=src) from exc.__cause__
    if not any(s.items for s in plan.shards):
        # An empty output reads back as nothing at all (an empty npz is not even recognised):
        # a mutated or unusual file whose weights were not found must not "convert" silently,
        # with --full neither (an ONNX file whose weights modelport missed wrote an empty file).
        raise InputError(f"no {'tensors' if full else 'weights'} found in this {ck.format} file "
                         f"({ck.kind}): nothing to convert", path=src,
                         hint="--select names the subtree that holds the weights" if full else
                         "--full keeps every tensor and value it holds; --select names the "
                         "subtree that holds the weights")
    if verify and not full and {it.name for sh in plan.shards for it in sh.items} - set(ck.weights):
        # llama.cpp's names (HF <-> GGUF): verify pairs tensors by name
        raise UsageError("--verify pairs tensors by name, and this conversion renames them "
                         "(llama.cpp's names)", path=dst, hint="convert without --verify; "
                         "the tests check these conversions value by value")
    notes = scan_notes + list(plan.notes)
    copy: list[str] = []
    if ck.format == "hf-repo":
        copy, skipped = side_files(src)
        if not target.folder and copy:
            notes.append(f"not copied (DST is a file): {', '.join(copy)}")
            copy = []
        elif skipped:
            notes.append(f"not copied along (weights or pickles): {', '.join(skipped)}")
    counter = _Counter(plan.total, progress)
    verified = None
    with Atomic(dst, target.folder, force) as out, Sources() as sources:
        try:
            _write_all(plan, out, dst, max(1, jobs), sources, counter)
        except Cancelled:  # only raised after another worker failed; that error is raised
            raise OutputError("conversion cancelled", path=dst) from None
        written = [s.file for s in plan.shards] if target.folder else [os.path.basename(dst)]
        if plan.index is not None:
            from ..formats import writer_for

            index_name = writer_for(target.format).folder[2]  # type: ignore[index]
            _write_json(out.path(index_name), plan.index)
            written.append(index_name)
        if copy:
            notes += _copy_side(src, copy, out, plan)
            written += copy
        # Files a format's plan hook made for a folder DST (a GGUF's config.json).
        made = plan.shards[0].extra.get("side_files", {}) if target.folder else {}
        for name, data in made.items():
            if name not in written:
                with open(out.path(name), "xb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                written.append(name)
        if verify:
            from .verify import verify as run_verify

            verified = run_verify(src, out.path() if not target.folder else out.tmp, layout=layout,
                                  cast=plan.cast.name if plan.cast else None, full=full,
                                  select=select, jobs=max(1, jobs), progress=verify_progress)
            verified.b = dst  # the result names the file the user gets, not its temporary name
            if not verified.same:
                first = verified.differences[0]
                raise OutputError(f"verification failed: {first.name}: {first.detail} "
                                  f"({len(verified.differences)} difference(s))", path=dst,
                                  hint="nothing was written; please report this as a bug")
        side = _sidecar(plan, out, dst)
        out.commit()
        if side is not None:
            os.replace(side[0], side[1])  # after DST: a layout never describes a missing buffer
            written.append(os.path.basename(side[1]))
    return ConvertResult(src, dst, target.format, written,
                         sum(len(s.items) for s in plan.shards), plan.total,
                         time.perf_counter() - t0, notes, verified)


def _writer(name: str) -> Any:
    from ..formats import writer_for
    from ..formats.base import resolve

    return resolve(writer_for(name).write)
