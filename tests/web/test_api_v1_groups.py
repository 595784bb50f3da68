"""/api/v1/groups: list, read, create (idempotent by name), delete, members, through the same
services as Admin → Groups, audited with the key's name, members told of changes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from embedportal.db.models import AuditEntry
from embedportal.db.session import session_scope
from embedportal.web.deps import get_push_hub
from tests.support.api_keys import bearer, make_api_key
from tests.support.portal import MakeUser
from tests.web.test_api_v1_users import RecordingHub


@pytest.fixture
def hub(app: FastAPI) -> Iterator[RecordingHub]:
    recording = RecordingHub()
    app.dependency_overrides[get_push_hub] = lambda: recording
    yield recording
    app.dependency_overrides.pop(get_push_hub, None)


@pytest.fixture
def api(app: FastAPI, client: TestClient) -> TestClient:
    client.headers.update(bearer(make_api_key(app, ["groups:read", "groups:write"], name="CRM")))
    return client


def test_create_is_idempotent_by_name_and_listed(app: FastAPI, api: TestClient) -> None:
    created = api.post("/api/v1/groups", json={"name": " Customer  Acme ", "description": "x"})
    assert created.status_code == 201, created.text
    body = created.json()
    assert (body["name"], body["member_count"]) == ("Customer Acme", 0)
    again = api.post("/api/v1/groups", json={"name": "customer acme"})
    assert again.status_code == 200
    assert again.json()["id"] == body["id"]
    listed = api.get("/api/v1/groups").json()
    assert [group["name"] for group in listed["items"]] == ["Customer Acme"]
    assert api.get(f"/api/v1/groups/{body['id']}").json()["description"] == "x"
    assert api.get("/api/v1/groups/999999").json()["code"] == "NotFound"
    with session_scope(app.state.session_factory) as db:
        (entry,) = db.scalars(select(AuditEntry).where(AuditEntry.action == "group.created"))
        assert entry.detail["api_key"] == "CRM"


@pytest.mark.parametrize(
    "body", [{"name": " "}, {"name": "x" * 201}, {"name": "A", "description": "d" * 2001}]
)
def test_refused_groups_say_why(api: TestClient, body: dict[str, str]) -> None:
    response = api.post("/api/v1/groups", json=body)
    assert response.status_code == 400
    assert response.json()["code"] == "InvalidInput"


def test_members_added_by_id_or_email_and_removed(
    app: FastAPI, api: TestClient, make_user: MakeUser, hub: RecordingHub
) -> None:
    ana, bruno = make_user("ana@example.com"), make_user("bruno@example.com")
    group_id = api.post("/api/v1/groups", json={"name": "Acme"}).json()["id"]
    members = f"/api/v1/groups/{group_id}/members"
    assert api.post(members, json={"user_id": ana.id}).json()["email"] == "ana@example.com"
    assert api.post(members, json={"email": "BRUNO@example.com"}).json()["id"] == bruno.id
    # Again: nothing changes.
    assert api.post(members, json={"user_id": ana.id}).status_code == 200
    listed = api.get(members).json()
    assert [member["email"] for member in listed["items"]] == [
        "ana@example.com",
        "bruno@example.com",
    ]
    assert api.get(f"/api/v1/groups/{group_id}").json()["member_count"] == 2
    assert hub.told() == [ana.id, bruno.id, ana.id]
    assert api.delete(f"{members}/{ana.id}").status_code == 204
    assert [member["id"] for member in api.get(members).json()["items"]] == [bruno.id]
    unknown = api.post(members, json={"email": "nobody@example.com"})
    assert unknown.status_code == 400
    assert "nobody@example.com" in unknown.json()["message"]
    assert api.post(members, json={"user_id": 999999}).status_code == 404
    assert api.post(members, json={}).status_code == 422
    assert api.post(members, json={"user_id": ana.id, "email": "a@example.com"}).status_code == 422
    assert api.delete(f"{members}/999999").status_code == 404
    with session_scope(app.state.session_factory) as db:
        actions = [
            entry.detail["api_key"]
            for entry in db.scalars(select(AuditEntry).where(AuditEntry.action.like("group.%")))
        ]
    assert set(actions) == {"CRM"}


def test_delete_tells_the_former_members(
    api: TestClient, make_user: MakeUser, hub: RecordingHub
) -> None:
    ana = make_user("ana@example.com")
    group_id = api.post("/api/v1/groups", json={"name": "Acme"}).json()["id"]
    api.post(f"/api/v1/groups/{group_id}/members", json={"user_id": ana.id})
    hub.events.clear()
    assert api.delete(f"/api/v1/groups/{group_id}").status_code == 204
    assert hub.told() == [ana.id]
    assert api.delete(f"/api/v1/groups/{group_id}").status_code == 404


def test_reading_needs_groups_read(app: FastAPI, client: TestClient) -> None:
    secret = make_api_key(app, ["groups:write"])
    response = client.get("/api/v1/groups", headers=bearer(secret))
    assert response.status_code == 403
    assert "groups:read" in response.json()["message"]
