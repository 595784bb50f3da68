"""API keys: made with a secret shown once and stored hashed, scoped, expiring, revocable."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from embedportal.access.api_keys import (
    SCOPES,
    ApiKeyRefused,
    LastUseMemo,
    authenticate,
    create_api_key,
    expiry_of_day,
    hash_secret,
    list_api_keys,
    revoke_api_key,
    state_of,
)
from embedportal.access.audit import through_api_key
from embedportal.access.groups import create_group
from embedportal.access.users import UserInputError
from embedportal.db.base import utcnow
from embedportal.db.models import ApiKey, AuditEntry, Role
from tests.access.conftest import NewUser


def _refusal(db: Session, secret: str, now: datetime | None = None) -> str:
    with pytest.raises(ApiKeyRefused) as refused:
        authenticate(session=db, secret=secret, now=now)
    return refused.value.code


def test_a_key_is_shown_once_and_stored_as_a_hash(db: Session, new_user: NewUser) -> None:
    admin = new_user("admin@example.com", Role.ADMIN)
    created = create_api_key(
        session=db,
        name="  Billing   app ",
        scopes=["users:write", "users:read"],
        expires_at=None,
        actor=admin,
    )
    prefix, key_id, random = created.secret.split("_", 2)
    assert (prefix, key_id) == ("ep", created.key.id)
    assert len(random) >= 40
    stored = db.get(ApiKey, key_id)
    assert stored is not None
    assert stored.name == "Billing app"
    # In SCOPES' order, whatever the order asked.
    assert stored.scopes == ["users:read", "users:write"]
    assert stored.secret_hash == hash_secret(created.secret)
    assert created.secret not in repr(vars(stored))
    assert stored.created_by_email == "admin@example.com"
    entry = db.scalar(select(AuditEntry).where(AuditEntry.action == "api_key.created"))
    assert entry is not None
    assert entry.target_id == key_id
    assert entry.detail["name"] == "Billing app"
    assert created.secret not in str(entry.detail)
    caller = authenticate(session=db, secret=created.secret)
    assert (caller.key_id, caller.name) == (key_id, "Billing app")
    assert caller.scopes == {"users:read", "users:write"}


def test_what_a_key_needs(db: Session) -> None:
    with pytest.raises(UserInputError) as refused:
        create_api_key(session=db, name=" ", scopes=[], expires_at=None, actor=None)
    assert set(refused.value.errors) == {"name", "scopes"}
    with pytest.raises(UserInputError) as refused:
        create_api_key(
            session=db,
            name="x" * 201,
            scopes=["users:read", "everything"],
            expires_at=utcnow() - timedelta(seconds=1),
            actor=None,
        )
    assert set(refused.value.errors) == {"name", "scopes", "expires_on"}
    assert "everything" in refused.value.errors["scopes"]
    assert list_api_keys(session=db) == []
    assert "sso:issue" in SCOPES


@pytest.mark.parametrize(
    "secret",
    [
        "",
        "ep",
        "ep__",
        "not-a-key",
        "ep_000000000000_wrong",
        "Bearer ep_x_y",
        "ep_" + "a" * 200,
    ],
)
def test_anything_but_a_key_is_invalid(db: Session, secret: str) -> None:
    create_api_key(session=db, name="App", scopes=["users:read"], expires_at=None, actor=None)
    assert _refusal(db, secret) == "InvalidApiKey"


def test_a_wrong_secret_for_a_real_id_is_invalid_too(db: Session) -> None:
    created = create_api_key(
        session=db, name="App", scopes=["users:read"], expires_at=None, actor=None
    )
    assert _refusal(db, created.secret[:-1] + ("A" if created.secret[-1] != "A" else "B")) == (
        "InvalidApiKey"
    )
    # Revoked or expired is said only to whoever holds the real secret.
    revoke_api_key(session=db, key=created.key, actor=None)
    assert _refusal(db, created.secret + "x") == "InvalidApiKey"


def test_revoked_and_expired_keys_are_refused_with_their_reason(
    db: Session, new_user: NewUser
) -> None:
    admin = new_user("admin@example.com", Role.ADMIN)
    now = utcnow()
    expiring = create_api_key(
        session=db,
        name="Expiring",
        scopes=["users:read"],
        expires_at=now + timedelta(hours=1),
        actor=admin,
        now=now,
    )
    assert authenticate(session=db, secret=expiring.secret, now=now).name == "Expiring"
    later = now + timedelta(hours=1)
    assert state_of(expiring.key, now=later) == "expired"
    assert _refusal(db, expiring.secret, now=later) == "ApiKeyExpired"
    revoked = create_api_key(
        session=db, name="Revoked", scopes=["users:read"], expires_at=None, actor=admin
    )
    assert revoke_api_key(session=db, key=revoked.key, actor=admin) is True
    assert revoke_api_key(session=db, key=revoked.key, actor=admin) is False
    assert _refusal(db, revoked.secret) == "ApiKeyRevoked"
    assert state_of(revoked.key, now=now) == "revoked"
    actions = list(
        db.scalars(
            select(AuditEntry.action)
            .where(AuditEntry.target_type == "api_key")
            .order_by(AuditEntry.id)
        )
    )
    assert actions == ["api_key.created", "api_key.created", "api_key.revoked"]
    assert [key.name for key in list_api_keys(session=db)] == ["Revoked", "Expiring"]


def test_the_last_use_is_noted_at_most_once_a_minute() -> None:
    memo = LastUseMemo()
    now = utcnow()
    assert memo.due("a", now) is True
    assert memo.due("a", now + timedelta(seconds=59)) is False
    assert memo.due("b", now + timedelta(seconds=59)) is True
    assert memo.due("a", now + timedelta(seconds=60)) is True


def test_an_expiry_day_ends_with_that_day_in_the_organizations_zone() -> None:
    zone = ZoneInfo("America/Sao_Paulo")
    assert expiry_of_day("", zone=zone) is None
    ends = expiry_of_day("2030-05-31", zone=zone)
    assert ends == datetime(2030, 6, 1, tzinfo=zone)
    for bad in ("31/05/2030", "1999-01-01", "tomorrow", "2030-02-30"):
        with pytest.raises(UserInputError) as refused:
            expiry_of_day(bad, zone=zone)
        assert set(refused.value.errors) == {"expires_on"}


def test_entries_made_through_a_key_name_it(db: Session) -> None:
    with through_api_key("Billing app"):
        group = create_group(session=db, name="Customers", actor=None)
    create_group(session=db, name="Staff", actor=None)
    db.flush()
    details = {
        entry.target_id: entry.detail
        for entry in db.scalars(select(AuditEntry).where(AuditEntry.action == "group.created"))
    }
    assert details[str(group.id)]["api_key"] == "Billing app"
    assert "api_key" not in next(d for key, d in details.items() if key != str(group.id))
