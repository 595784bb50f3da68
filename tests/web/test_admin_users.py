"""Administering users through the pages: list, create, edit, block, password, delete."""

from __future__ import annotations

import json

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from embedportal.db.models import AuditEntry, Role, User
from embedportal.db.session import session_scope
from tests.support.html import elements, form_fields, links
from tests.support.portal import DEFAULT_PASSWORD, Grant, LoginAs, MakeUser, a_report, csrf_of


@pytest.fixture
def admin(make_user: MakeUser, login_as: LoginAs) -> User:
    user = make_user("admin@example.com", role="admin", name="Ada Admin")
    login_as(user)
    return user


def _user(app: FastAPI, email: str) -> User | None:
    with session_scope(app.state.session_factory) as db:
        return db.scalar(select(User).where(User.email == email))


def _form(client: TestClient, **fields: str) -> dict[str, str]:
    return {"csrf_token": csrf_of(client), **fields}


def test_list_and_search(client: TestClient, admin: User, make_user: MakeUser) -> None:
    make_user("bruno@example.com", name="Bruno Lima", is_blocked=True)
    page = client.get("/admin/users")
    assert page.status_code == 200
    assert "admin@example.com" in page.text and "bruno@example.com" in page.text
    assert "Blocked" in page.text and "2 users." in page.text
    rows = client.get("/admin/users/rows", params={"q": "lima"})
    assert elements(rows.text, "html") == []  # the list alone
    assert "bruno@example.com" in rows.text and "admin@example.com" not in rows.text
    empty = client.get("/admin/users", params={"q": "zzz"})
    assert "No user matches “zzz”." in empty.text
    assert "/admin/users/new" in [href for _text, href in links(empty.text)]


def test_create_a_user(client: TestClient, admin: User, app: FastAPI) -> None:
    assert form_fields(client.get("/admin/users/new").text)["email"].label == "Email"
    response = client.post(
        "/admin/users",
        data=_form(
            client,
            email="New@Example.com",
            name="New Person",
            role="viewer",
            password="initial-password",
            rls_username="NEW01",
            rls_roles="North, South",
            keeps_capacity_on="on",
        ),
        follow_redirects=False,
    )
    assert response.status_code == 303
    created = _user(app, "new@example.com")
    assert created is not None
    assert response.headers["location"] == f"/admin/users/{created.id}"
    assert (created.rls_username, created.rls_roles) == ("NEW01", ["North", "South"])
    assert created.keeps_capacity_on and not created.may_start_capacity
    page = client.get(response.headers["location"])
    assert "User new@example.com created." in page.text
    assert form_fields(page.text)["rls_roles"].value == "North, South"


def test_a_refused_form_keeps_what_was_typed(client: TestClient, admin: User) -> None:
    roles = ", ".join(f"role{i}" for i in range(51))
    response = client.post(
        "/admin/users",
        data=_form(
            client,
            email="not-an-email",
            name="Typed Name",
            role="admin",
            password="initial-password",
            rls_username="with space",
            rls_roles=roles,
            may_start_capacity="on",
        ),
    )
    assert response.status_code == 400
    text = response.text
    fields = form_fields(text, action="/admin/users")
    assert (fields["email"].value, fields["name"].value) == ("not-an-email", "Typed Name")
    assert (fields["rls_username"].value, fields["rls_roles"].value) == ("with space", roles)
    assert fields["role"].value == "admin"
    assert fields["may_start_capacity"].checked and not fields["keeps_capacity_on"].checked
    for name in ("email", "rls_username", "rls_roles"):
        assert fields[name].error and fields[name].invalid
    assert "Give at most 50 roles." in text
    assert "The RLS username cannot contain spaces." in text


def test_edit_a_user(client: TestClient, admin: User, make_user: MakeUser, app: FastAPI) -> None:
    user = make_user("ana@example.com")
    response = client.post(
        f"/admin/users/{user.id}",
        data=_form(
            client,
            email="ana@example.com",
            name="Ana",
            role="admin",
            rls_username="",
            rls_roles="",
            may_start_capacity="on",
        ),
        follow_redirects=False,
    )
    assert response.status_code == 303
    changed = _user(app, "ana@example.com")
    assert changed is not None and changed.role == Role.ADMIN and changed.may_start_capacity
    assert "Changes saved." in client.get(response.headers["location"]).text


def test_an_admin_cannot_demote_block_or_delete_themselves(
    client: TestClient, admin: User, app: FastAPI
) -> None:
    page = client.get(f"/admin/users/{admin.id}")
    assert "This is you" in page.text
    assert f"/admin/users/{admin.id}/block" not in page.text
    demote = client.post(
        f"/admin/users/{admin.id}",
        data=_form(client, email=admin.email, name="Ada", role="viewer"),
    )
    assert demote.status_code == 400
    assert "You cannot take away your own administrator role." in demote.text
    block = client.post(f"/admin/users/{admin.id}/block", data=_form(client))
    assert block.status_code == 400 and "You cannot block yourself." in block.text
    confirm = client.get(f"/admin/users/{admin.id}/delete")
    assert "You cannot delete yourself." in confirm.text
    delete = client.post(f"/admin/users/{admin.id}/delete", data=_form(client))
    assert delete.status_code == 400
    still = _user(app, admin.email)
    assert still is not None and still.role == Role.ADMIN and not still.is_blocked


