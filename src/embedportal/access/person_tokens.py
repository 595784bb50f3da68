"""A signed-in person's own Power BI token (Entra, ``tokenType: Aad``), for user-owned
embedding: renewed with msal from their stored refresh token, and kept in this process until
it nears expiry, so a cache hit reads and writes no database row. Also the Power BI workspaces
that token lists (the person's own rights), kept a few minutes.

Blocking (msal, the database): callers run :meth:`PersonTokens.token_for` in a worker thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import httpx
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

logger = logging.getLogger("embedportal.access")

# Renewed this long before it expires, so a viewer never holds one about to lapse.
DEFAULT_MARGIN_SECONDS = 300.0
# An ask for a newer token still gets one obtained less than this long ago.
RENEW_GRACE_SECONDS = 30.0
# How long the workspaces a person's own token lists are kept (their Power BI rights).
DEFAULT_WORKSPACES_SECONDS = 300.0
_HTTP_TIMEOUT = 10.0
# Push events addressed to one user after which what is kept for them is dropped.
_FORGET_ON = frozenset({"access", "session"})


@dataclass(frozen=True, slots=True)
class PersonToken:
    access_token: str = field(repr=False)
    expires_at: datetime
    # Its whole life when it was obtained (0: unknown), which bounds the renewal margin.
    lifetime_seconds: float = 0.0
    # When it was obtained (the PersonTokens clock), for asks that want a newer one.
    obtained_at: float = 0.0


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
        workspaces_seconds: float = DEFAULT_WORKSPACES_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._margin = margin_seconds
        self._workspaces_seconds = workspaces_seconds
        self._clock = clock
        self._tokens: dict[int, PersonToken] = {}
        # user id → (when listed, the workspace ids their own token lists)
        self._workspaces: dict[int, tuple[float, frozenset[str]]] = {}
        self._locks: dict[int, threading.Lock] = {}
        self._guard = threading.Lock()

    def _fresh(self, user_id: int, *, renew: bool = False) -> PersonToken | None:
        token = self._tokens.get(user_id)
        if token is None:
            return None
        if renew:
            # Asked for a newer one (the token the viewer holds is due): only a token obtained
            # just now is kept, so the several reports of a TV wall share one renewal.
            grace = RENEW_GRACE_SECONDS
            if token.lifetime_seconds:
                grace = min(grace, token.lifetime_seconds / 4)
            if self._clock() - token.obtained_at >= grace:
                return None
        # A short-lived token (a test's, or a tenant's policy) is kept for two thirds of its life.
        margin = self._margin
        if token.lifetime_seconds:
            margin = min(margin, token.lifetime_seconds / 3)
        if token.expires_at.timestamp() - self._clock() > margin:
            return token
        return None

    def cached(self, user_id: int, *, renew: bool = False) -> PersonToken | None:
        """The user's token if one is kept and not yet due for renewal (``renew``: and was
        obtained just now): memory only, so the event loop may ask (no thread, no database)."""
        return self._fresh(user_id, renew=renew)

    def token_for(
        self,
        *,
        user_id: int,
        session_factory: sessionmaker[Session],
        settings: Settings,
        flows: MicrosoftSignIns,
        renew: bool = False,
    ) -> PersonToken:
        """The user's token, renewed when due (``renew``: unless obtained just now)."""
        cached = self._fresh(user_id, renew=renew)
        if cached is not None:
            return cached
        with self._guard:
            lock = self._locks.setdefault(user_id, threading.Lock())
        with lock:
            cached = self._fresh(user_id, renew=renew)  # another thread renewed it meanwhile
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
            now = self._clock()
            lifetime = max(0.0, renewed.expires_at.timestamp() - now)
            token = PersonToken(renewed.access_token, renewed.expires_at, lifetime, now)
            self._tokens[user_id] = token
            return token

    def workspaces_for(
        self,
        *,
        user_id: int,
        session_factory: sessionmaker[Session],
        settings: Settings,
        flows: MicrosoftSignIns,
        api_url: str,
    ) -> frozenset[str] | None:
        """The ids (lower case) of the Power BI workspaces the person's own token lists
        (``GET /v1.0/myorg/groups``), kept ``workspaces_seconds``; None when that cannot be
        known now (no Microsoft sign-in, Entra or Power BI unreachable), and nothing is kept.
        Blocking: call it in a worker thread."""
        kept = self._workspaces.get(user_id)
        if kept is not None and self._clock() - kept[0] < self._workspaces_seconds:
            return kept[1]
        try:
            token = self.token_for(
                user_id=user_id, session_factory=session_factory, settings=settings, flows=flows
            )
        except PersonTokenRefused:
            return None
        listed = _list_workspaces(api_url, token.access_token)
        if listed is not None:
            self._workspaces[user_id] = (self._clock(), listed)
        return listed

    def forget(self, user_id: int) -> None:
        """Drop the user's token and workspaces here (signed out, blocked, deleted): the next
        ask renews or refuses."""
        self._tokens.pop(user_id, None)
        self._workspaces.pop(user_id, None)

    def forget_addressed(self, event: object) -> None:
        """A push listener: an event addressed to one user (``access``: blocked, deleted, access
        changed; ``session``: signed out) makes this process forget what it keeps for them."""
        user_id = getattr(event, "user_id", None)
        if isinstance(user_id, int) and getattr(event, "kind", "") in _FORGET_ON:
            self.forget(user_id)


def _list_workspaces(api_url: str, access_token: str) -> frozenset[str] | None:
    """The workspace ids a person's token lists, or None when Power BI did not answer so."""
    url = f"{api_url.rstrip('/')}/v1.0/myorg/groups"
    try:
        response = httpx.get(
            url, headers={"Authorization": f"Bearer {access_token}"}, timeout=_HTTP_TIMEOUT
        )
    except httpx.HTTPError as error:
        logger.info("a person's workspaces could not be listed: %s", type(error).__name__)
        return None
    if response.status_code != 200:
        logger.info("a person's workspaces could not be listed: HTTP %s", response.status_code)
        return None
    try:
        values = response.json()["value"]
        return frozenset(str(item["id"]).lower() for item in values)
    except (ValueError, KeyError, TypeError):
        logger.info("a person's workspace list was not understood")
        return None
