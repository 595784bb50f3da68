"""Telemetry speaks only for reports its sender may open, at a bounded rate (issue #11, item 6):
forged events for other reports are refused whole, each web session has a token bucket, and
the endpoint reads only through the read cache (no query at all once it is warm)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import event, update

from embedportal.db.models import Capacity, ReportGrant, User
from embedportal.db.session import session_scope
from embedportal.web.rate_limit import SessionBuckets
from tests.support.portal import DEFAULT_PASSWORD, Grant, LoginAs, MakeUser, a_report, csrf_of

pytestmark = pytest.mark.usefixtures("fast_password_hashing")

MINE = "11111111-0000-4000-8000-0000000000a1"
THEIRS = "11111111-0000-4000-8000-0000000000b2"
CAPACITY = "11111111-0000-4000-8000-00000000cafe"


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return {"telemetry_events_per_minute": 100}


@pytest.fixture
def reports(app: FastAPI) -> None:
    with session_scope(app.state.session_factory) as db:
        db.add(Capacity(id=CAPACITY, display_name="Capacity", sku="A1"))
        for report_id in (MINE, THEIRS):
            db.add(a_report(report_id, capacity_id=CAPACITY))


@pytest.fixture
def viewer(
    reports: None, make_user: MakeUser, login_as: LoginAs, grant: Grant
) -> Iterator[TestClient]:
    user = make_user("viewer@example.com")
    make_user("other@example.com")
    grant(MINE, user=user)
    grant(THEIRS, user="other@example.com")
    client = login_as(user)
    client.headers["X-CSRF-Token"] = csrf_of(client)
    yield client


def _post(client: TestClient, *events: dict[str, Any]) -> Any:
    return client.post("/api/telemetry", json={"events": list(events)})


def _noted(app: FastAPI) -> int:
    return int(app.state.token_tally.pending)


def test_telemetry_for_a_report_the_user_may_open_counts(app: FastAPI, viewer: TestClient) -> None:
    answer = _post(viewer, {"type": "refreshed", "reason": "margin", "reportId": MINE})
    assert answer.status_code == 204
    assert _noted(app) == 1


@pytest.mark.parametrize("report_id", [THEIRS, "22222222-0000-4000-8000-000000000000"])
def test_forged_telemetry_for_another_report_is_refused_whole(
    app: FastAPI, viewer: TestClient, report_id: str
) -> None:
    metrics_before = viewer.get("/metrics").text
    answer = _post(
        viewer,
        {"type": "refreshed", "reason": "margin", "reportId": MINE},
        {"type": "refreshFailed", "reason": "margin", "reportId": report_id},
        {"type": "interaction", "reportId": report_id},
    )
    assert answer.status_code == 403
    assert answer.json()["code"] == "Forbidden"
    assert "Nothing was counted" in answer.json()["detail"]
    assert _noted(app) == 0
    assert app.state.activity_ledger.flush() == 0
    metrics_after = viewer.get("/metrics").text
    assert _viewer_lines(metrics_after) == _viewer_lines(metrics_before)


def _viewer_lines(metrics: str) -> list[str]:
    return [line for line in metrics.splitlines() if line.startswith("embedportal_viewer_")]


def test_a_revoked_grant_refuses_the_next_batch(app: FastAPI, viewer: TestClient) -> None:
    assert _post(viewer, {"type": "refreshed", "reportId": MINE}).status_code == 204
    with session_scope(app.state.session_factory) as db:
        db.query(ReportGrant).filter(ReportGrant.report_id == MINE).delete()
    assert _post(viewer, {"type": "refreshed", "reportId": MINE}).status_code == 403


def test_a_blocked_user_is_signed_out_for_telemetry(app: FastAPI, viewer: TestClient) -> None:
    with session_scope(app.state.session_factory) as db:
        db.execute(update(User).where(User.email == "viewer@example.com").values(is_blocked=True))
    answer = _post(viewer, {"type": "refreshed", "reportId": MINE})
    assert answer.status_code == 401


def test_each_session_has_its_own_rate(app: FastAPI, viewer: TestClient, login_as: LoginAs) -> None:
    batch = [{"type": "refreshed", "reportId": MINE}] * 100
    assert _post(viewer, *batch).status_code == 204
    refused = _post(viewer, {"type": "refreshed", "reportId": MINE})
    assert refused.status_code == 429
    assert refused.json()["code"] == "TooManyRequests"
    assert int(refused.headers["retry-after"]) >= 1
    assert _noted(app) == 100
    # Another session of the same person has its own bucket.
    other = TestClient(app, base_url="http://127.0.0.1")
    with other:
        token = csrf_of(other, "/login")
        signed_in = other.post(
            "/login",
            data={"email": "viewer@example.com", "password": DEFAULT_PASSWORD, "csrf_token": token},
            follow_redirects=False,
        )
        assert signed_in.status_code == 303
        other.headers["X-CSRF-Token"] = csrf_of(other)
        assert _post(other, {"type": "refreshed", "reportId": MINE}).status_code == 204


def test_a_batch_naming_too_many_reports_is_refused(viewer: TestClient) -> None:
    events = [{"type": "refreshed", "reportId": f"report-{n}"} for n in range(13)]
    answer = _post(viewer, *events)
    assert answer.status_code == 400


def test_a_reason_with_control_characters_is_refused(viewer: TestClient) -> None:
    answer = _post(viewer, {"type": "refreshed", "reason": "a\u0000b", "reportId": MINE})
    assert answer.status_code == 422


def test_a_warm_batch_costs_no_database_query(app: FastAPI, viewer: TestClient) -> None:
    batch = ({"type": "refreshed", "reportId": MINE}, {"type": "interaction", "reportId": MINE})
    assert _post(viewer, *batch).status_code == 204  # warms the read cache
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(str(args[2]))

    event.listen(app.state.engine, "before_cursor_execute", count)
    try:
        assert _post(viewer, *batch).status_code == 204
    finally:
        event.remove(app.state.engine, "before_cursor_execute", count)
    assert statements == []


# --- the buckets themselves ------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_refills_continuously_and_says_how_long_to_wait() -> None:
    clock = Clock()
    buckets = SessionBuckets(per_minute=60, monotonic=clock)
    assert buckets.take("a", 60) == 0
    assert buckets.take("a", 1) == pytest.approx(1.0)
    clock.now += 0.5
    assert buckets.take("a", 1) == pytest.approx(0.5)
    clock.now += 0.5
    assert buckets.take("a", 1) == 0
    assert buckets.take("b", 60) == 0, "another key has a bucket of its own"
    assert buckets.take("a", 61) == float("inf"), "more than a bucket holds: never"
    clock.now += 3600
    assert buckets.take("a", 60) == 0, "never more than its capacity"
    assert buckets.take("a", 1) > 0


def test_buckets_forget_the_least_recently_used_keys() -> None:
    buckets = SessionBuckets(per_minute=10, max_keys=2, monotonic=Clock())
    for key in ("a", "b", "c"):
        buckets.take(key, 10)
    assert len(buckets) == 2
    assert buckets.take("a", 10) == 0, "forgotten: a full bucket again"


def test_waiting_is_asked_without_spending() -> None:
    clock = Clock()
    buckets = SessionBuckets(per_minute=60, capacity=2, monotonic=clock)
    assert buckets.wait("a") == 0
    buckets.take("a", 2)
    assert buckets.wait("a") == pytest.approx(1.0)
    assert buckets.wait("a") == pytest.approx(1.0), "asking spends nothing"
    clock.now += 1
    assert buckets.wait("a") == 0
    assert buckets.wait("a", 3) == float("inf")
