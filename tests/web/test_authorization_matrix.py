"""Who may call what: every route of the app × every kind of caller, against a written table.

`EXPECTED` has one row per route (method and path as declared). A route without a row fails
`test_every_route_has_a_row`, so whoever adds a route also says here who may use it; a row for
a route that no longer exists fails too. Each row is then checked for five callers:

- anonymous: no session (but the sign-in page's CSRF token, as a browser has);
- viewer: signed in, no grant on the seeded report;
- granted: signed in, granted the seeded report;
- blocked: signed in, then blocked. Always expected to be treated exactly as anonymous;
- admin: an administrator.

The rules the rows follow: pages behind sign-in redirect an anonymous caller (303) to /login,
`/api/...` answers 401 JSON; admin pages answer a signed-in non-administrator 403; every
state-changing request carries the caller's CSRF token (tests elsewhere check its absence).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient
from sqlalchemy import update
from starlette.routing import Mount, WebSocketRoute

from embedportal.access.api_keys import create_api_key
from embedportal.access.groups import add_member, create_group
from embedportal.db.models import Capacity, Report, ReportGrant, User
from embedportal.db.session import session_scope
from tests.support.portal import LoginAs, MakeUser, csrf_of

PERSONAS = ("anonymous", "viewer", "granted", "blocked", "admin")
REPORT_ID = "6f7c1c37-0000-4000-8000-00000000ab01"
CAPACITY_ID = "6f7c1c37-0000-4000-8000-00000000ca01"
WORKSPACE_ID = "6f7c1c37-0000-4000-8000-00000000ff01"
DATASET_ID = "6f7c1c37-0000-4000-8000-00000000da01"


@dataclass(frozen=True)
class Expect:
    """An answer: its status, and for a redirect where it must lead (a prefix)."""

    status: int
    location: str | None = None
    json_code: str | None = None

    def describe(self) -> str:
        where = f" → {self.location}…" if self.location else ""
        code = f" code={self.json_code}" if self.json_code else ""
        return f"{self.status}{where}{code}"


OK = Expect(200)
NO_CONTENT = Expect(204)
SEE_OTHER = Expect(303)
REFUSED = Expect(400)  # the form (or query) was refused, with the reason on the page
FORBIDDEN = Expect(403)
TO_LOGIN = Expect(303, "/login")
UNAUTHORIZED = Expect(401, json_code="Unauthorized")


@dataclass(frozen=True)
class Row:
    """Expectations for one route. `blocked` is always `anonymous`'s: a blocked user's session
    counts for nothing."""

    anonymous: Expect
    viewer: Expect
    granted: Expect
    admin: Expect
    form: Mapping[str, str] | None = None
    json: Any = None
    query: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)

    def expectation(self, persona: str) -> Expect:
        expectations: dict[str, Expect] = {
            "anonymous": self.anonymous,
            "blocked": self.anonymous,
            "viewer": self.viewer,
            "granted": self.granted,
            "admin": self.admin,
        }
        return expectations[persona]


def public(ok: Expect = OK, **request: Any) -> Row:
    return Row(anonymous=ok, viewer=ok, granted=ok, admin=ok, **request)


def signed_in(ok: Expect = OK, **request: Any) -> Row:
    """A page for anyone signed in."""
    return Row(anonymous=TO_LOGIN, viewer=ok, granted=ok, admin=ok, **request)


def admin_only(ok: Expect = OK, **request: Any) -> Row:
    return Row(anonymous=TO_LOGIN, viewer=FORBIDDEN, granted=FORBIDDEN, admin=ok, **request)


def api(ok: Expect, **request: Any) -> Row:
    """JSON for anyone signed in."""
    return Row(anonymous=UNAUTHORIZED, viewer=ok, granted=ok, admin=ok, **request)


NO_API_KEY = Expect(401, json_code="InvalidApiKey")


def integration(**request: Any) -> Row:
    """The integration API (/api/v1): an API key or nothing. A session, even an
    administrator's, counts for nothing there (tests/web/test_api_v1_*.py call it with keys)."""
    return public(NO_API_KEY, **request)


