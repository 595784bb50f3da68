"""Signing in and out through the real form: cookies, CSRF, lock-out, next, idle timeout."""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import delete, select, update

from embedportal.access.sessions import SECURE_SESSION_COOKIE, SESSION_COOKIE
from embedportal.db.base import utcnow
from embedportal.db.models import AuditEntry, User, WebSession
from embedportal.db.session import session_scope
from embedportal.web.push import PushEvent
from embedportal.web.routes.auth import safe_next
from tests.support.html import accessibility_problems, buttons, elements, form_fields
from tests.support.portal import DEFAULT_PASSWORD, LoginAs, MakeUser, csrf_of


def _post_login(
    client: TestClient, email: str, password: str, **extra: str
) -> tuple[int, str, str]:
    token = csrf_of(client, "/login")
    response = client.post(
        "/login",
        data={"email": email, "password": password, "csrf_token": token, **extra},
        follow_redirects=False,
    )
    return response.status_code, response.headers.get("location", ""), response.text


def _actions(app: FastAPI) -> list[str]:
    with session_scope(app.state.session_factory) as db:
        return list(db.scalars(select(AuditEntry.action).order_by(AuditEntry.id)))


def test_the_form_has_labelled_fields_and_a_sign_in_button(client: TestClient) -> None:
    page = client.get("/login")
    assert page.status_code == 200
    fields = form_fields(page.text, action="/login")
    assert (fields["email"].label, fields["password"].label) == ("Email", "Password")
    assert "Sign in" in buttons(page.text)


def _session_set_cookie(client: TestClient) -> str:
    response = client.post(
        "/login",
        data={
            "email": "ana@example.com",
            "password": DEFAULT_PASSWORD,
            "csrf_token": csrf_of(client, "/login"),
        },
        follow_redirects=False,
    )
    assert (response.status_code, response.headers["location"]) == (303, "/")
    headers = [value for name, value in response.headers.multi_items() if name == "set-cookie"]
    names = (SESSION_COOKIE + "=", SECURE_SESSION_COOKIE + "=")
    return str(next(value for value in headers if value.startswith(names)))


def test_signing_in_sets_a_safe_session_cookie(client: TestClient, make_user: MakeUser) -> None:
    make_user("Ana@Example.com")
    cookie = _session_set_cookie(client)
    assert "HttpOnly" in cookie and "Path=/" in cookie and "samesite=lax" in cookie.lower()
    assert "Secure" not in cookie
    assert client.get("/account").status_code == 200


def test_the_session_cookie_is_secure_over_https(app: FastAPI, make_user: MakeUser) -> None:
    make_user("ana@example.com")
    with TestClient(app, base_url="https://portal.example") as client:
        cookie = _session_set_cookie(client)
    assert "Secure" in cookie and "HttpOnly" in cookie


def test_unknown_email_and_wrong_password_read_the_same(
    client: TestClient, make_user: MakeUser, app: FastAPI
) -> None:
    make_user("ana@example.com")
    status1, _, unknown = _post_login(client, "nobody@example.com", DEFAULT_PASSWORD)
    status2, _, wrong = _post_login(client, "ana@example.com", "wrong-password")
    assert status1 == status2 == 400
    message = "The e-mail address or the password is not right."
    assert message in unknown and message in wrong
    # The e-mail is kept; the password never comes back.
    assert form_fields(wrong, action="/login")["email"].value == "ana@example.com"
    assert "wrong-password" not in wrong
    assert _actions(app).count("login.failed") == 2


def test_empty_fields_are_named(client: TestClient) -> None:
    status, _, page = _post_login(client, "", "")
    assert status == 400
    assert "Enter your e-mail address." in page and "Enter your password." in page
    fields = form_fields(page, action="/login")
    assert fields["email"].invalid and fields["password"].invalid
    assert accessibility_problems(page) == []


