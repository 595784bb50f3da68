"""Single-use links to set a password: invitations (a new user chooses their first password)
and resets ("Forgot your password?", or an administrator's "Send a password reset link").

The link carries a random token; only its sha256 is stored. A link works once, until it
expires, for the user it was made for, and only while that user's password is the one it was
made under (a keyed hash of the password hash is kept with it): a later change of password, by
any way at all, makes every earlier link useless. A newer link replaces the user's older ones.

Asking for a reset always gets the same answer, whether the e-mail has an account or not, is
blocked, or is over its limit (access/reset_policy.py): only the mail differs, and it goes out
later, from the sender in the background.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from embedportal.access.audit import record
from embedportal.access.credential_notices import (
    PASSWORD_RESET,
    mail_brand,
    mail_language,
    notify_credential_changed,
)
from embedportal.access.login import account_hash
from embedportal.access.passwords import hash_password
from embedportal.access.reset_policy import ResetLimits, decide_reset
from embedportal.access.sessions import end_all_sessions
from embedportal.access.throttle_policy import Tally
from embedportal.access.users import (
    UserInputError,
    check_password_rules,
    end_lockout,
    find_user_by_email,
)
from embedportal.db.base import utcnow
from embedportal.db.models import LoginThrottle, PasswordLink, User
from embedportal.i18n import _
from embedportal.mail import messages
from embedportal.mail.outbox import enqueue
from embedportal.settings import Settings

INVITATION, RESET = "invitation", "reset"
# The sign-in throttle table's scopes for reset requests (at most 10 characters).
RESET_ADDRESS_SCOPE, RESET_ACCOUNT_SCOPE = "reset_addr", "reset_acct"
# The path a link leads to; the token follows it.
LINK_PATH = "/password/set/"


class LinkProblem(enum.StrEnum):
    UNKNOWN = "unknown"  # never made, replaced by a newer one, or its user is gone or blocked
    USED = "used"
    EXPIRED = "expired"
    PASSWORD_CHANGED = "password_changed"


class LinkRefused(Exception):
    def __init__(self, problem: LinkProblem) -> None:
        super().__init__(problem.value)
        self.problem = problem


@dataclass(frozen=True)
class ValidLink:
    link: PasswordLink
    user: User


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def password_fingerprint(user: User, *, settings: Settings) -> str:
    key = settings.secret_key.get_secret_value().encode()
    return hmac.new(
        key, b"password-link\0" + user.password_hash.encode(), hashlib.sha256
    ).hexdigest()


def lifetime(purpose: str, *, settings: Settings) -> timedelta:
    if purpose == INVITATION:
        return timedelta(hours=settings.invitation_hours)
    return timedelta(minutes=settings.password_reset_minutes)


def _issue(*, session: Session, user: User, purpose: str, settings: Settings, now: datetime) -> str:
    """A new link's token; the user's older unused links stop working."""
    session.execute(
        delete(PasswordLink).where(PasswordLink.user_id == user.id, PasswordLink.used_at.is_(None))
    )
    token = secrets.token_urlsafe(32)
    session.add(
        PasswordLink(
            id=_token_hash(token),
            user_id=user.id,
            purpose=purpose,
            created_at=now,
            expires_at=now + lifetime(purpose, settings=settings),
            password_fingerprint=password_fingerprint(user, settings=settings),
        )
    )
    session.flush()
    return token


def link_url(base_url: str, token: str) -> str:
    return base_url.rstrip("/") + LINK_PATH + token


def send_invitation(
    *,
    session: Session,
    user: User,
    settings: Settings,
    base_url: str,
    actor: User | None,
    now: datetime | None = None,
) -> None:
    """Mail ``user`` a link to choose their first password (audited)."""
    now = now or utcnow()
    token = _issue(session=session, user=user, purpose=INVITATION, settings=settings, now=now)
    mail = messages.invitation(
        language=mail_language(user, default=settings.default_language),
        brand=mail_brand(session=session, base_url=base_url),
        name=user.name,
        email=user.email,
        link=link_url(base_url, token),
        hours=settings.invitation_hours,
    )
    enqueue(session=session, recipient=user.email, mail=mail)
    _audit(session=session, actor=actor, action="user.invitation_sent", user=user)


def send_reset_link(
    *,
    session: Session,
    user: User,
    settings: Settings,
    base_url: str,
    actor: User | None,
    now: datetime | None = None,
) -> None:
    """Mail ``user`` a link to set a new password (audited, with who asked: ``actor`` None is
    the user themselves, through "Forgot your password?")."""
    now = now or utcnow()
    token = _issue(session=session, user=user, purpose=RESET, settings=settings, now=now)
    mail = messages.password_reset(
        language=mail_language(user, default=settings.default_language),
        brand=mail_brand(session=session, base_url=base_url),
        name=user.name,
        link=link_url(base_url, token),
        minutes=settings.password_reset_minutes,
    )
    enqueue(session=session, recipient=user.email, mail=mail)
    _audit(session=session, actor=actor, action="user.reset_link_sent", user=user)


def _audit(*, session: Session, actor: User | None, action: str, user: User) -> None:
    record(
        session=session,
        actor=actor,
        action=action,
        target_type="user",
        target_id=str(user.id),
        detail={"email": user.email},
    )


def _throttle_key(scope: str, value: str) -> str:
    return hashlib.sha256(f"{scope}\0{value}".encode()).hexdigest()


def _locked_tallies(
    session: Session, keys: dict[str, tuple[str, str]], now: datetime
) -> dict[str, LoginThrottle]:
    """The reset throttle rows (scope → key), created when missing and locked until commit;
    the INSERT first takes SQLite's write lock, as sign-in does (access/login.py)."""
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    for scope, (key, account) in sorted(keys.items(), key=lambda item: item[1][0]):
        session.execute(
            insert(LoginThrottle)
            .values(
                key=key,
                scope=scope,
                account=account,
                address="",
                user_id=None,
                failures=0,
                window_started_at=now,
                updated_at=now,
            )
            .on_conflict_do_nothing(index_elements=["key"])
        )
    rows = session.scalars(
        select(LoginThrottle)
        .where(LoginThrottle.key.in_([key for key, _ in keys.values()]))
        .order_by(LoginThrottle.key)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).all()
    by_key = {row.key: row for row in rows}
    return {scope: by_key[key] for scope, (key, _) in keys.items()}


