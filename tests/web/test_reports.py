"""/reports: the signed-in user's reports, and what to do when there are none."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from embedportal.db.models import Report
from embedportal.db.session import session_scope
from tests.support.html import links
from tests.support.portal import Grant, LoginAs, MakeUser, SyncedReports


@pytest.fixture
def settings_overrides(emulator_settings_overrides: dict[str, object]) -> dict[str, object]:
    return emulator_settings_overrides


def names_on(page: str, reports: SyncedReports) -> list[str]:
    return [name for name in sorted(reports) if f'href="/reports/{reports[name]}"' in page]


def test_signed_out_visitors_are_sent_to_sign_in(client: TestClient) -> None:
    response = client.get("/reports", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login?next=")


def test_a_viewer_sees_only_granted_reports(
    synced_reports: SyncedReports, make_user: MakeUser, login_as: LoginAs, grant: Grant
) -> None:
    viewer = make_user("viewer@example.com")
    grant(synced_reports["Sales Overview"], user=viewer)
    grant(synced_reports["Regional Performance"], group="Managers", members=[viewer])
    page = login_as(viewer).get("/reports")
    assert page.status_code == 200
    assert names_on(page.text, synced_reports) == ["Regional Performance", "Sales Overview"]
    assert "Filtered for you" in page.text  # the RLS report says so


def test_a_viewer_without_grants_is_told_what_happens_next(
    synced_reports: SyncedReports, make_user: MakeUser, login_as: LoginAs
) -> None:
    page = login_as(make_user("viewer@example.com")).get("/reports")
    assert "No reports yet — an administrator must grant you one." in page.text
    assert names_on(page.text, synced_reports) == []


def test_administrators_see_every_available_report(
    app: FastAPI, synced_reports: SyncedReports, make_user: MakeUser, login_as: LoginAs
) -> None:
    with session_scope(app.state.session_factory) as db:
        report = db.get(Report, synced_reports["Operations Dashboard"])
        assert report is not None
        report.is_available = False
    page = login_as(make_user("admin@example.com", role="admin")).get("/reports")
    assert names_on(page.text, synced_reports) == ["Regional Performance", "Sales Overview"]


def test_administrators_without_reports_are_sent_to_sync(
    make_user: MakeUser, login_as: LoginAs
) -> None:
    page = login_as(make_user("admin@example.com", role="admin")).get("/reports")
    assert "Sync the catalogue in Admin → Reports" in page.text
    assert "/admin/reports" in [href for _text, href in links(page.text)]
