"""Capacities through the real clients over HTTP against the emulator: Power BI's capacity list
and workspaces' capacity ids, and CapacityClient on either provider by explicit coordinates,
with ARM's 403 / 404 / 409 and a time-out as typed errors."""

from __future__ import annotations

from collections.abc import Iterator

import anyio
import httpx
import pytest

from embedportal.emulator.demo import FINANCE_WORKSPACE_ID
from embedportal.powerbi import (
    FABRIC,
    POWERBI_DEDICATED,
    CapacityClient,
    CapacityCoordinates,
    CapacityNotFoundError,
    CapacityOperationInProgressError,
    CapacityOperationTimeoutError,
    CapacityPermissionError,
    PowerBIClient,
)
from tests.powerbi.conftest import Emulator, EmulatorFactory

pytestmark = pytest.mark.anyio


async def quick_sleep(seconds: float) -> None:
    await anyio.sleep(min(seconds, 0.05))


def fabric(emu: Emulator, **changes: str) -> CapacityCoordinates:
    values = {
        "subscription_id": emu.settings.subscription_id,
        "resource_group": emu.settings.resource_group,
        "name": emu.settings.fabric_capacity_name,
        "provider": FABRIC,
        **changes,
    }
    return CapacityCoordinates(**values)  # type: ignore[arg-type]


def dedicated(emu: Emulator) -> CapacityCoordinates:
    return CapacityCoordinates(
        emu.settings.subscription_id,
        emu.settings.resource_group,
        emu.settings.capacity_name,
        POWERBI_DEDICATED,
    )


class Knobs:
    """The emulator's fault knobs for one capacity, reset when the test ends."""

    def __init__(self, emu: Emulator) -> None:
        self.http = httpx.Client(base_url=emu.base_url, timeout=10)
        self.touched: set[str] = set()

    def set(self, name: str, **knobs: object) -> None:
        self.touched.add(name)
        response = self.http.put(f"/emulator/api/capacities/{name}/faults", json=knobs)
        assert response.status_code == 200, response.text

    def reset(self) -> None:
        for name in self.touched:
            self.http.delete(f"/emulator/api/capacities/{name}/faults")
        self.http.close()


@pytest.fixture
def knobs(emulator: Emulator) -> Iterator[Knobs]:
    controls = Knobs(emulator)
    yield controls
    controls.reset()


async def test_capacities_and_the_workspaces_on_them(emulator: Emulator) -> None:
    async with PowerBIClient(emulator.connection()) as client:
        capacities = {c.display_name: c for c in await client.list_capacities()}
        workspaces = {w.id: w for w in await client.list_workspaces()}
    assert set(capacities) == {"embedportaldemo", "embedportalfabric"}
    demo, second = capacities["embedportaldemo"], capacities["embedportalfabric"]
    assert (demo.sku, demo.state, demo.region) == ("A1", "Active", "West Europe")
    assert (second.sku, second.state, second.region) == ("F2", "Active", "West Europe")
    assert demo.is_active and demo.admins and demo.user_access_right == "Admin"
    finance = workspaces[FINANCE_WORKSPACE_ID]
    assert finance.is_on_dedicated_capacity and finance.capacity_id
    assert finance.capacity_id.lower() == second.id.lower()
    others = [w for w in workspaces.values() if w.id != FINANCE_WORKSPACE_ID]
    assert [w.capacity_id.lower() for w in others if w.capacity_id] == [demo.id.lower()]


