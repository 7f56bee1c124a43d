"""The malicious corpus, written once per session into a temp dir, and its canary file."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest
from testkit import load_module

HERE = Path(__file__).parent


def load_corpus() -> ModuleType:
    """tests/security/corpus.py as a module (the bench imports it the same way)."""
    return load_module("modelport_security_corpus", HERE / "corpus.py")


@pytest.fixture(scope="session")
def canary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The file every payload tries to create. It must never exist."""
    return tmp_path_factory.mktemp("canary") / "PAYLOAD_RAN"


@pytest.fixture(scope="session")
def malicious(tmp_path_factory: pytest.TempPathFactory, canary: Path) -> dict[str, Path]:
    return load_corpus().build_all(tmp_path_factory.mktemp("malicious"), str(canary))
