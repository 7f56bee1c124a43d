"""Keras files: HDF5 ``.h5`` (whole models and ``save_weights``) and Keras 3 ``.keras`` zips.
The reader is ``reader.py`` (over modelport's own HDF5 decoder, ``containers/hdf5.py``); this
registers the formats and is all the registry imports until a Keras file is met."""

from __future__ import annotations

from ..base import Format, Probe

__all__ = ["FORMATS"]


def _sniff_h5(probe: Probe) -> bool:
    if b"\x89HDF" not in probe.head:  # no HDF5 signature anywhere: no need for the decoder
        return False
    from ...containers.hdf5 import find_superblock

    # The superblock may follow a user block of 512 * 2**k bytes (HDF5 spec, "Superblock").
    return find_superblock(probe.head) is not None


def _sniff_keras(probe: Probe) -> bool:
    names = probe.zip_names
    return names is not None and "config.json" in names and (
        "metadata.json" in names or "model.weights.h5" in names)


FORMATS = (
    Format("keras-h5", "tensorflow", _sniff_h5, order=27, title="Keras / HDF5 file",
           open=f"{__name__}.reader:read_h5", scan="modelport.scan.keras:scan_h5"),
    Format("keras", "tensorflow", _sniff_keras, order=8, title="Keras 3 .keras archive",
           open=f"{__name__}.reader:read_keras", scan="modelport.scan.keras:scan_keras"),
)
