"""`Idempotency-Key` on the integration API's changes: a retry answers what the first request
answered without doing it again; a key sent with another request, a refusal, another API key
and a revoked one are not replayed."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from embedportal.access.api_keys import revoke_api_key
from embedportal.db.models import ApiKey, AuditEntry, Group, IdempotentRequest, ReportGrant, SsoLink
from embedportal.db.session import session_scope
from tests.support.api_keys import bearer, make_api_key
from tests.support.portal import MakeUser, a_report


def _count(app: FastAPI, model: type[object]) -> int:
    with session_scope(app.state.session_factory) as db:
        return int(db.scalar(select(func.count()).select_from(model)) or 0)


@pytest.fixture
def api(app: FastAPI, client: TestClient) -> TestClient:
    client.headers.update(bearer(make_api_key(app, name="CRM")))
    return client


def test_a_retry_with_the_same_key_is_answered_as_the_first_and_done_once(
    app: FastAPI, api: TestClient
) -> None:
    headers = {"Idempotency-Key": "4b0f7c1e-2d7a-4a59-9a43-6f1f2c6f0d11"}
    first = api.post("/api/v1/groups", json={"name": "Acme"}, headers=headers)
    again = api.post("/api/v1/groups", json={"name": "Acme"}, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert again.headers["content-type"] == first.headers["content-type"]
    assert _count(app, Group) == 1
    with session_scope(app.state.session_factory) as db:
        created = db.scalars(select(AuditEntry).where(AuditEntry.action == "group.created"))
        assert len(list(created)) == 1


def test_a_retried_sso_link_is_the_same_link_not_a_second_one(
    app: FastAPI, api: TestClient, make_user: MakeUser
) -> None:
    make_user("ana@example.com")
    headers = {"Idempotency-Key": "link-for-ana-1"}
    first = api.post("/api/v1/sso/links", json={"email": "ana@example.com"}, headers=headers)
    again = api.post("/api/v1/sso/links", json={"email": "ana@example.com"}, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json()["url"] == first.json()["url"]
    assert _count(app, SsoLink) == 1
    other = api.post(
        "/api/v1/sso/links", json={"email": "ana@example.com"}, headers={"Idempotency-Key": "2"}
    )
    assert other.json()["url"] != first.json()["url"]


def test_the_same_key_with_another_request_is_refused(app: FastAPI, api: TestClient) -> None:
    headers = {"Idempotency-Key": "k-1"}
    assert api.post("/api/v1/groups", json={"name": "Acme"}, headers=headers).status_code == 201
    other = api.post("/api/v1/groups", json={"name": "Globex"}, headers=headers)
    assert other.status_code == 422
    assert other.json()["code"] == "IdempotencyKeyReused"
    elsewhere = api.post("/api/v1/users", json={"email": "x@example.com"}, headers=headers)
    assert elsewhere.json()["code"] == "IdempotencyKeyReused"
    assert _count(app, Group) == 1


def test_a_refusal_is_not_kept_so_the_retry_is_served_afresh(
    app: FastAPI, api: TestClient, make_user: MakeUser
) -> None:
    with session_scope(app.state.session_factory) as db:
        db.add(a_report("sales"))
    headers = {"Idempotency-Key": "grant-ana"}
    body = {"user_id": 999_999}
    missing = api.post("/api/v1/reports/sales/grants", json=body, headers=headers)
    assert missing.status_code == 404
    assert _count(app, IdempotentRequest) == 0

    user = make_user("ana@example.com")
    body = {"user_id": user.id}
    headers = {"Idempotency-Key": "grant-ana-2"}
    refused = api.post("/api/v1/reports/sales/grants", json={**body, "bad": 1}, headers=headers)
    assert refused.status_code == 422
    granted = api.post("/api/v1/reports/sales/grants", json=body, headers={"Idempotency-Key": "g"})
    assert granted.status_code == 201
    assert _count(app, ReportGrant) == 1


def test_another_api_key_with_the_same_idempotency_key_is_its_own_request(
    app: FastAPI, client: TestClient
) -> None:
    headers = {"Idempotency-Key": "shared-by-chance"}
    first = make_api_key(app, ["groups:write"], name="First")
    second = make_api_key(app, ["groups:write"], name="Second")
    one = client.post("/api/v1/groups", json={"name": "A"}, headers={**headers, **bearer(first)})
    two = client.post("/api/v1/groups", json={"name": "B"}, headers={**headers, **bearer(second)})
    assert one.status_code == two.status_code == 201
    assert "idempotent-replayed" not in two.headers
    assert _count(app, Group) == 2


def test_nothing_is_replayed_to_a_key_that_no_longer_works_or_lacks_the_scope(
    app: FastAPI, client: TestClient
) -> None:
    secret = make_api_key(app, ["groups:write"], name="Soon revoked")
    headers = {"Idempotency-Key": "k", **bearer(secret)}
    assert client.post("/api/v1/groups", json={"name": "A"}, headers=headers).status_code == 201
    with session_scope(app.state.session_factory) as db:
        key = db.scalars(select(ApiKey).where(ApiKey.name == "Soon revoked")).one()
        revoke_api_key(session=db, key=key, actor=None)
    revoked = client.post("/api/v1/groups", json={"name": "A"}, headers=headers)
    assert revoked.status_code == 401
    assert revoked.json()["code"] == "ApiKeyRevoked"

    reader = make_api_key(app, ["groups:read"], name="Reader")
    no_scope = client.post(
        "/api/v1/groups", json={"name": "A"}, headers={"Idempotency-Key": "k", **bearer(reader)}
    )
    assert no_scope.status_code == 403


@pytest.mark.parametrize("key", ["", "has space", "x" * 256, "naïve"])
def test_a_malformed_key_is_refused_with_the_reason(api: TestClient, key: str) -> None:
    response = api.post(
        "/api/v1/groups", json={"name": "A"}, headers={"Idempotency-Key": key.encode()}
    )
    assert response.status_code == 400
    assert response.json()["code"] == "InvalidIdempotencyKey"


def test_a_read_ignores_the_header(api: TestClient) -> None:
    for _ in range(2):
        listed = api.get("/api/v1/groups", headers={"Idempotency-Key": "read"})
        assert listed.status_code == 200
        assert "idempotent-replayed" not in listed.headers


def test_simultaneous_retries_do_it_once(app: FastAPI, api: TestClient) -> None:
    headers = {"Idempotency-Key": "burst"}

    def send(_: int) -> int:
        return api.post("/api/v1/groups", json={"name": "Acme"}, headers=headers).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(send, range(8)))
    # Each either did it, replayed it, or was told the first is still being served.
    assert set(statuses) <= {201, 409}
    assert 201 in statuses
    assert _count(app, Group) == 1


def test_the_openapi_documents_the_header_on_changes_only(app: FastAPI) -> None:
    document = app.openapi()

    def header_names(path: str, method: str) -> set[str]:
        parameters = document["paths"][path][method].get("parameters", [])
        return {p["name"] for p in parameters if p["in"] == "header"}

    assert "Idempotency-Key" in header_names("/api/v1/groups", "post")
    assert "Idempotency-Key" in header_names("/api/v1/users/{user_id}", "patch")
    assert "Idempotency-Key" not in header_names("/api/v1/groups", "get")


def test_a_failure_after_the_claim_leaves_the_retry_to_be_served(
    app: FastAPI, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from embedportal.access import groups

    real_create = groups.create_group

    def broken(**_kwargs: object) -> None:
        raise RuntimeError("the database went away mid-request")

    monkeypatch.setattr(groups, "create_group", broken)
    headers = {"Idempotency-Key": "after-a-failure", **bearer(make_api_key(app))}
    with TestClient(app, raise_server_exceptions=False) as failing:
        assert (
            failing.post("/api/v1/groups", json={"name": "A"}, headers=headers).status_code == 500
        )
    monkeypatch.setattr(groups, "create_group", real_create)
    assert client.post("/api/v1/groups", json={"name": "A"}, headers=headers).status_code == 201
    assert _count(app, Group) == 1


def test_an_answer_that_cannot_be_kept_is_still_sent(
    app: FastAPI, api: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy.exc import OperationalError

    from embedportal.access import idempotency

    def database_gone(**_kwargs: object) -> None:
        raise OperationalError("UPDATE", {}, Exception("connection lost"))

    monkeypatch.setattr(idempotency, "keep_answer", database_gone)
    created = api.post("/api/v1/groups", json={"name": "A"}, headers={"Idempotency-Key": "x"})
    assert created.status_code == 201
    assert created.json()["name"] == "A"
