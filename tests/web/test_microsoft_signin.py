"""Sign in with Microsoft through the portal's routes, against the emulator's Entra over real
HTTP: the whole flow, and one test per refusal (each a clear page, never a 500)."""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from embedportal.access.microsoft_tokens import stored_refresh_token
from embedportal.access.organization import fernet_for, get_organization
from embedportal.access.users import delete_user, find_user_by_email, set_blocked
from embedportal.db.models import AuditEntry, MicrosoftAccount, User
from embedportal.db.session import session_scope
from embedportal.emulator.tokens import IdTokenSigner
from embedportal.logs import configure_logging
from embedportal.web.routes import microsoft_signin
from tests.emulator.harness import Emulator
from tests.support.html import elements, form_fields
from tests.support.portal import MakeUser, csrf_of

NORTH = "north@example.com"
OUTSIDER = "outsider@example.com"
OTHER_TENANT = "00000000-0000-0000-0000-00000000dead"


@pytest.fixture
def settings_overrides(emulator_settings_overrides: dict[str, object]) -> dict[str, object]:
    return emulator_settings_overrides


def _organization(app: FastAPI, **values: str) -> None:
    with session_scope(app.state.session_factory) as db:
        organization = get_organization(session=db)
        for name, value in values.items():
            setattr(organization, name, value)


@pytest.fixture
def microsoft_on(app: FastAPI) -> None:
    _organization(app, sign_in_methods="both")


def _emulator_answer(emulator: Emulator, authorization_url: str, email: str) -> str:
    """What the person's browser does at Entra: open the page, sign in, get sent back."""
    with httpx.Client(timeout=10) as browser:
        page = browser.get(authorization_url)
        assert page.status_code == 200, page.text
        form = {name: field.value or "" for name, field in form_fields(page.text).items()}
        form.update(email=email, password=emulator.settings.directory_password)
        answer = browser.post(authorization_url.split("?")[0], data=form)
    assert answer.status_code == 302, answer.text
    return answer.headers["location"]


def _callback(location: str, **changes: str) -> str:
    """The portal path Entra sent the browser back to, with some of its answer changed."""
    back = urlsplit(location)
    query = {key: values[0] for key, values in parse_qs(back.query).items()}
    query.update(changes)
    return f"{back.path}?{urlencode(query)}"


def _sign_in(
    client: TestClient, emulator: Emulator, email: str = NORTH, **changes: str
) -> httpx.Response:
    start = client.get("/login/microsoft", params={"next": "/reports"}, follow_redirects=False)
    assert start.status_code == 303, start.text
    location = _emulator_answer(emulator, start.headers["location"], email)
    return client.get(_callback(location, **changes), follow_redirects=False)


def _by_id(html: str, element_id: str) -> list[Any]:
    return [element for element in elements(html) if element.attrs.get("id") == element_id]


def _refusal(response: httpx.Response) -> str:
    (article,) = elements(response.text, "article")
    return str(article.attrs["data-reason"])


def _actions(app: FastAPI) -> list[str]:
    with session_scope(app.state.session_factory) as db:
        return list(db.scalars(select(AuditEntry.action).order_by(AuditEntry.id)))


def _account(app: FastAPI, email: str) -> MicrosoftAccount | None:
    with session_scope(app.state.session_factory) as db:
        user = find_user_by_email(session=db, email=email)
        assert user is not None
        account = db.get(MicrosoftAccount, user.id)
        if account is not None:
            db.expunge(account)
        return account


def test_a_known_person_signs_in_and_is_linked(
    app: FastAPI, client: TestClient, emulator: Emulator, make_user: MakeUser, microsoft_on: None
) -> None:
    make_user(NORTH)
    response = _sign_in(client, emulator)
    assert response.status_code == 303
    assert response.headers["location"] == "/reports"
    assert client.get("/account").status_code == 200
    person = emulator.state.directory.by_email(NORTH)
    assert person is not None
    account = _account(app, NORTH)
    assert account is not None
    assert (account.tenant_id, account.object_id) == (
        emulator.settings.tenant_id,
        person.object_id,
    )
    # The refresh token is kept, encrypted: readable with the key, not as it was sent.
    assert account.refresh_token_encrypted
    with session_scope(app.state.session_factory) as db:
        token = stored_refresh_token(
            session=db, settings=app.state.settings, user_id=account.user_id
        )
    assert token and token not in account.refresh_token_encrypted
    assert token in emulator.state.grants.refresh_tokens
    assert _actions(app)[-2:] == ["microsoft.linked", "login.microsoft"]
    # The flow cookie is gone with the answer.
    assert microsoft_signin.FLOW_COOKIE not in client.cookies


