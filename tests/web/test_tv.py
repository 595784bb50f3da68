"""/tv: pick reports and an interval; /tv/show: the rotation."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.support.html import accessibility_problems, elements
from tests.support.portal import Grant, LoginAs, MakeUser, SyncedReports


@pytest.fixture
def settings_overrides(emulator_settings_overrides: dict[str, object]) -> dict[str, object]:
    return emulator_settings_overrides


@pytest.fixture
def viewer_client(
    synced_reports: SyncedReports, make_user: MakeUser, login_as: LoginAs, grant: Grant
) -> TestClient:
    viewer = make_user("viewer@example.com")
    grant(synced_reports["Sales Overview"], user=viewer)
    grant(synced_reports["Operations Dashboard"], user=viewer)
    return login_as(viewer)


def test_the_picker_lists_the_reports_the_user_can_see(
    viewer_client: TestClient, synced_reports: SyncedReports
) -> None:
    page = viewer_client.get("/tv")
    assert page.status_code == 200
    assert synced_reports["Sales Overview"] in page.text
    assert synced_reports["Operations Dashboard"] in page.text
    assert synced_reports["Regional Performance"] not in page.text
    assert "Seconds per report" in page.text


def test_the_rotation_shows_the_chosen_reports_full_screen(
    viewer_client: TestClient, synced_reports: SyncedReports
) -> None:
    sales, operations = synced_reports["Sales Overview"], synced_reports["Operations Dashboard"]
    page = viewer_client.get(f"/tv/show?report={operations}&report={sales}&interval=10")
    assert page.status_code == 200
    html = page.text
    assert [e.attrs["data-interval"] for e in elements(html, having="data-interval")] == ["10"]
    shown = [e.attrs["data-report-id"] for e in elements(html, having="data-report-id")]
    assert shown == [operations, sales]
    assert "Main" not in [e.attrs["aria-label"] for e in elements(html, having="aria-label")]
    assert "/static/app/js/tv.js" in [
        e.attrs["src"] for e in elements(html, "script", having="src")
    ]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("interval=30", "Choose at least one report."),
        ("report={sales}&interval=9", "at least 10"),
        ("report={sales}&interval=-5", "at least 10"),
        ("report={sales}&interval=ten", "at least 10"),
        ("report={sales}&interval=", "at least 10"),
        ("report={regional}&interval=30", "not available to you"),
        ("report=unknown&interval=30", "not available to you"),
    ],
)
def test_bad_choices_are_refused_with_a_message(
    viewer_client: TestClient, synced_reports: SyncedReports, query: str, message: str
) -> None:
    url = "/tv/show?" + query.format(
        sales=synced_reports["Sales Overview"],
        regional=synced_reports["Regional Performance"],
    )
    page = viewer_client.get(url)
    assert page.status_code == 400
    assert message in page.text
    assert "Start TV mode" in page.text  # the picker again, to correct the choice
    assert accessibility_problems(page.text) == []


def test_signed_out_visitors_are_sent_to_sign_in(client: TestClient) -> None:
    assert client.get("/tv", follow_redirects=False).status_code == 303
    assert client.get("/tv/show?interval=30", follow_redirects=False).status_code == 303
