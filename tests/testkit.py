"""Helpers several test files share: loading a checked-in script as a module, byte mutations
for the robustness properties, hand-written torch archives and data.pkl rewrites, a hang guard.

Importable from every test (pytest puts tests/ on sys.path, as the folder of the top conftest).
"""

from __future__ import annotations

import contextlib
import importlib.util
import signal
import struct
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any


def load_module(name: str, path: Path) -> ModuleType:
    """``path`` as module ``name``, registered once (torch.jit.script reads classes' source)."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def edits() -> Any:
    """A hypothesis strategy for one edit: (where in 0..1, a byte value, what to do)."""
    from hypothesis import strategies as st

    return st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255),
                     st.sampled_from(["flip", "insert", "delete", "truncate"]))


def mutate(data: bytes, edit_list: list[tuple[float, int, str]], *, insert: int = 5,
           delete: int = 9) -> bytes:
    """Apply edits in order: overwrite a byte, insert up to ``insert`` copies of a byte,
    delete up to ``delete`` bytes, or cut the rest."""
    buf = bytearray(data)
    for where, value, how in edit_list:
        if not buf:
            break
        i = int(where * len(buf))
        if how == "flip":
            buf[i] = value
        elif how == "insert":
            buf[i:i] = bytes([value]) * (value % insert + 1)
        elif how == "delete":
            del buf[i : i + value % delete + 1]
        else:
            del buf[i:]
    return bytes(buf)


def binunicode(text: str) -> bytes:
    """The BINUNICODE opcode pushing ``text``: for pickles written by hand in tests (lone
    surrogates pass, as pickle's own writer lets them)."""
    raw = text.encode("utf-8", "surrogatepass")
    return b"X" + struct.pack("<I", len(raw)) + raw


def torch_zip(pickle_bytes: bytes, out: Path) -> Path:
    """A torch.save-shaped archive around ``pickle_bytes`` with one 24-byte storage, data/0."""
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("archive/data.pkl", pickle_bytes)
        zf.writestr("archive/byteorder", "little")
        zf.writestr("archive/data/0", bytes(range(24)))
        zf.writestr("archive/version", "3\n")
    return out


def data_pkl(path: Path) -> bytes:
    """A torch archive's data.pkl."""
    with zipfile.ZipFile(path) as zf:
        return zf.read(next(n for n in zf.namelist() if n.endswith("/data.pkl")))


def rezip(src: Path, pickle_bytes: bytes, out: Path) -> Path:
    """``src`` with its data.pkl replaced, every other member kept: a valid, stored zip."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, pickle_bytes if info.filename.endswith("/data.pkl")
                          else zin.read(info))
    return out


@contextlib.contextmanager
def deadline(seconds: float, error: type[BaseException] = AssertionError) -> Iterator[None]:
    """Raise ``error`` instead of hanging (a FIFO opened for reading blocks forever)."""
    if not hasattr(signal, "setitimer"):
        yield
        return

    def expire(signum: int, frame: object) -> None:
        raise error(f"no answer after {seconds} s: a hang")

    old = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
