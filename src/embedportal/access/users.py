"""Creating and changing users: the rules every entry point (forms, CLI, demo) goes through.

Every function validates all of its input before it changes anything, raises `UserInputError`
with one message per form field, and writes an audit entry (never a password) for each change.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session

from embedportal.access.audit import apply_changes, record
from embedportal.access.credential_notices import (
    PASSWORD_CHANGED_BY_USER,
    PASSWORD_SET_BY_ADMIN,
    PASSWORD_SET_FROM_CLI,
    notify_credential_changed,
)
from embedportal.access.microsoft_tokens import revoke_refresh_token
from embedportal.access.passwords import (
    MAX_NEW_PASSWORD_LENGTH,
    MIN_PASSWORD_LENGTH,
    MIN_STRENGTH,
    NO_PASSWORD_YET,
    hash_password,
    password_strength,
    verify_password,
)
from embedportal.access.sessions import end_all_sessions
from embedportal.db.models import LoginThrottle, Role, User, WebSession
from embedportal.i18n import LANGUAGES, _

# Power BI's limits on an effective identity (EffectiveIdentity.username and .roles).
MAX_RLS_USERNAME_LENGTH = 256
MAX_RLS_ROLES = 50
MAX_RLS_ROLE_LENGTH = 50
MAX_NAME_LENGTH = 200
MAX_EMAIL_LENGTH = 320
P = ParamSpec("P")
T = TypeVar("T")

# The key of a problem that belongs to the whole form rather than to one field.
FORM = "_form"


class UserInputError(ValueError):
    """A user-facing problem with the input; the message is shown as is.

    `errors` maps form field names to messages, so a form shows each next to its field.
    """

    def __init__(
        self, message: str = "", *, field: str = FORM, errors: Mapping[str, str] | None = None
    ) -> None:
        problems = dict(errors) if errors else {field: message}
        super().__init__(message or " ".join(problems.values()))
        self.errors = problems


def _raise_if(errors: Mapping[str, str]) -> None:
    if errors:
        raise UserInputError(errors=errors)


def _audit(
    *, session: Session, actor: User | None, action: str, user: User, **detail: object
) -> None:
    """An entry about ``user`` that gives the e-mail, so the trail still reads after the
    address changes or the user is deleted."""
    record(
        session=session,
        actor=actor,
        action=action,
        target_type="user",
        target_id=str(user.id),
        detail={"email": user.email, **detail},
    )


def normalise_email(email: str, *, field: str = "email") -> str:
    email = email.strip()
    if not email:
        raise UserInputError(_("Enter an e-mail address."), field=field)
    if len(email) > MAX_EMAIL_LENGTH:
        raise UserInputError(_("That e-mail address is too long."), field=field)
    try:
        # No DNS lookups: the portal may run where it cannot resolve the users' domains.
        result = validate_email(email, check_deliverability=False)
    except EmailNotValidError:
        raise UserInputError(
            _("“%(email)s” is not a valid e-mail address (like name@example.com).", email=email),
            field=field,
        ) from None
    return result.normalized.lower()


def check_password_rules(
    password: str, *, field: str = "password", user_inputs: Sequence[str] = ()
) -> None:
    """Length (12 to 128) and strength: no common or breached password, nor one made of the
    user's own e-mail or name (``user_inputs``). No rules about kinds of characters."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UserInputError(
            _("The password must have at least %(count)d characters.", count=MIN_PASSWORD_LENGTH),
            field=field,
        )
    if len(password) > MAX_NEW_PASSWORD_LENGTH:
        raise UserInputError(
            _(
                "The password must have at most %(count)d characters.",
                count=MAX_NEW_PASSWORD_LENGTH,
            ),
            field=field,
        )
    if password_strength(password, user_inputs=user_inputs) < MIN_STRENGTH:
        raise UserInputError(
            _(
                "This password is too easy to guess: it is a common password, close to one, or "
                "made of your e-mail or name. A few unusual words together work well."
            ),
            field=field,
        )


