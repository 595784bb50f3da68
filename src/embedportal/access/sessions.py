"""Server-side sessions: the browser holds a random token, the database holds its hash."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlalchemy.orm import Session

from embedportal.db.base import utcnow
from embedportal.db.models import User, WebSession

SESSION_COOKIE = "embedportal_session"
# The name when the cookie is Secure: a browser then takes it only over https, from this very
# host, for the whole site (the `__Host-` prefix; OWASP ASVS 3.4.4), so neither a sibling
# subdomain nor a plain-HTTP page can plant or overwrite it.
SECURE_SESSION_COOKIE = "__Host-" + SESSION_COOKIE
# Writing last_seen_at on every request would make every page view a database write.
LAST_SEEN_RESOLUTION = timedelta(minutes=1)
# EMBEDPORTAL_SESSION_LIFETIME_DAYS' default, for callers without settings at hand (tests, demo).
DEFAULT_LIFETIME = timedelta(days=30)


def session_cookie_name(*, secure: bool) -> str:
    return SECURE_SESSION_COOKIE if secure else SESSION_COOKIE


def session_cookie_of(cookies: Mapping[str, str]) -> str | None:
    """The session token a request carries, under either name (a session started before the
    portal was reached over https has the plain one)."""
    return cookies.get(SECURE_SESSION_COOKIE) or cookies.get(SESSION_COOKIE)


@dataclass(frozen=True)
class NewSession:
    cookie_value: str
    record: WebSession


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def start_session(
    *,
    session: Session,
    user: User,
    user_agent: str = "",
    lifetime: timedelta = DEFAULT_LIFETIME,
    now: datetime | None = None,
    via_sso: bool = False,
) -> NewSession:
    """A new session with a new random token (never one the browser brought: no fixation),
    which ends ``lifetime`` after now however much it is used."""
    token = secrets.token_urlsafe(32)
    now = now or utcnow()
    record = WebSession(
        id=_hash(token),
        user_id=user.id,
        csrf_token=secrets.token_urlsafe(32),
        user_agent=user_agent[:300],
        created_at=now,
        last_seen_at=now,
        expires_at=now + lifetime,
        via_sso=via_sso,
    )
    session.add(record)
    session.flush()
    return NewSession(cookie_value=token, record=record)


def resolve_session(
    *, session: Session, cookie_value: str | None, idle_minutes: int, now: datetime | None = None
) -> WebSession | None:
    """The live session for a cookie, or None if unknown, idle too long, past its absolute
    lifetime, or its user is blocked."""
    if not cookie_value:
        return None
    record = session.get(WebSession, _hash(cookie_value))
    if record is None:
        return None
    now = now or utcnow()
    if now - record.last_seen_at > timedelta(minutes=idle_minutes) or now >= record.expires_at:
        session.delete(record)
        return None
    if record.user.is_blocked:
        return None
    if now - record.last_seen_at > LAST_SEEN_RESOLUTION:
        record.last_seen_at = now
    return record


def end_session(*, session: Session, cookie_value: str | None) -> None:
    if cookie_value:
        session.execute(delete(WebSession).where(WebSession.id == _hash(cookie_value)))


def end_all_sessions(*, session: Session, user_id: int) -> None:
    """Sign a user out everywhere (blocked, deleted, or password changed)."""
    session.execute(delete(WebSession).where(WebSession.user_id == user_id))
