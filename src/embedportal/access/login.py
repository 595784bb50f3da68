"""Signing in with e-mail and password: throttles, blocked users, equal answers, audit.

Every attempt costs one argon2 verification whatever the outcome (unknown e-mail, throttled,
wrong or right password), and unknown e-mails are throttled exactly like known ones, so neither
the answer nor its timing tells who has an account.

The throttles (access/throttle_policy.py) live in `login_throttles`. An attempt first reserves
itself as a failure in its own short transaction, holding the rows' lock: ``SELECT … FOR
UPDATE`` on PostgreSQL; on SQLite the transaction's first statement is a write, which takes
the database's write lock at once (as ``BEGIN IMMEDIATE`` would), so the rows are read and
written with no other writer in between. That reservation is committed *before* the password
is checked, so however many attempts race, each sees those before it, and the argon2 work is
done holding no lock. A right password gives the reservation back afterwards.

With two-step sign-in (access/two_step.py) a right password is only half: the reservation is
*not* given back, and each code typed on the second page reserves a failure in the same rows
the same way. Only the right code gives both back. So an attacker who knows the password guesses
codes no faster than passwords, and cannot reset the counters by signing in again with it.

Rows in the database, rather than in-process or Redis state, because sign-in is not a hot path
(a few writes per attempt), they hold across instances with or without Redis, and they survive
a restart, which an attacker could otherwise provoke to reset their counters.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import delete, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from embedportal.access.audit import record
from embedportal.access.passwords import (
    MAX_PASSWORD_LENGTH,
    dummy_hash,
    hash_password,
    needs_rehash,
    verify_password,
)
from embedportal.access.throttle_policy import (
    WINDOW,
    Decision,
    Limits,
    Tally,
    after_success,
    decide,
)
from embedportal.access.two_step import SecondFactor, is_enabled, verify_second_factor
from embedportal.access.users import MAX_EMAIL_LENGTH, find_user_by_email
from embedportal.db.models import LoginThrottle, User
from embedportal.settings import Settings

PAIR, ADDRESS, ACCOUNT = "pair", "address", "account"
MAX_ADDRESS_LENGTH = 64
# A throttle row untouched this long starts again (its waits are over long before); an
# address's remembered success is kept longer, so the owner stays "known" between holidays.
FORGET_FAILURES_AFTER = timedelta(days=1)
FORGET_SUCCESS_AFTER = timedelta(days=90)
PRUNE_BATCH = 500


class LoginFailureReason(enum.StrEnum):
    # Unknown e-mail or wrong password: one reason, so the page cannot tell them apart.
    INVALID = "invalid"
    # Too many failures lately (for this address, account or both): wait until `locked_until`.
    LOCKED = "locked"
    BLOCKED = "blocked"


@dataclass(frozen=True)
class LoginFailure:
    """Why a sign-in was refused; `locked_until` is set when the reason is LOCKED."""

    reason: LoginFailureReason
    locked_until: datetime | None = None


@dataclass(frozen=True)
class SecondStepNeeded:
    """The password was right and the user signs in with two steps: ask for the code (the
    sign-in is not done, and no session may start yet)."""

    user_id: int


@dataclass(frozen=True)
class _Keys:
    account: str  # keyed hash of the e-mail
    address: str
    pair: str
    address_only: str
    account_only: str

    def by_scope(self) -> dict[str, str]:
        return {PAIR: self.pair, ADDRESS: self.address_only, ACCOUNT: self.account_only}


def account_hash(email: str, *, settings: Settings) -> str:
    """The e-mail as the throttles store it: keyed, so neither the address nor a password typed
    into the e-mail field can be read back from the table."""
    key = settings.secret_key.get_secret_value().encode()
    normalised = email.strip().lower()[:MAX_EMAIL_LENGTH]
    return hmac.new(key, b"login-account\0" + normalised.encode(), hashlib.sha256).hexdigest()


def _row_key(scope: str, account: str, address: str) -> str:
    return hashlib.sha256(f"{scope}\0{account}\0{address}".encode()).hexdigest()


def _keys(email: str, address: str, settings: Settings) -> _Keys:
    account = account_hash(email, settings=settings)
    return _Keys(
        account=account,
        address=address,
        pair=_row_key(PAIR, account, address),
        address_only=_row_key(ADDRESS, "", address),
        account_only=_row_key(ACCOUNT, account, ""),
    )


def _limits(settings: Settings) -> Limits:
    return Limits(
        max_attempts=settings.login_max_attempts,
        longest_wait=timedelta(minutes=settings.login_lockout_minutes),
        address_limit=settings.login_address_max_failures,
        account_limit=settings.login_account_max_failures,
    )


def _locked_rows(
    session: Session, keys: _Keys, user: User | None, now: datetime
) -> dict[str, LoginThrottle]:
    """The three throttle rows of this attempt, created when missing, locked until commit.

    The INSERT comes first: on SQLite it is what takes the write lock before anything is read.
    Keys are always handled in the same order, so concurrent attempts never deadlock."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    scopes = keys.by_scope()
    for scope, key in sorted(scopes.items(), key=lambda item: item[1]):
        account = "" if scope == ADDRESS else keys.account
        session.execute(
            insert(LoginThrottle)
            .values(
                key=key,
                scope=scope,
                account=account,
                address="" if scope == ACCOUNT else keys.address,
                user_id=user.id if user is not None and scope != ADDRESS else None,
                failures=0,
                window_started_at=now,
                updated_at=now,
            )
            .on_conflict_do_nothing(index_elements=["key"])
        )
    rows = session.scalars(
        select(LoginThrottle)
        .where(LoginThrottle.key.in_(scopes.values()))
        .order_by(LoginThrottle.key)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).all()
    by_key = {row.key: row for row in rows}
    found = {scope: by_key[key] for scope, key in scopes.items()}
    if user is not None:
        # Tried before the account existed: from now on the rows name it (Admin → Users).
        for scope in (PAIR, ACCOUNT):
            if found[scope].user_id is None:
                found[scope].user_id = user.id
    return found


