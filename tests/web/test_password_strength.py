"""The strength meter under new-password fields (ASVS 2.1.8): htmx asks as the password is
typed, and the answer matches what the form would refuse."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from embedportal.db.models import User
from tests.support.html import accessibility_problems, elements, form_fields
from tests.support.portal import LoginAs, MakeUser, csrf_of


@pytest.fixture
def ana(make_user: MakeUser, login_as: LoginAs) -> User:
    user = make_user("ana.souza@example.com", name="Ana Souza")
    login_as(user)
    return user


def _meter(client: TestClient, **fields: str) -> tuple[int, str]:
    response = client.post(
        "/account/password-strength",
        data=fields,
        headers={"HX-Request": "true", "X-CSRF-Token": csrf_of(client)},
    )
    return response.status_code, response.text


def test_a_weak_password_is_said_to_be_too_easy(client: TestClient, ana: User) -> None:
    status, partial = _meter(client, new_password="password1234")
    assert status == 200 and elements(partial, "html") == []
    assert "Password strength: Too easy to guess" in partial
    [meter] = elements(partial, "meter")
    assert int(meter.attrs["value"] or 9) < 2 and meter.attrs["max"] == "4"


def test_a_strong_password_is_said_to_be_strong(client: TestClient, ana: User) -> None:
    status, partial = _meter(client, new_password="correct-horse-battery-staple")
    assert status == 200 and "Password strength: Strong" in partial


def test_the_users_own_name_counts_as_easy(client: TestClient, ana: User) -> None:
    _status, own = _meter(client, new_password="anasouza1987")
    _status, other = _meter(
        client, password="anasouza1987", email="bruno@example.com", name="Bruno Lima"
    )
    assert "Too easy to guess" in own and "Too easy to guess" not in other


def test_nothing_typed_shows_nothing(client: TestClient, ana: User) -> None:
    status, partial = _meter(client, new_password="")
    assert status == 200 and partial.strip() == ""


def test_it_needs_sign_in_and_the_csrf_token(client: TestClient) -> None:
    anonymous = client.post(
        "/account/password-strength", data={"new_password": "x"}, follow_redirects=False
    )
    assert anonymous.status_code in (303, 403)


def test_the_password_fields_ask_for_the_meter(client: TestClient, ana: User) -> None:
    page = client.get("/account")
    [field] = [c for c in elements(page.text, "input") if c.attrs.get("name") == "new_password"]
    assert field.attrs["hx-post"] == "/account/password-strength"
    assert field.attrs["hx-params"] == "new_password"  # never the current password
    assert "f-new_password-strength" in (field.attrs.get("aria-describedby") or "")
    assert accessibility_problems(page.text) == []
    assert form_fields(page.text, action="/account/password")["new_password"].value in (None, "")
