"""The Power BI client over real HTTP against the built-in emulator: msal through the emulator's
Entra, REST reads, GenerateToken with and without RLS, lifetimes capped by the Entra token,
Entra token renewal, throttling, and the capacity over ARM."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import anyio
import httpx
import pytest

from embedportal.emulator.demo import REGION_MANAGER_ROLE
from embedportal.powerbi import (
    ARM_SCOPE,
    POWERBI_SCOPE,
    CapacityClient,
    EffectiveIdentity,
    EmbedToken,
    EntraTokenProvider,
    PowerBIAuthError,
    PowerBIBadRequestError,
    PowerBIClient,
    PowerBIError,
    PowerBINotFoundError,
    PowerBIThrottledError,
    ReportInfo,
)
from tests.powerbi.conftest import Emulator, EmulatorFactory

pytestmark = pytest.mark.anyio


async def quick_sleep(seconds: float) -> None:
    """Poll a 0.2 s capacity transition sooner than the emulator's whole-second Retry-After."""
    await anyio.sleep(min(seconds, 0.05))


@pytest.fixture
async def powerbi(emulator: Emulator) -> AsyncIterator[PowerBIClient]:
    async with PowerBIClient(emulator.connection()) as client:
        yield client


async def demo_reports(client: PowerBIClient) -> tuple[str, dict[str, ReportInfo]]:
    workspace, _finance = await client.list_workspaces()  # the demo has two now
    reports = {r.name: r for r in await client.list_reports(workspace.id)}
    return workspace.id, reports


# -- Entra through msal ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scope", "audience"),
    [
        (POWERBI_SCOPE, "https://analysis.windows.net/powerbi/api"),
        (ARM_SCOPE, "https://management.azure.com/"),
    ],
)
def test_msal_gets_tokens_from_the_emulator_authority(
    emulator: Emulator, scope: str, audience: str
) -> None:
    with EntraTokenProvider(emulator.connection(), scope=scope) as provider:
        token = provider.token(60)
    claims = emulator.app.state.emulator.signer.read_entra_token(token.value)
    assert claims.audience.rstrip("/") == audience.rstrip("/")
    assert claims.app_id == emulator.settings.client_id
    assert abs(token.expires_at_utc.timestamp() - claims.expires_at) < 2


def test_wrong_secret_is_refused_by_entra(emulator: Emulator) -> None:
    with (
        EntraTokenProvider(
            emulator.connection(client_secret="not-the-secret-xyz"), scope=POWERBI_SCOPE
        ) as provider,
        pytest.raises(PowerBIAuthError) as caught,
    ):
        provider.token(60)
    assert caught.value.code == "invalid_client"
    assert caught.value.status == 401
    assert "AADSTS7000215" in str(caught.value)
    assert "not-the-secret-xyz" not in str(caught.value)


def test_unknown_tenant_is_refused(emulator: Emulator) -> None:
    conn = emulator.connection(tenant_id="99999999-9999-9999-9999-999999999999")
    with (
        EntraTokenProvider(conn, scope=POWERBI_SCOPE) as provider,
        pytest.raises(PowerBIAuthError, match="discovery failed"),
    ):
        provider.token(60)


# -- REST reads --------------------------------------------------------------------------------


async def test_workspaces_reports_and_datasets(powerbi: PowerBIClient) -> None:
    workspace, _finance = await powerbi.list_workspaces()  # the demo has two now
    assert workspace.name and workspace.is_on_dedicated_capacity and workspace.capacity_id
    reports = await powerbi.list_reports(workspace.id)
    assert len(reports) >= 2
    for report in reports:
        assert report.workspace_id == workspace.id
        assert "/reportEmbed?reportId=" in report.embed_url and report.dataset_id
    one = await powerbi.get_report(workspace.id, reports[0].id)
    assert one == reports[0]
    datasets = await powerbi.list_datasets(workspace.id)
    assert {d.id for d in datasets} >= {r.dataset_id for r in reports}
    rls = [d for d in datasets if d.is_effective_identity_required]
    assert rls and rls[0].is_effective_identity_roles_required
    assert await powerbi.get_dataset(workspace.id, rls[0].id) == rls[0]


async def test_unknown_ids_are_not_found(powerbi: PowerBIClient) -> None:
    workspace_id, _ = await demo_reports(powerbi)
    missing = "00000000-0000-0000-0000-00000000dead"
    with pytest.raises(PowerBINotFoundError) as caught:
        await powerbi.get_report(workspace_id, missing)
    assert caught.value.code == "PowerBIEntityNotFound" and caught.value.request_id
    with pytest.raises(PowerBINotFoundError):
        await powerbi.list_reports(missing)
    with pytest.raises(PowerBINotFoundError):
        await powerbi.get_dataset(workspace_id, missing)


# -- GenerateToken -----------------------------------------------------------------------------


