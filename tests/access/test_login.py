"""Signing in: wrong passwords, lock-out, blocked users, timing, rehashing, audit."""

from __future__ import annotations

from datetime import timedelta

import pytest
from argon2 import PasswordHasher
from sqlalchemy import select
from sqlalchemy.orm import Session

from embedportal.access import login as login_module
from embedportal.access import passwords
from embedportal.access.login import LoginFailure, LoginFailureReason, authenticate
from embedportal.access.passwords import DUMMY_HASH
from embedportal.db.base import utcnow
from embedportal.db.models import AuditEntry, User
from embedportal.settings import Settings
from tests.access.conftest import PASSWORD, NewUser


@pytest.fixture
def strict(settings: Settings) -> Settings:
    return settings.model_copy(update={"login_max_attempts": 3, "login_lockout_minutes": 30})


def _actions(db: Session) -> list[str]:
    return list(db.scalars(select(AuditEntry.action).order_by(AuditEntry.id)))


def test_right_password_signs_in_and_resets_the_count(
    db: Session, new_user: NewUser, strict: Settings
) -> None:
    user = new_user("ana@example.com", failed_login_count=2)
    now = utcnow()
    result = authenticate(
        session=db, email=" ANA@example.com", password=PASSWORD, settings=strict, now=now
    )
    assert result is user
    assert user.failed_login_count == 0 and user.last_login_at == now
    assert _actions(db)[-1] == "login.succeeded"


def test_unknown_email_and_wrong_password_fail_alike(
    db: Session, new_user: NewUser, strict: Settings
) -> None:
    new_user("ana@example.com")
    unknown = authenticate(
        session=db, email="nobody@example.com", password=PASSWORD, settings=strict, now=utcnow()
    )
    wrong = authenticate(
        session=db,
        email="ana@example.com",
        password="wrong-password",
        settings=strict,
        now=utcnow(),
    )
    assert unknown == wrong == LoginFailure(LoginFailureReason.INVALID)
    entries = list(db.scalars(select(AuditEntry).where(AuditEntry.action == "login.failed")))
    assert [(e.actor_email, e.actor_user_id) for e in entries] == [
        ("nobody@example.com", None),
        ("ana@example.com", None),
    ]


def test_unknown_email_still_costs_a_password_verification(
    db: Session, strict: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    verified: list[str] = []
    real = passwords.verify_password

    def spy(password_hash: str, password: str) -> bool:
        verified.append(password_hash)
        return real(password_hash, password)

    monkeypatch.setattr(login_module, "verify_password", spy)
    authenticate(
        session=db, email="x@example.com", password="p" * 12, settings=strict, now=utcnow()
    )
    authenticate(session=db, email="", password="p" * 12, settings=strict, now=utcnow())
    assert verified == [DUMMY_HASH, DUMMY_HASH]


def test_wrong_passwords_in_a_row_lock_the_account_for_a_while(
    db: Session, new_user: NewUser, strict: Settings
) -> None:
    user = new_user("ana@example.com")
    start = utcnow()
    for attempt in range(2):
        result = authenticate(
            session=db, email=user.email, password="nope", settings=strict, now=start
        )
        assert result == LoginFailure(LoginFailureReason.INVALID), attempt
    locked = authenticate(session=db, email=user.email, password="nope", settings=strict, now=start)
    assert locked == LoginFailure(LoginFailureReason.LOCKED, start + timedelta(minutes=30))
    assert "login.locked" in _actions(db)
    # Even the right password is refused while locked...
    during = authenticate(
        session=db,
        email=user.email,
        password=PASSWORD,
        settings=strict,
        now=start + timedelta(minutes=29),
    )
    assert isinstance(during, LoginFailure) and during.reason == LoginFailureReason.LOCKED
    # ...and accepted once the lock-out is over, with a fresh count.
    after = authenticate(
        session=db,
        email=user.email,
        password=PASSWORD,
        settings=strict,
        now=start + timedelta(minutes=31),
    )
    assert after is user and user.locked_until is None and user.failed_login_count == 0


def test_a_success_in_between_resets_the_count(
    db: Session, new_user: NewUser, strict: Settings
) -> None:
    user = new_user("ana@example.com")
    now = utcnow()
    for password in ["nope", "nope", PASSWORD, "nope", "nope"]:
        authenticate(session=db, email=user.email, password=password, settings=strict, now=now)
    assert user.locked_until is None and user.failed_login_count == 2


def test_a_blocked_user_cannot_sign_in(db: Session, new_user: NewUser, strict: Settings) -> None:
    new_user("ana@example.com", is_blocked=True)
    right = authenticate(
        session=db, email="ana@example.com", password=PASSWORD, settings=strict, now=utcnow()
    )
    wrong = authenticate(
        session=db, email="ana@example.com", password="nope", settings=strict, now=utcnow()
    )
    assert right == LoginFailure(LoginFailureReason.BLOCKED)
    # A wrong password does not reveal that the account is blocked.
    assert wrong == LoginFailure(LoginFailureReason.INVALID)


def test_an_over_long_password_is_wrong(db: Session, new_user: NewUser, strict: Settings) -> None:
    new_user("ana@example.com")
    result = authenticate(
        session=db,
        email="ana@example.com",
        password=PASSWORD + "x" * 2000,
        settings=strict,
        now=utcnow(),
    )
    assert result == LoginFailure(LoginFailureReason.INVALID)


def test_an_outdated_hash_is_upgraded_at_sign_in(
    db: Session, strict: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = PasswordHasher(time_cost=2, memory_cost=16, parallelism=1)
    user = User(email="old@example.com", password_hash=old.hash(PASSWORD), rls_roles=[])
    db.add(user)
    db.flush()
    assert passwords.needs_rehash(user.password_hash)
    result = authenticate(
        session=db, email="old@example.com", password=PASSWORD, settings=strict, now=utcnow()
    )
    assert result is user
    assert not passwords.needs_rehash(user.password_hash)
    assert passwords.verify_password(user.password_hash, PASSWORD)
