"""The audit log page: newest first, filters, pages, and a partial for htmx."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from embedportal.access.audit_log import EXPORT_BATCH
from embedportal.db.models import AuditEntry, Report, User
from embedportal.db.session import session_scope
from tests.support.html import elements, form_fields, links
from tests.support.portal import LoginAs, MakeUser


@pytest.fixture
def admin(make_user: MakeUser, login_as: LoginAs) -> User:
    user = make_user("admin@example.com", role="admin")
    login_as(user)
    return user


def _seed(app: FastAPI, count: int, start: datetime, action: str, actor: str) -> None:
    with session_scope(app.state.session_factory) as db:
        for index in range(count):
            db.add(
                AuditEntry(
                    at=start + timedelta(minutes=index),
                    action=action,
                    actor_email=actor,
                    detail={"n": index},
                )
            )


def test_newest_first_with_people_words(client: TestClient, admin: User) -> None:
    page = client.get("/admin/audit")
    assert page.status_code == 200
    text = page.text
    # Creating the admin, then signing in: the sign-in is listed first.
    assert text.index("Signed in") < text.index("User created")
    assert "When (UTC)" in text


def test_filters(client: TestClient, admin: User, app: FastAPI) -> None:
    _seed(app, 2, datetime(2024, 5, 1, 10, tzinfo=UTC), "report.opened", "ana@example.com")
    _seed(app, 1, datetime(2024, 6, 1, 10, tzinfo=UTC), "report.opened", "bob@example.com")
    by_action = client.get("/admin/audit", params={"action": "report.opened"})
    assert "3 entries, newest first." in by_action.text
    assert form_fields(by_action.text)["action"].value == "report.opened"
    by_actor = client.get("/admin/audit/rows", params={"actor": "BOB"})
    assert elements(by_actor.text, "html") == [] and "1 entry, newest first." in by_actor.text
    by_days = client.get("/admin/audit", params={"since": "2024-05-01", "until": "2024-05-31"})
    assert "2 entries, newest first." in by_days.text
    assert form_fields(by_days.text)["since"].value == "2024-05-01"
    nothing = client.get("/admin/audit", params={"actor": "nobody-at-all"})
    assert "Nothing recorded matches these filters." in nothing.text


@pytest.mark.parametrize(
    "params",
    [
        {"since": "yesterday"},
        {"until": "2024-02-30"},
        {"since": "0001-01-01"},
        {"until": "9999-12-31"},
        {"since": "2024-06-02", "until": "2024-06-01"},
    ],
)
def test_bad_dates_are_named_not_crashed_on(
    client: TestClient, admin: User, params: dict[str, str]
) -> None:
    for path in ("/admin/audit", "/admin/audit/rows"):
        response = client.get(path, params=params)
        assert response.status_code == 400
        assert "Give a date like 2025-01-31." in response.text or "comes before" in response.text


def test_pages(client: TestClient, admin: User, app: FastAPI) -> None:
    _seed(app, 60, datetime(2024, 1, 1, tzinfo=UTC), "report.opened", "ana@example.com")
    first = client.get("/admin/audit", params={"action": "report.opened"})
    assert "Page 1 of 2" in first.text
    assert "/admin/audit?action=report.opened&page=2" in [href for _t, href in links(first.text)]
    second = client.get("/admin/audit", params={"action": "report.opened", "page": "2"})
    assert "Page 2 of 2" in second.text and "Jan 1, 2024, 12:00:00" in second.text
    assert client.get("/admin/audit", params={"page": "-5"}).status_code == 200


def test_targets_show_by_name_with_a_link(client: TestClient, admin: User, app: FastAPI) -> None:
    with session_scope(app.state.session_factory) as db:
        db.add_all(
            [
                Report(
                    id="r-42",
                    workspace_id="w",
                    dataset_id="d",
                    name="Sales Pulse",
                    embed_url="https://x",
                ),
                AuditEntry(action="report.granted", target_type="report", target_id="r-42"),
                AuditEntry(action="report.revoked", target_type="report", target_id="r-gone"),
            ]
        )
    page = client.get("/admin/audit", params={"action": "report.granted"})
    assert ("Sales Pulse", "/admin/reports/r-42") in links(page.text)
    assert "r-42" not in [text for text, _href in links(page.text)]
    gone = client.get("/admin/audit", params={"action": "report.revoked"})
    assert "#r-gone" in gone.text  # deleted since: its id, nothing to link to


def test_the_filtered_log_downloads_as_csv_and_the_download_is_audited(
    client: TestClient, admin: User, app: FastAPI
) -> None:
    _seed(app, 3, datetime(2024, 5, 1, 10, tzinfo=UTC), "report.opened", "ana@example.com")
    page = client.get("/admin/audit", params={"actor": "ana"})
    assert "/admin/audit/export.csv?actor=ana" in [href for _text, href in links(page.text)]
    answer = client.get("/admin/audit/export.csv", params={"actor": "ana"})
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/csv")
    assert "attachment" in answer.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(answer.content.decode("utf-8-sig"))))
    assert rows[0][0] == "time" and len(rows) == 1 + 3
    assert {row[2] for row in rows[1:]} == {"ana@example.com"}
    log = client.get("/admin/audit", params={"action": "audit.exported"})
    assert "Audit log downloaded as CSV" in log.text


def test_a_long_export_streams_in_batches_newest_first_each_entry_once(
    app: FastAPI, client: TestClient, admin: User
) -> None:
    # More than two batches, and entries sharing one moment across a batch's edge.
    same_moment = datetime(2024, 6, 1, 12, tzinfo=UTC)
    with session_scope(app.state.session_factory) as db:
        for index in range(EXPORT_BATCH * 2 + 7):
            at = (
                same_moment
                if EXPORT_BATCH - 3 <= index <= EXPORT_BATCH + 3
                else (same_moment - timedelta(minutes=index))
            )
            db.add(
                AuditEntry(
                    at=at,
                    action="report.opened",
                    actor_email="bulk@example.com",
                    detail={"n": index},
                )
            )
    answer = client.get("/admin/audit/export.csv", params={"actor": "bulk"})
    assert answer.status_code == 200
    assert "content-length" not in answer.headers  # streamed, not built whole
    rows = list(csv.reader(io.StringIO(answer.content.decode("utf-8-sig"))))[1:]
    details = [row[8] for row in rows]
    assert len(details) == len(set(details)) == EXPORT_BATCH * 2 + 7
    times = [row[0] for row in rows]
    assert times == sorted(times, reverse=True)


def test_a_bad_date_in_the_export_is_a_clear_400(client: TestClient, admin: User) -> None:
    answer = client.get("/admin/audit/export.csv", params={"since": "2024-13-45"})
    assert answer.status_code == 400
    assert "Give a date like 2025-01-31." in answer.text
