"""View as: an administrator opens a report exactly as a chosen user sees it (issue #13)."""

from __future__ import annotations

from html import unescape

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from embedportal.db.models import AuditEntry, User
from embedportal.db.session import session_scope
from embedportal.emulator.demo import REGION_MANAGER_ROLE, REGIONAL_DATASET_ID
from embedportal.emulator.tokens import unverified_claims
from tests.support.html import elements, form_fields, links
from tests.support.portal import Grant, LoginAs, MakeUser, SyncedReports, csrf_of

REGIONAL = "Regional Performance"
SALES = "Sales Overview"


@pytest.fixture
def settings_overrides(emulator_settings_overrides: dict[str, object]) -> dict[str, object]:
    return emulator_settings_overrides


@pytest.fixture
def north(make_user: MakeUser, synced_reports: SyncedReports, grant: Grant) -> User:
    """A North region manager, granted Regional Performance."""
    user = make_user("north@example.com", name="Nora North", rls_username="north@example.com")
    grant(synced_reports[REGIONAL], user=user, roles=[REGION_MANAGER_ROLE])
    return user


@pytest.fixture
def admin(make_user: MakeUser, login_as: LoginAs) -> TestClient:
    return login_as(make_user("admin@example.com", role="admin"))


def view_as_token(client: TestClient, user: User, report_id: str) -> httpx.Response:
    return client.post(
        f"/admin/users/{user.id}/view-as/{report_id}/token",
        json={"reason": "load"},
        headers={"X-CSRF-Token": csrf_of(client), "Accept": "application/json"},
    )


def viewed_as(app: FastAPI) -> list[AuditEntry]:
    with session_scope(app.state.session_factory) as db:
        entries = db.scalars(select(AuditEntry).where(AuditEntry.action == "report.viewed_as"))
        return list(entries)


def test_an_admin_sees_the_report_as_the_user_with_a_banner_and_it_is_audited(
    app: FastAPI, admin: TestClient, north: User, synced_reports: SyncedReports
) -> None:
    report_id = synced_reports[REGIONAL]
    page = admin.get(f"/admin/users/{north.id}/view-as/{report_id}")
    assert page.status_code == 200
    text = unescape(page.text)
    assert "Viewing as Nora North — what they see" in text
    (slot,) = elements(page.text, having="data-report-slot")
    assert slot.attrs["data-token-url"] == f"/admin/users/{north.id}/view-as/{report_id}/token"
    assert f"/admin/users/{north.id}" in [href for _text, href in links(page.text)]  # way back
    (entry,) = viewed_as(app)
    assert entry.target_id == report_id
    assert entry.detail["as_user"] == "north@example.com"
    assert entry.detail["rls_roles"] == [REGION_MANAGER_ROLE]

    response = view_as_token(admin, north, report_id)
    assert response.status_code == 200, response.text
    assert set(response.json()) == {"token", "tokenId", "expiration", "expiresIn", "policy"}
    claims = unverified_claims(response.json()["token"])
    assert claims["identities"] == [
        {
            "username": "north@example.com",
            "roles": [REGION_MANAGER_ROLE],
            "datasets": [REGIONAL_DATASET_ID],
        }
    ]


def test_a_view_as_token_is_never_the_users_own(
    admin: TestClient, north: User, synced_reports: SyncedReports, login_as: LoginAs
) -> None:
    """Same identity, but View as tokens live apart in the cache: neither is handed the other's."""
    report_id = synced_reports[REGIONAL]
    as_admin = view_as_token(admin, north, report_id).json()["tokenId"]
    assert view_as_token(admin, north, report_id).json()["tokenId"] == as_admin  # shared
    client = login_as(north)
    own = client.post(
        f"/api/reports/{report_id}/token",
        json={"reason": "load"},
        headers={"X-CSRF-Token": csrf_of(client)},
    )
    assert own.status_code == 200
    assert own.json()["tokenId"] != as_admin