def test_a_linked_person_is_found_by_object_id_after_an_email_change(
    app: FastAPI, client: TestClient, emulator: Emulator, make_user: MakeUser, microsoft_on: None
) -> None:
    make_user(NORTH)
    assert _sign_in(client, emulator).status_code == 303
    with session_scope(app.state.session_factory) as db:
        user = db.scalar(select(User).where(User.email == NORTH))
        assert user is not None
        user.email = "renamed@example.com"
    client.cookies.clear()
    assert _sign_in(client, emulator).status_code == 303
    assert _actions(app).count("microsoft.linked") == 1


def test_the_answer_must_carry_this_sign_ins_state(
    client: TestClient, emulator: Emulator, make_user: MakeUser, microsoft_on: None
) -> None:
    make_user(NORTH)
    response = _sign_in(client, emulator, state="someone-elses")
    assert response.status_code == 400
    assert _refusal(response) == "state"
    assert client.get("/account", follow_redirects=False).status_code == 303


def test_an_answer_without_this_browsers_flow_is_refused(
    client: TestClient, emulator: Emulator, make_user: MakeUser, microsoft_on: None
) -> None:
    make_user(NORTH)
    start = client.get("/login/microsoft", follow_redirects=False)
    location = _emulator_answer(emulator, start.headers["location"], NORTH)
    client.cookies.clear()  # another browser: it never started this sign-in
    response = client.get(_callback(location), follow_redirects=False)
    assert response.status_code == 400
    assert _refusal(response) == "expired"


def _resealed(app: FastAPI, client: TestClient, change: Callable[[dict[str, Any]], None]) -> None:
    """Replace the browser's flow cookie with one whose flow is changed (as if the portal had
    kept something else), sealed with the real key."""
    fernet = fernet_for(app.state.settings, b"embedportal/microsoft-sign-in-flow")
    payload = json.loads(fernet.decrypt(client.cookies[microsoft_signin.FLOW_COOKIE].encode()))
    change(payload["flow"])
    sealed = fernet.encrypt(json.dumps(payload).encode()).decode()
    client.cookies.set(microsoft_signin.FLOW_COOKIE, sealed, path=microsoft_signin.START_PATH)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda flow: flow.update(code_verifier="x" * 43), "code"),
        (lambda flow: flow.update(redirect_uri=flow["redirect_uri"] + "/"), "code"),
        (lambda flow: flow.update(nonce="not-this-sign-ins"), "id_token"),
    ],
    ids=["pkce-verifier", "redirect-uri-exact", "nonce"],
)
def test_a_code_redeemed_with_another_verifier_redirect_or_nonce_is_refused(
    app: FastAPI,
    client: TestClient,
    emulator: Emulator,
    make_user: MakeUser,
    microsoft_on: None,
    change: Callable[[dict[str, Any]], None],
    reason: str,
) -> None:
    make_user(NORTH)
    start = client.get("/login/microsoft", follow_redirects=False)
    location = _emulator_answer(emulator, start.headers["location"], NORTH)
    _resealed(app, client, change)
    response = client.get(_callback(location), follow_redirects=False)
    assert response.status_code == 400
    assert _refusal(response) == reason


