from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.support.html import elements
from tests.support.portal import LoginAs, MakeUser


def test_unknown_page_renders_a_404_page(client: TestClient) -> None:
    response = client.get("/no-such-page")
    assert response.status_code == 404
    assert "text/html" in response.headers["content-type"]
    assert elements(response.text, "h1")[0].text == "404 · Page not found"
    assert "It may have moved" in response.text


def test_the_404_page_speaks_the_readers_language(client: TestClient) -> None:
    response = client.get("/no-such-page", headers={"Accept-Language": "pt-BR"})
    assert response.status_code == 404
    assert elements(response.text, "h1")[0].text == "404 · Página não encontrada"
    assert "Not Found" not in response.text


def test_unknown_api_path_answers_json(client: TestClient) -> None:
    response = client.get("/api/no-such-thing")
    assert response.status_code == 404
    assert response.json()["code"] == "NotFound"


def test_a_value_the_database_cannot_store_is_a_clear_refusal(
    client: TestClient, make_user: MakeUser, login_as: LoginAs
) -> None:
    """PostgreSQL takes no NUL character in text: a search for one is refused with a reason
    before the database is asked (web/input_guard.py), on SQLite as well, never a server
    error."""
    login_as(make_user("admin@example.com", role="admin"))
    for path in ("/admin/users", "/admin/audit", "/admin/capacities", "/admin/capacities/audit"):
        answer = client.get(path, params={"q": "\x00", "user": "\x00"})
        assert answer.status_code == 400, (path, answer.status_code)
        assert "control character" in answer.text


# --- The database failing: a clean 503 with a reason, never a 500 ----------------------------


def _break_the_database(app: FastAPI) -> None:
    from sqlalchemy import create_engine

    from embedportal.db.session import create_session_factory
    from tests.support.servers import free_port

    broken = create_engine(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nowhere")
    app.state.session_factory = create_session_factory(broken)


def test_a_database_down_is_503_with_a_reason_for_the_api(app: FastAPI) -> None:
    _break_the_database(app)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        response = client.post("/api/reports/some-report/token", json={"reason": "load"})
    assert response.status_code == 503
    assert response.json()["code"] == "DatabaseUnavailable"
    assert response.headers["retry-after"]


def test_a_database_down_is_a_503_page_for_people(app: FastAPI) -> None:
    _break_the_database(app)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        response = client.get("/reports")
    assert response.status_code == 503
    assert "text/html" in response.headers["content-type"]
    assert "database" in response.text


def test_a_database_error_inside_a_route_is_503(app: FastAPI) -> None:
    from sqlalchemy.exc import OperationalError

    @app.get("/api/test-broken-database")
    def broken() -> None:
        raise OperationalError("SELECT 1", {}, Exception("server closed the connection"))

    with TestClient(app, base_url="http://127.0.0.1") as client:
        response = client.get("/api/test-broken-database")
    assert response.status_code == 503
    assert response.json()["code"] == "DatabaseUnavailable"


# --- Request ids -------------------------------------------------------------------------------


def test_a_sane_incoming_request_id_is_echoed(client: TestClient) -> None:
    response = client.get("/healthz", headers={"X-Request-ID": "lb-1234.abc"})
    assert response.headers["x-request-id"] == "lb-1234.abc"


@pytest.mark.parametrize("incoming", [None, "", "has space", "x" * 200, "<script>"])
def test_otherwise_a_fresh_request_id_is_made(client: TestClient, incoming: str | None) -> None:
    headers = {} if incoming is None else {"X-Request-ID": incoming}
    response = client.get("/no-such-page", headers=headers)
    made = response.headers["x-request-id"]
    assert made and made != incoming
    assert len(made) == 32


def test_request_latency_is_measured_by_route_template(client: TestClient) -> None:
    client.get("/no-such-page")
    client.post("/api/reports/abc/token", json={"reason": "load"})
    text = client.get("/metrics").text
    assert 'route="/api/reports/{report_id}/token"' in text
    assert 'route="<unmatched>"' in text
    assert "/api/reports/abc/token" not in text
    assert 'status="4xx"' in text


# --- an error nothing else handled: a generic answer naming the request id ------------------


def test_an_unhandled_error_is_a_generic_500_with_a_reference(
    app: FastAPI, caplog: pytest.LogCaptureFixture
) -> None:
    @app.get("/api/test-unhandled")
    def broken_api() -> None:
        raise RuntimeError("secret internal detail")

    @app.get("/test-unhandled-page")
    def broken_page() -> None:
        raise RuntimeError("secret internal detail")

    with TestClient(app, base_url="http://127.0.0.1") as client:
        api = client.get("/api/test-unhandled", headers={"X-Request-ID": "support-ref-1"})
        page = client.get("/test-unhandled-page")
    assert api.status_code == 500
    assert api.json()["code"] == "InternalError"
    assert api.json()["requestId"] == "support-ref-1" == api.headers["x-request-id"]
    assert "support-ref-1" in api.json()["detail"]
    assert page.status_code == 500
    assert "text/html" in page.headers["content-type"]
    assert page.headers["x-request-id"] in page.text
    for answer in (api, page):
        assert "secret internal detail" not in answer.text
        assert "Traceback" not in answer.text
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["cache-control"] == "no-store"
    assert "secret internal detail" in caplog.text, "the log keeps what the caller is not told"
