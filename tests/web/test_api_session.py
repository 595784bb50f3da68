"""GET /api/session: whether this browser is signed in, and the session's CSRF token.

Open viewers ask it after a CSRF refusal, a 401 or another tab's sign-out, and while they show
"you are signed out"; its Date header tells them the server's time."""

from __future__ import annotations

import time

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from embedportal.db.models import AuditEntry, User, WebSession
from embedportal.db.session import session_scope
from tests.support.portal import LoginAs, MakeUser, csrf_of


def _without_time(answer: dict[str, object]) -> dict[str, object]:
    return {key: value for key, value in answer.items() if key != "serverTime"}


def test_signed_out_is_a_200_saying_so(client: TestClient) -> None:
    before = time.time() * 1000
    response = client.get("/api/session")
    assert response.status_code == 200
    assert _without_time(response.json()) == {"signedIn": False, "csrfToken": None}
    assert response.headers["cache-control"] == "no-store"
    assert before - 1 <= response.json()["serverTime"] <= time.time() * 1000 + 1


def test_signed_in_gives_the_session_s_csrf_token(
    client: TestClient, make_user: MakeUser, login_as: LoginAs
) -> None:
    login_as(make_user("ana@example.com"))
    answer = _without_time(client.get("/api/session").json())
    assert answer == {"signedIn": True, "csrfToken": csrf_of(client)}


def test_signing_in_again_gives_a_new_csrf_token(
    client: TestClient, make_user: MakeUser, login_as: LoginAs
) -> None:
    """What an open viewer in another tab needs after a sign-out and sign-in."""
    user = make_user("ana@example.com")
    login_as(user)
    before = client.get("/api/session").json()["csrfToken"]
    client.post("/logout", data={"csrf_token": before})
    login_as(user)
    after = client.get("/api/session").json()
    assert after["signedIn"] is True
    assert after["csrfToken"] != before


def test_a_blocked_user_is_signed_out(
    client: TestClient, make_user: MakeUser, login_as: LoginAs, app: FastAPI
) -> None:
    user = make_user("ana@example.com")
    login_as(user)
    with session_scope(app.state.session_factory) as db:
        db.execute(update(User).where(User.id == user.id).values(is_blocked=True))
    answer = _without_time(client.get("/api/session").json())
    assert answer == {"signedIn": False, "csrfToken": None}


def test_asking_writes_nothing(
    client: TestClient, make_user: MakeUser, login_as: LoginAs, app: FastAPI
) -> None:
    login_as(make_user("ana@example.com"))

    def counts() -> tuple[int, int]:
        with session_scope(app.state.session_factory) as db:
            sessions = db.scalar(select(func.count()).select_from(WebSession)) or 0
            audit = db.scalar(select(func.count()).select_from(AuditEntry)) or 0
            return sessions, audit

    before = counts()
    for _ in range(3):
        client.get("/api/session")
    assert counts() == before


def test_a_stale_csrf_token_is_refused_with_its_own_code(
    client: TestClient, make_user: MakeUser, login_as: LoginAs
) -> None:
    """A CSRF refusal and a real one (code Forbidden) are both 403: the code tells them apart."""
    login_as(make_user("ana@example.com"))
    response = client.post(
        "/api/telemetry",
        json={"events": [{"type": "refreshed"}]},
        headers={"X-CSRF-Token": "stale"},
    )
    assert response.status_code == 403
    assert response.json()["code"] == "CsrfTokenInvalid"
