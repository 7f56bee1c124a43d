"""The format registry: one module per format, each registering one ``Format`` (``base.py``).

``detect``, the scanner's dispatch, ``convert``'s targets and the CLI's ``--to`` choices all ask
this registry; there is no second list of formats anywhere. Adding a format is its module plus
one line of ``_MODULES``. The registry imports every registering module on the first sniff, so
they stay light: a format with a heavy reader is a package (``NAME/__init__.py`` registers,
``NAME/reader.py`` reads; see ``base.py``).
"""

from __future__ import annotations

import importlib
from functools import cache

from ..errors import UnknownFormat
from .base import Format, Options, Probe, Writer

__all__ = ["Format", "Options", "Probe", "Writer", "registry", "get", "identify", "writers",
           "writer_for", "FORMAT_IDS"]

# Module (or package) names under formats/; each defines FORMAT (or FORMATS, a tuple).
_MODULES = (
    "torch_zip",
    "torchscript",
    "numpy",
    "safetensors",
    "torch_legacy",
    "raw_pickle",
    "onnx",
    "hf_repo",
    "gguf",
    "chat_template",
    "tf_checkpoint",
    "tf_savedmodel",
    "keras",
    "tflite",
    "torchserve",
    "raw",
    "python_source",
)


@cache
def registry() -> tuple[Format, ...]:
    """Every registered format, in the order sniffing asks them."""
    found: list[Format] = []
    for name in _MODULES:
        mod = importlib.import_module(f"{__name__}.{name}")
        found += list(getattr(mod, "FORMATS", None) or (mod.FORMAT,))
    ids = [f.id for f in found]
    dup = {i for i in ids if ids.count(i) > 1}
    if dup:
        raise RuntimeError(f"format ids registered twice: {sorted(dup)}")
    return tuple(sorted(found, key=lambda f: f.order))


def get(format_id: str) -> Format:
    for f in registry():
        if f.id == format_id:
            return f
    raise UnknownFormat(f"no format {format_id!r}",
                        hint=f"known formats: {', '.join(f.id for f in registry())}")


def identify(probe: Probe) -> Format | None:
    """The first registered format whose sniffer claims the probe, or None."""
    for f in registry():
        if f.folder == probe.is_dir and f.sniff(probe):
            return f
    return None


@cache
def writers() -> dict[str, Writer]:
    """Output formats by every name ``--to`` takes (names and aliases)."""
    out: dict[str, Writer] = {}
    for f in registry():
        if f.writer is not None:
            for name in (f.writer.name, *f.writer.aliases):
                out[name] = f.writer
    return out


def writer_for(name: str) -> Writer:
    try:
        return writers()[name]
    except KeyError:
        raise UnknownFormat(f"no writer for {name!r}",
                            hint=f"choose one of {', '.join(sorted(writer_names()))}") from None


def writer_names() -> list[str]:
    """The primary names of the output formats, for --to choices."""
    return list(dict.fromkeys(w.name for w in writers().values()))


def __getattr__(name: str) -> object:
    if name == "FORMAT_IDS":
        return tuple(f.id for f in registry())
    raise AttributeError(name)