def request_reset(
    *,
    session: Session,
    email: str,
    client_address: str,
    settings: Settings,
    base_url: str,
    now: datetime | None = None,
) -> None:
    """ "Forgot your password?": mail a reset link when ``email`` belongs to an account that
    is not blocked and the limits allow. Returns nothing, raises nothing: the caller's answer
    must be the same whatever happened here."""
    now = now or utcnow()
    account = account_hash(email, settings=settings)
    rows = _locked_tallies(
        session,
        {
            RESET_ADDRESS_SCOPE: (
                _throttle_key(RESET_ADDRESS_SCOPE, client_address[:64]),
                "",
            ),
            RESET_ACCOUNT_SCOPE: (_throttle_key(RESET_ACCOUNT_SCOPE, account), account),
        },
        now,
    )
    decision = decide_reset(
        address=_tally(rows[RESET_ADDRESS_SCOPE]),
        account=_tally(rows[RESET_ACCOUNT_SCOPE]),
        limits=ResetLimits(
            per_address=settings.password_reset_address_per_hour,
            per_account=settings.password_reset_account_per_hour,
        ),
        now=now,
    )
    for scope, tally in (
        (RESET_ADDRESS_SCOPE, decision.address),
        (RESET_ACCOUNT_SCOPE, decision.account),
    ):
        rows[scope].failures = tally.failures
        rows[scope].window_started_at = tally.window_started_at or now
        rows[scope].updated_at = now
    if not decision.send:
        return
    user = find_user_by_email(session=session, email=email) if email.strip() else None
    if user is None or user.is_blocked:
        return
    send_reset_link(
        session=session, user=user, settings=settings, base_url=base_url, actor=None, now=now
    )


def _tally(row: LoginThrottle) -> Tally:
    return Tally(failures=row.failures, window_started_at=row.window_started_at)


def check_link(
    *, session: Session, token: str, settings: Settings, now: datetime | None = None
) -> ValidLink:
    """The link and its user, or LinkRefused saying why not."""
    now = now or utcnow()
    link = session.get(PasswordLink, _token_hash(token)) if token else None
    user = session.get(User, link.user_id) if link is not None else None
    if link is None or user is None or user.is_blocked:
        raise LinkRefused(LinkProblem.UNKNOWN)
    if link.used_at is not None:
        raise LinkRefused(LinkProblem.USED)
    if now >= link.expires_at:
        raise LinkRefused(LinkProblem.EXPIRED)
    if not hmac.compare_digest(
        link.password_fingerprint, password_fingerprint(user, settings=settings)
    ):
        raise LinkRefused(LinkProblem.PASSWORD_CHANGED)
    return ValidLink(link=link, user=user)


def set_password_with_link(
    *,
    session: Session,
    token: str,
    new_password: str,
    repeat_password: str,
    settings: Settings,
    now: datetime | None = None,
) -> User:
    """Set the password a link was made for. The rules of any new password apply (UserInputError,
    the link still valid); then the link is spent, every session of the user ends, the sign-in
    waits on the account end (an unlock after a reset), and the change is audited and, for a
    reset, mailed to the user."""
    now = now or utcnow()
    valid = check_link(session=session, token=token, settings=settings, now=now)
    user = valid.user
    errors: dict[str, str] = {}
    try:
        check_password_rules(
            new_password, field="new_password", user_inputs=(user.email, user.name)
        )
    except UserInputError as error:
        errors.update(error.errors)
    if not errors and new_password != repeat_password:
        errors["repeat_password"] = _("The two new passwords are not the same.")
    if errors:
        raise UserInputError(errors=errors)
    # Spent at most once, however many posts of the same link race: only one UPDATE matches.
    spent = session.execute(
        update(PasswordLink)
        .where(PasswordLink.id == valid.link.id, PasswordLink.used_at.is_(None))
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    if getattr(spent, "rowcount", 0) != 1:
        raise LinkRefused(LinkProblem.USED)
    user.password_hash = hash_password(new_password)
    end_all_sessions(session=session, user_id=user.id)
    end_lockout(session=session, user=user)
    invited = valid.link.purpose == INVITATION
    _audit(
        session=session,
        actor=user,
        action="user.invitation_accepted" if invited else "user.password_reset",
        user=user,
    )
    if not invited:
        notify_credential_changed(
            session=session,
            user=user,
            what=PASSWORD_RESET,
            default_language=settings.default_language,
            now=now,
        )
    session.flush()
    return user
