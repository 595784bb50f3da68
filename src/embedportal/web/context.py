"""Per-request context: who is signed in, their CSRF token and language.

Resolved once per request in a middleware, so every page (error pages included) knows the user
and speaks their language, and routes only declare what they require (see deps.py).
"""

from __future__ import annotations

import functools
import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from fastapi import Request, Response
from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool
from starlette.types import Message, Receive, Scope, Send

from embedportal import i18n
from embedportal.access.branding import DEFAULT_BRAND, Brand, brand_of
from embedportal.access.read_cache import ReadCache
from embedportal.access.sessions import resolve_session, session_cookie_of
from embedportal.access.sso_origins import sso_origins
from embedportal.asgi import HttpMiddleware
from embedportal.db.base import utcnow
from embedportal.db.models import User, WebSession
from embedportal.db.session import session_scope
from embedportal.settings import Settings
from embedportal.web.security_headers import mark_embeddable

ANONYMOUS_CSRF_COOKIE = "embedportal_csrf"
LANGUAGE_COOKIE = "embedportal_lang"


def _anonymous_csrf(request: Request) -> tuple[str, bool]:
    """A signed double-submit token for forms shown before sign-in; (token, is_new)."""
    serializer = URLSafeSerializer(
        request.app.state.settings.secret_key.get_secret_value(), salt="csrf"
    )
    raw = request.cookies.get(ANONYMOUS_CSRF_COOKIE)
    if raw:
        try:
            value = serializer.loads(raw)
            if isinstance(value, str):
                return value, False
        except BadSignature:
            pass
    return secrets.token_urlsafe(32), True


@dataclass(frozen=True)
class _Identity:
    user: User | None
    web_session_id: str | None
    csrf_token: str
    brand: Brand
    via_sso: bool = False
    sso_origins: str = ""  # who may frame an SSO session (access/sso_origins.py)


def _load_identity(
    session_factory: sessionmaker[Session], cookie_value: str | None, idle_minutes: int
) -> _Identity:
    with session_scope(session_factory) as db:
        record = resolve_session(session=db, cookie_value=cookie_value, idle_minutes=idle_minutes)
        brand = brand_of(session=db)
        if record is None:
            return _Identity(None, None, "", brand)
        origins = sso_origins(session=db) if record.via_sso else ""
        return _Identity(record.user, record.id, record.csrf_token, brand, record.via_sso, origins)


# Session ids per query when checking open streams: well under SQLite's bound-parameter limit.
_LIVE_CHUNK = 500


def live_session_ids(
    session_factory: sessionmaker[Session], session_ids: list[str], idle_minutes: int
) -> set[str]:
    """Which of these web sessions are still signed in: not ended, not idle too long, not past
    their absolute lifetime, their user not blocked. One read for many open push streams, and
    no write: a stream's heartbeat must not keep its session's last-seen time moving (requests
    do that)."""
    now = utcnow()
    cutoff = now - timedelta(minutes=idle_minutes)
    live: set[str] = set()
    with session_scope(session_factory) as db:
        for start in range(0, len(session_ids), _LIVE_CHUNK):
            chunk = session_ids[start : start + _LIVE_CHUNK]
            live.update(
                db.scalars(
                    select(WebSession.id)
                    .join(User, User.id == WebSession.user_id)
                    .where(
                        WebSession.id.in_(chunk),
                        WebSession.last_seen_at >= cutoff,
                        WebSession.expires_at > now,  # the absolute lifetime
                        User.is_blocked.is_(False),
                    )
                )
            )
    return live


async def _identity_of(request: Request, idle_minutes: int) -> _Identity:
    """The request's identity, through the read cache: an open viewer's calls (the token API,
    telemetry) then cost no database round trip. Signing out, blocking or removing a user
    drops the cache (read_cache.py), and an entry lives seconds, far less than a session's
    last-seen resolution (a minute), so idle expiry is unaffected."""
    cookie = session_cookie_of(request.cookies)
    cache: ReadCache | None = getattr(request.app.state, "read_cache", None)
    key = ("identity", hashlib.sha256(cookie.encode()).hexdigest() if cookie else None)
    # The lookup blocks on the database: run it off the event loop, or a burst of requests
    # that hold pooled connections while awaiting Power BI could starve the loop itself.
    load = functools.partial(
        _load_identity, request.app.state.session_factory, cookie, idle_minutes
    )
    if cache is None:
        return await run_in_threadpool(load)
    return await cache.get_or_load(key, load)


class RequestContext(HttpMiddleware):
    """The middleware that resolves each request's context (pure ASGI, so the token API and every
    open push stream pay no task and memory stream per request)."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope)
        settings = request.app.state.settings
        # `request.state` is this dict (Starlette's State wraps it); written directly, as every
        # request (each token API call) pays for these.
        state: dict[str, Any] = scope.setdefault("state", {})
        state["user"] = None
        state["web_session_id"] = None
        state["via_sso"] = False
        state["organization_name"] = DEFAULT_BRAND.name
        state["brand"] = DEFAULT_BRAND
        new_anonymous_csrf: str | None = None
        # The integration API (/api/v1) knows API keys only: no session is looked up (nor
        # kept alive) for it, and no CSRF cookie is handed out.
        if not scope["path"].startswith(("/static/", "/healthz", "/brand/", "/api/v1/")):
            identity = await _identity_of(request, settings.session_idle_minutes)
            state["organization_name"] = identity.brand.name
            state["brand"] = identity.brand
            if identity.user is not None:
                state["user"] = identity.user
                state["web_session_id"] = identity.web_session_id
                state["csrf_token"] = identity.csrf_token
                state["via_sso"] = identity.via_sso
                if identity.via_sso:
                    # The security headers then let the allowed applications frame the answer.
                    mark_embeddable(scope, identity.sso_origins)
            if state["user"] is None:
                token, is_new = _anonymous_csrf(request)
                state["csrf_token"] = token
                if is_new:
                    new_anonymous_csrf = token

        user = state["user"]
        language = (
            (user.language if user is not None and user.language else None)
            or i18n.match_language(request.cookies.get(LANGUAGE_COOKIE, ""))
            or i18n.negotiate(request.headers.get("accept-language"), settings.default_language)
        )
        state["language"] = language
        # Reset afterwards: an app called in the caller's task (a test's ASGI transport) must
        # not leave the caller speaking this request's language.
        activated = i18n.activate(language)
        try:
            if new_anonymous_csrf is None:
                await self.app(scope, receive, send)
            else:
                cookie = _anonymous_csrf_cookie(request, settings, new_anonymous_csrf)
                await self.app(scope, receive, _adding_header(send, b"set-cookie", cookie))
        finally:
            i18n.deactivate(activated)


def _anonymous_csrf_cookie(request: Request, settings: Settings, token: str) -> bytes:
    serializer = URLSafeSerializer(settings.secret_key.get_secret_value(), salt="csrf")
    carrier = Response()
    carrier.set_cookie(
        ANONYMOUS_CSRF_COOKIE,
        serializer.dumps(token),
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        path="/",
    )
    return next(value for name, value in carrier.raw_headers if name == b"set-cookie")


def _adding_header(send: Send, name: bytes, value: bytes) -> Send:
    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), (name, value)]}
        await send(message)

    return sending
