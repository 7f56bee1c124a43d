"""Shared fixtures: the corpus of model files written by the real libraries (tests/fixtures)."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest
from testkit import load_module

FIXTURES = Path(__file__).parent / "fixtures"


def load_generator() -> ModuleType:
    """tests/fixtures/generate.py as a module (registered, so torch.jit can read its source)."""
    return load_module("modelport_fixture_generate", FIXTURES / "generate.py")


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every fixture file by name (see generate.py); fixtures of missing libraries are absent."""
    pytest.importorskip("torch")
    return load_generator().generate_all(tmp_path_factory.mktemp("corpus"))
