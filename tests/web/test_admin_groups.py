"""Administering groups through the pages, members through htmx and without it."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from embedportal.access.groups import members_of
from embedportal.db.models import Group, User
from embedportal.db.session import session_scope
from tests.support.html import elements, form_fields, links
from tests.support.portal import Grant, LoginAs, MakeUser, a_report, csrf_of

HTMX = {"HX-Request": "true"}


@pytest.fixture
def admin(make_user: MakeUser, login_as: LoginAs) -> User:
    user = make_user("admin@example.com", role="admin")
    login_as(user)
    return user


def _group(app: FastAPI, name: str) -> Group | None:
    with session_scope(app.state.session_factory) as db:
        return db.scalar(select(Group).where(Group.name == name))


def _member_emails(app: FastAPI, group_id: int) -> list[str]:
    with session_scope(app.state.session_factory) as db:
        group = db.get(Group, group_id)
        assert group is not None
        return [user.email for user in members_of(session=db, group=group)]


def _create(client: TestClient, name: str, **fields: str) -> int:
    response = client.post(
        "/admin/groups",
        data={"name": name, "csrf_token": csrf_of(client), **fields},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    return int(response.headers["location"].rsplit("/", 1)[1])


def test_empty_list_says_what_to_do(client: TestClient, admin: User) -> None:
    page = client.get("/admin/groups")
    assert page.status_code == 200 and "No groups yet. Create one below" in page.text


def test_create_rename_and_permissions(client: TestClient, admin: User, app: FastAPI) -> None:
    group_id = _create(client, "Sales", description="North team", may_start_capacity="on")
    page = client.get(f"/admin/groups/{group_id}")
    assert "Group “Sales” created." in page.text and "North team" in page.text
    duplicate = client.post(
        "/admin/groups",
        data={"name": "sales", "description": "kept", "csrf_token": csrf_of(client)},
    )
    assert duplicate.status_code == 400
    assert "A group called “sales” already exists." in duplicate.text
    assert form_fields(duplicate.text)["description"].value == "kept"
    response = client.post(
        f"/admin/groups/{group_id}",
        data={"name": "Sales North", "keeps_capacity_on": "on", "csrf_token": csrf_of(client)},
        follow_redirects=False,
    )
    assert response.status_code == 303
    group = _group(app, "Sales North")
    assert group is not None and group.keeps_capacity_on and not group.may_start_capacity
    empty = client.post(
        f"/admin/groups/{group_id}", data={"name": " ", "csrf_token": csrf_of(client)}
    )
    assert empty.status_code == 400 and "Give the group a name." in empty.text
    listing = client.get("/admin/groups").text
    assert "Sales North" in listing and "Keeps on" in listing


def test_members_with_htmx(
    client: TestClient, admin: User, make_user: MakeUser, app: FastAPI
) -> None:
    ana = make_user("ana@example.com")
    group_id = _create(client, "Team")
    added = client.post(
        f"/admin/groups/{group_id}/members",
        data={"email": "ana@example.com", "csrf_token": csrf_of(client)},
        headers=HTMX,
    )
    assert added.status_code == 200 and elements(added.text, "html") == []
    assert "ana@example.com is now a member." in added.text
    assert _member_emails(app, group_id) == ["ana@example.com"]
    unknown = client.post(
        f"/admin/groups/{group_id}/members",
        data={"email": "ghost@example.com", "csrf_token": csrf_of(client)},
        headers=HTMX,
    )
    assert unknown.status_code == 400 and elements(unknown.text, "html") == []
    assert "There is no user with the e-mail ghost@example.com." in unknown.text
    assert form_fields(unknown.text)["email"].value == "ghost@example.com"
    partial = client.get(f"/admin/groups/{group_id}/members")
    assert elements(partial.text, "html") == [] and "ana@example.com" in partial.text
    removed = client.post(
        f"/admin/groups/{group_id}/members/{ana.id}/remove",
        data={"csrf_token": csrf_of(client)},
        headers=HTMX,
    )
    assert removed.status_code == 200 and "is no longer a member" in removed.text
    assert _member_emails(app, group_id) == []


def test_members_without_javascript(
    client: TestClient, admin: User, make_user: MakeUser, app: FastAPI
) -> None:
    ana = make_user("ana@example.com")
    group_id = _create(client, "Team")
    added = client.post(
        f"/admin/groups/{group_id}/members",
        data={"email": "ana@example.com", "csrf_token": csrf_of(client)},
        follow_redirects=False,
    )
    assert (added.status_code, added.headers["location"]) == (303, f"/admin/groups/{group_id}")
    refused = client.post(
        f"/admin/groups/{group_id}/members",
        data={"email": "ghost@example.com", "csrf_token": csrf_of(client)},
    )
    assert refused.status_code == 400 and elements(refused.text, "html") != []
    assert "There is no user with the e-mail ghost@example.com." in refused.text
    removed = client.post(
        f"/admin/groups/{group_id}/members/{ana.id}/remove",
        data={"csrf_token": csrf_of(client)},
        follow_redirects=False,
    )
    assert removed.status_code == 303
    assert _member_emails(app, group_id) == []


def test_delete_after_confirmation(
    client: TestClient, admin: User, make_user: MakeUser, app: FastAPI
) -> None:
    make_user("ana@example.com")
    group_id = _create(client, "Team")
    client.post(
        f"/admin/groups/{group_id}/members",
        data={"email": "ana@example.com", "csrf_token": csrf_of(client)},
    )
    confirm = client.get(f"/admin/groups/{group_id}/delete")
    assert "Its 1 member loses the reports and permissions the group gave." in confirm.text
    response = client.post(
        f"/admin/groups/{group_id}/delete",
        data={"csrf_token": csrf_of(client)},
        follow_redirects=False,
    )
    assert (response.status_code, response.headers["location"]) == (303, "/admin/groups")
    assert _group(app, "Team") is None
    assert client.get(f"/admin/groups/{group_id}").status_code == 404
    with session_scope(app.state.session_factory) as db:
        assert db.scalar(select(User).where(User.email == "ana@example.com")) is not None


def test_a_groups_page_lists_its_reports_with_their_roles(
    client: TestClient, admin: User, app: FastAPI, make_user: MakeUser, grant: Grant
) -> None:
    with session_scope(app.state.session_factory) as db:
        db.add(a_report("r-sales"))
    member = make_user("member@example.com")
    grant("r-sales", group="Sales", members=[member], roles=["North"])
    group = _group(app, "Sales")
    assert group is not None
    page = client.get(f"/admin/groups/{group.id}")
    assert ("r-sales", "/admin/reports/r-sales") in links(page.text)
    assert "Its members may open 1 report:" in page.text and "North" in page.text
    empty = client.get(f"/admin/groups/{_create(client, 'Nobody')}")
    assert "No report is granted to this group yet." in empty.text
