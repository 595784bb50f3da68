"""The load benchmark's anchor: the least a token endpoint can do on this stack.

A bare FastAPI app under uvicorn that answers `POST /api/reports/{report_id}/token` by signing
a fresh HS256 JWT per request, with no session, database, cache or Power BI behind it. Whatever
the portal answers per second is read against what this answers on the same machine in the
same run (`python -m bench --only load`). Run it alone with
`uvicorn bench.anchor_app:app --port 9000`.

The JWT is signed with hmac + hashlib here: PyJWT is not one of our dependencies, and HS256 is
a few lines.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from typing import Any

from fastapi import FastAPI

SIGNING_KEY = os.environb.get(b"BENCH_ANCHOR_KEY", secrets.token_bytes(32))
LIFETIME_SECONDS = 3600
_HEADER = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').rstrip(b"=")

app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)


def _b64(raw: bytes) -> bytes:
    return base64.urlsafe_b64encode(raw).rstrip(b"=")


def sign_hs256(claims: dict[str, Any], key: bytes = SIGNING_KEY) -> str:
    """A compact JWS (RFC 7515) over ``claims`` with HMAC-SHA256."""
    payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = _HEADER + b"." + payload
    signature = _b64(hmac.new(key, signing_input, hashlib.sha256).digest())
    return (signing_input + b"." + signature).decode()


@app.post("/api/reports/{report_id}/token")
async def token(report_id: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "sub": "bench-viewer",
        "report": report_id,
        "iat": now,
        "exp": now + LIFETIME_SECONDS,
        "jti": secrets.token_hex(8),
    }
    return {
        "token": sign_hs256(claims),
        "tokenId": claims["jti"],
        "expiresAt": now + LIFETIME_SECONDS,
    }


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}
