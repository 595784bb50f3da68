"""Signed tokens: Entra access tokens (JWT, HS256), id tokens (RS256) and Power BI embed tokens.

Access and embed tokens are HMAC-SHA256 signed with the emulator's signing key; id tokens with
an RSA key whose public half the tenant's JWKS publishes. Nothing here does I/O or reads a clock:
callers pass `now` (seconds since the epoch).

* An Entra access token is a compact JWS (`header.payload.signature`, base64url) with the
  claims a client may look at: `aud`, `iss`, `tid`, `appid`, `oid`, `iat`, `nbf`, `exp`.
* An id token is a compact JWS signed RS256, with OpenID Connect's claims (`iss`, `aud`, `sub`,
  `nonce`, `exp`) and Entra's (`tid`, `oid`, `preferred_username`, `email`, `name`).
* An embed token is `payload.signature`, the payload a compact JSON object with `tokenId`,
  `iat`, `exp`, `reports`, `datasets`, `targetWorkspaces` and `identities`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

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


class IdTokenSigner:
    """Signs id tokens with RS256, as Entra does, and publishes the public key as a JWKS, so a
    client checks them the way it checks Microsoft's (issuer, audience, expiry, signature).

    The RSA key is made on first use: most emulator apps (tests) never sign anyone in."""

    def __init__(self) -> None:
        self._key: rsa.RSAPrivateKey | None = None
        self.key_id = b64url_encode(os.urandom(12))

    def _private_key(self) -> rsa.RSAPrivateKey:
        if self._key is None:
            self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return self._key

    def sign(self, claims: Mapping[str, Any]) -> str:
        header = {"typ": "JWT", "alg": "RS256", "kid": self.key_id}
        signing_input = f"{b64url_encode(_compact(header))}.{b64url_encode(_compact(claims))}"
        signature = self._private_key().sign(
            signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256()
        )
        return f"{signing_input}.{b64url_encode(signature)}"

    def jwks(self) -> dict[str, Any]:
        numbers = self._private_key().public_key().public_numbers()

        def unsigned(value: int) -> str:
            return b64url_encode(value.to_bytes((value.bit_length() + 7) // 8, "big"))

        return {
            "keys": [
                {
                    "kty": "RSA",
                    "use": "sig",
                    "alg": "RS256",
                    "kid": self.key_id,
                    "n": unsigned(numbers.n),
                    "e": unsigned(numbers.e),
                }
            ]
        }