@pytest.mark.parametrize("settings_overrides", [{"login_max_attempts": 2}])
def test_lock_out_says_until_when(client: TestClient, make_user: MakeUser, app: FastAPI) -> None:
    make_user("ana@example.com")
    _post_login(client, "ana@example.com", "wrong-password")
    status, _, page = _post_login(client, "ana@example.com", "wrong-password")
    # The first wait is a minute (docs/users-and-groups.md), said as a time and as Retry-After.
    assert status == 429
    match = re.search(r"Try again after (\d\d:\d\d) UTC\.", page)
    assert match, page
    expected = (utcnow() + timedelta(minutes=1)).strftime("%H:%M")
    assert match.group(1) in {expected, utcnow().strftime("%H:%M")}
    status, _, page = _post_login(client, "ana@example.com", DEFAULT_PASSWORD)
    assert status == 429 and "Try again after" in page
    assert "login.locked" in _actions(app)


def test_a_blocked_user_is_told_so(client: TestClient, make_user: MakeUser) -> None:
    make_user("ana@example.com", is_blocked=True)
    status, _, page = _post_login(client, "ana@example.com", DEFAULT_PASSWORD)
    assert status == 400 and "This account is blocked." in page


def test_the_form_needs_its_csrf_token(client: TestClient, make_user: MakeUser) -> None:
    make_user("ana@example.com")
    client.get("/login")
    response = client.post(
        "/login",
        data={"email": "ana@example.com", "password": DEFAULT_PASSWORD, "csrf_token": "forged"},
        follow_redirects=False,
    )
    assert response.status_code == 403
    assert SESSION_COOKIE not in client.cookies


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/admin/users?q=a", "/admin/users?q=a"),
        ("/reports/abc", "/reports/abc"),
        ("", "/"),
        ("//evil.example/x", "/"),
        ("https://evil.example/", "/"),
        ("/\\evil.example", "/"),
        ("javascript:alert(1)", "/"),
        ("/ok\r\nSet-Cookie: x=y", "/"),
        ("evil.example", "/"),
        ("/login?next=/x", "/"),
    ],
)
def test_next_only_leads_to_this_site(
    client: TestClient, make_user: MakeUser, target: str, expected: str
) -> None:
    assert safe_next(target) == expected
    make_user("ana@example.com")
    status, location, _ = _post_login(client, "ana@example.com", DEFAULT_PASSWORD, next=target)
    assert (status, location) == (303, expected)


def test_a_page_behind_sign_in_comes_back_after_it(client: TestClient, make_user: MakeUser) -> None:
    make_user("ana@example.com")
    first = client.get("/account?tab=x", follow_redirects=False)
    assert first.status_code == 303 and first.headers["location"].startswith("/login?next=")
    form = client.get(first.headers["location"])
    assert form_fields(form.text, action="/login")["next"].value == "/account?tab=x"
    status, location, _ = _post_login(
        client, "ana@example.com", DEFAULT_PASSWORD, next="/account?tab=x"
    )
    assert (status, location) == (303, "/account?tab=x")


def test_each_sign_in_gets_a_new_session(
    client: TestClient, make_user: MakeUser, login_as: LoginAs
) -> None:
    user = make_user("ana@example.com")
    login_as(user)
    first = client.cookies[SESSION_COOKIE]
    login_as(user)
    assert client.cookies[SESSION_COOKIE] != first


def test_sign_out_ends_the_session(
    client: TestClient, make_user: MakeUser, login_as: LoginAs, app: FastAPI
) -> None:
    login_as(make_user("ana@example.com"))
    cookie = client.cookies[SESSION_COOKIE]
    response = client.post("/logout", data={"csrf_token": csrf_of(client)}, follow_redirects=False)
    assert (response.status_code, response.headers["location"]) == (303, "/login")
    page = client.get("/login")
    assert "You have signed out." in page.text
    client.cookies.set(SESSION_COOKIE, cookie)
    assert client.get("/account", follow_redirects=False).status_code == 303
    assert "logout" in _actions(app)


