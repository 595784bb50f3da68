"""ARM: the capacity resource, suspend/resume/scale as long-running operations, metering."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from embedportal.emulator.tokens import POWERBI_SCOPE
from tests.emulator.harness import Emulator, running_emulator

API = {"api-version": "2021-01-01"}


def assert_arm_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["message"]


def poll_location(emu: Emulator, location: str, headers: dict[str, str]) -> tuple[int, Any]:
    """Follow an ARM Location URL until it stops answering 202; count the 202s seen."""
    in_progress = 0
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        response = emu.http.get(location, headers=headers)
        if response.status_code != 202:
            assert response.status_code == 200, response.text
            return in_progress, response.json()
        in_progress += 1
        assert int(response.headers["Retry-After"]) >= 0
        assert response.headers["Location"] == location
        time.sleep(0.05)
    raise AssertionError("the operation never finished")


def state_of(emu: Emulator, headers: dict[str, str]) -> str:
    response = emu.http.get(emu.capacity_path, params=API, headers=headers)
    assert response.status_code == 200, response.text
    state = response.json()["properties"]["state"]
    assert isinstance(state, str)
    return state


def test_get_capacity(shared_emulator: Emulator) -> None:
    headers = shared_emulator.arm_headers()
    for version in ("2021-01-01", "2017-10-01"):
        response = shared_emulator.http.get(
            shared_emulator.capacity_path, params={"api-version": version}, headers=headers
        )
        assert response.status_code == 200
        assert response.headers["x-ms-request-id"]
        body = response.json()
        settings = shared_emulator.settings
        assert body["id"] == settings.capacity_resource_id
        assert body["name"] == settings.capacity_name == "embedportaldemo"
        assert body["type"] == "Microsoft.PowerBIDedicated/capacities"
        assert body["location"]
        assert body["sku"] == {"name": "A1", "tier": "PBIE_Azure", "capacity": 1}
        properties = body["properties"]
        assert properties["state"] == properties["provisioningState"] == "Succeeded"
        assert properties["mode"] == "Gen2"
        assert properties["administration"]["members"]
    # ARM paths are case-insensitive.
    loose = shared_emulator.capacity_path.lower().replace(
        "microsoft.powerbidedicated", "MICROSOFT.PowerBIDedicated"
    )
    assert shared_emulator.http.get(loose, params=API, headers=headers).status_code == 200
    listing = shared_emulator.http.get(
        shared_emulator.capacity_path.rsplit("/", 1)[0], params=API, headers=headers
    )
    assert [item["name"] for item in listing.json()["value"]] == ["embedportaldemo"]


def test_authentication_errors(shared_emulator: Emulator) -> None:
    http, path = shared_emulator.http, shared_emulator.capacity_path
    missing = http.get(path, params=API)
    assert_arm_error(missing, 401, "AuthenticationFailed")
    assert missing.headers["WWW-Authenticate"].startswith("Bearer ")
    assert_arm_error(
        http.get(path, params=API, headers={"Authorization": "Token abc"}),
        401,
        "AuthenticationFailed",
    )
    assert_arm_error(
        http.get(path, params=API, headers={"Authorization": "Bearer a.b.c"}),
        401,
        "InvalidAuthenticationToken",
    )
    powerbi = {"Authorization": f"Bearer {shared_emulator.access_token(POWERBI_SCOPE)}"}
    wrong_audience = http.post(f"{path}/suspend", params=API, headers=powerbi)
    assert_arm_error(wrong_audience, 401, "InvalidAuthenticationToken")
    assert "audience" in wrong_audience.json()["error"]["message"]


def test_expired_arm_token() -> None:
    with running_emulator(entra_min_lifetime_seconds=1, entra_max_lifetime_seconds=1) as emu:
        headers = emu.arm_headers()
        time.sleep(1.05)
        response = emu.http.get(emu.capacity_path, params=API, headers=headers)
        assert_arm_error(response, 401, "ExpiredAuthenticationToken")


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({}, "MissingApiVersionParameter"),
        ({"api-version": ""}, "MissingApiVersionParameter"),
        ({"api-version": "2023-11-01"}, "InvalidApiVersionParameter"),
        ({"api-version": "latest"}, "InvalidApiVersionParameter"),
    ],
)
def test_api_version_errors(shared_emulator: Emulator, params: dict[str, str], code: str) -> None:
    headers = shared_emulator.arm_headers()
    for method, suffix in (("GET", ""), ("POST", "/suspend"), ("PATCH", "")):
        response = shared_emulator.http.request(
            method,
            shared_emulator.capacity_path + suffix,
            params=params,
            headers=headers,
            json={"sku": {"name": "A2"}} if method == "PATCH" else None,
        )
        assert_arm_error(response, 400, code)
    assert state_of(shared_emulator, headers) == "Succeeded"


def test_unknown_resources(shared_emulator: Emulator) -> None:
    headers = shared_emulator.arm_headers()
    settings = shared_emulator.settings
    base = (
        "/subscriptions/{s}/resourceGroups/{g}/providers/Microsoft.PowerBIDedicated/capacities/{n}"
    )
    for subscription, group, name in (
        ("11111111-2222-3333-4444-555555555555", settings.resource_group, settings.capacity_name),
        (settings.subscription_id, "other-group", settings.capacity_name),
        (settings.subscription_id, settings.resource_group, "othercapacity"),
    ):
        path = base.format(s=subscription, g=group, n=name)
        assert_arm_error(
            shared_emulator.http.get(path, params=API, headers=headers), 404, "ResourceNotFound"
        )
        assert_arm_error(
            shared_emulator.http.post(path + "/resume", params=API, headers=headers),
            404,
            "ResourceNotFound",
        )
    odd = shared_emulator.http.get(
        f"/subscriptions/{settings.subscription_id}/resourceGroups/x/providers/Microsoft.Web/sites/y",
        params=API,
        headers=headers,
    )
    assert odd.status_code == 404
    unsupported = shared_emulator.http.delete(
        shared_emulator.capacity_path, params=API, headers=headers
    )
    assert_arm_error(unsupported, 405, "MethodNotAllowed")
    unknown_operation = shared_emulator.http.get(
        f"/subscriptions/{settings.subscription_id}/providers/Microsoft.PowerBIDedicated/"
        "locations/westeurope/operationresults/00000000-0000-0000-0000-000000000000",
        params=API,
        headers=headers,
    )
    assert_arm_error(unknown_operation, 404, "ResourceNotFound")


def test_suspend_resume_cycle_with_location_polling(emulator: Emulator) -> None:
    headers = emulator.arm_headers()
    path = emulator.capacity_path

    suspend = emulator.http.post(f"{path}/suspend", params=API, headers=headers)
    assert suspend.status_code == 202, suspend.text
    assert int(suspend.headers["Retry-After"]) >= 0
    location = suspend.headers["Location"]
    assert "/operationresults/" in location and location.startswith(emulator.base_url)
    assert "/operationstatuses/" in suspend.headers["Azure-AsyncOperation"]
    assert state_of(emulator, headers) == "Suspending"

    # Not while it is changing.
    for action in ("suspend", "resume"):
        busy = emulator.http.post(f"{path}/{action}", params=API, headers=headers)
        assert_arm_error(busy, 409, "BadRequest")
    assert_arm_error(
        emulator.http.patch(path, params=API, headers=headers, json={"sku": {"name": "A2"}}),
        409,
        "BadRequest",
    )
    status = emulator.http.get(suspend.headers["Azure-AsyncOperation"], headers=headers).json()
    assert status["status"] == "InProgress"

    in_progress, final = poll_location(emulator, location, headers)
    assert in_progress >= 1
    assert final["properties"]["state"] == "Paused"
    assert state_of(emulator, headers) == "Paused"
    status = emulator.http.get(suspend.headers["Azure-AsyncOperation"], headers=headers).json()
    assert status["status"] == "Succeeded" and status["endTime"]

    # Suspending a paused capacity is a no-op.
    again = emulator.http.post(f"{path}/suspend", params=API, headers=headers)
    assert again.status_code == 200

    resume = emulator.http.post(f"{path}/resume", params=API, headers=headers)
    assert resume.status_code == 202
    assert state_of(emulator, headers) == "Resuming"
    _, final = poll_location(emulator, resume.headers["Location"], headers)
    assert final["properties"]["state"] == "Succeeded"
    assert emulator.http.post(f"{path}/resume", params=API, headers=headers).status_code == 200

    meter = emulator.http.get(f"/emulator/api/capacities/{emulator.settings.capacity_name}/meter")
    assert meter.status_code == 200
    assert meter.json()["startedCount"] == 1
    assert meter.json()["pausedCount"] == 1
    assert meter.json()["state"] == "Succeeded"


def test_scale_with_patch(emulator: Emulator) -> None:
    headers = emulator.arm_headers()
    path = emulator.capacity_path
    patch = emulator.http.patch(
        path,
        params=API,
        headers=headers,
        json={"sku": {"name": "A2", "tier": "PBIE_Azure"}, "tags": {"team": "bi"}},
    )
    assert patch.status_code == 202, patch.text
    assert patch.json()["properties"]["state"] == "Scaling"
    assert patch.json()["tags"] == {"team": "bi"}
    _, final = poll_location(emulator, patch.headers["Location"], headers)
    assert final["sku"]["name"] == "A2"
    assert final["properties"]["state"] == "Succeeded"

    same = emulator.http.patch(path, params=API, headers=headers, json={"sku": {"name": "A2"}})
    assert same.status_code == 200
    admins = emulator.http.patch(
        path,
        params=API,
        headers=headers,
        json={"properties": {"administration": {"members": ["admin@example.com"]}}},
    )
    assert admins.status_code == 200
    assert admins.json()["properties"]["administration"]["members"] == ["admin@example.com"]

    # The SKU can change while paused; the capacity stays paused.
    suspend = emulator.http.post(f"{path}/suspend", params=API, headers=headers)
    poll_location(emulator, suspend.headers["Location"], headers)
    down = emulator.http.patch(path, params=API, headers=headers, json={"sku": {"name": "A1"}})
    assert down.status_code == 202
    assert down.json()["properties"]["state"] == "Updating"
    _, final = poll_location(emulator, down.headers["Location"], headers)
    assert final["sku"]["name"] == "A1"
    assert final["properties"]["state"] == "Paused"


@pytest.mark.parametrize(
    "body",
    [
        {"sku": {"name": "A7"}},
        {"sku": {"name": "F2", "tier": "Fabric"}},
        {"sku": {"name": "P1", "tier": "PBIE_Azure"}},
        {"sku": "A2"},
        {"sku": {"tier": "PBIE_Azure"}},
        {"tags": ["a"]},
        {"properties": {"administration": {"members": "me"}}},
        {"properties": {"mode": "Gen1"}},
        [],
    ],
)
def test_patch_validation(shared_emulator: Emulator, body: Any) -> None:
    headers = shared_emulator.arm_headers()
    response = shared_emulator.http.patch(
        shared_emulator.capacity_path, params=API, headers=headers, json=body
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] in ("BadRequest", "InvalidRequestContent")
    bad_json = shared_emulator.http.patch(
        shared_emulator.capacity_path,
        params=API,
        headers={**headers, "Content-Type": "application/json"},
        content=b"{sku",
    )
    assert_arm_error(bad_json, 400, "InvalidRequestContent")


def test_metering_counts_running_and_suspending_time() -> None:
    with running_emulator(capacity_transition_seconds=0.4) as emu:
        headers = emu.arm_headers()
        meter_url = f"/emulator/api/capacities/{emu.settings.capacity_name}/meter"
        start = emu.http.get(meter_url).json()["activeSeconds"]
        time.sleep(0.3)
        running = emu.http.get(meter_url).json()["activeSeconds"]
        assert running - start >= 0.25

        suspend = emu.http.post(f"{emu.capacity_path}/suspend", params=API, headers=headers)
        poll_location(emu, suspend.headers["Location"], headers)
        paused_at = emu.http.get(meter_url).json()
        assert paused_at["state"] == "Paused"
        assert paused_at["activeSeconds"] >= running + 0.4  # suspending is billed
        time.sleep(0.4)
        still = emu.http.get(meter_url).json()
        assert still["activeSeconds"] == paused_at["activeSeconds"]  # paused is not

        resume = emu.http.post(f"{emu.capacity_path}/resume", params=API, headers=headers)
        poll_location(emu, resume.headers["Location"], headers)
        resumed = emu.http.get(meter_url).json()
        assert resumed["activeSeconds"] - still["activeSeconds"] < 0.2  # resuming is not
        stats = emu.stats()["capacities"][emu.settings.capacity_name]
        assert stats["startedCount"] == 1 and stats["pausedCount"] == 1
        assert emu.http.get("/emulator/api/capacities/nothere/meter").status_code == 404


def test_zero_second_transitions_finish_at_once() -> None:
    with running_emulator(capacity_transition_seconds=0) as emu:
        headers = emu.arm_headers()
        suspend = emu.http.post(f"{emu.capacity_path}/suspend", params=API, headers=headers)
        assert suspend.status_code == 202
        assert suspend.headers["Retry-After"] == "0"
        assert state_of(emu, headers) == "Paused"
        in_progress, final = poll_location(emu, suspend.headers["Location"], headers)
        assert in_progress == 0 and final["properties"]["state"] == "Paused"