EXPECTED: dict[str, Row] = {
    # --- infrastructure ---------------------------------------------------------------------
    "GET /healthz": public(),
    "GET /static/vendor/{name}": public(),
    # The brand: the sign-in page shows it, so it is public; no logo was uploaded here.
    "GET /brand/theme.css": public(),
    "GET /brand/{kind}": public(Expect(404)),
    # Prometheus scrapes without a session; the figures name no user. This app sets no
    # EMBEDPORTAL_METRICS_TOKEN; with one, every caller without it gets 401 (test_events.py).
    "GET /metrics": public(),
    # --- start page, sign-in and account ----------------------------------------------------
    "GET /": Row(
        anonymous=TO_LOGIN,
        viewer=Expect(303, "/reports"),
        granted=Expect(303, "/reports"),
        admin=Expect(303, "/reports"),
    ),
    "GET /login": Row(anonymous=OK, viewer=SEE_OTHER, granted=SEE_OTHER, admin=SEE_OTHER),
    "POST /login": public(
        REFUSED, form={"email": "nobody@example.com", "password": "not-the-password"}
    ),
    "POST /logout": public(TO_LOGIN),
    # Sign in with Microsoft: off here (the organization allows passwords only); the callback
    # without the browser's own flow cookie is refused whoever calls it.
    "GET /login/microsoft": public(FORBIDDEN),
    "GET /login/microsoft/callback": public(REFUSED, query={"code": "c", "state": "s"}),
    "GET /logout/microsoft": public(),
    "POST /language": public(TO_LOGIN, form={"language": "pt_BR"}),
    # "Forgot your password?" answers alike for everyone: a link is mailed or not, unsaid.
    "GET /password/forgot": public(),
    "POST /password/forgot": public(
        Expect(303, "/password/forgot/sent"), form={"email": "nobody@example.com"}
    ),
    "GET /password/forgot/sent": public(),
    "GET /password/set/{token}": public(REFUSED),
    "POST /password/set/{token}": public(
        REFUSED, form={"new_password": "x", "repeat_password": "x"}
    ),
    # A single sign-on link: an unknown one is refused alike for everyone (test_sso_links.py).
    "GET /sso/{secret}": public(Expect(410)),
    "GET /account": signed_in(),
    "POST /account/language": signed_in(Expect(303, "/account"), form={"language": "en"}),
    "POST /account/password": signed_in(REFUSED, form={"current_password": "wrong"}),
    "POST /account/password-strength": signed_in(form={"new_password": "typed-so-far"}),
    # Two-step sign-in: the code page needs a half-done sign-in (a signed cookie), which no
    # persona holds here, so it leads everyone back to the first page.
    "GET /login/two-step": public(TO_LOGIN),
    "POST /login/two-step": public(TO_LOGIN, form={"code": "123456"}),
    "GET /account/two-step": signed_in(),
    "POST /account/two-step/start": signed_in(Expect(303, "/account/two-step")),
    # Nothing begun to confirm, nothing on to turn off: the form says so.
    "POST /account/two-step/confirm": signed_in(REFUSED, form={"code": "123456"}),
    "POST /account/two-step/cancel": signed_in(Expect(303, "/account/two-step")),
    "POST /account/two-step/disable": signed_in(REFUSED, form={"code_or_password": "wrong"}),
    "POST /account/two-step/recovery-codes": signed_in(REFUSED, form={"code_or_password": "wrong"}),
    # --- admin: users -----------------------------------------------------------------------
    "GET /admin/users": admin_only(),
    "GET /admin/users/rows": admin_only(query={"q": "example"}),
    "GET /admin/users/new": admin_only(),
    "POST /admin/users": admin_only(REFUSED, form={"email": "not-an-address"}),
    "GET /admin/users/{user_id}": admin_only(),
    "POST /admin/users/{user_id}": admin_only(
        Expect(303, "/admin/users/"),
        form={"email": "subject@example.com", "name": "Renamed", "role": "viewer"},
    ),
    "POST /admin/users/{user_id}/password": admin_only(
        Expect(303, "/admin/users/"), form={"password": "a-new-long-password"}
    ),
    "POST /admin/users/{user_id}/block": admin_only(Expect(303, "/admin/users/")),
    "POST /admin/users/{user_id}/unblock": admin_only(Expect(303, "/admin/users/")),
    "POST /admin/users/{user_id}/unlock": admin_only(Expect(303, "/admin/users/")),
    "POST /admin/users/{user_id}/two-step/reset": admin_only(Expect(303, "/admin/users/")),
    "GET /admin/users/{user_id}/delete": admin_only(),
    "POST /admin/users/{user_id}/reset-link": admin_only(Expect(303, "/admin/users/")),
    "GET /admin/outbox": admin_only(),
    "GET /admin/outbox/rows": admin_only(),
    "POST /admin/users/{user_id}/delete": admin_only(Expect(303, "/admin/users")),
    # --- admin: groups ----------------------------------------------------------------------
    "GET /admin/groups": admin_only(),
    "POST /admin/groups": admin_only(Expect(303, "/admin/groups/"), form={"name": "Another"}),
    "GET /admin/groups/{group_id}": admin_only(),
    "POST /admin/groups/{group_id}": admin_only(
        Expect(303, "/admin/groups/"), form={"name": "Renamed group"}
    ),
    "GET /admin/groups/{group_id}/members": admin_only(),
    "POST /admin/groups/{group_id}/members": admin_only(
        Expect(303, "/admin/groups/"), form={"email": "viewer@example.com"}
    ),
    "POST /admin/groups/{group_id}/members/{user_id}/remove": admin_only(
        Expect(303, "/admin/groups/")
    ),
    "GET /admin/groups/{group_id}/delete": admin_only(),
    "POST /admin/groups/{group_id}/delete": admin_only(Expect(303, "/admin/groups")),
    # --- admin: audit -----------------------------------------------------------------------
    "GET /admin/audit": admin_only(),
    "GET /admin/audit/rows": admin_only(query={"action": "login.succeeded"}),
    "GET /admin/audit/export.csv": admin_only(),
    # --- reports, the viewer, TV mode -------------------------------------------------------
    "GET /reports": signed_in(),
    "GET /reports/{report_id}": Row(anonymous=TO_LOGIN, viewer=FORBIDDEN, granted=OK, admin=OK),
    "GET /tv": signed_in(),
    # The rotation of the seeded report: refused for a viewer who may not see it.
    "GET /tv/show": Row(
        anonymous=TO_LOGIN,
        viewer=REFUSED,
        granted=OK,
        admin=OK,
        query={"report": REPORT_ID, "interval": "60"},
    ),
    # --- the JSON API and the push channel --------------------------------------------------
    # Past the access checks, the token API finds no Power BI connection in this test app.
    "POST /api/reports/{report_id}/token": Row(
        anonymous=UNAUTHORIZED,
        viewer=Expect(403, json_code="Forbidden"),
        granted=Expect(503, json_code="PowerBINotConnected"),
        admin=Expect(503, json_code="PowerBINotConnected"),
    ),
    "GET /api/events": api(OK),
    # Says whether anyone is signed in (200 either way): open viewers ask it when signed out.
    "GET /api/session": public(),
    "POST /api/telemetry": api(NO_CONTENT, json={"events": [{"type": "refreshed"}]}),
    # The API reference: open only in development; this app runs as `test`.
    "GET /api/openapi.json": Row(
        anonymous=UNAUTHORIZED,
        viewer=Expect(403, json_code="Forbidden"),
        granted=Expect(403, json_code="Forbidden"),
        admin=OK,
    ),
    "GET /api/docs": Row(
        anonymous=UNAUTHORIZED,
        viewer=Expect(403, json_code="Forbidden"),
        granted=Expect(403, json_code="Forbidden"),
        admin=OK,
    ),
    # --- admin: reports and settings --------------------------------------------------------
    "GET /admin/reports": admin_only(),
    # No Power BI connection in this test app: the sync reports that, on the same page.
    "POST /admin/reports/sync": admin_only(Expect(303, "/admin/reports")),
    "GET /admin/reports/{report_id}": admin_only(),
    "GET /admin/reports/{report_id}/grants": admin_only(),
    "POST /admin/reports/{report_id}/embedding": admin_only(
        Expect(303, "/admin/reports/"), form={"embedding": "user-owned"}
    ),
    "POST /admin/reports/{report_id}/grants": admin_only(
        Expect(303, "/admin/reports/"), form={"grantee": "user:{viewer_id}", "rls_roles": ""}
    ),
    "POST /admin/reports/{report_id}/grants/{grant_id}/roles": admin_only(
        Expect(303, "/admin/reports/"), form={"rls_roles": "North"}
    ),
    "GET /admin/reports/{report_id}/grants/{grant_id}/remove": admin_only(),
    "POST /admin/reports/{report_id}/grants/{grant_id}/delete": admin_only(
        Expect(303, "/admin/reports/")
    ),
    "GET /admin/settings": admin_only(),
    "POST /admin/settings": admin_only(
        Expect(303, "/admin/settings"),
        form={
            "name": "Matrix Org",
            "time_zone": "UTC",
            "token_lifetime_minutes": "60",
            "refresh_margin_minutes": "10",
        },
    ),
    "POST /admin/settings/test-connection": admin_only(OK),
    "GET /admin/branding": admin_only(),
    "POST /admin/branding": admin_only(
        Expect(303, "/admin/branding"), form={"brand_color": "#123456"}
    ),
    # --- admin: viewer health ---------------------------------------------------------------
    "GET /admin/viewers": admin_only(),
    "GET /admin/viewers/rows": admin_only(query={"day": "2025-01-31"}),
    "GET /admin/viewers/open": admin_only(),
    "GET /admin/health": admin_only(),
    "GET /admin/health/figures": admin_only(),
    # --- admin: capacities (the seeded one has no Azure coordinates: ARM is never asked) -----
    "GET /admin/capacities": admin_only(),
    "GET /admin/capacities/rows": admin_only(query={"q": "matrix"}),
    # No Power BI connection in this test app: the reload says so, on the list.
    "POST /admin/capacities/reload": admin_only(Expect(303, "/admin/capacities")),
    "GET /admin/capacities/audit": admin_only(),
    "GET /admin/capacities/audit/rows": admin_only(query={"action": "started"}),
    "GET /admin/capacities/audit.csv": admin_only(),
    "GET /admin/capacities/{capacity_id}": admin_only(),
    "GET /admin/capacities/{capacity_id}/state": admin_only(),
    "POST /admin/capacities/{capacity_id}/azure": admin_only(
        REFUSED, form={"subscription_id": "not-a-guid"}
    ),
    "POST /admin/capacities/{capacity_id}/settings": admin_only(
        Expect(303, "/admin/capacities/"), form={"idle_pause_minutes": "30"}
    ),
    "POST /admin/capacities/{capacity_id}/schedule": admin_only(
        Expect(303, "/admin/capacities/"),
        form={"weekday": "0", "time": "08:00", "action": "turn_on", "sku": ""},
    ),
    "POST /admin/capacities/{capacity_id}/schedule/copy": admin_only(
        REFUSED, form={"copy_from": "0"}
    ),
    "POST /admin/capacities/{capacity_id}/schedule/edit": admin_only(OK, form={"add_row": "1"}),
    "GET /admin/capacities/{capacity_id}/turn-on": admin_only(),
    "POST /admin/capacities/{capacity_id}/turn-on": admin_only(REFUSED),
    "GET /admin/capacities/{capacity_id}/turn-off": admin_only(),
    "POST /admin/capacities/{capacity_id}/turn-off": admin_only(REFUSED),
    "GET /admin/capacities/{capacity_id}/sku": admin_only(query={"sku": "A2"}),
    "POST /admin/capacities/{capacity_id}/sku": admin_only(REFUSED, form={"sku": "A2"}),
    # --- admin: View as (the subject's view of the seeded report, which they may not open) ---
    # The report page's form: a user id that is none is refused; a real one leads on (303).
    "GET /admin/reports/{report_id}/view-as": admin_only(REFUSED, query={"user": "0"}),
    # An administrator is told why the subject cannot open it (the page, and the token).
    "GET /admin/users/{user_id}/view-as/{report_id}": admin_only(FORBIDDEN),
    "POST /admin/users/{user_id}/view-as/{report_id}/token": admin_only(
        Expect(403, json_code="Forbidden"), json={"reason": "load"}
    ),
    # --- admin: API keys --------------------------------------------------------------------
    "GET /admin/api-keys": admin_only(),
    "POST /admin/api-keys": admin_only(REFUSED, form={"name": ""}),
    "GET /admin/api-keys/{key_id}/revoke": admin_only(),
    "POST /admin/api-keys/{key_id}/revoke": admin_only(Expect(303, "/admin/api-keys")),
    "POST /admin/api-keys/sso-origins": admin_only(REFUSED, form={"origins": "not an origin"}),
    # --- the integration API (/api/v1) ------------------------------------------------------
    "GET /api/v1/users": integration(),
    "POST /api/v1/users": integration(json={"email": "api@example.com"}),
    "GET /api/v1/users/{user_id}": integration(),
    "PATCH /api/v1/users/{user_id}": integration(json={"name": "Renamed"}),
    "DELETE /api/v1/users/{user_id}": integration(),
    "POST /api/v1/users/{user_id}/block": integration(),
    "POST /api/v1/users/{user_id}/unblock": integration(),
    "GET /api/v1/groups": integration(),
    "POST /api/v1/groups": integration(json={"name": "API group"}),
    "GET /api/v1/groups/{group_id}": integration(),
    "DELETE /api/v1/groups/{group_id}": integration(),
    "GET /api/v1/groups/{group_id}/members": integration(),
    "POST /api/v1/groups/{group_id}/members": integration(json={"user_id": 1}),
    "DELETE /api/v1/groups/{group_id}/members/{user_id}": integration(),
    "GET /api/v1/reports": integration(),
    "GET /api/v1/reports/{report_id}": integration(),
    "GET /api/v1/reports/{report_id}/grants": integration(),
    "POST /api/v1/reports/{report_id}/grants": integration(json={"user_id": 1}),
    "DELETE /api/v1/reports/{report_id}/grants/{grant_id}": integration(),
    "GET /api/v1/audit": integration(query={"action": "user.created"}),
    "POST /api/v1/sso/links": integration(json={"email": "api@example.com"}),
}


