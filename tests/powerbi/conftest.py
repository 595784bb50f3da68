"""Fixtures for the Power BI client tests: the emulator under uvicorn on a free port, in a
background thread, reached over real HTTP (msal included)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any

import pytest

from embedportal.emulator.app import create_emulator_app
from embedportal.emulator.settings import EmulatorSettings
from embedportal.powerbi import PowerBIConnection
from tests.support.threaded import serve_in_thread


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class Emulator:
    base_url: str
    settings: EmulatorSettings
    app: Any

    def connection(self, **overrides: Any) -> PowerBIConnection:
        values: dict[str, Any] = {
            "tenant_id": self.settings.tenant_id,
            "client_id": self.settings.client_id,
            "client_secret": self.settings.client_secret,
            "authority_host": self.base_url,
            "api_url": self.base_url,
            "arm_url": self.base_url,
            "subscription_id": self.settings.subscription_id,
            "resource_group": self.settings.resource_group,
            "capacity_name": self.settings.capacity_name,
        }
        values.update(overrides)
        return PowerBIConnection(**values)

    @property
    def counters(self) -> Any:
        return self.app.state.emulator.counters


@contextmanager
def run_emulator(**settings: Any) -> Iterator[Emulator]:
    """Serve a fresh emulator app (its own signing key, capacity and counters)."""
    emulator_settings = EmulatorSettings(**settings)
    app = create_emulator_app(emulator_settings)
    with serve_in_thread(app) as base_url:
        yield Emulator(base_url, emulator_settings, app)


EmulatorFactory = Callable[..., AbstractContextManager[Emulator]]


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    """One emulator shared by a module's tests that do not change its state."""
    with run_emulator(capacity_transition_seconds=0.2) as running:
        yield running


@pytest.fixture
def start_emulator() -> EmulatorFactory:
    """``with start_emulator(entra_max_lifetime_seconds=5, ...) as emu:`` for special settings."""
    return run_emulator