def test_a_flow_older_than_ten_minutes_is_refused(
    app: FastAPI, client: TestClient, emulator: Emulator, make_user: MakeUser, microsoft_on: None
) -> None:
    make_user(NORTH)
    start = client.get("/login/microsoft", follow_redirects=False)
    location = _emulator_answer(emulator, start.headers["location"], NORTH)
    fernet = fernet_for(app.state.settings, b"embedportal/microsoft-sign-in-flow")
    payload = fernet.decrypt(client.cookies[microsoft_signin.FLOW_COOKIE].encode())
    old = fernet.encrypt_at_time(payload, int(time.time()) - 601).decode()
    client.cookies.set(microsoft_signin.FLOW_COOKIE, old, path=microsoft_signin.START_PATH)
    response = client.get(_callback(location), follow_redirects=False)
    assert _refusal(response) == "expired"


def test_a_replayed_code_is_refused(
    client: TestClient, emulator: Emulator, make_user: MakeUser, microsoft_on: None
) -> None:
    make_user(NORTH)
    start = client.get("/login/microsoft", follow_redirects=False)
    sealed = client.cookies[microsoft_signin.FLOW_COOKIE]
    location = _emulator_answer(emulator, start.headers["location"], NORTH)
    assert client.get(_callback(location), follow_redirects=False).status_code == 303
    # Someone who saw the answer and the flow cookie tries them again.
    client.cookies.clear()
    client.cookies.set(microsoft_signin.FLOW_COOKIE, sealed, path=microsoft_signin.START_PATH)
    response = client.get(_callback(location), follow_redirects=False)
    assert response.status_code == 400
    assert _refusal(response) == "code"


def test_a_cancelled_sign_in_says_so(
    client: TestClient, emulator: Emulator, microsoft_on: None
) -> None:
    start = client.get("/login/microsoft", follow_redirects=False)
    state = parse_qs(urlsplit(start.headers["location"]).query)["state"][0]
    response = client.get(
        "/login/microsoft/callback",
        params={"error": "access_denied", "state": state},
        follow_redirects=False,
    )
    assert response.status_code == 400
    assert _refusal(response) == "cancelled"


