"""The token refresh policy: what the organization's settings mean for minting and for viewers.

Pure functions only (no database, no clock): the settings form validates through
:func:`validate_policy_form`, the token service asks :func:`keeper_policy` what to tell a viewer
about a token, and :func:`share_threshold_seconds` how long a minted token may be shared.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from embedportal.i18n import N_

MAX_LIFETIME_MINUTES = 60  # Power BI never issues embed tokens for longer than about an hour
DEFAULT_LIFETIME_MINUTES = 60
DEFAULT_MARGIN_MINUTES = 10
DEFAULT_INTERACTION_MIN_AGE_MINUTES = 5
CHECK_INTERVAL_SECONDS = 30
MAX_BACKOFF_SECONDS = 60
# Margins and ages are capped at this share of a token's real lifetime, so short tokens (the
# emulator can issue 20-second ones for tests) are refreshed before they die, not in a loop.
SHORT_LIFETIME_SHARE = 1 / 3
# The server shares a minted token while it has more than the margin plus this slack left (at
# most half a margin for short tokens). A tight threshold is what keeps Power BI at about one
# GenerateToken per identity per (lifetime - margin): an interaction refresh that finds the
# shared token with 11 minutes left gets that token again rather than a new mint. The viewer
# then refreshes once more when its margin is reached, and that request mints.
SHARE_SLACK_SECONDS = 60.0


@dataclass(frozen=True)
class TokenPolicy:
    """The organization's token settings, in minutes as the admin entered them."""

    lifetime_minutes: int = DEFAULT_LIFETIME_MINUTES
    margin_minutes: int = DEFAULT_MARGIN_MINUTES
    refresh_every_minutes: int | None = None  # None: timed refresh off
    interaction_min_age_minutes: int = DEFAULT_INTERACTION_MIN_AGE_MINUTES


def margin_seconds(policy: TokenPolicy, lifetime_seconds: float) -> float:
    """The refresh margin for a token that lives ``lifetime_seconds`` in all."""
    return min(policy.margin_minutes * 60.0, max(lifetime_seconds, 0.0) * SHORT_LIFETIME_SHARE)


def share_threshold_seconds(policy: TokenPolicy, lifetime_seconds: float) -> float:
    """A cached token is handed out only while it has more than this many seconds left."""
    margin = margin_seconds(policy, lifetime_seconds)
    return margin + min(SHARE_SLACK_SECONDS, margin / 2)


def entra_min_remaining_seconds(policy: TokenPolicy) -> float:
    """Life the Entra token must have so it cannot cut the embed token short."""
    return (policy.lifetime_minutes + policy.margin_minutes) * 60.0


def keeper_policy(policy: TokenPolicy, *, lifetime_seconds: float) -> dict[str, Any]:
    """The ``policy`` object of the token API, as the browser's token keeper reads it.

    ``lifetime_seconds`` is the token's whole life (expiration minus minting), which may be
    shorter than the configured lifetime: Power BI, or the emulator, can cap it.
    """
    life = max(lifetime_seconds, 0.0)
    refresh_every = policy.refresh_every_minutes
    return {
        "marginSeconds": round(margin_seconds(policy, life), 3),
        "minInteractionAgeSeconds": round(
            min(policy.interaction_min_age_minutes * 60.0, life * SHORT_LIFETIME_SHARE), 3
        ),
        "refreshEverySeconds": refresh_every * 60 if refresh_every else None,
        "checkIntervalSeconds": round(max(1.0, min(CHECK_INTERVAL_SECONDS, life / 6)), 3),
        "maxBackoffSeconds": MAX_BACKOFF_SECONDS,
    }


# --- the settings form ---------------------------------------------------------------------------


FIELD_REFRESH_EVERY = "refresh_every_minutes"
FIELD_LIFETIME = "token_lifetime_minutes"
FIELD_MARGIN = "refresh_margin_minutes"


@dataclass(frozen=True)
class PolicyFormResult:
    """Either a policy (``errors`` empty) or messages per form field (``policy`` None)."""

    policy: TokenPolicy | None
    errors: dict[str, str]


# Far beyond any field's range, far below what `int` refuses (4300 digits) or a column holds.
MAX_DIGITS = 9


def _whole_number(raw: str) -> int | None:
    """The whole number ``raw`` spells in ASCII digits, or None: `str.isdigit` alone also
    takes "²" and "٣", which `int` refuses with an exception."""
    text = raw.strip()
    digits = text[1:] if text.startswith("-") else text
    if not digits or len(digits) > MAX_DIGITS or not (digits.isascii() and digits.isdigit()):
        return None
    return int(text)


def validate_policy_form(
    form: Mapping[str, str],
    *,
    interaction_min_age_minutes: int = DEFAULT_INTERACTION_MIN_AGE_MINUTES,
) -> PolicyFormResult:
    """Check the three token fields of the Settings form. Messages are English source strings
    (the caller translates them): "Refresh token every" empty or 0 is off, otherwise a whole
    number of minutes from 1 to below the lifetime; the lifetime 1 to 60; the margin at least 1
    and below the lifetime."""
    errors: dict[str, str] = {}

    lifetime = _whole_number(form.get(FIELD_LIFETIME, ""))
    if lifetime is None:
        errors[FIELD_LIFETIME] = N_("Enter the token lifetime as a whole number of minutes.")
    elif not 1 <= lifetime <= MAX_LIFETIME_MINUTES:
        errors[FIELD_LIFETIME] = N_("The token lifetime must be from 1 to 60 minutes.")

    margin = _whole_number(form.get(FIELD_MARGIN, ""))
    if margin is None:
        errors[FIELD_MARGIN] = N_("Enter the refresh margin as a whole number of minutes.")
    elif margin < 1:
        errors[FIELD_MARGIN] = N_("The refresh margin must be at least 1 minute.")
    elif lifetime is not None and FIELD_LIFETIME not in errors and margin >= lifetime:
        errors[FIELD_MARGIN] = N_("The refresh margin must be shorter than the token lifetime.")

    refresh_every: int | None = None
    raw_every = form.get(FIELD_REFRESH_EVERY, "").strip()
    if raw_every:
        every = _whole_number(raw_every)
        if every is None:
            errors[FIELD_REFRESH_EVERY] = N_(
                "Enter a whole number of minutes, or leave it empty (or 0) to turn timed "
                "refresh off."
            )
        elif every < 0:
            errors[FIELD_REFRESH_EVERY] = N_(
                "The refresh interval cannot be negative (0 or empty turns it off)."
            )
        elif every > 0:
            if lifetime is not None and FIELD_LIFETIME not in errors and every >= lifetime:
                errors[FIELD_REFRESH_EVERY] = N_(
                    "Refresh more often than the token lifetime: the interval must be shorter "
                    "than the lifetime."
                )
            refresh_every = every

    if errors or lifetime is None or margin is None:
        return PolicyFormResult(policy=None, errors=errors)
    return PolicyFormResult(
        policy=TokenPolicy(
            lifetime_minutes=lifetime,
            margin_minutes=margin,
            refresh_every_minutes=refresh_every,
            interaction_min_age_minutes=interaction_min_age_minutes,
        ),
        errors={},
    )
