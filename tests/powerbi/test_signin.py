"""Signing a person in with Microsoft through the emulator's Entra, over real HTTP: the code
flow with PKCE, the id token's checks (each refusal on its own), refresh tokens."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from embedportal.emulator.tokens import unverified_claims
from embedportal.powerbi.signin import MicrosoftSignIn, SignInApp, SignInRefused
from tests.powerbi.conftest import Emulator, EmulatorFactory
from tests.support.html import form_fields

REDIRECT_URI = "http://127.0.0.1:9/auth/microsoft/callback"
NORTH = "north@example.com"


def _app(emulator: Emulator, **overrides: str) -> SignInApp:
    values = {
        "tenant": emulator.settings.tenant_id,
        "client_id": emulator.settings.client_id,
        "client_secret": emulator.settings.client_secret,
        "authority_host": emulator.base_url,
        **overrides,
    }
    return SignInApp(**values)


@pytest.fixture
def sign_in(emulator: Emulator) -> Iterator[MicrosoftSignIn]:
    flow = MicrosoftSignIn(_app(emulator))
    yield flow
    flow.close()


def _browser_answer(
    emulator: Emulator, url: str, *, email: str = NORTH, password: str | None = None
) -> dict[str, str]:
    """What the browser does: open the page, sign in, follow the redirect back."""
    with httpx.Client(timeout=10) as browser:
        page = browser.get(url)
        assert page.status_code == 200, page.text
        form = {name: f.value or "" for name, f in form_fields(page.text).items()}
        form.update(email=email, password=password or emulator.settings.directory_password)
        answer = browser.post(url.split("?")[0], data=form)
    assert answer.status_code == 302, answer.text
    back = urlsplit(answer.headers["location"])
    assert f"{back.scheme}://{back.netloc}{back.path}" == REDIRECT_URI
    return {key: values[0] for key, values in parse_qs(back.query).items()}


def test_a_person_signs_in_and_their_token_is_renewed(
    emulator: Emulator, sign_in: MicrosoftSignIn
) -> None:
    pending = sign_in.begin(redirect_uri=REDIRECT_URI)
    assert pending.authorization_url.startswith(emulator.base_url)
    assert "code_challenge_method=S256" in pending.authorization_url
    assert "response_mode=query" in pending.authorization_url

    person = sign_in.complete(
        flow=pending.flow, answer=_browser_answer(emulator, pending.authorization_url)
    )
    assert person.username == NORTH and person.email == NORTH
    assert person.name == "North region manager"
    assert person.tenant_id == emulator.settings.tenant_id
    assert unverified_claims(person.token.access_token)["upn"] == NORTH
    assert person.token.refresh_token
    assert "access_token" not in repr(person) and person.token.access_token not in repr(person)

    renewed = sign_in.refresh(refresh_token=person.token.refresh_token)
    assert renewed.access_token != person.token.access_token
    assert renewed.refresh_token


def test_the_answer_must_belong_to_this_sign_in(
    emulator: Emulator, sign_in: MicrosoftSignIn
) -> None:
    pending = sign_in.begin(redirect_uri=REDIRECT_URI)
    answer = _browser_answer(emulator, pending.authorization_url)
    with pytest.raises(SignInRefused) as refused:
        sign_in.complete(flow=pending.flow, answer={**answer, "state": "someone-elses"})
    assert refused.value.reason == "state"
    with pytest.raises(SignInRefused) as cancelled:
        sign_in.complete(
            flow=pending.flow, answer={"error": "access_denied", "state": answer["state"]}
        )
    assert cancelled.value.reason == "cancelled"

    sign_in.complete(flow=pending.flow, answer=answer)
    # The same code again (a replay, or a reload of the callback) is refused by Entra.
    again = sign_in.begin(redirect_uri=REDIRECT_URI)
    replay = {**answer, "state": again.flow["state"]}
    with pytest.raises(SignInRefused) as replayed:
        sign_in.complete(flow=again.flow, answer=replay)
    assert replayed.value.reason == "code"


def _forged(token: str, **changes: Any) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims.update(changes)
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{body}.{signature}"


def _id_token(emulator: Emulator, **overrides: Any) -> tuple[str, dict[str, Any]]:
    state = emulator.app.state.emulator
    person = state.directory.by_email(NORTH)
    now = int(state.now())
    claims = {
        "ver": "2.0",
        "iss": f"{emulator.base_url}/{emulator.settings.tenant_id}/v2.0",
        "aud": emulator.settings.client_id,
        "iat": now,
        "nbf": now,
        "exp": now + 3600,
        "sub": person.object_id,
        "oid": person.object_id,
        "tid": emulator.settings.tenant_id,
        "preferred_username": NORTH,
        "nonce": "n1",
        **overrides,
    }
    return state.id_token_signer.sign(claims), claims


@pytest.mark.parametrize(
    "overrides",
    [
        {"aud": "another-application"},
        {"iss": "https://login.microsoftonline.com/elsewhere/v2.0"},
        {"exp": 1_000_000},
        {"nonce": "not-this-sign-in"},
        {"tid": "00000000-0000-0000-0000-00000000dead"},
    ],
    ids=["audience", "issuer", "expired", "nonce", "tenant"],
)
def test_an_id_token_that_fails_a_check_is_refused(
    emulator: Emulator, sign_in: MicrosoftSignIn, overrides: dict[str, Any]
) -> None:
    token, _ = _id_token(emulator, **overrides)
    with pytest.raises(SignInRefused) as refused:
        sign_in.verify_id_token(token, nonce="n1")
    assert refused.value.reason == "id_token"


def test_a_tampered_or_unsigned_id_token_is_refused(
    emulator: Emulator, sign_in: MicrosoftSignIn
) -> None:
    token, _ = _id_token(emulator)
    assert sign_in.verify_id_token(token, nonce="n1")["preferred_username"] == NORTH
    for bad in (
        _forged(token, preferred_username="admin@example.com"),
        token.rsplit(".", 1)[0] + ".",
        "not-a-jwt",
    ):
        with pytest.raises(SignInRefused) as refused:
            sign_in.verify_id_token(bad, nonce="n1")
        assert refused.value.reason == "id_token"


def test_a_key_the_tenant_does_not_publish_is_refused(
    emulator: Emulator, start_emulator: EmulatorFactory
) -> None:
    with start_emulator() as theirs:
        # Everything about it is right but the key: another emulator signed it.
        issuer = f"{emulator.base_url}/{emulator.settings.tenant_id}/v2.0"
        token, _ = _id_token(theirs, iss=issuer)
    verifier = MicrosoftSignIn(_app(emulator))
    with pytest.raises(SignInRefused) as refused:
        verifier.verify_id_token(token, nonce="n1")
    verifier.close()
    assert refused.value.reason == "id_token"


def test_an_unreachable_entra_is_said_so() -> None:
    flow = MicrosoftSignIn(
        SignInApp(
            tenant="00000000-0000-0000-0000-0000000e0001",
            client_id="c",
            client_secret="s",
            authority_host="http://127.0.0.1:9",
        ),
        timeout=2,
    )
    with pytest.raises(SignInRefused) as refused:
        flow.begin(redirect_uri=REDIRECT_URI)
    flow.close()
    assert refused.value.reason == "unreachable"
