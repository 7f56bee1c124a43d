"""Keras files: HDF5 `.h5` (whole models and save_weights) and Keras 3 `.keras` zips;
recognised here, read and scanned with issue [2/7].

    .h5      HDF5 superblock signature at 0 (or 512, 1024, ... after a user block)
    .keras   zip: config.json, metadata.json, model.weights.h5
"""

from __future__ import annotations

from .base import Format, Probe

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def _sniff_h5(probe: Probe) -> bool:
    # The superblock may follow a user block of 512 * 2**k bytes (HDF5 spec, "Superblock").
    return any(probe.head[at:at + 8] == HDF5_MAGIC for at in (0, 512, 1024, 2048, 4096, 8192,
                                                               16384, 32768))


def _sniff_keras(probe: Probe) -> bool:
    names = probe.zip_names
    return names is not None and "config.json" in names and (
        "metadata.json" in names or "model.weights.h5" in names)


_WHY = "Keras files are recognised but not read or analysed yet (their configs name code " \
       "Keras imports, Lambda layers carry bytecode)"
FORMATS = (
    Format("keras-h5", "tensorflow", _sniff_h5, order=27, title="Keras / HDF5 file",
           unsupported=_WHY),
    Format("keras", "tensorflow", _sniff_keras, order=8, title="Keras 3 .keras archive",
           unsupported=_WHY),
)
