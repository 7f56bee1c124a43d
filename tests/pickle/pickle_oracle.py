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


def oracle_globals(data: bytes, file_mode: bool) -> list[tuple[str, str]]:
    """What CPython's unpickler resolves reading ``data`` (one load, as pickle.load does)."""
    raw = io.BytesIO(data)
    u = Oracle(raw if file_mode else io.BufferedReader(raw))  # type: ignore[arg-type]
    try:
        u.load()
    except Exception:  # noqa: BLE001 - any refusal of CPython's: what it resolved stands
        pass
    return u.found


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
