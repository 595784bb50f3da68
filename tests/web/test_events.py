"""The push channel, viewer telemetry and /metrics."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr

from embedportal.access.sessions import SESSION_COOKIE, start_session
from embedportal.access.users import create_user
from embedportal.app import create_app
from embedportal.db.session import session_scope
from embedportal.settings import Settings
from embedportal.web.push import PushEvent, PushHub
from embedportal.web.routes import events as events_route
from tests.support.threaded import serve_in_thread


def _signed_in_cookie(app: FastAPI, email: str = "viewer@example.com") -> tuple[str, str, int]:
    with session_scope(app.state.session_factory) as db:
        user = create_user(session=db, email=email, password="long-enough-password", actor=None)
        new = start_session(session=db, user=user)
        return new.cookie_value, new.record.csrf_token, user.id


def test_hub_delivers_to_the_addressed_user_only() -> None:
    async def scenario() -> list[str | None]:
        hub = PushHub()
        with hub.subscribe(user_id=1) as alice, hub.subscribe(user_id=2) as bob:
            # Registered on entry: an event published at once is not lost.
            hub.publish(PushEvent(kind="access", user_id=1))
            hub.publish(PushEvent(kind="policy", data={"marginSeconds": 60}))
            first = await alice.next(timeout=1)
            second = await alice.next(timeout=1)
            bob_first = await bob.next(timeout=1)
            bob_second = await bob.next(timeout=0.05)
            assert hub.connected == 2
        assert hub.connected == 0
        assert first and second and bob_first
        return [first.kind, second.kind, bob_first.kind, bob_second and bob_second.kind]

    assert asyncio.run(scenario()) == ["access", "policy", "policy", None]


def test_events_stream_requires_a_session(client: TestClient) -> None:
    response = client.get("/api/events")
    assert response.status_code == 401
    assert response.json()["code"] == "Unauthorized"


def test_events_stream_delivers_published_events_over_http(app: FastAPI) -> None:
    cookie, _csrf, user_id = _signed_in_cookie(app)
    received: list[tuple[str, dict[str, object]]] = []
    with serve_in_thread(app) as base_url:

        def listen() -> None:
            with httpx.stream(
                "GET",
                f"{base_url}/api/events",
                cookies={SESSION_COOKIE: cookie},
                timeout=10,
            ) as response:
                assert response.headers["content-type"].startswith("text/event-stream")
                kind = None
                for line in response.iter_lines():
                    if line.startswith("event: "):
                        kind = line[len("event: ") :]
                    elif line.startswith("data: ") and kind not in (None, "hello", "heartbeat"):
                        received.append((kind, json.loads(line[len("data: ") :])))
                        return

        listener = threading.Thread(target=listen)
        listener.start()
        deadline = time.monotonic() + 10
        while app.state.push_hub.connected == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        app.state.push_hub.publish(PushEvent(kind="access", data={"x": 1}, user_id=user_id))
        listener.join(timeout=10)
        # The viewer went away: its subscription ends and the open-viewers gauge comes back down.
        gauge = app.state.metrics.open_viewers
        deadline = time.monotonic() + 10
        while (app.state.push_hub.connected or gauge._value.get()) and (  # noqa: SLF001
            time.monotonic() < deadline
        ):
            time.sleep(0.05)
        assert app.state.push_hub.connected == 0
        assert gauge._value.get() == 0  # noqa: SLF001
    assert received == [("access", {"x": 1})]


def _stream_opening(base_url: str, cookie: str) -> list[str]:
    """The lines a stream sends before its first heartbeat is due."""
    lines: list[str] = []
    with httpx.stream(
        "GET", f"{base_url}/api/events", cookies={SESSION_COOKIE: cookie}, timeout=10
    ) as response:
        for line in response.iter_lines():
            lines.append(line)
            if line.startswith("data: "):
                return lines
    return lines


def test_a_stream_announces_its_heartbeat_and_a_jittered_retry_hint(app: FastAPI) -> None:
    """The viewer watches the announced heartbeat (two silent intervals: reconnect); the
    retry hint differs per stream so that viewers dropped together do not return together."""
    cookie, _csrf, _user_id = _signed_in_cookie(app)
    hints: set[int] = set()
    with serve_in_thread(app) as base_url:
        for _ in range(8):
            lines = _stream_opening(base_url, cookie)
            retry = [int(line[len("retry: ") :]) for line in lines if line.startswith("retry: ")]
            assert len(retry) == 1
            assert events_route.RETRY_HINT_MS[0] <= retry[0] <= events_route.RETRY_HINT_MS[1]
            hints.add(retry[0])
            assert "event: hello" in lines
            assert json.loads(lines[-1][len("data: ") :]) == {
                "heartbeatSeconds": events_route.HEARTBEAT_SECONDS
            }
    assert len(hints) > 1


def test_heartbeats_are_events_a_page_can_see(
    app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """EventSource hides comment lines from the page; a `heartbeat` event it can watch."""
    monkeypatch.setattr(events_route, "HEARTBEAT_SECONDS", 0.2)
    cookie, _csrf, _user_id = _signed_in_cookie(app)
    kinds: list[str] = []
    with (
        serve_in_thread(app) as base_url,
        httpx.stream(
            "GET", f"{base_url}/api/events", cookies={SESSION_COOKIE: cookie}, timeout=10
        ) as response,
    ):
        for line in response.iter_lines():
            if line.startswith("event: "):
                kinds.append(line[len("event: ") :])
            if kinds.count("heartbeat") == 2:
                break
    assert kinds[:3] == ["hello", "heartbeat", "heartbeat"]


def test_telemetry_counts_viewer_events_into_metrics(app: FastAPI, client: TestClient) -> None:
    cookie, csrf, _ = _signed_in_cookie(app)
    client.cookies.set(SESSION_COOKIE, cookie)
    response = client.post(
        "/api/telemetry",
        json={
            "events": [
                {"type": "refreshed", "reason": "margin"},
                {"type": "expired"},
                {"type": "recovered"},
            ]
        },
        headers={"X-CSRF-Token": csrf},
    )
    assert response.status_code == 204
    text = client.get("/metrics").text
    assert 'embedportal_viewer_refreshes_total{reason="margin"} 1.0' in text
    assert "embedportal_viewer_expiry_screens_total 1.0" in text
    assert "embedportal_viewer_recoveries_total 1.0" in text


def test_telemetry_refuses_unknown_event_types_and_missing_csrf(
    app: FastAPI, client: TestClient
) -> None:
    cookie, csrf, _ = _signed_in_cookie(app)
    client.cookies.set(SESSION_COOKIE, cookie)
    bad = client.post(
        "/api/telemetry", json={"events": [{"type": "explode"}]}, headers={"X-CSRF-Token": csrf}
    )
    assert bad.status_code == 422
    assert bad.json()["code"] == "InvalidRequest"
    no_csrf = client.post("/api/telemetry", json={"events": []})
    assert no_csrf.status_code == 403


def test_redis_fans_events_out_between_instances(redis_url: str) -> None:
    """Two portal instances: an event published on one reaches a viewer on the other."""

    async def scenario() -> PushEvent:
        channel = f"embedportal-test-{uuid.uuid4().hex}:push"
        publisher = PushHub(redis_url, channel=channel)
        receiver = PushHub(redis_url, channel=channel)
        await receiver.start()
        try:
            with receiver.subscribe(user_id=7) as subscription:
                for _ in range(50):  # the Redis subscription is ready once an event arrives
                    publisher.publish(PushEvent(kind="access", data={"n": 1}, user_id=7))
                    event = await subscription.next(timeout=0.1)
                    if event is not None:
                        return event
            raise AssertionError("no event crossed Redis")
        finally:
            await receiver.stop()

    assert asyncio.run(scenario()).data == {"n": 1}


METRICS_TOKEN = "a-long-random-metrics-token"


@pytest.fixture
def guarded_client(settings: Settings) -> Iterator[TestClient]:
    """The portal with EMBEDPORTAL_METRICS_TOKEN set."""
    application = create_app(
        settings.model_copy(update={"metrics_token": SecretStr(METRICS_TOKEN)})
    )
    with TestClient(application, base_url="http://127.0.0.1") as test_client:
        yield test_client
    application.state.engine.dispose()


def test_metrics_are_open_without_a_metrics_token(client: TestClient) -> None:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert "embedportal_token_requests" in response.text


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        b"",
        b"Bearer",
        b"Bearer ",
        b"Bearer not-the-token",
        b"Bearer " + METRICS_TOKEN.encode() + b"x",
        b"Basic " + METRICS_TOKEN.encode(),
        METRICS_TOKEN.encode(),
        "Bearer tökén".encode("latin-1"),
    ],
)
def test_with_a_metrics_token_metrics_need_it(
    guarded_client: TestClient, authorization: bytes | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    response = guarded_client.get("/metrics", headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert "embedportal_token_requests" not in response.text


@pytest.mark.parametrize("scheme", ["Bearer", "bearer"])
def test_with_a_metrics_token_the_right_bearer_reads_metrics(
    guarded_client: TestClient, scheme: str
) -> None:
    response = guarded_client.get(
        "/metrics", headers={"Authorization": f"{scheme} {METRICS_TOKEN}"}
    )
    assert response.status_code == 200
    assert "embedportal_token_requests" in response.text


def test_an_empty_metrics_token_setting_means_unset() -> None:
    assert Settings(_env_file=None, metrics_token="").metrics_token is None
    assert Settings(_env_file=None, metrics_token="  ").metrics_token is None


def test_portals_with_other_redis_prefixes_do_not_hear_each_other(redis_url: str) -> None:
    """Two portals sharing one Redis server: a push of one never reaches the other's viewers."""

    async def scenario() -> tuple[PushEvent | None, PushEvent | None]:
        ours = PushHub(redis_url, channel=f"ours-{uuid.uuid4().hex}:push")
        theirs = PushHub(redis_url, channel=f"theirs-{uuid.uuid4().hex}:push")
        await ours.start()
        await theirs.start()
        try:
            with ours.subscribe(user_id=7) as mine, theirs.subscribe(user_id=7) as other:
                received = None
                for _ in range(50):  # ready once our own event comes back
                    ours.publish(PushEvent(kind="access", data={"n": 1}, user_id=7))
                    received = await mine.next(timeout=0.1)
                    if received is not None:
                        break
                return received, await other.next(timeout=0.5)
        finally:
            await ours.stop()
            await theirs.stop()

    received, leaked = asyncio.run(scenario())
    assert received is not None and received.data == {"n": 1}
    assert leaked is None
