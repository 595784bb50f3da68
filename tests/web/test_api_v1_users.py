"""/api/v1/users: list, read, create (idempotent), change, block, delete, through the same
services as Admin → Users, audited with the key's name."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from embedportal.db.models import AuditEntry, OutboxMail, Report, ReportGrant, User, WebSession
from embedportal.db.session import session_scope
from embedportal.web.deps import get_push_hub
from embedportal.web.push import PushEvent
from tests.support.api_keys import bearer, make_api_key
from tests.support.portal import LoginAs, MakeUser, a_report


class RecordingHub:
    def __init__(self) -> None:
        self.events: list[PushEvent] = []

    def publish(self, event: PushEvent) -> None:
        self.events.append(event)

    def told(self) -> list[int | None]:
        return [event.user_id for event in self.events if event.kind == "access"]


@pytest.fixture
def hub(app: FastAPI) -> Iterator[RecordingHub]:
    recording = RecordingHub()
    app.dependency_overrides[get_push_hub] = lambda: recording
    yield recording
    app.dependency_overrides.pop(get_push_hub, None)


@pytest.fixture
def api(app: FastAPI, client: TestClient) -> TestClient:
    """The client with a key holding every users and RLS scope."""
    secret = make_api_key(app, ["users:read", "users:write", "rls:write"], name="CRM")
    client.headers.update(bearer(secret))
    return client


def _entries(app: FastAPI, action: str) -> list[AuditEntry]:
    with session_scope(app.state.session_factory) as db:
        entries = list(db.scalars(select(AuditEntry).where(AuditEntry.action == action)))
        db.expunge_all()
        return entries


def test_the_list_pages_and_filters(api: TestClient, make_user: MakeUser) -> None:
    for number in range(5):
        make_user(f"user{number}@example.com", name=f"Person {number}")
    make_user("blocked@example.com", is_blocked=True)
    page = api.get("/api/v1/users", params={"per_page": 2, "page": 2}).json()
    assert page["total"] == 6
    assert (page["page"], page["per_page"]) == (2, 2)
    # By e-mail: blocked@, user0@ on the first page.
    assert [user["email"] for user in page["items"]] == ["user1@example.com", "user2@example.com"]
    found = api.get("/api/v1/users", params={"q": "PERSON 3"}).json()
    assert [user["email"] for user in found["items"]] == ["user3@example.com"]
    blocked = api.get("/api/v1/users", params={"blocked": "true"}).json()
    assert [user["email"] for user in blocked["items"]] == ["blocked@example.com"]
    assert api.get("/api/v1/users", params={"blocked": "false"}).json()["total"] == 5


@pytest.mark.parametrize(
    "params",
    [{"per_page": "0"}, {"per_page": "201"}, {"page": "0"}, {"page": "x"}, {"blocked": "maybe"}],
)
def test_bad_paging_is_a_422_with_the_reason(api: TestClient, params: dict[str, str]) -> None:
    response = api.get("/api/v1/users", params=params)
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "InvalidRequest"
    assert body["message"]
    assert "detail" not in body


def test_one_user_or_404(api: TestClient, make_user: MakeUser) -> None:
    user = make_user("ana@example.com", name="Ana", rls_roles=["North"])
    body = api.get(f"/api/v1/users/{user.id}").json()
    assert body["email"] == "ana@example.com"
    assert body["rls_roles"] == ["North"]
    assert body["blocked"] is False
    missing = api.get("/api/v1/users/999999")
    assert missing.status_code == 404
    assert missing.json() == {"code": "NotFound", "message": "There is no such user."}
    assert api.get("/api/v1/users/99999999999").status_code == 422


def test_create_is_idempotent_by_email(app: FastAPI, api: TestClient) -> None:
    created = api.post(
        "/api/v1/users",
        json={"email": "Ana@Example.com", "name": "Ana", "language": "pt_BR", "rls_roles": ["N"]},
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert (body["email"], body["language"], body["rls_roles"]) == (
        "ana@example.com",
        "pt_BR",
        ["N"],
    )
    again = api.post("/api/v1/users", json={"email": "ana@example.com", "name": "Other"})
    assert again.status_code == 200
    assert again.json()["id"] == body["id"]
    assert again.json()["name"] == "Ana"
    entries = _entries(app, "user.created")
    assert len(entries) == 1
    assert entries[0].actor_user_id is None
    assert entries[0].detail["api_key"] == "CRM"


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"email": "not-an-address"}, "not a valid e-mail"),
        ({"email": "a@example.com", "role": "owner"}, "administrator or viewer"),
        ({"email": "a@example.com", "language": "xx"}, "languages"),
        ({"email": "a@example.com", "rls_username": "has space"}, "spaces"),
        ({"email": "a@example.com", "rls_roles": ["a,b"]}, "comma"),
    ],
)
def test_refused_input_is_a_400_with_the_reason(
    app: FastAPI, api: TestClient, body: dict[str, object], words: str
) -> None:
    response = api.post("/api/v1/users", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "InvalidInput"
    assert words in response.json()["message"]
    with session_scope(app.state.session_factory) as db:
        assert db.scalar(select(User).where(User.email == "a@example.com")) is None


def test_unknown_fields_and_wrong_types_are_422(api: TestClient) -> None:
    response = api.post("/api/v1/users", json={"email": "a@example.com", "colour": "red"})
    assert response.status_code == 422
    assert "colour" in response.json()["message"]
    assert api.post("/api/v1/users", json={"email": 5}).status_code == 422
    assert api.post("/api/v1/users", content=b"{not json").status_code == 422


def test_rls_settings_need_the_rls_scope(app: FastAPI, client: TestClient) -> None:
    secret = make_api_key(app, ["users:read", "users:write"])
    refused = client.post(
        "/api/v1/users",
        headers=bearer(secret),
        json={"email": "a@example.com", "rls_roles": ["North"]},
    )
    assert refused.status_code == 403
    assert "rls:write" in refused.json()["message"]
    created = client.post("/api/v1/users", headers=bearer(secret), json={"email": "a@example.com"})
    assert created.status_code == 201
    user_id = created.json()["id"]
    patch = client.patch(
        f"/api/v1/users/{user_id}", headers=bearer(secret), json={"rls_username": "a"}
    )
    assert patch.status_code == 403
    renamed = client.patch(f"/api/v1/users/{user_id}", headers=bearer(secret), json={"name": "A"})
    assert renamed.status_code == 200
    assert renamed.json()["name"] == "A"


def test_update_changes_only_what_is_sent_and_tells_open_viewers(
    app: FastAPI, api: TestClient, make_user: MakeUser, hub: RecordingHub
) -> None:
    user = make_user("ana@example.com", name="Ana", rls_roles=["North"], keeps_capacity_on=True)
    renamed = api.patch(f"/api/v1/users/{user.id}", json={"name": "Ana Souza"})
    assert renamed.status_code == 200
    body = renamed.json()
    assert (body["name"], body["rls_roles"], body["keeps_capacity_on"]) == (
        "Ana Souza",
        ["North"],
        True,
    )
    # A name is no access change; a role is.
    assert hub.told() == []
    promoted = api.patch(
        f"/api/v1/users/{user.id}", json={"role": "admin", "language": "pt_BR", "rls_roles": []}
    )
    assert promoted.status_code == 200, promoted.text
    assert (promoted.json()["role"], promoted.json()["language"]) == ("admin", "pt_BR")
    assert promoted.json()["rls_roles"] == []
    assert hub.told() == [user.id]
    updates = _entries(app, "user.updated")
    assert {entry.detail["api_key"] for entry in updates} == {"CRM"}
    assert updates[-1].detail["changes"]["role"] == ["viewer", "admin"]
    assert api.patch(f"/api/v1/users/{user.id}", json={"language": None}).json()["language"] is None
    refused = api.patch(f"/api/v1/users/{user.id}", json={"email": "nope"})
    assert refused.status_code == 400
    assert refused.json()["code"] == "InvalidInput"


def test_changed_rls_roles_are_tried_first_and_unchecked_without_power_bi(
    app: FastAPI, api: TestClient, make_user: MakeUser
) -> None:
    """This app has no Power BI connection: the try-out cannot run, and says so, unless the
    caller asks to save without it (as the admin form's "Save without the check")."""
    user = make_user("ana@example.com")
    with session_scope(app.state.session_factory) as db:
        report: Report = a_report("6f7c1c37-0000-4000-8000-0000000000a1")
        report.rls_required = True
        db.add(report)
        db.flush()
        db.add(ReportGrant(report_id=report.id, user_id=user.id, rls_roles=[]))
    refused = api.patch(f"/api/v1/users/{user.id}", json={"rls_roles": ["North"]})
    assert refused.status_code == 400, refused.text
    assert refused.json()["code"] == "RlsCheckUnavailable"
    saved = api.patch(
        f"/api/v1/users/{user.id}", json={"rls_roles": ["North"], "save_unchecked": True}
    )
    assert saved.status_code == 200, saved.text
    assert saved.json()["rls_roles"] == ["North"]


def test_block_signs_out_and_tells_viewers_unblock_lets_back(
    app: FastAPI,
    api: TestClient,
    make_user: MakeUser,
    login_as: LoginAs,
    hub: RecordingHub,
) -> None:
    user = make_user("ana@example.com")
    headers = dict(api.headers)
    login_as(user)
    api.headers.update(headers)
    blocked = api.post(f"/api/v1/users/{user.id}/block")
    assert blocked.status_code == 200
    assert blocked.json()["blocked"] is True
    assert hub.told() == [user.id]
    with session_scope(app.state.session_factory) as db:
        assert db.scalars(select(WebSession).where(WebSession.user_id == user.id)).all() == []
    unblocked = api.post(f"/api/v1/users/{user.id}/unblock")
    assert unblocked.json()["blocked"] is False
    actions = [
        entry.detail["api_key"]
        for action in ("user.blocked", "user.unblocked")
        for entry in _entries(app, action)
    ]
    assert actions == ["CRM", "CRM"]
    assert api.post("/api/v1/users/999999/block").status_code == 404


def test_delete(app: FastAPI, api: TestClient, make_user: MakeUser, hub: RecordingHub) -> None:
    user = make_user("ana@example.com")
    response = api.delete(f"/api/v1/users/{user.id}")
    assert response.status_code == 204
    assert hub.told() == [user.id]
    assert api.get(f"/api/v1/users/{user.id}").status_code == 404
    assert api.delete(f"/api/v1/users/{user.id}").status_code == 404
    (entry,) = _entries(app, "user.deleted")
    assert entry.detail == {"api_key": "CRM", "email": "ana@example.com", "role": "viewer"}


def test_the_audit_page_names_the_key(
    app: FastAPI, api: TestClient, make_user: MakeUser, login_as: LoginAs
) -> None:
    assert api.post("/api/v1/users", json={"email": "ana@example.com"}).status_code == 201
    api.headers.pop("Authorization")
    login_as(make_user("admin@example.com", role="admin"))
    page = api.get("/admin/audit", params={"action": "user.created"})
    assert "API key “CRM”" in page.text


def test_create_can_invite_the_user_to_choose_a_password(app: FastAPI, api: TestClient) -> None:
    created = api.post("/api/v1/users", json={"email": "ana@example.com", "invite": True})
    assert created.status_code == 201, created.text
    with session_scope(app.state.session_factory) as db:
        (mail,) = db.scalars(select(OutboxMail)).all()
        assert mail.recipient == "ana@example.com"
    (sent,) = _entries(app, "user.invitation_sent")
    assert sent.detail["api_key"] == "CRM"
