"""Sign in with Microsoft: start the OpenID Connect code flow, take Entra's answer back, and
the page after sign-out that offers to end the Microsoft session too.

Until the browser comes back, the flow (state, nonce, PKCE verifier) lives in a cookie of its
own: encrypted and authenticated under a key derived from the secret key, HttpOnly,
SameSite=Lax (Entra's answer is a top-level GET, which carries it), ten minutes at most, and
dropped when the answer arrives. Routes are plain functions: FastAPI runs them in a worker
thread, so msal's blocking calls never hold up the event loop.
"""

from __future__ import annotations

import json
import logging
from typing import Annotated, Any

from cryptography.fernet import InvalidToken
from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse, Response

from embedportal.access.microsoft_accounts import (
    MicrosoftRefusal,
    admit_person,
    sign_in_methods,
    sign_in_registration,
)
from embedportal.access.microsoft_match import MatchOutcome
from embedportal.access.organization import fernet_for
from embedportal.db.base import utcnow
from embedportal.i18n import N_, _
from embedportal.powerbi.signin import SignInRefused
from embedportal.settings import Settings
from embedportal.web.deps import AppSettings, DbSession, MicrosoftSignInsDep
from embedportal.web.routes.auth import finish_sign_in, is_https, safe_next
from embedportal.web.templating import render

router = APIRouter(tags=["sign-in"], include_in_schema=False)
logger = logging.getLogger("embedportal.web")

START_PATH = "/login/microsoft"
CALLBACK_PATH = "/login/microsoft/callback"
SIGNED_OUT_PATH = "/logout/microsoft"
FLOW_COOKIE = "embedportal_microsoft_flow"
FLOW_MAX_AGE_SECONDS = 600
_FLOW_PURPOSE = b"embedportal/microsoft-sign-in-flow"

# Why a sign-in did not happen: the status and the words for each reason.
_REFUSALS: dict[str, tuple[int, str]] = {
    "off": (403, N_("Signing in with Microsoft is not turned on for this portal.")),
    "expired": (
        400,
        N_(
            "The sign-in took too long, or was started in another browser or tab that has "
            "finished. Start again."
        ),
    ),
    "cancelled": (400, N_("Signing in with Microsoft was cancelled.")),
    "state": (
        400,
        N_("This answer from Microsoft does not belong to the sign-in started here. Start again."),
    ),
    "code": (
        400,
        N_("Microsoft did not accept this sign-in; it may have been used already. Start again."),
    ),
    "id_token": (
        400,
        N_("Microsoft's answer could not be verified, so nobody was signed in. Start again."),
    ),
    "unreachable": (
        503,
        N_("Microsoft's sign-in service could not be reached. Try again in a moment."),
    ),
    MatchOutcome.BLOCKED.value: (
        403,
        N_("This account is blocked. Ask an administrator to unblock it."),
    ),
    MatchOutcome.UNKNOWN.value: (
        403,
        N_(
            "No portal account belongs to this Microsoft account. Ask an administrator to add "
            "you with the e-mail address you sign in to Microsoft with."
        ),
    ),
    MatchOutcome.UNTRUSTED_TENANT.value: (
        403,
        N_(
            "Your Microsoft account belongs to an organization this portal does not accept "
            "sign-ins from. Ask an administrator."
        ),
    ),
    MatchOutcome.LINKED_TO_ANOTHER.value: (
        403,
        N_(
            "The portal account with this e-mail address signs in with another Microsoft "
            "account. Use that one, or ask an administrator."
        ),
    ),
}


def redirect_uri(request: Request, settings: Settings) -> str:
    """Where Entra sends the browser back: to register, exactly, in the app registration."""
    base = (settings.public_url or str(request.base_url)).rstrip("/")
    return base + CALLBACK_PATH


def _refused(request: Request, reason: str, *, next_url: str = "") -> Response:
    status, message = _REFUSALS.get(reason, _REFUSALS["code"])
    response = render(
        request,
        "login_microsoft_refused.html",
        {"message": _(message), "reason": reason, "next_url": next_url},
        status_code=status,
    )
    response.delete_cookie(FLOW_COOKIE, path=START_PATH)
    return response


