"""EntraTokenProvider with a fake Entra behind httpx.MockTransport: msal routing over http,
the min-remaining rule, error mapping, thread safety."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from urllib.parse import parse_qs

import httpx
import pytest

from embedportal.powerbi import (
    POWERBI_SCOPE,
    EntraTokenProvider,
    PowerBIAuthError,
    PowerBIThrottledError,
    PowerBIUnavailableError,
)
from embedportal.powerbi.msal_http import MsalHttpClient
from tests.powerbi.fakes import ENTRA_BASE, SECRET, TENANT, FakeEntra, connection


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def entra() -> FakeEntra:
    return FakeEntra(expires_in=3600)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def provider(entra: FakeEntra, clock: FakeClock) -> Iterator[EntraTokenProvider]:
    with EntraTokenProvider(
        connection(), scope=POWERBI_SCOPE, http_transport=entra.transport(), clock=clock
    ) as p:
        yield p


def test_http_authority_goes_through_msal_over_plain_http(
    provider: EntraTokenProvider, entra: FakeEntra
) -> None:
    token = provider.token(60)
    assert token.value == "entra-token-1"
    assert token.remaining_seconds(1000.0) == pytest.approx(3600)
    assert [(r.method, str(r.url).split("?")[0]) for r in entra.requests] == [
        ("GET", f"{ENTRA_BASE}/{TENANT}/v2.0/.well-known/openid-configuration"),
        ("POST", f"{ENTRA_BASE}/{TENANT}/oauth2/v2.0/token"),
    ]
    form = parse_qs(entra.requests[1].content.decode())
    assert form["grant_type"] == ["client_credentials"]
    assert form["scope"] == [POWERBI_SCOPE]


def test_cached_token_is_reused_while_it_has_enough_life(
    provider: EntraTokenProvider, entra: FakeEntra, clock: FakeClock
) -> None:
    first = provider.token(300)
    clock.now += 3000  # 600 s left
    assert provider.token(300) is first
    assert provider.peek(300) is first
    assert entra.token_requests == 1


def test_fresh_token_when_the_cached_one_is_too_short_lived(
    provider: EntraTokenProvider, entra: FakeEntra, clock: FakeClock
) -> None:
    first = provider.token(300)
    clock.now += 3000  # 600 s left: fine for a REST call, too little for a 60-minute embed token
    assert provider.peek(3660) is None
    second = provider.token(3660)
    assert second.value != first.value  # msal's own cache (which would say 600 s is fine) bypassed
    assert entra.token_requests == 2
    assert second.remaining_seconds(clock.now) == pytest.approx(3600)


def test_expired_token_is_always_replaced(
    provider: EntraTokenProvider, entra: FakeEntra, clock: FakeClock
) -> None:
    provider.token(0)
    clock.now += 3601
    assert provider.token(0).value == "entra-token-2"


def test_a_brand_new_token_is_not_replaced_for_asking_more_than_entra_gives(
    provider: EntraTokenProvider, entra: FakeEntra, clock: FakeClock
) -> None:
    # Entra issued 3600 s; asking for 7200 s cannot be satisfied. Do not hammer Entra: a token
    # younger than min(60 s, 5% of its lifetime) is returned as the best available.
    first = provider.token(7200)
    clock.now += 30
    assert provider.token(7200) is first
    clock.now += 31
    assert provider.token(7200).value == "entra-token-2"
    assert entra.token_requests == 2


def test_invalidate_forgets_only_the_named_token(
    provider: EntraTokenProvider, entra: FakeEntra
) -> None:
    first = provider.token(60)
    provider.invalidate(first)
    second = provider.token(60)
    assert second.value != first.value
    provider.invalidate(first)  # stale: a second caller saw the same failure; nothing happens
    assert provider.token(60) is second
    assert entra.token_requests == 2


def test_concurrent_callers_share_one_token_request(
    provider: EntraTokenProvider, entra: FakeEntra
) -> None:
    barrier = threading.Barrier(16)
    values: list[str] = []

    def worker() -> None:
        barrier.wait()
        values.append(provider.token(60).value)

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert set(values) == {"entra-token-1"}
    assert entra.token_requests == 1


def test_wrong_secret_is_an_auth_error_without_the_secret(entra: FakeEntra) -> None:
    entra.token_hook = lambda request: httpx.Response(
        401,
        json={
            "error": "invalid_client",
            "error_description": f"AADSTS7000215: Invalid client secret provided: {SECRET}\n"
            "Trace ID: abc",
        },
        headers={"x-ms-request-id": "entra-req-9"},
    )
    with (
        EntraTokenProvider(
            connection(), scope=POWERBI_SCOPE, http_transport=entra.transport()
        ) as provider,
        pytest.raises(PowerBIAuthError) as caught,
    ):
        provider.token(60)
    error = caught.value
    assert error.code == "invalid_client"
    assert error.status == 401
    assert error.request_id == "entra-req-9"
    assert "AADSTS7000215" in str(error)
    assert SECRET not in str(error) and SECRET not in repr(error)


def test_unknown_tenant_is_an_auth_error(entra: FakeEntra) -> None:
    with (
        EntraTokenProvider(
            connection(tenant_id="nope"), scope=POWERBI_SCOPE, http_transport=entra.transport()
        ) as provider,
        pytest.raises(PowerBIAuthError, match="discovery failed"),
    ):
        provider.token(60)


def test_entra_throttling_is_reported_with_retry_after(entra: FakeEntra) -> None:
    entra.token_hook = lambda request: httpx.Response(
        429,
        json={"error": "temporarily_unavailable", "error_description": "slow down"},
        headers={"Retry-After": "7"},
    )
    with (
        EntraTokenProvider(
            connection(), scope=POWERBI_SCOPE, http_transport=entra.transport()
        ) as provider,
        pytest.raises(PowerBIThrottledError) as caught,
    ):
        provider.token(60)
    assert caught.value.retry_after_seconds == 7


def test_entra_server_error_and_network_failure_are_unavailable(entra: FakeEntra) -> None:
    entra.token_hook = lambda request: httpx.Response(503, text="<html>down</html>")
    with (
        EntraTokenProvider(
            connection(), scope=POWERBI_SCOPE, http_transport=entra.transport()
        ) as provider,
        pytest.raises(PowerBIUnavailableError) as caught,
    ):
        provider.token(60)
    assert caught.value.status == 503

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with (
        EntraTokenProvider(
            connection(), scope=POWERBI_SCOPE, http_transport=httpx.MockTransport(refuse)
        ) as provider,
        pytest.raises(PowerBIUnavailableError, match="unreachable|failed"),
    ):
        provider.token(60)


def test_non_json_token_response_is_reported(entra: FakeEntra) -> None:
    entra.token_hook = lambda request: httpx.Response(200, text="not json")
    with (
        EntraTokenProvider(
            connection(), scope=POWERBI_SCOPE, http_transport=entra.transport()
        ) as provider,
        pytest.raises(Exception) as caught,
    ):
        provider.token(60)
    assert type(caught.value).__name__ == "PowerBIProtocolError"


def test_adaptor_routes_only_the_configured_origin() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(
            200,
            json={"token_endpoint": "http://127.0.0.1:9/t/oauth2/v2.0/token", "other": "http://x/"},
        )

    client = MsalHttpClient(
        http_origin="http://127.0.0.1:9", transport=httpx.MockTransport(handler)
    )
    try:
        response = client.get("https://127.0.0.1:9/t/v2.0/.well-known/openid-configuration")
        assert seen == ["http://127.0.0.1:9/t/v2.0/.well-known/openid-configuration"]
        assert '"https://127.0.0.1:9/t/oauth2/v2.0/token"' in response.text
        assert '"http://x/"' in response.text
        client.post("https://elsewhere.example/x", data={"a": "1"})
        assert seen[-1] == "https://elsewhere.example/x"
        response.raise_for_status()
    finally:
        client.close()
    with pytest.raises(ValueError):
        MsalHttpClient(http_origin="https://127.0.0.1:9")


def test_closed_provider_refuses(entra: FakeEntra) -> None:
    provider = EntraTokenProvider(
        connection(), scope=POWERBI_SCOPE, http_transport=entra.transport()
    )
    provider.close()
    with pytest.raises(RuntimeError):
        provider.token(60)
