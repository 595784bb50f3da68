"""Admin → Reports: sync from Power BI (the emulator, over HTTP) and grants with RLS roles."""

from __future__ import annotations

import json
from html import unescape

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from embedportal.db.models import AuditEntry, Group, Report, ReportGrant
from embedportal.db.session import session_scope
from embedportal.emulator.demo import REGION_MANAGER_ROLE
from embedportal.web.deps import get_settings
from embedportal.web.push import PushEvent
from tests.emulator.harness import Emulator
from tests.support.html import elements, form_fields, links
from tests.support.portal import Grant, LoginAs, MakeUser, SyncedReports, csrf_of
from tests.support.servers import free_port

HTMX = {"HX-Request": "true"}


@pytest.fixture
def settings_overrides(emulator_settings_overrides: dict[str, object]) -> dict[str, object]:
    return emulator_settings_overrides


@pytest.fixture
def admin(make_user: MakeUser, login_as: LoginAs) -> TestClient:
    return login_as(make_user("admin@example.com", role="admin"))


def sync(client: TestClient) -> str:
    response = client.post(
        "/admin/reports/sync", data={"csrf_token": csrf_of(client, "/admin/reports")}
    )
    assert response.status_code == 200  # after the 303 back to the list
    return response.text


def report_ids(app: FastAPI) -> dict[str, str]:
    with session_scope(app.state.session_factory) as db:
        return {report.name: report.id for report in db.scalars(select(Report))}


def test_sync_adds_the_workspaces_reports_and_flags_rls(app: FastAPI, admin: TestClient) -> None:
    page = sync(admin)
    assert "Synced from Power BI: 3 added, 0 updated, 0 removed." in page
    for name in ("Sales Overview", "Regional Performance", "Operations Dashboard"):
        assert name in page
    assert page.count("RLS required") == 1
    with session_scope(app.state.session_factory) as db:
        regional = db.scalars(select(Report).where(Report.name == "Regional Performance")).one()
        assert regional.rls_required and regional.rls_roles_required
        assert regional.embed_url.startswith(app.state.settings.powerbi_api_url + "/reportEmbed")
        entry = db.scalars(select(AuditEntry).where(AuditEntry.action == "reports.synced")).one()
        assert entry.detail == {"added": 3, "updated": 0, "removed": 0, "unchanged": 0}
    assert "Synced from Power BI: 0 added, 0 updated, 0 removed." in sync(admin)


def test_sync_updates_changed_reports_and_marks_vanished_ones_unavailable(
    app: FastAPI, admin: TestClient
) -> None:
    sync(admin)
    with session_scope(app.state.session_factory) as db:
        db.scalars(select(Report).where(Report.name == "Sales Overview")).one().name = "Old name"
        db.add(
            Report(
                id="gone-from-power-bi",
                workspace_id="w",
                dataset_id="d",
                name="Deleted report",
                embed_url="https://app.powerbi.com/reportEmbed",
            )
        )
    page = sync(admin)
    assert "Synced from Power BI: 0 added, 1 updated, 1 removed." in page
    assert "No longer in Power BI" in page
    with session_scope(app.state.session_factory) as db:
        gone = db.get(Report, "gone-from-power-bi")
        assert gone is not None and not gone.is_available


