"""The built-in emulator only when nothing real is configured (issue #11, item 5).

A connection entered in Admin → Settings is a real tenant's: it goes to Entra, Power BI and ARM
at their real addresses, never to the emulator `serve` started beside the portal; in production
the emulator starts only when asked, and never with its published secret. No test here talks to
Microsoft: they check the addresses the clients would use.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from embedportal.access.organization import candidate_connection, effective_connection
from embedportal.app import create_app
from embedportal.cli import app as cli_app
from embedportal.db.session import session_scope
from embedportal.emulator.settings import DEFAULT_CLIENT_SECRET, DEFAULT_TENANT_ID
from embedportal.powerbi import PowerBIClient, PowerBIConnection
from embedportal.powerbi.arm import CapacityClient
from embedportal.powerbi.connection import CapacityCoordinates
from embedportal.server import (
    embedded_default_settings,
    emulator_refusal,
    emulator_wanted,
    no_connection_note,
)
from embedportal.settings import Settings
from tests.support.portal import TEST_SECRET_KEY, LoginAs, MakeUser, csrf_of

pytestmark = pytest.mark.usefixtures("fast_password_hashing")

REAL_TENANT = "contoso.onmicrosoft.com"
REAL_CLIENT = "11111111-2222-3333-4444-555555555555"
REAL = {
    "authority_host": "https://login.microsoftonline.com",
    "api_url": "https://api.powerbi.com",
    "arm_url": "https://management.azure.com",
}


def addresses(connection: PowerBIConnection) -> dict[str, str]:
    return {
        "authority_host": connection.authority_host,
        "api_url": connection.api_url,
        "arm_url": connection.arm_url,
    }


@pytest.fixture
def embedded(settings: Settings) -> Settings:
    portal_settings, _emulator = embedded_default_settings(settings)
    return portal_settings


@pytest.fixture
def embedded_app(embedded: Settings) -> Iterator[FastAPI]:
    application = create_app(embedded)
    yield application
    application.state.engine.dispose()


@pytest.fixture
def admin(embedded_app: FastAPI, make_user: MakeUser, login_as: LoginAs) -> Iterator[TestClient]:
    with TestClient(embedded_app, base_url="http://127.0.0.1") as client:
        token = csrf_of(client, "/login")
        admin_user = make_user("admin@example.com", role="admin")
        answer = client.post(
            "/login",
            data={
                "email": admin_user.email,
                "password": "correct-horse-battery-staple",
                "csrf_token": token,
            },
            follow_redirects=False,
        )
        assert answer.status_code == 303
        client.headers["X-CSRF-Token"] = csrf_of(client)
        yield client


def _effective(app: FastAPI) -> object:
    with session_scope(app.state.session_factory) as db:
        return effective_connection(session=db, settings=app.state.settings)


def _save_connection(client: TestClient, **fields: str) -> None:
    form = {
        "name": "Contoso",
        "time_zone": "UTC",
        "token_lifetime_minutes": "60",
        "refresh_margin_minutes": "10",
        **fields,
    }
    answer = client.post("/admin/settings", data=form, follow_redirects=False)
    assert answer.status_code == 303, answer.text[:300]


def test_the_embedded_default_keeps_the_real_addresses(
    settings: Settings, embedded: Settings
) -> None:
    assert embedded.emulator_url == f"http://127.0.0.1:{settings.resolved_emulator_port}"
    assert embedded.powerbi_authority_host == REAL["authority_host"]
    assert embedded.powerbi_api_url == REAL["api_url"]
    assert embedded.arm_url == REAL["arm_url"]
    assert embedded.powerbi_url_to_check == embedded.emulator_url


def test_with_no_connection_of_its_own_the_emulator_stands_in(
    embedded_app: FastAPI, embedded: Settings
) -> None:
    effective = _effective(embedded_app)
    assert effective.connection is not None  # type: ignore[attr-defined]
    connection = effective.connection  # type: ignore[attr-defined]
    assert connection.tenant_id == DEFAULT_TENANT_ID
    base = embedded.emulator_url
    assert addresses(connection) == {"authority_host": base, "api_url": base, "arm_url": base}


def test_a_connection_saved_in_settings_goes_to_the_real_services(
    embedded_app: FastAPI, admin: TestClient
) -> None:
    _save_connection(
        admin,
        powerbi_tenant_id=REAL_TENANT,
        powerbi_client_id=REAL_CLIENT,
        powerbi_client_secret="a-real-secret-from-entra",
    )
    effective = _effective(embedded_app)
    connection = effective.connection  # type: ignore[attr-defined]
    assert connection is not None
    assert (connection.tenant_id, connection.client_id) == (REAL_TENANT, REAL_CLIENT)
    assert connection.client_secret == "a-real-secret-from-entra"
    assert addresses(connection) == REAL
    # The emulator's capacity is no capacity of this tenant's.
    assert connection.capacity is None
    # What the clients would call: Entra's authority for the tenant, Power BI's and ARM's API.
    powerbi = PowerBIClient(connection)
    arm = CapacityClient(connection, capacity=CapacityCoordinates(REAL_CLIENT, "rg", "cap"))
    try:
        assert powerbi._core.tokens._authority == f"https://login.microsoftonline.com/{REAL_TENANT}"
        assert str(powerbi._core.http.base_url).rstrip("/") == REAL["api_url"]
        assert str(arm._core.http.base_url).rstrip("/") == REAL["arm_url"]
    finally:
        asyncio.run(powerbi.aclose())
        asyncio.run(arm.aclose())


def test_a_partial_connection_is_not_completed_with_the_emulators_secret(
    embedded_app: FastAPI, admin: TestClient
) -> None:
    _save_connection(admin, powerbi_tenant_id=REAL_TENANT)
    effective = _effective(embedded_app)
    assert effective.connection is None  # type: ignore[attr-defined]
    assert "client id, client secret missing" in effective.problem  # type: ignore[attr-defined]


def test_test_connection_with_typed_values_targets_the_real_services(
    embedded_app: FastAPI, embedded: Settings
) -> None:
    with session_scope(embedded_app.state.session_factory) as db:
        typed = candidate_connection(
            session=db,
            settings=embedded,
            form={
                "powerbi_tenant_id": REAL_TENANT,
                "powerbi_client_id": REAL_CLIENT,
                "powerbi_client_secret": "typed-secret",
            },
        )
        with pytest.raises(ValueError, match="client secret first"):
            # A tenant alone: the emulator's client id and secret do not complete it.
            candidate_connection(
                session=db, settings=embedded, form={"powerbi_tenant_id": REAL_TENANT}
            )
        untouched = candidate_connection(session=db, settings=embedded, form={})
    assert addresses(typed) == REAL
    assert typed.tenant_id == REAL_TENANT
    # Nothing typed, nothing saved: "Test connection" tests the emulator in effect.
    assert untouched.api_url == embedded.emulator_url


def test_settings_of_the_environment_alone_still_go_where_they_say(settings: Settings) -> None:
    """Not serve's emulator: addresses set in the environment (a sovereign cloud, an emulator
    pointed at on purpose) are used with the environment's identity as before."""
    explicit = settings.model_copy(
        update={
            "powerbi_tenant_id": REAL_TENANT,
            "powerbi_client_id": REAL_CLIENT,
            "powerbi_api_url": "https://api.powerbigov.us",
        }
    )
    assert explicit.emulator_url is None
    assert (
        PowerBIConnection.from_settings(
            explicit.model_copy(update={"powerbi_client_secret": settings.secret_key})
        ).api_url
        == "https://api.powerbigov.us"
    )


