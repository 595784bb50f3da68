"""The emulated directory's pure rules: PKCE, single-use codes, refresh tokens."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from embedportal.emulator.directory import (
    CODE_LIFETIME_SECONDS,
    AuthorizationRequest,
    CodeRefused,
    Directory,
    DirectoryUser,
    SignInGrants,
    pkce_matches,
)

TENANT = "00000000-0000-0000-0000-0000000e0001"
PERSON = DirectoryUser("North@Example.com", "North", frozenset({"w1"}))


def test_pkce_s256_matches_rfc_7636s_example() -> None:
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    assert pkce_matches(verifier=verifier, challenge=challenge, method="S256")
    assert not pkce_matches(verifier=verifier + "x", challenge=challenge, method="S256")
    assert not pkce_matches(verifier=verifier, challenge=challenge, method="S512")
    assert pkce_matches(verifier="same", challenge="same", method="plain")


@given(st.text(min_size=1, max_size=200))
def test_any_verifier_only_matches_its_own_challenge(verifier: str) -> None:
    assert not pkce_matches(verifier=verifier, challenge=verifier + "?", method="S256")


def test_people_are_found_by_email_in_any_case_and_by_object_id() -> None:
    directory = Directory([PERSON], tenant_id=TENANT)
    found = directory.by_email(" north@EXAMPLE.com ")
    assert found is not None and found.object_id
    assert directory.by_object_id(found.object_id) == found
    # Object ids are stable: the same person in the same tenant, always the same id.
    again = Directory([PERSON], tenant_id=TENANT).by_email("north@example.com")
    assert again is not None and again.object_id == found.object_id


def _request(
    challenge: str | None = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
) -> AuthorizationRequest:
    return AuthorizationRequest(
        client_id="client",
        redirect_uri="http://127.0.0.1/cb",
        scope="openid",
        nonce=None,
        code_challenge=challenge,
        code_challenge_method="S256",
    )


def _refusal(grants: SignInGrants, code: str, **overrides: object) -> int:
    values: dict[str, object] = {
        "code": code,
        "client_id": "client",
        "redirect_uri": "http://127.0.0.1/cb",
        "code_verifier": "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
        "now": 10.0,
        **overrides,
    }
    with pytest.raises(CodeRefused) as refused:
        grants.redeem_code(**values)  # type: ignore[arg-type]
    return refused.value.aadsts


def test_a_code_is_refused_for_each_reason_and_redeemed_once() -> None:
    grants = SignInGrants()
    code = grants.issue_code(request=_request(), user=PERSON, now=0.0)
    assert _refusal(grants, code, client_id="other") == 70000
    assert _refusal(grants, code, redirect_uri="http://127.0.0.1/other") == 50011
    assert _refusal(grants, code, code_verifier=None) == 9002313
    assert _refusal(grants, code, code_verifier="wrong") == 501481
    assert _refusal(grants, code, now=CODE_LIFETIME_SECONDS) == 70008
    issued = grants.redeem_code(
        code=code,
        client_id="CLIENT",
        redirect_uri="http://127.0.0.1/cb",
        code_verifier="dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
        now=10.0,
    )
    assert issued.user == PERSON
    assert _refusal(grants, code) == 54005


def test_without_a_challenge_no_verifier_is_asked_for() -> None:
    grants = SignInGrants()
    code = grants.issue_code(request=_request(challenge=None), user=PERSON, now=0.0)
    grants.redeem_code(
        code=code, client_id="client", redirect_uri="http://127.0.0.1/cb", code_verifier=None, now=1
    )


def test_refresh_tokens_expire_belong_to_their_client_and_can_be_revoked() -> None:
    grants = SignInGrants()
    person = PERSON.with_object_id(TENANT)
    token = grants.issue_refresh_token(client_id="client", user=person, scope="openid", now=0.0)
    assert grants.use_refresh_token(token=token, client_id="client", now=1.0).user == person
    with pytest.raises(CodeRefused):
        grants.use_refresh_token(token=token, client_id="other", now=1.0)
    assert grants.revoke_user(person.object_id) == 1
    with pytest.raises(CodeRefused):
        grants.use_refresh_token(token=token, client_id="client", now=1.0)
    late = grants.issue_refresh_token(client_id="client", user=person, scope="openid", now=0.0)
    with pytest.raises(CodeRefused) as expired:
        grants.use_refresh_token(token=late, client_id="client", now=10**9)
    assert expired.value.aadsts == 700082
