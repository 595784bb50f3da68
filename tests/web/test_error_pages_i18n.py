"""The pages a person meets when something goes wrong speak their language too: no English
phrase of the English page is left on the Brazilian Portuguese one (the extraction test finds
untranslated messages; this finds text that never went through gettext, such as a framework's
own phrases)."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.support.html import elements
from tests.support.portal import MakeUser, csrf_of

PT = {"Accept-Language": "pt-BR"}
EN = {"Accept-Language": "en"}


def _phrases(html: str) -> list[str]:
    """The page's own words: its title and main content, cut at punctuation; a phrase of two
    words or more (ids, codes and numbers are not phrases)."""
    parts = [elements(html, "title")[0].text, *(main.text for main in elements(html, "main"))]
    phrases = []
    for part in parts:
        for piece in re.split(r"[.·:;,!?()\n]+", part):
            words = re.findall(r"[A-Za-z]{2,}", piece)
            if len(words) >= 2:
                phrases.append(" ".join(piece.split()))
    return phrases


def _english_left(english: str, portuguese: str) -> list[str]:
    text = " ".join(portuguese.split())
    return [phrase for phrase in _phrases(english) if phrase in text and phrase != "embedportal"]


def _unknown_page(client: TestClient, headers: dict[str, str]) -> tuple[int, str]:
    answer = client.get("/no-such-page", headers=headers)
    return answer.status_code, answer.text


def _wrong_method(client: TestClient, headers: dict[str, str]) -> tuple[int, str]:
    answer = client.put("/login", headers=headers)
    return answer.status_code, answer.text


def _no_csrf(client: TestClient, headers: dict[str, str]) -> tuple[int, str]:
    answer = client.post("/login", data={"email": "a@example.com"}, headers=headers)
    return answer.status_code, answer.text


def _unknown_report(client: TestClient, headers: dict[str, str]) -> tuple[int, str]:
    answer = client.get("/reports/no-such-report", headers=headers)
    return answer.status_code, answer.text


def _admin_page_as_viewer(client: TestClient, headers: dict[str, str]) -> tuple[int, str]:
    answer = client.get("/admin/users", headers=headers)
    return answer.status_code, answer.text


def _expired_link(client: TestClient, headers: dict[str, str]) -> tuple[int, str]:
    answer = client.get("/password/set/no-such-link-000000000000000000000000", headers=headers)
    return answer.status_code, answer.text


@pytest.fixture
def signed_in_viewer(client: TestClient, make_user: MakeUser) -> TestClient:
    make_user("ana@example.com", password="a-long-enough-password")
    token = csrf_of(client, "/login")
    client.post(
        "/login",
        data={
            "csrf_token": token,
            "email": "ana@example.com",
            "password": "a-long-enough-password",
        },
    )
    return client


@pytest.mark.parametrize(
    ("visit", "status"),
    [
        (_unknown_page, 404),
        (_wrong_method, 405),
        (_no_csrf, 403),
        (_expired_link, 400),
    ],
)
def test_error_pages_signed_out_leave_no_english(
    client: TestClient, visit: Callable[[TestClient, dict[str, str]], tuple[int, str]], status: int
) -> None:
    english_status, english = visit(client, EN)
    portuguese_status, portuguese = visit(client, PT)
    assert english_status == portuguese_status == status
    assert _english_left(english, portuguese) == []


@pytest.mark.parametrize(
    ("visit", "status"), [(_unknown_report, 404), (_admin_page_as_viewer, 403)]
)
def test_error_pages_signed_in_leave_no_english(
    signed_in_viewer: TestClient,
    visit: Callable[[TestClient, dict[str, str]], tuple[int, str]],
    status: int,
) -> None:
    english_status, english = visit(signed_in_viewer, EN)
    signed_in_viewer.post(
        "/account/language",
        data={"csrf_token": csrf_of(signed_in_viewer), "language": "pt_BR"},
    )
    portuguese_status, portuguese = visit(signed_in_viewer, PT)
    assert english_status == portuguese_status == status
    assert _english_left(english, portuguese) == []


def test_the_last_resort_and_database_down_pages_leave_no_english(app: FastAPI) -> None:
    @app.get("/test-unhandled-page")
    def broken_page() -> None:
        raise RuntimeError("internal detail")

    with TestClient(app, base_url="http://127.0.0.1", raise_server_exceptions=False) as client:
        english = client.get("/test-unhandled-page", headers=EN)
        portuguese = client.get("/test-unhandled-page", headers=PT)
    assert english.status_code == portuguese.status_code == 500
    assert _english_left(english.text, portuguese.text) == []


def test_the_database_down_page_leaves_no_english(app: FastAPI) -> None:
    from sqlalchemy import create_engine

    from embedportal.db.session import create_session_factory
    from tests.support.servers import free_port

    broken = create_engine(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nowhere")
    app.state.session_factory = create_session_factory(broken)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        english = client.get("/reports", headers=EN)
        portuguese = client.get("/reports", headers=PT)
    assert english.status_code == portuguese.status_code == 503
    assert "banco de dados" in portuguese.text
    assert _english_left(english.text, portuguese.text) == []
