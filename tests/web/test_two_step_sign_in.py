"""Two-step sign-in over HTTP: the second page, throttled codes, replays, recovery codes, the
half-signed-in cookie, setting it up on the account page, the rule for administrators and an
administrator's reset."""

from __future__ import annotations

import re

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from embedportal.access.organization import get_organization
from embedportal.access.totp import decode_secret, hotp, time_step
from embedportal.db.base import utcnow
from embedportal.db.models import AuditEntry, Organization, User
from embedportal.db.session import session_scope
from embedportal.web.pending_sign_in import PENDING_SIGN_IN_COOKIE
from tests.support.html import Element, elements, parse, table_rows
from tests.support.portal import DEFAULT_PASSWORD, LoginAs, MakeUser, csrf_of
from tests.support.two_step import Enrolled, enrol


def _enrol(app: FastAPI, user: User) -> Enrolled:
    with session_scope(app.state.session_factory) as db:
        stored = db.get(User, user.id)
        assert stored is not None
        return enrol(db, stored, app.state.settings)


def _password(client: TestClient, email: str, *, next_url: str = "") -> int:
    client.cookies.clear()
    response = client.post(
        "/login",
        data={
            "email": email,
            "password": DEFAULT_PASSWORD,
            "next": next_url,
            "csrf_token": csrf_of(client, "/login"),
        },
        follow_redirects=False,
    )
    if response.status_code == 303:
        assert response.headers["location"] == "/login/two-step"
    return response.status_code


def _code(client: TestClient, code: str) -> tuple[int, str]:
    token = csrf_of(client, "/login/two-step")
    response = client.post(
        "/login/two-step", data={"code": code, "csrf_token": token}, follow_redirects=False
    )
    return response.status_code, response.headers.get("location", response.text)


def _signed_in(client: TestClient) -> bool:
    return client.get("/api/session").json().get("signedIn") is True


def _by_id(html: str, element_id: str) -> Element:
    return next(node for node in parse(html).iter() if node.attrs.get("id") == element_id)


def _inside(html: str, container_class: str, tag: str) -> list[Element]:
    return [
        node
        for node in elements(html, tag)
        if any(container_class in above.classes for above in node.ancestors())
    ]


def _actions(app: FastAPI) -> list[str]:
    with session_scope(app.state.session_factory) as db:
        return list(db.scalars(select(AuditEntry.action).order_by(AuditEntry.id)))


@pytest.fixture
def ana(make_user: MakeUser) -> User:
    return make_user("ana@example.com")


def test_the_password_alone_opens_nothing_and_the_code_signs_in(
    client: TestClient, app: FastAPI, ana: User
) -> None:
    enrolled = _enrol(app, ana)
    assert _password(client, ana.email, next_url="/account") == 303
    # Half signed in: no session, only the code page.
    assert not _signed_in(client)
    assert client.get("/account", follow_redirects=False).status_code == 303
    page = client.get("/login/two-step")
    assert page.status_code == 200
    assert [field.attrs.get("name") for field in elements(page.text, "input")] == [
        "csrf_token",
        "code",
    ]
    assert _code(client, enrolled.code()) == (303, "/account")
    assert _signed_in(client)
    assert PENDING_SIGN_IN_COOKIE not in client.cookies


def test_a_wrong_code_is_refused_and_a_used_code_is_not_accepted_again(
    client: TestClient, app: FastAPI, ana: User
) -> None:
    enrolled = _enrol(app, ana)
    _password(client, ana.email)
    status, body = _code(client, enrolled.code(steps_ahead=9))
    assert status == 400 and "not right" in body
    code = enrolled.code()
    assert _code(client, code)[0] == 303
    # The same code again, in another sign-in: refused (ASVS 2.8.4).
    _password(client, ana.email)
    assert _code(client, code)[0] == 400
    assert not _signed_in(client)
    assert "two_step.failed" in _actions(app)


