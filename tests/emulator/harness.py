"""Run the emulator on a real port in a background thread, and talk to it like a client would."""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from fastapi import FastAPI

from embedportal.emulator import demo
from embedportal.emulator.app import create_emulator_app
from embedportal.emulator.settings import EmulatorSettings
from embedportal.emulator.state import EmulatorState
from embedportal.emulator.tokens import ARM_SCOPE, POWERBI_SCOPE
from tests.support.threaded import serve_in_thread

CLIENT_CREDENTIALS = "client_credentials"
GROUP = demo.DEMO_WORKSPACE_ID
SALES_OVERVIEW = demo.SALES_OVERVIEW_REPORT_ID
REGIONAL = demo.REGIONAL_PERFORMANCE_REPORT_ID
OPERATIONS = demo.OPERATIONS_DASHBOARD_REPORT_ID
SALES_DATASET = demo.SALES_DATASET_ID
REGIONAL_DATASET = demo.REGIONAL_DATASET_ID
FINANCE_GROUP = demo.FINANCE_WORKSPACE_ID
FINANCE_SUMMARY = demo.FINANCE_SUMMARY_REPORT_ID


@dataclass
class Emulator:
    app: FastAPI
    settings: EmulatorSettings
    base_url: str
    http: httpx.Client

    @property
    def state(self) -> EmulatorState:
        state = self.app.state.emulator
        assert isinstance(state, EmulatorState)
        return state

    @property
    def token_url(self) -> str:
        return f"/{self.settings.tenant_id}/oauth2/v2.0/token"

    def token_response(self, scope: str = POWERBI_SCOPE, **overrides: str) -> httpx.Response:
        form = {
            "grant_type": CLIENT_CREDENTIALS,
            "client_id": self.settings.client_id,
            "client_secret": self.settings.client_secret,
            "scope": scope,
            **overrides,
        }
        return self.http.post(self.token_url, data=form)

    def access_token(self, scope: str = POWERBI_SCOPE) -> str:
        response = self.token_response(scope)
        assert response.status_code == 200, response.text
        token = response.json()["access_token"]
        assert isinstance(token, str)
        return token

    def person_token(self, email: str, scope: str = POWERBI_SCOPE) -> str:
        return person_token(self.http, self.settings, email, scope)

    def powerbi_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token(POWERBI_SCOPE)}"}

    def arm_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token(ARM_SCOPE)}"}

    @property
    def capacity_path(self) -> str:
        return self.settings.capacity_resource_id

    @property
    def fabric_capacity_path(self) -> str:
        return self.settings.fabric_capacity_resource_id

    def stats(self) -> dict[str, Any]:
        answer = self.http.get("/emulator/api/stats").json()
        assert isinstance(answer, dict)
        return answer


def person_token(
    http: httpx.Client, settings: EmulatorSettings, email: str, scope: str = POWERBI_SCOPE
) -> str:
    """A person's own access token, as a browser sign-in and the code's redemption give it
    (PKCE S256, over HTTP like any client)."""
    verifier = secrets.token_urlsafe(48)
    challenge = (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    )
    redirect_uri = "http://127.0.0.1:9/callback"
    tenant = settings.tenant_id
    signed_in = http.post(
        f"/{tenant}/oauth2/v2.0/authorize",
        data={
            "client_id": settings.client_id,
            "redirect_uri": redirect_uri,
            "response_type": "code",
            "scope": f"openid offline_access {scope}",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "email": email,
            "password": settings.directory_password,
        },
    )
    assert signed_in.status_code == 302, signed_in.text
    code = parse_qs(urlsplit(signed_in.headers["location"]).query)["code"][0]
    answer = http.post(
        f"/{settings.tenant_id}/oauth2/v2.0/token",
        data={
            "grant_type": "authorization_code",
            "client_id": settings.client_id,
            "client_secret": settings.client_secret,
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
        },
    )
    assert answer.status_code == 200, answer.text
    token = answer.json()["access_token"]
    assert isinstance(token, str)
    return token


def emulator_settings(**overrides: Any) -> EmulatorSettings:
    values: dict[str, Any] = {"capacity_transition_seconds": 0.3, **overrides}
    return EmulatorSettings(_env_file=None, **values)


@contextmanager
def running_emulator(**overrides: Any) -> Iterator[Emulator]:
    """A fresh emulator app served by uvicorn on a free port until the block ends."""
    settings = emulator_settings(**overrides)
    app = create_emulator_app(settings)
    with (
        serve_in_thread(app) as base_url,
        httpx.Client(base_url=base_url, timeout=10) as http,
    ):
        yield Emulator(app, settings, base_url, http)
