"""/api/v1/reports: the catalogue and its grants, against the emulator: the same checks as
Admin → Reports (the RLS try-out included), audited with the key's name, viewers told."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from embedportal.access.groups import add_member, create_group
from embedportal.db.models import AuditEntry, Report
from embedportal.db.session import session_scope
from embedportal.emulator.demo import REGION_MANAGER_ROLE
from embedportal.web.deps import get_push_hub
from tests.support.api_keys import bearer, make_api_key
from tests.support.portal import MakeUser, SyncedReports
from tests.web.test_api_v1_users import RecordingHub

REGIONAL = "Regional Performance"


@pytest.fixture
def settings_overrides(emulator_settings_overrides: dict[str, object]) -> dict[str, object]:
    return emulator_settings_overrides


@pytest.fixture
def hub(app: FastAPI) -> Iterator[RecordingHub]:
    recording = RecordingHub()
    app.dependency_overrides[get_push_hub] = lambda: recording
    yield recording
    app.dependency_overrides.pop(get_push_hub, None)


@pytest.fixture
def api(app: FastAPI, client: TestClient) -> TestClient:
    scopes = ["reports:read", "grants:read", "grants:write", "rls:write"]
    client.headers.update(bearer(make_api_key(app, scopes, name="CRM")))
    return client


def test_the_catalogue(api: TestClient, synced_reports: SyncedReports) -> None:
    listed = api.get("/api/v1/reports").json()
    names = [report["name"] for report in listed["items"]]
    assert set(synced_reports) <= set(names)
    assert names == sorted(names)
    regional = api.get(f"/api/v1/reports/{synced_reports[REGIONAL]}").json()
    assert regional["rls_required"] is True
    assert regional["available"] is True
    sales = api.get(f"/api/v1/reports/{synced_reports['Sales Overview']}").json()
    assert sales["rls_required"] is False
    missing = api.get("/api/v1/reports/no-such-report")
    assert missing.status_code == 404
    assert missing.json()["code"] == "NotFound"


def test_grant_to_a_user_and_a_group_then_remove(
    app: FastAPI,
    api: TestClient,
    synced_reports: SyncedReports,
    make_user: MakeUser,
    hub: RecordingHub,
) -> None:
    report_id = synced_reports[REGIONAL]
    viewer, member = make_user("viewer@example.com"), make_user("member@example.com")
    with session_scope(app.state.session_factory) as db:
        group = create_group(session=db, name="Managers", actor=None)
        add_member(session=db, group=group, email=member.email, actor=None)
        group_id = group.id
    grants = f"/api/v1/reports/{report_id}/grants"
    to_user = api.post(grants, json={"user_id": viewer.id, "rls_roles": [REGION_MANAGER_ROLE]})
    assert to_user.status_code == 201, to_user.text
    assert to_user.json()["user_email"] == "viewer@example.com"
    assert hub.told() == [viewer.id]
    to_group = api.post(grants, json={"group_id": group_id, "rls_roles": [REGION_MANAGER_ROLE]})
    assert to_group.status_code == 201, to_group.text
    assert hub.told() == [viewer.id, member.id]
    # Granting again sets the roles: 200.
    again = api.post(grants, json={"user_id": viewer.id, "rls_roles": [REGION_MANAGER_ROLE]})
    assert again.status_code == 200
    assert again.json()["id"] == to_user.json()["id"]
    listed = api.get(grants).json()
    assert [(grant["group_name"], grant["user_email"]) for grant in listed["items"]] == [
        ("Managers", None),
        (None, "viewer@example.com"),
    ]
    removed = api.delete(f"{grants}/{to_group.json()['id']}")
    assert removed.status_code == 204
    assert hub.told()[-1] == member.id
    assert api.delete(f"{grants}/{to_group.json()['id']}").status_code == 404
    with session_scope(app.state.session_factory) as db:
        entries = list(db.scalars(select(AuditEntry).where(AuditEntry.action.like("report.%"))))
        assert {entry.detail.get("api_key") for entry in entries} == {"CRM"}
        assert [entry.action for entry in entries] == [
            "report.granted",
            "report.granted",
            "report.grant_changed",
            "report.revoked",
        ]


def test_a_role_the_data_does_not_have_is_refused_in_plain_words(
    app: FastAPI, api: TestClient, synced_reports: SyncedReports, make_user: MakeUser
) -> None:
    viewer = make_user("viewer@example.com")
    report_id = synced_reports[REGIONAL]
    with session_scope(app.state.session_factory) as db:
        report = db.get(Report, report_id)
        assert report is not None
        dataset_id = report.dataset_id
    response = api.post(
        f"/api/v1/reports/{report_id}/grants",
        json={"user_id": viewer.id, "rls_roles": ["Regoin Manager"]},
    )
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["code"] == "RlsRolesRefused"
    assert "“Regoin Manager” does not exist" in body["message"]
    assert dataset_id not in body["message"]
    assert api.get(f"/api/v1/reports/{report_id}/grants").json()["total"] == 0


def test_what_a_grant_needs(
    app: FastAPI,
    client: TestClient,
    api: TestClient,
    synced_reports: SyncedReports,
    make_user: MakeUser,
) -> None:
    viewer = make_user("viewer@example.com")
    grants = f"/api/v1/reports/{synced_reports['Sales Overview']}/grants"
    assert api.post(grants, json={}).status_code == 422
    assert api.post(grants, json={"user_id": viewer.id, "group_id": 1}).status_code == 422
    assert api.post(grants, json={"user_id": 999999}).json()["code"] == "NotFound"
    assert api.post(grants, json={"group_id": 999999}).json()["code"] == "NotFound"
    too_many = api.post(grants, json={"user_id": viewer.id, "rls_roles": ["a,b"]})
    assert too_many.status_code == 400
    assert too_many.json()["code"] == "InvalidInput"
    assert api.post("/api/v1/reports/nope/grants", json={"user_id": viewer.id}).status_code == 404
    # Roles need rls:write beside grants:write; a grant without roles does not.
    secret = make_api_key(app, ["grants:write"], name="No RLS")
    plain = client.post(grants, headers=bearer(secret), json={"user_id": viewer.id})
    assert plain.status_code == 201
    with_roles = client.post(
        grants, headers=bearer(secret), json={"user_id": viewer.id, "rls_roles": ["X"]}
    )
    assert with_roles.status_code == 403
    assert "rls:write" in with_roles.json()["message"]
