"""What open viewers tell the capacity's activity ledger: the push stream's heartbeat for the
reports it names, and `interaction` telemetry. Both are noted in memory; nothing is written to
the database until the ledger's flush."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import event, func, select
from sqlalchemy.engine import Connection

from embedportal.access.sessions import SESSION_COOKIE, start_session
from embedportal.app import create_app
from embedportal.capacity.activity import ActivityKind, LedgerKey, LedgerRow
from embedportal.capacity.ledger import ActivityLedger
from embedportal.db.models import Capacity, CapacityActivity, User, ViewerEventCount
from embedportal.db.session import session_scope
from embedportal.settings import Settings
from embedportal.web.routes import events
from tests.support.portal import Grant, MakeUser, a_report
from tests.support.streams import watch_events
from tests.support.threaded import serve_in_thread

CAP_A = "aaaaaaaa-0000-0000-0000-00000000000a"
CAP_B = "bbbbbbbb-0000-0000-0000-00000000000b"
CAP_UNKNOWN = "cccccccc-0000-0000-0000-00000000000c"  # a report's capacity with no row

# report id → its capacity (None: shared capacity)
REPORTS: dict[str, str | None] = {
    "report-a1": CAP_A,
    "report-a2": CAP_A,
    "report-b": CAP_B,  # never granted: forbidden
    "report-shared": None,
    "report-orphan": CAP_UNKNOWN,
}
GRANTED = ("report-a1", "report-a2", "report-shared", "report-orphan")


@pytest.fixture
def app(settings: Settings) -> Iterator[FastAPI]:
    """The portal without the ledger's own flush loop: these tests flush by hand."""
    application = create_app(settings)
    ledger: ActivityLedger = application.state.activity_ledger
    application.state.background.remove(ledger.run)
    yield application
    application.state.engine.dispose()


@dataclass
class Note:
    capacity_id: str
    user_id: int
    kind: ActivityKind
    keeps_capacity_on: bool
    at: float  # time.monotonic()


@pytest.fixture
def notes(app: FastAPI, monkeypatch: pytest.MonkeyPatch) -> list[Note]:
    """Every ledger.note call, recorded on its way into the real ledger."""
    ledger: ActivityLedger = app.state.activity_ledger
    recorded: list[Note] = []

    def note(**kwargs: Any) -> None:
        recorded.append(
            Note(
                capacity_id=kwargs["capacity_id"],
                user_id=kwargs["user_id"],
                kind=kwargs["kind"],
                keeps_capacity_on=kwargs["keeps_capacity_on"],
                at=time.monotonic(),
            )
        )
        ActivityLedger.note(ledger, **kwargs)

    monkeypatch.setattr(ledger, "note", note)
    return recorded


@pytest.fixture
def catalogue(app: FastAPI, make_user: MakeUser, grant: Grant) -> dict[str, User]:
    """Two capacities, the reports above, and two viewers granted GRANTED: one whose open
    reports keep a capacity on and one whose do not."""
    with session_scope(app.state.session_factory) as db:
        db.add_all([Capacity(id=CAP_A, sku="A1"), Capacity(id=CAP_B, sku="A1")])
        for report_id, capacity_id in REPORTS.items():
            db.add(a_report(report_id, capacity_id=capacity_id))
    users = {
        "screen": make_user(email="screen@example.com"),
        "keeper": make_user(email="keeper@example.com", keeps_capacity_on=True),
    }
    for user in users.values():
        for report_id in GRANTED:
            grant(report_id, user=user)
    return users


def _session_of(app: FastAPI, user: User) -> tuple[str, str]:
    """(session cookie, CSRF token) of a new session for the user."""
    with session_scope(app.state.session_factory) as db:
        found = db.get(User, user.id)
        assert found is not None
        new = start_session(session=db, user=found)
        return new.cookie_value, new.record.csrf_token


def _pending(app: FastAPI) -> dict[LedgerKey, LedgerRow]:
    ledger: ActivityLedger = app.state.activity_ledger
    with ledger._lock:  # noqa: SLF001 - what is noted but not written, read as the ledger does
        return dict(ledger._pending)  # noqa: SLF001


def _stored(app: FastAPI) -> list[CapacityActivity]:
    with session_scope(app.state.session_factory) as db:
        rows = list(db.scalars(select(CapacityActivity).order_by(CapacityActivity.capacity_id)))
        db.expunge_all()
        return rows


def _viewer_event_counts(app: FastAPI) -> int:
    with session_scope(app.state.session_factory) as db:
        return int(db.scalar(select(func.count()).select_from(ViewerEventCount)) or 0)


