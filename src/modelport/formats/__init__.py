"""Format modules and the registry that maps a format id to its reader.

Every module has the same surface: ``FORMAT_ID``, ``open(path, limits) -> Checkpoint``, and where
the format is writable a streaming ``Writer``. Adding a format touches its module and one line
of ``_MODULES``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from ..errors import UnknownFormat

__all__ = ["module_for", "FORMAT_IDS"]

_MODULES = {
    "torch-zip": "torch_zip",
    "torch-legacy": "torch_legacy",
    "torchscript": "torchscript",
    "safetensors": "safetensors",
    "hf-repo": "hf_repo",
    "onnx": "onnx",
    "numpy-npy": "numpy",
    "numpy-npz": "numpy",
    "pickle": "raw_pickle",
}

FORMAT_IDS = tuple(_MODULES)


def module_for(format_id: str) -> ModuleType:
    try:
        name = _MODULES[format_id]
    except KeyError:
        raise UnknownFormat(f"no reader for format {format_id!r}") from None
    return importlib.import_module(f"{__name__}.{name}")
