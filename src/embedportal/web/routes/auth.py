"""Signing in and out, and the language picker shown before sign-in."""

from __future__ import annotations

import logging
import math
from datetime import datetime, timedelta
from typing import Annotated
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import RedirectResponse, Response

from embedportal import i18n
from embedportal.access.audit import record
from embedportal.access.audit_log import organization_zone
from embedportal.access.login import (
    LoginFailure,
    LoginFailureReason,
    SecondStepNeeded,
    authenticate,
)
from embedportal.access.microsoft_accounts import SignInMethods, sign_in_methods
from embedportal.access.microsoft_tokens import link_of, revoke_refresh_token
from embedportal.access.sessions import (
    SECURE_SESSION_COOKIE,
    SESSION_COOKIE,
    end_session,
    session_cookie_name,
    session_cookie_of,
    start_session,
)
from embedportal.db.base import utcnow
from embedportal.db.models import User
from embedportal.db.session import session_scope
from embedportal.i18n import _
from embedportal.settings import Settings
from embedportal.web.context import ANONYMOUS_CSRF_COOKIE, LANGUAGE_COOKIE
from embedportal.web.deps import (
    AppSettings,
    ClientAddress,
    CsrfProtected,
    CsrfProtectedWhenSignedIn,
    DbSession,
    OptionalUser,
    PersonTokensDep,
    PushHubDep,
)
from embedportal.web.pending_sign_in import forget_pending_sign_in, set_pending_sign_in
from embedportal.web.push import PushEvent, PushHub
from embedportal.web.templating import flash_redirect, render

router = APIRouter(tags=["sign-in"], include_in_schema=False)
logger = logging.getLogger("embedportal.web")

LANGUAGE_COOKIE_MAX_AGE = 365 * 24 * 3600


