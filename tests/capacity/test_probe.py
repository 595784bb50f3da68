"""The token API holds tokens back while the capacity is paused (design.md's 503
CapacityNotActive), asking ARM on the real emulator over HTTP, and lets them through again once
it runs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from embedportal.capacity.probe import RECHECK_RUNNING_SECONDS, CapacityProbe, CapacityReading
from embedportal.powerbi import PowerBIConnection
from tests.emulator.harness import Emulator, running_emulator
from tests.support.portal import (
    Grant,
    LoginAs,
    MakeUser,
    SyncedReports,
    csrf_of,
    portal_settings_for,
)

pytestmark = pytest.mark.usefixtures("fast_password_hashing")

API_VERSION = {"api-version": "2021-01-01"}


@pytest.fixture
def own_emulator() -> Iterator[Emulator]:
    """An emulator of this module's own: pausing its capacity must not disturb other tests."""
    with running_emulator(capacity_transition_seconds=0.1) as emulator:
        yield emulator


@pytest.fixture
def settings_overrides(own_emulator: Emulator) -> dict[str, object]:
    return portal_settings_for(own_emulator)


def set_capacity(emulator: Emulator, action: str, expected_state: str) -> None:
    path = emulator.capacity_path
    response = emulator.http.post(
        f"{path}/{action}", params=API_VERSION, headers=emulator.arm_headers()
    )
    assert response.status_code in (200, 202), response.text
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        state = emulator.http.get(path, params=API_VERSION, headers=emulator.arm_headers())
        if state.json()["properties"]["state"] == expected_state:
            return
        time.sleep(0.05)
    raise AssertionError(f"capacity never reached {expected_state}")


def test_tokens_wait_while_the_capacity_is_paused(
    app: FastAPI,
    client: TestClient,
    own_emulator: Emulator,
    synced_reports: SyncedReports,
    make_user: MakeUser,
    login_as: LoginAs,
    grant: Grant,
) -> None:
    make_user("ana@example.com")
    grant(synced_reports["Sales Overview"], user="ana@example.com")
    viewer = login_as("ana@example.com")
    csrf = csrf_of(viewer, "/reports")
    url = f"/api/reports/{synced_reports['Sales Overview']}/token"
    assert viewer.post(url, headers={"X-CSRF-Token": csrf}).status_code == 200

    set_capacity(own_emulator, "suspend", "Paused")
    app.state.capacity_probe.forget()  # as if the probe's few seconds had passed
    paused = viewer.post(url, headers={"X-CSRF-Token": csrf})
    assert paused.status_code == 503
    assert paused.json()["code"] == "CapacityNotActive"
    assert int(paused.headers["Retry-After"]) >= 1

    set_capacity(own_emulator, "resume", "Succeeded")
    app.state.capacity_probe.forget()
    assert viewer.post(url, headers={"X-CSRF-Token": csrf}).status_code == 200


def test_one_arm_call_serves_many_token_requests(own_emulator: Emulator) -> None:
    settings = own_emulator.settings
    connection = PowerBIConnection(
        tenant_id=settings.tenant_id,
        client_id=settings.client_id,
        client_secret=settings.client_secret,
        authority_host=own_emulator.base_url,
        api_url=own_emulator.base_url,
        arm_url=own_emulator.base_url,
        subscription_id=settings.subscription_id,
        resource_group=settings.resource_group,
        capacity_name=settings.capacity_name,
    )
    now = [0.0]
    probe = CapacityProbe(clock=lambda: now[0])
    arm_reads = 0
    read = probe._read  # noqa: SLF001 - counting the ARM reads behind the cache

    async def counting_read(c: PowerBIConnection) -> CapacityReading:
        nonlocal arm_reads
        arm_reads += 1
        return await read(c)

    probe._read = counting_read  # type: ignore[method-assign]  # noqa: SLF001

    async def scenario() -> set[bool | None]:
        readings = await asyncio.gather(*(probe.reading(connection) for _ in range(20)))
        now[0] += RECHECK_RUNNING_SECONDS - 1  # still fresh
        readings.append(await probe.reading(connection))
        now[0] += 2  # stale: read again
        readings.append(await probe.reading(connection))
        await probe.aclose()
        return {reading.running for reading in readings}

    assert asyncio.run(scenario()) == {True}
    assert arm_reads == 2


def test_an_unconfigured_or_unreachable_capacity_does_not_hold_tokens_back() -> None:
    unreachable = PowerBIConnection(
        tenant_id="t",
        client_id="c",
        client_secret="s",
        authority_host="http://127.0.0.1:9",
        api_url="http://127.0.0.1:9",
        arm_url="http://127.0.0.1:9",
        subscription_id="sub",
        resource_group="rg",
        capacity_name="cap",
    )
    no_capacity = PowerBIConnection(tenant_id="t", client_id="c", client_secret="s")

    async def scenario() -> tuple[bool | None, bool | None]:
        probe = CapacityProbe()
        first = await probe.reading(unreachable)
        second = await probe.reading(no_capacity)
        await probe.aclose()
        return first.running, second.running

    assert asyncio.run(scenario()) == (None, None)
