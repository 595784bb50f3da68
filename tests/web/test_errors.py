from __future__ import annotations

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
