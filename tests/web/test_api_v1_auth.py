"""Who may call /api/v1: a key with the scope, nothing else; every refusal says why in JSON."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from embedportal.db.base import utcnow
from embedportal.db.models import ApiKey, AuditEntry
from embedportal.db.session import session_scope
from embedportal.logs import scrub
from embedportal.settings import Settings
from tests.support.api_keys import bearer, make_api_key
from tests.support.portal import LoginAs, MakeUser, csrf_of


def _refused(response: object, status: int, code: str) -> str:
    assert response.status_code == status, response.text  # type: ignore[attr-defined]
    body = response.json()  # type: ignore[attr-defined]
    assert set(body) == {"code", "message"}, body
    assert body["code"] == code, body
    assert body["message"]
    return str(body["message"])


def test_no_key_is_401_with_a_bearer_challenge(client: TestClient) -> None:
    response = client.get("/api/v1/users")
    message = _refused(response, 401, "InvalidApiKey")
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert "X-API-Key" in message
    assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer not-a-key"},
        {"Authorization": "Bearer ep_000000000000_abcdefghijklmnop"},
        {"X-API-Key": "ep_nope"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
    ],
)
def test_a_wrong_key_is_401_invalid(client: TestClient, headers: dict[str, str]) -> None:
    response = client.get("/api/v1/users", headers=headers)
    _refused(response, 401, "InvalidApiKey")
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_a_key_in_either_header_works(app: FastAPI, client: TestClient) -> None:
    secret = make_api_key(app, ["users:read"])
    assert client.get("/api/v1/users", headers=bearer(secret)).status_code == 200
    assert client.get("/api/v1/users", headers={"X-API-Key": secret}).status_code == 200
    assert (
        client.get("/api/v1/users", headers={"Authorization": f"bearer  {secret}"}).json()["total"]
        == 0
    )


def test_expired_and_revoked_keys_say_so(app: FastAPI, client: TestClient) -> None:
    expired = make_api_key(
        app, expires_at=utcnow() - timedelta(hours=1), now=utcnow() - timedelta(hours=2)
    )
    response = client.get("/api/v1/users", headers=bearer(expired))
    assert "expired" in _refused(response, 401, "ApiKeyExpired")
    assert response.headers["WWW-Authenticate"] == "Bearer"
    revoked = make_api_key(app, revoked=True)
    assert "revoked" in _refused(
        client.get("/api/v1/users", headers=bearer(revoked)), 401, "ApiKeyRevoked"
    )


def test_a_key_without_the_scope_is_403_naming_it(app: FastAPI, client: TestClient) -> None:
    secret = make_api_key(app, ["groups:read"])
    message = _refused(
        client.get("/api/v1/users", headers=bearer(secret)), 403, "InsufficientScope"
    )
    assert "users:read" in message
    read_only = make_api_key(app, ["users:read"])
    message = _refused(
        client.post("/api/v1/users", headers=bearer(read_only), json={"email": "a@example.com"}),
        403,
        "InsufficientScope",
    )
    assert "users:write" in message


def test_a_session_cookie_does_not_authenticate_and_csrf_does_not_apply(
    app: FastAPI, client: TestClient, make_user: MakeUser, login_as: LoginAs
) -> None:
    login_as(make_user("admin@example.com", role="admin"))
    csrf = csrf_of(client)
    response = client.get("/api/v1/users", headers={"X-CSRF-Token": csrf})
    _refused(response, 401, "InvalidApiKey")
    # No session is looked up for it, and no cookie handed out.
    assert "set-cookie" not in response.headers
    # With a key, no CSRF token is needed, signed in or not.
    secret = make_api_key(app, ["users:write"])
    client.cookies.clear()
    created = client.post(
        "/api/v1/users", headers=bearer(secret), json={"email": "new@example.com"}
    )
    assert created.status_code == 201, created.text


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return {"api_burst": 3, "api_requests_per_minute": 1}


def test_each_key_is_rate_limited_with_retry_after(app: FastAPI, client: TestClient) -> None:
    first = make_api_key(app, ["users:read"], name="First")
    second = make_api_key(app, ["users:read"], name="Second")
    for _attempt in range(3):
        assert client.get("/api/v1/users", headers=bearer(first)).status_code == 200
    response = client.get("/api/v1/users", headers=bearer(first))
    _refused(response, 429, "RateLimited")
    assert 1 <= int(response.headers["Retry-After"]) <= 60
    # Another key has its own allowance.
    assert client.get("/api/v1/users", headers=bearer(second)).status_code == 200


def test_the_last_use_is_written_once_a_minute_at_most(app: FastAPI, client: TestClient) -> None:
    secret = make_api_key(app, ["users:read"])
    key_id = secret.split("_")[1]

    def last_used() -> object:
        with session_scope(app.state.session_factory) as db:
            return db.scalar(select(ApiKey.last_used_at).where(ApiKey.id == key_id))

    assert last_used() is None
    assert client.get("/api/v1/users", headers=bearer(secret)).status_code == 200
    first = last_used()
    assert first is not None
    assert client.get("/api/v1/users", headers=bearer(secret)).status_code == 200
    assert last_used() == first


def test_the_key_is_never_logged(
    app: FastAPI, client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    secret = make_api_key(app, ["users:read"])
    with caplog.at_level(logging.DEBUG):
        client.get("/api/v1/users", headers=bearer(secret))
        client.get("/api/v1/users", headers={"X-API-Key": secret + "x"})
    assert secret not in caplog.text
    # And should one be written by mistake, the scrubber takes it out.
    assert secret not in scrub(f"Authorization: Bearer {secret}")
    assert secret not in scrub(f"X-API-Key: {secret}")
    assert secret not in scrub(f"calling with api_key={secret}")


def test_messages_follow_the_callers_language(client: TestClient) -> None:
    response = client.get("/api/v1/users", headers={"Accept-Language": "pt-BR"})
    assert "Envie uma chave de API" in _refused(response, 401, "InvalidApiKey")


def test_an_address_sending_wrong_keys_is_held_off_whatever_key_it_sends(
    app: FastAPI, client: TestClient, settings: Settings
) -> None:
    good = make_api_key(app, ["users:read"])
    for attempt in range(settings.api_failed_keys_per_minute):
        wrong = bearer(f"ep_guess{attempt:04d}_{'x' * 40}")
        _refused(client.get("/api/v1/users", headers=wrong), 401, "InvalidApiKey")
    for headers in (bearer("ep_another_guess"), bearer(good)):
        response = client.get("/api/v1/users", headers=headers)
        _refused(response, 429, "TooManyFailedKeys")
        assert 1 <= int(response.headers["Retry-After"]) <= 60
    # Another address is not held off, and a right key never spends from its allowance (the
    # key's own rate limit, small in this module, still applies).
    other = TestClient(app, client=("203.0.113.9", 50000))
    for _attempt in range(settings.api_failed_keys_per_minute + 5):
        answer = other.get("/api/v1/users", headers=bearer(good))
        assert answer.status_code == 200 or answer.json()["code"] == "RateLimited"
    _refused(other.get("/api/v1/users", headers=bearer("nope")), 401, "InvalidApiKey")


def test_reads_are_audited_once_a_day_per_key_and_call(app: FastAPI, client: TestClient) -> None:
    secret = make_api_key(app, ["users:read", "audit:read"], name="CRM")
    for _attempt in range(2):
        assert client.get("/api/v1/users", headers=bearer(secret)).status_code == 200
    assert client.get("/api/v1/users/12345", headers=bearer(secret)).status_code == 404
    with session_scope(app.state.session_factory) as db:
        reads = db.scalars(
            select(AuditEntry).where(AuditEntry.action == "api_key.read").order_by(AuditEntry.id)
        ).all()
        assert [(entry.detail["call"], entry.detail["api_key"]) for entry in reads] == [
            ("GET /api/v1/users", "CRM"),
            ("GET /api/v1/users/{user_id}", "CRM"),
        ]
        assert {entry.target_id for entry in reads} == {secret.split("_")[1]}
