"""Admin → Settings → Sign-in: the methods, the app registration (secret write-only), the
tenants allowed to sign up, and the redirect URI to register."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from embedportal.access.organization import decrypt_secret
from embedportal.db.models import AuditEntry
from tests.support.html import form_fields
from tests.support.portal import LoginAs, MakeUser
from tests.web.test_admin_settings import organization, save

TENANT = "11111111-2222-3333-4444-555555555555"
CLIENT = "66666666-7777-8888-9999-000000000000"
SECRET = "microsoft-sign-in-secret-value"


@pytest.fixture
def settings_overrides(emulator_settings_overrides: dict[str, object]) -> dict[str, object]:
    return emulator_settings_overrides


@pytest.fixture
def admin(make_user: MakeUser, login_as: LoginAs) -> TestClient:
    return login_as(make_user("admin@example.com", role="admin"))


def test_the_page_shows_the_methods_and_the_redirect_uri(admin: TestClient) -> None:
    page = admin.get("/admin/settings")
    fields = form_fields(page.text, action="/admin/settings")
    assert fields["sign_in_methods"].value == "password"
    assert fields["sign_in_methods"].options == [
        ("password", "E-mail and password"),
        ("microsoft", "Microsoft only"),
        ("both", "Microsoft, or e-mail and password"),
    ]
    assert 'value="http://127.0.0.1/login/microsoft/callback"' in page.text
    # Nothing entered: the Power BI connection's registration (the emulator's) is used.
    assert "App registration complete" in page.text


def test_the_registration_is_saved_with_its_secret_write_only(
    app: FastAPI, admin: TestClient
) -> None:
    response = save(
        admin,
        sign_in_methods="both",
        microsoft_tenant_id=TENANT,
        microsoft_client_id=CLIENT,
        microsoft_client_secret=SECRET,
        microsoft_signup_tenants=f"{TENANT.upper()}, {CLIENT}",
    )
    assert response.status_code == 200  # type: ignore[attr-defined]
    saved = organization(app)
    assert saved.sign_in_methods == "both"
    assert (saved.microsoft_tenant_id, saved.microsoft_client_id) == (TENANT, CLIENT)
    assert saved.microsoft_signup_tenants == " ".join(sorted({TENANT, CLIENT}))
    assert SECRET not in saved.microsoft_client_secret_encrypted
    encrypted = saved.microsoft_client_secret_encrypted
    assert decrypt_secret(settings=app.state.settings, encrypted=encrypted) == SECRET
    page = admin.get("/admin/settings")
    assert SECRET not in page.text
    assert form_fields(page.text, action="/admin/settings")["microsoft_client_secret"].value in (
        None,
        "",
    )
    with app.state.session_factory() as db:
        entry = db.scalars(
            select(AuditEntry).where(AuditEntry.action == "organization.changed")
        ).all()[-1]
    assert entry.detail["microsoft_client_secret"] == "client secret changed"
    assert SECRET not in str(entry.detail)

    # Saving again without typing a secret keeps it; the box removes it.
    save(admin, sign_in_methods="both", microsoft_tenant_id=TENANT, microsoft_client_id=CLIENT)
    assert organization(app).microsoft_client_secret_encrypted == encrypted
    save(admin, sign_in_methods="both", clear_microsoft_client_secret="on")
    assert organization(app).microsoft_client_secret_encrypted == ""


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("sign_in_methods", "carrier-pigeon"),
        ("microsoft_tenant_id", "contoso/evil"),
        ("microsoft_client_id", "not-a-guid"),
        ("microsoft_signup_tenants", f"{TENANT} contoso.com"),
        ("microsoft_client_secret", "x" * 1025),
    ],
)
def test_bad_values_are_refused_next_to_their_field(
    app: FastAPI, admin: TestClient, field: str, value: str
) -> None:
    response = save(admin, **{field: value})
    assert response.status_code == 400  # type: ignore[attr-defined]
    html = response.text  # type: ignore[attr-defined]
    assert form_fields(html, action="/admin/settings")[field].error
    assert organization(app).sign_in_methods == "password"
    assert "x" * 1025 not in html


def test_an_incomplete_registration_says_passwords_keep_working(admin: TestClient) -> None:
    save(admin, sign_in_methods="microsoft", microsoft_tenant_id=TENANT)
    page = admin.get("/admin/settings")
    assert "The sign-in app registration is incomplete" in page.text
    assert "Passwords keep working until it is." in page.text
