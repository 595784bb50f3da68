"""Invitation and reset links: single use, short-lived, bound to the user and to the password
they were made under; a reset ends sessions and lock-outs, is audited and mailed."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Literal

import pytest
from argon2 import PasswordHasher
from sqlalchemy import select
from sqlalchemy.orm import Session

from embedportal.access import password_links, passwords
from embedportal.access.login import LoginFailure, authenticate, lockouts
from embedportal.access.password_links import LinkProblem, LinkRefused
from embedportal.access.passwords import NO_PASSWORD_YET, verify_password
from embedportal.access.sessions import start_session
from embedportal.access.users import (
    UserInputError,
    change_own_password,
    create_user,
    set_password,
)
from embedportal.db.base import utcnow
from embedportal.db.models import AuditEntry, OutboxMail, PasswordLink, User, WebSession
from embedportal.settings import Settings
from tests.access.conftest import PASSWORD, LockOut, NewUser

BASE = "https://portal.example.com"
NEW_PASSWORD = "violet-tractor-umbrella-quince"
TOKEN = re.compile(r"/password/set/([A-Za-z0-9_-]+)")


def _mails(db: Session, recipient: str) -> list[OutboxMail]:
    return list(
        db.scalars(
            select(OutboxMail).where(OutboxMail.recipient == recipient).order_by(OutboxMail.id)
        )
    )


def _token_of(mail: OutboxMail) -> str:
    found = TOKEN.search(mail.text_body)
    assert found is not None, mail.text_body
    return found.group(1)


def _reset_token(db: Session, user: User, settings: Settings) -> str:
    password_links.send_reset_link(
        session=db, user=user, settings=settings, base_url=BASE, actor=None
    )
    mail = _mails(db, user.email)[-1]
    assert mail.kind == "password_reset"
    assert f"{BASE}/password/set/" in mail.text_body
    return _token_of(mail)


def _actions(db: Session) -> list[str]:
    return list(db.scalars(select(AuditEntry.action).order_by(AuditEntry.id)))


def test_only_the_hash_of_the_token_is_stored(
    db: Session, settings: Settings, new_user: NewUser
) -> None:
    user = new_user("ana@example.com")
    token = _reset_token(db, user, settings)
    [link] = db.scalars(select(PasswordLink)).all()
    assert token not in link.id
    assert link.user_id == user.id
    assert link.expires_at - link.created_at == timedelta(minutes=settings.password_reset_minutes)


def test_a_reset_sets_the_password_signs_out_everywhere_ends_lock_outs_audits_and_mails(
    db: Session, settings: Settings, new_user: NewUser, lock_out: LockOut
) -> None:
    user = new_user("ana@example.com", language="pt_BR")
    start_session(session=db, user=user)
    lock_out(user)
    token = _reset_token(db, user, settings)
    password_links.set_password_with_link(
        session=db,
        token=token,
        new_password=NEW_PASSWORD,
        repeat_password=NEW_PASSWORD,
        settings=settings,
    )
    assert verify_password(user.password_hash, NEW_PASSWORD)
    assert db.scalars(select(WebSession).where(WebSession.user_id == user.id)).all() == []
    assert user.id not in lockouts(session=db, settings=settings, now=utcnow())
    assert "user.password_reset" in _actions(db)
    notice = _mails(db, user.email)[-1]
    assert notice.kind == "credential_changed"
    # In the user's own language.
    assert "redefinição" in notice.text_body


def test_a_link_works_once(db: Session, settings: Settings, new_user: NewUser) -> None:
    user = new_user("ana@example.com")
    token = _reset_token(db, user, settings)
    password_links.set_password_with_link(
        session=db,
        token=token,
        new_password=NEW_PASSWORD,
        repeat_password=NEW_PASSWORD,
        settings=settings,
    )
    with pytest.raises(LinkRefused) as refused:
        password_links.check_link(session=db, token=token, settings=settings)
    assert refused.value.problem == LinkProblem.USED


def test_a_link_expires(db: Session, settings: Settings, new_user: NewUser) -> None:
    user = new_user("ana@example.com")
    token = _reset_token(db, user, settings)
    later = utcnow() + timedelta(minutes=settings.password_reset_minutes, seconds=1)
    with pytest.raises(LinkRefused) as refused:
        password_links.check_link(session=db, token=token, settings=settings, now=later)
    assert refused.value.problem == LinkProblem.EXPIRED


def test_a_later_password_change_by_any_way_ends_the_link(
    db: Session, settings: Settings, new_user: NewUser
) -> None:
    user = new_user("ana@example.com")
    first = _reset_token(db, user, settings)
    set_password(session=db, user=user, password=NEW_PASSWORD, actor=None)
    with pytest.raises(LinkRefused) as refused:
        password_links.check_link(session=db, token=first, settings=settings)
    assert refused.value.problem == LinkProblem.PASSWORD_CHANGED


def test_a_newer_link_replaces_the_older_one(
    db: Session, settings: Settings, new_user: NewUser
) -> None:
    user = new_user("ana@example.com")
    older = _reset_token(db, user, settings)
    newer = _reset_token(db, user, settings)
    with pytest.raises(LinkRefused) as refused:
        password_links.check_link(session=db, token=older, settings=settings)
    assert refused.value.problem == LinkProblem.UNKNOWN
    assert password_links.check_link(session=db, token=newer, settings=settings).user.id == user.id


@pytest.mark.parametrize("token", ["", "made-up-token-that-was-never-issued-0000000000"])
def test_an_unknown_token_is_refused(db: Session, settings: Settings, token: str) -> None:
    with pytest.raises(LinkRefused) as refused:
        password_links.check_link(session=db, token=token, settings=settings)
    assert refused.value.problem == LinkProblem.UNKNOWN


def test_a_blocked_users_link_is_refused(
    db: Session, settings: Settings, new_user: NewUser
) -> None:
    user = new_user("ana@example.com")
    token = _reset_token(db, user, settings)
    user.is_blocked = True
    with pytest.raises(LinkRefused):
        password_links.check_link(session=db, token=token, settings=settings)


def test_the_password_rules_apply_and_the_link_stays_valid(
    db: Session, settings: Settings, new_user: NewUser
) -> None:
    user = new_user("ana@example.com")
    token = _reset_token(db, user, settings)
    with pytest.raises(UserInputError) as weak:
        password_links.set_password_with_link(
            session=db,
            token=token,
            new_password="password1234",
            repeat_password="password1234",
            settings=settings,
        )
    assert "new_password" in weak.value.errors
    with pytest.raises(UserInputError) as different:
        password_links.set_password_with_link(
            session=db,
            token=token,
            new_password=NEW_PASSWORD,
            repeat_password="other",
            settings=settings,
        )
    assert "repeat_password" in different.value.errors
    password_links.check_link(session=db, token=token, settings=settings)
    assert verify_password(user.password_hash, PASSWORD)


def test_an_invited_user_cannot_sign_in_until_they_choose_a_password(
    db: Session, settings: Settings
) -> None:
    user = create_user(session=db, email="new@example.com", password=None, actor=None)
    assert user.password_hash == NO_PASSWORD_YET
    for attempt in ("", "!invited", NO_PASSWORD_YET):
        result = authenticate(
            session=db,
            email=user.email,
            password=attempt or "anything-at-all",
            client_address="192.0.2.1",
            settings=settings,
            now=utcnow(),
        )
        assert isinstance(result, LoginFailure)
    password_links.send_invitation(
        session=db, user=user, settings=settings, base_url=BASE, actor=None
    )
    [mail] = _mails(db, user.email)
    assert mail.kind == "invitation"
    link = password_links.check_link(session=db, token=_token_of(mail), settings=settings)
    assert link.link.expires_at - link.link.created_at == timedelta(hours=settings.invitation_hours)
    password_links.set_password_with_link(
        session=db,
        token=_token_of(mail),
        new_password=NEW_PASSWORD,
        repeat_password=NEW_PASSWORD,
        settings=settings,
    )
    assert "user.invitation_accepted" in _actions(db)
    result = authenticate(
        session=db,
        email=user.email,
        password=NEW_PASSWORD,
        client_address="192.0.2.1",
        settings=settings,
        now=utcnow(),
    )
    assert isinstance(result, User)


# --- "Forgot your password?" ----------------------------------------------------------------


def _forgot(db: Session, settings: Settings, email: str, address: str = "198.51.100.7") -> None:
    password_links.request_reset(
        session=db, email=email, client_address=address, settings=settings, base_url=BASE
    )


def test_a_request_for_an_account_mails_a_link_and_for_others_nothing(
    db: Session, settings: Settings, new_user: NewUser
) -> None:
    new_user("ana@example.com")
    new_user("blocked@example.com", is_blocked=True)
    for email in ("ana@example.com", "nobody@example.com", "blocked@example.com", "not-an-email"):
        _forgot(db, settings, email)
    assert [mail.recipient for mail in db.scalars(select(OutboxMail))] == ["ana@example.com"]
    # Any case, as at sign-in.
    _forgot(db, settings, "  ANA@example.com ")
    assert len(_mails(db, "ana@example.com")) == 2


def test_requests_per_account_are_limited(
    db: Session, settings: Settings, new_user: NewUser
) -> None:
    new_user("ana@example.com")
    for number in range(settings.password_reset_account_per_hour + 2):
        _forgot(db, settings, "ana@example.com", address=f"198.51.100.{number}")
    assert len(_mails(db, "ana@example.com")) == settings.password_reset_account_per_hour


def test_requests_per_client_address_are_limited(
    db: Session, settings: Settings, new_user: NewUser
) -> None:
    limit = settings.password_reset_address_per_hour
    for number in range(limit):
        _forgot(db, settings, f"someone{number}@example.com")
    new_user("ana@example.com")
    _forgot(db, settings, "ana@example.com")
    assert _mails(db, "ana@example.com") == []
    _forgot(db, settings, "ana@example.com", address="192.0.2.200")
    assert len(_mails(db, "ana@example.com")) == 1


# --- Credential-change notices (ASVS 2.2.3) -------------------------------------------------


def test_every_way_of_changing_a_password_mails_the_user(
    db: Session, settings: Settings, new_user: NewUser
) -> None:
    admin = new_user("admin@example.com")
    user = new_user("ana@example.com")
    set_password(session=db, user=user, password=NEW_PASSWORD, actor=admin)
    set_password(session=db, user=user, password=PASSWORD, actor=None)
    change_own_password(
        session=db,
        user=user,
        current_password=PASSWORD,
        new_password=NEW_PASSWORD,
        repeat_password=NEW_PASSWORD,
        keep_session_id=None,
    )
    bodies = [mail.text_body for mail in _mails(db, user.email)]
    assert [mail.kind for mail in _mails(db, user.email)] == ["credential_changed"] * 3
    assert "An administrator set a new password" in bodies[0]
    assert "command line" in bodies[1]
    assert "on your account page" in bodies[2]


def test_the_notice_follows_the_portals_default_language(
    db: Session, settings: Settings, new_user: NewUser
) -> None:
    user = new_user("ana@example.com")
    set_password(session=db, user=user, password=NEW_PASSWORD, actor=None, default_language="pt_BR")
    [mail] = _mails(db, user.email)
    assert mail.language == "pt_BR"
    assert "linha de comando" in mail.text_body


def test_an_invited_accounts_sign_in_costs_one_argon2_verification_like_any_other(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No password yet verifies nothing, but takes as long as a wrong one (the dummy hash),
    so the timing does not single out invited accounts."""
    verified: list[str] = []

    class Spy(PasswordHasher):
        def verify(self, hash: str | bytes, password: str | bytes) -> Literal[True]:
            verified.append(str(hash))
            return super().verify(hash, password)

    monkeypatch.setattr(passwords, "_hasher", Spy(time_cost=1, memory_cost=8, parallelism=1))
    assert verify_password(NO_PASSWORD_YET, "anything-at-all") is False
    assert verified == [passwords.dummy_hash()]
