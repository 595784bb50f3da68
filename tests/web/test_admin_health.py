"""Admin → Health: the dependencies' state and this instance's figures, for administrators."""

from __future__ import annotations

import math

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from embedportal.metrics import PortalMetrics, quantile_from_buckets, snapshot
from embedportal.web.deps import get_health_checker
from tests.support.html import elements, links
from tests.support.portal import LoginAs, MakeHealthChecker, MakeUser
from tests.support.servers import free_port


@pytest.fixture
def admin(make_user: MakeUser, login_as: LoginAs) -> TestClient:
    return login_as(make_user("admin@example.com", role="admin"))


def test_the_page_shows_dependencies_figures_and_the_chart_script(admin: TestClient) -> None:
    admin.get("/reports")  # something to count
    page = admin.get("/admin/health")
    assert page.status_code == 200
    shown = [e.attrs["data-dependency"] for e in elements(page.text, having="data-dependency")]
    assert "database" in shown
    assert _status_of(page.text) == "ok"
    assert "Every dependency answers." in page.text
    assert "Open viewers" in page.text
    scripts = [script.attrs.get("src") or "" for script in elements(page.text, "script")]
    assert any(src.startswith("/static/app/js/health-charts.js") for src in scripts)
    assert "/admin/health" in [href for _text, href in links(page.text)]  # in the admin menu


def test_a_dependency_down_is_named_on_the_page(
    app: FastAPI, admin: TestClient, make_health_checker: MakeHealthChecker
) -> None:
    checker = make_health_checker(
        engine=app.state.engine,
        redis_url=None,
        powerbi_url=f"http://127.0.0.1:{free_port()}",
        timeout_seconds=2.0,
    )
    app.dependency_overrides[get_health_checker] = lambda: checker
    page = admin.get("/admin/health")
    assert _status_of(page.text) == "degraded"
    assert "Down: the portal serves without it" in page.text


def _status_of(html: str) -> str | None:
    """The page's overall status (the first element that states one)."""
    found = elements(html, having="data-status")
    return found[0].attrs["data-status"] if found else None


def test_figures_are_json_for_the_charts(admin: TestClient) -> None:
    admin.get("/reports")
    answer = admin.get("/admin/health/figures")
    assert answer.status_code == 200
    body = answer.json()
    assert body["status"] == "ok"
    assert body["figures"]["requests"] >= 1
    assert body["figures"]["request_p99"] is not None
    assert [d["name"] for d in body["dependencies"]] == ["database"]


def test_the_page_is_in_portuguese_too(admin: TestClient) -> None:
    admin.cookies.set("embedportal_lang", "pt_BR")
    page = admin.get("/admin/health", headers={"Accept-Language": "pt-BR"})
    assert page.status_code == 200
    assert "Dependências" in page.text


@pytest.mark.parametrize(
    ("buckets", "q", "expected"),
    [
        ([], 0.5, None),
        ([(0.1, 0.0), (math.inf, 0.0)], 0.5, None),
        ([(0.1, 10.0), (math.inf, 10.0)], 0.5, 0.05),
        ([(0.1, 0.0), (0.2, 10.0), (math.inf, 10.0)], 0.5, 0.15),
        ([(0.1, 5.0), (0.2, 5.0), (math.inf, 10.0)], 0.99, 0.2),
        ([(0.1, 10.0), (0.2, 10.0), (math.inf, 10.0)], 1.0, 0.1),
    ],
)
def test_quantiles_from_buckets(
    buckets: list[tuple[float, float]], q: float, expected: float | None
) -> None:
    result = quantile_from_buckets(buckets, q)
    if expected is None:
        assert result is None
    else:
        assert result == pytest.approx(expected)


def test_snapshot_adds_up_labelled_series() -> None:
    metrics = PortalMetrics()
    metrics.observe_request(route="/a", method="GET", status=200, seconds=0.01)
    metrics.observe_request(route="/b", method="POST", status=503, seconds=0.02)
    metrics.token_requests.labels(outcome="issued").inc()
    metrics.token_requests.labels(outcome="forbidden").inc()
    metrics.observe_token_request(outcome="hit", seconds=0.003)
    metrics.observe_generate_token(ok=True, seconds=0.2)
    figures = snapshot(metrics)
    assert figures["requests"] == 2
    assert figures["token_requests"] == 2
    assert figures["token_p99"] is not None
    assert figures["request_p50"] is not None and figures["request_p50"] <= 0.025
