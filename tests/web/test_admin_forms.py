"""Every field on the admin pages can be found and understood without seeing the page: it has a
label, and when the portal refuses its value it is marked invalid and the reason is read out
with it (named by aria-describedby). Checked on every admin page as shown, and again as shown
after refusals."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from embedportal.db.models import Capacity, Group, Report
from embedportal.db.session import session_scope
from tests.support.html import accessibility_problems, controls
from tests.support.portal import Grant, LoginAs, MakeUser, csrf_of

REPORT_ID = "5a1e5000-0000-4000-8000-000000000001"
CAPACITY_ID = "5a1e5000-0000-4000-8000-0000000000ca"
HTMX = {"HX-Request": "true"}


@dataclass(frozen=True)
class Portal:
    admin: TestClient
    user_id: int
    group_id: int


@pytest.fixture
def portal(app: FastAPI, make_user: MakeUser, login_as: LoginAs, grant: Grant) -> Portal:
    ana = make_user("ana@example.com")
    with session_scope(app.state.session_factory) as db:
        db.add(Capacity(id=CAPACITY_ID, display_name="Sales capacity", sku="A1"))
        db.add(
            Report(
                id=REPORT_ID,
                workspace_id="5a1e5000-0000-4000-8000-0000000000ff",
                dataset_id="5a1e5000-0000-4000-8000-0000000000da",
                name="Sales Overview",
                embed_url=f"https://app.powerbi.com/reportEmbed?reportId={REPORT_ID}",
            )
        )
        group = Group(name="Managers")
        db.add(group)
        db.flush()
        group_id = group.id
    # A grant for each kind, so the page shows the per-grant roles forms too.
    grant(REPORT_ID, user=ana, roles=["North"])
    grant(REPORT_ID, group="Managers")
    admin = login_as(make_user("admin@example.com", role="admin"))
    return Portal(admin=admin, user_id=ana.id, group_id=group_id)


def invalid_fields(html: str) -> set[str]:
    return {control.name for control in controls(html) if control.invalid and control.error}


PAGES = [
    "/admin/users",
    "/admin/users/new",
    "/admin/users/{user}",
    "/admin/users/{user}/delete",
    "/admin/groups",
    "/admin/groups/{group}",
    "/admin/groups/{group}/members",
    "/admin/groups/{group}/delete",
    "/admin/reports",
    f"/admin/reports/{REPORT_ID}",
    f"/admin/reports/{REPORT_ID}/grants",
    "/admin/settings",
    "/admin/audit",
    "/admin/viewers",
    "/admin/capacities",
    f"/admin/capacities/{CAPACITY_ID}",
    f"/admin/capacities/{CAPACITY_ID}/turn-on",
    f"/admin/capacities/{CAPACITY_ID}/sku?sku=A2",
    "/admin/capacities/audit",
    "/admin/outbox",
]


@pytest.mark.parametrize("path", PAGES)
def test_every_field_of_every_admin_page_is_labelled(portal: Portal, path: str) -> None:
    page = portal.admin.get(path.format(user=portal.user_id, group=portal.group_id))
    assert page.status_code == 200
    assert accessibility_problems(page.text) == []


# (path, posted fields or None for a GET, htmx?, the fields that must be refused)
REFUSALS: list[tuple[str, dict[str, str] | None, bool, set[str]]] = [
    (
        "/admin/users",
        {"email": "not-an-email", "password": "short", "rls_username": "a b", "role": "x"},
        False,
        {"email", "password", "rls_username", "role"},
    ),
    ("/admin/users/{user}", {"email": "", "rls_roles": ",".join("r" * 51)}, False, {"email"}),
    ("/admin/users/{user}/password", {"password": "short"}, False, {"password"}),
    ("/admin/groups", {"name": " "}, False, {"name"}),
    ("/admin/groups/{group}", {"name": " ", "description": "kept"}, False, {"name"}),
    ("/admin/groups/{group}/members", {"email": "ghost@example.com"}, False, {"email"}),
    ("/admin/groups/{group}/members", {"email": "ghost@example.com"}, True, {"email"}),
    (
        "/admin/settings",
        {"name": "", "time_zone": "Mars/Base", "token_lifetime_minutes": "lots"},
        False,
        {"name", "time_zone", "token_lifetime_minutes", "refresh_margin_minutes"},
    ),
    (f"/admin/reports/{REPORT_ID}/grants", {"grantee": "user:999"}, False, set()),
    (f"/admin/reports/{REPORT_ID}/grants", {"grantee": "user:999"}, True, set()),
    ("/admin/audit?since=yesterday&until=2024-02-30", None, False, {"since", "until"}),
    ("/admin/viewers?day=yesterday", None, False, set()),
    (
        f"/admin/capacities/{CAPACITY_ID}/azure",
        {"subscription_id": "x", "resource_group": "", "resource_name": "A", "provider": ""},
        False,
        {"subscription_id", "resource_group", "resource_name", "provider"},
    ),
    (
        f"/admin/capacities/{CAPACITY_ID}/settings",
        {"idle_pause_minutes": "abc", "hourly_price": "x", "starting_message": "ok"},
        False,
        {"idle_pause_minutes", "hourly_price"},
    ),
    (
        f"/admin/capacities/{CAPACITY_ID}/schedule",
        {"weekday": "9", "time": "8h", "action": "x", "sku": ""},
        False,
        {"weekday", "time", "action"},
    ),
    (f"/admin/capacities/{CAPACITY_ID}/sku?sku=F2", None, False, {"sku"}),
    ("/admin/capacities/audit?since=yesterday&until=2024-02-30", None, False, {"since", "until"}),
]


@pytest.mark.parametrize(("path", "fields", "htmx", "refused"), REFUSALS)
def test_a_refused_field_says_so_where_a_screen_reader_looks(
    portal: Portal, path: str, fields: dict[str, str] | None, htmx: bool, refused: set[str]
) -> None:
    url = path.format(user=portal.user_id, group=portal.group_id)
    headers = HTMX if htmx else {}
    if fields is None:
        response = portal.admin.get(url, headers=headers)
    else:
        data = {**fields, "csrf_token": csrf_of(portal.admin)}
        response = portal.admin.post(url, data=data, headers=headers)
    assert response.status_code == 400
    assert accessibility_problems(response.text) == []
    assert refused <= invalid_fields(response.text)
