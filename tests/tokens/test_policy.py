"""The token policy: what the organization's settings tell viewers, and the form's rules."""

from __future__ import annotations

import pytest

from embedportal.tokens.policy import (
    TokenPolicy,
    keeper_policy,
    share_threshold_seconds,
    validate_policy_form,
)


def form(every: str = "", lifetime: str = "60", margin: str = "10") -> dict[str, str]:
    return {
        "refresh_every_minutes": every,
        "token_lifetime_minutes": lifetime,
        "refresh_margin_minutes": margin,
    }


def test_keeper_policy_for_an_hour_long_token_uses_the_settings_as_they_are() -> None:
    policy = TokenPolicy(lifetime_minutes=60, margin_minutes=10, refresh_every_minutes=15)
    assert keeper_policy(policy, lifetime_seconds=3600) == {
        "marginSeconds": 600,
        "minInteractionAgeSeconds": 300,
        "refreshEverySeconds": 900,
        "checkIntervalSeconds": 30,
        "maxBackoffSeconds": 60,
    }


def test_keeper_policy_scales_down_for_short_tokens() -> None:
    # The emulator (or Power BI) may cap the lifetime far below the configured one.
    answer = keeper_policy(TokenPolicy(), lifetime_seconds=30)
    assert answer["marginSeconds"] == 10
    assert answer["minInteractionAgeSeconds"] == 10
    assert answer["checkIntervalSeconds"] == 5
    assert answer["refreshEverySeconds"] is None


def test_a_token_is_shared_while_it_has_more_than_one_and_a_half_margins_left() -> None:
    assert share_threshold_seconds(TokenPolicy(margin_minutes=10), 3600) == 660
    assert share_threshold_seconds(TokenPolicy(margin_minutes=10), 60) == 30  # 20 + 10


@pytest.mark.parametrize(
    ("every", "expected"),
    [("", None), ("0", None), ("  ", None), ("1", 1), ("59", 59), (" 30 ", 30)],
)
def test_refresh_every_accepts_off_and_minutes_below_the_lifetime(
    every: str, expected: int | None
) -> None:
    result = validate_policy_form(form(every=every))
    assert result.errors == {}
    assert result.policy is not None
    assert result.policy.refresh_every_minutes == expected


@pytest.mark.parametrize(
    ("values", "field", "words"),
    [
        (form(every="-1"), "refresh_every_minutes", "negative"),
        (form(every="abc"), "refresh_every_minutes", "whole number"),
        (form(every="2.5"), "refresh_every_minutes", "whole number"),
        (form(every="60"), "refresh_every_minutes", "shorter than the lifetime"),
        (form(every="61"), "refresh_every_minutes", "shorter than the lifetime"),
        (form(every="10", lifetime="10", margin="5"), "refresh_every_minutes", "shorter"),
        (form(lifetime="0"), "token_lifetime_minutes", "1 to 60"),
        (form(lifetime="61"), "token_lifetime_minutes", "1 to 60"),
        (form(lifetime="-5"), "token_lifetime_minutes", "1 to 60"),
        (form(lifetime=""), "token_lifetime_minutes", "whole number"),
        (form(lifetime="sixty"), "token_lifetime_minutes", "whole number"),
        (form(margin="0"), "refresh_margin_minutes", "at least 1"),
        (form(margin="60"), "refresh_margin_minutes", "shorter than the token lifetime"),
        (form(margin="x"), "refresh_margin_minutes", "whole number"),
    ],
)
def test_invalid_values_are_refused_with_a_message_for_the_field(
    values: dict[str, str], field: str, words: str
) -> None:
    result = validate_policy_form(values)
    assert result.policy is None
    assert words in result.errors[field]


def test_boundaries_lifetime_minus_one_is_the_largest_refresh_interval_and_margin() -> None:
    result = validate_policy_form(form(every="59", lifetime="60", margin="59"))
    assert result.errors == {}
    assert result.policy == TokenPolicy(
        lifetime_minutes=60, margin_minutes=59, refresh_every_minutes=59
    )
    result = validate_policy_form(form(every="", lifetime="2", margin="1"))
    assert result.policy == TokenPolicy(lifetime_minutes=2, margin_minutes=1)


def test_every_problem_is_reported_at_once() -> None:
    result = validate_policy_form(form(every="x", lifetime="0", margin="-1"))
    assert set(result.errors) == {
        "refresh_every_minutes",
        "token_lifetime_minutes",
        "refresh_margin_minutes",
    }
