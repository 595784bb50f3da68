"""The token API's answer for a user-owned report (embed for your organization): the person's
own Power BI token, an Entra access token (``tokenType: Aad``), instead of an embed token.

A kept token is answered from memory (no thread, no database). Otherwise
:class:`~embedportal.access.person_tokens.PersonTokens` renews it with msal from the person's
refresh token, in a worker thread: the event loop never waits on Entra or the database.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from embedportal.access.microsoft_accounts import MicrosoftSignIns
from embedportal.access.person_tokens import PersonToken, PersonTokenRefused, PersonTokens
from embedportal.i18n import N_
from embedportal.settings import Settings
from embedportal.tokens.policy import TokenPolicy, keeper_policy

TOKEN_TYPE_AAD = "Aad"
MICROSOFT_SIGN_IN_NEEDED = "MicrosoftSignInNeeded"
ENTRA_UNAVAILABLE = "EntraUnavailable"
MICROSOFT_SIGN_IN_NOT_CONFIGURED = "MicrosoftSignInNotConfigured"
# How soon a viewer should ask again when Entra did not answer.
ENTRA_RETRY_SECONDS = 5
# Reasons a viewer asks when the token it holds is due (the iframe's newAccessToken hook, the
# keeper's margin, a timed refresh, an expiry): they get a newer token than the one kept, or
# the iframe would be handed back the token it is replacing.
RENEWING_REASONS = frozenset({"hook", "margin", "timed", "expired-error", "recovery", "manual"})

SIGN_IN_NEEDED_MESSAGE = N_(
    "This report opens with your own Power BI account. Sign in with Microsoft to see it."
)
NOT_CONFIGURED_MESSAGE = N_(
    "This report opens with each person's own Power BI account, but Sign in with Microsoft is "
    "not set up. An administrator must set it up in Admin → Settings."
)
ENTRA_UNAVAILABLE_MESSAGE = N_("Microsoft did not answer. The viewer retries by itself.")


@dataclass(frozen=True)
class PersonTokenRefusal(Exception):
    """Why no token: ``status``, a stable ``code``, an English ``detail`` (translated by the
    caller) and, for a passing failure, ``retry_after`` seconds."""

    status: int
    code: str
    detail: str
    retry_after: float | None = None


def _refusal_of(refused: PersonTokenRefused) -> PersonTokenRefusal:
    if refused.reason == "unreachable":
        return PersonTokenRefusal(
            503, ENTRA_UNAVAILABLE, ENTRA_UNAVAILABLE_MESSAGE, ENTRA_RETRY_SECONDS
        )
    if refused.reason == "not_configured":
        return PersonTokenRefusal(503, MICROSOFT_SIGN_IN_NOT_CONFIGURED, NOT_CONFIGURED_MESSAGE)
    # Never signed in with Microsoft, signed out since, or the refresh token was refused.
    return PersonTokenRefusal(403, MICROSOFT_SIGN_IN_NEEDED, SIGN_IN_NEEDED_MESSAGE)


async def person_token(
    *,
    tokens: PersonTokens,
    user_id: int,
    session_factory: sessionmaker[Session],
    settings: Settings,
    flows: MicrosoftSignIns,
    reason: str = "load",
) -> PersonToken:
    """The person's current Power BI token (for a renewing ``reason``, a newer one than
    kept). Raises PersonTokenRefusal."""
    renew = reason in RENEWING_REASONS
    cached = tokens.cached(user_id, renew=renew)
    if cached is not None:
        return cached
    try:
        return await run_in_threadpool(
            lambda: tokens.token_for(
                user_id=user_id,
                session_factory=session_factory,
                settings=settings,
                flows=flows,
                renew=renew,
            )
        )
    except PersonTokenRefused as refused:
        raise _refusal_of(refused) from None


def aad_answer(
    token: PersonToken, *, policy: TokenPolicy, now: datetime | None = None
) -> dict[str, Any]:
    """The token API's JSON for a person's own token, shaped like an embed token's answer
    (docs/token-api.md) plus ``tokenType``."""
    now = now or datetime.now(UTC)
    remaining = max(0, int((token.expires_at - now).total_seconds()))
    lifetime = token.lifetime_seconds or float(remaining)
    return {
        "token": token.access_token,
        "tokenType": TOKEN_TYPE_AAD,
        "tokenId": "",
        "expiration": token.expires_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "expiresIn": remaining,
        "policy": keeper_policy(policy, lifetime_seconds=lifetime),
    }
