"""Entra's sign-in for people: the authorization endpoint (OpenID Connect authorization code
flow with PKCE) with a plain sign-in page for the emulated directory's users, the token
endpoint's ``authorization_code`` and ``refresh_token`` grants, and the end-session endpoint.

What a client sees is shaped like Entra: the same parameters, the same error codes (AADSTS
numbers), RS256 id tokens checked against the tenant's JWKS, delegated access tokens with
``idtyp: user``. What the emulator leaves out: consent screens, multi-factor prompts and a
single-sign-on cookie (every authorization asks for the password again).
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from embedportal.emulator.directory import (
    AuthorizationRequest,
    CodeRefused,
    DirectoryUser,
)
from embedportal.emulator.embed import static_url, templates
from embedportal.emulator.errors import EmulatorError, entra_error
from embedportal.emulator.state import EmulatorState, get_state
from embedportal.emulator.tokens import ARM_AUDIENCE, ARM_SCOPE, POWERBI_AUDIENCE, b64url_encode

router = APIRouter()

GRAPH_AUDIENCE = "00000003-0000-0000-c000-000000000000"
OPENID_SCOPES = frozenset({"openid", "profile", "email", "offline_access"})
# What a delegated Power BI token may do, as an app registration's API permissions grant it.
POWERBI_DELEGATED_SCOPES = "Dataset.Read.All Report.Read.All Workspace.Read.All"
ID_TOKEN_LIFETIME_SECONDS = 3600
RESPONSE_MODES = frozenset({"query", "form_post"})
_NO_STORE = {"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"}

# The sign-in page posts to itself and a form_post answer posts to the client, so the page may
# submit forms anywhere; it still runs only its own scripts and cannot be framed.
_PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    **_NO_STORE,
}

# The authorization request's parameters the sign-in form carries through its POST.
_CARRIED = (
    "client_id",
    "redirect_uri",
    "response_type",
    "response_mode",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
    "login_hint",
)


def _page(name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    html = templates().get_template(name).render(static_url=static_url, **context)
    return HTMLResponse(html, status_code=status_code, headers=_PAGE_HEADERS)


def _error_page(aadsts: int, message: str, status_code: int = 400) -> HTMLResponse:
    """What Entra shows when it cannot send the person back to the application at all."""
    return _page("signin_error.html", status_code, code=f"AADSTS{aadsts}", message=message)


def redirect_uri_allowed(state: EmulatorState, uri: str) -> bool:
    """A registered redirect URI, exactly; with none registered, any loopback http(s) URI (the
    emulator's stand-in for an app registration made for the machine it runs on)."""
    registered = state.settings.redirect_uris
    if registered:
        return uri in registered
    parts = urlsplit(uri)
    return (
        parts.scheme in ("http", "https")
        and parts.hostname in ("127.0.0.1", "localhost", "::1")
        and not parts.fragment
    )


def _back_to_client(uri: str, mode: str, answer: Mapping[str, str | None]) -> Response:
    values = {key: value for key, value in answer.items() if value is not None}
    if mode == "form_post":
        return _page("signin_form_post.html", action=uri, values=values)
    separator = "&" if urlsplit(uri).query else "?"
    return RedirectResponse(f"{uri}{separator}{urlencode(values)}", status_code=302)


def _client_error(
    uri: str, mode: str, state_value: str | None, error: str, aadsts: int, description: str
) -> Response:
    return _back_to_client(
        uri,
        mode,
        {
            "error": error,
            "error_description": f"AADSTS{aadsts}: {description}",
            "state": state_value,
        },
    )


def _authorization_request(
    state: EmulatorState, params: Mapping[str, str]
) -> AuthorizationRequest | Response:
    """The request, or the answer that refuses it: an error page while the client or the
    redirect URI is in doubt (Entra never redirects to an unverified address), then errors
    sent back to the client."""
    client_id = params.get("client_id", "")
    if not client_id:
        return _error_page(900144, "The request must contain the parameter 'client_id'.")
    if client_id.casefold() != state.settings.client_id:
        return _error_page(
            700016,
            f"Application with identifier '{client_id}' was not found in the directory "
            f"'{state.settings.tenant_id}'.",
        )
    redirect_uri = params.get("redirect_uri", "")
    if not redirect_uri or not redirect_uri_allowed(state, redirect_uri):
        return _error_page(
            50011,
            f"The redirect URI '{redirect_uri}' specified in the request does not match the "
            f"redirect URIs configured for the application '{client_id}'.",
        )
    mode = params.get("response_mode") or "query"
    if mode not in RESPONSE_MODES:
        mode = "query"
    state_value = params.get("state")
    if "code" not in params.get("response_type", "").split():
        return _client_error(
            redirect_uri,
            mode,
            state_value,
            "unsupported_response_type",
            700054,
            "The emulator issues authorization codes only: response_type must be 'code'.",
        )
    scopes = params.get("scope", "").split()
    if "openid" not in scopes:
        return _client_error(
            redirect_uri,
            mode,
            state_value,
            "invalid_scope",
            70011,
            "The scope must include openid.",
        )
    challenge = params.get("code_challenge") or None
    method = params.get("code_challenge_method") or ("plain" if challenge else "")
    if challenge is not None and method not in ("S256", "plain"):
        return _client_error(
            redirect_uri,
            mode,
            state_value,
            "invalid_request",
            501491,
            "Invalid code_challenge_method: use S256.",
        )
    if params.get("prompt") == "none":
        return _client_error(
            redirect_uri,
            mode,
            state_value,
            "login_required",
            50058,
            "A silent sign-in request was sent but no user is signed in.",
        )
    return AuthorizationRequest(
        client_id=state.settings.client_id,
        redirect_uri=redirect_uri,
        scope=" ".join(scopes),
        nonce=params.get("nonce") or None,
        code_challenge=challenge,
        code_challenge_method=method,
    )


@router.get("/{tenant}/oauth2/v2.0/authorize", include_in_schema=False)
async def authorize(tenant: str, request: Request) -> Response:
    """The sign-in page (after checking the client and where to send the person back)."""
    state = get_state(request)
    if tenant.lower() not in (state.settings.tenant_id, "organizations", "common"):
        return _error_page(90002, f"Tenant '{tenant}' not found.")
    params = {key: request.query_params[key] for key in request.query_params}
    checked = _authorization_request(state, params)
    if isinstance(checked, Response):
        return checked
    carried = {name: params[name] for name in _CARRIED if params.get(name)}
    return _page("signin.html", carried=carried, email=params.get("login_hint", ""), error=None)


@router.post("/{tenant}/oauth2/v2.0/authorize", include_in_schema=False)
async def sign_in(tenant: str, request: Request) -> Response:
    """The sign-in form's answer: a code sent back to the client, or the page again."""
    state = get_state(request)
    if tenant.lower() not in (state.settings.tenant_id, "organizations", "common"):
        return _error_page(90002, f"Tenant '{tenant}' not found.")
    form = await request.form()
    fields = {key: value for key, value in form.items() if isinstance(value, str)}
    checked = _authorization_request(state, fields)
    if isinstance(checked, Response):
        return checked
    email = fields.get("email", "").strip()
    user = state.directory.by_email(email)
    if user is None or fields.get("password", "") != state.settings.directory_password:
        carried = {name: fields[name] for name in _CARRIED if fields.get(name)}
        return _page(
            "signin.html",
            status_code=200,
            carried=carried,
            email=email,
            error="Your account or password is incorrect. (AADSTS50126)",
        )
    code = state.grants.issue_code(request=checked, user=user, now=state.now())
    mode = fields.get("response_mode") or "query"
    return _back_to_client(
        checked.redirect_uri,
        mode if mode in RESPONSE_MODES else "query",
        {"code": code, "state": fields.get("state"), "session_state": str(uuid.uuid4())},
    )


@router.get("/{tenant}/oauth2/v2.0/logout", include_in_schema=False)
async def logout(tenant: str, request: Request) -> Response:
    """End-session: back to the application when it says where, else a "signed out" page."""
    state = get_state(request)
    target = request.query_params.get("post_logout_redirect_uri", "")
    if target and redirect_uri_allowed(state, target):
        return RedirectResponse(target, status_code=302)
    return _page("signed_out.html")


# --- the token endpoint's grants for people ------------------------------------------------


def _audience_of(scopes: list[str]) -> tuple[str, str]:
    """The resource a delegated token is for, and the scopes Entra reports it carries."""
    for scope in scopes:
        if scope.startswith(POWERBI_AUDIENCE + "/"):
            return POWERBI_AUDIENCE, " ".join(
                f"{POWERBI_AUDIENCE}/{name}" for name in POWERBI_DELEGATED_SCOPES.split()
            )
        if scope in (ARM_SCOPE, ARM_AUDIENCE + "user_impersonation"):
            return ARM_AUDIENCE, f"{ARM_AUDIENCE}user_impersonation"
    return GRAPH_AUDIENCE, "openid profile email User.Read"


def _client_info(user: DirectoryUser, tenant_id: str) -> str:
    raw = json.dumps({"uid": user.object_id, "utid": tenant_id}, separators=(",", ":"))
    return b64url_encode(raw.encode("utf-8"))


def _token_answer(
    *,
    state: EmulatorState,
    base_url: str,
    user: DirectoryUser,
    scope: str,
    nonce: str | None,
    with_client_info: bool,
) -> JSONResponse:
    settings = state.settings
    now = state.now()
    scopes = scope.split()
    audience, granted = _audience_of(scopes)
    lifetime = state.entra_lifetime()
    expires_at = math.floor(now + lifetime)
    access_claims = {
        "aud": audience,
        "iss": f"{base_url}/{settings.tenant_id}/v2.0",
        "iat": math.floor(now),
        "nbf": math.floor(now),
        "exp": expires_at,
        "appid": settings.client_id,
        "appidacr": "1",
        "idtyp": "user",
        "oid": user.object_id,
        "sub": user.object_id,
        "tid": settings.tenant_id,
        "upn": user.email,
        "unique_name": user.email,
        "name": user.name,
        "scp": " ".join(part.rsplit("/", 1)[-1] for part in granted.split()),
        "uti": str(uuid.uuid4()),
        "ver": "1.0",
    }
    body: dict[str, Any] = {
        "token_type": "Bearer",
        "scope": " ".join([granted, *sorted(OPENID_SCOPES.intersection(scopes))]),
        "expires_in": max(0, math.floor(expires_at - now)),
        "ext_expires_in": max(0, math.floor(expires_at - now)),
        "access_token": state.signer.entra_token(access_claims),
    }
    if "offline_access" in scopes:
        body["refresh_token"] = state.grants.issue_refresh_token(
            client_id=settings.client_id, user=user, scope=scope, now=now
        )
    if "openid" in scopes:
        id_claims = {
            "ver": "2.0",
            "iss": f"{base_url}/{settings.tenant_id}/v2.0",
            "aud": settings.client_id,
            "iat": math.floor(now),
            "nbf": math.floor(now),
            "exp": math.floor(now) + ID_TOKEN_LIFETIME_SECONDS,
            "sub": user.object_id,
            "oid": user.object_id,
            "tid": settings.tenant_id,
            "preferred_username": user.email,
            "email": user.email,
            "name": user.name,
        }
        if nonce:
            id_claims["nonce"] = nonce
        body["id_token"] = state.id_token_signer.sign(id_claims)
    if with_client_info:
        body["client_info"] = _client_info(user, settings.tenant_id)
    state.counters.entra_tokens_issued += 1
    return JSONResponse(body, headers=_NO_STORE)


def _refused(error: str, refusal: CodeRefused, base_url: str) -> EmulatorError:
    return entra_error(400, error, refusal.aadsts, refusal.message, base_url=base_url)


def authorization_code_grant(
    *, state: EmulatorState, fields: Mapping[str, str], client_id: str, base_url: str
) -> JSONResponse:
    """``grant_type=authorization_code``: the code once, for the client and redirect URI it
    was issued to, with the PKCE verifier when the authorization sent a challenge."""
    code = fields.get("code", "")
    if not code:
        raise entra_error(
            400,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'code'.",
            base_url=base_url,
        )
    try:
        issued = state.grants.redeem_code(
            code=code,
            client_id=client_id,
            redirect_uri=fields.get("redirect_uri", ""),
            code_verifier=fields.get("code_verifier"),
            now=state.now(),
        )
    except CodeRefused as refusal:
        raise _refused("invalid_grant", refusal, base_url) from None
    scope = " ".join(
        dict.fromkeys([*issued.request.scope.split(), *fields.get("scope", "").split()])
    )
    return _token_answer(
        state=state,
        base_url=base_url,
        user=issued.user,
        scope=scope,
        nonce=issued.request.nonce,
        with_client_info=fields.get("client_info") == "1",
    )


def refresh_token_grant(
    *, state: EmulatorState, fields: Mapping[str, str], client_id: str, base_url: str
) -> JSONResponse:
    """``grant_type=refresh_token``: a new access token (for the scope asked now), a new
    refresh token and id token."""
    token = fields.get("refresh_token", "")
    if not token:
        raise entra_error(
            400,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'refresh_token'.",
            base_url=base_url,
        )
    try:
        grant = state.grants.use_refresh_token(token=token, client_id=client_id, now=state.now())
    except CodeRefused as refusal:
        raise _refused("invalid_grant", refusal, base_url) from None
    user = state.directory.by_object_id(grant.user.object_id)
    if user is None:
        raise entra_error(
            400,
            "invalid_grant",
            50034,
            "The user account does not exist in the directory.",
            base_url=base_url,
        )
    scope = fields.get("scope") or grant.scope
    return _token_answer(
        state=state,
        base_url=base_url,
        user=user,
        scope=scope,
        nonce=None,
        with_client_info=fields.get("client_info") == "1",
    )
