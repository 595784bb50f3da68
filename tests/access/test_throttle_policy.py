"""The throttles' decisions, pure: waits that double, the hourly ceilings, known addresses."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from embedportal.access.throttle_policy import (
    FIRST_WAIT,
    WINDOW,
    Limits,
    Tally,
    after_success,
    decide,
    wait_after,
)

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
LIMITS = Limits(
    max_attempts=5, longest_wait=timedelta(minutes=30), address_limit=50, account_limit=100
)


def test_waits_start_at_the_limit_and_double_up_to_the_longest() -> None:
    waits = [wait_after(failures, LIMITS) for failures in range(1, 12)]
    minute = timedelta(minutes=1)
    assert waits == [None, None, None, None, minute, 2 * minute, 4 * minute, 8 * minute] + [
        16 * minute,
        30 * minute,
        30 * minute,
    ]


@given(st.integers(min_value=0, max_value=10**9))
def test_a_wait_is_never_longer_than_the_longest(failures: int) -> None:
    wait = wait_after(failures, LIMITS)
    assert wait is None or FIRST_WAIT <= wait <= LIMITS.longest_wait


def test_an_attempt_is_reserved_before_its_password_is_checked() -> None:
    decision = decide(pair=Tally(), address=Tally(), account=Tally(), limits=LIMITS, now=NOW)
    assert decision.wait_until is None and not decision.starts_wait
    assert (decision.pair.failures, decision.address.failures, decision.account.failures) == (
        1,
        1,
        1,
    )


def test_the_attempt_that_reaches_the_limit_starts_the_wait() -> None:
    decision = decide(
        pair=Tally(failures=4), address=Tally(), account=Tally(), limits=LIMITS, now=NOW
    )
    assert decision.starts_wait and decision.pair.locked_until == NOW + FIRST_WAIT
    held = decide(pair=decision.pair, address=Tally(), account=Tally(), limits=LIMITS, now=NOW)
    assert held.wait_until == NOW + FIRST_WAIT
    # Held back, nothing is counted.
    assert held.pair == decision.pair


def test_the_wide_limits_hold_back_only_unknown_addresses() -> None:
    full = Tally(failures=100, window_started_at=NOW - timedelta(minutes=10))
    stranger = decide(pair=Tally(), address=Tally(), account=full, limits=LIMITS, now=NOW)
    assert stranger.wait_until == NOW + timedelta(minutes=50)
    owner = decide(
        pair=Tally(succeeded_at=NOW - timedelta(days=3)),
        address=Tally(),
        account=full,
        limits=LIMITS,
        now=NOW,
    )
    assert owner.wait_until is None


def test_a_window_that_is_over_starts_again() -> None:
    old = Tally(failures=100, window_started_at=NOW - WINDOW)
    decision = decide(pair=Tally(), address=old, account=old, limits=LIMITS, now=NOW)
    assert decision.wait_until is None
    assert decision.address == Tally(failures=1, window_started_at=NOW)


def test_success_gives_back_the_reservation_and_remembers_the_address() -> None:
    reserved = decide(
        pair=Tally(failures=2), address=Tally(), account=Tally(), limits=LIMITS, now=NOW
    )
    done = after_success(
        pair=reserved.pair, address=reserved.address, account=reserved.account, now=NOW
    )
    assert done.pair.failures == 0 and done.pair.locked_until is None
    assert done.pair.succeeded_at == NOW
    assert done.address.failures == 0 and done.account.failures == 0


def test_a_sign_in_with_a_code_gives_back_both_its_reservations() -> None:
    window = NOW - timedelta(minutes=5)
    done = after_success(
        pair=Tally(failures=2, window_started_at=window),
        address=Tally(failures=3, window_started_at=window),
        account=Tally(failures=1, window_started_at=window),
        now=NOW,
        given_back=2,
    )
    assert (done.pair.failures, done.address.failures, done.account.failures) == (0, 1, 0)
    assert done.pair.succeeded_at == NOW
