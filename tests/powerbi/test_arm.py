"""CapacityClient against canned ARM responses: LRO polling via Location and
Azure-AsyncOperation, Retry-After caps, failures, timeouts, and the token staying on ARM's host."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from embedportal.powerbi import (
    CapacityClient,
    PowerBIError,
    PowerBINotFoundError,
    PowerBIProtocolError,
    PowerBIUnavailableError,
)
from tests.powerbi.fakes import ARM_BASE, FakeEntra, FakeSleep, Recorder, connection, json_response

pytestmark = pytest.mark.anyio

PATH = (
    "/subscriptions/sub-1/resourceGroups/rg-1/providers/Microsoft.PowerBIDedicated/capacities/cap1"
)


def capacity(state: str, sku: str = "A1") -> dict[str, Any]:
    return {
        "id": PATH,
        "name": "cap1",
        "type": "Microsoft.PowerBIDedicated/capacities",
        "sku": {"name": sku, "tier": "PBIE_Azure", "capacity": 1},
        "properties": {"state": state, "provisioningState": state},
    }


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def make() -> AsyncIterator[Any]:
    clients: list[CapacityClient] = []

    def factory(*responses: Any, **kwargs: Any) -> tuple[CapacityClient, Recorder, FakeSleep]:
        recorder = Recorder(*responses)
        sleep = FakeSleep()
        client = CapacityClient(
            connection(),
            transport=recorder.transport(),
            entra_transport=FakeEntra().transport(),
            sleep=sleep,
            **kwargs,
        )
        clients.append(client)
        return client, recorder, sleep

    yield factory
    for client in clients:
        await client.aclose()


async def test_get(make: Any) -> None:
    client, recorder, _ = make(json_response(200, capacity("Succeeded")))
    info = await client.get()
    assert info.name == "cap1" and info.state == "Succeeded" and info.is_running
    assert info.sku_name == "A1" and info.sku_tier == "PBIE_Azure"
    url = recorder.requests[0].url
    assert url.path == PATH and url.params["api-version"] == "2021-01-01"


async def test_suspend_polls_location_honouring_retry_after(make: Any) -> None:
    location = f"{ARM_BASE}/operations/op1?api-version=2021-01-01"
    client, recorder, sleep = make(
        httpx.Response(202, headers={"Location": location, "Retry-After": "2"}),
        httpx.Response(202, headers={"Location": location, "Retry-After": "600"}),
        httpx.Response(200),
        json_response(200, capacity("Paused")),
        poll_interval_cap_seconds=10,
    )
    info = await client.suspend()
    assert info.is_paused
    assert [(r.method, r.url.path) for r in recorder.requests] == [
        ("POST", PATH + "/suspend"),
        ("GET", "/operations/op1"),
        ("GET", "/operations/op1"),
        ("GET", PATH),
    ]
    assert sleep.calls == [2.0, 10.0]  # Retry-After honoured, capped


async def test_update_sku_sends_patch_body_and_waits_out_transitional_state(make: Any) -> None:
    client, recorder, sleep = make(
        json_response(200, capacity("Updating", "A2")),
        json_response(200, capacity("Scaling", "A2")),
        json_response(200, capacity("Succeeded", "A2")),
        default_poll_seconds=0.5,
    )
    info = await client.update_sku("A2")
    assert info.sku_name == "A2" and info.state == "Succeeded"
    patch = recorder.requests[0]
    assert patch.method == "PATCH"
    assert json.loads(patch.content) == {"sku": {"name": "A2", "tier": "PBIE_Azure"}}
    assert sleep.calls == [0.5]


async def test_azure_async_operation_success_and_failure(make: Any) -> None:
    op = f"{ARM_BASE}/asyncOperations/op2"
    client, _, _ = make(
        httpx.Response(202, headers={"Azure-AsyncOperation": op, "Retry-After": "1"}),
        json_response(200, {"status": "InProgress"}),
        json_response(200, {"status": "Succeeded"}),
        json_response(200, capacity("Succeeded")),
    )
    assert (await client.resume()).is_running
    client, _, _ = make(
        httpx.Response(202, headers={"Azure-AsyncOperation": op}),
        json_response(
            200,
            {"status": "Failed", "error": {"code": "CapacityResumeFailed", "message": "no quota"}},
        ),
    )
    with pytest.raises(PowerBIError, match="no quota") as caught:
        await client.resume()
    assert caught.value.code == "CapacityResumeFailed"


async def test_no_wait_returns_current_state(make: Any) -> None:
    client, recorder, sleep = make(
        httpx.Response(202, headers={"Location": f"{ARM_BASE}/operations/x"}),
        json_response(200, capacity("Resuming")),
    )
    info = await client.resume(wait=False)
    assert info.state == "Resuming"
    assert len(recorder.requests) == 2 and sleep.calls == []


async def test_location_on_another_host_is_refused(make: Any) -> None:
    client, recorder, _ = make(
        httpx.Response(202, headers={"Location": "https://evil.example/op"}),
    )
    with pytest.raises(PowerBIProtocolError, match="another host"):
        await client.suspend()
    assert len(recorder.requests) == 1


async def test_operation_timeout(make: Any) -> None:
    clock = Clock()
    location = f"{ARM_BASE}/operations/slow"

    def still_running(request: httpx.Request) -> httpx.Response:
        clock.now += 30
        return httpx.Response(202, headers={"Location": location, "Retry-After": "30"})

    client, _, _ = make(
        httpx.Response(202, headers={"Location": location}),
        *[still_running for _ in range(10)],
        clock=clock,
        operation_timeout_seconds=100,
    )
    with pytest.raises(PowerBIUnavailableError, match="not finished"):
        await client.suspend()


async def test_arm_errors_are_mapped(make: Any) -> None:
    client, _, _ = make(
        json_response(
            404,
            {"error": {"code": "ResourceNotFound", "message": "no capacity cap1"}},
            {"x-ms-request-id": "arm-rq"},
        ),
    )
    with pytest.raises(PowerBINotFoundError, match="no capacity cap1") as caught:
        await client.get()
    assert caught.value.code == "ResourceNotFound" and caught.value.request_id == "arm-rq"
    client, _, _ = make(
        json_response(200, capacity("Updating", "A3")),
        json_response(200, capacity("Failed", "A3")),
    )
    with pytest.raises(PowerBIError, match="Failed"):
        await client.update_sku("A3")


async def test_capacity_coordinates_are_required() -> None:
    with pytest.raises(ValueError, match="capacity_name"):
        CapacityClient(connection(capacity_name=None))


async def test_expired_arm_token_is_refreshed_once(make: Any) -> None:
    expired = json_response(
        401,
        {"error": {"code": "ExpiredAuthenticationToken", "message": "The access token expiry"}},
    )
    client, recorder, _ = make(expired, json_response(200, capacity("Succeeded")))
    assert (await client.get()).is_running
    assert [r.headers["authorization"] for r in recorder.requests] == [
        "Bearer entra-token-1",
        "Bearer entra-token-2",
    ]
