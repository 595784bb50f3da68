"""Admin → Capacities through the pages: the list and the reload from Power BI, a capacity's
Azure coordinates, its settings, the weekly schedule, the capacity audit and its CSV, the cost
figures, and the organization's global block. Power BI is the emulator, over real HTTP."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from embedportal.db.models import AuditEntry, Organization
from embedportal.db.session import session_scope
from tests.support.html import accessibility_problems, form_fields
from tests.support.portal import LoginAs, MakeUser, csrf_of


@pytest.fixture
def settings_overrides(emulator_settings_overrides: dict[str, object]) -> dict[str, object]:
    return emulator_settings_overrides


@pytest.fixture
def admin(make_user: MakeUser, login_as: LoginAs) -> TestClient:
    return login_as(make_user("admin@example.com", role="admin"))


def organization(app: FastAPI) -> Organization:
    with session_scope(app.state.session_factory) as db:
        found = db.get(Organization, 1)
        assert found is not None
        db.expunge(found)
        return found


# --- the global block (Admin → Settings) --------------------------------------------------------

SETTINGS = {
    "name": "Acme",
    "time_zone": "Europe/Lisbon",
    "token_lifetime_minutes": "60",
    "refresh_margin_minutes": "10",
}


def test_the_global_block_is_saved_shown_and_audited(app: FastAPI, admin: TestClient) -> None:
    page = admin.get("/admin/settings")
    box = form_fields(page.text, action="/admin/settings")["nobody_may_start_capacity"]
    assert box.label == "Nobody may turn on a capacity" and not box.checked
    assert accessibility_problems(page.text) == []

    token = csrf_of(admin, "/admin/settings")
    data = {**SETTINGS, "nobody_may_start_capacity": "on", "csrf_token": token}
    assert admin.post("/admin/settings", data=data, follow_redirects=False).status_code == 303
    assert organization(app).nobody_may_start_capacity
    shown = admin.get("/admin/settings").text
    assert form_fields(shown, action="/admin/settings")["nobody_may_start_capacity"].checked

    # An unticked box sends nothing: the block is lifted.
    del data["nobody_may_start_capacity"]
    assert admin.post("/admin/settings", data=data, follow_redirects=False).status_code == 303
    assert not organization(app).nobody_may_start_capacity
    with session_scope(app.state.session_factory) as db:
        details = [
            entry.detail
            for entry in db.scalars(
                select(AuditEntry).where(AuditEntry.action == "organization.changed")
            )
        ]
    blocks = [
        detail["nobody_may_start_capacity"]
        for detail in details
        if "nobody_may_start_capacity" in detail
    ]
    assert blocks == [{"old": False, "new": True}, {"old": True, "new": False}]


def test_a_refused_settings_form_keeps_the_blocks_tick(admin: TestClient) -> None:
    token = csrf_of(admin, "/admin/settings")
    data = {**SETTINGS, "time_zone": "Mars/Base", "nobody_may_start_capacity": "on"}
    refused = admin.post("/admin/settings", data={**data, "csrf_token": token})
    assert refused.status_code == 400
    assert form_fields(refused.text, action="/admin/settings")["nobody_may_start_capacity"].checked
