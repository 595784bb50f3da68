"""Every answer carries the security headers (issue #11, item 3): pages signed in and out, admin
pages, JSON, errors, files; HSTS only over https; framing as configured."""

from __future__ import annotations

import re

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import ValidationError

from embedportal.app import create_app
from embedportal.settings import Settings
from embedportal.web.security_headers import content_security_policy, x_frame_options
from tests.support.portal import LoginAs, MakeUser


def directives(policy: str) -> dict[str, list[str]]:
    parsed: dict[str, list[str]] = {}
    for part in policy.split(";"):
        name, *values = part.split()
        assert name not in parsed, f"directive {name} twice"
        parsed[name] = values
    return parsed


def assert_protected(response: object, *, cached: bool = False) -> None:
    headers = response.headers  # type: ignore[attr-defined]
    policy = directives(headers["content-security-policy"])
    assert policy["default-src"] == ["'self'"]
    assert policy["script-src"] == ["'self'"], "no inline script, no eval, no other origin"
    assert policy["object-src"] == ["'none'"]
    assert policy["base-uri"] == ["'self'"]
    assert policy["form-action"] == ["'self'"]
    assert policy["frame-ancestors"] == ["'self'"]
    assert headers["x-frame-options"] == "SAMEORIGIN"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "same-origin"
    assert "strict-transport-security" not in headers, "plain http: no HSTS"
    assert "access-control-allow-origin" not in headers, "same-origin only: no CORS"
    content_type = headers.get("content-type", "")
    if content_type.startswith("text/html"):
        assert "charset=utf-8" in content_type
    if not cached:
        assert headers["cache-control"] == "no-store"


def test_pages_for_everyone_carry_the_headers(client: TestClient) -> None:
    for path in ("/login", "/healthz", "/api/session", "/no-such-page", "/api/no-such-thing"):
        response = client.get(path)
        assert_protected(response)


def test_signed_in_and_admin_pages_and_json_carry_the_headers(
    client: TestClient, make_user: MakeUser, login_as: LoginAs
) -> None:
    login_as(make_user("admin@example.com", role="admin"))
    for path in (
        "/reports",
        "/account",
        "/tv",
        "/admin/users",
        "/admin/settings",
        "/admin/health/figures",
        "/api/session",
        "/reports/no-such-report",
    ):
        response = client.get(path)
        assert response.status_code in (200, 404), path
        assert_protected(response)
    refused = client.post("/api/telemetry", json={"events": []})
    assert refused.status_code == 403
    assert_protected(refused)


def test_static_files_keep_their_caching(client: TestClient) -> None:
    asset = client.get("/static/app/js/viewer.js")
    assert asset.status_code == 200
    assert_protected(asset, cached=True)
    assert asset.headers.get("cache-control") != "no-store"
    vendor = client.get("/static/vendor/htmx.min.js")
    assert_protected(vendor, cached=True)
    assert vendor.headers["cache-control"] == "public, max-age=3600"


def test_report_frames_may_come_from_power_bi_and_the_emulator() -> None:
    real = directives(content_security_policy(Settings(_env_file=None)))  # type: ignore[call-arg]
    assert "https://app.powerbi.com" in real["frame-src"]
    assert real["connect-src"] == ["'self'"]
    emulated = directives(
        content_security_policy(
            Settings(  # type: ignore[call-arg]
                _env_file=None,
                powerbi_api_url="http://127.0.0.1:8001",
                report_frame_origins="https://app.powerbigov.us",
            )
        )
    )
    assert "http://127.0.0.1:8001" in emulated["frame-src"]
    assert "https://app.powerbigov.us" in emulated["frame-src"]
    builtin = directives(
        content_security_policy(
            Settings(_env_file=None, emulator_url="http://127.0.0.1:9001")  # type: ignore[call-arg]
        )
    )
    assert "http://127.0.0.1:9001" in builtin["frame-src"]


