"""A user's RLS settings are tried with Power BI (the emulator) before they are saved, and the
roles in use are offered (issue #13)."""

from __future__ import annotations

from html import unescape

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from embedportal.db.models import User
from embedportal.db.session import session_scope
from embedportal.emulator.demo import REGION_MANAGER_ROLE
from embedportal.web.deps import get_settings
from tests.support.html import elements, form_fields
from tests.support.portal import Grant, LoginAs, MakeUser, SyncedReports, csrf_of
from tests.support.servers import free_port


@pytest.fixture
def settings_overrides(emulator_settings_overrides: dict[str, object]) -> dict[str, object]:
    return emulator_settings_overrides


@pytest.fixture
def admin(make_user: MakeUser, login_as: LoginAs) -> TestClient:
    return login_as(make_user("admin@example.com", role="admin"))


@pytest.fixture
def manager(make_user: MakeUser, synced_reports: SyncedReports, grant: Grant) -> tuple[User, str]:
    """A viewer granted Regional Performance without roles of the grant's own."""
    user = make_user("north@example.com")
    report_id = synced_reports["Regional Performance"]
    grant(report_id, user=user)
    return user, report_id


def post_user(client: TestClient, user: User, **fields: str) -> tuple[int, str]:
    response = client.post(
        f"/admin/users/{user.id}",
        data={
            "csrf_token": csrf_of(client),
            "email": user.email,
            "name": "",
            "role": "viewer",
            **fields,
        },
        follow_redirects=False,
    )
    return response.status_code, unescape(response.text)


def stored_roles(app: FastAPI, user: User) -> list[str]:
    with session_scope(app.state.session_factory) as db:
        stored = db.get(User, user.id)
        assert stored is not None
        return list(stored.rls_roles)


def test_a_role_the_reports_data_lacks_is_refused_on_the_users_form(
    app: FastAPI, admin: TestClient, manager: tuple[User, str]
) -> None:
    user, _report_id = manager
    status, page = post_user(admin, user, rls_roles="Regoin Manager")
    assert status == 400
    fields = form_fields(page)
    assert fields["rls_roles"].error.startswith(
        "The RLS role “Regoin Manager” does not exist in this report's data (Regional Performance)."
    )
    assert fields["rls_roles"].value == "Regoin Manager"
    assert "save_unchecked" not in fields
    assert stored_roles(app, user) == []


def test_the_right_role_is_saved(
    app: FastAPI, admin: TestClient, manager: tuple[User, str]
) -> None:
    user, _report_id = manager
    status, _page = post_user(admin, user, rls_roles=REGION_MANAGER_ROLE)
    assert status == 303
    assert stored_roles(app, user) == [REGION_MANAGER_ROLE]


def test_power_bi_unreachable_asks_before_saving_unchecked(
    app: FastAPI, admin: TestClient, manager: tuple[User, str]
) -> None:
    user, _report_id = manager
    port = free_port()
    dead = app.state.settings.model_copy(update={"powerbi_api_url": f"http://127.0.0.1:{port}"})
    app.dependency_overrides[get_settings] = lambda: dead
    status, page = post_user(admin, user, rls_roles=REGION_MANAGER_ROLE)
    assert status == 400
    fields = form_fields(page)
    assert (
        "The RLS roles could not be checked: Power BI did not answer" in fields["rls_roles"].error
    )
    assert fields["save_unchecked"].type == "checkbox"
    assert stored_roles(app, user) == []
    status, _page = post_user(admin, user, rls_roles=REGION_MANAGER_ROLE, save_unchecked="on")
    assert status == 303
    assert stored_roles(app, user) == [REGION_MANAGER_ROLE]


def test_unchanged_rls_settings_are_not_tried_again(
    app: FastAPI, admin: TestClient, manager: tuple[User, str]
) -> None:
    """Editing the name of a user whose roles Power BI cannot be asked about still works."""
    user, _report_id = manager
    post_user(admin, user, rls_roles=REGION_MANAGER_ROLE)
    app.dependency_overrides[get_settings] = lambda: app.state.settings.model_copy(
        update={"powerbi_client_secret": None}
    )
    status, _page = post_user(admin, user, rls_roles=REGION_MANAGER_ROLE, name="North manager")
    assert status == 303


def test_the_roles_in_use_are_offered_on_the_users_form(
    admin: TestClient, manager: tuple[User, str], make_user: MakeUser, grant: Grant
) -> None:
    user, report_id = manager
    grant(report_id, group="Managers", roles=[REGION_MANAGER_ROLE])
    page = admin.get(f"/admin/users/{user.id}").text
    (choices,) = elements(page, "datalist")
    assert [option.attrs["value"] for option in elements(choices, "option")] == [
        REGION_MANAGER_ROLE
    ]
    assert form_fields(page)["rls_roles"].attrs["list"] == "rls-role-choices"
    assert "View as" in unescape(page)
