from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.support.portal import LoginAs, MakeUser


def test_unknown_page_renders_a_404_page(client: TestClient) -> None:
    response = client.get("/no-such-page")
    assert response.status_code == 404
    assert "text/html" in response.headers["content-type"]
    assert "Not Found" in response.text


def test_unknown_api_path_answers_json(client: TestClient) -> None:
    response = client.get("/api/no-such-thing")
    assert response.status_code == 404
    assert response.json()["code"] == "NotFound"


def test_a_value_the_database_cannot_store_is_a_clear_refusal(
    client: TestClient, make_user: MakeUser, login_as: LoginAs
) -> None:
    """PostgreSQL takes no NUL character in text: a search for one is refused with a reason
    (on SQLite it is simply found nowhere), never a server error."""
    login_as(make_user("admin@example.com", role="admin"))
    for path in ("/admin/users", "/admin/audit", "/admin/capacities", "/admin/capacities/audit"):
        answer = client.get(path, params={"q": "\x00", "user": "\x00"})
        assert answer.status_code in (200, 400), (path, answer.status_code)
        if answer.status_code == 400:
            assert "cannot be stored" in answer.text


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