async def test_generate_token_without_rls(powerbi: PowerBIClient, emulator: Emulator) -> None:
    _, reports = await demo_reports(powerbi)
    report = reports["Sales Overview"]
    assert report.dataset_id
    before = datetime.now(UTC)
    token = await powerbi.generate_token(
        report_ids=[report.id], dataset_ids=[report.dataset_id], lifetime_minutes=30
    )
    assert token.expiration.tzinfo is not None
    assert timedelta(minutes=29) < token.expiration - before <= timedelta(minutes=30, seconds=2)
    # The token opens the report in the emulator's iframe API.
    async with httpx.AsyncClient() as http:
        response = await http.get(
            f"{emulator.base_url}/emulator/api/reports/{report.id}",
            headers={"Authorization": f"EmbedToken {token.token}"},
        )
    assert response.status_code == 200, response.text


async def test_generate_token_with_rls_identity(powerbi: PowerBIClient, emulator: Emulator) -> None:
    _, reports = await demo_reports(powerbi)
    report = reports["Regional Performance"]
    assert report.dataset_id
    identity = EffectiveIdentity("north@example.com", [REGION_MANAGER_ROLE], [report.dataset_id])
    token = await powerbi.generate_token(
        report_ids=[report.id], dataset_ids=[report.dataset_id], identities=[identity]
    )
    claims = emulator.app.state.emulator.signer.read_embed_token(token.token)
    assert claims["tokenId"] == token.token_id
    assert claims["identities"] == [
        {
            "username": "north@example.com",
            "roles": [REGION_MANAGER_ROLE],
            "datasets": [report.dataset_id],
        }
    ]


async def test_rls_dataset_without_identity_is_a_bad_request(powerbi: PowerBIClient) -> None:
    _, reports = await demo_reports(powerbi)
    report = reports["Regional Performance"]
    assert report.dataset_id
    with pytest.raises(PowerBIBadRequestError, match="requires effective identity") as caught:
        await powerbi.generate_token(report_ids=[report.id], dataset_ids=[report.dataset_id])
    assert caught.value.status == 400 and caught.value.request_id
    plain = reports["Sales Overview"]
    assert plain.dataset_id
    with pytest.raises(PowerBIBadRequestError, match="shouldn't have effective identity"):
        await powerbi.generate_token(
            report_ids=[plain.id],
            dataset_ids=[plain.dataset_id],
            identities=[EffectiveIdentity("north@example.com", ["x"], [plain.dataset_id])],
        )


async def test_embed_expiry_is_capped_by_the_entra_tokens_remaining_life(
    start_emulator: EmulatorFactory,
) -> None:
    with start_emulator(entra_min_lifetime_seconds=20, entra_max_lifetime_seconds=20) as emu:
        async with PowerBIClient(emu.connection()) as client:
            _, reports = await demo_reports(client)
            report = reports["Sales Overview"]
            assert report.dataset_id
            dataset_id = report.dataset_id

            async def mint(min_entra_remaining_seconds: float) -> EmbedToken:
                return await client.generate_token(
                    report_ids=[report.id],
                    dataset_ids=[dataset_id],
                    min_entra_remaining_seconds=min_entra_remaining_seconds,
                )

            first = await mint(5)
            entra_first = client.tokens.peek(0)
            assert entra_first is not None
            # A 60-minute embed token would be nice; the Entra token has ~20 s.
            assert first.seconds_remaining() <= 21
            assert abs(first.expiration.timestamp() - entra_first.expires_at_utc.timestamp()) < 2

            await anyio.sleep(1.5)
            # Enough left for the caller: the same Entra token, so an even shorter embed token.
            second = await mint(5)
            assert client.tokens.peek(0) is entra_first
            assert second.expiration <= first.expiration

            # Asking for more than the held token has left fetches a fresh Entra token.
            third = await mint(19.5)
            entra_third = client.tokens.peek(0)
            assert entra_third is not None and entra_third.value != entra_first.value
            assert third.expiration > first.expiration
            assert emu.counters.entra_tokens_issued == 2


async def test_entra_token_is_renewed_when_it_runs_out(start_emulator: EmulatorFactory) -> None:
    with start_emulator(entra_min_lifetime_seconds=2, entra_max_lifetime_seconds=2) as emu:
        async with PowerBIClient(emu.connection()) as client:
            await client.list_workspaces()
            first = client.tokens.peek(0)
            assert first is not None
            await anyio.sleep(2.2)
            await client.list_workspaces()
            second = client.tokens.peek(0)
            assert second is not None and second.value != first.value
            assert emu.counters.entra_tokens_issued == 2