def parse_role(value: Role | str) -> Role:
    if isinstance(value, Role):
        return value
    try:
        return Role(value.strip())
    except ValueError:
        raise UserInputError(_("Choose administrator or viewer."), field="role") from None


def normalise_rls_username(value: str | None) -> str | None:
    """The RLS username sent to Power BI, or None to send the user's e-mail address."""
    text = (value or "").strip()
    if not text:
        return None
    if len(text) > MAX_RLS_USERNAME_LENGTH:
        raise UserInputError(
            _(
                "The RLS username must have at most %(count)d characters.",
                count=MAX_RLS_USERNAME_LENGTH,
            ),
            field="rls_username",
        )
    if any(character.isspace() for character in text):
        raise UserInputError(_("The RLS username cannot contain spaces."), field="rls_username")
    return text


def parse_rls_roles(value: str | Sequence[str], *, field: str = "rls_roles") -> list[str]:
    """RLS roles from a comma-separated text (a form) or a list (an API), checked against Power
    BI's limits: at most 50 roles of at most 50 characters, none containing a comma."""
    if isinstance(value, str):
        candidates = value.split(",")
    else:
        candidates = list(value)
        if any("," in role for role in candidates):
            raise UserInputError(_("A role name cannot contain a comma."), field=field)
    roles: list[str] = []
    for candidate in candidates:
        role = candidate.strip()
        if role and role not in roles:
            roles.append(role)
    if len(roles) > MAX_RLS_ROLES:
        raise UserInputError(
            _("Give at most %(count)d roles.", count=MAX_RLS_ROLES),
            field=field,
        )
    too_long = [role for role in roles if len(role) > MAX_RLS_ROLE_LENGTH]
    if too_long:
        raise UserInputError(
            _(
                "Role names have at most %(count)d characters: “%(role)s” is longer.",
                count=MAX_RLS_ROLE_LENGTH,
                role=_shorten(too_long[0]),
            ),
            field=field,
        )
    return roles


def _shorten(text: str, length: int = 24) -> str:
    return text if len(text) <= length else text[: length - 1] + "…"


def rls_username_for(user: User) -> str:
    """The username Power BI receives in the effective identity: set per user, else the e-mail."""
    return user.rls_username or user.email


def find_user_by_email(*, session: Session, email: str) -> User | None:
    return session.scalar(select(User).where(func.lower(User.email) == email.strip().lower()))


def _name(value: str) -> str:
    return " ".join(value.split())[:MAX_NAME_LENGTH]


def _collect(
    errors: dict[str, str], check: Callable[P, T], *args: P.args, **kwargs: P.kwargs
) -> T | None:
    """Run one validator; file its problem under its field and carry on with the next."""
    try:
        return check(*args, **kwargs)
    except UserInputError as error:
        errors.update(error.errors)
        return None


def create_user(
    *,
    session: Session,
    email: str,
    password: str | None,
    name: str = "",
    role: Role | str = Role.VIEWER,
    rls_username: str | None = None,
    rls_roles: str | Sequence[str] = (),
    may_start_capacity: bool = False,
    keeps_capacity_on: bool = False,
    actor: User | None,
) -> User:
    errors: dict[str, str] = {}
    normalised = _collect(errors, normalise_email, email)
    # None: the user chooses their own password through an invitation (access/password_links).
    if password is not None:
        _collect(errors, check_password_rules, password, user_inputs=(email, name))
    chosen_role = _collect(errors, parse_role, role)
    username = _collect(errors, normalise_rls_username, rls_username)
    roles = _collect(errors, parse_rls_roles, rls_roles)
    if normalised is not None and find_user_by_email(session=session, email=normalised):
        errors["email"] = _("A user with the e-mail %(email)s already exists.", email=normalised)
    _raise_if(errors)
    assert normalised is not None and chosen_role is not None
    user = User(
        email=normalised,
        name=_name(name),
        password_hash=NO_PASSWORD_YET if password is None else hash_password(password),
        role=chosen_role,
        rls_username=username,
        rls_roles=roles or [],
        may_start_capacity=may_start_capacity,
        keeps_capacity_on=keeps_capacity_on,
    )
    session.add(user)
    session.flush()
    _audit(
        session=session,
        actor=actor,
        action="user.created",
        user=user,
        role=user.role.value,
        rls_username=user.rls_username,
        rls_roles=list(user.rls_roles),
        may_start_capacity=user.may_start_capacity,
        keeps_capacity_on=user.keeps_capacity_on,
    )
    return user


