"""Signing people in with Microsoft Entra ID: the OpenID Connect authorization code flow with
PKCE (through msal), the id token checked as the application must check it (msal does not:
signature against the tenant's published keys, issuer, audience, lifetime, nonce), and a
person's Power BI token renewed from their refresh token.

Blocking, like msal; callers run these in a worker thread. Secrets (codes, tokens, the PKCE
verifier) never appear in a message, a log line or a ``repr``.
"""

from __future__ import annotations

import hashlib
import threading
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
import jwt
import msal

from embedportal.powerbi.connection import POWERBI_SCOPE
from embedportal.powerbi.entra import MICROSOFT_AUTHORITY_HOSTS
from embedportal.powerbi.msal_http import MsalHttpClient, MsalHttpError

# What a person's sign-in asks for: who they are, a refresh token, and Power BI on their behalf.
SIGN_IN_SCOPES = (POWERBI_SCOPE,)
# Tenants a multi-tenant app registration signs people in from.
MULTI_TENANT = frozenset({"organizations", "common"})
_CLOCK_SKEW_SECONDS = 120
_KEYS_MAX_AGE_SECONDS = 3600.0


class SignInRefused(Exception):
    """The sign-in did not prove who the person is. ``reason`` is a stable code for the page
    (``cancelled``, ``state``, ``code``, ``id_token``, ``unreachable``); ``detail`` is for the
    log and carries no secret."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class SignInApp:
    """The app registration people sign in through."""

    tenant: str  # a tenant id, or "organizations" for any work account
    client_id: str
    client_secret: str = field(repr=False)
    authority_host: str = "https://login.microsoftonline.com"

    @property
    def issuer_base(self) -> str:
        return self.authority_host.rstrip("/")


@dataclass(frozen=True, slots=True)
class PendingSignIn:
    """Where to send the browser, and what to keep (server-side or encrypted) until it is back."""

    authorization_url: str
    flow: dict[str, Any] = field(repr=False)


@dataclass(frozen=True, slots=True)
class PersonToken:
    """A person's Power BI access token and the refresh token that renews it."""

    access_token: str = field(repr=False)
    expires_at: datetime
    refresh_token: str | None = field(repr=False)


@dataclass(frozen=True, slots=True)
class SignedInPerson:
    """Who the id token says signed in, and their first Power BI token."""

    object_id: str
    tenant_id: str
    username: str  # preferred_username: the sign-in name, verified by the tenant
    email: str | None
    name: str
    token: PersonToken


