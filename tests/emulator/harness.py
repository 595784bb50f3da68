"""Run the emulator on a real port in a background thread, and talk to it like a client would."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

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
