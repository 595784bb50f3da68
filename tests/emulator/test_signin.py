"""Entra sign-in for people: the authorization code flow with PKCE through msal, refresh tokens,
RS256 id tokens checked against the JWKS, and every refusal a client must be able to see."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import msal
import pytest

from embedportal.emulator.tokens import POWERBI_AUDIENCE, POWERBI_SCOPE, unverified_claims
from tests.emulator.harness import FINANCE_GROUP, GROUP, Emulator, running_emulator
from tests.emulator.msal_support import HttpsToHttpClient
from tests.support.html import form_fields

REDIRECT_URI = "http://127.0.0.1:9/auth/microsoft/callback"
NORTH = "north@example.com"


@pytest.fixture
def msal_http(shared_emulator: Emulator) -> Iterator[HttpsToHttpClient]:
    client = HttpsToHttpClient(shared_emulator.base_url)
    yield client
    client.close()


def _msal_app(emulator: Emulator, http: HttpsToHttpClient) -> msal.ConfidentialClientApplication:
    settings = emulator.settings
    return msal.ConfidentialClientApplication(
        settings.client_id,
        client_credential=settings.client_secret,
        authority=f"{http.https_origin}/{settings.tenant_id}",
        http_client=http,
        instance_discovery=False,
    )


def _plain_http(url: str) -> str:
    """msal builds https URLs for the facade; the browser reaches the emulator over http."""
    return url.replace("https://", "http://", 1)


def _sign_in(
    emulator: Emulator, auth_uri: str, *, email: str = NORTH, password: str | None = None
) -> httpx.Response:
    """What a person does on the sign-in page: open it, type, submit."""
    page = emulator.http.get(_plain_http(auth_uri))
    assert page.status_code == 200, page.text
    fields = form_fields(page.text)
    form = {name: field.value or "" for name, field in fields.items()}
    form["email"] = email
    form["password"] = password if password is not None else emulator.settings.directory_password
    return emulator.http.post(_plain_http(auth_uri).split("?")[0], data=form)


def _answer(response: httpx.Response) -> dict[str, str]:
    """What the sign-in sends back to the client: a redirect's query (response_mode=query) or
    the fields of the form the page posts (form_post)."""
    if response.status_code == 302:
        query = parse_qs(urlsplit(response.headers["location"]).query)
        return {key: values[0] for key, values in query.items()}
    assert response.status_code == 200, response.text
    fields = form_fields(response.text, action=REDIRECT_URI)
    return {name: field.value or "" for name, field in fields.items()}


def _flow(app: msal.ConfidentialClientApplication) -> dict[str, Any]:
    flow = app.initiate_auth_code_flow(
        scopes=[POWERBI_SCOPE], redirect_uri=REDIRECT_URI, response_mode="form_post"
    )
    assert "auth_uri" in flow, flow
    return dict(flow)


def test_msal_signs_a_person_in_with_pkce_and_refreshes(
    shared_emulator: Emulator, msal_http: HttpsToHttpClient
) -> None:
    app = _msal_app(shared_emulator, msal_http)
    flow = _flow(app)
    assert flow["code_verifier"]
    query = parse_qs(urlsplit(flow["auth_uri"]).query)
    assert query["code_challenge_method"] == ["S256"]

    result = app.acquire_token_by_auth_code_flow(
        flow, _answer(_sign_in(shared_emulator, flow["auth_uri"]))
    )
    assert "access_token" in result, result
    assert result["refresh_token"]
    assert result["id_token_claims"]["preferred_username"] == NORTH
    # msal sends the SHA-256 of its nonce; the id token carries what was sent.
    sent_nonce = parse_qs(urlsplit(flow["auth_uri"]).query)["nonce"][0]
    assert result["id_token_claims"]["nonce"] == sent_nonce
    access = unverified_claims(result["access_token"])
    assert access["aud"] == POWERBI_AUDIENCE
    assert access["idtyp"] == "user" and access["upn"] == NORTH

    # The id token is RS256, signed by a key the tenant's JWKS publishes.
    tenant = shared_emulator.settings.tenant_id
    jwks = shared_emulator.http.get(f"/{tenant}/discovery/v2.0/keys").json()
    header = jwt.get_unverified_header(result["id_token"])
    assert header["alg"] == "RS256"
    key = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
    claims = jwt.decode(
        result["id_token"],
        key=jwt.PyJWK(key),
        algorithms=["RS256"],
        audience=shared_emulator.settings.client_id,
        issuer=f"{shared_emulator.base_url}/{tenant}/v2.0",
    )
    assert claims["oid"] == access["oid"]

    refreshed = app.acquire_token_by_refresh_token(result["refresh_token"], scopes=[POWERBI_SCOPE])
    assert "access_token" in refreshed, refreshed
    assert refreshed["access_token"] != result["access_token"]
    assert unverified_claims(refreshed["access_token"])["upn"] == NORTH


def _user_token(emulator: Emulator, http: HttpsToHttpClient, email: str) -> str:
    app = _msal_app(emulator, http)
    flow = _flow(app)
    result = app.acquire_token_by_auth_code_flow(
        flow, _answer(_sign_in(emulator, flow["auth_uri"], email=email))
    )
    token = result["access_token"]
    assert isinstance(token, str)
    return token


def test_a_person_sees_only_the_workspaces_they_are_a_member_of(
    shared_emulator: Emulator, msal_http: HttpsToHttpClient
) -> None:
    headers = {"Authorization": f"Bearer {_user_token(shared_emulator, msal_http, NORTH)}"}
    groups = shared_emulator.http.get("/v1.0/myorg/groups", headers=headers).json()
    assert [group["id"] for group in groups["value"]] == [GROUP]
    assert (
        shared_emulator.http.get(f"/v1.0/myorg/groups/{GROUP}/reports", headers=headers).status_code
        == 200
    )
    foreign = shared_emulator.http.get(
        f"/v1.0/myorg/groups/{FINANCE_GROUP}/reports", headers=headers
    )
    assert foreign.status_code == 403
    assert foreign.json()["error"]["code"] == "PowerBINotAuthorizedException"

    outsider = {
        "Authorization": f"Bearer {_user_token(shared_emulator, msal_http, 'outsider@example.com')}"
    }
    assert shared_emulator.http.get("/v1.0/myorg/groups", headers=outsider).json()["value"] == []


def _token_error(response: httpx.Response, aadsts: int) -> None:
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["error"] == "invalid_grant"
    assert body["error_codes"] == [aadsts]


def _redeem(emulator: Emulator, code: str, verifier: str, **overrides: str) -> httpx.Response:
    form = {
        "grant_type": "authorization_code",
        "client_id": emulator.settings.client_id,
        "client_secret": emulator.settings.client_secret,
        "code": code,
        "redirect_uri": REDIRECT_URI,
        "code_verifier": verifier,
        "scope": f"{POWERBI_SCOPE} openid offline_access",
        **overrides,
    }
    return emulator.http.post(emulator.token_url, data=form)


def test_a_code_is_redeemed_once_with_its_verifier_and_redirect_uri(
    emulator: Emulator, msal_http: HttpsToHttpClient
) -> None:
    http = HttpsToHttpClient(emulator.base_url)
    flow = _flow(_msal_app(emulator, http))
    code = _answer(_sign_in(emulator, flow["auth_uri"]))["code"]
    verifier = flow["code_verifier"]

    _token_error(_redeem(emulator, code, "wrong-" + verifier), 501481)
    _token_error(_redeem(emulator, code, verifier, redirect_uri=REDIRECT_URI + "x"), 50011)
    _token_error(_redeem(emulator, code, "", code_verifier=""), 9002313)
    assert _redeem(emulator, code, verifier).status_code == 200
    _token_error(_redeem(emulator, code, verifier), 54005)  # replayed
    _token_error(_redeem(emulator, "never-issued", verifier), 70000)

    flow = _flow(_msal_app(emulator, http))
    late = _answer(_sign_in(emulator, flow["auth_uri"]))["code"]
    emulator.state.grants.codes[late].expires_at = 0
    _token_error(_redeem(emulator, late, flow["code_verifier"]), 70008)
    http.close()


def test_the_authorization_endpoint_refuses_clearly(shared_emulator: Emulator) -> None:
    tenant = shared_emulator.settings.tenant_id
    base = {
        "client_id": shared_emulator.settings.client_id,
        "redirect_uri": REDIRECT_URI,
        "response_type": "code",
        "scope": "openid",
        "state": "s1",
    }
    url = f"/{tenant}/oauth2/v2.0/authorize"

    unknown_client = shared_emulator.http.get(url, params={**base, "client_id": "someone"})
    assert unknown_client.status_code == 400 and "AADSTS700016" in unknown_client.text
    # Never sent back to an address the app registration does not have.
    foreign = shared_emulator.http.get(
        url, params={**base, "redirect_uri": "https://evil.example/cb"}
    )
    assert foreign.status_code == 400 and "AADSTS50011" in foreign.text
    assert "location" not in foreign.headers

    token_only = shared_emulator.http.get(url, params={**base, "response_type": "token"})
    assert _answer(token_only)["error"] == "unsupported_response_type"
    assert _answer(token_only)["state"] == "s1"
    silent = shared_emulator.http.get(url, params={**base, "prompt": "none"})
    assert _answer(silent)["error"] == "login_required"
    no_openid = shared_emulator.http.get(url, params={**base, "scope": POWERBI_SCOPE})
    assert _answer(no_openid)["error"] == "invalid_scope"

    page = shared_emulator.http.get(url, params=base)
    assert page.status_code == 200
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    wrong = shared_emulator.http.post(
        url, data={**base, "email": NORTH, "password": "not the password"}
    )
    assert wrong.status_code == 200 and "AADSTS50126" in wrong.text
    stranger = shared_emulator.http.post(
        url,
        data={
            **base,
            "email": "nobody@example.com",
            "password": shared_emulator.settings.directory_password,
        },
    )
    assert "AADSTS50126" in stranger.text


def test_form_post_hands_the_code_to_the_client_in_a_form(shared_emulator: Emulator) -> None:
    tenant = shared_emulator.settings.tenant_id
    answer = shared_emulator.http.post(
        f"/{tenant}/oauth2/v2.0/authorize",
        data={
            "client_id": shared_emulator.settings.client_id,
            "redirect_uri": REDIRECT_URI,
            "response_type": "code",
            "response_mode": "form_post",
            "scope": "openid",
            "state": "s2",
            "email": NORTH,
            "password": shared_emulator.settings.directory_password,
        },
    )
    assert answer.status_code == 200
    fields = form_fields(answer.text, action=REDIRECT_URI)
    assert fields["state"].value == "s2" and fields["code"].value


def test_registered_redirect_uris_are_matched_exactly_and_logout_returns_there() -> None:
    registered = "https://portal.example/auth/microsoft/callback"
    with running_emulator(redirect_uris=[registered]) as emulator:
        tenant = emulator.settings.tenant_id
        base = {
            "client_id": emulator.settings.client_id,
            "response_type": "code",
            "scope": "openid",
        }
        url = f"/{tenant}/oauth2/v2.0/authorize"
        assert (
            emulator.http.get(url, params={**base, "redirect_uri": registered}).status_code == 200
        )
        # Loopback is no longer enough once the registration names its addresses.
        assert (
            emulator.http.get(url, params={**base, "redirect_uri": REDIRECT_URI}).status_code == 400
        )
        assert (
            emulator.http.get(url, params={**base, "redirect_uri": registered + "/"}).status_code
            == 400
        )

        logout = f"/{tenant}/oauth2/v2.0/logout"
        back = emulator.http.get(logout, params={"post_logout_redirect_uri": registered})
        assert back.status_code == 302 and back.headers["location"] == registered
        elsewhere = emulator.http.get(
            logout, params={"post_logout_redirect_uri": "https://evil.example"}
        )
        assert elsewhere.status_code == 200 and "signed out" in elsewhere.text


def test_refresh_tokens_are_refused_after_revocation_or_for_another_client(
    emulator: Emulator,
) -> None:
    http = HttpsToHttpClient(emulator.base_url)
    app = _msal_app(emulator, http)
    flow = _flow(app)
    result = app.acquire_token_by_auth_code_flow(
        flow, _answer(_sign_in(emulator, flow["auth_uri"]))
    )
    refresh = result["refresh_token"]
    grant = {
        "grant_type": "refresh_token",
        "client_id": emulator.settings.client_id,
        "client_secret": emulator.settings.client_secret,
        "refresh_token": refresh,
        "scope": POWERBI_SCOPE,
    }
    assert emulator.http.post(emulator.token_url, data=grant).status_code == 200
    oid = unverified_claims(result["access_token"])["oid"]
    assert emulator.state.grants.revoke_user(oid) >= 1
    _token_error(emulator.http.post(emulator.token_url, data=grant), 9002313)
    http.close()


def test_discovery_describes_the_code_flow(shared_emulator: Emulator) -> None:
    tenant = shared_emulator.settings.tenant_id
    config = shared_emulator.http.get(f"/{tenant}/v2.0/.well-known/openid-configuration").json()
    assert config["id_token_signing_alg_values_supported"] == ["RS256"]
    assert "authorization_code" in config["grant_types_supported"]
    assert "refresh_token" in config["grant_types_supported"]
    assert "S256" in config["code_challenge_methods_supported"]
    assert json.loads(json.dumps(config))["authorization_endpoint"].endswith(
        "/oauth2/v2.0/authorize"
    )
