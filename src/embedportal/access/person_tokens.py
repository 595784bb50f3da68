"""A signed-in person's own Power BI token (Entra, ``tokenType: Aad``), for user-owned
embedding: renewed with msal from their stored refresh token, and kept in this process until
it nears expiry, so a cache hit reads and writes no database row.

Blocking (msal, the database): callers run :meth:`PersonTokens.token_for` in a worker thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from embedportal.access.microsoft_accounts import MicrosoftSignIns, sign_in_registration
from embedportal.access.microsoft_tokens import (
    keep_refresh_token,
    revoke_refresh_token,
    stored_refresh_token,
)
from embedportal.db.session import session_scope
from embedportal.powerbi.signin import SignInRefused
from embedportal.settings import Settings

# Renewed this long before it expires, so a viewer never holds one about to lapse.
DEFAULT_MARGIN_SECONDS = 300.0


@dataclass(frozen=True, slots=True)
class PersonToken:
    access_token: str = field(repr=False)
    expires_at: datetime


class PersonTokenRefused(Exception):
    """No token for this person. ``reason``: ``no_refresh_token`` (never signed in with
    Microsoft, or signed out since), ``not_configured`` (no app registration), ``refused``
    (Entra refused the refresh token: it is dropped, the person signs in again) or
    ``unreachable`` (try again later)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PersonTokens:
    """user id → their current Power BI token, renewed at most once at a time per user."""

    def __init__(
        self,
        *,
        margin_seconds: float = DEFAULT_MARGIN_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._margin = margin_seconds
        self._clock = clock
        self._tokens: dict[int, PersonToken] = {}
        self._locks: dict[int, threading.Lock] = {}
        self._guard = threading.Lock()

    def _fresh(self, user_id: int) -> PersonToken | None:
        token = self._tokens.get(user_id)
        if token is not None and token.expires_at.timestamp() - self._clock() > self._margin:
            return token
        return None

    def token_for(
        self,
        *,
        user_id: int,
        session_factory: sessionmaker[Session],
        settings: Settings,
        flows: MicrosoftSignIns,
    ) -> PersonToken:
        cached = self._fresh(user_id)
        if cached is not None:
            return cached
        with self._guard:
            lock = self._locks.setdefault(user_id, threading.Lock())
        with lock:
            cached = self._fresh(user_id)  # another thread renewed it meanwhile
            if cached is not None:
                return cached
            with session_scope(session_factory) as db:
                refresh_token = stored_refresh_token(session=db, settings=settings, user_id=user_id)
                app = sign_in_registration(session=db, settings=settings).app
            if refresh_token is None:
                raise PersonTokenRefused("no_refresh_token")
            if app is None:
                raise PersonTokenRefused("not_configured")
            try:
                renewed = flows.get(app).refresh(refresh_token=refresh_token)
            except SignInRefused as refusal:
                if refusal.reason == "unreachable":
                    raise PersonTokenRefused("unreachable") from None
                with session_scope(session_factory) as db:
                    revoke_refresh_token(session=db, user_id=user_id)
                raise PersonTokenRefused("refused") from None
            with session_scope(session_factory) as db:
                keep_refresh_token(
                    session=db,
                    settings=settings,
                    user_id=user_id,
                    refresh_token=renewed.refresh_token,
                )
            token = PersonToken(renewed.access_token, renewed.expires_at)
            self._tokens[user_id] = token
            return token

    def forget(self, user_id: int) -> None:
        """Drop the user's token here (signed out, blocked): the next ask renews or refuses."""
        self._tokens.pop(user_id, None)
