"""Entra ID: the token endpoint, discovery, and msal using the emulator as its authority."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from urllib.parse import quote_plus

import msal
import pytest

from embedportal.emulator.tokens import (
    ARM_AUDIENCE,
    ARM_SCOPE,
    POWERBI_AUDIENCE,
    POWERBI_SCOPE,
    unverified_claims,
)
from tests.emulator.harness import Emulator, running_emulator
from tests.emulator.msal_support import HttpsToHttpClient


def _assert_entra_error(body: dict[str, object], error: str, code: int) -> None:
    assert body["error"] == error
    assert body["error_codes"] == [code]
    description = body["error_description"]
    assert isinstance(description, str) and description.startswith(f"AADSTS{code}: ")
    for key in ("timestamp", "trace_id", "correlation_id"):
        assert body[key]


@pytest.mark.parametrize(
    ("scope", "audience"), [(POWERBI_SCOPE, POWERBI_AUDIENCE), (ARM_SCOPE, ARM_AUDIENCE)]
)
def test_client_credentials_token_for_each_scope(
    shared_emulator: Emulator, scope: str, audience: str
) -> None:
    response = shared_emulator.token_response(scope)
    assert response.status_code == 200
    assert response.headers["cache-control"].startswith("no-store")
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert 3599 <= body["expires_in"] <= 5400
    assert body["ext_expires_in"] == body["expires_in"]
    claims = unverified_claims(body["access_token"])
    assert claims["aud"] == audience
    assert claims["tid"] == shared_emulator.settings.tenant_id
    assert claims["appid"] == shared_emulator.settings.client_id
    assert claims["exp"] - claims["iat"] >= 3599


def test_secret_in_http_basic_is_accepted(shared_emulator: Emulator) -> None:
    settings = shared_emulator.settings
    pair = f"{quote_plus(settings.client_id)}:{quote_plus(settings.client_secret)}"
    basic = base64.b64encode(pair.encode()).decode()
    response = shared_emulator.http.post(
        shared_emulator.token_url,
        data={"grant_type": "client_credentials", "scope": POWERBI_SCOPE},
        headers={"Authorization": f"Basic {basic}"},
    )
    assert response.status_code == 200, response.text


def test_lifetimes_are_drawn_between_the_bounds() -> None:
    with running_emulator(entra_min_lifetime_seconds=100, entra_max_lifetime_seconds=200) as emu:
        lifetimes = {emu.token_response().json()["expires_in"] for _ in range(12)}
    assert all(99 <= value <= 200 for value in lifetimes)
    assert len(lifetimes) > 1  # drawn, not fixed


@pytest.mark.parametrize(
    ("overrides", "status", "error", "code"),
    [
        ({"client_secret": "wrong"}, 401, "invalid_client", 7000215),
        ({"client_id": "11111111-1111-1111-1111-111111111111"}, 401, "invalid_client", 700016),
        ({"client_secret": ""}, 401, "invalid_client", 7000218),
        ({"scope": "https://graph.microsoft.com/.default"}, 400, "invalid_scope", 1002012),
        (
            {"scope": f"{POWERBI_SCOPE} {ARM_SCOPE}"},
            400,
            "invalid_scope",
            1002012,
        ),
        (
            {"scope": "https://analysis.windows.net/powerbi/api/Report.Read.All"},
            400,
            "invalid_scope",
            1002012,
        ),
        ({"scope": ""}, 400, "invalid_request", 900144),
        ({"grant_type": "password"}, 400, "unsupported_grant_type", 70003),
        ({"grant_type": ""}, 400, "invalid_request", 900144),
    ],
)
def test_token_endpoint_errors(
    shared_emulator: Emulator, overrides: dict[str, str], status: int, error: str, code: int
) -> None:
    response = shared_emulator.token_response(**overrides)
    assert response.status_code == status
    _assert_entra_error(response.json(), error, code)


def test_unknown_tenant(shared_emulator: Emulator) -> None:
    response = shared_emulator.http.post(
        "/contoso.onmicrosoft.com/oauth2/v2.0/token",
        data={"grant_type": "client_credentials", "scope": POWERBI_SCOPE},
    )
    assert response.status_code == 400
    _assert_entra_error(response.json(), "invalid_request", 90002)


def test_json_body_is_not_a_form(shared_emulator: Emulator) -> None:
    response = shared_emulator.http.post(
        shared_emulator.token_url, json={"grant_type": "client_credentials"}
    )
    assert response.status_code == 400
    _assert_entra_error(response.json(), "invalid_request", 900144)


def test_malformed_multipart_body(shared_emulator: Emulator) -> None:
    response = shared_emulator.http.post(
        shared_emulator.token_url,
        content=b"garbage",
        headers={"Content-Type": "multipart/form-data"},
    )
    assert response.status_code == 400
    _assert_entra_error(response.json(), "invalid_request", 900144)


def test_openid_configuration_uses_the_request_base_url(shared_emulator: Emulator) -> None:
    tenant = shared_emulator.settings.tenant_id
    response = shared_emulator.http.get(f"/{tenant}/v2.0/.well-known/openid-configuration")
    assert response.status_code == 200
    body = response.json()
    base = shared_emulator.base_url
    assert body["token_endpoint"] == f"{base}/{tenant}/oauth2/v2.0/token"
    assert body["authorization_endpoint"] == f"{base}/{tenant}/oauth2/v2.0/authorize"
    assert body["issuer"] == f"{base}/{tenant}/v2.0"
    unknown = shared_emulator.http.get("/nobody/v2.0/.well-known/openid-configuration")
    assert unknown.status_code == 400


def test_public_url_overrides_the_request_base_url() -> None:
    with running_emulator(public_url="https://emulator.example.com/") as emu:
        tenant = emu.settings.tenant_id
        body = emu.http.get(f"/{tenant}/v2.0/.well-known/openid-configuration").json()
        assert body["token_endpoint"] == f"https://emulator.example.com/{tenant}/oauth2/v2.0/token"


def test_instance_discovery(shared_emulator: Emulator) -> None:
    tenant = shared_emulator.settings.tenant_id
    netloc = shared_emulator.base_url.removeprefix("http://")
    response = shared_emulator.http.get(
        "/common/discovery/instance",
        params={
            "api-version": "1.1",
            "authorization_endpoint": f"https://{netloc}/{tenant}/oauth2/v2.0/authorize",
        },
    )
    assert response.status_code == 200
    body = response.json()
    assert body["tenant_discovery_endpoint"] == (
        f"{shared_emulator.base_url}/{tenant}/v2.0/.well-known/openid-configuration"
    )
    assert body["metadata"][0]["aliases"] == [netloc]
    bad = shared_emulator.http.get("/common/discovery/instance")
    assert bad.status_code == 400
    assert bad.json()["error"] == "invalid_instance"


# --- msal ----------------------------------------------------------------------------------------


@pytest.fixture
def msal_http(shared_emulator: Emulator) -> Iterator[HttpsToHttpClient]:
    client = HttpsToHttpClient(shared_emulator.base_url)
    yield client
    client.close()


def _msal_app(
    emulator: Emulator, http: HttpsToHttpClient, *, secret: str | None = None, **kwargs: object
) -> msal.ConfidentialClientApplication:
    settings = emulator.settings
    return msal.ConfidentialClientApplication(
        settings.client_id,
        client_credential=secret if secret is not None else settings.client_secret,
        authority=f"{http.https_origin}/{settings.tenant_id}",
        http_client=http,
        **kwargs,
    )


def test_msal_acquires_tokens_for_both_scopes(
    shared_emulator: Emulator, msal_http: HttpsToHttpClient
) -> None:
    app = _msal_app(shared_emulator, msal_http, instance_discovery=False)
    powerbi = app.acquire_token_for_client(scopes=[POWERBI_SCOPE])
    assert "access_token" in powerbi, powerbi
    assert powerbi["token_type"] == "Bearer"
    arm = app.acquire_token_for_client(scopes=[ARM_SCOPE])
    assert "access_token" in arm, arm
    assert unverified_claims(arm["access_token"])["aud"] == ARM_AUDIENCE

    # The token works where it should.
    groups = shared_emulator.http.get(
        "/v1.0/myorg/groups", headers={"Authorization": f"Bearer {powerbi['access_token']}"}
    )
    assert groups.status_code == 200
    capacity = shared_emulator.http.get(
        shared_emulator.capacity_path,
        params={"api-version": "2021-01-01"},
        headers={"Authorization": f"Bearer {arm['access_token']}"},
    )
    assert capacity.status_code == 200
    # msal only ever talked to the emulator's (https-facaded) origin.
    assert all(url.startswith(msal_http.https_origin) for _, url in msal_http.requests)


def test_msal_with_the_emulators_instance_discovery(
    shared_emulator: Emulator, msal_http: HttpsToHttpClient
) -> None:
    app = _msal_app(
        shared_emulator,
        msal_http,
        instance_discovery=f"{msal_http.https_origin}/common/discovery/instance",
    )
    result = app.acquire_token_for_client(scopes=[POWERBI_SCOPE])
    assert "access_token" in result, result
    assert any("/common/discovery/instance" in url for _, url in msal_http.requests)


def test_msal_reports_a_bad_secret_clearly(
    shared_emulator: Emulator, msal_http: HttpsToHttpClient
) -> None:
    app = _msal_app(shared_emulator, msal_http, secret="not-the-secret", instance_discovery=False)
    result = app.acquire_token_for_client(scopes=[POWERBI_SCOPE])
    assert "access_token" not in result
    assert result["error"] == "invalid_client"
    assert 7000215 in result["error_codes"]
    assert "Invalid client secret" in result["error_description"]


def test_msal_refuses_an_unknown_tenant(
    shared_emulator: Emulator, msal_http: HttpsToHttpClient
) -> None:
    with pytest.raises(ValueError, match="tenant"):
        msal.ConfidentialClientApplication(
            shared_emulator.settings.client_id,
            client_credential=shared_emulator.settings.client_secret,
            authority=f"{msal_http.https_origin}/not-a-tenant",
            http_client=msal_http,
            instance_discovery=False,
        )


def test_msal_gets_a_fresh_token_when_lifetimes_are_short() -> None:
    """With test-sized Entra lifetimes msal cannot serve a cached token for long."""
    with running_emulator(entra_min_lifetime_seconds=1, entra_max_lifetime_seconds=1) as emu:
        http = HttpsToHttpClient(emu.base_url)
        try:
            app = _msal_app(emu, http, instance_discovery=False)
            first = app.acquire_token_for_client(scopes=[POWERBI_SCOPE])
            time.sleep(1.1)
            second = app.acquire_token_for_client(scopes=[POWERBI_SCOPE])
        finally:
            http.close()
        assert first["access_token"] != second["access_token"]
        assert emu.stats()["entraTokensIssued"] == 2
