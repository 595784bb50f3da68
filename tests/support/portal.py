"""What tests share besides fixtures: the types of the factory fixtures, and small helpers
(signing in, reading a page's CSRF token, pointing the portal at an emulator)."""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx
from fastapi.testclient import TestClient

from embedportal.db.models import Report, User
from embedportal.emulator.demo import DEMO_WORKSPACE_ID
from embedportal.health import HealthChecker
from tests.emulator.harness import Emulator

TEST_SECRET_KEY = "test-secret-key-that-is-long-enough-for-production-checks"
DEFAULT_PASSWORD = "correct-horse-battery-staple"

# The factory fixtures' call shapes (see tests/conftest.py for what each does).
LoginAs = Callable[..., TestClient]
MakeUser = Callable[..., User]
Grant = Callable[..., None]
SyncedReports = dict[str, str]  # report name → id
MakeHealthChecker = Callable[..., HealthChecker]

_CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]*)"')


def csrf_of(client: TestClient, path: str = "/account") -> str:
    """The CSRF token the portal gives this client's current session (or, signed out, the
    sign-in form's token), read from the page's `<meta name="csrf-token">`."""
    response = client.get(path, follow_redirects=True)
    match = _CSRF_META.search(response.text)
    assert match and match.group(1), f"no CSRF token on {response.url} ({response.status_code})"
    return match.group(1)


def post_token(
    client: TestClient, report_id: str, *, reason: str = "load", csrf: str | None = None
) -> httpx.Response:
    """What the viewer sends for a token: its session's CSRF token and why it asks."""
    token = csrf if csrf is not None else csrf_of(client, "/reports")
    return client.post(
        f"/api/reports/{report_id}/token",
        headers={"X-CSRF-Token": token},
        json={"reason": reason},
    )


def portal_settings_for(emulator: Emulator) -> dict[str, object]:
    """Settings overrides that point the portal at an emulator (as `serve` does for its own)."""
    emulator_settings = emulator.settings
    return {
        "powerbi_tenant_id": emulator_settings.tenant_id,
        "powerbi_client_id": emulator_settings.client_id,
        "powerbi_client_secret": emulator_settings.client_secret,
        "powerbi_workspace_id": DEMO_WORKSPACE_ID,
        "powerbi_authority_host": emulator.base_url,
        "powerbi_api_url": emulator.base_url,
        "arm_url": emulator.base_url,
        "capacity_subscription_id": emulator_settings.subscription_id,
        "capacity_resource_group": emulator_settings.resource_group,
        "capacity_name": emulator_settings.capacity_name,
    }


def a_report(report_id: str, *, capacity_id: str | None = None) -> Report:
    """A report row as a sync would store it (workspace ``ws``, dataset ``ds``), for tests that
    need reports without an emulator."""
    return Report(
        id=report_id,
        workspace_id="ws",
        dataset_id="ds",
        name=report_id,
        embed_url=f"http://emulator.invalid/reportEmbed?reportId={report_id}",
        capacity_id=capacity_id,
    )
