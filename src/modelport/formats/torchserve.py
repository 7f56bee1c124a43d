"""TorchServe model archives (`.mar`): a zip with MAR-INF/MANIFEST.json, a handler `.py` the
server imports, and the serialized model. Recognised, not analysed: the handler is code."""

from __future__ import annotations

from .base import Format, Probe


def _sniff(probe: Probe) -> bool:
    names = probe.zip_names
    return names is not None and "MAR-INF/MANIFEST.json" in names


FORMAT = Format("torchserve-mar", "pytorch", _sniff, order=7, title="TorchServe model archive",
                unsupported="TorchServe .mar archives are recognised but not analysed: their "
                "handler code runs when the server loads them; its model file can be scanned "
                "after unzipping")
