"""NumPy files: ``.npy`` (one array) and ``.npz`` (a zip of ``.npy`` members, what ``np.savez``
writes). The reader is ``reader.py`` (headers decoded by ``containers/npy.py``, never by numpy
with pickles allowed); this registers the formats and is all the registry imports until a
NumPy file is met."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..base import Format, Probe, Writer

if TYPE_CHECKING:
    from ...dtypes import DType

__all__ = ["FORMATS", "FORMAT_IDS", "MAGIC", "sniff", "is_npz_listing"]

FORMAT_IDS = ("numpy-npy", "numpy-npz")
MAGIC = b"\x93NUMPY"  # the .npy magic (containers/npy.py checks the rest of the header)


def sniff(head: bytes) -> bool:
    """The bytes start a .npy file (a .npz is a zip: see ``is_npz_listing``)."""
    return head[:6] == MAGIC


def is_npz_listing(names: tuple[str, ...] | list[str]) -> bool:
    """A zip whose members (folder entries aside) are all ``*.npy`` is an npz: what np.savez
    writes, an empty archive included (np.savez() of nothing)."""
    return all(n.endswith(".npy") for n in names if not n.endswith("/"))


def _sniff_npy(probe: Probe) -> bool:
    return sniff(probe.head)


def _sniff_npz(probe: Probe) -> bool:
    names = probe.zip_names
    return names is not None and is_npz_listing(names)


def _npz_holds(d: DType) -> bool:
    # numpy can hold it natively (little-endian or byte-sized), not ml_dtypes' quantized kinds
    return d.numpy is not None and d.numpy[0] in "<|" and d.kind != "q"


FORMATS = (
    Format(FORMAT_IDS[0], "numpy", _sniff_npy, order=15, title="NumPy .npy array",
           open=f"{__name__}.reader:read", scan="modelport.scan.archives:scan_npy_file"),
    Format(FORMAT_IDS[1], "numpy", _sniff_npz, order=12, title="NumPy .npz archive",
           open=f"{__name__}.reader:read", scan="modelport.scan.archives:scan_zip_file",
           writer=Writer("npz", "modelport.convert.writers:write_npz", suffixes=(".npz",),
                         aliases=("numpy",), holds=_npz_holds,
                         refuse_hint="use --dtype F32, or --to safetensors")),
)