def _tally(row: LoginThrottle) -> Tally:
    return Tally(
        failures=row.failures,
        window_started_at=row.window_started_at,
        locked_until=row.locked_until,
        succeeded_at=row.succeeded_at,
    )


def _store(rows: Mapping[str, LoginThrottle], decision: Decision, now: datetime) -> None:
    _write(rows[PAIR], decision.pair, now)
    _write(rows[ADDRESS], decision.address, now)
    _write(rows[ACCOUNT], decision.account, now)


def _write(row: LoginThrottle, tally: Tally, now: datetime) -> None:
    row.failures = tally.failures
    row.window_started_at = tally.window_started_at or now
    row.locked_until = tally.locked_until
    row.succeeded_at = tally.succeeded_at
    row.updated_at = now


def _prune(session: Session, now: datetime) -> None:
    """Forget rows nobody has tried lately. Rows another attempt holds are skipped, not waited
    for (PostgreSQL's SKIP LOCKED), so pruning can never deadlock with a sign-in."""
    stale = (
        select(LoginThrottle.key)
        .where(
            or_(
                (LoginThrottle.updated_at < now - FORGET_FAILURES_AFTER)
                & LoginThrottle.succeeded_at.is_(None),
                LoginThrottle.updated_at < now - FORGET_SUCCESS_AFTER,
            )
        )
        .limit(PRUNE_BATCH)
        .with_for_update(skip_locked=True)
    )
    session.execute(
        delete(LoginThrottle)
        .where(LoginThrottle.key.in_(stale.scalar_subquery()))
        .execution_options(synchronize_session=False)
    )


def audited_email(email: str, *, user: User | None) -> str:
    """What the audit trail keeps of the e-mail an attempt claimed: the address when it is one
    (to search for), nothing when it is not, since that is usually a password typed into the
    wrong field."""
    if user is not None:
        return user.email
    try:
        validate_email(email, check_deliverability=False)
    except EmailNotValidError:
        return ""
    return email[:MAX_EMAIL_LENGTH]


def _failed(
    *,
    session: Session,
    email: str,
    address: str,
    user: User | None,
    reason: str,
    locked_until: datetime | None,
    action: str = "login.failed",
) -> None:
    claimed = audited_email(email, user=user)
    detail: dict[str, object] = {"reason": reason, "address": address}
    if not claimed and email:
        detail["email"] = "not an e-mail address (not kept)"
    if locked_until is not None:
        detail["locked_until"] = locked_until.isoformat()
    entry = record(
        session=session,
        actor=None,
        action=action,
        target_type="user" if user is not None else "",
        target_id=str(user.id) if user is not None else "",
        detail=detail,
    )
    # Not a verified actor, but the e-mail the attempt claimed, so it can be searched for.
    entry.actor_email = claimed


