"""Admin → Users (issue #11): locked accounts are shown with Unlock (audited, CSRF, 303, htmx),
and a typed password never comes back in a refused form."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from embedportal.db.models import AuditEntry, User
from embedportal.db.session import session_scope
from tests.support.html import accessibility_problems, buttons, elements, form_fields, links
from tests.support.portal import DEFAULT_PASSWORD, LoginAs, MakeUser, csrf_of

GUESSER = "203.0.113.9"


@pytest.fixture
def admin(make_user: MakeUser, login_as: LoginAs) -> User:
    user = make_user("admin@example.com", role="admin")
    login_as(user)
    return user


@pytest.fixture
def guesser(app: FastAPI) -> Iterator[TestClient]:
    """Someone at another address typing wrong passwords."""
    with TestClient(app, base_url="http://127.0.0.1", client=(GUESSER, 4000)) as other:
        yield other


def _sign_in(client: TestClient, email: str, password: str) -> int:
    response = client.post(
        "/login",
        data={"email": email, "password": password, "csrf_token": csrf_of(client, "/login")},
        follow_redirects=False,
    )
    return response.status_code


def _lock_out(guesser: TestClient, email: str, app: FastAPI) -> None:
    for _attempt in range(app.state.settings.login_max_attempts):
        _sign_in(guesser, email, "guess")
    assert _sign_in(guesser, email, DEFAULT_PASSWORD) == 429


def _actions(app: FastAPI) -> list[tuple[str, str]]:
    with session_scope(app.state.session_factory) as db:
        return [(e.action, e.actor_email) for e in db.scalars(select(AuditEntry))]


def test_a_locked_account_is_shown_and_unlocked_from_its_page(
    client: TestClient, admin: User, make_user: MakeUser, guesser: TestClient, app: FastAPI
) -> None:
    ana = make_user("ana@example.com")
    _lock_out(guesser, ana.email, app)
    listing = client.get("/admin/users")
    assert "Locked until" in listing.text
    assert "Unlock ana@example.com" in listing.text
    assert accessibility_problems(listing.text) == []
    page = client.get(f"/admin/users/{ana.id}")
    assert GUESSER in page.text and "The user can still sign in from anywhere else." in page.text
    assert "Unlock" in buttons(page.text)

    refused = client.post(f"/admin/users/{ana.id}/unlock", data={"csrf_token": "forged"})
    assert refused.status_code == 403
    response = client.post(
        f"/admin/users/{ana.id}/unlock",
        data={"csrf_token": csrf_of(client)},
        follow_redirects=False,
    )
    assert (response.status_code, response.headers["location"]) == (303, f"/admin/users/{ana.id}")
    shown = client.get(response.headers["location"])
    assert "ana@example.com can sign in again from anywhere." in shown.text
    assert "Locked until" not in shown.text
    assert ("user.unlocked", "admin@example.com") in _actions(app)
    # The guesser's address may try again (and would be counted again).
    assert _sign_in(guesser, ana.email, DEFAULT_PASSWORD) == 303


def test_unlock_from_the_list_swaps_the_list_keeping_the_search(
    client: TestClient, admin: User, make_user: MakeUser, guesser: TestClient, app: FastAPI
) -> None:
    ana = make_user("ana@example.com", name="Ana Souza")
    make_user("bruno@example.com")
    _lock_out(guesser, ana.email, app)
    response = client.post(
        f"/admin/users/{ana.id}/unlock",
        data={"csrf_token": csrf_of(client), "q": "souza", "page": "1"},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 200
    assert elements(response.text, "html") == []  # the partial alone
    assert "ana@example.com can sign in again from anywhere." in response.text
    assert "bruno@example.com" not in response.text  # still the search for "souza"
    assert "Locked until" not in response.text


@pytest.mark.parametrize("page", ["²", "9" * 5000, "-3", ""])
def test_unlock_from_the_list_takes_any_page_text(
    client: TestClient, admin: User, make_user: MakeUser, page: str
) -> None:
    ana = make_user("ana@example.com")
    response = client.post(
        f"/admin/users/{ana.id}/unlock",
        data={"csrf_token": csrf_of(client), "page": page},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 200
    assert "ana@example.com was not locked." in response.text


def test_unlocking_an_account_that_is_not_locked_says_so_and_audits_nothing(
    client: TestClient, admin: User, make_user: MakeUser, app: FastAPI
) -> None:
    ana = make_user("ana@example.com")
    response = client.post(f"/admin/users/{ana.id}/unlock", data={"csrf_token": csrf_of(client)})
    assert "ana@example.com was not locked." in response.text
    assert "user.unlocked" not in [action for action, _actor in _actions(app)]


def test_unlock_of_an_unknown_user_is_404(client: TestClient, admin: User) -> None:
    response = client.post("/admin/users/999999/unlock", data={"csrf_token": csrf_of(client)})
    assert response.status_code == 404


def test_a_refused_new_user_form_does_not_send_the_password_back(
    client: TestClient, admin: User
) -> None:
    typed = "my-initial-secret-password"
    response = client.post(
        "/admin/users",
        data={"csrf_token": csrf_of(client), "email": "not-an-address", "password": typed},
    )
    assert response.status_code == 400
    fields = form_fields(response.text, action="/admin/users")
    assert fields["email"].value == "not-an-address" and fields["email"].error
    assert fields["password"].value in (None, "")
    assert typed not in response.text


def test_a_refused_password_on_the_user_page_is_not_sent_back(
    client: TestClient, admin: User, make_user: MakeUser
) -> None:
    ana = make_user("ana@example.com")
    response = client.post(
        f"/admin/users/{ana.id}/password", data={"csrf_token": csrf_of(client), "password": "short"}
    )
    assert response.status_code == 400
    assert 'value="short"' not in response.text


def test_the_list_counts_the_locked_accounts_and_lists_them_alone(
    client: TestClient, admin: User, make_user: MakeUser, guesser: TestClient, app: FastAPI
) -> None:
    ana = make_user("ana@example.com")
    make_user("bruno@example.com")
    assert "accounts are locked" not in client.get("/admin/users").text
    _lock_out(guesser, ana.email, app)
    listing = client.get("/admin/users")
    assert "1 account is locked." in listing.text
    assert ("Show the locked accounts", "/admin/users?locked=true") in links(listing.text)
    only = client.get("/admin/users?locked=true")
    assert "Only the locked accounts are listed." in only.text
    assert "ana@example.com" in only.text and "bruno@example.com" not in only.text
    # The search keeps the filter.
    assert form_fields(only.text, action="/admin/users")["locked"].value == "true"
    rows = client.get("/admin/users/rows", params={"locked": "true", "q": "bruno"})
    assert "bruno@example.com" not in rows.text
    assert client.get("/admin/users?locked=maybe").status_code == 400
    # Unlocked from the filtered list, the account leaves it.
    after = client.post(
        f"/admin/users/{ana.id}/unlock",
        data={"csrf_token": csrf_of(client), "locked": "true"},
        headers={"HX-Request": "true"},
    )
    assert "can sign in again from anywhere" in after.text
    assert "Only the locked accounts are listed." in after.text
    assert "ana@example.com</a>" not in after.text
