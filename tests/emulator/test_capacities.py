"""Two capacities: Power BI REST lists them (state agreeing with ARM), workspaces name theirs,
ARM serves a Power BI Embedded and a Fabric one, and the fault knobs make ARM refuse."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from tests.emulator.harness import (
    FINANCE_GROUP,
    FINANCE_SUMMARY,
    GROUP,
    SALES_OVERVIEW,
    Emulator,
    running_emulator,
)

PBIE = {"api-version": "2021-01-01"}
FABRIC = {"api-version": "2023-11-01"}
V2 = "/v1.0/myorg/GenerateToken"


def assert_arm_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["message"]
    assert isinstance(error, dict)
    return error


def powerbi_capacities(emu: Emulator) -> dict[str, dict[str, Any]]:
    response = emu.http.get("/v1.0/myorg/capacities", headers=emu.powerbi_headers())
    assert response.status_code == 200, response.text
    return {item["displayName"]: item for item in response.json()["value"]}


def arm_state(emu: Emulator, path: str, params: dict[str, str]) -> str:
    response = emu.http.get(path, params=params, headers=emu.arm_headers())
    assert response.status_code == 200, response.text
    state = response.json()["properties"]["state"]
    assert isinstance(state, str)
    return state


def wait_for(emu: Emulator, path: str, params: dict[str, str], wanted: str) -> None:
    deadline = time.monotonic() + 10
    while arm_state(emu, path, params) != wanted:
        assert time.monotonic() < deadline, f"never reached {wanted}"
        time.sleep(0.05)


def faults_url(name: str) -> str:
    return f"/emulator/api/capacities/{name}/faults"


# --- Power BI REST -------------------------------------------------------------------------------


def test_the_capacity_list_is_shaped_like_power_bis(shared_emulator: Emulator) -> None:
    response = shared_emulator.http.get(
        "/v1.0/myorg/capacities", headers=shared_emulator.powerbi_headers()
    )
    assert response.status_code == 200
    body = response.json()
    assert body["@odata.context"].endswith("/v1.0/myorg/$metadata#capacities")
    dedicated, fabric = body["value"]
    settings = shared_emulator.settings
    assert dedicated["displayName"] == settings.capacity_name == "embedportaldemo"
    assert fabric["displayName"] == settings.fabric_capacity_name == "embedportalfabric"
    for item, sku in ((dedicated, "A1"), (fabric, "F2")):
        assert set(item) == {
            "id",
            "displayName",
            "admins",
            "sku",
            "state",
            "capacityUserAccessRight",
            "region",
        }
        assert item["sku"] == sku and item["state"] == "Active"
        assert item["capacityUserAccessRight"] == "Admin"
        assert item["region"] == "West Europe"
        assert item["admins"] and item["id"] == item["id"].lower()
    # Pinned: the portal's tests and the docs give these ids.
    assert dedicated["id"] == "b339bc78-b288-5b65-a797-77c024ae3696"
    assert fabric["id"] == "9cc5d9d6-0cda-56e9-8f9a-cdae2d92659a"


def test_the_capacity_list_needs_a_power_bi_token(shared_emulator: Emulator) -> None:
    for headers in ({}, shared_emulator.arm_headers()):
        response = shared_emulator.http.get("/v1.0/myorg/capacities", headers=headers)
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "PowerBINotAuthorizedException"


def test_each_workspace_names_its_capacity(shared_emulator: Emulator) -> None:
    headers = shared_emulator.powerbi_headers()
    groups = shared_emulator.http.get("/v1.0/myorg/groups", headers=headers).json()["value"]
    by_id = {group["id"]: group for group in groups}
    capacities = powerbi_capacities(shared_emulator)
    demo, finance = by_id[GROUP], by_id[FINANCE_GROUP]
    assert demo["isOnDedicatedCapacity"] and finance["isOnDedicatedCapacity"]
    # Power BI spells a workspace's capacityId in capitals: compare ids case-insensitively.
    assert demo["capacityId"] == capacities["embedportaldemo"]["id"].upper()
    assert finance["capacityId"] == capacities["embedportalfabric"]["id"].upper()
    reports = shared_emulator.http.get(
        f"/v1.0/myorg/groups/{FINANCE_GROUP}/reports", headers=headers
    ).json()["value"]
    assert [(r["id"], r["name"]) for r in reports] == [(FINANCE_SUMMARY, "Finance Summary")]
    datasets = shared_emulator.http.get(
        f"/v1.0/myorg/groups/{FINANCE_GROUP}/datasets", headers=headers
    ).json()["value"]
    assert [d["name"] for d in datasets] == ["Finance Sales"]
    assert datasets[0]["id"] == reports[0]["datasetId"]
    assert not datasets[0]["isEffectiveIdentityRequired"]


# --- ARM: the Fabric capacity --------------------------------------------------------------------


def test_get_the_fabric_capacity(shared_emulator: Emulator) -> None:
    headers = shared_emulator.arm_headers()
    path = shared_emulator.fabric_capacity_path
    assert "/providers/Microsoft.Fabric/capacities/embedportalfabric" in path
    response = shared_emulator.http.get(path, params=FABRIC, headers=headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["id"] == path
    assert body["name"] == "embedportalfabric"
    assert body["type"] == "Microsoft.Fabric/capacities"
    assert body["sku"] == {"name": "F2", "tier": "Fabric"}
    assert body["properties"]["state"] == "Active"
    assert body["properties"]["provisioningState"] == "Succeeded"
    assert body["properties"]["administration"]["members"]
    listing = shared_emulator.http.get(path.rsplit("/", 1)[0], params=FABRIC, headers=headers)
    assert [item["name"] for item in listing.json()["value"]] == ["embedportalfabric"]
    subscription = f"/subscriptions/{shared_emulator.settings.subscription_id}"
    everywhere = shared_emulator.http.get(
        f"{subscription}/providers/Microsoft.Fabric/capacities", params=FABRIC, headers=headers
    )
    assert [item["name"] for item in everywhere.json()["value"]] == ["embedportalfabric"]


def test_each_provider_has_its_own_api_versions_and_capacities(shared_emulator: Emulator) -> None:
    headers = shared_emulator.arm_headers()
    http = shared_emulator.http
    fabric, dedicated = shared_emulator.fabric_capacity_path, shared_emulator.capacity_path
    assert_arm_error(
        http.get(fabric, params=PBIE, headers=headers), 400, "InvalidApiVersionParameter"
    )
    assert_arm_error(
        http.get(dedicated, params=FABRIC, headers=headers), 400, "InvalidApiVersionParameter"
    )
    # The Fabric capacity's name under the other provider, and the other way round: 404.
    swapped = fabric.replace("Microsoft.Fabric", "Microsoft.PowerBIDedicated")
    error = assert_arm_error(
        http.get(swapped, params=PBIE, headers=headers), 404, "ResourceNotFound"
    )
    assert "Microsoft.PowerBIDedicated/capacities/embedportalfabric" in error["message"]
    swapped = dedicated.replace("Microsoft.PowerBIDedicated", "Microsoft.Fabric")
    assert_arm_error(http.get(swapped, params=FABRIC, headers=headers), 404, "ResourceNotFound")
    assert_arm_error(
        http.post(swapped + "/suspend", params=FABRIC, headers=headers), 404, "ResourceNotFound"
    )


def test_fabric_suspend_resume_and_scale_are_long_running(emulator: Emulator) -> None:
    headers = emulator.arm_headers()
    http, path = emulator.http, emulator.fabric_capacity_path

    suspend = http.post(f"{path}/suspend", params=FABRIC, headers=headers)
    assert suspend.status_code == 202, suspend.text
    assert "/providers/Microsoft.Fabric/locations/" in suspend.headers["Location"]
    assert "/operationstatuses/" in suspend.headers["Azure-AsyncOperation"]
    assert int(suspend.headers["Retry-After"]) >= 0
    assert arm_state(emulator, path, FABRIC) == "Suspending"
    busy = http.post(f"{path}/resume", params=FABRIC, headers=headers)
    assert_arm_error(busy, 409, "BadRequest")
    assert_arm_error(
        http.patch(path, params=FABRIC, headers=headers, json={"sku": {"name": "F4"}}),
        409,
        "BadRequest",
    )
    # The operation is tracked under its own provider only.
    status_url = suspend.headers["Azure-AsyncOperation"]
    assert http.get(status_url, headers=headers).json()["status"] == "InProgress"
    other = status_url.replace("Microsoft.Fabric", "Microsoft.PowerBIDedicated").replace(
        "2023-11-01", "2021-01-01"
    )
    assert_arm_error(http.get(other, headers=headers), 404, "ResourceNotFound")

    wait_for(emulator, path, FABRIC, "Paused")
    assert http.get(status_url, headers=headers).json()["status"] == "Succeeded"
    final = http.get(suspend.headers["Location"], headers=headers)
    assert final.status_code == 200 and final.json()["properties"]["state"] == "Paused"
    # Power BI REST agrees; the other capacity is untouched.
    listed = powerbi_capacities(emulator)
    assert listed["embedportalfabric"]["state"] == "Suspended"
    assert listed["embedportaldemo"]["state"] == "Active"
    assert arm_state(emulator, emulator.capacity_path, PBIE) == "Succeeded"

    # The SKU changes while paused (Updating), and the capacity stays paused.
    scale = http.patch(
        path, params=FABRIC, headers=headers, json={"sku": {"name": "F4", "tier": "Fabric"}}
    )
    assert scale.status_code == 202, scale.text
    assert scale.json()["properties"]["state"] == "Updating"
    assert scale.json()["properties"]["provisioningState"] == "Updating"
    wait_for(emulator, path, FABRIC, "Paused")
    assert powerbi_capacities(emulator)["embedportalfabric"]["sku"] == "F4"

    resume = http.post(f"{path}/resume", params=FABRIC, headers=headers)
    assert resume.status_code == 202
    assert arm_state(emulator, path, FABRIC) == "Resuming"
    assert powerbi_capacities(emulator)["embedportalfabric"]["state"] == "Suspended"
    wait_for(emulator, path, FABRIC, "Active")
    assert powerbi_capacities(emulator)["embedportalfabric"]["state"] == "Active"

    meter = http.get("/emulator/api/capacities/embedportalfabric/meter").json()
    assert meter["state"] == "Active" and meter["sku"] == "F4"
    assert meter["startedCount"] == 1 and meter["pausedCount"] == 1
    assert set(emulator.stats()["capacities"]) == {"embedportaldemo", "embedportalfabric"}


@pytest.mark.parametrize(
    "body",
    [
        {"sku": {"name": "A1", "tier": "PBIE_Azure"}},
        {"sku": {"name": "A1"}},
        {"sku": {"name": "F3"}},
        {"sku": {"name": "F2", "tier": "PBIE_Azure"}},
    ],
)
def test_fabric_takes_only_f_skus(shared_emulator: Emulator, body: dict[str, Any]) -> None:
    response = shared_emulator.http.patch(
        shared_emulator.fabric_capacity_path,
        params=FABRIC,
        headers=shared_emulator.arm_headers(),
        json=body,
    )
    assert_arm_error(response, 400, "BadRequest")


def test_the_iframe_stops_only_on_the_paused_capacity(emulator: Emulator) -> None:
    answer = emulator.http.post(
        V2,
        headers=emulator.powerbi_headers(),
        json={"reports": [{"id": SALES_OVERVIEW}, {"id": FINANCE_SUMMARY}]},
    )
    assert answer.status_code == 200, answer.text
    auth = {"Authorization": f"EmbedToken {answer.json()['token']}"}
    http = emulator.http
    assert http.get(f"/emulator/api/reports/{FINANCE_SUMMARY}", headers=auth).status_code == 200

    http.post(
        f"{emulator.fabric_capacity_path}/suspend", params=FABRIC, headers=emulator.arm_headers()
    )
    wait_for(emulator, emulator.fabric_capacity_path, FABRIC, "Paused")
    refused = http.get(f"/emulator/api/reports/{FINANCE_SUMMARY}", headers=auth)
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "CapacityNotActive"
    assert http.get(f"/emulator/api/reports/{SALES_OVERVIEW}", headers=auth).status_code == 200


# --- fault knobs ---------------------------------------------------------------------------------


def test_a_reader_may_read_but_not_operate(emulator: Emulator) -> None:
    headers = emulator.arm_headers()
    http = emulator.http
    knob = http.put(faults_url("embedportaldemo"), json={"azureRole": "Reader"})
    assert knob.status_code == 200, knob.text
    assert knob.json() == {
        "azureRole": "Reader",
        "transitionSeconds": None,
        "provider": "Microsoft.PowerBIDedicated",
    }
    path = emulator.capacity_path
    assert http.get(path, params=PBIE, headers=headers).status_code == 200
    for response in (
        http.post(f"{path}/suspend", params=PBIE, headers=headers),
        http.post(f"{path}/resume", params=PBIE, headers=headers),
        http.patch(path, params=PBIE, headers=headers, json={"sku": {"name": "A2"}}),
    ):
        error = assert_arm_error(response, 403, "AuthorizationFailed")
        assert emulator.settings.client_id in error["message"]
        assert path in error["message"]
    assert arm_state(emulator, path, PBIE) == "Succeeded"
    # The other capacity keeps its own role.
    fabric = http.post(f"{emulator.fabric_capacity_path}/suspend", params=FABRIC, headers=headers)
    assert fabric.status_code == 202


def test_no_role_refuses_reads_and_hides_the_capacity_from_lists(emulator: Emulator) -> None:
    headers = emulator.arm_headers()
    http = emulator.http
    assert http.put(faults_url("embedportalfabric"), json={"azureRole": "None"}).status_code == 200
    path = emulator.fabric_capacity_path
    error = assert_arm_error(
        http.get(path, params=FABRIC, headers=headers), 403, "AuthorizationFailed"
    )
    assert "Microsoft.Fabric/capacities/read" in error["message"]
    listing = http.get(path.rsplit("/", 1)[0], params=FABRIC, headers=headers)
    assert listing.json()["value"] == []
    # Power BI does not care about Azure roles.
    assert powerbi_capacities(emulator)["embedportalfabric"]["state"] == "Active"

    reset = http.delete(faults_url("embedportalfabric"))
    assert reset.json() == {
        "azureRole": "Contributor",
        "transitionSeconds": None,
        "provider": "Microsoft.Fabric",
    }
    assert http.get(path, params=FABRIC, headers=headers).status_code == 200
    assert http.get(faults_url("embedportalfabric")).json()["azureRole"] == "Contributor"


def test_a_slow_transition_keeps_the_operation_running() -> None:
    with running_emulator(capacity_transition_seconds=0) as emu:
        headers = emu.arm_headers()
        knob = emu.http.put(faults_url("embedportaldemo"), json={"transitionSeconds": 30})
        assert knob.json()["transitionSeconds"] == 30
        suspend = emu.http.post(f"{emu.capacity_path}/suspend", params=PBIE, headers=headers)
        assert suspend.status_code == 202
        assert suspend.headers["Retry-After"] in ("29", "30")
        time.sleep(0.1)
        assert arm_state(emu, emu.capacity_path, PBIE) == "Suspending"
        status = emu.http.get(suspend.headers["Azure-AsyncOperation"], headers=headers)
        assert status.json()["status"] == "InProgress"
        # The other capacity still uses the emulator-wide (zero) transition time.
        fabric = emu.http.post(
            f"{emu.fabric_capacity_path}/suspend", params=FABRIC, headers=headers
        )
        assert fabric.status_code == 202
        assert arm_state(emu, emu.fabric_capacity_path, FABRIC) == "Paused"


@pytest.mark.parametrize(
    "body",
    [
        b"[]",
        b"{not json",
        b'{"azureRole": "Owner"}',
        b'{"azureRole": null}',
        b'{"transitionSeconds": -1}',
        b'{"transitionSeconds": "5"}',
        b'{"transitionSeconds": true}',
        b'{"transitionSeconds": 1e9}',
        b'{"fail": true}',
        b'{"azureRole": "Reader", "transitionSeconds": -1}',
    ],
)
def test_bad_knobs_are_refused_and_change_nothing(shared_emulator: Emulator, body: bytes) -> None:
    http = shared_emulator.http
    response = http.put(
        faults_url("embedportaldemo"), content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "InvalidRequest"
    assert http.get(faults_url("embedportaldemo")).json()["azureRole"] == "Contributor"


def test_knobs_of_an_unknown_capacity(shared_emulator: Emulator) -> None:
    for method in ("GET", "PUT", "DELETE"):
        response = shared_emulator.http.request(
            method, faults_url("nosuchcapacity"), json={"azureRole": "Reader"}
        )
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "PowerBIEntityNotFound"