def _excluded(app: FastAPI) -> set[str]:
    """FastAPI's own documentation routes, if any (the portal serves its reference itself:
    web/routes/api_docs.py, rows above)."""
    paths = {app.openapi_url, app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url}
    return {path for path in paths if path}


def declared_routes(app: FastAPI) -> set[str]:
    keys: set[str] = set()
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if isinstance(route, Mount) or context.path in _excluded(app):
            continue
        if isinstance(route, WebSocketRoute) or type(route).__name__ == "APIWebSocketRoute":
            keys.add(f"WEBSOCKET {context.path}")
            continue
        for method in sorted(context.methods or ()):
            if method != "HEAD":
                keys.add(f"{method} {context.path}")
    return keys


def test_every_route_has_a_row(app: FastAPI) -> None:
    declared = declared_routes(app)
    missing = sorted(declared - set(EXPECTED))
    stale = sorted(set(EXPECTED) - declared)
    assert not missing, (
        "Routes without a row in EXPECTED (tests/web/test_authorization_matrix.py): say who "
        "may call them:\n  " + "\n  ".join(missing)
    )
    assert not stale, "Rows for routes that no longer exist:\n  " + "\n  ".join(stale)


@dataclass
class World:
    users: dict[str, User]
    values: dict[str, str]


@pytest.fixture
def world(app: FastAPI, make_user: MakeUser) -> World:
    """One of each kind of caller, a subject for admin actions, a group, a report and a grant."""
    users = {
        "admin": make_user("admin@example.com", role="admin"),
        "viewer": make_user("viewer@example.com"),
        "granted": make_user("granted@example.com"),
        "blocked": make_user("blocked@example.com"),
    }
    subject = make_user("subject@example.com")
    with session_scope(app.state.session_factory) as db:
        group = create_group(session=db, name="Matrix group", actor=None)
        add_member(session=db, group=group, email=subject.email, actor=users["admin"])
        db.add(Capacity(id=CAPACITY_ID, display_name="Matrix capacity", sku="A1"))
        db.add(
            Report(
                id=REPORT_ID,
                workspace_id=WORKSPACE_ID,
                dataset_id=DATASET_ID,
                name="Matrix report",
                embed_url=f"https://app.powerbi.com/reportEmbed?reportId={REPORT_ID}",
                capacity_id=CAPACITY_ID,
            )
        )
        db.flush()
        grant = ReportGrant(report_id=REPORT_ID, user_id=users["granted"].id, rls_roles=[])
        db.add(grant)
        db.flush()
        key = create_api_key(
            session=db, name="Matrix app", scopes=["users:read"], actor=users["admin"]
        ).key
        values = {
            "user_id": str(subject.id),
            "group_id": str(group.id),
            "report_id": REPORT_ID,
            "grant_id": str(grant.id),
            "name": "htmx.min.js",
            "kind": "logo",
            "viewer_id": str(users["viewer"].id),
            "capacity_id": CAPACITY_ID,
            "key_id": key.id,
            # No link was ever made with it: the link pages refuse it (400), for everyone.
            "token": "no-such-link-token-0000000000000000000000000",
            "secret": "no-such-sso-link-00000000000000000000000000",
        }
    return World(users=users, values=values)


