"""Shared fixtures: the corpus of model files written by the real libraries (tests/fixtures)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
from testkit import load_module

FIXTURES = Path(__file__).parent / "fixtures"

# Markers (registered in pyproject.toml, --strict-markers) -> the module each one needs.
LIBRARY_MARKERS = {"torch": "torch", "transformers": "transformers",
                   "onnxruntime": "onnxruntime"}


def _missing(module: str) -> bool:
    return importlib.util.find_spec(module) is None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test marked ``torch`` (``transformers``, ``onnxruntime``) is skipped, not failed, where
    that library is not installed: the core's tests stand with numpy alone."""
    missing = {m for m, lib in LIBRARY_MARKERS.items() if _missing(lib)}
    for item in items:
        for name in missing.intersection(m.name for m in item.iter_markers()):
            item.add_marker(pytest.mark.skip(reason=f"needs {LIBRARY_MARKERS[name]}"))


def load_generator() -> ModuleType:
    """tests/fixtures/generate.py as a module (registered, so torch.jit can read its source)."""
    return load_module("modelport_fixture_generate", FIXTURES / "generate.py")


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every fixture file by name (see generate.py); fixtures of missing libraries are absent."""
    pytest.importorskip("torch")
    return load_generator().generate_all(tmp_path_factory.mktemp("corpus"))
