"""`embedportal emulator` as its own process, reached through settings the way a deployment
would configure it (EMBEDPORTAL_POWERBI_* / EMBEDPORTAL_ARM_URL / EMBEDPORTAL_CAPACITY_*)."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from embedportal.emulator.settings import EmulatorSettings
from embedportal.powerbi import CapacityClient, PowerBIClient, PowerBIConnection
from embedportal.settings import Settings
from tests.support.servers import embedportal_process, free_port


async def _exercise(connection: PowerBIConnection) -> None:
    async with PowerBIClient(connection) as client:
        workspace, _finance = await client.list_workspaces()  # the demo has two now
        reports = await client.list_reports(workspace.id)
        plain = next(r for r in reports if r.name == "Sales Overview")
        assert plain.dataset_id
        token = await client.generate_token(
            report_ids=[plain.id], dataset_ids=[plain.dataset_id], lifetime_minutes=5
        )
        assert 200 < token.seconds_remaining() <= 301

    async def quick(seconds: float) -> None:
        await anyio.sleep(min(seconds, 0.05))

    async with CapacityClient(connection, sleep=quick) as capacity:
        assert (await capacity.suspend()).is_paused
        assert (await capacity.resume()).is_running


def test_standalone_emulator_through_portal_settings(tmp_path: Path) -> None:
    port = free_port()
    defaults = EmulatorSettings()
    with embedportal_process(
        ["emulator", "--port", str(port)],
        port=port,
        env={"EMBEDPORTAL_EMULATOR_CAPACITY_TRANSITION_SECONDS": "0.2"},
        log_dir=tmp_path,
        health_path="/healthz",
    ) as server:
        base = server.base_url
        settings = Settings(
            powerbi_tenant_id=defaults.tenant_id,
            powerbi_client_id=defaults.client_id,
            powerbi_client_secret=defaults.client_secret,
            powerbi_authority_host=base,
            powerbi_api_url=base,
            arm_url=base,
            capacity_subscription_id=defaults.subscription_id,
            capacity_resource_group=defaults.resource_group,
            capacity_name=defaults.capacity_name,
        )
        connection = PowerBIConnection.from_settings(settings)
        anyio.run(_exercise, connection)


pytestmark = pytest.mark.timeout(60)
