"""The push channel, viewer telemetry and /metrics."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import select

from embedportal.access.sessions import SESSION_COOKIE, end_session, start_session
from embedportal.access.users import create_user, set_blocked
from embedportal.app import create_app
from embedportal.db.models import Role, User, WebSession
from embedportal.db.session import session_scope
from embedportal.settings import Settings
from embedportal.web.push import PushEvent, PushHub, notify_access_changed
from embedportal.web.routes import events as events_route
from embedportal.web.routes.auth import tell_open_viewers_of_sign_out
from tests.support.streams import watch_events
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
    with serve_in_thread(app) as base_url:
        kinds = watch_events(base_url, cookie, until=lambda kinds: kinds.count("heartbeat") == 2)
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


def _kinds_until_closed(base_url: str, cookie: str, kinds: list[str]) -> None:
    """Read a stream until the server ends it, noting each event's name."""
    with httpx.stream(
        "GET", f"{base_url}/api/events", cookies={SESSION_COOKIE: cookie}, timeout=10
    ) as response:
        for line in response.iter_lines():
            if line.startswith("event: "):
                kinds.append(line[len("event: ") :])


def _end_session(app: FastAPI, how: str, cookie: str, user_id: int) -> None:
    """As the sign-out and block routes do (commit, then the push event), or silently."""
    with session_scope(app.state.session_factory) as db:
        if how == "blocked":
            admin = create_user(
                session=db,
                email="admin@example.com",
                password="long-enough-password",
                role=Role.ADMIN,
                actor=None,
            )
            user = db.get(User, user_id)
            assert user is not None
            set_blocked(session=db, user=user, blocked=True, actor=admin)
        else:
            end_session(session=db, cookie_value=cookie)
    if how == "blocked":
        notify_access_changed(app.state.push_hub, [user_id])
    elif how == "signed out":
        tell_open_viewers_of_sign_out(app.state.push_hub, user_id)


@pytest.mark.parametrize("how", ["signed out", "blocked", "ended without an event"])
def test_a_stream_ends_when_its_session_does(
    how: str, app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sign-out or a block ends the user's streams at once, after the event that says so (a
    heartbeat a minute away does not wait); a session ended with no event (another instance
    without Redis, an idle expiry) at the latest at the stream's next heartbeat."""
    heartbeat = 0.3 if how == "ended without an event" else 60.0
    monkeypatch.setattr(events_route, "HEARTBEAT_SECONDS", heartbeat)
    cookie, _csrf, user_id = _signed_in_cookie(app)
    kinds: list[str] = []
    with serve_in_thread(app) as base_url:
        listener = threading.Thread(target=_kinds_until_closed, args=(base_url, cookie, kinds))
        listener.start()
        deadline = time.monotonic() + 10
        while app.state.push_hub.connected == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert app.state.push_hub.connected == 1
        ended_at = time.monotonic()
        _end_session(app, how, cookie, user_id)
        listener.join(timeout=10)
        assert not listener.is_alive(), "the stream outlived its session"
        assert time.monotonic() - ended_at < 3
        deadline = time.monotonic() + 5
        while app.state.push_hub.connected and time.monotonic() < deadline:
            time.sleep(0.05)
        assert app.state.push_hub.connected == 0
        # The stream is refused from now on.
        with httpx.Client(base_url=base_url, cookies={SESSION_COOKIE: cookie}) as client:
            assert client.get("/api/events").status_code == 401
    assert kinds[0] == "hello"
    if how == "ended without an event":
        # The heartbeat due found the session gone: the stream ended instead of beating.
        assert set(kinds) <= {"hello", "heartbeat"}
    else:
        assert kinds[-1] == {"signed out": "session", "blocked": "access"}[how]


def test_an_open_stream_does_not_keep_its_session_alive(
    app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The heartbeat's session check only reads: an open stream is not a request."""
    monkeypatch.setattr(events_route, "HEARTBEAT_SECONDS", 0.2)
    cookie, _csrf, user_id = _signed_in_cookie(app)
    with session_scope(app.state.session_factory) as db:
        record = db.scalars(select(WebSession).where(WebSession.user_id == user_id)).one()
        record.last_seen_at = record.last_seen_at - timedelta(minutes=5)
        before = record.last_seen_at
    with serve_in_thread(app) as base_url:
        watch_events(base_url, cookie, until=lambda kinds: kinds.count("heartbeat") == 3)
    with session_scope(app.state.session_factory) as db:
        record = db.scalars(select(WebSession).where(WebSession.user_id == user_id)).one()
        # The stream's own request resolved the session once (as every request does); the
        # heartbeats after it wrote nothing.
        assert record.last_seen_at - before >= timedelta(minutes=4)
