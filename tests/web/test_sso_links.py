"""Single sign-on links: /api/v1/sso/links issues them (scope `sso:issue`), /sso/{secret} signs
the user in once with a short session that the allowed applications may frame, and refuses
every other use with a page saying why."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from embedportal.db.base import utcnow
from embedportal.db.models import AuditEntry, Report, ReportGrant, SsoLink, User, WebSession
from embedportal.db.session import session_scope
from tests.support.api_keys import bearer, make_api_key
from tests.support.portal import LoginAs, MakeUser, a_report, csrf_of

HOST_APP = "https://app.example.com"


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return {"sso_frame_ancestors": HOST_APP, "sso_session_minutes": 60}


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    """Over https, as a framed portal is: the session cookie is `Secure` there."""
    with TestClient(app, base_url="https://127.0.0.1") as test_client:
        yield test_client


@pytest.fixture
def granted(app: FastAPI, make_user: MakeUser) -> tuple[User, Report]:
    user = make_user("ana@example.com")
    report = a_report("sales")
    with session_scope(app.state.session_factory) as db:
        db.add(report)
        db.flush()
        db.add(ReportGrant(report_id=report.id, user_id=user.id, rls_roles=[]))
    return user, report


def _issue(app: FastAPI, client: TestClient, **body: object) -> dict[str, object]:
    secret = make_api_key(app, ["sso:issue"], name="Customer app")
    response = client.post("/api/v1/sso/links", json=body, headers=bearer(secret))
    assert response.status_code == 201, response.text
    answer: dict[str, object] = response.json()
    return answer


def _path(answer: dict[str, object]) -> str:
    url = str(answer["url"])
    match = re.fullmatch(r"https?://127\.0\.0\.1(/sso/[A-Za-z0-9_-]+)", url)
    assert match, url
    return match.group(1)


def test_a_link_signs_the_user_in_once_and_shows_the_report(
    app: FastAPI, client: TestClient, granted: tuple[User, Report]
) -> None:
    user, report = granted
    answer = _issue(app, client, email="ANA@example.com", report_id=report.id)
    assert answer["user_id"] == user.id and answer["report_id"] == report.id

    opened = client.get(_path(answer), follow_redirects=False)
    assert opened.status_code == 303
    assert opened.headers["location"] == "/reports/sales"
    viewer = client.get("/reports/sales")
    assert viewer.status_code == 200
    assert HOST_APP in viewer.headers["content-security-policy"]
    assert "x-frame-options" not in viewer.headers

    again = TestClient(app, base_url="https://127.0.0.1").get(_path(answer))
    assert again.status_code == 410
    assert "already used" in again.text

    with session_scope(app.state.session_factory) as db:
        session = db.scalars(select(WebSession).where(WebSession.user_id == user.id)).one()
        assert session.via_sso
        assert session.expires_at - session.created_at == timedelta(minutes=60)
        actions = list(db.scalars(select(AuditEntry.action).order_by(AuditEntry.id)))
    assert "sso.link_issued" in actions and "sso.signed_in" in actions


def test_the_cookie_may_travel_in_another_sites_frame_on_loopback(
    app: FastAPI, client: TestClient, granted: tuple[User, Report]
) -> None:
    answer = _issue(app, client, email="ana@example.com")
    with TestClient(app, base_url="http://127.0.0.1") as plain_http:
        opened = plain_http.get(_path(answer), follow_redirects=False)
    assert opened.headers["location"] == "/reports"
    cookie = opened.headers["set-cookie"].lower()
    assert cookie.startswith("__host-embedportal_session=")
    assert "samesite=none" in cookie and "secure" in cookie and "partitioned" in cookie


def test_signing_out_in_the_frame_removes_the_partitioned_cookie_too(
    app: FastAPI, client: TestClient, granted: tuple[User, Report]
) -> None:
    _user, report = granted
    answer = _issue(app, client, email="ana@example.com", report_id=report.id)
    client.get(_path(answer))
    token = csrf_of(client, f"/reports/{report.id}")
    signed_out = client.post("/logout", data={"csrf_token": token}, follow_redirects=False)
    assert signed_out.status_code == 303
    removals = [
        value.lower()
        for value in signed_out.headers.get_list("set-cookie")
        if value.lower().startswith("__host-embedportal_session=")
    ]
    assert any("partitioned" in value and "samesite=none" in value for value in removals)
    assert all("max-age=0" in value for value in removals)
    assert client.get(f"/reports/{report.id}", follow_redirects=False).status_code == 303


def test_view_options_lead_to_the_viewer_without_navigation_or_in_tv_mode(
    app: FastAPI, client: TestClient, granted: tuple[User, Report]
) -> None:
    _user, report = granted
    plain = _issue(app, client, email="ana@example.com", report_id=report.id, hide_navigation=True)
    opened = client.get(_path(plain), follow_redirects=False)
    assert opened.headers["location"] == "/reports/sales?nav=0"
    page = client.get("/reports/sales?nav=0").text
    assert "portal-nav" not in page and "viewer-back" not in page
    tv = _issue(app, client, email="ana@example.com", report_id=report.id, tv=True)
    opened = client.get(_path(tv), follow_redirects=False)
    assert opened.headers["location"] == "/reports/sales?tv=1"


def test_an_sso_session_never_reaches_the_admin_pages(
    app: FastAPI, client: TestClient, make_user: MakeUser
) -> None:
    make_user("boss@example.com", role="admin")
    answer = _issue(app, client, email="boss@example.com")
    client.get(_path(answer))
    assert client.get("/admin/users").status_code == 403
    assert client.get("/reports").status_code == 200


def test_other_pages_keep_the_portal_wide_framing_rule(
    client: TestClient, granted: tuple[User, Report]
) -> None:
    page = client.get("/login")
    assert HOST_APP not in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "SAMEORIGIN"


def test_an_expired_link_is_refused(
    app: FastAPI, client: TestClient, granted: tuple[User, Report]
) -> None:
    answer = _issue(app, client, email="ana@example.com", lifetime_seconds=30)
    with session_scope(app.state.session_factory) as db:
        for link in db.scalars(select(SsoLink)):
            link.expires_at = utcnow() - timedelta(seconds=1)
    refused = client.get(_path(answer))
    assert refused.status_code == 410
    assert "no longer valid" in refused.text
    assert HOST_APP in refused.headers["content-security-policy"]


def test_unknown_links_are_refused_alike(client: TestClient) -> None:
    refused = client.get("/sso/not-a-link-at-all")
    assert refused.status_code == 410
    assert client.get("/sso/" + "x" * 500).status_code in (400, 404, 422)


def test_a_user_blocked_or_a_grant_removed_after_issue_is_refused_at_use(
    app: FastAPI, client: TestClient, granted: tuple[User, Report]
) -> None:
    user, report = granted
    for_report = _issue(app, client, email="ana@example.com", report_id=report.id)
    plain = _issue(app, client, email="ana@example.com")
    with session_scope(app.state.session_factory) as db:
        for grant in db.scalars(select(ReportGrant)):
            db.delete(grant)
    refused = client.get(_path(for_report))
    assert refused.status_code == 403
    assert "may not open this report" in refused.text
    with session_scope(app.state.session_factory) as db:
        stored = db.get(User, user.id)
        assert stored is not None
        stored.is_blocked = True
    assert client.get(_path(plain)).status_code == 403
    with session_scope(app.state.session_factory) as db:
        assert db.scalars(select(WebSession)).first() is None


def test_two_browsers_racing_with_one_link_get_one_session(
    app: FastAPI, client: TestClient, granted: tuple[User, Report]
) -> None:
    path = _path(_issue(app, client, email="ana@example.com"))

    def open_it(_: int) -> int:
        with TestClient(app, base_url="https://127.0.0.1") as browser:
            return browser.get(path, follow_redirects=False).status_code

    with ThreadPoolExecutor(max_workers=4) as pool:
        statuses = sorted(pool.map(open_it, range(4)))
    assert statuses == [303, 410, 410, 410]


def test_issuing_refuses_what_could_not_be_shown(
    app: FastAPI, client: TestClient, make_user: MakeUser, granted: tuple[User, Report]
) -> None:
    make_user("blocked@example.com", is_blocked=True)
    make_user("other@example.com")
    secret = make_api_key(app, ["sso:issue"])

    def issue(**body: object) -> tuple[int, str]:
        response = client.post("/api/v1/sso/links", json=body, headers=bearer(secret))
        return response.status_code, response.json().get("code", "")

    assert issue(email="nobody@example.com") == (404, "NotFound")
    assert issue(email="ana@example.com", report_id="nope") == (404, "NotFound")
    assert issue(email="blocked@example.com") == (400, "UserBlocked")
    assert issue(email="other@example.com", report_id="sales") == (403, "ReportNotAllowed")
    assert issue(email="not an e-mail")[0] == 400
    assert issue(email="ana@example.com", lifetime_seconds=3600)[0] == 422
    assert issue(email="ana@example.com", surprise=True)[0] == 422


def test_issuing_needs_the_sso_scope(app: FastAPI, client: TestClient) -> None:
    secret = make_api_key(app, ["users:read"])
    response = client.post(
        "/api/v1/sso/links", json={"email": "ana@example.com"}, headers=bearer(secret)
    )
    assert response.status_code == 403
    assert response.json()["code"] == "InsufficientScope"
    assert client.post("/api/v1/sso/links", json={"email": "a@example.com"}).status_code == 401


def test_the_secret_is_kept_only_as_a_hash(
    app: FastAPI, client: TestClient, granted: tuple[User, Report]
) -> None:
    path = _path(_issue(app, client, email="ana@example.com"))
    secret = path.removeprefix("/sso/")
    with session_scope(app.state.session_factory) as db:
        link = db.scalars(select(SsoLink)).one()
        assert secret not in link.id
        details = [str(entry.detail) for entry in db.scalars(select(AuditEntry))]
    assert not any(secret in detail for detail in details)


NORTH_ONLY = {"table": "Sales", "column": "Region", "operator": "In", "values": ["North", 2]}


def test_a_link_with_filters_opens_the_report_filtered(
    app: FastAPI, client: TestClient, granted: tuple[User, Report]
) -> None:
    _user, report = granted
    answer = _issue(app, client, email="ana@example.com", report_id=report.id, filters=[NORTH_ONLY])
    opened = client.get(_path(answer), follow_redirects=False)
    location = opened.headers["location"]
    assert location.startswith("/reports/sales?filters=")
    viewer = client.get(location)
    assert viewer.status_code == 200
    slot = re.search(r'data-filters="([^"]*)"', viewer.text)
    assert slot is not None
    embedded = json.loads(html.unescape(slot.group(1)))
    assert embedded == [
        {
            "$schema": "http://powerbi.com/product/schema#basic",
            "target": {"table": "Sales", "column": "Region"},
            "filterType": 1,
            "operator": "In",
            "values": ["North", 2],
            "requireSingleSelection": False,
        }
    ]


@pytest.mark.parametrize(
    ("filters", "status", "code"),
    [
        ([{"table": "Sales", "column": "Region", "values": []}], 422, None),
        ([{"table": "", "column": "Region", "values": ["North"]}], 422, None),
        ([{"table": "Sales", "column": "Region", "operator": "Like", "values": ["N"]}], 422, None),
        ([{"table": "Sales", "column": "Region", "values": ["North"], "extra": 1}], 422, None),
        ([NORTH_ONLY] * 11, 422, None),
        (
            [{"table": "Sales", "column": "Region", "values": ["x" * 200] * 20}],
            400,
            "FiltersTooLong",
        ),
    ],
)
def test_filters_that_are_not_basic_filters_are_refused(
    app: FastAPI,
    client: TestClient,
    granted: tuple[User, Report],
    filters: list[object],
    status: int,
    code: str | None,
) -> None:
    _user, report = granted
    secret = make_api_key(app, ["sso:issue"], name="Customer app")
    body = {"email": "ana@example.com", "report_id": report.id, "filters": filters}
    response = client.post("/api/v1/sso/links", json=body, headers=bearer(secret))
    assert response.status_code == status, response.text
    if code is not None:
        assert response.json()["code"] == code


def test_filters_need_a_report(
    app: FastAPI, client: TestClient, granted: tuple[User, Report]
) -> None:
    secret = make_api_key(app, ["sso:issue"], name="Customer app")
    body = {"email": "ana@example.com", "filters": [NORTH_ONLY]}
    response = client.post("/api/v1/sso/links", json=body, headers=bearer(secret))
    assert response.status_code == 400
    assert response.json()["code"] == "FiltersWithoutReport"


@pytest.mark.parametrize(
    "param",
    [
        "{",
        "[1]",
        '[{"table":"Sales"}]',
        '{"table":"Sales"}',
        '[{"table":"S","column":"C","values":[NaN]}]',
    ],
)
def test_the_viewer_refuses_filters_it_cannot_read_with_a_reason(
    app: FastAPI, client: TestClient, granted: tuple[User, Report], login_as: LoginAs, param: str
) -> None:
    user, report = granted
    login_as(user)
    response = client.get(f"/reports/{report.id}", params={"filters": param})
    assert response.status_code == 400
    assert "filters" in response.text.lower()


def test_an_administrator_allows_another_application_to_frame_sso_sessions(
    app: FastAPI,
    client: TestClient,
    granted: tuple[User, Report],
    make_user: MakeUser,
    login_as: LoginAs,
) -> None:
    _user, report = granted
    other = "https://portal-host.example.org"
    login_as(make_user("admin@example.com", role="admin"))
    page = client.get("/admin/api-keys")
    assert HOST_APP in page.text  # the operator's, shown beside the form
    token = csrf_of(client, "/admin/api-keys")
    refused = client.post(
        "/admin/api-keys/sso-origins",
        data={"csrf_token": token, "origins": f"{other}\nhttps://x.example.com/path"},
    )
    assert refused.status_code == 400
    assert "https://x.example.com/path" in html.unescape(refused.text)
    saved = client.post(
        "/admin/api-keys/sso-origins",
        data={"csrf_token": token, "origins": other},
        follow_redirects=False,
    )
    assert saved.status_code == 303
    client.cookies.clear()

    answer = _issue(app, client, email="ana@example.com", report_id=report.id)
    opened = client.get(_path(answer), follow_redirects=False)
    policy = opened.headers["content-security-policy"]
    assert other in policy and HOST_APP in policy
    viewer = client.get(opened.headers["location"])
    assert other in viewer.headers["content-security-policy"]
    # A session not opened by a link is framed as before: not by the applications.
    login_as(make_user("bo@example.com"))
    assert other not in client.get("/reports").headers["content-security-policy"]
