"""The layered fixtures: database_url → settings → app → client → login_as."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from embedportal.app import create_app
from embedportal.settings import Settings
from tests.support.databases import PostgresTemplate, SQLiteTemplate

TEST_SECRET_KEY = "test-secret-key-that-is-long-enough-for-production-checks"


@pytest.fixture(scope="session")
def database_template(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[SQLiteTemplate | PostgresTemplate]:
    server_url = os.environ.get("EMBEDPORTAL_TEST_DATABASE_URL")
    if server_url:
        template = PostgresTemplate(server_url)
        yield template
        template.close()
    else:
        yield SQLiteTemplate(tmp_path_factory.mktemp("db-template"))


@pytest.fixture
def database_url(
    database_template: SQLiteTemplate | PostgresTemplate, tmp_path: Path
) -> Iterator[str]:
    url = database_template.fresh(tmp_path)
    yield url
    database_template.drop(url)


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    """Override in a test module to change settings for the app under test."""
    return {}


@pytest.fixture
def settings(database_url: str, tmp_path: Path, settings_overrides: dict[str, object]) -> Settings:
    values: dict[str, object] = {
        "environment": "test",
        "secret_key": TEST_SECRET_KEY,
        "database_url": database_url,
        "data_dir": tmp_path,
        "demo": False,
        **settings_overrides,
    }
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture
def app(settings: Settings) -> Iterator[FastAPI]:
    application = create_app(settings)
    yield application
    application.state.engine.dispose()


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, base_url="http://127.0.0.1") as test_client:
        yield test_client


LoginAs = Callable[..., TestClient]


@pytest.fixture
def redis_url() -> str:
    """The Redis test server; the Makefile (and so CI) always sets it."""
    url = os.environ.get("EMBEDPORTAL_TEST_REDIS_URL")
    if not url:
        pytest.skip("EMBEDPORTAL_TEST_REDIS_URL is not set (make test sets it)")
    return url
