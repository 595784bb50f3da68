"""Invitations, "Forgot your password?" and Admin → Outbox through the web client, with the
mail received by a real SMTP server."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from embedportal.access.users import set_password
from embedportal.db.base import utcnow
from embedportal.db.models import AuditEntry, MailState, OutboxMail, PasswordLink, User
from embedportal.db.session import session_scope
from embedportal.mail.sender import MailSender
from tests.support.html import accessibility_problems, links
from tests.support.portal import LoginAs, MakeUser, csrf_of
from tests.support.smtp import SmtpServer, running_smtp_server, text_of

NEW_PASSWORD = "violet-tractor-umbrella-quince"
LINK = re.compile(r"http://127\.0\.0\.1(/password/set/[A-Za-z0-9_-]+)")


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    with running_smtp_server() as server:
        yield server


@pytest.fixture
def settings_overrides(smtp_server: SmtpServer) -> dict[str, object]:
    return {**smtp_server.settings(), "mail_sender": False}


def _deliver(app: FastAPI) -> int:
    sender: MailSender = app.state.mail_sender
    return sender.deliver_due()


def _link_in(smtp_server: SmtpServer, count: int) -> str:
    message = smtp_server.wait_for(count)[count - 1]
    found = LINK.search(text_of(message))
    assert found is not None, text_of(message)
    return found.group(1)


def _set(client: TestClient, path: str, password: str = NEW_PASSWORD) -> httpx.Response:
    token = csrf_of(client, "/login")
    return client.post(
        path,
        data={"csrf_token": token, "new_password": password, "repeat_password": password},
        follow_redirects=False,
    )


def _sign_in(client: TestClient, email: str, password: str) -> int:
    client.cookies.clear()
    token = csrf_of(client, "/login")
    response = client.post(
        "/login",
        data={"csrf_token": token, "email": email, "password": password},
        follow_redirects=False,
    )
    return response.status_code


def test_the_sign_in_page_links_to_forgot_password(client: TestClient) -> None:
    assert ("Forgot your password?", "/password/forgot") in links(client.get("/login").text)


def _forgot(client: TestClient, email: str) -> tuple[int, str, str]:
    client.cookies.clear()
    token = csrf_of(client, "/password/forgot")
    response = client.post(
        "/password/forgot", data={"csrf_token": token, "email": email}, follow_redirects=False
    )
    page = client.get(response.headers["location"])
    return response.status_code, response.headers["location"], page.text


def test_forgot_password_answers_the_same_for_an_account_and_for_nobody(
    app: FastAPI, client: TestClient, make_user: MakeUser, smtp_server: SmtpServer
) -> None:
    make_user("ana@example.com")
    known = _forgot(client, "ana@example.com")
    unknown = _forgot(client, "nobody@example.com")
    assert known[:2] == unknown[:2] == (303, "/password/forgot/sent")
    # The whole page, but for the per-request CSRF token.
    token = re.compile(r"[A-Za-z0-9_-]{43}")
    assert token.sub("…", known[2]) == token.sub("…", unknown[2])
    assert "If that address has an account here" in known[2]
    assert _deliver(app) == 1
    [message] = smtp_server.wait_for(1)
    assert message["To"] == "ana@example.com"


def test_forgot_password_without_an_address_is_refused_on_the_form(client: TestClient) -> None:
    token = csrf_of(client, "/password/forgot")
    response = client.post("/password/forgot", data={"csrf_token": token, "email": "  "})
    assert response.status_code == 400
    assert "Enter your e-mail address." in response.text


def test_a_reset_link_sets_the_password_once(
    app: FastAPI,
    client: TestClient,
    make_user: MakeUser,
    login_as: LoginAs,
    smtp_server: SmtpServer,
) -> None:
    make_user("ana@example.com")
    _forgot(client, "ana@example.com")
    _deliver(app)
    path = _link_in(smtp_server, 1)

    page = client.get(path)
    assert page.status_code == 200
    assert "ana@example.com" in page.text
    weak = _set(client, path, "password1234")
    assert weak.status_code == 400
    assert "too easy to guess" in weak.text

    done = _set(client, path)
    assert done.status_code == 303
    assert done.headers["location"] == "/login"
    assert _sign_in(client, "ana@example.com", NEW_PASSWORD) == 303

    again = client.get(path)
    assert again.status_code == 400
    assert "This link has been used already." in again.text
    assert _set(client, path).status_code == 400

    # The notice of the change follows.
    _deliver(app)
    notice = smtp_server.wait_for(2)[1]
    assert "changed with a reset link" in text_of(notice)


def test_an_expired_link_and_one_outdated_by_a_password_change_are_refused_clearly(
    app: FastAPI, client: TestClient, make_user: MakeUser, smtp_server: SmtpServer
) -> None:
    user = make_user("ana@example.com")
    _forgot(client, "ana@example.com")
    _deliver(app)
    path = _link_in(smtp_server, 1)
    with session_scope(app.state.session_factory) as db:
        db.execute(update(PasswordLink).values(expires_at=utcnow() - timedelta(seconds=1)))
    expired = client.get(path)
    assert expired.status_code == 400
    assert "This link has expired." in expired.text
    assert ("Ask for a new link", "/password/forgot") in links(expired.text)

    with session_scope(app.state.session_factory) as db:
        db.execute(update(PasswordLink).values(expires_at=utcnow() + timedelta(minutes=5)))
        stored = db.get(User, user.id)
        assert stored is not None
        set_password(session=db, user=stored, password=NEW_PASSWORD, actor=None)
    changed = client.get(path)
    assert changed.status_code == 400
    assert "The password was changed after this link was sent" in changed.text


def test_an_invitation_end_to_end(
    app: FastAPI,
    client: TestClient,
    make_user: MakeUser,
    login_as: LoginAs,
    smtp_server: SmtpServer,
) -> None:
    admin = make_user("admin@example.com", role="admin")
    login_as(admin)
    response = client.post(
        "/admin/users",
        data={
            "csrf_token": csrf_of(client),
            "email": "new@example.com",
            "name": "Nina New",
            "role": "viewer",
            "password": "",
        },
        follow_redirects=False,
    )
    assert response.status_code == 303
    shown = client.get(response.headers["location"])
    assert "An invitation to choose a password is on its way" in shown.text
    # Nobody signs in as the new user before they choose a password.
    assert _deliver(app) == 1
    [message] = smtp_server.wait_for(1)
    assert message["To"] == "new@example.com"
    assert "Nina New" in text_of(message)
    path = _link_in(smtp_server, 1)

    client.cookies.clear()
    page = client.get(path)
    assert "Choose your password" in page.text
    assert _set(client, path).status_code == 303
    assert _sign_in(client, "new@example.com", NEW_PASSWORD) == 303
    with session_scope(app.state.session_factory) as db:
        actions = list(db.scalars(select(AuditEntry.action)))
    assert "user.invitation_sent" in actions
    assert "user.invitation_accepted" in actions


def test_an_admin_sends_a_reset_link_and_sees_it_in_the_outbox(
    app: FastAPI,
    client: TestClient,
    make_user: MakeUser,
    login_as: LoginAs,
    smtp_server: SmtpServer,
) -> None:
    admin = make_user("admin@example.com", role="admin")
    user = make_user("ana@example.com", language="pt_BR")
    login_as(admin)
    page = client.get(f"/admin/users/{user.id}")
    assert "Send a password reset link" in page.text
    response = client.post(
        f"/admin/users/{user.id}/reset-link",
        data={"csrf_token": csrf_of(client)},
        follow_redirects=False,
    )
    assert response.status_code == 303
    outbox = client.get("/admin/outbox")
    assert outbox.status_code == 200
    assert 'data-mail-state="pending"' in outbox.text
    assert "Waiting to be sent" in outbox.text

    _deliver(app)
    [message] = smtp_server.wait_for(1)
    # In the user's language.
    assert "Defina uma nova senha" in message["Subject"]
    outbox = client.get("/admin/outbox/rows")
    assert 'data-mail-state="sent"' in outbox.text
    # Once sent to a server, the link is not kept for anyone to read.
    assert "/password/set/" not in outbox.text


def test_the_outbox_shows_a_retrying_and_a_failed_mail_with_the_reason(
    app: FastAPI,
    client: TestClient,
    make_user: MakeUser,
    login_as: LoginAs,
    smtp_server: SmtpServer,
) -> None:
    admin = make_user("admin@example.com", role="admin")
    login_as(admin)
    _forgot(client, "admin@example.com")
    smtp_server.stop()
    _deliver(app)
    login_as(admin)
    page = client.get("/admin/outbox")
    assert 'data-mail-state="pending"' in page.text
    assert "Retrying after 1 failed attempt" in page.text
    assert "ConnectionRefusedError" in page.text
    with session_scope(app.state.session_factory) as db:
        db.execute(update(OutboxMail).values(state=MailState.FAILED))
    assert 'data-mail-state="failed"' in client.get("/admin/outbox").text


def test_the_outbox_refreshes_itself_only_while_mails_wait(
    app: FastAPI, client: TestClient, make_user: MakeUser, login_as: LoginAs
) -> None:
    admin = make_user("admin@example.com", role="admin")
    login_as(admin)
    assert 'hx-get="/admin/outbox/rows"' not in client.get("/admin/outbox").text
    _forgot(client, "admin@example.com")
    login_as(admin)
    assert 'hx-get="/admin/outbox/rows"' in client.get("/admin/outbox").text
    _deliver(app)
    assert 'hx-get="/admin/outbox/rows"' not in client.get("/admin/outbox/rows").text


def test_the_password_pages_are_labelled(
    app: FastAPI, client: TestClient, make_user: MakeUser, smtp_server: SmtpServer
) -> None:
    make_user("ana@example.com")
    assert accessibility_problems(client.get("/password/forgot").text) == []
    _forgot(client, "ana@example.com")
    _deliver(app)
    path = _link_in(smtp_server, 1)
    assert accessibility_problems(client.get(path).text) == []
    refused = _set(client, path, "short")
    assert refused.status_code == 400
    assert accessibility_problems(refused.text) == []
    assert accessibility_problems(client.get("/password/set/" + "x" * 43).text) == []
