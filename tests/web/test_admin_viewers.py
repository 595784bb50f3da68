"""Viewer telemetry kept in the database, and Admin → Viewer health reading it back together
with the tokens handed out (the audit trail's `token.issued`)."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from embedportal.access import viewer_health as health_module
from embedportal.access.sessions import SESSION_COOKIE, start_session
from embedportal.access.viewer_health import ReportedEvent, record_viewer_events, viewer_health
from embedportal.db.models import AuditEntry, Report, User, ViewerEventCount
from embedportal.db.session import session_scope
from tests.support.html import elements, form_fields, links, table_rows
from tests.support.portal import Grant, LoginAs, MakeUser, csrf_of
from tests.support.servers import free_port
from tests.support.streams import watch_events
from tests.support.threaded import serve_in_thread

SALES_ID = "5a1e5000-0000-4000-8000-000000000001"
STOCK_ID = "5a1e5000-0000-4000-8000-000000000002"


def _add_report(app: FastAPI, report_id: str, name: str) -> None:
    with session_scope(app.state.session_factory) as db:
        db.add(
            Report(
                id=report_id,
                workspace_id="5a1e5000-0000-4000-8000-0000000000ff",
                dataset_id="5a1e5000-0000-4000-8000-0000000000da",
                name=name,
                embed_url=f"https://app.powerbi.com/reportEmbed?reportId={report_id}",
            )
        )


@pytest.fixture
def reports(app: FastAPI) -> dict[str, str]:
    _add_report(app, SALES_ID, "Sales Overview")
    _add_report(app, STOCK_ID, "Stock Levels")
    return {"sales": SALES_ID, "stock": STOCK_ID}


@pytest.fixture
def viewer(
    make_user: MakeUser, login_as: LoginAs, reports: dict[str, str], grant: Grant
) -> TestClient:
    """A viewer who may open both reports: telemetry names only reports its sender may open."""
    user = make_user("viewer@example.com")
    for report_id in reports.values():
        grant(report_id, user=user)
    return login_as(user)


def _post(client: TestClient, events: list[dict[str, Any]]) -> httpx.Response:
    response: httpx.Response = client.post(
        "/api/telemetry",
        json={"events": events},
        headers={"X-CSRF-Token": csrf_of(client, "/reports")},
    )
    return response


def _counts(app: FastAPI) -> dict[tuple[str | None, str, str], int]:
    """(report, event type, reason) → count, summed over days and rows, once the telemetry
    noted in memory is written."""
    app.state.token_tally.flush()
    with session_scope(app.state.session_factory) as db:
        rows = db.execute(
            select(
                ViewerEventCount.report_id,
                ViewerEventCount.event_type,
                ViewerEventCount.reason,
                func.sum(ViewerEventCount.count),
            ).group_by(
                ViewerEventCount.report_id, ViewerEventCount.event_type, ViewerEventCount.reason
            )
        )
        return {(r, t, reason): int(n) for r, t, reason, n in rows}


def _issue(app: FastAPI, *, at: datetime, report_id: str, shared: bool | None) -> None:
    """A `token.issued` audit entry as the token API writes it."""
    detail: dict[str, Any] = {"tokenId": "t", "reason": "margin"}
    if shared is not None:
        detail["shared"] = shared
    with session_scope(app.state.session_factory) as db:
        db.add(
            AuditEntry(
                at=at,
                action="token.issued",
                target_type="report",
                target_id=report_id,
                detail=detail,
            )
        )


# --- persistence -------------------------------------------------------------------------------


def test_two_batches_add_up_per_day_report_type_and_reason(
    app: FastAPI, viewer: TestClient, reports: dict[str, str]
) -> None:
    first = [
        {"type": "refreshed", "reason": "margin", "reportId": reports["sales"]},
        {"type": "refreshed", "reason": "margin", "reportId": reports["sales"]},
        {"type": "refreshed", "reason": "timed", "reportId": reports["stock"]},
        {"type": "expired", "reason": "clock", "reportId": reports["sales"]},
    ]
    second = [
        {"type": "refreshed", "reason": "margin", "reportId": reports["sales"]},
        {"type": "refreshFailed", "reason": "margin", "reportId": reports["sales"]},
        {"type": "recovered", "reason": "recovery", "reportId": reports["sales"]},
        {"type": "expired", "reason": "clock", "reportId": reports["sales"]},
    ]
    assert _post(viewer, first).status_code == 204
    assert _post(viewer, second).status_code == 204

    assert _counts(app) == {
        (reports["sales"], "refreshed", "margin"): 3,
        (reports["stock"], "refreshed", "timed"): 1,
        (reports["sales"], "expired", "clock"): 2,
        (reports["sales"], "refreshFailed", "margin"): 1,
        (reports["sales"], "recovered", "recovery"): 1,
    }
    with session_scope(app.state.session_factory) as db:
        rows = list(db.scalars(select(ViewerEventCount)))
    assert len(rows) == 5  # one counter per key, raised in place
    assert {row.day for row in rows} == {datetime.now(UTC).date()}


def test_events_without_a_report_and_unknown_reasons_are_kept(
    app: FastAPI, viewer: TestClient, reports: dict[str, str]
) -> None:
    response = _post(
        viewer,
        [
            {"type": "refreshed", "reason": "margin"},
            {"type": "refreshed", "reason": "margin"},
            {"type": "refreshed", "reason": "made-up-reason", "reportId": reports["sales"]},
            {"type": "refreshFailed", "reportId": reports["sales"]},
            {"type": "refreshFailed", "reason": None, "reportId": None},
        ],
    )
    assert response.status_code == 204
    assert _counts(app) == {
        (None, "refreshed", "margin"): 2,
        (reports["sales"], "refreshed", "other"): 1,
        (reports["sales"], "refreshFailed", ""): 1,
        (None, "refreshFailed", ""): 1,
    }
    # Counters without a report add up too (a NULL never meets the unique key).
    assert _post(viewer, [{"type": "refreshed", "reason": "margin"}]).status_code == 204
    assert _counts(app)[(None, "refreshed", "margin")] == 3
    with session_scope(app.state.session_factory) as db:
        assert db.scalar(select(func.count()).select_from(ViewerEventCount)) == 4


def test_an_empty_batch_is_accepted_and_stores_nothing(app: FastAPI, viewer: TestClient) -> None:
    assert _post(viewer, []).status_code == 204
    assert _counts(app) == {}


def test_telemetry_writes_nothing_itself_the_tally_does(
    app: FastAPI, viewer: TestClient, reports: dict[str, str]
) -> None:
    """The endpoint is a hot path: the events wait in memory (the token tally) for its flush,
    which runs off the event loop every few seconds."""
    batch = [{"type": "refreshed", "reason": "margin", "reportId": reports["sales"]}]
    assert _post(viewer, batch).status_code == 204
    with session_scope(app.state.session_factory) as db:
        assert db.scalar(select(func.count()).select_from(ViewerEventCount)) == 0
    assert app.state.token_tally.pending == 1
    assert _counts(app) == {(reports["sales"], "refreshed", "margin"): 1}


def test_concurrent_batches_all_count(app: FastAPI, make_user: MakeUser, grant: Grant) -> None:
    """Many viewers flushing at the same moment, over real HTTP: no 500, nothing lost."""
    _add_report(app, SALES_ID, "Sales Overview")
    user = make_user("wall@example.com")
    grant(SALES_ID, user=user)
    with session_scope(app.state.session_factory) as db:
        row = db.get(User, user.id)
        assert row is not None
        new = start_session(session=db, user=row)
        cookie, csrf = new.cookie_value, new.record.csrf_token
    batch = {
        "events": [
            {"type": "refreshed", "reason": "margin", "reportId": SALES_ID},
            {"type": "refreshed", "reason": "timed", "reportId": SALES_ID},
            {"type": "refreshed", "reason": "margin"},
        ]
    }
    start = threading.Barrier(8)

    with serve_in_thread(app) as base_url:

        def flush(_: int) -> list[int]:
            with httpx.Client(
                base_url=base_url,
                cookies={SESSION_COOKIE: cookie},
                headers={"X-CSRF-Token": csrf},
                timeout=30,
            ) as client:
                start.wait()
                return [client.post("/api/telemetry", json=batch).status_code for _ in range(5)]

        with ThreadPoolExecutor(max_workers=8) as pool:
            statuses = [status for result in pool.map(flush, range(8)) for status in result]
    assert statuses == [204] * 40
    assert _counts(app) == {
        (SALES_ID, "refreshed", "margin"): 40,
        (SALES_ID, "refreshed", "timed"): 40,
        (None, "refreshed", "margin"): 40,
    }


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        pytest.param(b"this is not json", "application/json", id="not-json"),
        pytest.param(b"", "application/json", id="empty-body"),
        pytest.param(b"[]", "application/json", id="a-list"),
        pytest.param(b'{"events": "refreshed"}', "application/json", id="events-not-a-list"),
        pytest.param(b'{"events": [null]}', "application/json", id="null-event"),
        pytest.param(b'{"events": [{"type": "explode"}]}', "application/json", id="unknown-type"),
        pytest.param(b'{"events": [{"reason": "margin"}]}', "application/json", id="no-type"),
        pytest.param(
            b'{"events": [{"type": "refreshed", "reportId": 42}]}',
            "application/json",
            id="numeric-report",
        ),
        pytest.param(
            b'{"events": [{"type": "refreshed", "reportId": "a\\u0000b"}]}',
            "application/json",
            id="nul-in-report",
        ),
        pytest.param(
            b'{"events": [{"type": "refreshed", "reportId": "../../etc"}]}',
            "application/json",
            id="path-like-report",
        ),
        pytest.param(
            b'{"events": [{"type": "refreshed", "reportId": "' + b"a" * 65 + b'"}]}',
            "application/json",
            id="long-report",
        ),
        pytest.param(
            b'{"events": [{"type": "refreshed", "reason": "' + b"r" * 41 + b'"}]}',
            "application/json",
            id="long-reason",
        ),
        pytest.param(
            b'{"events": [' + b",".join([b'{"type": "expired"}'] * 101) + b"]}",
            "application/json",
            id="too-many",
        ),
        pytest.param(b'{"events": []}', "text/plain", id="not-declared-json"),
    ],
)
def test_bad_telemetry_is_refused_with_422_json(
    app: FastAPI, viewer: TestClient, body: bytes, content_type: str
) -> None:
    response = viewer.post(
        "/api/telemetry",
        content=body,
        headers={"X-CSRF-Token": csrf_of(viewer, "/reports"), "Content-Type": content_type},
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["code"] == "InvalidRequest"
    assert _counts(app) == {}


def test_telemetry_needs_a_session(client: TestClient) -> None:
    response = client.post("/api/telemetry", json={"events": [{"type": "refreshed"}]})
    assert response.status_code in (401, 403)
    assert response.headers["content-type"].startswith("application/json")


def test_recording_refuses_event_types_it_does_not_know(app: FastAPI) -> None:
    with session_scope(app.state.session_factory) as db, pytest.raises(ValueError):
        record_viewer_events(session=db, events=[ReportedEvent(event_type="exploded")])


# --- reading it back ---------------------------------------------------------------------------


def test_tokens_are_counted_per_utc_day_from_the_audit_trail(
    app: FastAPI, reports: dict[str, str]
) -> None:
    day = date(2025, 3, 10)
    midnight = datetime(2025, 3, 10, tzinfo=UTC)
    _issue(app, at=midnight - timedelta(seconds=1), report_id=reports["sales"], shared=False)
    _issue(app, at=midnight, report_id=reports["sales"], shared=False)
    _issue(app, at=midnight + timedelta(hours=5), report_id=reports["sales"], shared=True)
    _issue(
        app, at=midnight + timedelta(hours=23, minutes=59), report_id=reports["stock"], shared=True
    )
    _issue(app, at=midnight + timedelta(hours=12), report_id=reports["stock"], shared=None)
    _issue(app, at=midnight + timedelta(days=1), report_id=reports["stock"], shared=False)
    with session_scope(app.state.session_factory) as db:
        record_viewer_events(
            session=db,
            events=[ReportedEvent("refreshed", "margin", reports["sales"])] * 3,
            day=day,
        )
        record_viewer_events(
            session=db, events=[ReportedEvent("refreshed", "wake", reports["sales"])], day=day
        )
        one_day = viewer_health(
            session=db, first_day=day, last_day=day, now=midnight + timedelta(days=3)
        )
        window = viewer_health(
            session=db,
            first_day=day - timedelta(days=1),
            last_day=day + timedelta(days=1),
            now=midnight + timedelta(days=1, hours=6),
        )

    totals = one_day.totals
    assert (totals.handed_out, totals.minted, totals.shared) == (4, 2, 2)
    assert dict(totals.refreshes) == {"margin": 3, "wake": 1}
    assert one_day.reasons == ["margin", "wake"]
    by_report = {row.report_id: row for row in one_day.reports}
    assert by_report[reports["sales"]].name == "Sales Overview"
    assert by_report[reports["sales"]].figures.refresh_total == 4
    assert (
        by_report[reports["sales"]].figures.handed_out,
        by_report[reports["sales"]].figures.minted,
    ) == (2, 1)
    # An entry that does not say whether it was shared counts as minted.
    assert (
        by_report[reports["stock"]].figures.handed_out,
        by_report[reports["stock"]].figures.minted,
    ) == (2, 1)
    assert one_day.days[0].minted_per_hour == pytest.approx(2 / 24)

    assert [row.day for row in window.days] == [
        day + timedelta(days=1),
        day,
        day - timedelta(days=1),
    ]
    per_day = {row.day: (row.figures.handed_out, row.figures.minted) for row in window.days}
    assert per_day == {
        day - timedelta(days=1): (1, 1),
        day: (4, 2),
        day + timedelta(days=1): (1, 1),
    }
    # Today has had six hours so far: its rate is per hour gone by, not per 24.
    assert window.days[0].minted_per_hour == pytest.approx(1 / 6)


def test_rows_of_reports_gone_from_the_catalogue_keep_their_id(app: FastAPI) -> None:
    day = date(2025, 3, 10)
    _add_report(app, SALES_ID, "Sales Overview")
    with session_scope(app.state.session_factory) as db:
        record_viewer_events(
            session=db, events=[ReportedEvent("refreshed", "margin", SALES_ID)], day=day
        )
        db.delete(db.get(Report, SALES_ID))
        db.flush()
        result = viewer_health(session=db, first_day=day, last_day=day)
    assert [(row.report_id, row.name) for row in result.reports] == [(SALES_ID, None)]


# --- the page ----------------------------------------------------------------------------------


@pytest.fixture
def admin(make_user: MakeUser, login_as: LoginAs) -> TestClient:
    return login_as(make_user("admin@example.com", role="admin"))


def test_the_page_is_in_the_admin_menu(admin: TestClient) -> None:
    assert ("Viewer health", "/admin/viewers") in links(admin.get("/admin/users").text)


def test_an_empty_page_says_what_it_means(admin: TestClient) -> None:
    page = admin.get("/admin/viewers")
    assert page.status_code == 200
    today = datetime.now(UTC).date()
    assert f"{(today - timedelta(days=6)).isoformat()} to {today.isoformat()} (UTC)" in page.text
    assert "Nothing in these days" in page.text
    assert "nobody had a report open, not that something went wrong" in page.text
    one_day = admin.get("/admin/viewers", params={"day": "2024-02-29"})
    assert "Nothing on this day" in one_day.text
    assert form_fields(one_day.text)["day"].value == "2024-02-29"


def test_the_page_shows_totals_per_day_and_per_report(
    app: FastAPI, admin: TestClient, reports: dict[str, str]
) -> None:
    now = datetime.now(UTC)
    _issue(app, at=now, report_id=reports["sales"], shared=False)
    _issue(app, at=now, report_id=reports["sales"], shared=True)
    _issue(app, at=now, report_id=reports["sales"], shared=True)
    batch = [
        {"type": "refreshed", "reason": "margin", "reportId": reports["sales"]},
        {"type": "refreshed", "reason": "margin", "reportId": reports["sales"]},
        {"type": "refreshed", "reason": "interaction", "reportId": reports["stock"]},
        {"type": "refreshFailed", "reason": "margin", "reportId": reports["sales"]},
        {"type": "expired", "reason": "clock", "reportId": reports["stock"]},
        {"type": "recovered", "reason": "recovery", "reportId": reports["stock"]},
    ]
    assert _post(admin, batch).status_code == 204
    app.state.token_tally.flush()  # what the tally's loop does every few seconds

    page = admin.get("/admin/viewers")
    assert page.status_code == 200
    text = page.text
    assert "Nothing in these days" not in text
    rows = table_rows(text)
    for row in (
        ["Token refreshes in open reports", "3"],
        ["Margin (before expiry)", "2"],  # the reason's words; its code is the cell's title
        ["Interaction", "1"],
        ["Refresh failures", "1"],
        ["Expiry screens seen", "1"],
        ["Recoveries without a reload", "1"],
        ["Tokens handed out", "3"],
        ["freshly minted (GenerateToken calls)", "1"],
    ):
        assert row in rows, row
    codes = {cell.attrs.get("title") for cell in elements(text, "td") if cell.attrs.get("title")}
    assert {"margin", "interaction"} <= codes
    page_links = links(text)
    assert ("Sales Overview", f"/admin/reports/{reports['sales']}") in page_links
    assert ("Stock Levels", f"/admin/reports/{reports['stock']}") in page_links
    assert f"/admin/viewers?day={now.date().isoformat()}" in [href for _t, href in page_links]
    # The most refreshed report comes first.
    assert text.index("Sales Overview") < text.index("Stock Levels")

    one_day = admin.get("/admin/viewers/rows", params={"day": now.date().isoformat()})
    assert one_day.status_code == 200
    assert elements(one_day.text, "html") == []
    assert ["Token refreshes in open reports", "3"] in table_rows(one_day.text)
    assert "GenerateToken calls per hour:" in one_day.text
    other_day = admin.get("/admin/viewers/rows", params={"day": "2020-01-01"})
    assert "Nothing on this day" in other_day.text


@pytest.mark.parametrize("day", ["yesterday", "2025-02-30", "0001-01-01", "99999-01-01"])
def test_a_bad_day_is_refused_with_the_reason(admin: TestClient, day: str) -> None:
    page = admin.get("/admin/viewers", params={"day": day})
    assert page.status_code == 400
    assert "Give a date like 2025-01-31." in page.text
    partial = admin.get("/admin/viewers/rows", params={"day": day})
    assert partial.status_code == 400
    assert "Give a date like 2025-01-31." in partial.text
    assert elements(partial.text, "html") == []


def test_the_page_speaks_portuguese(make_user: MakeUser, login_as: LoginAs) -> None:
    client = login_as(make_user("ana@example.com", role="admin", language="pt_BR"))
    page = client.get("/admin/viewers")
    assert "Saúde dos visualizadores" in page.text
    assert "Nada nestes dias" in page.text


def test_viewer_health_module_knows_every_reason_the_keeper_sends() -> None:
    for reason in ("margin", "interaction", "timed", "wake", "recovery", "clock"):
        assert health_module.stored_reason(reason) == reason
    assert health_module.stored_reason("") == ""
    assert health_module.stored_reason(None) == ""
    assert health_module.stored_reason("something-new") == "other"


# --- open now -----------------------------------------------------------------------------------


def test_the_registry_counts_a_stream_while_it_is_open() -> None:
    clock = [datetime(2025, 3, 1, 9, 0, tzinfo=UTC)]
    registry = health_module.OpenViewers(clock=lambda: clock[0])
    with registry.watching(user_id=7, user_email="tv@example.com", report_ids=["a", "b", "a"]):
        (stream,) = registry.streams()
        assert stream.report_ids == ("a", "b")
        assert stream.since == clock[0]
    assert registry.streams() == []

    registry.note_token(user_id=7, report_id="a", expiration="2025-03-01T10:00:00Z")
    token = registry.last_token(7, "a")
    assert token is not None and token.expiration == datetime(2025, 3, 1, 10, tzinfo=UTC)
    assert registry.last_token(7, "b") is None
    clock[0] += health_module.LAST_TOKEN_MEMORY
    assert registry.last_token(7, "a") is None  # too old to say anything about an open viewer


def test_old_tokens_are_pruned_once_many_are_kept() -> None:
    clock = [datetime(2025, 3, 1, 9, 0, tzinfo=UTC)]
    registry = health_module.OpenViewers(clock=lambda: clock[0])
    for user in range(health_module.LAST_TOKEN_PRUNE_AT - 1):
        registry.note_token(user_id=user, report_id="r", expiration="not a date")
    clock[0] += health_module.LAST_TOKEN_MEMORY
    registry.note_token(user_id=-1, report_id="r", expiration="2025-03-01T12:00:00+00:00")
    assert registry._tokens.keys() == {(-1, "r")}  # noqa: SLF001


def test_open_now_names_reports_and_ages_tokens(app: FastAPI, reports: dict[str, str]) -> None:
    start = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
    clock = [start]
    registry = health_module.OpenViewers(clock=lambda: clock[0])
    with (
        registry.watching(user_id=1, user_email="a@example.com", report_ids=[SALES_ID, "unknown"]),
        session_scope(app.state.session_factory) as db,
    ):
        clock[0] = start + timedelta(minutes=5)
        registry.note_token(user_id=1, report_id=SALES_ID, expiration="2025-03-01T10:05:00Z")
        (row,) = health_module.open_now(
            session=db, open_viewers=registry, now=start + timedelta(minutes=20)
        )
        assert (row.user_email, row.report_name, row.since) == (
            "a@example.com",
            "Sales Overview",
            start,
        )
        assert row.watching_seconds == 20 * 60
        assert row.token_age_seconds == 15 * 60
        assert row.token_left_seconds == 45 * 60
        (late,) = health_module.open_now(
            session=db, open_viewers=registry, now=start + timedelta(minutes=70)
        )
        assert late.token_left_seconds is not None and late.token_left_seconds < 0


def test_durations_read_as_a_person_says_them() -> None:
    assert health_module.duration_words(59) == "under a minute"
    assert health_module.duration_words(12 * 60 + 30) == "12 min"
    assert health_module.duration_words(65 * 60) == "1 h 05 min"


def test_the_page_lists_who_is_watching_now(
    app: FastAPI, admin: TestClient, reports: dict[str, str]
) -> None:
    empty = admin.get("/admin/viewers")
    assert "Nobody has a report open on this instance right now." in empty.text
    tally = app.state.token_tally
    with tally.open_viewers.watching(
        user_id=42, user_email="wall@example.com", report_ids=[SALES_ID, STOCK_ID]
    ):
        expiration = (datetime.now(UTC) + timedelta(minutes=50)).isoformat()
        tally.note(
            user_id=42,
            user_email="wall@example.com",
            report_id=SALES_ID,
            token_id="t1",
            shared=False,
            expiration=expiration,
            reason="load",
        )
        for page in (admin.get("/admin/viewers"), admin.get("/admin/viewers/open")):
            assert page.status_code == 200
            rows = table_rows(page.text)
            assert ["wall@example.com", "Sales Overview"] == rows[1][:2]
            sales = next(row for row in rows if row[1] == "Sales Overview")
            assert sales[3] == "under a minute ago"
            assert sales[4] in ("in 49 min", "in 50 min")
            stock = next(row for row in rows if row[1] == "Stock Levels")
            assert stock[3:] == ["—", "—"]
            assert ("wall@example.com", "/admin/users/42") in links(page.text)
            assert "this portal instance" in page.text
        partial = admin.get("/admin/viewers/open").text
        assert "<html" not in partial and 'hx-get="/admin/viewers/open"' in partial
    assert "Nobody has a report open" in admin.get("/admin/viewers/open").text


def test_an_open_push_stream_is_watching_until_it_closes(
    app: FastAPI, make_user: MakeUser, grant: Grant, reports: dict[str, str]
) -> None:
    user = make_user("tv@example.com")
    grant(SALES_ID, user=user)
    with session_scope(app.state.session_factory) as db:
        row = db.get(User, user.id)
        assert row is not None
        cookie = start_session(session=db, user=row).cookie_value
    registry = app.state.token_tally.open_viewers
    seen: list[tuple[str, tuple[str, ...]]] = []

    def registered(kinds: list[str]) -> bool:
        streams = registry.streams()
        if "hello" in kinds and streams:
            seen.extend((stream.user_email, stream.report_ids) for stream in streams)
            return True
        return False

    with serve_in_thread(app) as base_url:
        watch_events(base_url, cookie, until=registered, report_ids=[SALES_ID])
        deadline = datetime.now(UTC) + timedelta(seconds=10)
        while registry.streams() and datetime.now(UTC) < deadline:
            threading.Event().wait(0.05)
        assert registry.streams() == []
    assert seen == [("tv@example.com", (SALES_ID,))]


def test_open_now_speaks_portuguese(make_user: MakeUser, login_as: LoginAs) -> None:
    client = login_as(make_user("ana@example.com", role="admin", language="pt_BR"))
    page = client.get("/admin/viewers").text
    assert "Abertos agora" in page
    assert "Ninguém está com um relatório aberto nesta instância agora." in page


def test_with_redis_every_instance_lists_every_viewer(redis_url: str) -> None:
    prefix = f"test-open-now-{uuid.uuid4().hex}"
    first = health_module.OpenViewers(redis_url=redis_url, key_prefix=prefix)
    second = health_module.OpenViewers(redis_url=redis_url, key_prefix=prefix)
    first.instance, second.instance = "one", "two"
    with (
        first.watching(user_id=1, user_email="a@example.com", report_ids=["r1"]),
        second.watching(user_id=2, user_email="b@example.com", report_ids=["r2"]),
    ):
        second.note_token(user_id=2, report_id="r2", expiration="2025-03-01T10:00:00Z")
        second.share()
        watchers = first.gather()
        assert watchers.shared and watchers.instances == 2
        assert sorted((s.user_email, s.report_ids) for s in watchers.streams) == [
            ("a@example.com", ("r1",)),
            ("b@example.com", ("r2",)),
        ]
        token = watchers.tokens[(2, "r2")]
        assert token.expiration == datetime(2025, 3, 1, 10, tzinfo=UTC)
    # Closed streams leave the shared list with the next share.
    second.share()
    assert [s.user_email for s in first.gather().streams] == []


def test_without_an_answer_from_redis_the_instance_lists_its_own() -> None:
    port = free_port()
    registry = health_module.OpenViewers(redis_url=f"redis://127.0.0.1:{port}/0")
    with registry.watching(user_id=1, user_email="a@example.com", report_ids=["r1"]):
        watchers = registry.gather()
    assert not watchers.shared
    assert [s.user_email for s in watchers.streams] == ["a@example.com"]
