"""One fleet per test session: instances `a` and `b` (one process each) and `w` (`serve
--workers 2`), sharing a fresh PostgreSQL database and a Redis server of the fleet's own; the
emulator is its own process behind a proxy that can slow it. Tests that break something mend it
before they end (the `healthy_fleet` fixture checks), so they can share one fleet."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tests.fleet.support import EMULATOR_SIGNING_KEY, Fleet, Process, SlowProxy, portal_env, seed
from tests.support.redis_server import RedisServer
from tests.support.servers import free_port


@pytest.fixture(scope="session")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    server_url = os.environ.get("EMBEDPORTAL_TEST_DATABASE_URL")
    if not server_url:
        pytest.skip(
            "the fleet needs PostgreSQL: set EMBEDPORTAL_TEST_DATABASE_URL (make test-fleet)"
        )
    tmp = tmp_path_factory.mktemp("fleet")
    name = f"embedportal_fleet_{uuid.uuid4().hex[:10]}"
    admin_engine = create_engine(make_url(server_url), isolation_level="AUTOCOMMIT")
    with admin_engine.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    database_url = make_url(server_url).set(database=name).render_as_string(hide_password=False)

    redis = RedisServer(tmp)
    redis.start()
    emulator_port = free_port()
    emulator = Process(
        name="emulator",
        args=["emulator", "--port", str(emulator_port)],
        env={
            "EMBEDPORTAL_EMULATOR_SIGNING_KEY": EMULATOR_SIGNING_KEY,
            "EMBEDPORTAL_EMULATOR_CAPACITY_TRANSITION_SECONDS": "0.3",
        },
        port=emulator_port,
        log_path=tmp / "emulator.log",
    )
    proxy = SlowProxy(emulator_port)
    built = Fleet(
        tmp=tmp,
        database_url=database_url,
        admin_engine=admin_engine,
        redis=redis,
        emulator=emulator,
        proxy=proxy,
    )
    try:
        emulator.start()
        env = portal_env(tmp, database_url, redis.url, proxy.url, prefix=f"fleet-{name}")
        seed(database_url, env)
        for instance, extra in (("a", []), ("b", []), ("w", ["--workers", "2"])):
            port = free_port()
            built.instances[instance] = Process(
                name=instance,
                args=["serve", "--port", str(port), *extra],
                env=env,
                port=port,
                log_path=tmp / f"portal-{instance}.log",
            )
        for process in built.instances.values():
            process.start()
        yield built
    finally:
        for process in built.instances.values():
            process.stop()
        emulator.stop()
        proxy.close()
        redis.stop()
        with admin_engine.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin_engine.dispose()


@pytest.fixture
def healthy_fleet(fleet: Fleet) -> Iterator[Fleet]:
    """The fleet, all up; afterwards whatever a test stopped is started again."""
    yield fleet
    fleet.proxy.delay = 0.0
    if fleet.redis.process is None:
        fleet.redis.start()
    if fleet.emulator.process is None or fleet.emulator.process.poll() is not None:
        fleet.emulator.start()
    for process in fleet.instances.values():
        if process.process is None or process.process.poll() is not None:
            process.start()
    # Mended means every instance says so; the next test starts from a healthy fleet.
    for process in fleet.instances.values():
        deadline = time.monotonic() + 30
        while _down(process.base_url) and time.monotonic() < deadline:
            time.sleep(0.2)


def _down(base_url: str) -> list[str] | None:
    try:
        answer = httpx.get(base_url + "/healthz", timeout=5).json()
    except (httpx.HTTPError, ValueError):
        return None
    down = answer.get("down")
    return down if isinstance(down, list) else None


def logs_of(fleet: Fleet) -> str:
    return "".join(
        process.log() for process in fleet.instances.values() if process.log_path.exists()
    )


__all__ = ["logs_of", "Path"]