@pytest.mark.parametrize(
    ("ancestors", "frame_options"),
    [("'self'", "SAMEORIGIN"), ("'none'", "DENY"), ("'self' https://intranet.example.com", None)],
)
def test_framing_follows_the_setting(ancestors: str, frame_options: str | None) -> None:
    settings = Settings(_env_file=None, frame_ancestors=ancestors)  # type: ignore[call-arg]
    assert directives(content_security_policy(settings))["frame-ancestors"] == ancestors.split()
    assert x_frame_options(settings.frame_ancestors) == frame_options


@pytest.mark.parametrize(
    "ancestors",
    [
        "",
        "'self'; script-src *",
        "https://a.example.com,https://b.example.com",
        "'none' 'self'",
        "*",
    ],
)
def test_a_frame_ancestors_value_that_could_bend_the_policy_is_refused(ancestors: str) -> None:
    with pytest.raises(ValidationError):
        Settings(_env_file=None, frame_ancestors=ancestors)  # type: ignore[call-arg]


def test_an_organization_that_embeds_the_portal_gets_no_contradicting_x_frame_options(
    settings: Settings,
) -> None:
    app = create_app(
        settings.model_copy(update={"frame_ancestors": "'self' https://intranet.example.com"})
    )
    try:
        with TestClient(app, base_url="http://127.0.0.1") as client:
            response = client.get("/login")
    finally:
        app.state.engine.dispose()
    policy = directives(response.headers["content-security-policy"])
    assert policy["frame-ancestors"] == ["'self'", "https://intranet.example.com"]
    assert "x-frame-options" not in response.headers


def _served_at(settings: Settings, public_url: str | None) -> FastAPI:
    return create_app(settings.model_copy(update={"public_url": public_url}))


def test_hsts_when_the_public_url_is_https(settings: Settings) -> None:
    app = _served_at(settings, "https://reports.example.com")
    try:
        with TestClient(app, base_url="http://127.0.0.1") as client:
            for path in ("/login", "/api/session", "/static/app/js/viewer.js"):
                assert client.get(path).headers["strict-transport-security"] == ("max-age=31536000")
    finally:
        app.state.engine.dispose()


def test_hsts_on_a_request_that_came_over_https(client: TestClient) -> None:
    with TestClient(client.app, base_url="https://127.0.0.1") as secure:
        assert secure.get("/login").headers["strict-transport-security"] == "max-age=31536000"
    assert "strict-transport-security" not in client.get("/login").headers


def test_the_pages_hold_no_inline_script_and_no_htmx_eval(
    client: TestClient, make_user: MakeUser, login_as: LoginAs
) -> None:
    """What the CSP would block must not be on the pages: inline event handlers, `hx-on`
    (htmx evaluates it), `<script>` bodies other than JSON data."""
    login_as(make_user("admin@example.com", role="admin"))
    for path in (
        "/reports",
        "/tv",
        "/admin/users",
        "/admin/audit",
        "/admin/viewers",
        "/admin/health",
    ):
        page = client.get(path).text
        assert "hx-on" not in page, path
        assert not re.search(r"\son[a-z]+=", page), path
        for attributes, body in re.findall(r"<script([^>]*)>(.*?)</script>", page, re.S):
            assert "src=" in attributes or 'type="application/json"' in attributes, (path, body)
        assert '"allowEval": false' in page


@pytest.mark.parametrize(
    "path",
    [
        "/static/app/",
        "/static/app/js/",
        "/static/app/../../pyproject.toml",
        "/static/vendor/..%2F..%2Fpackage.json",
        "/static/vendor/package.json",
        "/.git/config",
    ],
)
def test_no_directory_listing_and_nothing_outside_the_served_files(
    client: TestClient, path: str
) -> None:
    answer = client.get(path)
    assert answer.status_code in (400, 404), (path, answer.status_code)
    assert '"dependencies"' not in answer.text and "[project]" not in answer.text
