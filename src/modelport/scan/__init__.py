"""``modelport scan``: flag every file a loader would run code from, without running anything.

    >>> from modelport.scan import scan_file
    >>> report = scan_file("pytorch_model.bin")
    >>> report.verdict, report.reason    # "clean" | "needs-code" | "unsafe" | "error"
    >>> for f in report.findings: print(f.severity, f.rule, f.subject, f.member, f.offset)

Every file is judged by its bytes (a pickle named ``.bin`` gets the same scrutiny as a
``.pkl``); every pickle in it is run by modelport's symbolic unpickler (the one its readers use)
and what it would import and call is judged against one allowlist (``policy``), fail closed.
A file whose only findings are globals on no list is *needs-code* (loading it imports that
code; ``allow=policy.UserAllow`` vouches for names), anything worse is *unsafe*. A folder is
walked once per file: a Hugging Face cache's ``snapshots/*/name`` links and the ``blobs/`` they
point at are one file, scanned once and reported under its snapshot name.
Modules: ``findings`` (records, verdict), ``policy`` (the tables), ``pickles`` (streams),
``archives`` (containers and headers), ``sarif`` (CI output).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from dataclasses import replace

from ..errors import ModelportError
from ..limits import DEFAULT_LIMITS, Limits
from .context import Scan
from .findings import FileReport, Finding, Severity
from .policy import UserAllow, load_policy

__all__ = ["scan_file", "scan_paths", "FileReport", "Finding", "Severity", "UserAllow",
           "load_policy"]


def _scan_one(path: str, strict: bool, limits: Limits,
              allow: UserAllow | None = None) -> FileReport:
    scan = Scan(path, limits=limits, strict=strict, allow=allow)
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            # A FIFO would block the open forever, a device never ends: nothing is read.
            scan.error(f"{path}: not a regular file, not scanned (copy it to a file first)")
            return scan.report
        from .. import remote

        remote.ensure_all(path)  # a remote file is judged on all of its bytes, never on holes
        scan.file(path)
    except ModelportError as exc:
        scan.error(str(exc.located(path=path)))
    except OSError as exc:
        scan.error(f"{path}: {exc.strerror or exc}")
    except Exception as exc:  # noqa: BLE001 - a scanner bug must not hide what was found so far
        scan.error(f"{path}: internal error while scanning ({type(exc).__name__}: {exc}); "
                   "please report it")
    return scan.report


def _walk(root: str, unread: list[str]) -> list[str]:
    """Every file under ``root``; folders that cannot be listed go to ``unread`` (an error:
    files that were not scanned must not make a clean verdict)."""
    out: list[str] = []

    def failed(exc: OSError) -> None:
        unread.append(f"{exc.filename or root}: cannot list the folder ({exc.strerror or exc}); "
                      "its files were not scanned")

    for folder, dirs, files in os.walk(root, onerror=failed):
        dirs.sort()
        out += [os.path.join(folder, f) for f in sorted(files)]
    return _unique(out)


def _unique(files: list[str]) -> list[str]:
    """One path per file on disk: links to the same file (a Hugging Face cache's
    ``snapshots/<rev>/model.safetensors`` -> ``blobs/<sha256>``, hard links) are scanned once,
    under the first link's name (it says what the file is; a blob's name is its digest)."""
    groups: dict[tuple[int, int], list[str]] = {}
    keys: list[tuple[int, int] | str] = []
    for f in files:
        try:
            st = os.stat(f)
        except OSError:
            keys.append(f)  # a dangling link: scanned on its own, its error reported
            continue
        key = (st.st_dev, st.st_ino)
        if key not in groups:
            keys.append(key)
        groups.setdefault(key, []).append(f)
    out: list[str] = []
    for entry in keys:  # stat keys, and paths that could not be stat'ed
        if isinstance(entry, str):
            out.append(entry)
            continue
        paths = groups[entry]
        out.append(next((p for p in paths if os.path.islink(p)), paths[0]))
    return out


def scan_paths(paths: Iterable[str | os.PathLike[str]], *, strict: bool = False,
               limits: Limits = DEFAULT_LIMITS,
               allow: UserAllow | None = None, jobs: int = 1) -> list[FileReport]:
    """One report per file, in the order given (folders walked, every file whatever its name).
    ``jobs`` > 1 scans that many files at once in worker processes; the order stays."""
    from ..detect import resolve

    slots: list[FileReport | str] = []  # a report already known, or a file to scan
    for p in (resolve(q) for q in paths):
        if os.path.isdir(p):
            unread: list[str] = []
            files = _walk(p, unread)
            slots += files
            if unread or not files:
                rep = FileReport(p, format="folder", strict=strict)
                rep.errors += unread or [f"{p}: no files in this folder, nothing was scanned"]
                slots.append(rep)
        elif os.path.exists(p):
            slots.append(p)
        else:
            rep = FileReport(p, strict=strict)
            rep.errors.append(f"{p}: no such file or folder")
            slots.append(rep)
    todo = [s for s in slots if isinstance(s, str)]
    from .. import remote

    if jobs > 1 and len(todo) > 1 and not remote.active():
        # Remote mirrors live in this process (a worker would read their holes): local only.
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=min(jobs, len(todo))) as pool:
            done = list(pool.map(_scan_job, [(f, strict, limits, allow) for f in todo],
                                 chunksize=max(1, len(todo) // (4 * jobs))))
    else:
        done = [_scan_one(f, strict, limits, allow) for f in todo]
    it = iter(done)
    return [next(it) if isinstance(s, str) else s for s in slots]


def _scan_job(job: tuple[str, bool, Limits, UserAllow | None]) -> FileReport:
    return _scan_one(*job)


def scan_file(path: str | os.PathLike[str], *, strict: bool = False,
              limits: Limits = DEFAULT_LIMITS, allow: UserAllow | None = None) -> FileReport:
    """The report of one file; a folder (a Hugging Face repo) becomes one report over all of
    its files, each finding's member prefixed with the file's path inside the folder."""
    from ..detect import resolve

    path = resolve(path)
    if not os.path.isdir(path):
        return scan_paths([path], strict=strict, limits=limits, allow=allow)[0]
    merged = FileReport(path, format="folder", strict=strict)
    for rep in scan_paths([path], strict=strict, limits=limits, allow=allow):
        rel = os.path.relpath(rep.path, path)
        merged.findings += [replace(f, member=f"{rel} > {f.member}" if f.member else rel)
                            for f in rep.findings]
        merged.errors += rep.errors
        merged.scanned += [f"{rel}: {s}" for s in rep.scanned]
    return merged
