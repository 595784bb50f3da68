"""The emulated directory's people, and what Entra remembers between a sign-in and its tokens:
authorization codes (single use, short-lived, bound to a client, a redirect URI and a PKCE
challenge) and refresh tokens.

The rules here are pure: callers pass ``now`` (seconds since the epoch), nothing reads a clock
or does I/O, so each refusal is tested on its own.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

# Entra redeems an authorization code for about ten minutes.
CODE_LIFETIME_SECONDS = 600.0
# Entra's refresh tokens live 90 days; the emulator keeps them for a day, enough for any test.
REFRESH_TOKEN_LIFETIME_SECONDS = 86_400.0
_MAX_CODES = 10_000


@dataclass(frozen=True, slots=True)
class DirectoryUser:
    """A person of the emulated tenant: who Entra says they are, the Power BI workspaces they
    are a member of (by workspace id), and the row-level-security roles they are in (none: a
    workspace member who sees every row, as Power BI's workspace roles do)."""

    email: str
    name: str
    workspace_ids: frozenset[str]
    object_id: str = ""
    rls_roles: tuple[str, ...] = ()

    def with_object_id(self, tenant_id: str) -> DirectoryUser:
        oid = str(uuid.uuid5(uuid.UUID(tenant_id), f"user:{self.email.casefold()}"))
        return DirectoryUser(self.email, self.name, self.workspace_ids, oid, self.rls_roles)


class Directory:
    """The tenant's people, found by e-mail (case-insensitively) or object id."""

    def __init__(self, users: Iterable[DirectoryUser], *, tenant_id: str) -> None:
        identified = [user.with_object_id(tenant_id) for user in users]
        self._by_email = {user.email.casefold(): user for user in identified}
        self._by_object_id = {user.object_id: user for user in identified}

    def __iter__(self) -> Iterator[DirectoryUser]:
        return iter(self._by_email.values())

    def by_email(self, email: str) -> DirectoryUser | None:
        return self._by_email.get(email.strip().casefold())

    def by_object_id(self, object_id: str) -> DirectoryUser | None:
        return self._by_object_id.get(object_id)


def pkce_matches(*, verifier: str, challenge: str, method: str) -> bool:
    """RFC 7636: S256 compares BASE64URL(SHA256(verifier)) with the challenge; ``plain``
    compares them as they are."""
    # Compared as bytes: compare_digest refuses non-ASCII text, and a client may send anything.
    expected = challenge.encode("utf-8", "replace")
    if method == "S256":
        digest = hashlib.sha256(verifier.encode("utf-8", "replace")).digest()
        return hmac.compare_digest(base64.urlsafe_b64encode(digest).rstrip(b"="), expected)
    if method == "plain":
        return hmac.compare_digest(verifier.encode("utf-8", "replace"), expected)
    return False


@dataclass(frozen=True, slots=True)
class AuthorizationRequest:
    """What the client asked for at the authorization endpoint, kept until the code is
    redeemed (the token endpoint checks the same client, redirect URI and PKCE verifier)."""

    client_id: str
    redirect_uri: str
    scope: str
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str


@dataclass(slots=True)
class IssuedCode:
    request: AuthorizationRequest
    user: DirectoryUser
    expires_at: float
    redeemed: bool = False


@dataclass(slots=True)
class RefreshGrant:
    client_id: str
    user: DirectoryUser
    scope: str
    expires_at: float


class CodeRefused(Exception):
    """Why a code or refresh token is refused: Entra's AADSTS number and its words."""

    def __init__(self, aadsts: int, message: str) -> None:
        super().__init__(message)
        self.aadsts = aadsts
        self.message = message


@dataclass(slots=True)
class SignInGrants:
    """The codes and refresh tokens one emulator has handed out."""

    codes: dict[str, IssuedCode] = field(default_factory=dict)
    refresh_tokens: dict[str, RefreshGrant] = field(default_factory=dict)

    def issue_code(self, *, request: AuthorizationRequest, user: DirectoryUser, now: float) -> str:
        self._forget_expired(now)
        code = secrets.token_urlsafe(32)
        self.codes[code] = IssuedCode(request, user, now + CODE_LIFETIME_SECONDS)
        return code

    def redeem_code(
        self,
        *,
        code: str,
        client_id: str,
        redirect_uri: str,
        code_verifier: str | None,
        now: float,
    ) -> IssuedCode:
        """The code's sign-in, once: a second redemption, another client or redirect URI, an
        expired code or a wrong PKCE verifier is refused."""
        issued = self.codes.get(code)
        if issued is None:
            raise CodeRefused(70000, "The provided authorization code is invalid.")
        if issued.redeemed:
            raise CodeRefused(
                54005,
                "OAuth2 Authorization code was already redeemed, please retry with a new "
                "valid code or use an existing refresh token.",
            )
        if now >= issued.expires_at:
            raise CodeRefused(70008, "The provided authorization code has expired.")
        request = issued.request
        if client_id.casefold() != request.client_id.casefold():
            raise CodeRefused(70000, "The code was issued to another application.")
        if redirect_uri != request.redirect_uri:
            raise CodeRefused(
                50011, "The redirect URI does not match the one the code was issued for."
            )
        if request.code_challenge is not None:
            if not code_verifier:
                raise CodeRefused(
                    9002313, "The request body must contain the parameter 'code_verifier'."
                )
            if not pkce_matches(
                verifier=code_verifier,
                challenge=request.code_challenge,
                method=request.code_challenge_method,
            ):
                raise CodeRefused(501481, "The Code_Verifier does not match the code_challenge.")
        # Marked, not removed: a replay is told apart from a code never issued.
        issued.redeemed = True
        return issued

    def issue_refresh_token(
        self, *, client_id: str, user: DirectoryUser, scope: str, now: float
    ) -> str:
        token = secrets.token_urlsafe(48)
        self.refresh_tokens[token] = RefreshGrant(
            client_id, user, scope, now + REFRESH_TOKEN_LIFETIME_SECONDS
        )
        return token

    def use_refresh_token(self, *, token: str, client_id: str, now: float) -> RefreshGrant:
        grant = self.refresh_tokens.get(token)
        if grant is None:
            raise CodeRefused(9002313, "The refresh token is malformed or not valid.")
        if now >= grant.expires_at:
            self.refresh_tokens.pop(token, None)
            raise CodeRefused(700082, "The refresh token has expired due to inactivity.")
        if client_id.casefold() != grant.client_id.casefold():
            raise CodeRefused(70000, "The refresh token was issued to another application.")
        return grant

    def revoke_user(self, object_id: str) -> int:
        """End every refresh token of one person (Entra: revoke sign-in sessions)."""
        revoked = [
            t for t, grant in self.refresh_tokens.items() if grant.user.object_id == object_id
        ]
        for token in revoked:
            del self.refresh_tokens[token]
        return len(revoked)

    def _forget_expired(self, now: float) -> None:
        if len(self.codes) < _MAX_CODES:
            return
        for code in [c for c, issued in self.codes.items() if now >= issued.expires_at]:
            del self.codes[code]
