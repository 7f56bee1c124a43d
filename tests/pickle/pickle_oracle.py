"""The differential oracle: CPython's own unpickler, made inert (tests only, never src/).

``pickle.Unpickler`` is the C implementation (Modules/_pickle.c) that ``pickle.load`` and
``torch.load`` use. Its ``find_class`` is overridden to record the name and return a fresh
subclass of ``Inert`` (nothing is imported), and ``persistent_load`` returns an ``Inert``
instance. Every call CPython can make on what the pickle built lands on ``Inert``: REDUCE and
OBJ/INST call the class (``__new__``/``__init__``), NEWOBJ calls ``__new__``, BUILD calls
``__setstate__``, APPEND/SETITEM/ADDITEMS call ``extend``/``append``/``__setitem__``/``add``, and
REDUCE on an instance calls ``__call__``: each only records. So the oracle runs no code from the
pickle, and what it resolves is exactly what CPython's parser reaches.

The plain data types the machine builds as data (``builtins.dict``, ``collections.OrderedDict``,
...) are returned as themselves: an OrderedDict is not callable and has no ``append``, in CPython
as in the machine, and an inert stand-in would let the oracle go on where CPython stops.

Two readings of the same bytes, as loaders take them:
    contiguous   a file with peek() (open(path, "rb"): io.BufferedReader), like pickle.loads
    file         io.BytesIO, no peek(): how torch.load reads data.pkl; at a FRAME's end the C
                 unpickler serves an opcode's bytes from the file, skipping the frame's rest
"""

from __future__ import annotations

import _compat_pickle
import builtins
import collections
import io
import pickle
from typing import Any

from modelport.errors import ModelportError
from modelport.pickle import Machine


class Inert:
    """A stand-in for any class or object a pickle names: every hook only records."""

    calls: list[str] = []

    def __new__(cls, *args: Any, **kwargs: Any) -> Inert:
        return object.__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __call__(self, *args: Any, **kwargs: Any) -> Inert:
        return Inert()

    def __setstate__(self, state: Any) -> None:
        pass

    def __setitem__(self, key: Any, value: Any) -> None:
        pass

    def append(self, item: Any) -> None:
        pass

    def extend(self, items: Any) -> None:
        pass

    def add(self, item: Any) -> None:
        pass


_REAL = {("builtins", n): getattr(builtins, n) for n in
         ("bytes", "complex", "dict", "frozenset", "list", "set", "slice", "tuple")}
_REAL[("collections", "OrderedDict")] = collections.OrderedDict


def _real(module: str, name: str) -> Any:
    mapped = _compat_pickle.NAME_MAPPING.get((module, name)) or (
        _compat_pickle.IMPORT_MAPPING.get(module, module), name)
    return _REAL.get((module, name)) or _REAL.get(mapped)


class Oracle(pickle.Unpickler):
    def __init__(self, file: Any) -> None:
        super().__init__(file)
        self.found: list[tuple[str, str]] = []

    def find_class(self, module: str, name: str) -> type:
        self.found.append((module, name))
        real = _real(module, name)
        return real if real is not None else type("Global", (Inert,), {})  # a fresh class

    def persistent_load(self, pid: Any) -> Inert:
        return Inert()


def oracle_globals(data: bytes, file_mode: bool, isolated: bool = True) -> list[tuple[str, str]]:
    """What CPython's unpickler resolves reading ``data`` (one load, as pickle.load does).

    ``isolated``: in a worker process whose address space is capped. The C unpickler sizes
    its memo by a LONG_BINPUT index (4 bytes: up to 32 GiB of pointers, zero-filled), so a
    mutated pickle could take the test process down; capped, it gets a MemoryError."""
    if isolated:
        return _worker().ask(data, file_mode)
    raw = io.BytesIO(data)
    u = Oracle(raw if file_mode else io.BufferedReader(raw))  # type: ignore[arg-type]
    try:
        u.load()
    except Exception:  # noqa: BLE001 - any refusal of CPython's: what it resolved stands
        pass
    return u.found


_WORKER_CODE = """
import json, resource, struct, sys
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
sys.path.insert(0, sys.argv[1])
from pickle_oracle import oracle_globals
inp, out = sys.stdin.buffer, sys.stdout
while True:
    head = inp.read(5)
    if len(head) < 5:
        break
    n, mode = struct.unpack("<IB", head)
    found = oracle_globals(inp.read(n), bool(mode), isolated=False)
    out.write(json.dumps(found) + "\\n")
    out.flush()
"""


class _Worker:
    def __init__(self) -> None:
        import os
        import subprocess
        import sys

        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _WORKER_CODE, os.path.dirname(os.path.abspath(__file__))],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)

    def ask(self, data: bytes, file_mode: bool) -> list[tuple[str, str]]:
        import json
        import struct

        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(struct.pack("<IB", len(data), file_mode) + data)
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:  # the worker died (it should not: its memory is capped)
            global _WORKER
            _WORKER = None
            raise RuntimeError("the oracle worker died")
        return [tuple(p) for p in json.loads(line)]  # type: ignore[misc]


_WORKER: _Worker | None = None


def _worker() -> _Worker:
    global _WORKER
    if _WORKER is None or _WORKER.proc.poll() is not None:
        _WORKER = _Worker()
    return _WORKER


def machine_globals(data: bytes, file_mode: bool) -> set[tuple[str, str]]:
    m = Machine(data, file_mode=file_mode)
    try:
        m.run()
    except (ModelportError, RecursionError, MemoryError):
        pass
    return {(g.module, g.name) for g in m.globals}


def py3(pair: tuple[str, str]) -> tuple[str, str]:
    """The name Unpickler(fix_imports=True) imports for a Python 2 spelling (protocols < 3)."""
    module, name = pair
    return _compat_pickle.NAME_MAPPING.get(pair) or (
        _compat_pickle.IMPORT_MAPPING.get(module, module), name)


def covered(pair: tuple[str, str], names: set[tuple[str, str]]) -> bool:
    """The machine records a global as CPython imports it (Python 2 names mapped for protocols
    < 3); either spelling counts (the protocol in force is the machine's business)."""
    return pair in names or py3(pair) in names