def update_user(
    *,
    session: Session,
    user: User,
    email: str,
    name: str,
    role: Role | str,
    rls_username: str | None,
    rls_roles: str | Sequence[str],
    may_start_capacity: bool,
    keeps_capacity_on: bool,
    actor: User | None,
) -> dict[str, list[object]]:
    """Change a user's details; returns what changed as {field: [before, after]}. ``actor``
    None: an API key (access/audit.py names it) or the command line."""
    errors: dict[str, str] = {}
    normalised = _collect(errors, normalise_email, email)
    chosen_role = _collect(errors, parse_role, role)
    username = _collect(errors, normalise_rls_username, rls_username)
    roles = _collect(errors, parse_rls_roles, rls_roles)
    if normalised is not None and normalised != user.email:
        existing = find_user_by_email(session=session, email=normalised)
        if existing is not None and existing.id != user.id:
            errors["email"] = _(
                "A user with the e-mail %(email)s already exists.", email=normalised
            )
    if (
        actor is not None
        and actor.id == user.id
        and chosen_role is not None
        and chosen_role != Role.ADMIN
    ):
        errors["role"] = _(
            "You cannot take away your own administrator role. Ask another administrator."
        )
    _raise_if(errors)
    assert normalised is not None and chosen_role is not None
    wanted: dict[str, object] = {
        "email": normalised,
        "name": _name(name),
        "role": chosen_role,
        "rls_username": username,
        "rls_roles": roles or [],
        "may_start_capacity": may_start_capacity,
        "keeps_capacity_on": keeps_capacity_on,
    }
    changes = apply_changes(user, wanted)
    if changes:
        session.flush()
        _audit(session=session, actor=actor, action="user.updated", user=user, changes=changes)
    return changes


def set_blocked(*, session: Session, user: User, blocked: bool, actor: User | None) -> None:
    """Block (sign out everywhere, refuse sign-in) or unblock a user; ``actor`` None is the
    command line."""
    if blocked and actor is not None and actor.id == user.id:
        raise UserInputError(_("You cannot block yourself."))
    if user.is_blocked == blocked:
        return
    user.is_blocked = blocked
    if blocked:
        end_all_sessions(session=session, user_id=user.id)
        revoke_refresh_token(session=session, user_id=user.id)
    else:
        # Unblocking is a fresh start, including for a lock-out from wrong passwords.
        end_lockout(session=session, user=user)
    _audit(
        session=session,
        actor=actor,
        action="user.blocked" if blocked else "user.unblocked",
        user=user,
    )


