"""``modelport view``: a local page to look inside model files (server.py), their tensors'
statistics (stats.py) and Netron-style search (search.py)."""

from __future__ import annotations

from .server import Viewer, serve

__all__ = ["Viewer", "serve"]
