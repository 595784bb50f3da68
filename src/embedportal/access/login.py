"""Signing in with e-mail and password: lock-out, blocked users, constant-ish timing, audit.

Every attempt costs one argon2 verification whatever the outcome (unknown e-mail, locked
account, wrong or right password), so response times do not tell who has an account.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import update
from sqlalchemy.orm import Session

from embedportal.access.audit import record
from embedportal.access.passwords import (
    DUMMY_HASH,
    MAX_PASSWORD_LENGTH,
    hash_password,
    needs_rehash,
    verify_password,
)
from embedportal.access.users import MAX_EMAIL_LENGTH, find_user_by_email
from embedportal.db.models import User
from embedportal.settings import Settings


class LoginFailureReason(enum.StrEnum):
    # Unknown e-mail or wrong password: one reason, so the page cannot tell them apart.
    INVALID = "invalid"
    LOCKED = "locked"
    BLOCKED = "blocked"


@dataclass(frozen=True)
class LoginFailure:
    """Why a sign-in was refused; `locked_until` is set when the reason is LOCKED."""

    reason: LoginFailureReason
    locked_until: datetime | None = None


def _failed(
    *, session: Session, email: str, user: User | None, reason: str, locked_until: datetime | None
) -> None:
    detail: dict[str, object] = {"reason": reason}
    if locked_until is not None:
        detail["locked_until"] = locked_until.isoformat()
    entry = record(
        session=session,
        actor=None,
        action="login.failed",
        target_type="user" if user is not None else "",
        target_id=str(user.id) if user is not None else "",
        detail=detail,
    )
    # Not a verified actor, but the e-mail the attempt claimed, so it can be searched for.
    entry.actor_email = email[:MAX_EMAIL_LENGTH]


def authenticate(
    *, session: Session, email: str, password: str, settings: Settings, now: datetime
) -> User | LoginFailure:
    """The user these credentials belong to, or why not. Changes are flushed, not committed."""
    email = email.strip().lower()[:MAX_EMAIL_LENGTH]
    # argon2 hashes any length, but a megabyte of "password" should not cost a megabyte of work;
    # no stored password is that long, so an over-long one is wrong (after the same work).
    candidate = password[:MAX_PASSWORD_LENGTH]
    too_long = len(password) > MAX_PASSWORD_LENGTH
    user = find_user_by_email(session=session, email=email) if email else None

    if user is None:
        verify_password(DUMMY_HASH, candidate)
        _failed(session=session, email=email, user=None, reason="unknown", locked_until=None)
        return LoginFailure(LoginFailureReason.INVALID)

    if user.locked_until is not None:
        if user.locked_until > now:
            # While locked, the password is not even checked: no guessing goes on meanwhile.
            verify_password(DUMMY_HASH, candidate)
            _failed(
                session=session,
                email=email,
                user=user,
                reason="locked",
                locked_until=user.locked_until,
            )
            return LoginFailure(LoginFailureReason.LOCKED, locked_until=user.locked_until)
        user.locked_until = None
        user.failed_login_count = 0

    if not verify_password(user.password_hash, candidate) or too_long:
        # Counted in the database, so simultaneous attempts cannot overwrite each other.
        session.execute(
            update(User)
            .where(User.id == user.id)
            .values(failed_login_count=User.failed_login_count + 1)
            .execution_options(synchronize_session=False)
        )
        session.refresh(user, ["failed_login_count"])
        if user.failed_login_count >= settings.login_max_attempts:
            user.locked_until = now + timedelta(minutes=settings.login_lockout_minutes)
            user.failed_login_count = 0
            _failed(
                session=session,
                email=email,
                user=user,
                reason="wrong_password",
                locked_until=None,
            )
            record(
                session=session,
                actor=None,
                action="login.locked",
                target_type="user",
                target_id=str(user.id),
                detail={
                    "email": user.email,
                    "attempts": settings.login_max_attempts,
                    "locked_until": user.locked_until.isoformat(),
                },
            )
            session.flush()
            return LoginFailure(LoginFailureReason.LOCKED, locked_until=user.locked_until)
        _failed(session=session, email=email, user=user, reason="wrong_password", locked_until=None)
        session.flush()
        return LoginFailure(LoginFailureReason.INVALID)

    if user.is_blocked:
        _failed(session=session, email=email, user=user, reason="blocked", locked_until=None)
        return LoginFailure(LoginFailureReason.BLOCKED)

    user.failed_login_count = 0
    user.last_login_at = now
    if needs_rehash(user.password_hash):
        # The hashing parameters were raised since this hash was made: upgrade it while the
        # plain password is at hand.
        user.password_hash = hash_password(candidate)
    record(
        session=session,
        actor=user,
        action="login.succeeded",
        target_type="user",
        target_id=str(user.id),
    )
    session.flush()
    return user
