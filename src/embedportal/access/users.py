"""Creating and changing users: the rules every entry point (forms, CLI, demo) goes through."""

from __future__ import annotations

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from embedportal.access.audit import record
from embedportal.access.passwords import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH, hash_password
from embedportal.db.models import Role, User


class UserInputError(ValueError):
    """A user-facing problem with the input; the message is shown as is."""


def normalise_email(email: str) -> str:
    email = email.strip()
    if not email:
        raise UserInputError("Enter an e-mail address.")
    try:
        # No DNS lookups: the portal may run where it cannot resolve the users' domains.
        result = validate_email(email, check_deliverability=False)
    except EmailNotValidError as error:
        raise UserInputError(f"'{email}' is not a valid e-mail address: {error}") from None
    return result.normalized.lower()


def check_password_rules(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UserInputError(f"The password must have at least {MIN_PASSWORD_LENGTH} characters.")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise UserInputError(f"The password must have at most {MAX_PASSWORD_LENGTH} characters.")


def find_user_by_email(*, session: Session, email: str) -> User | None:
    return session.scalar(select(User).where(func.lower(User.email) == email.strip().lower()))


def create_user(
    *,
    session: Session,
    email: str,
    password: str,
    name: str = "",
    role: Role = Role.VIEWER,
    actor: User | None,
) -> User:
    normalised = normalise_email(email)
    check_password_rules(password)
    if find_user_by_email(session=session, email=normalised) is not None:
        raise UserInputError(f"A user with the e-mail {normalised} already exists.")
    user = User(
        email=normalised,
        name=name.strip()[:200],
        password_hash=hash_password(password),
        role=role,
        rls_roles=[],
    )
    session.add(user)
    session.flush()
    record(
        session=session,
        actor=actor,
        action="user.created",
        target_type="user",
        target_id=str(user.id),
        detail={"email": user.email, "role": user.role.value},
    )
    return user