def safe_next(target: str | None, default: str = "/") -> str:
    """`target` when it is a path on this site, else `default`: never an open redirect."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return default
    if "\\" in target or any(ord(char) < 0x20 or ord(char) == 0x7F for char in target):
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return default
    if parts.path in ("/login", "/logout", "/login/two-step"):
        return default
    return target


def is_https(request: Request, settings: Settings) -> bool:
    """Whether cookies must be `Secure`: served over https (directly or, by the public URL,
    behind a proxy), or forced by EMBEDPORTAL_SECURE_COOKIES."""
    return (
        settings.secure_cookies
        or request.url.scheme == "https"
        or (settings.public_url or "").strip().lower().startswith("https://")
    )


LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]", "::1"})


def secure_cookies_possible(request: Request, settings: Settings) -> bool:
    """Whether the browser takes a `Secure` cookie from this answer: over https, or from a
    loopback address (which browsers count as a secure context even over plain HTTP)."""
    return is_https(request, settings) or (request.url.hostname or "") in LOOPBACK_HOSTS


def remember_language(
    response: Response, *, request: Request, settings: Settings, language: str | None
) -> None:
    """Keep ``language`` in a cookie, for the pages that know no user (sign-in); None drops
    it, so those pages follow the browser again."""
    if language is None:
        response.delete_cookie(LANGUAGE_COOKIE, path="/")
        return
    response.set_cookie(
        LANGUAGE_COOKIE,
        language,
        max_age=LANGUAGE_COOKIE_MAX_AGE,
        httponly=True,
        samesite="lax",
        secure=is_https(request, settings),
        path="/",
    )


def _login_form(
    request: Request,
    *,
    email: str = "",
    next_url: str = "",
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    return render(
        request,
        "login.html",
        {
            "values": {"email": email},
            "next_url": next_url,
            "errors": errors or {},
            "sign_in": _offered_methods(request),
        },
        status_code=status_code,
    )


def _offered_methods(request: Request) -> SignInMethods:
    """Which ways in the sign-in page shows (Admin → Settings → Sign-in)."""
    with session_scope(request.app.state.session_factory) as db:
        return sign_in_methods(session=db, settings=request.app.state.settings)


def failure_message(failure: LoginFailure, *, locked_until_local: datetime | None) -> str:
    if failure.reason == LoginFailureReason.LOCKED and locked_until_local is not None:
        # The same words whether the e-mail has an account or not, and whatever limit held
        # the attempt back, so the answer tells nothing about who exists.
        return _(
            "Too many failed sign-ins. Try again after %(time)s.",
            time=locked_until_local.strftime("%H:%M %Z"),
        )
    if failure.reason == LoginFailureReason.BLOCKED:
        return _("This account is blocked. Ask an administrator to unblock it.")
    return _("The e-mail address or the password is not right.")


@router.get("/login")
def login_page(
    request: Request,
    user: OptionalUser,
    next_url: Annotated[str, Query(alias="next")] = "",
) -> Response:
    if user is not None:
        return RedirectResponse(safe_next(next_url), status_code=303)
    return _login_form(request, next_url=safe_next(next_url, default=""))


@router.post("/login", dependencies=[CsrfProtected])
def login(
    request: Request,
    db: DbSession,
    settings: AppSettings,
    address: ClientAddress,
    email: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    next_url: Annotated[str, Form(alias="next")] = "",
) -> Response:
    if not sign_in_methods(session=db, settings=settings).password:
        refusal = {"_form": _("Sign in with Microsoft: this portal does not take passwords.")}
        return _login_form(
            request, next_url=safe_next(next_url, default=""), errors=refusal, status_code=403
        )
    errors: dict[str, str] = {}
    if not email.strip():
        errors["email"] = _("Enter your e-mail address.")
    if not password:
        errors["password"] = _("Enter your password.")
    if errors:
        return _login_form(request, email=email, next_url=next_url, errors=errors, status_code=400)
    now = utcnow()
    result = authenticate(
        session=db,
        email=email,
        password=password,
        client_address=address,
        settings=settings,
        now=now,
    )
    if isinstance(result, LoginFailure):
        zone = organization_zone(session=db)
        local = result.locked_until.astimezone(zone) if result.locked_until else None
        db.commit()  # the failed attempt counts even though the answer is an error
        message = failure_message(result, locked_until_local=local)
        response = _login_form(
            request,
            email=email,
            next_url=safe_next(next_url, default=""),
            errors={"_form": message},
            status_code=429 if result.locked_until is not None else 400,
        )
        if result.locked_until is not None:
            wait = (result.locked_until - now).total_seconds()
            response.headers["Retry-After"] = str(max(math.ceil(wait), 1))
        return response
    if isinstance(result, SecondStepNeeded):
        db.commit()  # the attempt stays counted until the code is right (access/login.py)
        user = db.get(User, result.user_id)
        assert user is not None  # just found by its password
        response = RedirectResponse("/login/two-step", status_code=303)
        set_pending_sign_in(
            response,
            settings=settings,
            user=user,
            next_url=safe_next(next_url, default=""),
            secure=is_https(request, settings),
        )
        return response
    return finish_sign_in(
        request, db=db, settings=settings, user=result, next_url=next_url, now=now
    )


def finish_sign_in(
    request: Request,
    *,
    db: DbSession,
    settings: Settings,
    user: User,
    next_url: str,
    now: datetime,
    via_sso: bool = False,
) -> Response:
    """The user is who they say (password, and code when they have two steps): a new session,
    its cookie, and on to where the sign-in leads."""
    # Signing in over an existing session (as someone else, say) ends that one first, and the
    # new one gets a new token: a session id planted before sign-in is never promoted.
    for name in (SESSION_COOKIE, SECURE_SESSION_COOKIE):
        end_session(session=db, cookie_value=request.cookies.get(name))
    if via_sso:
        lifetime = timedelta(minutes=settings.sso_session_minutes)
    else:
        lifetime = timedelta(days=settings.session_lifetime_days)
    new = start_session(
        session=db,
        user=user,
        user_agent=request.headers.get("user-agent", ""),
        lifetime=lifetime,
        now=now,
        via_sso=via_sso,
    )
    db.commit()  # before the browser follows the redirect with its new cookie
    response = RedirectResponse(safe_next(next_url), status_code=303)
    # Inside another site's frame a browser sends no SameSite=Lax cookie: a single sign-on
    # session's cookie is SameSite=None, which must be Secure, and Partitioned (CHIPS), so it
    # is sent only under the application that framed it, never to the portal opened elsewhere.
    cross_site = via_sso and secure_cookies_possible(request, settings)
    secure = cross_site or is_https(request, settings)
    response.set_cookie(
        session_cookie_name(secure=secure),
        new.cookie_value,
        httponly=True,
        samesite="none" if cross_site else "lax",
        secure=secure,
        path="/",
    )
    if cross_site:
        _partition_last_cookie(response)
    if secure and SESSION_COOKIE in request.cookies:
        # A plain-named cookie is an older session's (ended above): the new one is `__Host-`.
        forget_session_cookies(response, plain_only=True)
    # The pre-sign-in token and a half-done two-step sign-in have done their job.
    response.delete_cookie(ANONYMOUS_CSRF_COOKIE, path="/")
    forget_pending_sign_in(response)
    return response


def _partition_last_cookie(response: Response) -> None:
    """Add `Partitioned` to the cookie just set (Starlette's own flag needs Python 3.14)."""
    for index in range(len(response.raw_headers) - 1, -1, -1):
        name, value = response.raw_headers[index]
        if name == b"set-cookie":
            response.raw_headers[index] = (name, value + b"; Partitioned")
            return


def tell_open_viewers_of_sign_out(hub: PushHub, user_id: int) -> None:
    """The user's open viewers (every tab, every device) ask whether their own session is
    gone, so a sign-out shows at once instead of at the next token refresh. Best effort: a lost
    Redis must not turn a sign-out into an error; those viewers find out at their next refresh."""
    try:
        hub.publish(PushEvent(kind="session", user_id=user_id))
    except Exception:  # noqa: BLE001 - the sign-out itself has happened
        logger.warning("push: open viewers not told about a sign-out", exc_info=True)


@router.post("/logout", dependencies=[CsrfProtectedWhenSignedIn])
def logout(
    request: Request,
    db: DbSession,
    user: OptionalUser,
    hub: PushHubDep,
    person_tokens: PersonTokensDep,
) -> Response:
    in_frame = bool(getattr(request.state, "via_sso", False))
    end_session(session=db, cookie_value=session_cookie_of(request.cookies))
    microsoft = False
    if user is not None:
        record(session=db, actor=user, action="logout", target_type="user", target_id=str(user.id))
        # Signing out ends the user's own Power BI token too (it is renewed no more).
        revoke_refresh_token(session=db, user_id=user.id)
        person_tokens.forget(user.id)
        microsoft = link_of(session=db, user_id=user.id) is not None
    db.commit()
    if user is not None:
        # After the commit: a viewer that asks must find the session already ended.
        tell_open_viewers_of_sign_out(hub, user.id)
    if microsoft:  # the page that offers Entra's end-session as well
        response: Response = RedirectResponse("/logout/microsoft", status_code=303)
    else:
        response = flash_redirect(request, "/login", _("You have signed out."), category="info")
    forget_session_cookies(response)
    if in_frame:
        # A single sign-on session's cookie lives in the framing site's partition: only a
        # removal that is Partitioned (and SameSite=None, as it was set) reaches it there.
        response.delete_cookie(
            SECURE_SESSION_COOKIE, path="/", secure=True, httponly=True, samesite="none"
        )
        _partition_last_cookie(response)
    return response


def forget_session_cookies(response: Response, *, plain_only: bool = False) -> None:
    """Tell the browser to drop the session cookie under both its names (a `__Host-` cookie
    is only replaced by a Secure one, so its removal is Secure too)."""
    response.delete_cookie(SESSION_COOKIE, path="/")
    if not plain_only:
        response.delete_cookie(SECURE_SESSION_COOKIE, path="/", secure=True, httponly=True)


@router.post("/language", dependencies=[CsrfProtected])
def choose_language(
    request: Request,
    settings: AppSettings,
    language: Annotated[str, Form()] = "",
    next_url: Annotated[str, Form(alias="next")] = "",
) -> Response:
    """The language before sign-in (a cookie); an empty choice follows the browser again.
    `next` is where the sign-in page will lead, which the page keeps."""
    target = safe_next(next_url, default="")
    login_url = f"/login?next={quote(target, safe='/')}" if target else "/login"
    response = RedirectResponse(login_url, status_code=303)
    chosen = language if language in i18n.LANGUAGES else None
    remember_language(response, request=request, settings=settings, language=chosen)
    return response
