"""Fixtures: emulators served over real HTTP (uvicorn in a background thread)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.emulator.harness import Emulator, running_emulator


@pytest.fixture(scope="session")
def shared_emulator() -> Iterator[Emulator]:
    """One emulator with default settings for tests that change nothing (no capacity changes,
    no budgets): starting one per test would only cost time."""
    with running_emulator() as emulator:
        yield emulator


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    """A fresh emulator of its own, for tests that change its state."""
    with running_emulator() as fresh:
        yield fresh


@pytest.fixture(scope="session")
def pbi_headers(shared_emulator: Emulator) -> dict[str, str]:
    return shared_emulator.powerbi_headers()