def _refused(
    *,
    session: Session,
    email: str,
    address: str,
    user: User | None,
    reason: str,
    locked_until: datetime | None = None,
) -> LoginFailure:
    """An attempt refused before its password or code is weighed: held back (``locked_until``)
    or a blocked account. Audited; the answer says which."""
    _failed(
        session=session,
        email=email,
        address=address,
        user=user,
        reason=reason,
        locked_until=locked_until,
    )
    session.flush()
    if locked_until is not None:
        return LoginFailure(LoginFailureReason.LOCKED, locked_until=locked_until)
    return LoginFailure(LoginFailureReason.BLOCKED)


def _signed_in(*, session: Session, user: User, now: datetime, detail: dict[str, object]) -> User:
    user.last_login_at = now
    record(
        session=session,
        actor=user,
        action="login.succeeded",
        target_type="user",
        target_id=str(user.id),
        detail=detail,
    )
    session.flush()
    return user


def _wrong_guess(
    *,
    session: Session,
    email: str,
    address: str,
    user: User | None,
    decision: Decision,
    reason: str,
    action: str = "login.failed",
) -> LoginFailure:
    """A wrong password or code, counted in ``decision``: audited (and the lock-out it starts,
    for a known account), then answered as locked while a wait runs, else as invalid."""
    wait_until = decision.pair.locked_until
    _failed(
        session=session,
        email=email,
        address=address,
        user=user,
        reason=reason,
        locked_until=wait_until,
        action=action,
    )
    if decision.starts_wait and user is not None:
        record(
            session=session,
            actor=None,
            action="login.locked",
            target_type="user",
            target_id=str(user.id),
            detail={
                "email": user.email,
                "address": address,
                "attempts": decision.pair.failures,
                "locked_until": wait_until.isoformat() if wait_until else None,
            },
        )
    session.flush()
    if wait_until is not None:
        return LoginFailure(LoginFailureReason.LOCKED, locked_until=wait_until)
    return LoginFailure(LoginFailureReason.INVALID)


def _reserve(
    *, session: Session, keys: _Keys, user: User | None, settings: Settings, now: datetime
) -> Decision:
    """Count this attempt as a failure before its password is checked, and commit that."""
    rows = _locked_rows(session, keys, user, now)
    decision = decide(
        pair=_tally(rows[PAIR]),
        address=_tally(rows[ADDRESS]),
        account=_tally(rows[ACCOUNT]),
        limits=_limits(settings),
        now=now,
    )
    if decision.wait_until is None:
        _store(rows, decision, now)
    _prune(session, now)
    session.commit()
    return decision


def _give_back(
    *, session: Session, keys: _Keys, user: User, now: datetime, given_back: int = 1
) -> None:
    """The right password (and code): the reserved failures are returned and the address
    remembered."""
    rows = _locked_rows(session, keys, user, now)
    _store(
        rows,
        after_success(
            pair=_tally(rows[PAIR]),
            address=_tally(rows[ADDRESS]),
            account=_tally(rows[ACCOUNT]),
            now=now,
            given_back=given_back,
        ),
        now,
    )


def authenticate(
    *,
    session: Session,
    email: str,
    password: str,
    client_address: str,
    settings: Settings,
    now: datetime,
) -> User | SecondStepNeeded | LoginFailure:
    """The user these credentials belong to, or why not; or that a code must follow.

    The attempt's reservation is committed before the password is checked (see the module's
    docstring); what follows (the outcome, the audit entry) is flushed, not committed."""
    email = email.strip().lower()[:MAX_EMAIL_LENGTH]
    address = client_address[:MAX_ADDRESS_LENGTH]
    # argon2 hashes any length, but a megabyte of "password" should not cost a megabyte of work;
    # no stored password is that long, so an over-long one is wrong (after the same work).
    candidate = password[:MAX_PASSWORD_LENGTH]
    too_long = len(password) > MAX_PASSWORD_LENGTH
    # No stored e-mail holds a control character, and PostgreSQL refuses NUL in a query: such
    # an e-mail is simply nobody's (and is throttled like any other).
    plausible = bool(email) and not any(ord(char) < 0x20 or ord(char) == 0x7F for char in email)
    user = find_user_by_email(session=session, email=email) if plausible else None
    keys = _keys(email, address, settings)
    decision = _reserve(session=session, keys=keys, user=user, settings=settings, now=now)

    if decision.wait_until is not None:
        # While held back the password is not even checked: no guessing goes on meanwhile.
        verify_password(dummy_hash(), candidate)
        return _refused(
            session=session,
            email=email,
            address=address,
            user=user,
            reason="throttled",
            locked_until=decision.wait_until,
        )

    right = verify_password(user.password_hash if user else dummy_hash(), candidate)
    if user is None or not right or too_long:
        return _wrong_guess(
            session=session,
            email=email,
            address=address,
            user=user,
            decision=decision,
            reason="wrong_password" if user is not None else "unknown",
        )

    if user.is_blocked:
        return _refused(session=session, email=email, address=address, user=user, reason="blocked")

    if needs_rehash(user.password_hash):
        # The hashing parameters were raised since this hash was made: upgrade it while the
        # plain password is at hand.
        user.password_hash = hash_password(candidate)
    if is_enabled(session=session, user_id=user.id):
        # Half signed in: the reservation stays counted until the code is right.
        session.flush()
        return SecondStepNeeded(user_id=user.id)
    _give_back(session=session, keys=keys, user=user, now=now)
    return _signed_in(session=session, user=user, now=now, detail={"address": address})