class WriteCounter:
    """INSERT/UPDATE/DELETE statements the app's engine executes while counting."""

    def __init__(self, app: FastAPI) -> None:
        self.engine = app.state.engine
        self.statements: list[str] = []

    def _on_execute(self, _conn: Connection, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().split(" ", 1)[0].upper() in {"INSERT", "UPDATE", "DELETE"}:
            self.statements.append(statement)

    def __enter__(self) -> WriteCounter:
        event.listen(self.engine, "before_cursor_execute", self._on_execute)
        return self

    def __exit__(self, *_exc: object) -> None:
        event.remove(self.engine, "before_cursor_execute", self._on_execute)


def _after(seconds: float) -> Callable[[list[str]], bool]:
    """A condition for watch_events that comes true `seconds` from now."""
    at = time.monotonic() + seconds
    return lambda _kinds: time.monotonic() > at


# --- the open viewer's heartbeat ----------------------------------------------------------------


def test_an_open_stream_notes_a_heartbeat_per_capacity_once_a_minute(
    app: FastAPI, catalogue: dict[str, User], notes: list[Note], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(events, "HEARTBEAT_SECONDS", 0.05)
    monkeypatch.setattr(events, "ACTIVITY_SECONDS", 0.3)
    screen = catalogue["screen"]
    cookie, _csrf = _session_of(app, screen)
    with serve_in_thread(app) as base_url:
        started = time.monotonic()
        watch_events(base_url, cookie, report_ids=list(REPORTS), until=lambda _: len(notes) >= 4)
        closed = time.monotonic()
        # The viewer went away: no more heartbeats.
        deadline = time.monotonic() + 10
        while app.state.push_hub.connected and time.monotonic() < deadline:
            time.sleep(0.05)
        count = len(notes)
        time.sleep(0.8)
        assert len(notes) == count, "heartbeats after the stream closed"

    # Only the capacity of the reports this person may view, once per interval (two reports on
    # it, one note); the forbidden report's capacity, the shared-capacity report and the
    # capacity the portal has no row for are not noted.
    assert {n.capacity_id for n in notes} == {CAP_A}
    assert {(n.user_id, n.kind, n.keeps_capacity_on) for n in notes} == {
        (screen.id, ActivityKind.HEARTBEAT, False)
    }
    # Bounds far from the 0.3 s interval on purpose: a busy CI machine delays every step, and
    # what matters is "at the opening, then once per interval, never more often". Notes ride on
    # the shared heartbeat, at the last beat before the interval is up: at most one heartbeat
    # (0.05 s) early, so the ledger's row a minute is never skipped.
    first_gap = notes[1].at - notes[0].at
    assert notes[0].at - started < first_gap + 3.0, "the first heartbeat comes at the opening"
    gaps = [b.at - a.at for a, b in zip(notes, notes[1:], strict=False)]
    assert all(0.3 - 0.05 - 0.02 <= gap < 3.0 for gap in gaps), gaps
    assert notes[-1].at <= closed + 0.5

    # In memory only (one row a minute; the run may straddle two), and not counted: this
    # person's open reports do not keep the capacity on.
    rows = list(_pending(app).values())
    assert 1 <= len(rows) <= 2
    assert {(r.key.capacity, r.key.user_id) for r in rows} == {(CAP_A, screen.id)}
    assert all(r.kinds == {ActivityKind.HEARTBEAT} and r.last_counted_at is None for r in rows)
    assert _stored(app) == []
    assert app.state.activity_ledger.flush() == len(rows)
    stored = _stored(app)
    assert [(r.capacity_id, r.kinds, r.last_counted_at) for r in stored] == [
        (CAP_A, "heartbeat", None)
    ] * len(rows)


def test_a_keeps_on_viewer_s_heartbeat_counts(
    app: FastAPI, catalogue: dict[str, User], notes: list[Note], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(events, "HEARTBEAT_SECONDS", 0.05)
    keeper = catalogue["keeper"]
    cookie, _csrf = _session_of(app, keeper)
    with serve_in_thread(app) as base_url:
        watch_events(base_url, cookie, report_ids=["report-a1"], until=lambda _: bool(notes))
    assert [(n.capacity_id, n.keeps_capacity_on) for n in notes] == [(CAP_A, True)]
    assert app.state.activity_ledger.pending_last_counted(CAP_A) is not None
    assert _stored(app) == []


def test_with_the_default_interval_a_stream_notes_once(
    app: FastAPI, catalogue: dict[str, User], notes: list[Note], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(events, "HEARTBEAT_SECONDS", 0.05)
    assert events.ACTIVITY_SECONDS == 60
    cookie, _csrf = _session_of(app, catalogue["screen"])
    with serve_in_thread(app) as base_url:
        watch_events(base_url, cookie, report_ids=["report-a1"], until=_after(1.0))
    assert [n.capacity_id for n in notes] == [CAP_A]


def test_streams_without_viewable_reports_note_nothing(
    app: FastAPI, catalogue: dict[str, User], notes: list[Note], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(events, "HEARTBEAT_SECONDS", 0.05)
    monkeypatch.setattr(events, "ACTIVITY_SECONDS", 0.05)
    cookie, _csrf = _session_of(app, catalogue["screen"])
    # At most 12 reports per stream: the viewable ones after the first 12 ids are ignored, and
    # ids that are not report ids are never looked up.
    ignored = [f"unknown-{n}" for n in range(10)] + ["report-b", "report-shared", "report-a1"]
    strange = ["", "x" * 65, "../report-a1", "report-a1 "]
    for report_ids in ([], ["report-b"], ["report-shared", "report-orphan"], ignored, strange):
        with serve_in_thread(app) as base_url:
            watch_events(base_url, cookie, report_ids=report_ids, until=_after(0.4))
        assert notes == [], report_ids
    assert _pending(app) == {}


def test_the_report_ids_are_validated_before_any_lookup() -> None:
    ids = [f"r{n}" for n in range(20)]
    assert events._valid_report_ids(ids) == ids[:12]  # noqa: SLF001
    assert events._valid_report_ids(["a", "a", "b", "", "c d", "é", "x" * 65, "y" * 64]) == [  # noqa: SLF001
        "a",
        "b",
        "y" * 64,
    ]


# --- interaction telemetry ------------------------------------------------------------------------


def _post(client: TestClient, csrf: str, *batch: dict[str, object]) -> httpx.Response:
    return client.post(
        "/api/telemetry", json={"events": list(batch)}, headers={"X-CSRF-Token": csrf}
    )


def test_interaction_is_noted_in_memory_with_no_database_write(
    app: FastAPI, client: TestClient, catalogue: dict[str, User], notes: list[Note]
) -> None:
    screen = catalogue["screen"]
    cookie, csrf = _session_of(app, screen)
    client.cookies.set(SESSION_COOKIE, cookie)
    _post(client, csrf, {"type": "refreshed", "reason": "margin"})  # the session's first use

    with WriteCounter(app) as writes:
        response = _post(
            client,
            csrf,
            {"type": "interaction", "reason": "dataSelected", "reportId": "report-a1"},
            {"type": "interaction", "reason": "pageChanged", "reportId": "report-a2"},
            {"type": "interaction", "reason": "dataSelected", "reportId": "report-shared"},
            {"type": "interaction", "reason": "dataSelected", "reportId": "report-orphan"},
            {"type": "interaction"},
        )
    assert response.status_code == 204
    assert writes.statements == []

    # Noted once for the one capacity (with a row) of the reports; always counted, though
    # their open reports do not keep the capacity on.
    assert [(n.capacity_id, n.user_id, n.kind) for n in notes] == [
        (CAP_A, screen.id, ActivityKind.INTERACTION)
    ]
    (row,) = _pending(app).values()
    assert row.kinds == {ActivityKind.INTERACTION}
    assert isinstance(row.last_counted_at, datetime)
    assert _stored(app) == []
    app.state.token_tally.flush()
    assert _viewer_event_counts(app) == 1, "only the refreshed event went to viewer health"

    assert app.state.activity_ledger.flush() == 1
    (stored,) = _stored(app)
    assert (stored.capacity_id, stored.user_id, stored.kinds) == (CAP_A, screen.id, "interaction")
    assert stored.last_counted_at is not None


def test_a_mixed_batch_keeps_viewer_health_as_it_was(
    app: FastAPI, client: TestClient, catalogue: dict[str, User], notes: list[Note]
) -> None:
    cookie, csrf = _session_of(app, catalogue["keeper"])
    client.cookies.set(SESSION_COOKIE, cookie)
    response = _post(
        client,
        csrf,
        {"type": "refreshed", "reason": "interaction", "reportId": "report-a1"},
        {"type": "interaction", "reason": "filtersApplied", "reportId": "report-a1"},
        {"type": "expired", "reason": "clock", "reportId": "report-a1"},
    )
    assert response.status_code == 204
    assert [n.kind for n in notes] == [ActivityKind.INTERACTION]
    app.state.token_tally.flush()
    with session_scope(app.state.session_factory) as db:
        kinds = sorted(row.event_type for row in db.scalars(select(ViewerEventCount)))
    assert kinds == ["expired", "refreshed"]
    text = client.get("/metrics").text
    assert 'embedportal_viewer_refreshes_total{reason="interaction"} 1.0' in text
    assert "interaction_total" not in text.replace('reason="interaction"', "")


def test_interaction_telemetry_needs_a_session_and_csrf(
    app: FastAPI, client: TestClient, catalogue: dict[str, User], notes: list[Note]
) -> None:
    batch = {"events": [{"type": "interaction", "reportId": "report-a1"}]}
    assert client.post("/api/telemetry", json=batch).status_code in (401, 403)
    cookie, _csrf = _session_of(app, catalogue["screen"])
    client.cookies.set(SESSION_COOKIE, cookie)
    assert client.post("/api/telemetry", json=batch).status_code == 403
    assert notes == []
