"""/healthz names the dependency that is down, stays fast while it is, and says 503 only when
the portal cannot serve (the database); a flood of probes costs one check."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import create_engine

from embedportal.health import DependencyState, HealthChecker, HealthReport
from embedportal.web.deps import get_health_checker
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


def test_with_the_database_down_healthz_is_503_naming_it(app: FastAPI) -> None:
    checker = HealthChecker(
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
    app: FastAPI, hung_redis_url: str
) -> None:
    port = free_port()  # nothing listens: Power BI unreachable
    checker = HealthChecker(
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


def test_a_flood_of_probes_costs_one_check(app: FastAPI, monkeypatch: pytest.MonkeyPatch) -> None:
    checker = HealthChecker(
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
    app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    release = threading.Event()
    calls = 0

    def stuck() -> None:
        nonlocal calls
        calls += 1
        release.wait(10)

    checker = HealthChecker(
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


def test_past_its_window_the_last_report_answers_while_the_next_check_runs(
    app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    release = threading.Event()
    checker = HealthChecker(
        engine=app.state.engine,
        redis_url=None,
        powerbi_url=None,
        timeout_seconds=5,
        cache_seconds=0,
        stale_seconds=60,
    )

    async def scenario() -> tuple[HealthReport, HealthReport, HealthReport]:
        first = await checker.report()
        # The next check is slow (a busy interpreter): probes keep getting the last report.
        monkeypatch.setattr(checker, "_select_one", lambda: release.wait(5))
        started = asyncio.get_running_loop().time()
        meanwhile = await checker.report()
        assert asyncio.get_running_loop().time() - started < 0.5
        release.set()
        await asyncio.sleep(0.2)
        return first, meanwhile, await checker.report()

    try:
        first, meanwhile, after = asyncio.run(scenario())
    finally:
        release.set()
    assert meanwhile is first
    assert after is not first and after.serving  # the check that ran meanwhile is the answer


def test_a_report_older_than_the_stale_limit_is_never_served(
    app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    checker = HealthChecker(
        engine=app.state.engine,
        redis_url=None,
        powerbi_url=None,
        timeout_seconds=0.2,
        cache_seconds=0,
        stale_seconds=0,
    )

    def down() -> None:
        raise OSError("connection refused")

    async def scenario() -> tuple[HealthReport, HealthReport]:
        up = await checker.report()
        monkeypatch.setattr(checker, "_select_one", down)
        return up, await checker.report()

    up, now = asyncio.run(scenario())
    assert up.serving
    assert now.down == ["database"]  # the database that went down shows at once


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
