"""Server-side sessions: the cookie is a random token, the database keeps only its hash, and a
session ends on idle time, sign-out, or its user being blocked."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from embedportal.access.sessions import (
    LAST_SEEN_RESOLUTION,
    end_all_sessions,
    end_session,
    resolve_session,
    start_session,
)
from embedportal.db.models import WebSession
from tests.access.conftest import NewUser

IDLE_MINUTES = 30


def session_count(db: Session) -> int:
    return db.scalar(select(func.count()).select_from(WebSession)) or 0


def test_the_database_never_holds_the_cookie_itself(db: Session, new_user: NewUser) -> None:
    started = start_session(session=db, user=new_user("ana@example.com"), user_agent="Firefox")
    assert started.record.id != started.cookie_value
    assert db.get(WebSession, started.cookie_value) is None
    assert len(started.cookie_value) >= 40 and started.record.csrf_token
    assert started.record.user_agent == "Firefox"


def test_each_sign_in_gets_its_own_token_and_csrf(db: Session, new_user: NewUser) -> None:
    user = new_user("ana@example.com")
    first = start_session(session=db, user=user)
    second = start_session(session=db, user=user)
    assert first.cookie_value != second.cookie_value
    assert first.record.csrf_token != second.record.csrf_token


def test_a_long_user_agent_is_cut_to_fit(db: Session, new_user: NewUser) -> None:
    started = start_session(session=db, user=new_user("ana@example.com"), user_agent="x" * 5000)
    assert len(started.record.user_agent) == 300


def test_a_cookie_resolves_to_its_session(db: Session, new_user: NewUser) -> None:
    started = start_session(session=db, user=new_user("ana@example.com"))
    found = resolve_session(
        session=db, cookie_value=started.cookie_value, idle_minutes=IDLE_MINUTES
    )
    assert found is not None and found.id == started.record.id


def test_no_unknown_or_empty_cookie_resolves(db: Session, new_user: NewUser) -> None:
    start_session(session=db, user=new_user("ana@example.com"))
    for cookie in (None, "", "not-a-session", "x" * 43):
        assert resolve_session(session=db, cookie_value=cookie, idle_minutes=IDLE_MINUTES) is None


def test_an_idle_session_ends_and_is_deleted(db: Session, new_user: NewUser) -> None:
    started = start_session(session=db, user=new_user("ana@example.com"))
    later = started.record.last_seen_at + timedelta(minutes=IDLE_MINUTES, seconds=1)
    assert (
        resolve_session(
            session=db, cookie_value=started.cookie_value, idle_minutes=IDLE_MINUTES, now=later
        )
        is None
    )
    db.flush()
    assert session_count(db) == 0


def test_use_keeps_a_session_alive_but_writes_at_most_once_a_minute(
    db: Session, new_user: NewUser
) -> None:
    started = start_session(session=db, user=new_user("ana@example.com"))
    seen = started.record.last_seen_at
    soon = seen + LAST_SEEN_RESOLUTION / 2
    resolve_session(
        session=db, cookie_value=started.cookie_value, idle_minutes=IDLE_MINUTES, now=soon
    )
    assert started.record.last_seen_at == seen  # no write for a request within the minute
    later = seen + timedelta(minutes=IDLE_MINUTES - 1)
    resolve_session(
        session=db, cookie_value=started.cookie_value, idle_minutes=IDLE_MINUTES, now=later
    )
    assert started.record.last_seen_at == later
    much_later = later + timedelta(minutes=IDLE_MINUTES - 1)  # idle counts from the last use
    assert (
        resolve_session(
            session=db,
            cookie_value=started.cookie_value,
            idle_minutes=IDLE_MINUTES,
            now=much_later,
        )
        is not None
    )


def test_a_blocked_users_session_does_not_resolve(db: Session, new_user: NewUser) -> None:
    user = new_user("ana@example.com")
    started = start_session(session=db, user=user)
    user.is_blocked = True
    db.flush()
    assert (
        resolve_session(session=db, cookie_value=started.cookie_value, idle_minutes=IDLE_MINUTES)
        is None
    )


def test_sign_out_ends_only_that_session(db: Session, new_user: NewUser) -> None:
    user = new_user("ana@example.com")
    laptop = start_session(session=db, user=user)
    phone = start_session(session=db, user=user)
    end_session(session=db, cookie_value=laptop.cookie_value)
    db.expire_all()
    assert resolve_session(session=db, cookie_value=laptop.cookie_value, idle_minutes=30) is None
    assert resolve_session(session=db, cookie_value=phone.cookie_value, idle_minutes=30)
    end_session(session=db, cookie_value=None)  # signed out already: nothing to do
    end_session(session=db, cookie_value="unknown")


def test_signing_out_everywhere_ends_every_session_of_that_user_only(
    db: Session, new_user: NewUser
) -> None:
    ana, bob = new_user("ana@example.com"), new_user("bob@example.com")
    for _ in range(3):
        start_session(session=db, user=ana)
    bobs = start_session(session=db, user=bob)
    end_all_sessions(session=db, user_id=ana.id)
    db.expire_all()
    assert session_count(db) == 1
    assert resolve_session(session=db, cookie_value=bobs.cookie_value, idle_minutes=30)
