"""How many password reset mails may go out: every combination of the two counters."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import product

import pytest

from embedportal.access.reset_policy import ResetLimits, decide_reset
from embedportal.access.throttle_policy import WINDOW, Tally

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
LIMITS = ResetLimits(per_address=4, per_account=2)


def _tally(count: int, *, age: timedelta = timedelta(minutes=10)) -> Tally:
    return Tally(failures=count, window_started_at=NOW - age)


@pytest.mark.parametrize(("address", "account"), list(product(range(6), range(4))))
def test_every_count_within_the_hour(address: int, account: int) -> None:
    decision = decide_reset(
        address=_tally(address), account=_tally(account), limits=LIMITS, now=NOW
    )
    address_ok = address < LIMITS.per_address
    assert decision.send is (address_ok and account < LIMITS.per_account)
    # Every request counts for its address (up to the limit, where it stays).
    assert decision.address.failures == (address + 1 if address_ok else address)
    # Only one the address let through counts for the account.
    assert decision.account.failures == (account + 1 if decision.send else account)


def test_a_new_hour_starts_both_counts_again() -> None:
    decision = decide_reset(
        address=_tally(99, age=WINDOW),
        account=_tally(99, age=WINDOW + timedelta(1)),
        limits=LIMITS,
        now=NOW,
    )
    assert decision.send
    assert decision.address == Tally(failures=1, window_started_at=NOW)
    assert decision.account == Tally(failures=1, window_started_at=NOW)


def test_a_fresh_row_and_a_clock_gone_back_start_a_window_now() -> None:
    for tally in (Tally(), _tally(9, age=-timedelta(minutes=5))):
        decision = decide_reset(address=tally, account=tally, limits=LIMITS, now=NOW)
        assert decision.send
        assert decision.address.window_started_at == NOW


def test_the_window_keeps_its_start_while_it_lasts() -> None:
    started = NOW - timedelta(minutes=59)
    decision = decide_reset(
        address=Tally(failures=1, window_started_at=started),
        account=Tally(failures=0, window_started_at=started),
        limits=LIMITS,
        now=NOW,
    )
    assert decision.address.window_started_at == started
    assert decision.account.window_started_at == started