def _sealed_flow(settings: Settings, flow: dict[str, Any], next_url: str) -> str:
    payload = json.dumps({"flow": flow, "next": next_url}, separators=(",", ":"))
    return fernet_for(settings, _FLOW_PURPOSE).encrypt(payload.encode()).decode("ascii")


def _opened_flow(settings: Settings, sealed: str | None) -> tuple[dict[str, Any], str] | None:
    """The flow and where to go next, or None when missing, forged or too old."""
    if not sealed:
        return None
    try:
        raw = fernet_for(settings, _FLOW_PURPOSE).decrypt(
            sealed.encode("ascii"), ttl=FLOW_MAX_AGE_SECONDS
        )
        payload = json.loads(raw)
    except (InvalidToken, UnicodeError, ValueError):
        return None
    flow, next_url = payload.get("flow"), payload.get("next")
    if not isinstance(flow, dict) or not isinstance(next_url, str):
        return None
    return flow, next_url


@router.get(START_PATH)
def start_microsoft_sign_in(
    request: Request,
    db: DbSession,
    settings: AppSettings,
    flows: MicrosoftSignInsDep,
    next_url: Annotated[str, Query(alias="next")] = "",
) -> Response:
    target = safe_next(next_url, default="")
    if not sign_in_methods(session=db, settings=settings).microsoft:
        return _refused(request, "off", next_url=target)
    app = sign_in_registration(session=db, settings=settings).app
    assert app is not None  # sign_in_methods offers Microsoft only with a registration
    try:
        pending = flows.get(app).begin(redirect_uri=redirect_uri(request, settings))
    except SignInRefused as refusal:
        logger.warning("microsoft sign-in could not start: %s", refusal.detail)
        return _refused(request, refusal.reason, next_url=target)
    response = RedirectResponse(pending.authorization_url, status_code=303)
    response.set_cookie(
        FLOW_COOKIE,
        _sealed_flow(settings, pending.flow, target),
        max_age=FLOW_MAX_AGE_SECONDS,
        httponly=True,
        samesite="lax",
        secure=is_https(request, settings),
        path=START_PATH,
    )
    return response


@router.get(CALLBACK_PATH)
def finish_microsoft_sign_in(
    request: Request, db: DbSession, settings: AppSettings, flows: MicrosoftSignInsDep
) -> Response:
    opened = _opened_flow(settings, request.cookies.get(FLOW_COOKIE))
    if opened is None:
        return _refused(request, "expired")
    flow, next_url = opened
    if not sign_in_methods(session=db, settings=settings).microsoft:
        return _refused(request, "off", next_url=next_url)
    app = sign_in_registration(session=db, settings=settings).app
    assert app is not None
    answer = {key: request.query_params[key] for key in request.query_params}
    try:
        person = flows.get(app).complete(flow=flow, answer=answer)
    except SignInRefused as refusal:
        logger.info("microsoft sign-in refused: %s (%s)", refusal.reason, refusal.detail)
        return _refused(request, refusal.reason, next_url=next_url)
    now = utcnow()
    admitted = admit_person(
        session=db, settings=settings, person=person, registration_tenant=app.tenant, now=now
    )
    if isinstance(admitted, MicrosoftRefusal):
        db.commit()  # the refusal's audit entry stays
        logger.info("microsoft sign-in refused by the portal: %s", admitted.outcome.value)
        return _refused(request, admitted.outcome.value, next_url=next_url)
    # As with a password: an existing session ends, and the new one has a new token.
    response = finish_sign_in(
        request, db=db, settings=settings, user=admitted, next_url=next_url, now=now
    )
    response.delete_cookie(FLOW_COOKIE, path=START_PATH)
    return response


@router.get(SIGNED_OUT_PATH)
def signed_out(
    request: Request, db: DbSession, settings: AppSettings, flows: MicrosoftSignInsDep
) -> Response:
    """After signing out of the portal: the offer to sign out of Microsoft as well."""
    app = sign_in_registration(session=db, settings=settings).app
    end_session_url = None
    if app is not None:
        base = (settings.public_url or str(request.base_url)).rstrip("/")
        end_session_url = flows.get(app).logout_url(post_logout_redirect_uri=base + "/login")
    return render(request, "logout_microsoft.html", {"end_session_url": end_session_url})