async def test_token_expired_answer_fetches_a_new_entra_token(
    start_emulator: EmulatorFactory,
) -> None:
    """A provider whose clock lags believes an expired token is fine; the API's TokenExpired
    makes the client drop it, fetch another and retry once."""
    # Two-second tokens: the fresh token must outlive the retry even on a busy machine (with
    # one-second ones a CI run saw the retry's token expire too, and a third fetched).
    with start_emulator(entra_min_lifetime_seconds=2, entra_max_lifetime_seconds=2) as emu:
        frozen = time.monotonic()
        conn = emu.connection()
        provider = EntraTokenProvider(conn, scope=POWERBI_SCOPE, clock=lambda: frozen)
        try:
            async with PowerBIClient(conn, token_provider=provider) as client:
                await client.list_workspaces()
                # The token is dead, but the provider's clock says otherwise.
                await anyio.sleep(2.2)
                workspaces = await client.list_workspaces()
                assert workspaces
                assert emu.counters.entra_tokens_issued == 2
        finally:
            provider.close()


# -- throttling --------------------------------------------------------------------------------


async def test_short_throttling_is_waited_out(start_emulator: EmulatorFactory) -> None:
    with start_emulator(request_budget=2, request_budget_window_seconds=1) as emu:
        async with PowerBIClient(emu.connection()) as client:
            started = time.monotonic()
            for _ in range(3):
                await client.list_workspaces()
            assert time.monotonic() - started >= 0.5
            assert emu.counters.throttled_requests >= 1


async def test_long_throttling_is_raised_with_retry_after(
    start_emulator: EmulatorFactory,
) -> None:
    with start_emulator(request_budget=1, request_budget_window_seconds=60) as emu:
        async with PowerBIClient(emu.connection()) as client:
            await client.list_workspaces()
            with pytest.raises(PowerBIThrottledError) as caught:
                await client.list_workspaces()
            assert caught.value.status == 429
            assert caught.value.retry_after_seconds is not None
            assert 30 < caught.value.retry_after_seconds <= 60


async def test_logs_hold_ids_but_no_secrets(
    emulator: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with PowerBIClient(emulator.connection()) as client:
        _, reports = await demo_reports(client)
        report = reports["Regional Performance"]
        assert report.dataset_id
        token = await client.generate_token(
            report_ids=[report.id],
            dataset_ids=[report.dataset_id],
            identities=[
                EffectiveIdentity("north@example.com", [REGION_MANAGER_ROLE], [report.dataset_id])
            ],
        )
        entra = client.tokens.peek(0)
        assert entra is not None
    text = "\n".join(f"{r.name} {r.getMessage()}" for r in caplog.records)
    assert token.token_id in text
    for secret in (emulator.settings.client_secret, token.token, entra.value):
        assert secret not in text
    assert f"Bearer {entra.value[:20]}" not in text


# -- capacity over ARM -------------------------------------------------------------------------


async def test_capacity_suspend_scale_resume(start_emulator: EmulatorFactory) -> None:
    with start_emulator(capacity_transition_seconds=0.2) as emu:
        async with CapacityClient(emu.connection(), sleep=quick_sleep) as capacity:
            info = await capacity.get()
            assert (info.name, info.state, info.sku_name, info.sku_tier) == (
                emu.settings.capacity_name,
                "Succeeded",
                "A1",
                "PBIE_Azure",
            )
            assert info.is_running

            paused = await capacity.suspend()
            assert paused.state == "Paused" and paused.is_paused
            assert (await capacity.suspend()).state == "Paused"  # already paused: 200, no LRO

            scaled = await capacity.update_sku("A2")
            assert (scaled.state, scaled.sku_name) == ("Paused", "A2")

            running = await capacity.resume()
            assert (running.state, running.sku_name) == ("Succeeded", "A2")

            back = await capacity.update_sku("A1")
            assert (back.state, back.sku_name) == ("Succeeded", "A1")

            pending = await capacity.suspend(wait=False)
            assert pending.state == "Suspending"
            with pytest.raises(PowerBIError) as conflict:
                await capacity.resume()
            assert conflict.value.status == 409
            await anyio.sleep(0.3)
            assert (await capacity.get()).state == "Paused"


async def test_capacity_errors(emulator: Emulator) -> None:
    conn = emulator.connection(capacity_name="nosuchcapacity")
    async with CapacityClient(conn, sleep=quick_sleep) as capacity:
        with pytest.raises(PowerBINotFoundError) as caught:
            await capacity.get()
        assert caught.value.code == "ResourceNotFound" and caught.value.request_id
    async with CapacityClient(emulator.connection(), sleep=quick_sleep) as capacity:
        with pytest.raises(PowerBIBadRequestError, match="not valid"):
            await capacity.update_sku("Z9")


async def test_arm_token_is_not_accepted_by_power_bi(emulator: Emulator) -> None:
    conn = emulator.connection()
    provider = EntraTokenProvider(conn, scope=ARM_SCOPE)
    try:
        async with PowerBIClient(conn, token_provider=provider) as client:
            with pytest.raises(PowerBIError) as caught:
                await client.list_workspaces()
        assert caught.value.status == 403
    finally:
        provider.close()
