"""A user's Entra refresh token at rest: encrypted under a key of its own (derived from the
secret key), never sent to a browser, forgotten on sign-out, block and delete."""

from __future__ import annotations

from cryptography.fernet import InvalidToken
from sqlalchemy import update
from sqlalchemy.orm import Session

from embedportal.access.organization import fernet_for
from embedportal.db.models import MicrosoftAccount
from embedportal.settings import Settings

_REFRESH_TOKEN_PURPOSE = b"embedportal/microsoft-refresh-token"


def link_of(*, session: Session, user_id: int) -> MicrosoftAccount | None:
    """The user's Entra account, if they ever signed in with Microsoft."""
    return session.get(MicrosoftAccount, user_id)


def keep_refresh_token(
    *, session: Session, settings: Settings, user_id: int, refresh_token: str | None
) -> None:
    """Store the user's newest refresh token, encrypted (None keeps nothing)."""
    link = link_of(session=session, user_id=user_id)
    if link is None:
        return
    link.refresh_token_encrypted = (
        fernet_for(settings, _REFRESH_TOKEN_PURPOSE).encrypt(refresh_token.encode()).decode("ascii")
        if refresh_token
        else ""
    )


def stored_refresh_token(*, session: Session, settings: Settings, user_id: int) -> str | None:
    """The user's refresh token, or None (none kept, or unreadable under a changed key)."""
    link = link_of(session=session, user_id=user_id)
    if link is None or not link.refresh_token_encrypted:
        return None
    try:
        fernet = fernet_for(settings, _REFRESH_TOKEN_PURPOSE)
        return fernet.decrypt(link.refresh_token_encrypted.encode("ascii")).decode()
    except (InvalidToken, ValueError):
        return None


def revoke_refresh_token(*, session: Session, user_id: int) -> bool:
    """Forget the user's refresh token (sign-out, block, delete); True when one was kept."""
    result = session.execute(
        update(MicrosoftAccount)
        .where(MicrosoftAccount.user_id == user_id, MicrosoftAccount.refresh_token_encrypted != "")
        .values(refresh_token_encrypted="")
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0))