def _fill(template: str, values: Mapping[str, str]) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1).split(":")[0]
        assert name in values, f"add a value for {{{name}}} to the world fixture"
        return values[name]

    return re.sub(r"\{([^}]+)\}", value, template)


def _as(persona: str, world: World, app: FastAPI, client: TestClient, login_as: LoginAs) -> None:
    if persona == "anonymous":
        return
    user = world.users[persona]
    login_as(user)
    if persona == "blocked":
        # Blocked behind the session's back: the session row stays, and must count for nothing.
        with session_scope(app.state.session_factory) as db:
            db.execute(update(User).where(User.id == user.id).values(is_blocked=True))


@pytest.mark.parametrize("persona", PERSONAS)
@pytest.mark.parametrize("route", sorted(EXPECTED))
def test_route_answers_as_the_table_says(
    route: str,
    persona: str,
    app: FastAPI,
    client: TestClient,
    world: World,
    login_as: LoginAs,
) -> None:
    method, path = route.split(" ", 1)
    if method == "WEBSOCKET":
        pytest.fail(f"{route}: WebSocket routes need a check in this harness")
    row = EXPECTED[route]
    expected = row.expectation(persona)
    _as(persona, world, app, client, login_as)
    headers = dict(row.headers)
    if method != "GET":
        headers["X-CSRF-Token"] = csrf_of(client)
    form = {key: _fill(value, world.values) for key, value in (row.form or {}).items()}
    with client.stream(
        method,
        _fill(path, world.values),
        params=dict(row.query),
        data=form or None,
        json=row.json,
        headers=headers,
        follow_redirects=False,
    ) as response:
        status = response.status_code
        location = response.headers.get("location", "")
        content_type = response.headers.get("content-type", "")
        # A push stream never ends: its headers are the answer.
        body = b"" if content_type.startswith("text/event-stream") else response.read()
    answer = f"{route} as {persona}: got {status} {location} {body[:200]!r}"
    assert status == expected.status, f"expected {expected.describe()}; {answer}"
    if expected.location is not None:
        assert location.startswith(expected.location), f"expected {expected.describe()}; {answer}"
    if expected.json_code is not None:
        assert content_type.startswith("application/json"), answer
        assert response.json()["code"] == expected.json_code, answer
