"""/metrics in production (issue #11): behind its bearer token, or, without one, only for a
direct connection from the machine itself."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr

from embedportal.app import create_app
from embedportal.settings import Settings
from embedportal.web.routes.events import metrics_refusal


@pytest.fixture
def production_app(settings: Settings) -> Iterator[FastAPI]:
    application = create_app(settings.model_copy(update={"environment": "production"}))
    yield application
    application.state.engine.dispose()


def _client(app: FastAPI, host: str) -> TestClient:
    return TestClient(app, base_url="http://127.0.0.1", client=(host, 40000))


def test_in_production_without_a_token_only_this_machine_reads_metrics(
    production_app: FastAPI,
) -> None:
    with _client(production_app, "127.0.0.1") as local:
        assert local.get("/metrics").status_code == 200
        # Through a proxy on this machine: the caller is whoever the proxy forwards.
        proxied = local.get("/metrics", headers={"X-Forwarded-For": "203.0.113.9"})
        assert proxied.status_code == 401
    with _client(production_app, "203.0.113.9") as remote:
        refused = remote.get("/metrics")
        assert refused.status_code == 401
        assert "EMBEDPORTAL_METRICS_TOKEN" in refused.text
        assert "embedportal_" not in refused.text
    with _client(production_app, "::1") as local6:
        assert local6.get("/metrics").status_code == 200


def test_in_production_with_a_token_only_its_bearer_reads_metrics(settings: Settings) -> None:
    app = create_app(
        settings.model_copy(
            update={"environment": "production", "metrics_token": SecretStr("t" * 40)}
        )
    )
    try:
        with _client(app, "127.0.0.1") as local:
            assert local.get("/metrics").status_code == 401, "the token counts, not the address"
            bearer = {"Authorization": "Bearer " + "t" * 40}
            assert local.get("/metrics", headers=bearer).status_code == 200
    finally:
        app.state.engine.dispose()


@pytest.mark.parametrize(
    ("environment", "host", "forwarded", "allowed"),
    [
        ("development", "203.0.113.9", False, True),
        ("test", "203.0.113.9", True, True),
        ("production", "127.0.0.1", False, True),
        ("production", "127.0.0.1", True, False),
        ("production", "10.0.0.5", False, False),
        ("production", None, False, False),
    ],
)
def test_who_reads_metrics_without_a_token(
    environment: str, host: str | None, forwarded: bool, allowed: bool
) -> None:
    refusal = metrics_refusal(
        environment=environment,
        token=None,
        authorization=None,
        client_host=host,
        forwarded=forwarded,
    )
    assert (refusal is None) is allowed