def test_wrong_codes_are_throttled_like_passwords(
    client: TestClient, app: FastAPI, ana: User
) -> None:
    enrolled = _enrol(app, ana)
    _password(client, ana.email)
    statuses = [
        _code(client, enrolled.code(steps_ahead=9))[0]
        for _ in range(app.state.settings.login_max_attempts)
    ]
    assert statuses[-1] == 429, statuses
    token = csrf_of(client, "/login/two-step")
    held = client.post(
        "/login/two-step",
        data={"code": enrolled.code(), "csrf_token": token},
        follow_redirects=False,
    )
    assert held.status_code == 429 and int(held.headers["retry-after"]) > 0
    # Starting again with the password does not reset the count.
    assert _password(client, ana.email) == 429


def test_a_recovery_code_signs_in_once(client: TestClient, app: FastAPI, ana: User) -> None:
    enrolled = _enrol(app, ana)
    recovery = enrolled.recovery_codes[3]
    _password(client, ana.email)
    assert _code(client, recovery)[0] == 303
    _password(client, ana.email)
    assert _code(client, recovery)[0] == 400
    assert "two_step.recovery_code_used" in _actions(app)


@pytest.mark.parametrize(
    "cookie", ["", "forged", "eyJ1c2VyIjoxfQ.forged.signature"], ids=["none", "junk", "forged"]
)
def test_without_a_valid_half_sign_in_the_code_page_leads_to_sign_in(
    client: TestClient, cookie: str
) -> None:
    if cookie:
        client.cookies.set(PENDING_SIGN_IN_COOKIE, cookie, path="/login")
    page = client.get("/login/two-step", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"].startswith("/login")
    token = csrf_of(client, "/login")
    posted = client.post(
        "/login/two-step", data={"code": "123456", "csrf_token": token}, follow_redirects=False
    )
    assert posted.status_code == 303 and posted.headers["location"].startswith("/login")


def test_a_password_changed_meanwhile_ends_the_half_sign_in(
    client: TestClient, app: FastAPI, ana: User
) -> None:
    enrolled = _enrol(app, ana)
    _password(client, ana.email)
    with session_scope(app.state.session_factory) as db:
        db.execute(update(User).where(User.id == ana.id).values(password_hash="changed"))
    assert _code(client, enrolled.code()) == (303, "/login")
    assert not _signed_in(client)


def test_setting_it_up_on_the_account_page(
    client: TestClient, app: FastAPI, ana: User, login_as: LoginAs
) -> None:
    login_as(ana)
    account = client.get("/account")
    assert "Set up two-step sign-in" in account.text
    token = csrf_of(client)
    started = client.post(
        "/account/two-step/start", data={"csrf_token": token}, follow_redirects=False
    )
    assert (started.status_code, started.headers["location"]) == (303, "/account/two-step")
    page = client.get("/account/two-step")
    # The QR code is inline SVG: no script, no image fetched.
    assert _inside(page.text, "qr-code", "path")
    assert not _inside(page.text, "qr-code", "script") + _inside(page.text, "qr-code", "img")
    secret_text = _by_id(page.text, "two-step-secret").text
    secret = decode_secret(secret_text)
    refused = client.post(
        "/account/two-step/confirm", data={"code": "000000x", "csrf_token": token}
    )
    assert refused.status_code == 400
    code = hotp(secret, time_step(utcnow().timestamp()))
    confirmed = client.post("/account/two-step/confirm", data={"code": code, "csrf_token": token})
    assert confirmed.status_code == 200
    codes = [item.text for item in _inside(confirmed.text, "recovery-codes", "code")]
    assert len(codes) == 10 and all(re.fullmatch(r"[a-z2-9]{4}(-[a-z2-9]{4}){2}", c) for c in codes)
    assert "two_step.enabled" in _actions(app)
    # Shown once: the page afterwards does not have them.
    assert codes[0] not in client.get("/account/two-step").text
    off = client.post(
        "/account/two-step/disable",
        data={"code_or_password": DEFAULT_PASSWORD, "csrf_token": token},
        follow_redirects=False,
    )
    assert (off.status_code, off.headers["location"]) == (303, "/account")
    assert "two_step.disabled" in _actions(app)


def _require_for_admins(app: FastAPI, required: bool) -> None:
    with session_scope(app.state.session_factory) as db:
        get_organization(session=db)
        db.execute(update(Organization).values(require_two_step_for_admins=required))


def test_when_required_an_administrator_without_it_is_sent_to_set_it_up(
    client: TestClient, app: FastAPI, make_user: MakeUser, login_as: LoginAs
) -> None:
    root = make_user("root@example.com", role="admin")
    login_as(root)
    assert client.get("/admin/users").status_code == 200
    _require_for_admins(app, True)
    sent = client.get("/admin/users", follow_redirects=False)
    assert (sent.status_code, sent.headers["location"]) == (303, "/account/two-step")
    asked_json = client.get("/admin/users", headers={"accept": "application/json"})
    assert (asked_json.status_code, asked_json.json()["code"]) == (403, "TwoStepRequired")
    # Viewers' pages are not held back, and setting it up is open.
    assert client.get("/reports").status_code == 200
    assert client.get("/account/two-step").status_code == 200
    _enrol(app, root)
    assert client.get("/admin/users").status_code == 200


def test_an_administrator_resets_it_and_the_list_shows_who_has_it(
    client: TestClient, app: FastAPI, ana: User, make_user: MakeUser, login_as: LoginAs
) -> None:
    _enrol(app, ana)
    root = make_user("root@example.com", role="admin")
    login_as(root)
    listing = client.get("/admin/users")
    row = next(cells for cells in table_rows(listing.text) if "ana@example.com" in cells)
    assert "On" in row
    token = csrf_of(client)
    reset = client.post(
        f"/admin/users/{ana.id}/two-step/reset", data={"csrf_token": token}, follow_redirects=False
    )
    assert (reset.status_code, reset.headers["location"]) == (303, f"/admin/users/{ana.id}")
    with session_scope(app.state.session_factory) as db:
        entry = db.scalars(select(AuditEntry).where(AuditEntry.action == "two_step.reset")).one()
        assert entry.actor_email == "root@example.com"
    # The password alone signs ana in again.
    other = TestClient(app, base_url="http://127.0.0.1")
    with other:
        other.post(
            "/login",
            data={
                "email": ana.email,
                "password": DEFAULT_PASSWORD,
                "csrf_token": csrf_of(other, "/login"),
            },
            follow_redirects=False,
        )
        assert other.get("/api/session").json().get("signedIn") is True


def test_the_rule_is_chosen_in_admin_settings_and_audited(
    client: TestClient, app: FastAPI, make_user: MakeUser, login_as: LoginAs
) -> None:
    root = make_user("root@example.com", role="admin")
    login_as(root)
    page = client.get("/admin/settings")
    box = [
        field
        for field in elements(page.text, "input")
        if field.attrs.get("name") == "require_two_step_for_admins"
    ]
    assert len(box) == 1 and "checked" not in box[0].attrs  # off while testing, until chosen
    form = {
        "name": "Acme",
        "time_zone": "UTC",
        "token_lifetime_minutes": "60",
        "refresh_margin_minutes": "10",
        "require_two_step_for_admins": "on",
        "csrf_token": csrf_of(client, "/admin/settings"),
    }
    saved = client.post("/admin/settings", data=form, follow_redirects=False)
    assert saved.status_code == 303
    with session_scope(app.state.session_factory) as db:
        assert get_organization(session=db).require_two_step_for_admins is True
        entry = db.scalars(
            select(AuditEntry).where(AuditEntry.action == "organization.changed")
        ).one()
        assert entry.detail["require_two_step_for_admins"] == {"old": None, "new": True}
    # From now on this administrator is sent to set it up.
    sent = client.get("/admin/settings", follow_redirects=False)
    assert sent.headers["location"] == "/account/two-step"


def test_new_recovery_codes_from_the_page(
    client: TestClient, app: FastAPI, ana: User, login_as: LoginAs
) -> None:
    login_as(ana)
    enrolled = _enrol(app, ana)
    token = csrf_of(client)
    refused = client.post(
        "/account/two-step/recovery-codes",
        data={"code_or_password": "not-it", "csrf_token": token},
    )
    assert refused.status_code == 400
    assert "f-renew-proof-error" in refused.text and "f-code_or_password-error" not in refused.text
    renewed = client.post(
        "/account/two-step/recovery-codes",
        data={"code_or_password": DEFAULT_PASSWORD, "csrf_token": token},
    )
    assert renewed.status_code == 200
    codes = [item.text for item in _inside(renewed.text, "recovery-codes", "code")]
    assert len(codes) == 10 and not set(codes) & set(enrolled.recovery_codes)
