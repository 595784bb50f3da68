"""What a sign-in attempt may do, given the throttles' tallies: pure decisions, no I/O.

Three counters hold an attempt back (access/login.py keeps them in `login_throttles`):

- **pair**, one e-mail from one client address: after ``max_attempts`` failures in a row that
  address waits a minute, then twice as long after each further failure, up to ``longest_wait``.
  Only the guesser's own address waits; the owner elsewhere signs in as usual.
- **address**, one client address over every e-mail (password spraying): at most
  ``address_limit`` failures per hour.
- **account**, one e-mail from every address (guessing from many machines): at most
  ``account_limit`` failures per hour, the ASVS 2.2.1 ceiling.

The two wide limits do not hold back an address that has signed in to that account before (its
pair remembers the success): a flood from elsewhere cannot lock the owner out at their desk.

An attempt is counted as a failure *before* its password is checked, under the rows' lock, and
given back when the password is right. So attempts racing each other each see the ones before
them, and once a limit is reached no attempt in flight can slip past it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

FIRST_WAIT = timedelta(minutes=1)
WINDOW = timedelta(hours=1)


@dataclass(frozen=True)
class Tally:
    """One throttle row as the decision sees it."""

    failures: int = 0
    window_started_at: datetime | None = None
    locked_until: datetime | None = None
    succeeded_at: datetime | None = None


@dataclass(frozen=True)
class Limits:
    max_attempts: int
    longest_wait: timedelta
    address_limit: int
    account_limit: int


@dataclass(frozen=True)
class Decision:
    """Either ``wait_until`` (refused, try again then) or the tallies with this attempt
    reserved, to be stored before the password is checked."""

    wait_until: datetime | None
    pair: Tally
    address: Tally
    account: Tally
    # The reservation started the pair's wait: worth an audit entry of its own.
    starts_wait: bool = False


def wait_after(failures: int, limits: Limits) -> timedelta | None:
    """How long the pair waits after ``failures`` failures in a row (None: not at all)."""
    if failures < limits.max_attempts:
        return None
    doublings = failures - limits.max_attempts
    # Beyond 2**20 minutes every wait is the longest anyway; the cap keeps the number small.
    wait: timedelta = FIRST_WAIT * 2 ** min(doublings, 20)
    return min(wait, limits.longest_wait)


def _in_window(counter: Tally, now: datetime) -> Tally:
    """The counter as it stands in the current hour: an older window starts again from zero."""
    if counter.window_started_at is None or now - counter.window_started_at >= WINDOW:
        return Tally(failures=0, window_started_at=now, succeeded_at=counter.succeeded_at)
    return counter


def decide(
    *, pair: Tally, address: Tally, account: Tally, limits: Limits, now: datetime
) -> Decision:
    """May this attempt go on to the password check, and what the counters become if so."""
    if pair.locked_until is not None and pair.locked_until > now:
        return Decision(pair.locked_until, pair, address, account)
    address = _in_window(address, now)
    account = _in_window(account, now)
    known = pair.succeeded_at is not None
    if not known:
        waits = [
            counter.window_started_at + WINDOW
            for counter, limit in ((address, limits.address_limit), (account, limits.account_limit))
            if counter.failures >= limit and counter.window_started_at is not None
        ]
        if waits:
            return Decision(max(waits), pair, address, account)
    failures = pair.failures + 1
    wait = wait_after(failures, limits)
    reserved_pair = replace(pair, failures=failures, locked_until=now + wait if wait else None)
    return Decision(
        None,
        reserved_pair,
        replace(address, failures=address.failures + 1),
        replace(account, failures=account.failures + 1),
        starts_wait=wait is not None,
    )


def after_success(
    *, pair: Tally, address: Tally, account: Tally, now: datetime, given_back: int = 1
) -> Decision:
    """The right password (and code, with two-step sign-in): the pair starts again and
    remembers this address as the owner's; the wide counters give back the failures reserved
    for this sign-in, ``given_back`` of them (two when a code followed the password: the
    password's reservation stays counted until the code is right, see access/login.py)."""
    return Decision(
        None,
        Tally(failures=0, window_started_at=pair.window_started_at, succeeded_at=now),
        replace(address, failures=max(address.failures - given_back, 0)),
        replace(account, failures=max(account.failures - given_back, 0)),
    )
