"""Portal servers for browser tests: `python -m embedportal serve` as a newcomer runs it.

Each server gets its own temporary data folder and SQLite database, free ports for the portal
and its built-in emulator, and the development defaults (so the demo accounts exist). Servers
are started once per module: starting one costs a few seconds.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.servers import RunningServer, embedportal_process, free_port

POWERBI_ORIGIN = "https://app.powerbi.com"


@dataclass
class Portal:
    server: RunningServer
    emulator_url: str

    @property
    def url(self) -> str:
        return self.server.base_url


@contextmanager
def running_portal(data_dir: Path, env: Mapping[str, str] | None = None) -> Iterator[Portal]:
    """`embedportal serve` on free ports with a fresh SQLite database in `data_dir`."""
    port, emulator_port = free_port(), free_port()
    full_env = {
        "EMBEDPORTAL_ENVIRONMENT": "development",
        "EMBEDPORTAL_DEMO": "true",
        "EMBEDPORTAL_DATA_DIR": str(data_dir),
        "EMBEDPORTAL_DATABASE_URL": f"sqlite:///{(data_dir / 'embedportal.db').as_posix()}",
        "EMBEDPORTAL_REDIS_URL": "",
        **(env or {}),
    }
    args = ["serve", "--port", str(port), "--emulator-port", str(emulator_port)]
    # The portal listens only once the demo is synced, so "up" means "ready for a newcomer".
    with embedportal_process(
        args, port=port, env=full_env, log_dir=data_dir, health_path="/healthz"
    ) as server:
        yield Portal(server=server, emulator_url=f"http://127.0.0.1:{emulator_port}")


@pytest.fixture(scope="module")
def portal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Portal]:
    """The embedded default: the portal with the built-in emulator on its own origin."""
    with running_portal(tmp_path_factory.mktemp("portal")) as running:
        yield running


@pytest.fixture(scope="module")
def portal_on_powerbi_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Portal]:
    """The production embed path: the synced reports' embed URLs are moved to
    https://app.powerbi.com (as Power BI's are), so the viewer uses powerbi.embed(); the test
    routes that host to the emulator."""
    data_dir = tmp_path_factory.mktemp("portal-prod")
    with running_portal(data_dir) as running:
        with sqlite3.connect(data_dir / "embedportal.db") as db:
            db.execute(
                "UPDATE reports SET embed_url = replace(embed_url, ?, ?)",
                (running.emulator_url, POWERBI_ORIGIN),
            )
        yield running


@pytest.fixture(scope="module")
def portal_with_short_tokens(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Portal]:
    """The embedded default with 15-second embed tokens: a report outlives many of them."""
    with running_portal(
        tmp_path_factory.mktemp("portal-short"),
        {"EMBEDPORTAL_EMULATOR_TOKEN_LIFETIME_SECONDS": "15"},
    ) as running:
        yield running
