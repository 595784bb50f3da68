"""In-memory stand-ins for Entra, Power BI and ARM, as httpx MockTransport handlers.

Used by the unit tests for edge cases the emulator does not produce on demand (malformed bodies,
timeouts, odd headers). The main tests run against the real emulator over HTTP.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import httpx

from embedportal.powerbi import PowerBIConnection

TENANT = "11111111-2222-3333-4444-555555555555"
CLIENT_ID = "client-0001"
SECRET = "s3cr3t-value-that-must-never-leak"
ENTRA_BASE = "http://entra.test:8080"
API_BASE = "http://pbi.test"
ARM_BASE = "http://arm.test"


def connection(**overrides: Any) -> PowerBIConnection:
    values: dict[str, Any] = {
        "tenant_id": TENANT,
        "client_id": CLIENT_ID,
        "client_secret": SECRET,
        "authority_host": ENTRA_BASE,
        "api_url": API_BASE,
        "arm_url": ARM_BASE,
        "subscription_id": "sub-1",
        "resource_group": "rg-1",
        "capacity_name": "cap1",
    }
    values.update(overrides)
    return PowerBIConnection(**values)


@dataclass
class FakeEntra:
    """Sync handler: OIDC discovery plus client-credentials token endpoint."""

    base: str = ENTRA_BASE
    expires_in: int = 3600
    # Optional override: returns a response for the token POST, or None for the normal answer.
    token_hook: Callable[[httpx.Request], httpx.Response | None] | None = None
    requests: list[httpx.Request] = field(default_factory=list)
    token_requests: int = 0
    _counter: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            self.requests.append(request)
        path = request.url.path
        if request.method == "GET" and path == f"/{TENANT}/v2.0/.well-known/openid-configuration":
            return httpx.Response(
                200,
                json={
                    "issuer": f"{self.base}/{TENANT}/v2.0",
                    "authorization_endpoint": f"{self.base}/{TENANT}/oauth2/v2.0/authorize",
                    "token_endpoint": f"{self.base}/{TENANT}/oauth2/v2.0/token",
                },
            )
        if request.method == "GET" and path.endswith("/.well-known/openid-configuration"):
            return httpx.Response(400, json={"error": "invalid_tenant"})
        if request.method == "POST" and path == f"/{TENANT}/oauth2/v2.0/token":
            with self._lock:
                self.token_requests += 1
            if self.token_hook is not None:
                hooked = self.token_hook(request)
                if hooked is not None:
                    return hooked
            form = parse_qs(request.content.decode())
            if form.get("client_secret") != [SECRET] or form.get("client_id") != [CLIENT_ID]:
                return httpx.Response(
                    401,
                    json={
                        "error": "invalid_client",
                        "error_description": "AADSTS7000215: Invalid client secret provided.",
                    },
                )
            return httpx.Response(
                200,
                json={
                    "token_type": "Bearer",
                    "expires_in": self.expires_in,
                    "access_token": f"entra-token-{next(self._counter)}",
                },
            )
        return httpx.Response(404, json={"error": "not_found"})

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)


Handler = Callable[[httpx.Request], httpx.Response]


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(
        status,
        content=json.dumps(body).encode(),
        headers={
            "content-type": "application/json",
            **(headers or {}),
        },
    )


def pbi_error(status: int, code: str, message: str = "", **headers: str) -> httpx.Response:
    return json_response(
        status,
        {"error": {"code": code, "message": message or code}},
        {"RequestId": "req-1", **headers},
    )


class Recorder:
    """Async handler built from a list of canned responses (or callables), recording requests."""

    def __init__(self, *responses: httpx.Response | Handler | BaseException) -> None:
        self.responses = list(responses)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if not self.responses:
            raise AssertionError(f"unexpected request {request.method} {request.url}")
        item = self.responses.pop(0)
        if isinstance(item, BaseException):
            raise item
        if isinstance(item, httpx.Response):
            return item
        return item(request)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)


class FakeSleep:
    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
