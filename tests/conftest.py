"""Shared fixtures: the corpus of model files written by the real libraries (tests/fixtures)."""

from __future__ import annotations

import importlib.util
import inspect
import os
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import settings
from testkit import load_module

# Property tests are reproducible by default: the same examples on every machine and run (CI
# must not turn red on a new random draw). HYPOTHESIS_PROFILE=explore draws new ones, with the
# example database, when hunting for bugs; a find becomes an explicit regression case.
settings.register_profile("modelport", derandomize=True, database=None, deadline=None)
settings.register_profile("explore", derandomize=False, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "modelport"))

FIXTURES = Path(__file__).parent / "fixtures"

# Markers (registered in pyproject.toml, --strict-markers) -> the module each one needs.
LIBRARY_MARKERS = {"torch": "torch", "transformers": "transformers",
                   "onnxruntime": "onnxruntime"}


def _missing(module: str) -> bool:
    return importlib.util.find_spec(module) is None


def _source(fn: object) -> str:
    try:
        return inspect.getsource(fn)  # type: ignore[arg-type]
    except (OSError, TypeError):
        return ""


def _needs(item: pytest.Item) -> set[str]:
    """The library markers a test needs: its own marks, and what it evidently uses (its module
    imported the library, it or one of its fixtures calls ``importorskip`` or imports it), so
    that a test written without the mark is still selected out by ``-m "not torch"``."""
    found = {m.name for m in item.iter_markers()} & LIBRARY_MARKERS.keys()
    module = getattr(item, "module", None)
    sources = [_source(getattr(item, "function", None))]
    info = getattr(item, "_fixtureinfo", None)
    for defs in (info.name2fixturedefs.values() if info is not None else ()):
        sources += [_source(d.func) for d in defs]
    for mark, lib in LIBRARY_MARKERS.items():
        imported = isinstance(getattr(module, lib, None), ModuleType)
        if imported or any(f'importorskip("{lib}")' in src or f"import {lib}\n" in src
                           or f"from {lib} import" in src for src in sources):
            found.add(mark)
    return found


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests needing torch (transformers, onnxruntime) carry that marker, and are skipped, not
    failed, where the library is not installed: the core's tests stand with numpy alone."""
    missing = {m for m, lib in LIBRARY_MARKERS.items() if _missing(lib)}
    for item in items:
        for name in sorted(_needs(item)):
            item.add_marker(getattr(pytest.mark, name))
            if name in missing:
                item.add_marker(pytest.mark.skip(reason=f"needs {LIBRARY_MARKERS[name]}"))


def load_generator() -> ModuleType:
    """tests/fixtures/generate.py as a module (registered, so torch.jit can read its source)."""
    return load_module("modelport_fixture_generate", FIXTURES / "generate.py")


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every fixture file by name (see generate.py); fixtures of missing libraries are absent."""
    pytest.importorskip("torch")
    return load_generator().generate_all(tmp_path_factory.mktemp("corpus"))
