"""TOTP against the RFCs' own test vectors, and its acceptance window and replay rule."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from embedportal.access.totp import (
    DIGITS,
    STEP_SECONDS,
    decode_secret,
    encode_secret,
    grouped,
    hotp,
    matching_step,
    normalised_code,
    provisioning_uri,
    time_step,
    totp,
)

RFC_SECRET = b"12345678901234567890"

# RFC 4226, appendix D: HOTP values for counters 0 to 9.
RFC4226_VALUES = [
    "755224",
    "287082",
    "359152",
    "969429",
    "338314",
    "254676",
    "287922",
    "162583",
    "399871",
    "520489",
]

# RFC 6238, appendix B, the SHA-1 column (eight digits).
RFC6238_SHA1 = [
    (59, "94287082"),
    (1111111109, "07081804"),
    (1111111111, "14050471"),
    (1234567890, "89005924"),
    (2000000000, "69279037"),
    (20000000000, "65353130"),
]

secrets_ = st.binary(min_size=10, max_size=40)
moments = st.integers(min_value=STEP_SECONDS * 2000, max_value=2**34)


@pytest.mark.parametrize(("counter", "expected"), list(enumerate(RFC4226_VALUES)))
def test_hotp_matches_rfc_4226(counter: int, expected: str) -> None:
    assert hotp(RFC_SECRET, counter) == expected


@pytest.mark.parametrize(("unix_seconds", "expected"), RFC6238_SHA1)
def test_totp_matches_rfc_6238(unix_seconds: int, expected: str) -> None:
    assert totp(RFC_SECRET, unix_seconds, digits=8) == expected


@pytest.mark.parametrize(("unix_seconds", "expected"), RFC6238_SHA1)
def test_six_digits_are_the_last_six_of_eight(unix_seconds: int, expected: str) -> None:
    assert totp(RFC_SECRET, unix_seconds) == expected[-6:]


def test_steps_are_thirty_seconds_from_the_epoch() -> None:
    assert [time_step(t) for t in (0, 29, 30, 59, 60)] == [0, 0, 1, 1, 2]


@given(secret=secrets_, now=moments)
def test_the_current_code_and_its_neighbours_are_accepted_once(secret: bytes, now: int) -> None:
    current = time_step(now)
    for step in (current - 1, current, current + 1):
        code = hotp(secret, step)
        found = matching_step(secret, code, unix_seconds=now, last_used_step=None)
        # Another step of the window may share the code (one chance in a million): then the
        # earliest is taken, never one outside the window.
        assert found is not None and current - 1 <= found <= step
        later = {hotp(secret, later) for later in range(found + 1, current + 2)}
        if code not in later:  # the same code again is refused once its step is used
            assert matching_step(secret, code, unix_seconds=now, last_used_step=found) is None


@given(secret=secrets_, now=moments, distance=st.integers(min_value=2, max_value=1000))
def test_codes_two_steps_away_or_more_are_refused(secret: bytes, now: int, distance: int) -> None:
    current = time_step(now)
    for step in (current - distance, current + distance):
        code = hotp(secret, step)
        window = {hotp(secret, near) for near in range(current - 1, current + 2)}
        if code not in window:  # a collision with the window is a legitimate match
            assert matching_step(secret, code, unix_seconds=now, last_used_step=None) is None


@given(secret=secrets_, now=moments)
def test_a_code_is_not_accepted_again_nor_one_older_than_the_last_used(
    secret: bytes, now: int
) -> None:
    current = time_step(now)
    code = hotp(secret, current - 1)
    if code not in {hotp(secret, current), hotp(secret, current + 1)}:
        assert matching_step(secret, code, unix_seconds=now, last_used_step=current) is None
        assert matching_step(secret, code, unix_seconds=now, last_used_step=current - 1) is None
        assert (
            matching_step(secret, code, unix_seconds=now, last_used_step=current - 2) == current - 1
        )


@pytest.mark.parametrize(
    "typed", ["", "12345", "1234567", "12a456", "１２３４５６", "²²²²²²", "12345\x00"]
)
def test_anything_but_six_ascii_digits_is_no_code(typed: str) -> None:
    assert normalised_code(typed) is None
    assert matching_step(RFC_SECRET, typed, unix_seconds=59, last_used_step=None) is None


def test_spaces_and_a_dash_inside_a_code_are_ignored() -> None:
    assert normalised_code(" 123 456 ") == "123456"
    assert normalised_code("123-456") == "123456"
    assert len(normalised_code("000000") or "") == DIGITS


@given(secret=st.binary(min_size=1, max_size=64))
def test_the_secret_text_reads_back(secret: bytes) -> None:
    text = encode_secret(secret)
    assert "=" not in text
    assert decode_secret(text) == secret
    assert decode_secret(grouped(text).lower()) == secret


def test_a_secret_that_is_not_base32_is_refused() -> None:
    with pytest.raises(ValueError, match="base32"):
        decode_secret("not base32!")


def test_the_provisioning_uri_names_issuer_account_and_parameters() -> None:
    uri = provisioning_uri(RFC_SECRET, account="ana@example.com", issuer="Contoso Reports")
    assert uri.startswith("otpauth://totp/Contoso%20Reports:ana@example.com?")
    assert f"secret={encode_secret(RFC_SECRET)}" in uri
    assert "issuer=Contoso%20Reports" in uri
    assert "algorithm=SHA1" in uri and "digits=6" in uri and "period=30" in uri