def end_lockout(*, session: Session, user: User) -> int:
    """End every sign-in wait and failure count on ``user``'s account, from every address; how
    many throttle rows held any (0: nothing to end). The addresses the user signed in from stay
    remembered (access/throttle_policy.py)."""
    held = update(LoginThrottle).where(
        LoginThrottle.user_id == user.id,
        or_(LoginThrottle.failures > 0, LoginThrottle.locked_until.is_not(None)),
    )
    result = session.execute(
        held.values(failures=0, locked_until=None).execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def unlock_user(*, session: Session, user: User, actor: User | None) -> int:
    """An administrator lets ``user`` try again at once from anywhere (audited); see
    `end_lockout` for the number (0: there was nothing to unlock, and nothing is audited)."""
    ended = end_lockout(session=session, user=user)
    if ended:
        _audit(session=session, actor=actor, action="user.unlocked", user=user)
    return ended


def delete_user(*, session: Session, user: User, actor: User | None) -> None:
    """Delete a user, their sessions, memberships and grants. The audit trail keeps the e-mail."""
    if actor is not None and actor.id == user.id:
        raise UserInputError(_("You cannot delete yourself."))
    end_all_sessions(session=session, user_id=user.id)
    revoke_refresh_token(session=session, user_id=user.id)
    _audit(session=session, actor=actor, action="user.deleted", user=user, role=user.role.value)
    session.delete(user)
    session.flush()


def set_password(
    *,
    session: Session,
    user: User,
    password: str,
    actor: User | None,
    default_language: str = "en",
) -> None:
    """An administrator (``actor`` None: the command line) sets a user's password: the user is
    signed out everywhere, any lock-out ends (the usual reason is a forgotten password), and
    the user is told by mail."""
    check_password_rules(password, user_inputs=(user.email, user.name))
    user.password_hash = hash_password(password)
    end_lockout(session=session, user=user)
    end_all_sessions(session=session, user_id=user.id)
    _audit(session=session, actor=actor, action="user.password_set", user=user)
    notify_credential_changed(
        session=session,
        user=user,
        what=PASSWORD_SET_FROM_CLI if actor is None else PASSWORD_SET_BY_ADMIN,
        default_language=default_language,
    )


def change_own_password(
    *,
    session: Session,
    user: User,
    current_password: str,
    new_password: str,
    repeat_password: str,
    keep_session_id: str | None,
    default_language: str = "en",
) -> None:
    """A user changes their password; their other browsers are signed out, and a mail tells
    them (whoever changed it may not have been them)."""
    errors: dict[str, str] = {}
    if not verify_password(user.password_hash, current_password):
        errors["current_password"] = _("That is not your current password.")
    _collect(
        errors,
        check_password_rules,
        new_password,
        field="new_password",
        user_inputs=(user.email, user.name),
    )
    if "new_password" not in errors and new_password != repeat_password:
        errors["repeat_password"] = _("The two new passwords are not the same.")
    _raise_if(errors)
    user.password_hash = hash_password(new_password)
    statement = delete(WebSession).where(WebSession.user_id == user.id)
    if keep_session_id is not None:
        statement = statement.where(WebSession.id != keep_session_id)
    session.execute(statement)
    _audit(session=session, actor=user, action="user.password_changed", user=user)
    notify_credential_changed(
        session=session, user=user, what=PASSWORD_CHANGED_BY_USER, default_language=default_language
    )


def set_language(*, session: Session, user: User, language: str | None) -> None:
    """The user's UI language; None follows the browser."""
    if language is not None and language not in LANGUAGES:
        raise UserInputError(_("Choose one of the languages offered."), field="language")
    user.language = language
    session.flush()


@dataclass(frozen=True)
class UserPage:
    users: list[User]
    total: int


def list_users(
    *,
    session: Session,
    search: str = "",
    offset: int = 0,
    limit: int = 50,
    only_ids: Collection[int] | None = None,
    blocked: bool | None = None,
) -> UserPage:
    """Users ordered by e-mail; `search` matches part of the e-mail or name, any case;
    ``only_ids`` keeps those users alone (the locked ones, say); ``blocked`` the blocked ones
    (True) or the others (False)."""
    condition = None
    text = search.strip().lower()
    if text:
        condition = or_(
            func.lower(User.email).contains(text, autoescape=True),
            func.lower(User.name).contains(text, autoescape=True),
        )
    if only_ids is not None:
        among = User.id.in_(sorted(only_ids))
        condition = among if condition is None else condition & among
    if blocked is not None:
        chosen = User.is_blocked.is_(blocked)
        condition = chosen if condition is None else condition & chosen
    query = select(User).order_by(User.email)
    count = select(func.count()).select_from(User)
    if condition is not None:
        query = query.where(condition)
        count = count.where(condition)
    users = list(session.scalars(query.offset(max(offset, 0)).limit(limit)))
    return UserPage(users=users, total=session.scalar(count) or 0)


def all_users(*, session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.email)))
