"""Password hashing with argon2id (argon2-cffi's recommended parameters)."""

from __future__ import annotations

from collections.abc import Sequence

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from zxcvbn import zxcvbn

# OWASP ASVS 2.1.1 and 2.1.2: at least 12 characters, and up to 128 for a new password.
MIN_PASSWORD_LENGTH = 12
MAX_NEW_PASSWORD_LENGTH = 128
# What sign-in checks at most: older rules allowed up to this many, and argon2 work is bounded.
MAX_PASSWORD_LENGTH = 1024

# zxcvbn's score, 0 (guessed at once) to 4 (very hard): below this a new password is refused.
# 1 means under a million guesses, which is what a common password with a twist takes
# (ASVS 2.1.7: breached and common passwords are refused; zxcvbn carries such a list).
MIN_STRENGTH = 2
STRENGTH_LEVELS = 5
# zxcvbn's own ceiling; past 72 characters the beginning decides (it is strong or not by then).
_STRENGTH_MAX_LENGTH = 72

_hasher = PasswordHasher()

# The stored "hash" of a user invited to choose their own password: no password verifies
# against it (argon2 refuses it as no hash at all), so nobody signs in until they have chosen.
NO_PASSWORD_YET = "!invited"


def has_password(password_hash: str) -> bool:
    return password_hash != NO_PASSWORD_YET


def password_strength(password: str, *, user_inputs: Sequence[str] = ()) -> int:
    """zxcvbn's score of ``password``, 0 to 4: how hard it is to guess, with common and breached
    passwords, words, names, keyboard patterns, dates and the user's own details (e-mail,
    name) counted as easy."""
    if not password:
        return 0
    inputs = [part for text in user_inputs for part in _pieces(text)]
    result = zxcvbn(password[:_STRENGTH_MAX_LENGTH], user_inputs=inputs)
    return int(result["score"])


def _pieces(text: str) -> list[str]:
    """An e-mail or name, whole, in its parts and run together (ana.souza@example.com: ana,
    souza, anasouza, …)."""
    parts = [text.lower(), text.lower().split("@", 1)[0]]
    for separator in "@.-_+ ":
        parts = [piece for part in parts for piece in [part, *part.split(separator)]]
    parts += ["".join(char for char in part if char.isalnum()) for part in parts]
    return sorted({part for part in parts if len(part) >= 3})


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    if not has_password(password_hash):
        # An invited user who has not chosen yet: as long as a wrong password takes, so the
        # timing does not tell such an account apart.
        _verify_dummy(password)
        return False
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def _verify_dummy(password: str) -> None:
    try:
        _hasher.verify(dummy_hash(), password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        pass


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)


_dummy: tuple[PasswordHasher, str] | None = None


def dummy_hash() -> str:
    """A hash of nothing in particular, verified against when the e-mail is unknown or the
    attempt is held back, so such an attempt costs as long as a wrong password and timing does
    not reveal who has an account. Made with the hasher in use (its parameters are what the
    time depends on), once."""
    global _dummy  # noqa: PLW0603 - a cache of one value, rebuilt only if the hasher changes
    if _dummy is None or _dummy[0] is not _hasher:
        _dummy = (_hasher, _hasher.hash("embedportal-timing-equaliser"))
    return _dummy[1]
