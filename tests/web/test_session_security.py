"""Sessions (issue #11, ASVS V3): an absolute lifetime besides the idle timeout, a new token at
every sign-in, and a `Secure` cookie whenever the portal is reached over https."""

from __future__ import annotations

from datetime import timedelta

import pytest
from alembic import command
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select, text, update

from embedportal.access.sessions import SECURE_SESSION_COOKIE, SESSION_COOKIE, _hash, start_session
from embedportal.db.base import utcnow
from embedportal.db.migrate import alembic_config, upgrade_database
from embedportal.db.models import WebSession
from embedportal.db.session import create_db_engine, create_session_factory, session_scope
from tests.support.portal import DEFAULT_PASSWORD, LoginAs, MakeUser, csrf_of


def _sign_in(client: TestClient, email: str) -> str:
    """The Set-Cookie of the session cookie after a sign-in."""
    response = client.post(
        "/login",
        data={
            "email": email,
            "password": DEFAULT_PASSWORD,
            "csrf_token": csrf_of(client, "/login"),
        },
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text[:300]
    headers = [value for name, value in response.headers.multi_items() if name == "set-cookie"]
    names = (SESSION_COOKIE + "=", SECURE_SESSION_COOKIE + "=")
    return next(value for value in headers if value.startswith(names))


@pytest.mark.parametrize("settings_overrides", [{"session_lifetime_days": 7}])
def test_a_session_ends_at_its_lifetime_however_much_it_is_used(
    client: TestClient, make_user: MakeUser, login_as: LoginAs, app: FastAPI
) -> None:
    login_as(make_user("ana@example.com"))
    with session_scope(app.state.session_factory) as db:
        record = db.scalar(select(WebSession))
        assert record is not None
        lifetime = record.expires_at - record.created_at
    assert lifetime == timedelta(days=7)
    assert client.get("/account", follow_redirects=False).status_code == 200
    # Used a minute ago (never idle), but past its end: the 400-day-old session of the issue.
    with session_scope(app.state.session_factory) as db:
        db.execute(
            update(WebSession).values(
                created_at=utcnow() - timedelta(days=400),
                last_seen_at=utcnow() - timedelta(minutes=1),
                expires_at=utcnow() - timedelta(seconds=1),
            )
        )
    response = client.get("/account", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"].startswith("/login")
    with session_scope(app.state.session_factory) as db:
        assert db.scalar(select(WebSession)) is None


def test_a_session_token_planted_before_sign_in_is_never_kept(
    client: TestClient, make_user: MakeUser, app: FastAPI
) -> None:
    make_user("ana@example.com")
    planted = "attacker-chosen-session-token-value-0123456789"
    client.cookies.set(SESSION_COOKIE, planted)
    cookie = _sign_in(client, "ana@example.com")
    issued = cookie.split(";", 1)[0].split("=", 1)[1]
    assert issued != planted
    with session_scope(app.state.session_factory) as db:
        assert db.get(WebSession, _hash(planted)) is None
        assert db.get(WebSession, _hash(issued)) is not None


def test_the_cookie_is_not_secure_on_plain_http_by_default(
    client: TestClient, make_user: MakeUser
) -> None:
    make_user("ana@example.com")
    assert "Secure" not in _sign_in(client, "ana@example.com")


@pytest.mark.parametrize(
    "settings_overrides",
    [{"public_url": "https://reports.example.com"}, {"public_url": "HTTPS://Reports.example.com"}],
)
def test_an_https_public_url_makes_the_cookie_secure_behind_a_plain_http_proxy(
    client: TestClient, make_user: MakeUser
) -> None:
    make_user("ana@example.com")
    cookie = _sign_in(client, "ana@example.com")
    assert "Secure" in cookie and "HttpOnly" in cookie


@pytest.mark.parametrize("settings_overrides", [{"secure_cookies": True}])
def test_secure_cookies_can_be_forced(client: TestClient, make_user: MakeUser) -> None:
    make_user("ana@example.com")
    assert "Secure" in _sign_in(client, "ana@example.com")


def test_over_https_the_cookie_carries_the_host_prefix(app: FastAPI, make_user: MakeUser) -> None:
    """`__Host-`: Secure, Path=/ and no Domain, so no subdomain or http page can plant it."""
    make_user("ana@example.com")
    with TestClient(app, base_url="https://portal.example") as browser:
        cookie = _sign_in(browser, "ana@example.com")
        assert cookie.startswith(SECURE_SESSION_COOKIE + "=")
        assert "Secure" in cookie and "Path=/" in cookie and "domain" not in cookie.lower()
        assert browser.get("/account", follow_redirects=False).status_code == 200
        out = browser.post("/logout", data={"csrf_token": csrf_of(browser)}, follow_redirects=False)
        removals = [v for k, v in out.headers.multi_items() if k == "set-cookie"]
        assert any(v.startswith(SECURE_SESSION_COOKIE + '=""') and "Secure" in v for v in removals)
        assert browser.get("/account", follow_redirects=False).status_code == 303


def test_a_plain_cookie_from_before_still_works_over_https(
    app: FastAPI, make_user: MakeUser
) -> None:
    user = make_user("ana@example.com")
    with session_scope(app.state.session_factory) as db:
        started = start_session(session=db, user=db.merge(user))
    with TestClient(app, base_url="https://portal.example") as browser:
        browser.cookies.set(SESSION_COOKIE, started.cookie_value)
        assert browser.get("/account", follow_redirects=False).status_code == 200


def test_sessions_from_before_the_upgrade_get_the_default_lifetime(database_url: str) -> None:
    """Migration 0005 gives existing sessions an end: 30 days after their sign-in, so one
    started 400 days ago ends at once."""
    engine = create_db_engine(database_url)
    try:
        # The test database is at the newest revision: back to the one before, and up again.
        command.downgrade(alembic_config(database_url), "0004")
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO users (email, name, password_hash, role, is_blocked, rls_roles,"
                    " may_start_capacity, keeps_capacity_on, failed_login_count, created_at,"
                    " updated_at) VALUES ('old@example.com', '', 'x', 'viewer', false, '[]',"
                    " false, false, 0, :now, :now)"
                ),
                {"now": utcnow()},
            )
            connection.execute(
                text(
                    "INSERT INTO web_sessions (id, user_id, csrf_token, created_at, last_seen_at,"
                    " user_agent) SELECT 'old-session', id, 'csrf', :created, :now, '' FROM users"
                ),
                {"created": utcnow() - timedelta(days=400), "now": utcnow()},
            )
        upgrade_database(database_url)
        with session_scope(create_session_factory(engine)) as db:
            record = db.get(WebSession, "old-session")
            assert record is not None
            assert record.expires_at - record.created_at == timedelta(days=30)
            assert record.expires_at < utcnow()
    finally:
        engine.dispose()