def test_sign_out_tells_the_person_s_open_viewers_and_no_one_else(
    client: TestClient,
    make_user: MakeUser,
    login_as: LoginAs,
    app: FastAPI,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every tab and device of this person asks /api/session at once; nobody else is told."""
    user = make_user("ana@example.com")
    login_as(user)
    published: list[PushEvent] = []
    monkeypatch.setattr(app.state.push_hub, "publish", published.append)
    client.post("/logout", data={"csrf_token": csrf_of(client)}, follow_redirects=False)
    assert published == [PushEvent(kind="session", user_id=user.id)]
    client.post("/logout", follow_redirects=False)  # already signed out: nobody to tell
    assert len(published) == 1


def test_sign_out_stands_when_the_push_fails(
    client: TestClient,
    make_user: MakeUser,
    login_as: LoginAs,
    app: FastAPI,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def lost_redis(_event: PushEvent) -> None:
        raise ConnectionError("Redis is gone")

    login_as(make_user("ana@example.com"))
    monkeypatch.setattr(app.state.push_hub, "publish", lost_redis)
    response = client.post("/logout", data={"csrf_token": csrf_of(client)}, follow_redirects=False)
    assert (response.status_code, response.headers["location"]) == (303, "/login")
    assert client.get("/account", follow_redirects=False).status_code == 303


def test_sign_out_needs_the_csrf_token(
    client: TestClient, make_user: MakeUser, login_as: LoginAs
) -> None:
    login_as(make_user("ana@example.com"))
    assert client.post("/logout", follow_redirects=False).status_code == 403
    assert client.get("/account", follow_redirects=False).status_code == 200


def test_sign_out_after_the_session_expired_just_signs_out(
    client: TestClient, make_user: MakeUser, login_as: LoginAs, app: FastAPI
) -> None:
    """A page left open past the idle timeout still carries the old session's token."""
    login_as(make_user("ana@example.com"))
    stale_token = csrf_of(client)
    with session_scope(app.state.session_factory) as db:
        db.execute(delete(WebSession))
    response = client.post("/logout", data={"csrf_token": stale_token}, follow_redirects=False)
    assert (response.status_code, response.headers["location"]) == (303, "/login")


def test_start_page_sends_people_where_they_belong(
    client: TestClient, make_user: MakeUser, login_as: LoginAs
) -> None:
    response = client.get("/", follow_redirects=False)
    assert (response.status_code, response.headers["location"]) == (303, "/login")
    login_as(make_user("ana@example.com"))
    response = client.get("/", follow_redirects=False)
    assert (response.status_code, response.headers["location"]) == (303, "/reports")
    response = client.get("/login?next=/account", follow_redirects=False)
    assert (response.status_code, response.headers["location"]) == (303, "/account")


def test_an_idle_session_ends(
    client: TestClient, make_user: MakeUser, login_as: LoginAs, app: FastAPI
) -> None:
    login_as(make_user("ana@example.com"))
    idle = app.state.settings.session_idle_minutes

    def last_seen(minutes_ago: int) -> None:
        with session_scope(app.state.session_factory) as db:
            db.execute(
                update(WebSession).values(last_seen_at=utcnow() - timedelta(minutes=minutes_ago))
            )

    last_seen(idle - 1)
    assert client.get("/account", follow_redirects=False).status_code == 200
    last_seen(idle + 1)
    response = client.get("/account", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"].startswith("/login")
    with session_scope(app.state.session_factory) as db:
        assert db.scalar(select(WebSession)) is None


def test_a_user_blocked_meanwhile_is_signed_out(
    client: TestClient, make_user: MakeUser, login_as: LoginAs, app: FastAPI
) -> None:
    user = make_user("ana@example.com")
    login_as(user)
    with session_scope(app.state.session_factory) as db:
        db.execute(update(User).where(User.id == user.id).values(is_blocked=True))
    assert client.get("/account", follow_redirects=False).status_code == 303
    assert client.get("/api/no-such-thing").status_code in (401, 404)


def test_the_language_picker_before_sign_in(client: TestClient) -> None:
    token = csrf_of(client, "/login")
    response = client.post(
        "/language",
        data={"language": "pt_BR", "next": "/admin/users", "csrf_token": token},
        follow_redirects=False,
    )
    assert response.headers["location"] == "/login?next=/admin/users"
    page = client.get(response.headers["location"])
    assert elements(page.text, "html")[0].attrs["lang"] == "pt-BR"
    assert "Entrar" in buttons(page.text)
    client.post("/language", data={"language": "", "csrf_token": csrf_of(client, "/login")})
    assert "Sign in" in buttons(client.get("/login").text)


@given(st.text(max_size=60))
def test_safe_next_never_leaves_the_site(target: str) -> None:
    result = safe_next(target)
    assert result.startswith("/") and not result.startswith("//") and "\\" not in result
    assert urlsplit(result).netloc == ""
