"""Signed tokens: Entra access tokens (JWT, HS256) and Power BI embed tokens.

Both are HMAC-SHA256 signed with the emulator's signing key; nothing here does I/O or reads a
clock: callers pass `now` (seconds since the epoch).

* An Entra access token is a compact JWS (`header.payload.signature`, base64url) with the
  claims a client may look at: `aud`, `iss`, `tid`, `appid`, `oid`, `iat`, `nbf`, `exp`.
* An embed token is `payload.signature`, the payload a compact JSON object with `tokenId`,
  `iat`, `exp`, `reports`, `datasets`, `targetWorkspaces` and `identities`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

POWERBI_AUDIENCE = "https://analysis.windows.net/powerbi/api"
ARM_AUDIENCE = "https://management.azure.com/"
POWERBI_SCOPE = f"{POWERBI_AUDIENCE}/.default"
ARM_SCOPE = "https://management.azure.com/.default"
AUDIENCE_BY_SCOPE: Mapping[str, str] = {POWERBI_SCOPE: POWERBI_AUDIENCE, ARM_SCOPE: ARM_AUDIENCE}

_JWT_HEADER = {"typ": "JWT", "alg": "HS256", "kid": "embedportal-emulator"}
_MAX_TOKEN_LENGTH = 64 * 1024


class InvalidTokenError(ValueError):
    """Not a token this emulator signed (malformed, tampered with, or from another key)."""


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise InvalidTokenError("not base64url") from None


def _compact(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode("utf-8")


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except ValueError:  # not UTF-8, not JSON, or numbers too long to convert
        raise InvalidTokenError("payload is not JSON") from None
    if not isinstance(value, dict):
        raise InvalidTokenError("payload is not a JSON object")
    return value


@dataclass(frozen=True, slots=True)
class EntraToken:
    """The claims of an Entra access token this emulator issued."""

    audience: str
    tenant_id: str
    app_id: str
    issued_at: float
    expires_at: float
    claims: Mapping[str, Any]


class Signer:
    """Signs and checks tokens with one key."""

    def __init__(self, key: str) -> None:
        self._key = hashlib.sha256(b"embedportal-emulator\0" + key.encode("utf-8")).digest()

    def _mac(self, message: bytes, purpose: bytes) -> bytes:
        return hmac.new(self._key, purpose + b"\0" + message, hashlib.sha256).digest()

    # --- Entra access tokens ------------------------------------------------------------------

    def entra_token(self, claims: Mapping[str, Any]) -> str:
        signing_input = f"{b64url_encode(_compact(_JWT_HEADER))}.{b64url_encode(_compact(claims))}"
        signature = self._mac(signing_input.encode("ascii"), b"jwt")
        return f"{signing_input}.{b64url_encode(signature)}"

    def read_entra_token(self, token: str) -> EntraToken:
        """The claims of a token this key signed. Expiry is the caller's business."""
        if len(token) > _MAX_TOKEN_LENGTH:
            raise InvalidTokenError("too long")
        parts = token.split(".")
        if len(parts) != 3:
            raise InvalidTokenError("not a JWT")
        signing_input = f"{parts[0]}.{parts[1]}".encode("ascii", "replace")
        if not hmac.compare_digest(self._mac(signing_input, b"jwt"), b64url_decode(parts[2])):
            raise InvalidTokenError("bad signature")
        claims = _json_object(b64url_decode(parts[1]))
        try:
            return EntraToken(
                audience=str(claims["aud"]),
                tenant_id=str(claims["tid"]),
                app_id=str(claims["appid"]),
                issued_at=float(claims["iat"]),
                expires_at=float(claims["exp"]),
                claims=claims,
            )
        except (KeyError, TypeError, ValueError):
            raise InvalidTokenError("missing claims") from None

    # --- embed tokens ---------------------------------------------------------------------------

    def embed_token(self, payload: Mapping[str, Any]) -> str:
        body = b64url_encode(_compact(payload))
        return f"{body}.{b64url_encode(self._mac(body.encode('ascii'), b'embed'))}"

    def read_embed_token(self, token: str) -> dict[str, Any]:
        if len(token) > _MAX_TOKEN_LENGTH:
            raise InvalidTokenError("too long")
        parts = token.split(".")
        if len(parts) != 2:
            raise InvalidTokenError("not an embed token")
        expected = self._mac(parts[0].encode("ascii", "replace"), b"embed")
        if not hmac.compare_digest(expected, b64url_decode(parts[1])):
            raise InvalidTokenError("bad signature")
        payload = _json_object(b64url_decode(parts[0]))
        if not isinstance(payload.get("exp"), (int, float)):
            raise InvalidTokenError("no expiry")
        return payload


def unverified_claims(token: str) -> dict[str, Any]:
    """The payload of a JWT or embed token without checking it (for tests and diagnostics)."""
    parts = token.split(".")
    if len(parts) not in (2, 3):
        raise InvalidTokenError("not a token")
    return _json_object(b64url_decode(parts[1] if len(parts) == 3 else parts[0]))
