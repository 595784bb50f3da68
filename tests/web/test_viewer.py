"""/reports/{id}: the viewer page (the embedding itself is covered by the browser tests)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.support.html import elements
from tests.support.portal import Grant, LoginAs, MakeUser, SyncedReports

SALES = "Sales Overview"


@pytest.fixture
def settings_overrides(emulator_settings_overrides: dict[str, object]) -> dict[str, object]:
    return emulator_settings_overrides


@pytest.fixture
def viewer_client(
    synced_reports: SyncedReports, make_user: MakeUser, login_as: LoginAs, grant: Grant
) -> TestClient:
    viewer = make_user("viewer@example.com")
    grant(synced_reports[SALES], user=viewer)
    return login_as(viewer)


def test_the_viewer_page_embeds_the_report_without_a_token_in_the_html(
    viewer_client: TestClient, synced_reports: SyncedReports
) -> None:
    report_id = synced_reports[SALES]
    page = viewer_client.get(f"/reports/{report_id}")
    assert page.status_code == 200
    html = page.text
    slots = elements(html, having="data-token-url")
    assert [slot.attrs["data-token-url"] for slot in slots] == [f"/api/reports/{report_id}/token"]
    assert f"reportId={report_id}" in html  # the embed URL, from the catalogue
    scripts = [script.attrs.get("src") for script in elements(html, "script", having="src")]
    assert "/static/vendor/powerbi.js" in scripts
    assert "/static/app/js/viewer.js" in scripts
    assert "accessToken" not in html and '"token"' not in html
    assert "This report's access has expired. Reconnecting…" in html
    assert "ClientError_TokenExpired" in html
    assert "Your access to this report was removed." in html
    # The portal's navigation is there.
    assert [nav.attrs.get("aria-label") for nav in elements(html, "nav")][:1] == ["Main"]


def test_tv_mode_hides_the_portals_chrome(
    viewer_client: TestClient, synced_reports: SyncedReports
) -> None:
    html = viewer_client.get(f"/reports/{synced_reports[SALES]}?tv=1").text
    assert 'aria-label="Main"' not in html
    assert "Sign out" not in html
    assert "data-report-slot" in html


def test_ungranted_unknown_and_signed_out(
    client: TestClient,
    synced_reports: SyncedReports,
    make_user: MakeUser,
    login_as: LoginAs,
) -> None:
    report_id = synced_reports[SALES]
    signed_out = client.get(f"/reports/{report_id}", follow_redirects=False)
    assert signed_out.status_code == 303
    assert "/login?next=" in signed_out.headers["location"]

    login_as(make_user("viewer@example.com"))
    forbidden = client.get(f"/reports/{report_id}")
    assert forbidden.status_code == 403
    assert "Ask an administrator" in forbidden.text
    unknown = client.get("/reports/no-such-report")
    assert unknown.status_code == 404


def test_the_viewer_script_and_the_sdk_are_served(viewer_client: TestClient) -> None:
    script = viewer_client.get("/static/app/js/viewer.js")
    assert script.status_code == 200
    assert "createTokenKeeper" in script.text
    sdk = viewer_client.get("/static/vendor/powerbi.js")
    assert sdk.status_code == 200
    assert "powerbi-client v2.24.1" in sdk.text[:200]
