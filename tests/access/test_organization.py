"""The organization row: where each part of the Power BI connection comes from (the Settings
page beats the environment), the client secret encrypted at rest, and audited changes."""

from __future__ import annotations

import uuid

import pytest
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.orm import Session

from embedportal.access.organization import (
    OrganizationChanges,
    SecretUnreadableError,
    decrypt_secret,
    effective_connection,
    encrypt_secret,
    get_organization,
    update_organization,
)
from embedportal.db.models import AuditEntry
from embedportal.settings import Settings
from embedportal.tokens.policy import TokenPolicy

TENANT = "contoso.onmicrosoft.com"
CLIENT = str(uuid.UUID(int=1))
WORKSPACE = str(uuid.UUID(int=2))


def settings_with(settings: Settings, **values: object) -> Settings:
    return settings.model_copy(update=values)


def changes(**values: object) -> OrganizationChanges:
    fields: dict[str, object] = {
        "name": "Contoso",
        "time_zone": "Europe/Lisbon",
        "tenant_id": "",
        "client_id": "",
        "client_secret": None,
        "clear_client_secret": False,
        "workspace_id": "",
        "policy": TokenPolicy(),
        **values,
    }
    return OrganizationChanges(**fields)  # type: ignore[arg-type]


def test_the_organization_row_is_made_once(db: Session) -> None:
    first = get_organization(session=db)
    assert get_organization(session=db) is first
    assert first.time_zone == "UTC"


def test_the_secret_round_trips_and_is_not_stored_in_clear(settings: Settings) -> None:
    encrypted = encrypt_secret(settings=settings, secret="s3cret-value")
    assert "s3cret-value" not in encrypted
    assert decrypt_secret(settings=settings, encrypted=encrypted) == "s3cret-value"


def test_a_changed_secret_key_makes_the_stored_secret_unreadable(settings: Settings) -> None:
    encrypted = encrypt_secret(settings=settings, secret="s3cret-value")
    other = settings_with(settings, secret_key=SecretStr("another-secret-key-" + "x" * 40))
    with pytest.raises(SecretUnreadableError, match="Enter the client secret again"):
        decrypt_secret(settings=other, encrypted=encrypted)
    with pytest.raises(SecretUnreadableError):
        decrypt_secret(settings=settings, encrypted="not-a-fernet-token")


def test_with_nothing_set_the_connection_says_what_is_missing(
    db: Session, settings: Settings
) -> None:
    effective = effective_connection(session=db, settings=settings)
    assert effective.connection is None and not effective.ready
    assert effective.problem is not None
    for part in ("tenant id", "client id", "client secret"):
        assert part in effective.problem
    assert effective.tenant_source == effective.secret_source == "missing"


def test_the_environment_supplies_what_the_settings_page_leaves_blank(
    db: Session, settings: Settings
) -> None:
    from_env = settings_with(
        settings,
        powerbi_tenant_id=TENANT,
        powerbi_client_id=CLIENT,
        powerbi_client_secret=SecretStr("env-secret"),
        powerbi_workspace_id=WORKSPACE,
    )
    effective = effective_connection(session=db, settings=from_env)
    assert effective.ready and effective.problem is None
    assert effective.connection is not None
    assert effective.connection.client_secret == "env-secret"
    assert (effective.tenant_source, effective.secret_source) == ("environment", "environment")
    assert effective.workspace_id == WORKSPACE


def test_the_settings_page_beats_the_environment(db: Session, settings: Settings) -> None:
    from_env = settings_with(
        settings,
        powerbi_tenant_id="env-tenant.onmicrosoft.com",
        powerbi_client_id=str(uuid.UUID(int=9)),
        powerbi_client_secret=SecretStr("env-secret"),
        powerbi_workspace_id=str(uuid.UUID(int=8)),
    )
    update_organization(
        session=db,
        settings=from_env,
        changes=changes(
            tenant_id=TENANT, client_id=CLIENT, client_secret="page-secret", workspace_id=WORKSPACE
        ),
        actor=None,
    )
    effective = effective_connection(session=db, settings=from_env)
    assert effective.connection is not None
    assert (effective.tenant_id, effective.client_id) == (TENANT, CLIENT)
    assert effective.connection.client_secret == "page-secret"
    assert effective.workspace_id == WORKSPACE
    assert {effective.tenant_source, effective.secret_source} == {"organization"}


def test_without_a_workspace_the_connection_means_every_workspace(
    db: Session, settings: Settings
) -> None:
    # Changed on purpose (refs #8): an unset workspace no longer makes the connection "not
    # ready"; the catalogue sync then takes every workspace the service principal can see.
    configured = settings_with(
        settings,
        powerbi_tenant_id=TENANT,
        powerbi_client_id=CLIENT,
        powerbi_client_secret=SecretStr("env-secret"),
    )
    effective = effective_connection(session=db, settings=configured)
    assert effective.connection is not None and effective.ready
    assert effective.workspace_id is None and effective.problem is None


def test_the_cache_scope_separates_tenants_apps_and_workspaces(
    db: Session, settings: Settings
) -> None:
    def scope(**values: object) -> str:
        base: dict[str, object] = {
            "powerbi_tenant_id": TENANT,
            "powerbi_client_id": CLIENT,
            "powerbi_client_secret": SecretStr("secret"),
            "powerbi_workspace_id": WORKSPACE,
        }
        configured = settings_with(settings, **{**base, **values})
        return effective_connection(session=db, settings=configured).cache_scope

    scopes = {
        scope(),
        scope(powerbi_tenant_id="other.onmicrosoft.com"),
        scope(powerbi_client_id=str(uuid.UUID(int=3))),
        scope(powerbi_workspace_id=str(uuid.UUID(int=4))),
    }
    assert len(scopes) == 4
    assert scope() == scope(powerbi_client_secret=SecretStr("rotated"))  # a new secret: same


def test_changes_are_audited_old_to_new_and_the_secret_never_appears(
    db: Session, settings: Settings
) -> None:
    changed = update_organization(
        session=db,
        settings=settings,
        changes=changes(client_secret="page-secret"),
        actor=None,
    )
    assert set(changed) == {"name", "time_zone", "powerbi_client_secret"}
    entry = db.scalars(select(AuditEntry).where(AuditEntry.action == "organization.changed")).one()
    assert entry.detail["time_zone"] == {"old": "UTC", "new": "Europe/Lisbon"}
    assert entry.detail["powerbi_client_secret"] == "client secret changed"
    assert "page-secret" not in repr(entry.detail)


def test_saving_the_same_values_changes_nothing_and_audits_nothing(
    db: Session, settings: Settings
) -> None:
    update_organization(session=db, settings=settings, changes=changes(), actor=None)
    assert update_organization(session=db, settings=settings, changes=changes(), actor=None) == []
    assert len(db.scalars(select(AuditEntry)).all()) == 1


def test_the_stored_secret_can_be_removed(db: Session, settings: Settings) -> None:
    update_organization(
        session=db, settings=settings, changes=changes(client_secret="page-secret"), actor=None
    )
    removed = update_organization(
        session=db, settings=settings, changes=changes(clear_client_secret=True), actor=None
    )
    assert removed == ["powerbi_client_secret"]
    assert get_organization(session=db).powerbi_client_secret_encrypted == ""