async def test_a_fabric_capacity_by_its_coordinates(start_emulator: EmulatorFactory) -> None:
    with start_emulator(capacity_transition_seconds=0.2) as emu:
        connection = emu.connection(subscription_id=None, resource_group=None, capacity_name=None)
        async with (
            CapacityClient(connection, capacity=fabric(emu), sleep=quick_sleep) as capacity,
            PowerBIClient(connection) as powerbi,
        ):
            info = await capacity.get()
            assert (info.name, info.state, info.sku_name, info.sku_tier) == (
                "embedportalfabric",
                "Active",
                "F2",
                "Fabric",
            )
            assert info.is_running and capacity.active_state == "Active"

            paused = await capacity.suspend()
            assert paused.state == "Paused" and paused.is_paused
            states = {c.display_name: c.state for c in await powerbi.list_capacities()}
            assert states == {"embedportaldemo": "Active", "embedportalfabric": "Suspended"}

            scaled = await capacity.update_sku("F4")
            assert (scaled.state, scaled.sku_name, scaled.sku_tier) == ("Paused", "F4", "Fabric")
            running = await capacity.resume()
            assert (running.state, running.sku_name) == ("Active", "F4")
            states = {c.display_name: c.state for c in await powerbi.list_capacities()}
            assert states["embedportalfabric"] == "Active"

        # The Power BI Embedded one, by coordinates too, next to the connection-based client.
        async with CapacityClient(connection, capacity=dedicated(emu), sleep=quick_sleep) as one:
            assert (await one.suspend()).state == "Paused"
        async with CapacityClient(emu.connection(), sleep=quick_sleep) as same:
            assert (await same.get()).state == "Paused"
            assert (await same.resume()).state == "Succeeded"


async def test_missing_azure_roles_are_named(emulator: Emulator, knobs: Knobs) -> None:
    coordinates = fabric(emulator)
    async with CapacityClient(
        emulator.connection(), capacity=coordinates, sleep=quick_sleep
    ) as capacity:
        knobs.set(coordinates.name, azureRole="Reader")
        assert (await capacity.get()).is_running  # reading is allowed
        for operate in (capacity.suspend, capacity.resume):
            with pytest.raises(CapacityPermissionError) as caught:
                await operate()
            assert caught.value.required_role == "Contributor"
            assert caught.value.code == "AuthorizationFailed"
            assert "Contributor role" in caught.value.message
        with pytest.raises(CapacityPermissionError):
            await capacity.update_sku("F4")

        knobs.set(coordinates.name, azureRole="None")
        with pytest.raises(CapacityPermissionError) as caught:
            await capacity.get()
        assert caught.value.required_role == "Reader"
        assert "'embedportalfabric'" in caught.value.message


async def test_unknown_coordinates_are_not_found(emulator: Emulator) -> None:
    connection = emulator.connection()
    for coordinates in (
        fabric(emulator, name="nosuchcapacity"),
        fabric(emulator, resource_group="other-group"),
        fabric(emulator, subscription_id="11111111-2222-3333-4444-555555555555"),
        # A Fabric capacity addressed as a Power BI Embedded one.
        fabric(emulator, provider=POWERBI_DEDICATED),
    ):
        async with CapacityClient(connection, capacity=coordinates, sleep=quick_sleep) as client:
            with pytest.raises(CapacityNotFoundError) as caught:
                await client.get()
            assert caught.value.status == 404 and caught.value.request_id
            assert coordinates.provider in caught.value.message
            assert f"'{coordinates.resource_group}'" in caught.value.message


async def test_an_operation_in_progress_is_a_clear_conflict(
    start_emulator: EmulatorFactory,
) -> None:
    with start_emulator(capacity_transition_seconds=0.3) as emu:
        async with CapacityClient(
            emu.connection(), capacity=fabric(emu), sleep=quick_sleep
        ) as capacity:
            pending = await capacity.suspend(wait=False)
            assert pending.state == "Suspending"
            for attempt in (capacity.resume, lambda: capacity.update_sku("F8")):
                with pytest.raises(CapacityOperationInProgressError) as caught:
                    await attempt()
                assert caught.value.status == 409
                assert caught.value.capacity_name == "embedportalfabric"
                assert "still running" in caught.value.message


async def test_an_operation_that_outlives_the_wait_times_out(
    start_emulator: EmulatorFactory,
) -> None:
    with start_emulator(capacity_transition_seconds=0.2) as emu:
        knobs = Knobs(emu)
        knobs.set(emu.settings.capacity_name, transitionSeconds=30)
        async with CapacityClient(
            emu.connection(), sleep=quick_sleep, operation_timeout_seconds=0.5
        ) as capacity:
            with pytest.raises(CapacityOperationTimeoutError) as caught:
                await capacity.suspend()
            error = caught.value
            assert error.timeout_seconds == 0.5 and error.last_state == "Suspending"
            assert "not finished after 0.5s" in error.message
            # Azure (here the emulator) keeps going: the capacity is still on its way.
            assert (await capacity.get()).state == "Suspending"
        knobs.reset()
