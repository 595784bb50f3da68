"""Admin → Settings: the organization, the Power BI connection, the token policy."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from embedportal.access.organization import decrypt_secret, effective_connection
from embedportal.db.models import AuditEntry, Organization
from embedportal.db.session import session_scope
from tests.emulator.harness import Emulator
from tests.support.html import form_fields
from tests.support.portal import LoginAs, MakeUser, csrf_of


@pytest.fixture
def settings_overrides(emulator_settings_overrides: dict[str, object]) -> dict[str, object]:
    return emulator_settings_overrides


@pytest.fixture
def admin(make_user: MakeUser, login_as: LoginAs) -> TestClient:
    return login_as(make_user("admin@example.com", role="admin"))


VALID = {
    "name": "Acme",
    "time_zone": "Europe/Lisbon",
    "powerbi_tenant_id": "",
    "powerbi_client_id": "",
    "powerbi_client_secret": "",
    "powerbi_workspace_id": "",
    "refresh_every_minutes": "",
    "token_lifetime_minutes": "60",
    "refresh_margin_minutes": "10",
}


def save(client: TestClient, **changes: str) -> object:
    data = {**VALID, **changes, "csrf_token": csrf_of(client, "/admin/settings")}
    return client.post("/admin/settings", data=data)


def organization(app: FastAPI) -> Organization:
    with session_scope(app.state.session_factory) as db:
        found = db.get(Organization, 1)
        assert found is not None
        db.expunge(found)
        return found


def error_next_to(html: str, field: str) -> str:
    """The error a screen reader reads out with the field (its aria-describedby)."""
    return form_fields(html, action="/admin/settings")[field].error


def test_the_page_shows_the_connection_in_use_and_the_policy_fields(
    admin: TestClient, emulator: Emulator
) -> None:
    page = admin.get("/admin/settings")
    assert page.status_code == 200
    html = page.text
    for label in ("Refresh token every", "Token lifetime", "Refresh margin", "Save"):
        assert label in html
    assert emulator.settings.tenant_id in html  # from the environment, shown as in use
    assert "Connection complete" in html
    assert emulator.settings.client_secret not in html  # write-only, even from the environment


def test_valid_settings_are_saved_and_audited_old_to_new(app: FastAPI, admin: TestClient) -> None:
    response = save(admin, refresh_every_minutes="15", token_lifetime_minutes="45")
    assert response.status_code == 200  # followed the 303
    assert "Settings saved." in response.text
    saved = organization(app)
    assert (saved.name, saved.time_zone) == ("Acme", "Europe/Lisbon")
    assert (saved.refresh_every_minutes, saved.token_lifetime_minutes) == (15, 45)
    with session_scope(app.state.session_factory) as db:
        entry = db.scalars(
            select(AuditEntry).where(AuditEntry.action == "organization.changed")
        ).one()
        assert entry.detail["refresh_every_minutes"] == {"old": None, "new": 15}
        assert entry.detail["token_lifetime_minutes"] == {"old": 60, "new": 45}
        assert entry.actor_email == "admin@example.com"


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"refresh_every_minutes": "-5"}, "refresh_every_minutes", "negative"),
        ({"refresh_every_minutes": "abc"}, "refresh_every_minutes", "whole number"),
        ({"refresh_every_minutes": "60"}, "refresh_every_minutes", "shorter than the lifetime"),
        ({"refresh_every_minutes": "1000"}, "refresh_every_minutes", "shorter than the lifetime"),
        ({"token_lifetime_minutes": "61"}, "token_lifetime_minutes", "1 to 60"),
        ({"token_lifetime_minutes": "0"}, "token_lifetime_minutes", "1 to 60"),
        ({"token_lifetime_minutes": "lots"}, "token_lifetime_minutes", "whole number"),
        ({"refresh_margin_minutes": "60"}, "refresh_margin_minutes", "shorter than the token"),
        ({"refresh_margin_minutes": "-1"}, "refresh_margin_minutes", "at least 1"),
        ({"time_zone": "Mars/Olympus_Mons"}, "time_zone", "Unknown time zone"),
        ({"name": "  "}, "name", "name"),
        ({"powerbi_client_id": "not-a-guid"}, "powerbi_client_id", "GUID"),
        ({"powerbi_workspace_id": "123"}, "powerbi_workspace_id", "GUID"),
    ],
)
def test_invalid_values_are_refused_next_to_the_field_and_nothing_is_saved(
    app: FastAPI, admin: TestClient, changes: dict[str, str], field: str, words: str
) -> None:
    response = save(admin, **{"name": "Changed name", **changes})
    assert response.status_code == 400
    assert words in error_next_to(response.text, field)
    assert "Nothing was saved" in response.text
    assert organization(app).name == "embedportal"


@pytest.mark.parametrize(("every", "stored"), [("", None), ("0", None), ("59", 59), ("1", 1)])
def test_refresh_every_off_and_boundaries(
    app: FastAPI, admin: TestClient, every: str, stored: int | None
) -> None:
    response = save(admin, refresh_every_minutes=every)
    assert response.status_code == 200
    assert organization(app).refresh_every_minutes == stored


def test_the_policy_reaches_the_token_api(app: FastAPI, admin: TestClient) -> None:
    save(admin, refresh_every_minutes="7", token_lifetime_minutes="30", refresh_margin_minutes="5")
    from embedportal.tokens.service import policy_of

    policy = policy_of(organization(app))
    assert (policy.lifetime_minutes, policy.margin_minutes) == (30, 5)
    assert policy.refresh_every_minutes == 7


def test_the_client_secret_is_write_only_and_encrypted(app: FastAPI, admin: TestClient) -> None:
    save(admin, powerbi_client_secret="a-brand-new-secret")
    stored = organization(app).powerbi_client_secret_encrypted
    assert stored and "a-brand-new-secret" not in stored
    assert decrypt_secret(settings=app.state.settings, encrypted=stored) == "a-brand-new-secret"
    page = admin.get("/admin/settings").text
    assert "a-brand-new-secret" not in page
    assert "A secret is stored" in page

    save(admin, powerbi_client_secret="")  # blank keeps the stored secret
    assert organization(app).powerbi_client_secret_encrypted == stored

    with session_scope(app.state.session_factory) as db:
        details = [
            entry.detail
            for entry in db.scalars(
                select(AuditEntry).where(AuditEntry.action == "organization.changed")
            )
        ]
    assert {"powerbi_client_secret": "client secret changed"}.items() <= details[0].items()
    assert "a-brand-new-secret" not in str(details)


def test_the_box_removes_the_stored_secret(app: FastAPI, admin: TestClient) -> None:
    save(admin, powerbi_client_secret="a-secret-to-remove")
    assert organization(app).powerbi_client_secret_encrypted
    page = admin.get("/admin/settings").text
    assert not form_fields(page, action="/admin/settings")["clear_client_secret"].checked
    response = save(admin, clear_client_secret="on")
    assert "Settings saved." in response.text
    assert organization(app).powerbi_client_secret_encrypted == ""
    assert "clear_client_secret" not in form_fields(response.text)  # nothing stored to remove


def test_organization_values_override_the_environment(
    app: FastAPI, admin: TestClient, emulator: Emulator
) -> None:
    workspace = "11111111-2222-3333-4444-555555555555"
    save(admin, powerbi_workspace_id=workspace)
    with session_scope(app.state.session_factory) as db:
        connection = effective_connection(session=db, settings=app.state.settings)
    assert connection.workspace_id == workspace
    assert connection.workspace_source == "organization"
    assert connection.tenant_id == emulator.settings.tenant_id
    assert connection.tenant_source == "environment"


def test_test_connection_lists_the_workspaces(admin: TestClient) -> None:
    data = {**VALID, "csrf_token": csrf_of(admin, "/admin/settings")}
    response = admin.post(
        "/admin/settings/test-connection", data=data, headers={"HX-Request": "true"}
    )
    assert response.status_code == 200
    assert "Connected." in response.text
    assert "Demo workspace" in response.text


def test_test_connection_with_a_wrong_secret_says_why(admin: TestClient) -> None:
    data = {
        **VALID,
        "powerbi_client_secret": "wrong",
        "csrf_token": csrf_of(admin, "/admin/settings"),
    }
    response = admin.post("/admin/settings/test-connection", data=data)
    assert response.status_code == 200
    assert "The connection test failed" in response.text
    fields = form_fields(response.text)
    assert fields["powerbi_client_secret"].value == ""  # the secret is never echoed back
    assert "wrong" not in [value for field in fields.values() for value in field.values]


def test_only_administrators_see_the_settings(make_user: MakeUser, login_as: LoginAs) -> None:
    client = login_as(make_user("viewer@example.com"))
    assert client.get("/admin/settings").status_code == 403