class MicrosoftSignIn:
    """The flow for one app registration. Thread-safe; :meth:`close` when done."""

    def __init__(
        self,
        app: SignInApp,
        *,
        http_transport: httpx.BaseTransport | None = None,
        timeout: float = 15.0,
    ) -> None:
        self._app = app
        parts = urlsplit(app.authority_host)
        self._facade = parts.scheme == "http"
        if self._facade:
            self._http = MsalHttpClient(
                http_origin=app.authority_host, timeout=timeout, transport=http_transport
            )
            self._authority = f"https://{parts.netloc}/{app.tenant}"
        else:
            self._http = MsalHttpClient(timeout=timeout, transport=http_transport)
            self._authority = f"{app.issuer_base}/{app.tenant}"
        self._instance_discovery = (parts.hostname or "").lower() in MICROSOFT_AUTHORITY_HOSTS
        self._plain = httpx.Client(timeout=timeout, transport=http_transport)
        self._lock = threading.Lock()
        self._msal: Any = None
        self._keys: dict[str, Any] = {}
        self._keys_fetched = 0.0

    def close(self) -> None:
        self._http.close()
        self._plain.close()

    # -- the flow ----------------------------------------------------------------------------

    def begin(
        self, *, redirect_uri: str, login_hint: str | None = None, prompt: str | None = None
    ) -> PendingSignIn:
        """The authorization URL (PKCE S256, state, nonce) and the flow to keep until the
        browser comes back.

        The answer comes back in the query of a top-level GET, not by form_post as msal
        suggests: a cross-site POST carries no SameSite=Lax cookie, so the browser's own copy of
        the flow (what binds the answer to the browser that asked) would not come with it. The
        code is single-use and PKCE-bound, so seeing it in a URL gives nobody a token."""
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="response_mode='form_post'")
                flow = self._client().initiate_auth_code_flow(
                    scopes=list(SIGN_IN_SCOPES),
                    redirect_uri=redirect_uri,
                    response_mode="query",
                    login_hint=login_hint,
                    prompt=prompt,
                )
        except (httpx.HTTPError, MsalHttpError, ValueError) as error:
            raise SignInRefused("unreachable", f"Entra discovery failed: {error}") from None
        url = str(flow["auth_uri"])
        if self._facade:  # the browser reaches the emulator over plain http
            url = "http://" + url.removeprefix("https://")
        return PendingSignIn(authorization_url=url, flow=dict(flow))

    def complete(self, *, flow: Mapping[str, Any], answer: Mapping[str, str]) -> SignedInPerson:
        """Redeem the browser's answer; every check the application owes is made here."""
        if answer.get("error"):
            reason = "cancelled" if answer.get("error") == "access_denied" else "code"
            raise SignInRefused(reason, f"Entra answered {answer.get('error')}")
        if not answer.get("state") or answer.get("state") != flow.get("state"):
            raise SignInRefused("state", "the answer's state is not this sign-in's")
        try:
            result = self._client().acquire_token_by_auth_code_flow(dict(flow), dict(answer))
        except ValueError as error:  # msal's own checks (state, scopes)
            raise SignInRefused("state", str(error)) from None
        except RuntimeError as error:  # msal's own id token checks (nonce, issuer, audience)
            raise SignInRefused("id_token", f"msal refused it: {type(error).__name__}") from None
        except (httpx.HTTPError, MsalHttpError) as error:
            raise SignInRefused("unreachable", f"Entra's token endpoint failed: {error}") from None
        if "access_token" not in result or "id_token" not in result:
            raise SignInRefused(
                "code", f"Entra refused the code: {result.get('error')} {result.get('error_codes')}"
            )
        claims = self.verify_id_token(
            str(result["id_token"]), nonce=_hashed_nonce(flow.get("nonce"))
        )
        return SignedInPerson(
            object_id=str(claims["oid"]),
            tenant_id=str(claims["tid"]),
            username=str(claims.get("preferred_username") or ""),
            email=claims.get("email") if isinstance(claims.get("email"), str) else None,
            name=str(claims.get("name") or ""),
            token=_person_token(result),
        )

    def refresh(self, *, refresh_token: str) -> PersonToken:
        """A new Power BI token for the person, and the refresh token to keep next."""
        try:
            result = self._client().acquire_token_by_refresh_token(
                refresh_token, scopes=list(SIGN_IN_SCOPES)
            )
        except (httpx.HTTPError, MsalHttpError) as error:
            raise SignInRefused("unreachable", f"Entra's token endpoint failed: {error}") from None
        if "access_token" not in result:
            raise SignInRefused("code", f"Entra refused the refresh token: {result.get('error')}")
        token = _person_token(result)
        return (
            token
            if token.refresh_token
            else PersonToken(token.access_token, token.expires_at, refresh_token)
        )

    def logout_url(self, *, post_logout_redirect_uri: str) -> str:
        """Entra's end-session page, which comes back to the portal afterwards."""
        query = httpx.QueryParams({"post_logout_redirect_uri": post_logout_redirect_uri})
        return f"{self._app.issuer_base}/{self._app.tenant}/oauth2/v2.0/logout?{query}"

    # -- the id token ------------------------------------------------------------------------

    def verify_id_token(self, id_token: str, *, nonce: str | None) -> dict[str, Any]:
        """The claims, once signature, issuer, audience, lifetime and nonce hold."""
        try:
            header = jwt.get_unverified_header(id_token)
            unverified = jwt.decode(id_token, options={"verify_signature": False})
        except jwt.PyJWTError as error:
            raise SignInRefused("id_token", f"not a JWT: {error}") from None
        tenant_id = str(unverified.get("tid") or "")
        if self._app.tenant.lower() not in MULTI_TENANT and tenant_id != self._app.tenant.lower():
            raise SignInRefused("id_token", "issued by another tenant")
        key = self._signing_key(str(header.get("kid") or ""))
        try:
            claims: dict[str, Any] = jwt.decode(
                id_token,
                key=key,
                algorithms=["RS256"],
                audience=self._app.client_id,
                issuer=f"{self._app.issuer_base}/{tenant_id}/v2.0",
                leeway=_CLOCK_SKEW_SECONDS,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )
        except jwt.PyJWTError as error:
            raise SignInRefused("id_token", f"refused: {error}") from None
        if nonce is not None and claims.get("nonce") != nonce:
            raise SignInRefused("id_token", "the nonce is not this sign-in's")
        if not claims.get("oid") or not claims.get("tid"):
            raise SignInRefused("id_token", "no object or tenant id")
        return claims

    def _signing_key(self, kid: str) -> Any:
        with self._lock:
            stale = time.monotonic() - self._keys_fetched > _KEYS_MAX_AGE_SECONDS
            if kid not in self._keys or stale:
                # An unknown key id means the tenant rolled its keys: read them again.
                self._keys = self._fetch_keys()
                self._keys_fetched = time.monotonic()
            key = self._keys.get(kid)
        if key is None:
            raise SignInRefused("id_token", "signed with a key the tenant does not publish")
        return key

    def _fetch_keys(self) -> dict[str, Any]:
        discovery = (
            f"{self._app.issuer_base}/{self._app.tenant}/v2.0/.well-known/openid-configuration"
        )
        try:
            config = self._plain.get(discovery).raise_for_status().json()
            jwks = self._plain.get(str(config["jwks_uri"])).raise_for_status().json()
            return {
                str(entry["kid"]): jwt.PyJWK(entry).key
                for entry in jwks.get("keys", [])
                if entry.get("kid") and entry.get("kty") == "RSA"
            }
        except (httpx.HTTPError, KeyError, TypeError, ValueError, jwt.PyJWTError) as error:
            raise SignInRefused(
                "unreachable", f"the tenant's keys could not be read: {error}"
            ) from None

    def _client(self) -> Any:
        with self._lock:
            if self._msal is None:
                self._msal = msal.ConfidentialClientApplication(
                    self._app.client_id,
                    client_credential=self._app.client_secret,
                    authority=self._authority,
                    http_client=self._http,
                    instance_discovery=self._instance_discovery,
                    token_cache=msal.TokenCache(),
                )
            return self._msal


def _hashed_nonce(nonce: object) -> str | None:
    """msal sends the SHA-256 of the flow's nonce; the id token carries what was sent."""
    if not isinstance(nonce, str) or not nonce:
        return None
    return hashlib.sha256(nonce.encode("utf-8")).hexdigest()


def _person_token(result: Mapping[str, Any]) -> PersonToken:
    try:
        expires_in = float(result["expires_in"])
    except (KeyError, TypeError, ValueError):
        raise SignInRefused("code", "the token answer has no valid expires_in") from None
    refresh = result.get("refresh_token")
    return PersonToken(
        access_token=str(result["access_token"]),
        expires_at=datetime.now(UTC) + timedelta(seconds=expires_in),
        refresh_token=refresh if isinstance(refresh, str) and refresh else None,
    )
