"""Tar archives: recognised by their header checksum, as Python's tarfile recognises them.

A tar file is a run of 512-byte blocks; each member is one header block, then its data padded
to a block (POSIX.1-1988 / GNU tar manual "Basic Tar Format")::

    offset  size  field
    0       100   name (NUL-terminated)          257   6   magic: "ustar\\0" (POSIX),
    100     8     mode (octal)                                  "ustar  \\0" (GNU), nothing (v7)
    124     12    size (octal, or base-256)      263   2   version
    148     8     chksum: octal sum of the 512   345   155 prefix (ustar: name = prefix/name)
                  header bytes, this field
                  counted as 8 spaces
    156     1     typeflag: '0'/NUL file, '1' hard link, '2' symlink, '3'/'4' device, '6' FIFO,
                  'x'/'g' pax, 'L'/'K' GNU long names, 'S' sparse
    157     100   linkname

Version 7 tar (what torch.save wrote before 0.4 through tarfile's defaults on old Pythons, and
what ``tarfile.open(format=tarfile.V7_FORMAT)`` writes) has no magic at all: tarfile accepts a
header when its checksum field equals the sum of its bytes taken unsigned *or* signed
(``tarfile.calc_chksums``; some old tars summed signed chars). So does ``is_tar``.

Extraction (``tarfile.extract``/``extractall``, torch's legacy loader extracting ``storages``,
``tensors`` and ``pickle`` into a temporary folder and opening them) follows member names and
links: ``hazards`` says which members reach outside the extraction folder.
"""

from __future__ import annotations

import posixpath
import re
import struct

__all__ = ["BLOCK", "is_tar", "checksum_ok", "hazards"]

BLOCK = 512
_UNSIGNED = struct.Struct("148B8x356B")
_SIGNED = struct.Struct("148b8x356b")
_DRIVE = re.compile(r"^[A-Za-z]:")


def _nti(field: bytes) -> int | None:
    """tarfile.nti: a numeric field, octal text up to NUL (blank is 0) or GNU base-256."""
    if field[:1] in (b"\x80", b"\xff"):
        n = 0
        for b in field[1:]:
            n = (n << 8) + b
        return n - (256 ** (len(field) - 1)) if field[0] == 0xFF else n
    text = field.split(b"\x00", 1)[0]
    try:
        return int(text.decode("ascii").strip() or "0", 8)
    except (UnicodeDecodeError, ValueError):
        return None


def checksum_ok(block: bytes) -> bool:
    """The header's checksum field matches its bytes summed unsigned or signed."""
    if len(block) < BLOCK:
        return False
    stored = _nti(block[148:156])
    if stored is None:
        return False
    return stored in (256 + sum(_UNSIGNED.unpack_from(block)),
                      256 + sum(_SIGNED.unpack_from(block)))


def is_tar(head: bytes | memoryview) -> bool:
    """The first block is a tar header tarfile accepts (any format: v7, ustar, GNU, pax).
    An all-NUL first block is an empty archive, not a header: nothing to read."""
    block = bytes(head[:BLOCK])
    return len(block) == BLOCK and block.count(0) != BLOCK and checksum_ok(block)


def _escapes(path: str) -> tuple[str, bool] | None:
    """What is odd about ``path`` (relative to the extraction folder), and whether it leaves
    the folder: absolute paths and '..' that climbs above it do."""
    if path.startswith(("/", "\\")) or _DRIVE.match(path):
        return "an absolute path", True
    parts = re.split(r"[\\/]", path)
    if ".." not in parts:
        return None
    depth = 0
    for p in parts:
        depth += -1 if p == ".." else (0 if p in ("", ".") else 1)
        if depth < 0:
            return "a path that climbs out with '..'", True
    return "a path with '..'", False


def hazards(name: str, kind: str, linkname: str) -> list[tuple[str, str, bool]]:
    """(rule, what, reaches outside) for one member: ``kind`` is "file", "dir", "symlink",
    "hardlink", "device" or "fifo". Both ``/`` and ``\\`` separate path parts (tarfile on
    Windows and extraction filters treat them alike)."""
    out: list[tuple[str, str, bool]] = []
    odd = _escapes(name)
    if odd:
        out.append(("tar-path", f"member name {name!r} is {odd[0]}", odd[1]))
    if kind in ("symlink", "hardlink"):
        # A symlink resolves from the member's folder; a hard link names another member.
        absolute = linkname.startswith(("/", "\\")) or _DRIVE.match(linkname)
        target = linkname if kind == "hardlink" or absolute else \
            posixpath.join(posixpath.dirname(name.replace("\\", "/")), linkname)
        odd = _escapes(target)
        outside = odd is not None and odd[1]
        where = f"outside the archive ({odd[0]})" if odd and outside else "inside the archive"
        out.append(("tar-link", f"a {kind} to {linkname!r}, {where}", outside))
    elif kind in ("device", "fifo"):
        out.append(("tar-special", f"a {kind} member", False))
    return out
