"""CapacityClient against canned ARM responses: LRO polling via Location and
Azure-AsyncOperation, Retry-After caps, failures, timeouts, and the token staying on ARM's host."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from embedportal.powerbi import (
    FABRIC,
    CapacityClient,
    CapacityCoordinates,
    CapacityNotFoundError,
    CapacityOperationInProgressError,
    CapacityOperationTimeoutError,
    CapacityPermissionError,
    PowerBIError,
    PowerBIForbiddenError,
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


# -- any capacity by its coordinates, both providers; ARM's refusals as typed errors ------------

FABRIC_PATH = "/subscriptions/sub-2/resourceGroups/rg-2/providers/Microsoft.Fabric/capacities/fab1"
FABRIC_CAPACITY = CapacityCoordinates("sub-2", "rg-2", "fab1", FABRIC)


def fabric_capacity(state: str, sku: str = "F2") -> dict[str, Any]:
    return {
        "id": FABRIC_PATH,
        "name": "fab1",
        "type": "Microsoft.Fabric/capacities",
        "sku": {"name": sku, "tier": "Fabric"},
        "properties": {"state": state, "provisioningState": "Succeeded"},
    }


def arm_error(status: int, code: str, message: str) -> httpx.Response:
    body = {"error": {"code": code, "message": message}}
    return json_response(status, body, {"x-ms-request-id": f"rq-{status}"})


async def test_a_fabric_capacity_by_coordinates(make: Any) -> None:
    client, recorder, _ = make(
        json_response(200, fabric_capacity("Active")),
        json_response(200, fabric_capacity("Paused")),
        json_response(200, fabric_capacity("Paused", "F4")),
        capacity=FABRIC_CAPACITY,
    )
    assert (client.name, client.provider, client.active_state) == ("fab1", FABRIC, "Active")
    info = await client.get()
    assert info.is_running and info.sku_tier == "Fabric"
    url = recorder.requests[0].url
    assert url.path == FABRIC_PATH and url.params["api-version"] == "2023-11-01"
    scaled = await client.update_sku("F4")
    assert scaled.sku_name == "F4" and scaled.is_paused
    patch = recorder.requests[1]
    assert patch.url.path == FABRIC_PATH and patch.url.params["api-version"] == "2023-11-01"
    assert json.loads(patch.content) == {"sku": {"name": "F4", "tier": "Fabric"}}


async def test_coordinates_win_over_the_connections_capacity(make: Any) -> None:
    client, recorder, _ = make(
        json_response(200, capacity("Succeeded")),
        capacity=CapacityCoordinates("sub-9", "rg 9", "other"),
    )
    await client.get()
    assert (
        recorder.requests[0]
        .url.raw_path.decode()
        .startswith(
            "/subscriptions/sub-9/resourceGroups/rg%209/providers/Microsoft.PowerBIDedicated/"
            "capacities/other?api-version=2021-01-01"
        )
    )


def test_coordinates_are_checked() -> None:
    with pytest.raises(ValueError, match="name"):
        CapacityCoordinates("sub", "rg", " ")
    with pytest.raises(ValueError, match="provider"):
        CapacityCoordinates("sub", "rg", "cap", "Microsoft.Web")  # type: ignore[arg-type]
    assert CapacityCoordinates("s", "g", "n", FABRIC).resource_id == (
        "/subscriptions/s/resourceGroups/g/providers/Microsoft.Fabric/capacities/n"
    )


async def test_403_says_which_azure_role_is_missing(make: Any) -> None:
    client, _, _ = make(arm_error(403, "AuthorizationFailed", "no suspend/action for you"))
    with pytest.raises(CapacityPermissionError) as caught:
        await client.suspend()
    error = caught.value
    assert isinstance(error, PowerBIForbiddenError)  # callers catching the old class still do
    assert error.required_role == "Contributor" and error.capacity_name == "cap1"
    assert error.status == 403 and error.code == "AuthorizationFailed"
    assert error.request_id == "rq-403"
    assert "Contributor role" in error.message and "'cap1'" in error.message
    assert "no suspend/action for you" in error.message
    client, _, _ = make(arm_error(403, "AuthorizationFailed", "no read"))
    with pytest.raises(CapacityPermissionError) as caught:
        await client.get()
    assert caught.value.required_role == "Reader" and "Reader role" in caught.value.message


async def test_404_names_the_coordinates(make: Any) -> None:
    client, _, _ = make(arm_error(404, "ResourceNotFound", "gone"), capacity=FABRIC_CAPACITY)
    with pytest.raises(CapacityNotFoundError) as caught:
        await client.resume()
    message = caught.value.message
    for part in ("Microsoft.Fabric", "'fab1'", "'rg-2'", "'sub-2'", "gone"):
        assert part in message
    assert isinstance(caught.value, PowerBINotFoundError) and caught.value.status == 404


async def test_409_says_an_operation_is_running(make: Any) -> None:
    client, _, _ = make(arm_error(409, "BadRequest", "state Suspending"))
    with pytest.raises(CapacityOperationInProgressError) as caught:
        await client.update_sku("A2")
    error = caught.value
    assert error.status == 409 and error.capacity_name == "cap1"
    assert "still running" in error.message and "to A2" in error.message


async def test_other_arm_errors_keep_their_classes(make: Any) -> None:
    client, _, _ = make(
        arm_error(401, "ExpiredAuthenticationToken", "expired"),
        arm_error(401, "ExpiredAuthenticationToken", "expired again"),
    )
    with pytest.raises(PowerBIError) as caught:
        await client.get()
    assert not isinstance(caught.value, CapacityPermissionError)
    assert caught.value.status == 401


async def test_time_out_is_typed_and_tells_the_last_state(make: Any) -> None:
    clock = Clock()
    location = f"{ARM_BASE}/operations/slow"

    def still_running(request: httpx.Request) -> httpx.Response:
        clock.now += 40
        return httpx.Response(202, headers={"Location": location, "Retry-After": "40"})

    client, _, _ = make(
        httpx.Response(202, headers={"Location": location, "Retry-After": "40"}),
        still_running,
        still_running,
        still_running,
        json_response(200, capacity("Suspending")),
        clock=clock,
        operation_timeout_seconds=100,
    )
    with pytest.raises(CapacityOperationTimeoutError) as caught:
        await client.suspend()
    error = caught.value
    assert isinstance(error, PowerBIUnavailableError)
    assert error.timeout_seconds == 100 and error.last_state == "Suspending"
    assert "not finished after 100s" in error.message and "Suspending" in error.message

    # Transitional state seen by GET after the operation's own polling ended.
    clock = Clock()

    def transitional(request: httpx.Request) -> httpx.Response:
        clock.now += 60
        return json_response(200, capacity("Resuming"))

    client, _, _ = make(
        httpx.Response(200),
        transitional,
        transitional,
        transitional,
        clock=clock,
        operation_timeout_seconds=100,
    )
    with pytest.raises(CapacityOperationTimeoutError) as caught:
        await client.resume()
    assert caught.value.last_state == "Resuming"
