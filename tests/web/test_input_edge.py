"""Input at the edge (issue #11, item 4): whatever a path, a query or a form holds, the answer is
a clear 4xx, never a server error, on SQLite and on PostgreSQL (make test runs both).

First each reproduction of the issue, then hypothesis over every route of the app: every path
parameter, query parameter and form field the route declares gets hostile values (NUL and
other control characters, Unicode digits, numbers beyond int64, very long text).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from sqlalchemy import select

from embedportal.db.models import Group, User
from embedportal.db.session import session_scope
from tests.support.portal import LoginAs, MakeUser, csrf_of
from tests.web.test_authorization_matrix import EXPECTED, REPORT_ID, World, world

__all__ = ["world"]  # the authorization matrix's world: a report, a grant, a group, users

pytestmark = pytest.mark.usefixtures("fast_password_hashing")

HOSTILE = [
    "\x00",
    "north\x00@example.com",
    "a\x00",
    "\x1b[31m",
    "²",
    "٣",
    "1²",
    "9" * 5000,
    "9223372036854775808",
    "99999999999999999999",
    "-9223372036854775809",
    "-1",
    "0",
    "x" * 20_000,
    "user:²",
    "user:99999999999999999999",
    "group:9223372036854775808",
    "\ud7ff",
    "%00",
    "",
]


def assert_refused(response: Any, *, allowed: tuple[int, ...] = ()) -> None:
    """A 4xx with a reason, or one of the statuses named as fine for this input."""
    status = response.status_code
    assert status < 500 or status in allowed, f"{status}: {response.text[:300]}"


@pytest.fixture
def admin_client(client: TestClient, world: World, login_as: LoginAs) -> Iterator[TestClient]:
    login_as(world.users["admin"])
    client.headers["X-CSRF-Token"] = csrf_of(client)
    yield client


# --- the reproductions ----------------------------------------------------------------


def test_a_nul_in_the_sign_in_form_is_refused_before_anything_looks_it_up(
    client: TestClient, make_user: MakeUser
) -> None:
    make_user("north@example.com")
    token = csrf_of(client, "/login")
    answer = client.post(
        "/login",
        data={"email": "north\x00@example.com", "password": "x", "csrf_token": token},
    )
    assert answer.status_code == 400
    assert "control character" in answer.text
    assert "text/html" in answer.headers["content-type"]


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/reports/%00", {}),
        ("/admin/users", {"q": "a\x00"}),
        ("/admin/users/rows", {"q": "a\x00"}),
        ("/admin/audit", {"action": "\x00"}),
        ("/admin/audit/rows", {"actor": "a\x00"}),
        ("/admin/capacities/audit", {"user": "\x00"}),
        ("/admin/viewers/rows", {"day": "\x00"}),
        ("/admin/reports/%00", {}),
        ("/tv/show", {"report": "a\x00"}),
    ],
)
def test_a_nul_in_a_path_or_query_is_a_400_with_the_reason(
    admin_client: TestClient, path: str, params: dict[str, str]
) -> None:
    answer = admin_client.get(path, params=params)
    assert answer.status_code == 400, answer.text[:300]
    assert "control character" in answer.text


def test_the_api_refuses_a_nul_in_json(admin_client: TestClient) -> None:
    answer = admin_client.post("/api/reports/%00/token", json={"reason": "load"})
    assert answer.status_code == 400
    assert answer.json()["code"] == "InvalidInput"
    assert "control character" in answer.json()["detail"]


@pytest.mark.parametrize(
    ("path", "form"),
    [
        ("/admin/users", {"email": "nul\x00@example.com", "password": "a-long-password-1"}),
        ("/admin/users", {"email": "nul@example.com", "name": "x\x00", "password": "long-pass-1"}),
        ("/admin/groups", {"name": "nul\x00"}),
        ("/admin/groups", {"name": "nul", "description": "d\x00"}),
    ],
)
def test_a_nul_in_a_new_user_or_group_is_refused_and_nothing_is_stored(
    app: FastAPI, admin_client: TestClient, path: str, form: dict[str, str]
) -> None:
    answer = admin_client.post(path, data=form, follow_redirects=False)
    assert answer.status_code == 400
    assert "control character" in answer.text
    with session_scope(app.state.session_factory) as db:
        assert db.scalar(select(User).where(User.email.startswith("nul"))) is None
        assert db.scalar(select(Group).where(Group.name.startswith("nul"))) is None


def test_line_breaks_in_a_description_are_text(admin_client: TestClient) -> None:
    answer = admin_client.post(
        "/admin/groups",
        data={"name": "Two lines", "description": "first\r\nsecond\tend"},
        follow_redirects=False,
    )
    assert answer.status_code == 303


@pytest.mark.parametrize("interval", ["²", "1²", "٣٠", "9" * 5000, "99999999999999999999", "-5"])
def test_tv_interval_of_unicode_or_endless_digits_is_a_form_message(
    admin_client: TestClient, interval: str
) -> None:
    answer = admin_client.get("/tv/show", params={"report": REPORT_ID, "interval": interval})
    assert answer.status_code == 400
    # Five thousand digits are refused at the edge already, as too long for any query value.
    assert "whole number" in answer.text or "too long" in answer.text


@pytest.mark.parametrize("value", ["²", "٣", "9" * 5000, "99999999999999999999"])
@pytest.mark.parametrize(
    "field", ["token_lifetime_minutes", "refresh_margin_minutes", "refresh_every_minutes"]
)
def test_settings_numbers_of_unicode_or_endless_digits_are_a_form_message(
    admin_client: TestClient, field: str, value: str
) -> None:
    form = {
        "name": "Org",
        "time_zone": "UTC",
        "token_lifetime_minutes": "60",
        "refresh_margin_minutes": "10",
        field: value,
    }
    answer = admin_client.post("/admin/settings", data=form)
    assert answer.status_code == 400
    assert "whole number" in answer.text


@pytest.mark.parametrize(
    "grantee", ["user:²", "user:99999999999999999999", "group:9223372036854775808", "user:-1"]
)
def test_a_grant_to_an_impossible_grantee_is_a_form_message(
    admin_client: TestClient, grantee: str
) -> None:
    answer = admin_client.post(
        f"/admin/reports/{REPORT_ID}/grants", data={"grantee": grantee, "rls_roles": ""}
    )
    assert answer.status_code == 400


@pytest.mark.parametrize("grant_id", ["9223372036854775808", "99999999999999999999", "²", "-1"])
def test_a_grant_id_beyond_any_row_is_not_found_or_refused(
    admin_client: TestClient, grant_id: str
) -> None:
    answer = admin_client.post(
        f"/admin/reports/{REPORT_ID}/grants/{quote(grant_id)}/delete", follow_redirects=False
    )
    assert answer.status_code in (400, 404, 422), answer.text[:300]


def test_an_over_long_query_value_is_refused(admin_client: TestClient) -> None:
    answer = admin_client.get("/admin/users", params={"q": "x" * 3000})
    assert answer.status_code == 400
    assert "too long" in answer.text


# --- hypothesis over every route ----------------------------------------------------------------


def _fields_of(params: list[Any]) -> list[str]:
    """Parameter names; a parameter that is a model (a form, the audit filters) by its fields."""
    names: list[str] = []
    for param in params:
        annotation = param.field_info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            names.extend(field.alias or name for name, field in annotation.model_fields.items())
        else:
            names.append(param.alias)
    return names


def route_inputs(route: APIRoute) -> tuple[list[str], list[str], list[str]]:
    """The path parameters, query parameters and form fields a route (and its dependencies)
    declares."""
    path: list[Any] = []
    query: list[Any] = []
    body: list[Any] = []
    pending: list[Dependant] = [route.dependant]
    while pending:
        dependant = pending.pop()
        path.extend(dependant.path_params)
        query.extend(dependant.query_params)
        body.extend(dependant.body_params)
        pending.extend(dependant.dependencies)
    unique = lambda names: list(dict.fromkeys(names))  # noqa: E731
    return unique(_fields_of(path)), unique(_fields_of(query)), unique(_fields_of(body))


def _routes(app: FastAPI) -> dict[str, APIRoute]:
    routes: dict[str, APIRoute] = {}
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if not isinstance(route, APIRoute):
            continue
        for method in sorted(context.methods or ()):
            if method != "HEAD":
                routes[f"{method} {context.path}"] = route
    return routes


# The push stream never ends (tests/web/test_events.py has its own); signing out would leave the
# rest of the examples anonymous.
SKIPPED = {"GET /api/events", "POST /logout"}
ROUTES = sorted(set(EXPECTED) - SKIPPED)

hostile_text = st.one_of(
    st.sampled_from(HOSTILE),
    st.text(max_size=40),
    st.builds(lambda a, b: f"{a}\x00{b}", st.text(max_size=8), st.text(max_size=8)),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
)


def test_every_route_of_the_matrix_is_fuzzed(app: FastAPI) -> None:
    assert set(_routes(app)) - SKIPPED == set(ROUTES)


@pytest.mark.parametrize("route_key", ROUTES)
def test_no_input_makes_a_route_fail(
    app: FastAPI, admin_client: TestClient, world: World, route_key: str
) -> None:
    method, template = route_key.split(" ", 1)
    route = _routes(app)[route_key]
    path_names, query_names, form_names = route_inputs(route)
    row = EXPECTED[route_key]
    # Power BI is not connected in this app: the token API's refusal for that is a 503 with a
    # reason (the authorization matrix expects it), not a failure.
    allowed = (503,) if route_key == "POST /api/reports/{report_id}/token" else ()

    @given(data=st.data())
    @settings(
        max_examples=6,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    def never_a_server_error(data: st.DataObject) -> None:
        path = template
        for name in path_names:
            value = data.draw(st.one_of(st.just(world.values.get(name, "1")), hostile_text))
            path = path.replace(f"{{{name}}}", quote(value, safe="") or "x")
        query = {name: data.draw(hostile_text) for name in query_names}
        query.update(row.query)
        form = {name: data.draw(hostile_text) for name in form_names} or None
        json = row.json if method != "GET" and form is None else None
        response = admin_client.request(
            method, path, params=query, data=form, json=json, follow_redirects=False
        )
        assert_refused(response, allowed=allowed)

    never_a_server_error()


def test_markup_in_a_stored_name_is_shown_as_text(admin_client: TestClient) -> None:
    name = '<script>alert("x")</script>'
    created = admin_client.post("/admin/groups", data={"name": name}, follow_redirects=True)
    assert created.status_code == 200
    page = admin_client.get("/admin/groups").text
    assert name not in page
    assert "&lt;script&gt;alert(" in page


@pytest.mark.parametrize("tenant", ["evil.example/x", "a?b", "a#b", "a b", "t" * 65])
def test_a_tenant_that_would_change_the_authority_address_is_refused(
    admin_client: TestClient, tenant: str
) -> None:
    form = {
        "name": "Org",
        "time_zone": "UTC",
        "token_lifetime_minutes": "60",
        "refresh_margin_minutes": "10",
        "powerbi_tenant_id": tenant,
    }
    answer = admin_client.post("/admin/settings", data=form)
    assert answer.status_code == 400
    assert "tenant" in answer.text.lower()
