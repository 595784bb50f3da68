"""Dependencies routes declare: a database session, and who may call them.

Authorisation is a dependency, never an `if` repeated in route bodies.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from sqlalchemy.orm import Session

from embedportal.db.models import User
from embedportal.db.session import session_scope
from embedportal.settings import Settings

CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"


class NotSignedIn(Exception):
    """Raised by require_user; pages redirect to sign-in, the API answers 401 JSON."""


class NotAllowed(Exception):
    """Raised when the signed-in user lacks the role; pages show 403, the API answers 403 JSON."""


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_db(request: Request) -> Iterator[Session]:
    with session_scope(request.app.state.session_factory) as session:
        yield session


# "function" scope commits before the response leaves, so a redirect never outruns its write.
DbSession = Annotated[Session, Depends(get_db, scope="function")]


async def verify_csrf_when_signed_in(request: Request) -> None:
    """For sign-out: a browser whose session already ended has nothing left to protect, and
    its page still carries the old session's token, so it is let through."""
    if request.state.user is not None:
        await verify_csrf(request)


def optional_user(request: Request, db: DbSession) -> User | None:
    """The signed-in user, loaded into this request's database session."""
    user: User | None = request.state.user
    if user is None:
        return None
    return db.get(User, user.id)


def require_user(user: Annotated[User | None, Depends(optional_user)]) -> User:
    if user is None or user.is_blocked:
        raise NotSignedIn()
    return user


def require_admin(user: Annotated[User, Depends(require_user)]) -> User:
    if not user.is_admin:
        raise NotAllowed()
    return user


async def verify_csrf(request: Request) -> None:
    """State-changing requests must echo the CSRF token (form field or X-CSRF-Token header)."""
    expected: str = getattr(request.state, "csrf_token", "")
    supplied = request.headers.get(CSRF_HEADER)
    if supplied is None:
        content_type = request.headers.get("content-type", "")
        if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            form = await request.form()
            value = form.get(CSRF_FIELD)
            supplied = value if isinstance(value, str) else None
    if not expected or not supplied or not hmac.compare_digest(expected, supplied):
        raise HTTPException(
            status_code=403,
            detail="The form has expired or did not come from this site. Reload and try again.",
        )


CurrentUser = Annotated[User, Depends(require_user)]
AdminUser = Annotated[User, Depends(require_admin)]
OptionalUser = Annotated[User | None, Depends(optional_user)]
CsrfProtected = Depends(verify_csrf)
CsrfProtectedWhenSignedIn = Depends(verify_csrf_when_signed_in)
