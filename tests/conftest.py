"""Shared fixtures: the corpus of model files written by the real libraries (tests/fixtures)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


def load_generator() -> ModuleType:
    """tests/fixtures/generate.py as a module (registered, so torch.jit can read its source)."""
    name = "modelport_fixture_generate"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, FIXTURES / "generate.py")
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every fixture file by name (see generate.py); fixtures of missing libraries are absent."""
    pytest.importorskip("torch")
    return load_generator().generate_all(tmp_path_factory.mktemp("corpus"))
