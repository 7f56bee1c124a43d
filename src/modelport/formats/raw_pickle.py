"""A bare pickle file (``pickle.dump``, ``.pkl``): one pickle, interpreted symbolically.

Tensors can only live inside it as numpy arrays (``ndarray.__reduce__`` bytes) since a bare
pickle has no storage records. Stacked pickles after the first are left to the scanner.
"""

from __future__ import annotations

import builtins
import mmap

from ..classify import classify
from ..errors import ModelportError
from ..limits import DEFAULT_LIMITS, Limits
from ..model import Checkpoint
from ..pickle import Machine
from .base import Format, Options, Probe

FORMAT_ID = "pickle"


def sniff(head: bytes) -> bool:
    # PROTO 2..5 then a plausible second opcode; protocol 0/1 pickles start with "(" or "}"
    return len(head) >= 3 and head[0] == 0x80 and 2 <= head[1] <= 5


def open(path: str, limits: Limits = DEFAULT_LIMITS, select: str | None = None) -> Checkpoint:
    with builtins.open(path, "rb") as f:
        size = f.seek(0, 2)
        data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
    m = Machine(memoryview(data), path=path, limits=limits, strict=True)
    try:
        tree = m.run()
    except ModelportError as exc:
        exc.located(path=path, format=FORMAT_ID)
        raise
    return classify(path, FORMAT_ID, tree, globals=m.globals, select_path=select, file_size=size)


def read(path: str, options: Options) -> Checkpoint:
    return open(path, options.limits, select=options.select)


def _sniff(probe: Probe) -> bool:
    return sniff(probe.head)


FORMAT = Format("pickle", "pytorch", _sniff, order=60, title="Python pickle",
                open=f"{__name__}:read", scan="modelport.scan.archives:scan_pickle_file")