def test_the_report_page_and_the_user_page_lead_to_view_as(
    admin: TestClient, north: User, synced_reports: SyncedReports
) -> None:
    report_id = synced_reports[REGIONAL]
    page = admin.get(f"/admin/reports/{report_id}").text
    fields = form_fields(page, action=f"/admin/reports/{report_id}/view-as")
    assert (str(north.id), "north@example.com") in fields["user"].options
    chosen = admin.get(
        f"/admin/reports/{report_id}/view-as", params={"user": north.id}, follow_redirects=False
    )
    assert chosen.status_code == 303
    assert chosen.headers["location"] == f"/admin/users/{north.id}/view-as/{report_id}?back=report"
    # Opened from the report's page, the way back leads there.
    opened = admin.get(chosen.headers["location"])
    assert f"/admin/reports/{report_id}" in [href for _text, href in links(opened.text)]
    user_page = admin.get(f"/admin/users/{north.id}").text
    assert f"/admin/users/{north.id}/view-as/{report_id}" in [h for _t, h in links(user_page)]


def test_a_user_who_may_not_open_the_report_gets_a_clear_refusal(
    app: FastAPI,
    admin: TestClient,
    north: User,
    make_user: MakeUser,
    grant: Grant,
    synced_reports: SyncedReports,
) -> None:
    sales_id = synced_reports[SALES]
    page = admin.get(f"/admin/users/{north.id}/view-as/{sales_id}")
    assert page.status_code == 403
    assert (
        "Nora North may not open Sales Overview: it is granted neither to them nor to one of "
        "their groups." in unescape(page.text)
    )
    assert f"/admin/users/{north.id}" in [href for _text, href in links(page.text)]
    response = view_as_token(admin, north, sales_id)
    assert response.status_code == 403
    assert response.json()["code"] == "Forbidden"
    # Granted, but without an RLS role: the report could not be shown to them either.
    roleless = make_user("roleless@example.com")
    grant(synced_reports[REGIONAL], user=roleless)
    page = admin.get(f"/admin/users/{roleless.id}/view-as/{synced_reports[REGIONAL]}")
    assert page.status_code == 403
    assert "roleless@example.com has no RLS role for Regional Performance" in unescape(page.text)
    assert viewed_as(app) == []


def test_non_administrators_can_never_view_as(
    north: User, make_user: MakeUser, login_as: LoginAs, synced_reports: SyncedReports
) -> None:
    report_id = synced_reports[REGIONAL]
    # Even the user themselves: View as is an administrator's tool.
    for user in (north, make_user("other@example.com")):
        client = login_as(user)
        assert client.get(f"/admin/users/{north.id}/view-as/{report_id}").status_code == 403
        response = view_as_token(client, north, report_id)
        assert response.status_code == 403
        assert "token" not in response.json()


@pytest.mark.parametrize(
    "path",
    ["/admin/users/99999/view-as/{report}", "/admin/users/{user}/view-as/no-such-report"],
)
def test_unknown_users_and_reports_are_404(
    admin: TestClient, north: User, synced_reports: SyncedReports, path: str
) -> None:
    url = path.format(user=north.id, report=synced_reports[REGIONAL])
    assert admin.get(url).status_code == 404
    response = admin.post(
        url + "/token",
        json={},
        headers={"X-CSRF-Token": csrf_of(admin), "Accept": "application/json"},
    )
    assert response.status_code == 404


def test_the_banner_and_the_refusal_read_in_portuguese(
    make_user: MakeUser, login_as: LoginAs, north: User, synced_reports: SyncedReports
) -> None:
    client = login_as(make_user("admin-pt@example.com", role="admin", language="pt_BR"))
    page = client.get(f"/admin/users/{north.id}/view-as/{synced_reports[REGIONAL]}")
    assert "Vendo como Nora North — o que essa pessoa vê" in unescape(page.text)
    refused = client.get(f"/admin/users/{north.id}/view-as/{synced_reports[SALES]}")
    assert refused.status_code == 403
    assert "Nora North não pode abrir Sales Overview" in unescape(refused.text)
