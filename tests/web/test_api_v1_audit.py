"""/api/v1/audit: the audit log, paged, filtered by action and days."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from embedportal.db.models import AuditEntry
from embedportal.db.session import session_scope
from tests.support.api_keys import bearer, make_api_key


@pytest.fixture
def api(app: FastAPI, client: TestClient) -> TestClient:
    client.headers.update(bearer(make_api_key(app, ["audit:read", "users:write"], name="SIEM")))
    return client


def _add(app: FastAPI, action: str, at: datetime) -> None:
    with session_scope(app.state.session_factory) as db:
        db.add(AuditEntry(action=action, at=at, detail={"n": 1}))


def test_entries_newest_first_paged_and_filtered(app: FastAPI, api: TestClient) -> None:
    _add(app, "login.succeeded", datetime(2030, 1, 1, 12, tzinfo=UTC))
    _add(app, "login.failed", datetime(2030, 1, 2, 12, tzinfo=UTC))
    _add(app, "login.succeeded", datetime(2030, 1, 3, 12, tzinfo=UTC))
    page = api.get("/api/v1/audit", params={"since": "2030-01-01", "per_page": 2}).json()
    assert page["total"] == 3
    assert [entry["action"] for entry in page["items"]] == ["login.succeeded", "login.failed"]
    assert page["items"][0]["at"].startswith("2030-01-03")
    second = api.get(
        "/api/v1/audit", params={"since": "2030-01-01", "per_page": 2, "page": 2}
    ).json()
    assert [entry["at"][:10] for entry in second["items"]] == ["2030-01-01"]
    only = api.get(
        "/api/v1/audit",
        params={"action": "login.succeeded", "since": "2030-01-02", "until": "2030-01-03"},
    ).json()
    assert [entry["at"][:10] for entry in only["items"]] == ["2030-01-03"]


def test_an_entry_made_through_a_key_names_it(api: TestClient) -> None:
    assert api.post("/api/v1/users", json={"email": "ana@example.com"}).status_code == 201
    (entry,) = api.get("/api/v1/audit", params={"action": "user.created"}).json()["items"]
    assert entry["api_key"] == "SIEM"
    assert entry["actor_user_id"] is None
    assert entry["detail"]["email"] == "ana@example.com"


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"since": "yesterday"}, 422),
        ({"until": "2030-02-30"}, 422),
        ({"until": "9999-12-31"}, 400),
        ({"since": "0001-01-01"}, 400),
        ({"since": "2030-01-02", "until": "2030-01-01"}, 400),
        ({"per_page": "500"}, 422),
    ],
)
def test_bad_filters_are_refused_with_a_reason(
    api: TestClient, params: dict[str, str], status: int
) -> None:
    response = api.get("/api/v1/audit", params=params)
    assert response.status_code == status, response.text
    assert response.json()["message"]
