"""PowerBIClient edge cases against canned responses (httpx.MockTransport): retries, 429,
timeouts, TokenExpired, error mapping, malformed bodies, paging, and no secrets in logs."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest

from embedportal.powerbi import (
    EffectiveIdentity,
    PowerBIAuthError,
    PowerBIBadRequestError,
    PowerBIClient,
    PowerBIError,
    PowerBIForbiddenError,
    PowerBINotFoundError,
    PowerBIProtocolError,
    PowerBIThrottledError,
    PowerBIUnavailableError,
)
from embedportal.powerbi._http import MAX_CALLS_IN_FLIGHT
from tests.powerbi.fakes import (
    API_BASE,
    SECRET,
    FakeEntra,
    FakeSleep,
    Recorder,
    connection,
    json_response,
    pbi_error,
)

pytestmark = pytest.mark.anyio

EMBED = {"token": "H4sI-EMBED-SECRET", "tokenId": "tid-1", "expiration": "2030-01-01T00:00:00Z"}
WORKSPACES = {
    "value": [{"id": "w1", "name": "Sales", "isOnDedicatedCapacity": True, "capacityId": "C1"}]
}


class Harness:
    def __init__(
        self, recorder: Recorder, entra: FakeEntra, sleep: FakeSleep, client: PowerBIClient
    ) -> None:
        self.recorder = recorder
        self.entra = entra
        self.sleep = sleep
        self.client = client


async def make(*responses: Any, max_retries: int = 3) -> Harness:
    recorder = Recorder(*responses)
    entra = FakeEntra()
    sleep = FakeSleep()
    client = PowerBIClient(
        connection(),
        transport=recorder.transport(),
        entra_transport=entra.transport(),
        sleep=sleep,
        max_retries=max_retries,
    )
    return Harness(recorder, entra, sleep, client)


@pytest.fixture
async def closer() -> AsyncIterator[list[PowerBIClient]]:
    clients: list[PowerBIClient] = []
    yield clients
    for client in clients:
        await client.aclose()


async def harness(closer: list[PowerBIClient], *responses: Any, max_retries: int = 3) -> Harness:
    h = await make(*responses, max_retries=max_retries)
    closer.append(h.client)
    return h


async def test_list_workspaces_sends_bearer_and_parses(closer: list[PowerBIClient]) -> None:
    h = await harness(closer, json_response(200, WORKSPACES))
    workspaces = await h.client.list_workspaces()
    assert workspaces[0].id == "w1" and workspaces[0].capacity_id == "C1"
    request = h.recorder.requests[0]
    assert str(request.url) == f"{API_BASE}/v1.0/myorg/groups"
    assert request.headers["authorization"] == "Bearer entra-token-1"


async def test_list_capacities_parses_and_tolerates_missing_fields(
    closer: list[PowerBIClient],
) -> None:
    body = {
        "value": [
            {
                "id": "0f084df7-c13d-451b-af5f-ed0c466403b2",
                "displayName": "MyCapacity",
                "admins": ["john@contoso.com", 7],
                "sku": "A1",
                "state": "Active",
                "region": "West Central US",
                "capacityUserAccessRight": "Admin",
            },
            {"id": "c2", "state": "Suspended", "admins": "not a list"},
        ]
    }
    h = await harness(closer, json_response(200, body))
    first, second = await h.client.list_capacities()
    assert str(h.recorder.requests[0].url) == f"{API_BASE}/v1.0/myorg/capacities"
    assert (first.id, first.display_name, first.sku, first.state, first.region) == (
        "0f084df7-c13d-451b-af5f-ed0c466403b2",
        "MyCapacity",
        "A1",
        "Active",
        "West Central US",
    )
    assert first.admins == ("john@contoso.com",) and first.user_access_right == "Admin"
    assert first.is_active and not second.is_active
    assert (second.display_name, second.sku, second.region, second.admins) == ("", "", "", ())
    h = await harness(closer, json_response(200, {"value": [{"displayName": "no id"}]}))
    with pytest.raises(PowerBIProtocolError, match="'id'"):
        await h.client.list_capacities()


async def test_paging_follows_next_link_on_the_same_host(closer: list[PowerBIClient]) -> None:
    h = await harness(
        closer,
        json_response(
            200,
            {"value": [{"id": "w1"}], "@odata.nextLink": f"{API_BASE}/v1.0/myorg/groups?$skip=1"},
        ),
        json_response(200, {"value": [{"id": "w2"}]}),
    )
    assert [w.id for w in await h.client.list_workspaces()] == ["w1", "w2"]
    h2 = await harness(
        closer,
        json_response(200, {"value": [], "@odata.nextLink": "https://evil.example/steal"}),
    )
    with pytest.raises(PowerBIProtocolError, match="another host"):
        await h2.client.list_workspaces()


async def test_429_with_short_retry_after_is_waited_out(closer: list[PowerBIClient]) -> None:
    h = await harness(
        closer,
        pbi_error(429, "TooManyRequests", **{"Retry-After": "2"}),
        pbi_error(429, "TooManyRequests", **{"Retry-After": "3"}),
        json_response(200, WORKSPACES),
    )
    assert len(await h.client.list_workspaces()) == 1
    assert h.sleep.calls == [2.0, 3.0]


async def test_429_on_generate_token_is_raised_at_once_never_slept_on(
    closer: list[PowerBIClient],
) -> None:
    # A viewer is waiting on GenerateToken: the token service passes the Retry-After on.
    h = await harness(
        closer,
        pbi_error(429, "TooManyRequests", **{"Retry-After": "1"}),
        json_response(200, EMBED),
    )
    with pytest.raises(PowerBIThrottledError) as caught:
        await h.client.generate_token(report_ids=["r1"], dataset_ids=["d1"])
    assert caught.value.retry_after_seconds == 1.0
    assert h.sleep.calls == []
    assert len(h.recorder.requests) == 1


async def test_429_with_long_retry_after_raises_at_once(closer: list[PowerBIClient]) -> None:
    h = await harness(closer, pbi_error(429, "TooManyRequests", **{"Retry-After": "120"}))
    with pytest.raises(PowerBIThrottledError) as caught:
        await h.client.list_workspaces()
    assert caught.value.retry_after_seconds == 120
    assert caught.value.status == 429
    assert h.sleep.calls == []


async def test_429_beyond_max_retries_raises(closer: list[PowerBIClient]) -> None:
    h = await harness(
        closer,
        *[pbi_error(429, "TooManyRequests", **{"Retry-After": "1"}) for _ in range(3)],
        max_retries=2,
    )
    with pytest.raises(PowerBIThrottledError) as caught:
        await h.client.list_workspaces()
    assert caught.value.retry_after_seconds == 1
    assert len(h.recorder.requests) == 3


async def test_429_with_http_date_retry_after(closer: list[PowerBIClient]) -> None:
    h = await harness(
        closer,
        pbi_error(429, "TooManyRequests", **{"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}),
        json_response(200, WORKSPACES),
    )
    await h.client.list_workspaces()
    assert h.sleep.calls == [0.0]  # a date in the past: retry now


async def test_transient_5xx_and_timeouts_are_retried_for_gets(
    closer: list[PowerBIClient],
) -> None:
    h = await harness(
        closer,
        pbi_error(503, "ServiceUnavailable"),
        httpx.ReadTimeout("slow"),
        httpx.ConnectError("refused"),
        json_response(200, WORKSPACES),
    )
    assert len(await h.client.list_workspaces()) == 1
    assert len(h.sleep.calls) == 3
    assert all(0 < s <= 4 for s in h.sleep.calls)


async def test_5xx_outliving_retries_is_unavailable(closer: list[PowerBIClient]) -> None:
    h = await harness(closer, *[pbi_error(500, "InternalError") for _ in range(2)], max_retries=1)
    with pytest.raises(PowerBIUnavailableError) as caught:
        await h.client.list_workspaces()
    assert caught.value.status == 500 and caught.value.request_id == "req-1"


async def test_generate_token_is_not_retried_on_timeout_or_5xx(
    closer: list[PowerBIClient],
) -> None:
    h = await harness(closer, httpx.ReadTimeout("slow"))
    with pytest.raises(PowerBIUnavailableError, match="timed out"):
        await h.client.generate_token(report_ids=["r1"], dataset_ids=["d1"])
    assert len(h.recorder.requests) == 1
    h2 = await harness(closer, pbi_error(502, "BadGateway"))
    with pytest.raises(PowerBIUnavailableError):
        await h2.client.generate_token(report_ids=["r1"], dataset_ids=["d1"])
    assert len(h2.recorder.requests) == 1


async def test_token_expired_refreshes_entra_token_once(closer: list[PowerBIClient]) -> None:
    h = await harness(
        closer,
        pbi_error(
            403, "TokenExpired", "Access token has expired, resubmit with a new access token"
        ),
        json_response(200, WORKSPACES),
    )
    await h.client.list_workspaces()
    auth = [r.headers["authorization"] for r in h.recorder.requests]
    assert auth == ["Bearer entra-token-1", "Bearer entra-token-2"]
    h2 = await harness(closer, pbi_error(403, "TokenExpired"), pbi_error(403, "TokenExpired"))
    with pytest.raises(PowerBIAuthError) as caught:
        await h2.client.list_workspaces()
    assert caught.value.code == "TokenExpired"
    assert len(h2.recorder.requests) == 2


@pytest.mark.parametrize(
    ("response", "error_type", "code"),
    [
        (pbi_error(401, "PowerBINotAuthorizedException"), PowerBIAuthError, None),
        (pbi_error(403, "PowerBINotAuthorizedException"), PowerBIForbiddenError, None),
        (pbi_error(404, "PowerBIEntityNotFound"), PowerBINotFoundError, None),
        (pbi_error(409, "Conflict"), PowerBIError, None),
        (httpx.Response(404, text="<html>nope</html>"), PowerBINotFoundError, "none"),
    ],
)
async def test_error_mapping(
    closer: list[PowerBIClient], response: httpx.Response, error_type: type[Exception], code: Any
) -> None:
    h = await harness(closer, response)
    with pytest.raises(error_type) as caught:
        await h.client.get_report("w1", "r1")
    error = caught.value
    assert isinstance(error, PowerBIError)
    assert error.status == response.status_code
    if code == "none":
        assert error.code is None


async def test_bad_request_carries_the_service_message(closer: list[PowerBIClient]) -> None:
    body = {
        "error": {
            "code": "InvalidRequest",
            "message": "Creating embed token for accessing dataset d1 requires "
            "effective identity to be provided",
        }
    }
    h = await harness(closer, json_response(400, body, {"RequestId": "rq-7"}))
    with pytest.raises(PowerBIBadRequestError) as caught:
        await h.client.generate_token(report_ids=["r1"], dataset_ids=["d1"])
    assert "requires effective identity" in str(caught.value)
    assert caught.value.code == "InvalidRequest"
    assert caught.value.request_id == "rq-7"


async def test_pbi_error_details_are_used_when_message_is_missing(
    closer: list[PowerBIClient],
) -> None:
    body = {
        "error": {
            "code": "",
            "pbi.error": {
                "code": "InvalidIdentity",
                "details": [{"code": "x", "detail": {"type": 0, "value": "username is required"}}],
            },
        }
    }
    h = await harness(closer, json_response(400, body))
    with pytest.raises(PowerBIBadRequestError, match="username is required") as caught:
        await h.client.generate_token(report_ids=["r1"], dataset_ids=["d1"])
    assert caught.value.code == "InvalidIdentity"


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(200, text="<html>not json</html>"),
        json_response(200, {"unexpected": True}),
        json_response(200, {"value": [{"name": "no id"}]}),
    ],
)
async def test_malformed_bodies_are_protocol_errors(
    closer: list[PowerBIClient], response: httpx.Response
) -> None:
    h = await harness(closer, response)
    with pytest.raises(PowerBIProtocolError):
        await h.client.list_workspaces()


async def test_generate_token_request_body(closer: list[PowerBIClient]) -> None:
    h = await harness(closer, json_response(200, EMBED))
    token = await h.client.generate_token(
        report_ids=["r1"],
        dataset_ids=["d1"],
        identities=[EffectiveIdentity("alice@example.com", ["North"], ["d1"])],
        lifetime_minutes=15,
        min_entra_remaining_seconds=960,
    )
    request = h.recorder.requests[0]
    assert request.method == "POST" and request.url.path == "/v1.0/myorg/GenerateToken"
    assert json.loads(request.content) == {
        "reports": [{"id": "r1"}],
        "datasets": [{"id": "d1"}],
        "identities": [{"username": "alice@example.com", "roles": ["North"], "datasets": ["d1"]}],
        "lifetimeInMinutes": 15,
    }
    assert token.token == "H4sI-EMBED-SECRET"


async def test_generate_token_argument_checks(closer: list[PowerBIClient]) -> None:
    h = await harness(closer)
    with pytest.raises(ValueError):
        await h.client.generate_token(report_ids=[], dataset_ids=[])
    with pytest.raises(ValueError):
        await h.client.generate_token(report_ids=["r"], dataset_ids=[], lifetime_minutes=0)
    with pytest.raises(TypeError):
        await h.client.generate_token(report_ids="r1", dataset_ids=[])
    with pytest.raises(ValueError):
        await h.client.generate_token(report_ids=[str(i) for i in range(51)], dataset_ids=[])
    assert h.recorder.requests == []


async def test_generate_token_asks_entra_for_enough_life(closer: list[PowerBIClient]) -> None:
    h = await harness(
        closer, json_response(200, WORKSPACES), json_response(200, EMBED), json_response(200, EMBED)
    )
    await h.client.list_workspaces()
    first = h.client.tokens.peek(0)
    assert first is not None
    # The held token has ~3600 s left; a 60-minute embed token plus margin needs more.
    await h.client.generate_token(
        report_ids=["r1"], dataset_ids=[], min_entra_remaining_seconds=3500
    )
    assert h.recorder.requests[1].headers["authorization"] == "Bearer entra-token-1"
    assert h.entra.token_requests == 1


async def test_logs_never_contain_tokens_or_secrets(
    closer: list[PowerBIClient], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger: ours, httpx, httpcore, msal
    h = await harness(
        closer,
        pbi_error(429, "TooManyRequests", **{"Retry-After": "1"}),
        json_response(200, WORKSPACES),
        pbi_error(403, "TokenExpired"),
        json_response(200, EMBED, {"RequestId": "rq-gen"}),
    )
    await h.client.list_workspaces()
    token = await h.client.generate_token(
        report_ids=["r1"],
        dataset_ids=["d1"],
        identities=[EffectiveIdentity("alice@example.com", ["North"], ["d1"])],
    )
    text = "\n".join(
        f"{record.name} {record.getMessage()} {record.args!r}" for record in caplog.records
    )
    assert "tid-1" in text and "rq-gen" in text  # tokenId and RequestId are logged
    for secret in (SECRET, token.token, "entra-token-1", "entra-token-2", "Bearer entra"):
        assert secret not in text, secret
    assert "alice@example.com" not in text


# --- fidelity: the media type Power BI demands and its code-only error bodies ---------------------


async def test_generate_token_declares_its_body_json(closer: list[PowerBIClient]) -> None:
    # Power BI answers 415 to a POST whose body is not declared application/json.
    h = await harness(closer, json_response(200, EMBED))
    await h.client.generate_token(report_ids=["r1"], dataset_ids=["d1"])
    request = h.recorder.requests[0]
    assert request.method == "POST"
    assert request.headers["content-type"].split(";")[0].strip() == "application/json"


def _code_only(status: int, code: str) -> httpx.Response:
    """A body as captured from the real service: the code twice, no message."""
    pbi = {"code": code, "parameters": {}, "details": [], "exceptionCulprit": 1}
    return json_response(status, {"error": {"code": code, "pbi.error": pbi}}, {"RequestId": "r9"})


@pytest.mark.parametrize(
    ("response", "error_type"),
    [
        (_code_only(404, "PowerBIEntityNotFound"), PowerBINotFoundError),
        (_code_only(403, "PowerBINotAuthorizedException"), PowerBIForbiddenError),
        (_code_only(401, "PowerBINotAuthorizedException"), PowerBIAuthError),
    ],
)
async def test_code_only_error_bodies_are_parsed(
    closer: list[PowerBIClient], response: httpx.Response, error_type: type[PowerBIError]
) -> None:
    for call in ("get_report", "generate_token"):
        h = await harness(closer, response)
        with pytest.raises(error_type) as caught:
            if call == "get_report":
                await h.client.get_report("w1", "r1")
            else:
                await h.client.generate_token(report_ids=["r1"], dataset_ids=["d1"])
        error = caught.value
        code = response.json()["error"]["code"]
        assert error.code == code and error.request_id == "r9"
        assert error.status == response.status_code
        # Without a message from the service the error still reads as a sentence.
        assert error.message and code in str(error)
        assert len(h.recorder.requests) == 1  # a refusal, not retried


async def test_unsupported_media_type_is_an_error_with_its_code(
    closer: list[PowerBIClient],
) -> None:
    h = await harness(closer, pbi_error(415, "UnsupportedMediaType", "send application/json"))
    with pytest.raises(PowerBIError) as caught:
        await h.client.generate_token(report_ids=["r1"], dataset_ids=["d1"])
    assert caught.value.status == 415 and caught.value.code == "UnsupportedMediaType"
    assert "send application/json" in caught.value.message


class _SlowPowerBI(httpx.AsyncBaseTransport):
    """Answers every call after a moment, noting how many were open at once."""

    def __init__(self) -> None:
        self.open = 0
        self.most_open = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        try:
            await anyio.sleep(0.02)
            return json_response(200, EMBED)
        finally:
            self.open -= 1


async def test_a_burst_of_calls_keeps_at_most_the_in_flight_bound_open(
    closer: list[PowerBIClient],
) -> None:
    slow = _SlowPowerBI()
    client = PowerBIClient(
        connection(), transport=slow, entra_transport=FakeEntra().transport(), sleep=FakeSleep()
    )
    closer.append(client)
    burst = MAX_CALLS_IN_FLIGHT * 3
    tokens = await asyncio.gather(
        *(client.generate_token(report_ids=[f"r{n}"], dataset_ids=["d"]) for n in range(burst))
    )
    assert len(tokens) == burst  # every call answered, the rest waited their turn
    assert slow.most_open == MAX_CALLS_IN_FLIGHT
