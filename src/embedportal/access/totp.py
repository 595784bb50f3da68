"""Time-based one-time passwords (RFC 6238 over RFC 4226's HOTP): pure functions, no I/O.

The parameters are the ones every authenticator app understands without being told: HMAC-SHA-1,
six digits, a 30-second step. A code is accepted for its own step and one step either side, so
a phone clock half a minute off still works. Each step is accepted once only: the caller keeps
the last accepted step per user and passes it in (ASVS 2.8.4), so a code seen over someone's
shoulder is worthless once used.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct
from urllib.parse import quote, urlencode

DIGITS = 6
STEP_SECONDS = 30
# Steps either side of the current one that still count (clock drift between phone and server).
DRIFT_STEPS = 1
# 160 bits, the length of SHA-1's output, which RFC 4226 recommends for the shared secret.
SECRET_BYTES = 20


def hotp(secret: bytes, counter: int, *, digits: int = DIGITS) -> str:
    """The HOTP value of ``counter`` (RFC 4226 section 5.3), as ``digits`` decimal digits."""
    digest = hmac.new(secret, struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    truncated = struct.unpack(">I", digest[offset : offset + 4])[0] & 0x7FFFFFFF
    return str(truncated % 10**digits).zfill(digits)


def time_step(unix_seconds: float, *, step_seconds: int = STEP_SECONDS) -> int:
    """The step a moment falls in (RFC 6238's T, counted from the Unix epoch)."""
    return int(unix_seconds // step_seconds)


def totp(secret: bytes, unix_seconds: float, *, digits: int = DIGITS) -> str:
    """The code an authenticator shows at ``unix_seconds``."""
    return hotp(secret, time_step(unix_seconds), digits=digits)


def normalised_code(typed: str) -> str | None:
    """The code as digits, without the spaces or dashes some apps show in the middle; None
    when it is not ``DIGITS`` ASCII digits (``str.isdigit`` alone would also take "²")."""
    code = typed.replace(" ", "").replace("-", "").strip()
    if len(code) == DIGITS and code.isascii() and code.isdigit():
        return code
    return None


def matching_step(
    secret: bytes, typed: str, *, unix_seconds: float, last_used_step: int | None
) -> int | None:
    """The step whose code was typed, when it may be accepted now; else None.

    A step at or before ``last_used_step`` is refused even when its code matches: that code was
    used already, or an older one was, and codes only move forwards."""
    code = normalised_code(typed)
    if code is None:
        return None
    current = time_step(unix_seconds)
    found: int | None = None
    # Every candidate is compared, in constant time, whatever matched before it.
    for step in range(current - DRIFT_STEPS, current + DRIFT_STEPS + 1):
        if hmac.compare_digest(hotp(secret, step), code) and found is None:
            found = step
    if found is None or (last_used_step is not None and found <= last_used_step):
        return None
    return found


def encode_secret(secret: bytes) -> str:
    """The secret as authenticator apps take it typed in: base32 without padding."""
    return base64.b32encode(secret).decode("ascii").rstrip("=")


def decode_secret(text: str) -> bytes:
    """The secret from its base32 text (any case, spaces allowed); ValueError if it is not."""
    cleaned = text.replace(" ", "").upper()
    padding = "=" * (-len(cleaned) % 8)
    try:
        return base64.b32decode(cleaned + padding)
    except (ValueError, TypeError) as error:
        raise ValueError("not a base32 secret") from error


def grouped(secret_text: str, size: int = 4) -> str:
    """The base32 secret in groups of four letters, easier to type in from the screen."""
    return " ".join(secret_text[index : index + size] for index in range(0, len(secret_text), size))


def provisioning_uri(secret: bytes, *, account: str, issuer: str) -> str:
    """The ``otpauth://totp/…`` address a QR code carries (the Key Uri Format authenticator
    apps read): the label is "issuer:account", and the issuer is repeated as a parameter."""
    label = quote(f"{issuer}:{account}", safe="@:")
    parameters = urlencode(
        {
            "secret": encode_secret(secret),
            "issuer": issuer,
            "algorithm": "SHA1",
            "digits": DIGITS,
            "period": STEP_SECONDS,
        },
        quote_via=quote,
    )
    return f"otpauth://totp/{label}?{parameters}"
