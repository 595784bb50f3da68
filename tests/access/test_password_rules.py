"""Password rules (ASVS 2.1): 12 to 128 characters, any characters, no common, breached or
self-describing password, no rules about kinds of characters."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from embedportal.access.login import authenticate
from embedportal.access.passwords import MIN_STRENGTH, password_strength
from embedportal.access.users import UserInputError, check_password_rules, create_user
from embedportal.db.base import utcnow
from embedportal.db.models import User
from embedportal.settings import Settings


@pytest.mark.parametrize(
    "password",
    [
        "123qweasdzxc",  # on the breached list zxcvbn carries
        "qwerty123456",
        "password1234",
        "Password1234!",  # a common one with the usual twist
        "aaaaaaaaaaaa",
        "abcdefghijkl",
        "ana.souza2024",  # the person's own name and a year
    ],
)
def test_common_breached_or_self_describing_passwords_are_refused(password: str) -> None:
    with pytest.raises(UserInputError, match="too easy to guess") as refused:
        check_password_rules(password, user_inputs=("ana.souza@example.com", "Ana Souza"))
    assert set(refused.value.errors) == {"password"}


@pytest.mark.parametrize(
    "password",
    [
        "correct-horse-battery-staple",
        "tapete azul na varanda",  # spaces are characters like any other
        "coração-de-manteiga-7",  # and so is anything Unicode
        "🦜🌵🎻 papagaio cacto",
        "x" * 20 + "Q9vL2#kP",
    ],
)
def test_long_unusual_passwords_of_any_characters_pass(password: str) -> None:
    check_password_rules(password)
    assert password_strength(password) >= MIN_STRENGTH


@pytest.mark.parametrize(("length", "ok"), [(11, False), (12, True), (128, True), (129, False)])
def test_length_is_12_to_128(length: int, ok: bool) -> None:
    password = ("Zq8-vL2kP-wR5n" * 20)[:length]
    if ok:
        check_password_rules(password)
    else:
        with pytest.raises(UserInputError, match="characters"):
            check_password_rules(password)


def test_a_unicode_password_signs_in_as_typed(
    db: Session, settings: Settings, fast_password_hashing: None
) -> None:
    password = "🦜🌵🎻 coração papagaio"
    user = create_user(session=db, email="ana@example.com", password=password, actor=None)
    result = authenticate(
        session=db,
        email="ana@example.com",
        password=password,
        client_address="192.0.2.1",
        settings=settings,
        now=utcnow(),
    )
    assert isinstance(result, User) and result.id == user.id


def test_the_strength_of_nothing_is_zero() -> None:
    assert password_strength("") == 0
    # Far past zxcvbn's own limit, the first 72 characters decide, without an error.
    assert password_strength("Zq8-vL2kP-wR5n" * 100) == 4
