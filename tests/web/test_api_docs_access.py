"""The API reference (issue #11): the OpenAPI schema and Swagger UI are open in development and
for administrators elsewhere, and Swagger UI comes from the npm package, not a CDN."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from embedportal.app import create_app
from embedportal.settings import Settings
from tests.support.portal import LoginAs, MakeUser

pytestmark = pytest.mark.usefixtures("fast_password_hashing")

ROOT = Path(__file__).resolve().parents[2]
PATHS = ("/api/openapi.json", "/api/docs")


@pytest.mark.parametrize("path", PATHS)
def test_outside_development_a_signed_out_caller_gets_401(client: TestClient, path: str) -> None:
    answer = client.get(path)
    assert answer.status_code == 401
    assert answer.json()["code"] == "Unauthorized"
    assert "paths" not in answer.text


@pytest.mark.parametrize("path", PATHS)
def test_outside_development_a_viewer_gets_403(
    client: TestClient, make_user: MakeUser, login_as: LoginAs, path: str
) -> None:
    login_as(make_user("viewer@example.com"))
    answer = client.get(path)
    assert answer.status_code == 403
    assert "paths" not in answer.text


def test_an_administrator_reads_the_schema_and_the_reference(
    client: TestClient, make_user: MakeUser, login_as: LoginAs
) -> None:
    login_as(make_user("admin@example.com", role="admin"))
    schema = client.get("/api/openapi.json")
    assert schema.status_code == 200
    assert "/api/reports/{report_id}/token" in schema.json()["paths"]
    assert "/api/openapi.json" not in schema.json()["paths"], "the reference is not an API route"
    page = client.get("/api/docs")
    assert page.status_code == 200
    sources = re.findall(r'<(?:script|link)[^>]+(?:src|href)="([^"]+)"', page.text)
    assert "/static/vendor/swagger-ui-bundle.js" in sources
    assert "/static/vendor/swagger-ui.css" in sources
    assert all(source.startswith("/") for source in sources), sources
    for vendor in ("swagger-ui-bundle.js", "swagger-ui.css"):
        assert client.get(f"/static/vendor/{vendor}").status_code == 200


@pytest.fixture
def development_app(settings: Settings) -> Iterator[FastAPI]:
    application = create_app(settings.model_copy(update={"environment": "development"}))
    yield application
    application.state.engine.dispose()


def test_in_development_the_reference_is_open(development_app: FastAPI) -> None:
    with TestClient(development_app, base_url="http://127.0.0.1") as client:
        assert client.get("/api/openapi.json").status_code == 200
        assert client.get("/api/docs").status_code == 200


def test_swagger_ui_is_a_pinned_npm_package() -> None:
    package = json.loads((ROOT / "package.json").read_text(encoding="utf-8"))
    assert re.fullmatch(r"\d+\.\d+\.\d+", package["dependencies"]["swagger-ui-dist"])