def test_blocking_signs_the_user_out(
    client: TestClient, admin: User, make_user: MakeUser, app: FastAPI
) -> None:
    user = make_user("ana@example.com")
    with TestClient(app, base_url="http://127.0.0.1") as theirs:
        theirs.post(
            "/login",
            data={
                "email": user.email,
                "password": DEFAULT_PASSWORD,
                "csrf_token": csrf_of(theirs, "/login"),
            },
        )
        assert theirs.get("/account", follow_redirects=False).status_code == 200
        response = client.post(
            f"/admin/users/{user.id}/block", data=_form(client), follow_redirects=False
        )
        assert response.status_code == 303
        assert theirs.get("/account", follow_redirects=False).status_code == 303
        assert (
            "is blocked and signed out everywhere" in client.get(response.headers["location"]).text
        )
        client.post(f"/admin/users/{user.id}/unblock", data=_form(client))
        unblocked = _user(app, user.email)
        assert unblocked is not None and not unblocked.is_blocked


def test_set_a_password(client: TestClient, admin: User, make_user: MakeUser) -> None:
    user = make_user("ana@example.com")
    short = client.post(f"/admin/users/{user.id}/password", data=_form(client, password="short"))
    assert short.status_code == 400
    assert form_fields(short.text, action=f"/admin/users/{user.id}/password")["password"].error
    done = client.post(
        f"/admin/users/{user.id}/password", data=_form(client, password="a-new-password-1")
    )
    assert done.status_code == 200 and "The password of ana@example.com is set." in done.text


def test_delete_after_confirmation(
    client: TestClient, admin: User, make_user: MakeUser, app: FastAPI
) -> None:
    user = make_user("ana@example.com")
    confirm = client.get(f"/admin/users/{user.id}/delete")
    assert confirm.status_code == 200 and "Delete ana@example.com?" in confirm.text
    assert _user(app, user.email) is not None
    response = client.post(
        f"/admin/users/{user.id}/delete", data=_form(client), follow_redirects=False
    )
    assert (response.status_code, response.headers["location"]) == (303, "/admin/users")
    assert _user(app, user.email) is None
    assert "User ana@example.com deleted." in client.get("/admin/users").text
    assert client.get(f"/admin/users/{user.id}").status_code == 404


@pytest.mark.parametrize("user_id", ["999", "abc", "0", "99999999999999999999999"])
def test_bad_ids_are_not_server_errors(client: TestClient, admin: User, user_id: str) -> None:
    assert client.get(f"/admin/users/{user_id}").status_code in (400, 404)
    response = client.post(f"/admin/users/{user_id}/block", data=_form(client))
    assert response.status_code in (400, 404)


def test_huge_page_numbers_are_fine(client: TestClient, admin: User) -> None:
    assert client.get("/admin/users", params={"page": "9" * 30}).status_code == 200


def test_no_password_reaches_the_audit_trail(
    client: TestClient, admin: User, make_user: MakeUser, app: FastAPI
) -> None:
    client.post(
        "/admin/users",
        data=_form(client, email="new@example.com", password="initial-password-x", role="viewer"),
    )
    user = make_user("ana@example.com")
    client.post(f"/admin/users/{user.id}/password", data=_form(client, password="set-password-y"))
    with session_scope(app.state.session_factory) as db:
        trail = json.dumps([entry.detail for entry in db.scalars(select(AuditEntry))])
    assert "initial-password-x" not in trail and "set-password-y" not in trail
    assert DEFAULT_PASSWORD not in trail


def test_a_users_page_lists_what_they_can_open_and_why(
    client: TestClient, admin: User, app: FastAPI, make_user: MakeUser, grant: Grant
) -> None:
    with session_scope(app.state.session_factory) as db:
        db.add_all([a_report("r-own"), a_report("r-group"), a_report("r-none")])
    viewer = make_user("viewer@example.com")
    grant("r-own", user=viewer)
    grant("r-group", group="Sales", members=[viewer])
    page = client.get(f"/admin/users/{viewer.id}")
    reports = [href for _text, href in links(page.text) if href.startswith("/admin/reports/")]
    assert "/admin/reports/r-own" in reports and "/admin/reports/r-group" in reports
    assert "/admin/reports/r-none" not in reports
    assert "Granted to them" in page.text and "Through the group Sales" in page.text
    lonely = make_user("lonely@example.com")
    assert "None yet: grant reports" in client.get(f"/admin/users/{lonely.id}").text