@pytest.fixture
def forged_id_tokens(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """forged_id_tokens(aud=..., resign=...) makes the emulator's id tokens carry other claims
    or another key's signature."""

    def forge(*, other_key: bool = False, tamper: bool = False, **claims: Any) -> None:
        original = IdTokenSigner.sign
        stranger = IdTokenSigner()

        def sign(self: IdTokenSigner, values: Mapping[str, Any]) -> str:
            changed = {**values, **claims}
            if other_key:
                stranger.key_id = self.key_id  # the right key id, the wrong key
                return original(stranger, changed)
            token = original(self, changed)
            if tamper:  # the payload changed after signing
                header, _payload, signature = token.split(".")
                from embedportal.emulator.tokens import b64url_encode

                body = b64url_encode(json.dumps({**changed, "name": "x"}).encode())
                return f"{header}.{body}.{signature}"
            return token

        monkeypatch.setattr(IdTokenSigner, "sign", sign)

    return forge


@pytest.mark.parametrize(
    "forgery",
    [
        {"tid": OTHER_TENANT},
        {"aud": "another-application"},
        {"iss": "https://login.microsoftonline.com/elsewhere/v2.0"},
        {"exp": 1_000_000, "iat": 999_000, "nbf": 999_000},
        {"other_key": True},
        {"tamper": True},
    ],
    ids=["other-tenant", "audience", "issuer", "expired", "bad-signature", "tampered"],
)
def test_an_id_token_that_fails_a_check_is_refused(
    client: TestClient,
    emulator: Emulator,
    make_user: MakeUser,
    microsoft_on: None,
    forged_id_tokens: Callable[..., None],
    forgery: dict[str, Any],
) -> None:
    make_user(NORTH)
    forged_id_tokens(**forgery)
    response = _sign_in(client, emulator)
    assert response.status_code == 400, response.text
    assert _refusal(response) == "id_token"
    assert client.get("/account", follow_redirects=False).status_code == 303


def test_an_unreachable_entra_is_a_clear_page(
    app: FastAPI, client: TestClient, microsoft_on: None
) -> None:
    _organization(
        app,
        microsoft_tenant_id="00000000-0000-0000-0000-0000000e0001",
        microsoft_client_id="00000000-0000-0000-0000-0000000e0002",
    )
    with session_scope(app.state.session_factory) as db:
        from embedportal.access.organization import encrypt_secret

        get_organization(session=db).microsoft_client_secret_encrypted = encrypt_secret(
            settings=app.state.settings, secret="s"
        )
    app.state.settings.powerbi_authority_host = "http://127.0.0.1:9"
    response = client.get("/login/microsoft", follow_redirects=False)
    assert response.status_code == 503
    assert _refusal(response) == "unreachable"


def test_a_blocked_user_is_refused(
    app: FastAPI, client: TestClient, emulator: Emulator, make_user: MakeUser, microsoft_on: None
) -> None:
    make_user(NORTH, is_blocked=True)
    response = _sign_in(client, emulator)
    assert response.status_code == 403
    assert _refusal(response) == "blocked"
    assert _actions(app)[-1] == "login.microsoft_refused"


def test_an_unknown_person_is_refused_without_sign_up(
    app: FastAPI, client: TestClient, emulator: Emulator, microsoft_on: None
) -> None:
    response = _sign_in(client, emulator, OUTSIDER)
    assert response.status_code == 403
    assert _refusal(response) == "unknown"
    with session_scope(app.state.session_factory) as db:
        assert find_user_by_email(session=db, email=OUTSIDER) is None


def test_a_person_from_a_tenant_allowed_to_sign_up_gets_an_account(
    app: FastAPI, client: TestClient, emulator: Emulator, microsoft_on: None
) -> None:
    _organization(app, microsoft_signup_tenants=emulator.settings.tenant_id)
    response = _sign_in(client, emulator, OUTSIDER)
    assert response.status_code == 303
    with session_scope(app.state.session_factory) as db:
        user = find_user_by_email(session=db, email=OUTSIDER)
        assert user is not None and not user.is_admin
        assert user.name == "Someone else"
    assert _account(app, OUTSIDER) is not None
    assert "user.created" in _actions(app)


# --- refresh tokens are revoked ------------------------------------------------------------------


def _kept(app: FastAPI, email: str) -> bool:
    account = _account(app, email)
    return account is not None and bool(account.refresh_token_encrypted)


def test_signing_out_drops_the_refresh_token_and_offers_entras_end_session(
    app: FastAPI, client: TestClient, emulator: Emulator, make_user: MakeUser, microsoft_on: None
) -> None:
    make_user(NORTH)
    _sign_in(client, emulator)
    assert _kept(app, NORTH)
    response = client.post(
        "/logout", data={"csrf_token": csrf_of(client, "/account")}, follow_redirects=False
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/logout/microsoft"
    assert not _kept(app, NORTH)
    assert _account(app, NORTH) is not None  # the link stays: the next sign-in finds them
    page = client.get("/logout/microsoft")
    (end_session,) = _by_id(page.text, "microsoft-end-session")
    url = str(end_session.attrs["href"])
    assert url.startswith(f"{emulator.base_url}/{emulator.settings.tenant_id}/oauth2/v2.0/logout")
    assert parse_qs(urlsplit(url).query)["post_logout_redirect_uri"] == ["http://127.0.0.1/login"]


def test_blocking_or_deleting_a_user_drops_their_refresh_token(
    app: FastAPI, client: TestClient, emulator: Emulator, make_user: MakeUser, microsoft_on: None
) -> None:
    admin = make_user("boss@example.com", role="admin")
    north = make_user(NORTH)
    _sign_in(client, emulator)
    assert _kept(app, NORTH)
    with session_scope(app.state.session_factory) as db:
        user = db.get(User, north.id)
        assert user is not None
        set_blocked(session=db, user=user, blocked=True, actor=None)
    assert not _kept(app, NORTH)

    with session_scope(app.state.session_factory) as db:
        user = db.get(User, north.id)
        assert user is not None
        set_blocked(session=db, user=user, blocked=False, actor=None)
    client.cookies.clear()
    _sign_in(client, emulator)
    assert _kept(app, NORTH)
    with session_scope(app.state.session_factory) as db:
        user, boss = db.get(User, north.id), db.get(User, admin.id)
        assert user is not None and boss is not None
        delete_user(session=db, user=user, actor=boss)
    with session_scope(app.state.session_factory) as db:
        assert db.scalars(select(MicrosoftAccount)).all() == []


# --- the sign-in page and the methods ------------------------------------------------------------


def test_the_sign_in_page_offers_what_the_organization_allows(
    app: FastAPI, client: TestClient, make_user: MakeUser
) -> None:
    make_user(NORTH)
    page = client.get("/login")
    assert not _by_id(page.text, "sign-in-microsoft")
    assert "password" in form_fields(page.text, action="/login")

    _organization(app, sign_in_methods="both")
    page = client.get("/login?next=/reports")
    (button,) = _by_id(page.text, "sign-in-microsoft")
    assert button.attrs["href"] == "/login/microsoft?next=/reports"
    assert "password" in form_fields(page.text, action="/login")

    _organization(app, sign_in_methods="microsoft")
    page = client.get("/login")
    assert _by_id(page.text, "sign-in-microsoft")
    assert "password" not in form_fields(page.text, action="/login")
    # …and the server refuses a password too, right or wrong.
    refused = client.post(
        "/login",
        data={
            "email": NORTH,
            "password": "correct-horse-battery-staple",
            "csrf_token": csrf_of(client, "/login"),
        },
        follow_redirects=False,
    )
    assert refused.status_code == 403
    assert client.get("/account", follow_redirects=False).status_code == 303


def test_microsoft_alone_without_a_registration_keeps_passwords_open(
    app: FastAPI, client: TestClient
) -> None:
    """An incomplete app registration: choosing Microsoft alone would lock
    everyone out, so passwords still work until the registration is complete."""
    _organization(app, sign_in_methods="microsoft", microsoft_tenant_id="x")
    page = client.get("/login")
    assert not _by_id(page.text, "sign-in-microsoft")
    assert "password" in form_fields(page.text, action="/login")


def test_the_quick_start_demo_signs_in_with_microsoft_out_of_the_box(
    app: FastAPI, client: TestClient, emulator: Emulator
) -> None:
    """The demo's people are the emulator directory's (same e-mails)."""
    from embedportal.demo import ADMIN_EMAIL, VIEWER_EMAIL, seed_accounts

    with session_scope(app.state.session_factory) as db:
        seed_accounts(session=db)
    assert _by_id(client.get("/login").text, "sign-in-microsoft")
    for email in (ADMIN_EMAIL, VIEWER_EMAIL):
        client.cookies.clear()
        assert _sign_in(client, emulator, email).status_code == 303
        assert client.get("/account").status_code == 200


def test_no_code_token_or_secret_reaches_the_logs(
    app: FastAPI,
    client: TestClient,
    emulator: Emulator,
    make_user: MakeUser,
    microsoft_on: None,
    caplog: pytest.LogCaptureFixture,
    request: pytest.FixtureRequest,
) -> None:
    make_user(NORTH)
    # The portal's own loggers at their most talkative; msal, httpx and httpcore as the
    # portal sets them whatever the level (embedportal/logs.py: their debug lines carry codes).
    root = logging.getLogger()
    level = root.level
    handler = configure_logging(level="DEBUG", stream=io.StringIO())
    request.addfinalizer(lambda: (root.removeHandler(handler), root.setLevel(level)))
    caplog.set_level(logging.DEBUG, logger="embedportal")
    start = client.get("/login/microsoft", follow_redirects=False)
    location = _emulator_answer(emulator, start.headers["location"], NORTH)
    code = parse_qs(urlsplit(location).query)["code"][0]
    assert client.get(_callback(location), follow_redirects=False).status_code == 303
    assert client.get(_callback(location), follow_redirects=False).status_code == 400  # a replay
    with session_scope(app.state.session_factory) as db:
        user = find_user_by_email(session=db, email=NORTH)
        assert user is not None
        refresh = stored_refresh_token(session=db, settings=app.state.settings, user_id=user.id)
    assert refresh
    logged = caplog.text
    assert "/login/microsoft/callback" in logged  # the requests were logged, by route only
    for secret in (code, refresh, emulator.settings.client_secret):
        assert secret not in logged