# --- when serve starts the emulator ---------------------------------------------------------


def _settings(**values: object) -> Settings:
    return Settings(_env_file=None, secret_key=TEST_SECRET_KEY, **values)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("values", "wanted"),
    [
        ({"environment": "development"}, True),
        ({"environment": "test"}, True),
        ({"environment": "production"}, False),
        ({"environment": "production", "builtin_emulator": "on"}, True),
        ({"environment": "development", "builtin_emulator": "off"}, False),
        (
            {
                "environment": "development",
                "builtin_emulator": "on",
                "powerbi_tenant_id": REAL_TENANT,
                "powerbi_client_id": REAL_CLIENT,
                "powerbi_client_secret": "s",
            },
            False,
        ),
    ],
)
def test_the_emulator_starts_only_when_nothing_real_is_configured(
    values: dict[str, object], wanted: bool
) -> None:
    assert emulator_wanted(_settings(**values)) is wanted


def test_in_production_the_published_secret_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EMBEDPORTAL_EMULATOR_CLIENT_SECRET", raising=False)
    asked = _settings(environment="production", builtin_emulator="on")
    refusal = emulator_refusal(asked)
    assert refusal is not None and "EMBEDPORTAL_EMULATOR_CLIENT_SECRET" in refusal
    assert emulator_refusal(_settings(environment="development")) is None
    monkeypatch.setenv("EMBEDPORTAL_EMULATOR_CLIENT_SECRET", "a-random-emulator-secret-value")
    assert emulator_refusal(asked) is None


def test_serve_refuses_the_published_secret_in_production_with_a_message(
    database_url: str, tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # type: ignore[arg-type]
    env = {
        "EMBEDPORTAL_DATABASE_URL": database_url,
        "EMBEDPORTAL_ENVIRONMENT": "production",
        "EMBEDPORTAL_SECRET_KEY": TEST_SECRET_KEY,
        "EMBEDPORTAL_BUILTIN_EMULATOR": "on",
    }
    monkeypatch.delenv("EMBEDPORTAL_EMULATOR_CLIENT_SECRET", raising=False)
    result = CliRunner().invoke(cli_app, ["serve"], env=env)
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert "published demo value" in result.output
    assert DEFAULT_CLIENT_SECRET not in result.output


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        ({"environment": "production"}, "EMBEDPORTAL_BUILTIN_EMULATOR=on"),
        ({"environment": "development", "builtin_emulator": "off"}, "=off"),
    ],
)
def test_serve_says_where_to_connect_when_it_starts_no_emulator(
    values: dict[str, object], reason: str
) -> None:
    note = no_connection_note(_settings(**values))
    assert reason in note
    assert "Admin → Settings" in note
