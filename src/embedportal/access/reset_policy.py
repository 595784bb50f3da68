"""How many password reset mails may go out: pure decisions, no I/O.

Two counters per hour, kept in the sign-in throttle table (access/password_links.py): one per
client address over every e-mail (someone trying many addresses), one per e-mail address from
everywhere (someone filling one mailbox). A request beyond either gets the same answer as any
other and sends nothing, so the limit tells nothing about who has an account."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from embedportal.access.throttle_policy import WINDOW, Tally


@dataclass(frozen=True)
class ResetLimits:
    per_address: int
    per_account: int


@dataclass(frozen=True)
class ResetDecision:
    send: bool
    address: Tally
    account: Tally


def _current(tally: Tally, now: datetime) -> Tally:
    """The tally in the window that holds ``now``: a new window once the hour is over."""
    started = tally.window_started_at
    if started is None or now - started >= WINDOW or started > now:
        return Tally(failures=0, window_started_at=now)
    return tally


def decide_reset(
    *, address: Tally, account: Tally, limits: ResetLimits, now: datetime
) -> ResetDecision:
    """Whether this request sends a mail, and the tallies to store. Every request counts for
    its address; only one the address limit lets through counts for the account."""
    address = _current(address, now)
    account = _current(account, now)
    if address.failures >= limits.per_address:
        return ResetDecision(send=False, address=address, account=account)
    address = Tally(failures=address.failures + 1, window_started_at=address.window_started_at)
    if account.failures >= limits.per_account:
        return ResetDecision(send=False, address=address, account=account)
    account = Tally(failures=account.failures + 1, window_started_at=account.window_started_at)
    return ResetDecision(send=True, address=address, account=account)
