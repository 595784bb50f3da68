"""Signing in: wrong passwords, throttles, blocked users, timing, rehashing, audit."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest
from argon2 import PasswordHasher
from sqlalchemy import select
from sqlalchemy.orm import Session

from embedportal.access import login as login_module
from embedportal.access import passwords
from embedportal.access.login import (
    LoginFailure,
    LoginFailureReason,
    authenticate,
    lockouts,
)
from embedportal.access.passwords import dummy_hash
from embedportal.access.users import set_password, unlock_user
from embedportal.db.base import utcnow
from embedportal.db.models import AuditEntry, LoginThrottle, Role, User
from embedportal.settings import Settings
from tests.access.conftest import PASSWORD, NewUser

HERE = "198.51.100.7"
ELSEWHERE = "192.0.2.44"


@pytest.fixture
def strict(settings: Settings) -> Settings:
    return settings.model_copy(update={"login_max_attempts": 3, "login_lockout_minutes": 30})


def _try(
    db: Session,
    settings: Settings,
    email: str,
    password: str,
    *,
    now: datetime | None = None,
    address: str = HERE,
) -> User | LoginFailure:
    return authenticate(
        session=db,
        email=email,
        password=password,
        client_address=address,
        settings=settings,
        now=now or utcnow(),
    )


def _actions(db: Session) -> list[str]:
    return list(db.scalars(select(AuditEntry.action).order_by(AuditEntry.id)))


def _failures(db: Session, email: str) -> list[tuple[str, str]]:
    """(actor_email, reason) of the failed attempts, oldest first."""
    entries = db.scalars(
        select(AuditEntry).where(AuditEntry.action == "login.failed").order_by(AuditEntry.id)
    )
    return [(entry.actor_email, entry.detail["reason"]) for entry in entries]


def test_right_password_signs_in_and_starts_the_count_again(
    db: Session, new_user: NewUser, strict: Settings
) -> None:
    user = new_user("ana@example.com")
    now = utcnow()
    for _attempt in range(2):
        assert _try(db, strict, user.email, "nope", now=now) == LoginFailure(
            LoginFailureReason.INVALID
        )
    assert _try(db, strict, " ANA@example.com", PASSWORD, now=now) is user
    assert user.last_login_at == now
    assert _actions(db)[-1] == "login.succeeded"
    # Counted from zero again: two more wrong ones do not reach the limit of three.
    for _attempt in range(2):
        assert _try(db, strict, user.email, "nope", now=now) == LoginFailure(
            LoginFailureReason.INVALID
        )


def test_unknown_email_and_wrong_password_fail_alike(
    db: Session, new_user: NewUser, strict: Settings
) -> None:
    new_user("ana@example.com")
    unknown = _try(db, strict, "nobody@example.com", PASSWORD)
    wrong = _try(db, strict, "ana@example.com", "wrong-password")
    assert unknown == wrong == LoginFailure(LoginFailureReason.INVALID)
    assert _failures(db, "") == [
        ("nobody@example.com", "unknown"),
        ("ana@example.com", "wrong_password"),
    ]


def test_an_unknown_email_is_throttled_exactly_like_a_known_one(
    db: Session, new_user: NewUser, strict: Settings
) -> None:
    """The lock-out message appearing only for accounts that exist would tell who has one."""
    new_user("ana@example.com")
    now = utcnow()
    answers: dict[str, list[LoginFailure | User]] = {}
    for email in ["ana@example.com", "nobody@example.com"]:
        answers[email] = [_try(db, strict, email, "nope", now=now) for _attempt in range(5)]
    assert answers["ana@example.com"] == answers["nobody@example.com"]
    assert [answer.reason for answer in answers["nobody@example.com"]] == [  # type: ignore[union-attr]
        LoginFailureReason.INVALID,
        LoginFailureReason.INVALID,
        LoginFailureReason.LOCKED,
        LoginFailureReason.LOCKED,
        LoginFailureReason.LOCKED,
    ]


def test_every_attempt_costs_one_password_verification(
    db: Session, new_user: NewUser, strict: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = new_user("ana@example.com")
    verified: list[str] = []
    real = passwords.verify_password

    def spy(password_hash: str, password: str) -> bool:
        verified.append(password_hash)
        return real(password_hash, password)

    monkeypatch.setattr(login_module, "verify_password", spy)
    now = utcnow()
    _try(db, strict, "x@example.com", "p" * 12, now=now)
    _try(db, strict, "", "p" * 12, now=now)
    for _attempt in range(4):  # three wrong, then one held back
        _try(db, strict, user.email, "nope", now=now)
    dummy = dummy_hash()
    assert verified == [dummy, dummy, *[user.password_hash] * 3, dummy]


def test_wrong_passwords_make_that_address_wait_longer_each_time(
    db: Session, new_user: NewUser, strict: Settings
) -> None:
    user = new_user("ana@example.com")
    start = utcnow()
    for attempt in range(2):
        result = _try(db, strict, user.email, "nope", now=start)
        assert result == LoginFailure(LoginFailureReason.INVALID), attempt
    third = _try(db, strict, user.email, "nope", now=start)
    assert third == LoginFailure(LoginFailureReason.LOCKED, start + timedelta(minutes=1))
    assert "login.locked" in _actions(db)
    # Even the right password is refused while waiting, and not checked...
    during = _try(db, strict, user.email, PASSWORD, now=start + timedelta(seconds=59))
    assert during == LoginFailure(LoginFailureReason.LOCKED, start + timedelta(minutes=1))
    # ...the next wrong one after the wait doubles it...
    later = start + timedelta(minutes=1)
    fourth = _try(db, strict, user.email, "nope", now=later)
    assert fourth == LoginFailure(LoginFailureReason.LOCKED, later + timedelta(minutes=2))
    # ...up to the longest wait.
    for _attempt in range(10):
        later += timedelta(minutes=31)
        result = _try(db, strict, user.email, "nope", now=later)
    assert result == LoginFailure(LoginFailureReason.LOCKED, later + timedelta(minutes=30))
    # The right password once the wait is over signs in, with a fresh count.
    after = _try(db, strict, user.email, PASSWORD, now=later + timedelta(minutes=30))
    assert after is user
    assert lockouts(session=db, settings=strict, now=later + timedelta(minutes=30)) == {}


def test_the_owner_elsewhere_is_not_held_back_by_someone_elses_guesses(
    db: Session, new_user: NewUser, strict: Settings
) -> None:
    user = new_user("admin@example.com", Role.ADMIN)
    now = utcnow()
    for _attempt in range(10):
        _try(db, strict, user.email, "guess", now=now, address=ELSEWHERE)
    assert isinstance(
        _try(db, strict, user.email, PASSWORD, now=now, address=ELSEWHERE), LoginFailure
    )
    assert _try(db, strict, user.email, PASSWORD, now=now, address=HERE) is user
    held = lockouts(session=db, settings=strict, now=now)
    assert held[user.id].addresses == (ELSEWHERE,)


def test_an_address_spraying_many_emails_is_stopped_but_known_owners_are_not(
    db: Session, new_user: NewUser, settings: Settings
) -> None:
    limited = settings.model_copy(update={"login_address_max_failures": 4})
    ana = new_user("ana@example.com")
    now = utcnow()
    # Ana signed in from this shared address (an office NAT) before.
    assert _try(db, limited, ana.email, PASSWORD, now=now) is ana
    for number in range(4):
        assert _try(db, limited, f"user{number}@example.com", "guess", now=now) == LoginFailure(
            LoginFailureReason.INVALID
        )
    refused = _try(db, limited, "someone@example.com", "guess", now=now)
    assert refused == LoginFailure(LoginFailureReason.LOCKED, now + timedelta(hours=1))
    assert _try(db, limited, ana.email, PASSWORD, now=now) is ana
    # The hour over, the address may try again.
    later = now + timedelta(hours=1)
    assert _try(db, limited, "someone@example.com", "guess", now=later) == LoginFailure(
        LoginFailureReason.INVALID
    )


def test_an_account_guessed_from_many_addresses_lets_in_only_known_ones(
    db: Session, new_user: NewUser, settings: Settings
) -> None:
    limited = settings.model_copy(update={"login_account_max_failures": 6})
    ana = new_user("ana@example.com")
    now = utcnow()
    assert _try(db, limited, ana.email, PASSWORD, now=now, address=HERE) is ana
    for number in range(6):
        _try(db, limited, ana.email, "guess", now=now, address=f"203.0.113.{number}")
    refused = _try(db, limited, ana.email, PASSWORD, now=now, address="203.0.113.200")
    assert refused == LoginFailure(LoginFailureReason.LOCKED, now + timedelta(hours=1))
    assert _try(db, limited, ana.email, PASSWORD, now=now, address=HERE) is ana
    assert lockouts(session=db, settings=limited, now=now)[ana.id].until == now + timedelta(hours=1)


def test_unlock_and_a_new_password_end_every_wait(
    db: Session, new_user: NewUser, strict: Settings
) -> None:
    admin = new_user("root@example.com", Role.ADMIN)
    user = new_user("ana@example.com")
    now = utcnow()
    for _attempt in range(3):
        _try(db, strict, user.email, "nope", now=now)
    assert unlock_user(session=db, user=user, actor=admin) > 0
    assert unlock_user(session=db, user=user, actor=admin) == 0
    assert _actions(db).count("user.unlocked") == 1
    assert _try(db, strict, user.email, PASSWORD, now=now) is user
    for _attempt in range(3):
        _try(db, strict, user.email, "nope", now=now)
    set_password(session=db, user=user, password="a-brand-new-password", actor=admin)
    assert _try(db, strict, user.email, "a-brand-new-password", now=now) is user


def test_a_blocked_user_cannot_sign_in(db: Session, new_user: NewUser, strict: Settings) -> None:
    new_user("ana@example.com", is_blocked=True)
    right = _try(db, strict, "ana@example.com", PASSWORD)
    wrong = _try(db, strict, "ana@example.com", "nope")
    assert right == LoginFailure(LoginFailureReason.BLOCKED)
    # A wrong password does not reveal that the account is blocked.
    assert wrong == LoginFailure(LoginFailureReason.INVALID)


def test_an_over_long_password_is_wrong(db: Session, new_user: NewUser, strict: Settings) -> None:
    new_user("ana@example.com")
    result = _try(db, strict, "ana@example.com", PASSWORD + "x" * 2000)
    assert result == LoginFailure(LoginFailureReason.INVALID)


def test_an_outdated_hash_is_upgraded_at_sign_in(db: Session, strict: Settings) -> None:
    old = PasswordHasher(time_cost=2, memory_cost=16, parallelism=1)
    user = User(email="old@example.com", password_hash=old.hash(PASSWORD), rls_roles=[])
    db.add(user)
    db.flush()
    assert passwords.needs_rehash(user.password_hash)
    assert _try(db, strict, "old@example.com", PASSWORD) is user
    assert not passwords.needs_rehash(user.password_hash)
    assert passwords.verify_password(user.password_hash, PASSWORD)


def test_a_password_typed_into_the_email_field_is_not_kept(
    db: Session, new_user: NewUser, strict: Settings
) -> None:
    new_user("ana@example.com")
    secret = "Tr0ub4dor&3-my-real-password"
    _try(db, strict, secret, "whatever")
    entries = list(db.scalars(select(AuditEntry)))
    stored = json.dumps([(e.actor_email, e.detail) for e in entries])
    throttles = json.dumps(
        [(row.account, row.address) for row in db.scalars(select(LoginThrottle))]
    )
    assert secret.lower() not in stored.lower() and secret.lower() not in throttles.lower()
    assert _failures(db, "") == [("", "unknown")]


def test_the_throttles_keep_no_email_in_clear(
    db: Session, new_user: NewUser, strict: Settings
) -> None:
    user = new_user("ana@example.com")
    _try(db, strict, user.email, "nope")
    rows = list(db.scalars(select(LoginThrottle)))
    assert {row.scope for row in rows} == {"pair", "address", "account"}
    assert all("ana" not in row.account for row in rows)
    assert {row.user_id for row in rows if row.scope != "address"} == {user.id}


def test_old_throttle_rows_are_forgotten(db: Session, new_user: NewUser, strict: Settings) -> None:
    long_ago = utcnow() - timedelta(days=2)
    _try(db, strict, "one@example.com", "nope", now=long_ago, address="192.0.2.1")
    _try(db, strict, "two@example.com", "nope", address="192.0.2.2")
    addresses = {row.address for row in db.scalars(select(LoginThrottle)) if row.address}
    assert addresses == {"192.0.2.2"}