def complete_second_step(
    *,
    session: Session,
    user_id: int,
    code: str,
    client_address: str,
    settings: Settings,
    now: datetime,
) -> User | LoginFailure:
    """The second page of a two-step sign-in: the code from the app, or a recovery code, of
    the user whose password was right a moment ago (``user_id``, from the signed cookie the
    first step set). Throttled in the same rows as passwords (the module's docstring)."""
    address = client_address[:MAX_ADDRESS_LENGTH]
    user = session.get(User, user_id)
    if user is None:
        return LoginFailure(LoginFailureReason.INVALID)
    email = user.email
    keys = _keys(email, address, settings)
    decision = _reserve(session=session, keys=keys, user=user, settings=settings, now=now)
    if decision.wait_until is not None:
        return _refused(
            session=session,
            email=email,
            address=address,
            user=user,
            reason="throttled",
            locked_until=decision.wait_until,
        )
    if user.is_blocked:
        return _refused(session=session, email=email, address=address, user=user, reason="blocked")
    factor = verify_second_factor(
        session=session, user=user, typed=code, settings=settings, now=now
    )
    if factor is None:
        return _wrong_guess(
            session=session,
            email=email,
            address=address,
            user=user,
            decision=decision,
            reason="wrong_code",
            action="two_step.failed",
        )
    # This code's reservation and the password's, kept since the first step.
    _give_back(session=session, keys=keys, user=user, now=now, given_back=2)
    detail: dict[str, object] = {"address": address, "second_factor": SecondFactor(factor).value}
    return _signed_in(session=session, user=user, now=now, detail=detail)


# --- what administrators see and do ----------------------------------------------------------


@dataclass(frozen=True)
class Lockout:
    """An account some address must wait to try (or that only known addresses may try)."""

    user_id: int
    until: datetime
    addresses: tuple[str, ...]


def lockouts(
    *, session: Session, settings: Settings, now: datetime, user_ids: list[int] | None = None
) -> dict[int, Lockout]:
    """Accounts held back right now, by user id (all of them, or those of ``user_ids``)."""
    held = or_(
        (LoginThrottle.scope == PAIR) & (LoginThrottle.locked_until > now),
        (LoginThrottle.scope == ACCOUNT)
        & (LoginThrottle.failures >= settings.login_account_max_failures)
        & (LoginThrottle.window_started_at > now - WINDOW),
    )
    query = select(LoginThrottle).where(LoginThrottle.user_id.is_not(None), held)
    if user_ids is not None:
        query = query.where(LoginThrottle.user_id.in_(user_ids))
    found: dict[int, Lockout] = {}
    for row in session.scalars(query):
        until = _held_until(row, settings, now)
        if until is None or row.user_id is None:
            continue
        before = found.get(row.user_id)
        addresses = (row.address,) if row.scope == PAIR and row.address else ()
        if before is None:
            found[row.user_id] = Lockout(row.user_id, until, addresses)
        else:
            found[row.user_id] = replace(
                before,
                until=max(before.until, until),
                addresses=tuple(sorted({*before.addresses, *addresses})),
            )
    return found


def _held_until(row: LoginThrottle, settings: Settings, now: datetime) -> datetime | None:
    if row.scope == PAIR:
        if row.locked_until is not None and row.locked_until > now:
            return row.locked_until
        return None
    # The account's hourly ceiling, reached in a window still open: unknown addresses wait.
    window_ends = row.window_started_at + WINDOW
    if row.failures >= settings.login_account_max_failures and window_ends > now:
        return window_ends
    return None
