"""Admin → API keys: list, create (the secret shown once), revoke after asking."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from embedportal.db.models import ApiKey, AuditEntry, User
from embedportal.db.session import session_scope
from tests.support.api_keys import bearer
from tests.support.html import accessibility_problems, elements, form_fields, table_rows
from tests.support.portal import LoginAs, MakeUser, csrf_of


@pytest.fixture
def admin(make_user: MakeUser, login_as: LoginAs) -> User:
    user = make_user("admin@example.com", role="admin")
    login_as(user)
    return user


def _create(client: TestClient, **fields: object) -> object:
    return client.post(
        "/admin/api-keys",
        data={"csrf_token": csrf_of(client), **fields},
        follow_redirects=False,
    )


def _secret_on(html: str) -> str:
    (field,) = [
        item for item in elements(html, "input") if item.attrs.get("id") == "api-key-secret"
    ]
    value = field.attrs.get("value")
    assert value
    return value


def test_the_page_lists_keys_and_offers_every_scope(client: TestClient, admin: User) -> None:
    page = client.get("/admin/api-keys")
    assert page.status_code == 200
    assert "No API keys yet" in page.text
    fields = form_fields(page.text, action="/admin/api-keys")
    assert {"name", "scopes", "expires_on"} <= set(fields)
    assert 'value="sso:issue"' in page.text
    assert accessibility_problems(page.text) == []
    assert 'href="/admin/api-keys"' in client.get("/admin/users").text


def test_a_new_key_is_shown_once_and_works(app: FastAPI, client: TestClient, admin: User) -> None:
    response = _create(
        client, name="Billing app", scopes=["users:read", "audit:read"], expires_on="2099-12-31"
    )
    assert response.status_code == 200  # type: ignore[attr-defined]
    assert response.headers["Cache-Control"] == "no-store"  # type: ignore[attr-defined]
    secret = _secret_on(response.text)  # type: ignore[attr-defined]
    assert secret.startswith("ep_")
    assert "copy-secret.js" in response.text  # type: ignore[attr-defined]
    listing = client.get("/admin/api-keys").text
    assert secret not in listing
    rows = table_rows(listing)
    assert any("Billing app" in row[0] and "Active" in row[5] for row in rows), rows
    assert any("Never" in row[3] for row in rows)
    with session_scope(app.state.session_factory) as db:
        key = db.scalar(select(ApiKey))
        assert key is not None
        assert key.scopes == ["users:read", "audit:read"]
        assert key.expires_at is not None
        assert key.created_by_email == "admin@example.com"
    client.cookies.clear()
    assert client.get("/api/v1/users", headers=bearer(secret)).status_code == 200


def test_a_refused_key_shows_the_form_again_with_why(client: TestClient, admin: User) -> None:
    response = _create(client, name="", scopes=["nonsense"], expires_on="soon")
    assert response.status_code == 400  # type: ignore[attr-defined]
    text = response.text  # type: ignore[attr-defined]
    assert "Give the key a name" in text
    assert "Give the expiry as a date" in text
    past = _create(client, name="Old", scopes=["users:read"], expires_on="2001-01-01")
    assert past.status_code == 400  # type: ignore[attr-defined]
    assert "must be in the future" in past.text  # type: ignore[attr-defined]
    none_ticked = _create(client, name="Nothing")
    assert "Choose at least one scope" in none_ticked.text  # type: ignore[attr-defined]


def test_revoking_asks_first_then_stops_the_key(
    app: FastAPI, client: TestClient, admin: User
) -> None:
    secret = _secret_on(_create(client, name="CRM", scopes=["users:read"]).text)  # type: ignore[attr-defined]
    key_id = secret.split("_")[1]
    confirm = client.get(f"/admin/api-keys/{key_id}/revoke")
    assert confirm.status_code == 200
    assert "Revoke the API key “CRM”?" in confirm.text
    done = client.post(
        f"/admin/api-keys/{key_id}/revoke",
        data={"csrf_token": csrf_of(client)},
        follow_redirects=False,
    )
    assert done.status_code == 303
    assert done.headers["location"] == "/admin/api-keys"
    listing = client.get("/admin/api-keys").text
    assert "is revoked" in listing
    assert any("Revoked" in row[5] for row in table_rows(listing))
    again = client.post(f"/admin/api-keys/{key_id}/revoke", data={"csrf_token": csrf_of(client)})
    assert "already revoked" in again.text
    assert client.get("/admin/api-keys/ffffffffffff/revoke").status_code == 404
    assert client.get("/admin/api-keys/NOT-HEX/revoke").status_code in (400, 404, 422)
    with session_scope(app.state.session_factory) as db:
        actions = list(db.scalars(select(AuditEntry.action).where(AuditEntry.target_id == key_id)))
    assert actions == ["api_key.created", "api_key.revoked"]
    audit = client.get("/admin/audit").text
    assert "API key revoked" in audit
    assert "API key created" in audit
    client.cookies.clear()
    refused = client.get("/api/v1/users", headers=bearer(secret))
    assert refused.json()["code"] == "ApiKeyRevoked"


def test_revoking_needs_the_csrf_token(client: TestClient, admin: User) -> None:
    secret = _secret_on(_create(client, name="CRM", scopes=["users:read"]).text)  # type: ignore[attr-defined]
    key_id = secret.split("_")[1]
    assert client.post(f"/admin/api-keys/{key_id}/revoke").status_code == 403


def test_the_page_reads_in_portuguese(
    client: TestClient, make_user: MakeUser, login_as: LoginAs
) -> None:
    login_as(make_user("admin@example.com", role="admin", language="pt_BR"))
    page = client.get("/admin/api-keys").text
    assert "Chaves de API" in page
    created = _create(client, name="App", scopes=["users:read"]).text  # type: ignore[attr-defined]
    assert "Copiar" in created