def test_a_sync_that_removes_reports_tells_open_viewers_to_recheck(
    app: FastAPI, admin: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    published: list[PushEvent] = []
    monkeypatch.setattr(app.state.push_hub, "publish", published.append)
    sync(admin)
    assert published == []  # nothing went away
    with session_scope(app.state.session_factory) as db:
        db.add(
            Report(
                id="gone-from-power-bi",
                workspace_id="w",
                dataset_id="d",
                name="Deleted report",
                embed_url="https://app.powerbi.com/reportEmbed",
            )
        )
    sync(admin)
    assert published == [PushEvent(kind="access")]  # every open viewer re-checks once


def test_without_a_workspace_the_sync_takes_every_workspace(
    app: FastAPI, admin: TestClient
) -> None:
    every_workspace = app.state.settings.model_copy(update={"powerbi_workspace_id": None})
    app.dependency_overrides[get_settings] = lambda: every_workspace
    assert "Every workspace the service principal can see" in admin.get("/admin/reports").text
    page = sync(admin)
    assert "Synced from Power BI: 4 added, 0 updated, 0 removed." in page
    assert "Finance Summary" in page
    with session_scope(app.state.session_factory) as db:
        capacity_of = {r.name: r.capacity_id for r in db.scalars(select(Report))}
    assert capacity_of["Finance Summary"] and capacity_of["Sales Overview"]
    assert capacity_of["Finance Summary"] != capacity_of["Sales Overview"]


def test_sync_without_a_connection_says_what_to_do(app: FastAPI, admin: TestClient) -> None:
    unconnected = app.state.settings.model_copy(update={"powerbi_client_secret": None})
    app.dependency_overrides[get_settings] = lambda: unconnected
    page = sync(admin)
    assert "Cannot sync" in page
    assert "client secret missing" in page
    assert "/admin/settings" in [href for _text, href in links(page)]


def test_sync_with_a_wrong_secret_reports_power_bis_answer(app: FastAPI, admin: TestClient) -> None:
    from pydantic import SecretStr

    wrong = app.state.settings.model_copy(
        update={"powerbi_client_secret": SecretStr("wrong-secret")}
    )
    app.dependency_overrides[get_settings] = lambda: wrong
    page = sync(admin)
    assert "Sync failed" in page
    assert "Admin → Settings" in page


def test_only_administrators_manage_reports(make_user: MakeUser, login_as: LoginAs) -> None:
    client = login_as(make_user("viewer@example.com"))
    assert client.get("/admin/reports").status_code == 403
    response = client.post("/admin/reports/sync", data={"csrf_token": csrf_of(client, "/reports")})
    assert response.status_code == 403


def test_grant_to_a_user_and_a_group_through_htmx(
    app: FastAPI,
    synced_reports: SyncedReports,
    admin: TestClient,
    make_user: MakeUser,
) -> None:
    viewer = make_user("viewer@example.com")
    with session_scope(app.state.session_factory) as db:
        group = Group(name="Managers")
        db.add(group)
        db.flush()
        group_id = group.id
    report_id = synced_reports["Regional Performance"]
    page = admin.get(f"/admin/reports/{report_id}")
    assert page.status_code == 200
    assert "RLS required" in page.text
    csrf = csrf_of(admin, f"/admin/reports/{report_id}")

    response = admin.post(
        f"/admin/reports/{report_id}/grants",
        data={"csrf_token": csrf, "grantee": f"group:{group_id}", "rls_roles": REGION_MANAGER_ROLE},
        headers=HTMX,
    )
    assert response.status_code == 200
    first = elements(response.text)[0]  # the partial alone
    assert (first.tag, first.attrs.get("id")) == ("section", "grants")
    assert "Regional Performance granted to Managers." in response.text

    # Roles on a report without RLS are not tried (Power BI would use none of them).
    sales_id = synced_reports["Sales Overview"]
    response = admin.post(
        f"/admin/reports/{sales_id}/grants",
        data={"csrf_token": csrf, "grantee": f"user:{viewer.id}", "rls_roles": "A, B"},
        headers=HTMX,
    )
    assert "viewer@example.com" in response.text
    with session_scope(app.state.session_factory) as db:
        grants = {
            (grant.group_id, grant.user_id): grant.rls_roles
            for grant in db.scalars(select(ReportGrant))
        }
    assert grants == {(group_id, None): [REGION_MANAGER_ROLE], (None, viewer.id): ["A", "B"]}


def test_grant_through_a_plain_form_redirects_with_a_message(
    synced_reports: SyncedReports, admin: TestClient, make_user: MakeUser
) -> None:
    viewer = make_user("viewer@example.com")
    report_id = synced_reports["Sales Overview"]
    response = admin.post(
        f"/admin/reports/{report_id}/grants",
        data={
            "csrf_token": csrf_of(admin, f"/admin/reports/{report_id}"),
            "grantee": f"user:{viewer.id}",
        },
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert response.headers["location"] == f"/admin/reports/{report_id}"
    assert (
        "Sales Overview granted to viewer@example.com."
        in admin.get(response.headers["location"]).text
    )


@pytest.mark.parametrize(
    ("roles", "message"),
    [
        (",".join(f"role{i}" for i in range(51)), "at most 50 roles"),
        ("x" * 51, "at most 50 characters"),
    ],
)
def test_roles_beyond_power_bis_limits_are_refused(
    app: FastAPI,
    synced_reports: SyncedReports,
    admin: TestClient,
    make_user: MakeUser,
    roles: str,
    message: str,
) -> None:
    viewer = make_user("viewer@example.com")
    report_id = synced_reports["Regional Performance"]
    csrf = csrf_of(admin, f"/admin/reports/{report_id}")
    for headers in (HTMX, {}):
        response = admin.post(
            f"/admin/reports/{report_id}/grants",
            data={"csrf_token": csrf, "grantee": f"user:{viewer.id}", "rls_roles": roles},
            headers=headers,
        )
        assert response.status_code == 400
        assert message in response.text
    with session_scope(app.state.session_factory) as db:
        assert db.scalars(select(ReportGrant)).all() == []


def test_a_grant_needs_a_grantee(synced_reports: SyncedReports, admin: TestClient) -> None:
    report_id = synced_reports["Sales Overview"]
    response = admin.post(
        f"/admin/reports/{report_id}/grants",
        data={"csrf_token": csrf_of(admin, f"/admin/reports/{report_id}"), "grantee": "user:999"},
        headers=HTMX,
    )
    assert response.status_code == 400
    assert "Choose a user or a group" in response.text


@pytest.mark.parametrize("grantee", ["user:99999999999999999999", "user:²", "group:١", "user:"])
def test_a_grantee_that_is_no_id_is_refused_not_crashed_on(
    synced_reports: SyncedReports, admin: TestClient, grantee: str
) -> None:
    report_id = synced_reports["Sales Overview"]
    response = admin.post(
        f"/admin/reports/{report_id}/grants",
        data={"csrf_token": csrf_of(admin, f"/admin/reports/{report_id}"), "grantee": grantee},
    )
    assert response.status_code == 400
    assert "Choose a user or a group" in response.text


def test_change_roles_and_remove_a_grant(
    app: FastAPI, synced_reports: SyncedReports, admin: TestClient, make_user: MakeUser
) -> None:
    viewer = make_user("viewer@example.com")
    report_id = synced_reports["Regional Performance"]
    csrf = csrf_of(admin, f"/admin/reports/{report_id}")
    admin.post(
        f"/admin/reports/{report_id}/grants",
        data={"csrf_token": csrf, "grantee": f"user:{viewer.id}", "rls_roles": ""},
        headers=HTMX,
    )
    with session_scope(app.state.session_factory) as db:
        grant_id = db.scalars(select(ReportGrant.id)).one()

    response = admin.post(
        f"/admin/reports/{report_id}/grants/{grant_id}/roles",
        data={"csrf_token": csrf, "rls_roles": REGION_MANAGER_ROLE},
        headers=HTMX,
    )
    assert response.status_code == 200
    assert "RLS roles saved." in response.text
    roles_form = f"/admin/reports/{report_id}/grants/{grant_id}/roles"
    roles_fields = form_fields(response.text, action=roles_form)
    assert roles_fields["rls_roles"].value == REGION_MANAGER_ROLE
    # Each grant's forms carry the page's CSRF token, whatever draws them.
    assert roles_fields["csrf_token"].value == csrf
    # Remove asks first: htmx through the browser's confirmation naming who loses access (the
    # page's CSRF token in its values), a page of its own without JavaScript.
    (remove,) = elements(response.text, "a", having="hx-confirm")
    assert remove.attrs["hx-post"] == f"/admin/reports/{report_id}/grants/{grant_id}/delete"
    assert remove.attrs["hx-confirm"] == (
        "Remove access to Regional Performance for viewer@example.com?"
    )
    assert json.loads(remove.attrs["hx-vals"]) == {"csrf_token": csrf}
    question = admin.get(remove.attrs["href"])
    assert question.status_code == 200
    assert "Remove access to Regional Performance for viewer@example.com?" in question.text
    remove_form = f"/admin/reports/{report_id}/grants/{grant_id}/delete"
    assert form_fields(question.text, action=remove_form)["csrf_token"].value == csrf

    response = admin.post(
        f"/admin/reports/{report_id}/grants/{grant_id}/delete",
        data={"csrf_token": csrf},
        headers=HTMX,
    )
    assert "Access removed." in response.text
    with session_scope(app.state.session_factory) as db:
        assert db.scalars(select(ReportGrant)).all() == []
        actions = [entry.action for entry in db.scalars(select(AuditEntry))]
    assert {"report.granted", "report.grant_changed", "report.revoked"} <= set(actions)

    missing = admin.post(
        f"/admin/reports/{report_id}/grants/{grant_id}/delete", data={"csrf_token": csrf}
    )
    assert missing.status_code == 404


def test_unknown_reports_are_404(admin: TestClient) -> None:
    assert admin.get("/admin/reports/nope").status_code == 404


# --- the RLS try-out on save, and the roles offered (issue #13) ------------------------------


def dead_power_bi(app: FastAPI) -> None:
    """Point the Power BI API at a loopback port nobody listens on (Entra still answers)."""
    port = free_port()
    unreachable = app.state.settings.model_copy(
        update={"powerbi_api_url": f"http://127.0.0.1:{port}"}
    )
    app.dependency_overrides[get_settings] = lambda: unreachable


def grant_roles(app: FastAPI) -> dict[int | None, list[str]]:
    with session_scope(app.state.session_factory) as db:
        return {grant.user_id: grant.rls_roles for grant in db.scalars(select(ReportGrant))}


def test_a_role_the_reports_data_does_not_have_is_refused_in_plain_words(
    app: FastAPI, synced_reports: SyncedReports, admin: TestClient, make_user: MakeUser
) -> None:
    viewer = make_user("viewer@example.com")
    report_id = synced_reports["Regional Performance"]
    csrf = csrf_of(admin, f"/admin/reports/{report_id}")
    with session_scope(app.state.session_factory) as db:
        dataset_id = db.get(Report, report_id).dataset_id  # type: ignore[union-attr]
    for headers in (HTMX, {}):
        response = admin.post(
            f"/admin/reports/{report_id}/grants",
            data={
                "csrf_token": csrf,
                "grantee": f"user:{viewer.id}",
                "rls_roles": "Regoin Manager",
            },
            headers=headers,
        )
        assert response.status_code == 400
        assert (
            "The RLS role “Regoin Manager” does not exist in this report's data "
            "(Regional Performance)." in unescape(response.text)
        )
        assert dataset_id not in response.text  # no ids, no codes
        assert "PowerBIError" not in response.text
        # The form keeps what was typed, and the check ran: no "save without the check".
        assert (
            form_fields(response.text, action=f"/admin/reports/{report_id}/grants")[
                "rls_roles"
            ].value
            == "Regoin Manager"
        )
        assert "save_unchecked" not in response.text
    assert grant_roles(app) == {}


def test_the_right_role_is_tried_then_saved(
    app: FastAPI,
    emulator: Emulator,
    synced_reports: SyncedReports,
    admin: TestClient,
    make_user: MakeUser,
) -> None:
    viewer = make_user("viewer@example.com")
    report_id = synced_reports["Regional Performance"]
    before = emulator.stats()["generateTokenCalls"]
    response = admin.post(
        f"/admin/reports/{report_id}/grants",
        data={
            "csrf_token": csrf_of(admin, f"/admin/reports/{report_id}"),
            "grantee": f"user:{viewer.id}",
            "rls_roles": REGION_MANAGER_ROLE,
        },
        headers=HTMX,
    )
    assert response.status_code == 200
    assert "Regional Performance granted to viewer@example.com." in unescape(response.text)
    assert emulator.stats()["generateTokenCalls"] == before + 1  # the try-out
    assert grant_roles(app) == {viewer.id: [REGION_MANAGER_ROLE]}


def test_changing_a_grants_roles_to_a_wrong_one_keeps_the_old_ones(
    app: FastAPI,
    synced_reports: SyncedReports,
    admin: TestClient,
    make_user: MakeUser,
    grant: Grant,
) -> None:
    viewer = make_user("viewer@example.com")
    report_id = synced_reports["Regional Performance"]
    grant(report_id, user=viewer, roles=[REGION_MANAGER_ROLE])
    with session_scope(app.state.session_factory) as db:
        grant_id = db.scalars(select(ReportGrant.id)).one()
    response = admin.post(
        f"/admin/reports/{report_id}/grants/{grant_id}/roles",
        data={
            "csrf_token": csrf_of(admin, f"/admin/reports/{report_id}"),
            "rls_roles": "Region Manager, Auditor",
        },
        headers=HTMX,
    )
    assert response.status_code == 400
    assert "The RLS role “Auditor” does not exist in this report's data" in unescape(response.text)
    roles_form = f"/admin/reports/{report_id}/grants/{grant_id}/roles"
    assert form_fields(response.text, action=roles_form)["rls_roles"].value == (
        "Region Manager, Auditor"
    )
    assert grant_roles(app) == {viewer.id: [REGION_MANAGER_ROLE]}


def test_when_power_bi_cannot_be_asked_the_form_offers_to_save_anyway(
    app: FastAPI, synced_reports: SyncedReports, admin: TestClient, make_user: MakeUser
) -> None:
    viewer = make_user("viewer@example.com")
    report_id = synced_reports["Regional Performance"]
    csrf = csrf_of(admin, f"/admin/reports/{report_id}")
    dead_power_bi(app)
    posted = {"csrf_token": csrf, "grantee": f"user:{viewer.id}", "rls_roles": "Region Manager"}
    response = admin.post(f"/admin/reports/{report_id}/grants", data=posted, headers=HTMX)
    assert response.status_code == 400
    assert "The RLS roles could not be checked: Power BI did not answer" in unescape(response.text)
    fields = form_fields(response.text, action=f"/admin/reports/{report_id}/grants")
    assert fields["save_unchecked"].type == "checkbox"
    assert grant_roles(app) == {}

    response = admin.post(
        f"/admin/reports/{report_id}/grants",
        data={**posted, "save_unchecked": "on"},
        headers=HTMX,
    )
    assert response.status_code == 200
    assert "Regional Performance granted to viewer@example.com." in unescape(response.text)
    assert grant_roles(app) == {viewer.id: [REGION_MANAGER_ROLE]}


def test_the_roles_in_use_for_the_dataset_are_offered(
    synced_reports: SyncedReports, admin: TestClient, make_user: MakeUser, grant: Grant
) -> None:
    report_id = synced_reports["Regional Performance"]
    page = admin.get(f"/admin/reports/{report_id}").text
    assert not elements(page, "datalist")  # none in use yet
    grant(report_id, group="Managers", roles=[REGION_MANAGER_ROLE])
    page = admin.get(f"/admin/reports/{report_id}").text
    (choices,) = elements(page, "datalist")
    assert choices.attrs["id"] == "rls-role-choices"
    assert [option.attrs["value"] for option in elements(choices, "option")] == [
        REGION_MANAGER_ROLE
    ]
    fields = form_fields(page, action=f"/admin/reports/{report_id}/grants")
    assert fields["rls_roles"].attrs["list"] == "rls-role-choices"
    assert "View as" in page  # the help text names the way to check a username
