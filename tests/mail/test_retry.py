"""When a failed mail is tried again, and when it is given up."""

from __future__ import annotations

from datetime import timedelta

import pytest

from embedportal.mail.retry import FIRST_RETRY, LONGEST_RETRY, gives_up, retry_delay


def test_no_failure_no_wait() -> None:
    assert retry_delay(0) == timedelta(0)


@pytest.mark.parametrize(
    ("failures", "wait"),
    [(1, 30), (2, 60), (3, 120), (4, 240), (5, 480), (6, 960), (7, 1920), (8, 3600), (9, 3600)],
)
def test_the_wait_doubles_up_to_an_hour(failures: int, wait: int) -> None:
    assert retry_delay(failures) == timedelta(seconds=wait)


def test_the_wait_grows_and_never_passes_the_cap() -> None:
    waits = [retry_delay(n) for n in range(1, 200)]
    assert waits[0] == FIRST_RETRY
    assert waits == sorted(waits)
    assert max(waits) == LONGEST_RETRY


@pytest.mark.parametrize(
    ("failures", "maximum", "permanent", "expected"),
    [
        (1, 8, False, False),
        (7, 8, False, False),
        (8, 8, False, True),
        (9, 8, False, True),
        (1, 8, True, True),
        (1, 1, False, True),
    ],
)
def test_gives_up_after_the_last_attempt_or_a_permanent_refusal(
    failures: int, maximum: int, permanent: bool, expected: bool
) -> None:
    assert gives_up(failed_attempts=failures, max_attempts=maximum, permanent=permanent) is expected
