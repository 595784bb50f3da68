"""When a failed mail is tried again, and when it is given up: pure decisions, no I/O."""

from __future__ import annotations

from datetime import timedelta

FIRST_RETRY = timedelta(seconds=30)
LONGEST_RETRY = timedelta(hours=1)


def retry_delay(failed_attempts: int) -> timedelta:
    """The wait after the ``failed_attempts``-th failure: 30 s, 1 min, 2 min, … at most an hour.
    Growing, so a server that is down for a while is not hammered; capped, so a mail is still
    sent soon after a long outage ends."""
    if failed_attempts < 1:
        return timedelta(0)
    # 2**n grows past any cap quickly: stop doubling once the cap is reached.
    exponent = min(failed_attempts - 1, 16)
    return min(FIRST_RETRY * (1 << exponent), LONGEST_RETRY)


def gives_up(*, failed_attempts: int, max_attempts: int, permanent: bool) -> bool:
    """Whether a mail is marked failed for good: the server refused it permanently (a 5xx
    answer to the recipient, say), or it has had all its attempts."""
    return permanent or failed_attempts >= max_attempts
