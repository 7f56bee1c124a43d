"""The malicious corpus, written once per session into a temp dir, and its canary file."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

HERE = Path(__file__).parent


def load_corpus() -> ModuleType:
    """tests/security/corpus.py as a module (the bench imports it the same way)."""
    name = "modelport_security_corpus"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, HERE / "corpus.py")
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="session")
def canary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The file every payload tries to create. It must never exist."""
    return tmp_path_factory.mktemp("canary") / "PAYLOAD_RAN"


@pytest.fixture(scope="session")
def malicious(tmp_path_factory: pytest.TempPathFactory, canary: Path) -> dict[str, Path]:
    return load_corpus().build_all(tmp_path_factory.mktemp("malicious"), str(canary))
