"""The user's own page: language and password."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient

from embedportal.db.models import User
from embedportal.db.session import session_scope
from embedportal.web.context import LANGUAGE_COOKIE
from tests.support.html import accessibility_problems, form_fields
from tests.support.portal import DEFAULT_PASSWORD, LoginAs, MakeUser, csrf_of


def _language_of(app: FastAPI, user_id: int) -> str | None:
    with session_scope(app.state.session_factory) as db:
        user = db.get(User, user_id)
        assert user is not None
        return user.language


def test_the_page_needs_a_session(client: TestClient) -> None:
    response = client.get("/account", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=%2Faccount"


def test_choosing_a_language(
    client: TestClient, make_user: MakeUser, login_as: LoginAs, app: FastAPI
) -> None:
    user = make_user("ana@example.com", name="Ana")
    login_as(user)
    page = client.get("/account")
    assert "ana@example.com" in page.text
    assert form_fields(page.text, action="/account/language")["language"].value == "browser"
    response = client.post(
        "/account/language",
        data={"language": "pt_BR", "csrf_token": csrf_of(client)},
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert client.cookies[LANGUAGE_COOKIE] == "pt_BR"
    page = client.get(response.headers["location"], headers={"Accept-Language": "en"})
    assert "Sua conta" in page.text and "Seu idioma foi salvo." in page.text
    assert _language_of(app, user.id) == "pt_BR"
    client.post("/account/language", data={"language": "browser", "csrf_token": csrf_of(client)})
    assert _language_of(app, user.id) is None
    assert LANGUAGE_COOKIE not in client.cookies
    assert "Your account" in client.get("/account", headers={"Accept-Language": "en"}).text


def test_an_unknown_language_is_refused(
    client: TestClient, make_user: MakeUser, login_as: LoginAs
) -> None:
    login_as(make_user("ana@example.com"))
    response = client.post(
        "/account/language", data={"language": "tlh", "csrf_token": csrf_of(client)}
    )
    assert response.status_code == 400
    assert "Choose one of the languages offered." in response.text


def test_changing_the_password(
    client: TestClient, make_user: MakeUser, login_as: LoginAs, app: FastAPI
) -> None:
    user = make_user("ana@example.com")
    with TestClient(app, base_url="http://127.0.0.1") as elsewhere:
        token = csrf_of(elsewhere, "/login")
        elsewhere.post(
            "/login",
            data={"email": user.email, "password": DEFAULT_PASSWORD, "csrf_token": token},
        )
        assert elsewhere.get("/account", follow_redirects=False).status_code == 200
        login_as(user)
        wrong = client.post(
            "/account/password",
            data={
                "current_password": "not-my-password",
                "new_password": "short",
                "repeat_password": "short",
                "csrf_token": csrf_of(client),
            },
        )
        assert wrong.status_code == 400
        assert "That is not your current password." in wrong.text
        assert "at least 12 characters" in wrong.text
        fields = form_fields(wrong.text, action="/account/password")
        assert fields["current_password"].invalid and fields["new_password"].invalid
        assert accessibility_problems(wrong.text) == []
        done = client.post(
            "/account/password",
            data={
                "current_password": DEFAULT_PASSWORD,
                "new_password": "a-brand-new-password",
                "repeat_password": "a-brand-new-password",
                "csrf_token": csrf_of(client),
            },
        )
        assert done.status_code == 200 and "Your password is changed." in done.text
        assert elsewhere.get("/account", follow_redirects=False).status_code == 303
    assert client.get("/account", follow_redirects=False).status_code == 200
    login_as(user, "a-brand-new-password")
