"""/healthz names the dependency that is down, stays fast while it is, and says 503 only when
the portal cannot serve (the database); a flood of probes costs one check."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import create_engine

from embedportal.health import DependencyState, HealthReport
from embedportal.web.deps import get_health_checker
from tests.support.portal import MakeHealthChecker
from tests.support.redis_server import hung_redis
from tests.support.servers import free_port


def test_healthz_answers_ok_with_its_dependencies(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["down"] == []
    assert body["dependencies"]["database"]["ok"] is True
    # Not pointed at any Power BI (tests never call the real one): not probed.
    assert "powerbi" not in body["dependencies"]


def _unreachable_database_engine() -> object:
    return create_engine(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nowhere")


def test_with_the_database_down_healthz_is_503_naming_it(
    app: FastAPI, make_health_checker: MakeHealthChecker
) -> None:
    checker = make_health_checker(
        engine=_unreachable_database_engine(),  # type: ignore[arg-type]
        redis_url=None,
        powerbi_url=None,
    )
    app.dependency_overrides[get_health_checker] = lambda: checker
    with TestClient(app, base_url="http://127.0.0.1") as client:
        response = client.get("/healthz")
    assert response.status_code == 503
    assert response.headers["retry-after"]
    assert response.json()["down"] == ["database"]
    assert response.json()["status"] == "unavailable"


@pytest.fixture
def hung_redis_url() -> Iterator[str]:
    with hung_redis() as url:
        yield url


def test_a_hung_redis_and_power_bi_degrade_but_do_not_stop_the_portal(
    app: FastAPI, hung_redis_url: str, make_health_checker: MakeHealthChecker
) -> None:
    port = free_port()  # nothing listens: Power BI unreachable
    checker = make_health_checker(
        engine=app.state.engine,
        redis_url=hung_redis_url,
        powerbi_url=f"http://127.0.0.1:{port}",
        # Long enough for the database to answer on a busy machine; Redis never will.
        timeout_seconds=1.0,
    )
    app.dependency_overrides[get_health_checker] = lambda: checker
    with TestClient(app, base_url="http://127.0.0.1") as client:
        response = client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded"
    assert sorted(body["down"]) == ["powerbi", "redis"]
    assert "no answer" in body["dependencies"]["redis"]["detail"]


def test_a_flood_of_probes_costs_one_check(
    app: FastAPI, monkeypatch: pytest.MonkeyPatch, make_health_checker: MakeHealthChecker
) -> None:
    checker = make_health_checker(
        engine=app.state.engine, redis_url=None, powerbi_url=None, cache_seconds=60
    )
    probes = 0
    real = checker._select_one

    def counting() -> None:
        nonlocal probes
        probes += 1
        real()

    monkeypatch.setattr(checker, "_select_one", counting)

    async def flood() -> list[HealthReport]:
        return await asyncio.gather(*(checker.report() for _ in range(50)))

    reports = asyncio.run(flood())
    assert probes == 1
    assert all(report.serving for report in reports)


def test_a_database_probe_stuck_in_its_thread_is_not_started_again(
    app: FastAPI, monkeypatch: pytest.MonkeyPatch, make_health_checker: MakeHealthChecker
) -> None:
    import threading

    release = threading.Event()
    calls = 0

    def stuck() -> None:
        nonlocal calls
        calls += 1
        release.wait(10)

    checker = make_health_checker(
        engine=app.state.engine,
        redis_url=None,
        powerbi_url=None,
        timeout_seconds=0.1,
        cache_seconds=0,
    )
    monkeypatch.setattr(checker, "_select_one", stuck)

    async def probe_three_times() -> list[HealthReport]:
        return [await checker.report() for _ in range(3)]

    try:
        reports = asyncio.run(probe_three_times())
    finally:
        release.set()
    assert calls == 1
    assert all(report.down == ["database"] for report in reports)


def test_report_status_follows_critical_dependencies() -> None:
    up = DependencyState("database", True, True)
    down = DependencyState("database", False, True)
    side = DependencyState("redis", False, False)
    assert HealthReport((up,), 0).status == "ok"
    assert HealthReport((up, side), 0).status == "degraded"
    assert HealthReport((down, side), 0).status == "unavailable"
    assert HealthReport((down,), 0).down == ["database"]


def test_with_every_pooled_connection_held_the_database_still_answers_healthz(
    app: FastAPI,
) -> None:
    engine = app.state.engine
    held = []
    try:
        with TestClient(app, base_url="http://127.0.0.1") as client:
            # What a burst of requests does to the pool: every connection it has is taken.
            for _ in range(engine.pool.size() + engine.pool._max_overflow):
                held.append(engine.connect())
            response = client.get("/healthz")
    finally:
        for connection in held:
            connection.close()
    assert response.status_code == 200
    assert response.json()["dependencies"]["database"]["ok"] is True


def test_a_probe_connection_the_server_dropped_is_replaced_not_reported_down(
    app: FastAPI, make_health_checker: MakeHealthChecker
) -> None:
    checker = make_health_checker(
        engine=app.state.engine, redis_url=None, powerbi_url=None, cache_seconds=0
    )

    async def scenario() -> tuple[HealthReport, HealthReport]:
        first = await checker.report()
        kept = checker._probe_connection
        assert kept is not None and kept.dbapi_connection is not None
        kept.dbapi_connection.close()  # what a restart or pg_terminate_backend leaves behind
        return first, await checker.report()

    first, second = asyncio.run(scenario())
    assert first.serving and second.serving
