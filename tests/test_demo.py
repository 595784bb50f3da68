"""The demo seeding `serve` runs on the embedded default in development."""

from __future__ import annotations

import asyncio

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from embedportal import demo
from embedportal.db.models import (
    Capacity,
    CapacityScheduleEntry,
    Group,
    GroupMembership,
    Report,
    ReportGrant,
    Role,
    User,
)
from embedportal.db.session import session_scope
from embedportal.emulator.demo import (
    FINANCE_SUMMARY_REPORT_ID,
    REGION_MANAGER_ROLE,
    REGIONAL_PERFORMANCE_REPORT_ID,
    SALES_OVERVIEW_REPORT_ID,
)
from embedportal.emulator.tokens import unverified_claims
from embedportal.settings import Settings
from tests.support.portal import TEST_SECRET_KEY, LoginAs, csrf_of


@pytest.fixture
def settings_overrides(emulator_settings_overrides: dict[str, object]) -> dict[str, object]:
    # As `serve` runs the demo: no workspace set, so every workspace the emulator has.
    return {**emulator_settings_overrides, "powerbi_workspace_id": None}


def run_seed(app: FastAPI) -> None:
    """What `serve` does: prepare, then run the startup hooks (here in a loop of their own,
    closing the Power BI clients they opened in it)."""
    demo.prepare_demo(app)

    async def start() -> None:
        for hook in app.state.on_startup:
            await hook()
        await app.state.powerbi_clients.aclose()

    asyncio.run(start())
    app.state.on_startup.clear()


def counts(app: FastAPI) -> tuple[int, ...]:
    with session_scope(app.state.session_factory) as db:
        return tuple(
            db.scalar(select(func.count()).select_from(model)) or 0
            for model in (User, Group, GroupMembership, ReportGrant)
        )


def test_the_demo_creates_accounts_syncs_and_grants_once(
    app: FastAPI, fast_password_hashing: None
) -> None:
    run_seed(app)
    with session_scope(app.state.session_factory) as db:
        admin = db.scalars(select(User).where(User.email == demo.ADMIN_EMAIL)).one()
        viewer = db.scalars(select(User).where(User.email == demo.VIEWER_EMAIL)).one()
        assert admin.role == Role.ADMIN and viewer.role == Role.VIEWER
        assert viewer.rls_username == "north@example.com"
        group = db.scalars(select(Group).where(Group.name == demo.GROUP_NAME)).one()
        grants = {grant.report_id: grant.rls_roles for grant in db.scalars(select(ReportGrant))}
        assert all(
            grant_group == group.id for grant_group in db.scalars(select(ReportGrant.group_id))
        )
    assert len(grants) == 4  # the second demo workspace's report too
    assert grants[REGIONAL_PERFORMANCE_REPORT_ID] == [REGION_MANAGER_ROLE]
    assert counts(app) == (2, 1, 1, 4)
    assert any("embedportal-viewer" in line for line in app.state.startup_notes)

    run_seed(app)  # again: nothing new
    assert counts(app) == (2, 1, 1, 4)


def test_the_demo_has_two_configured_capacities_and_reports_on_each(
    app: FastAPI, fast_password_hashing: None
) -> None:
    run_seed(app)
    settings = app.state.settings
    with session_scope(app.state.session_factory) as db:
        capacities = {c.display_name: c for c in db.scalars(select(Capacity))}
        assert set(capacities) == {"embedportaldemo", "embedportalfabric"}
        for capacity, provider in (
            (capacities["embedportaldemo"], "Microsoft.PowerBIDedicated"),
            (capacities["embedportalfabric"], "Microsoft.Fabric"),
        ):
            assert capacity.is_configured and capacity.provider == provider
            assert capacity.subscription_id == settings.capacity_subscription_id
            assert capacity.resource_group == settings.capacity_resource_group
            assert capacity.resource_name == capacity.display_name
        reports = {r.id: r.capacity_id for r in db.scalars(select(Report))}
    assert reports[SALES_OVERVIEW_REPORT_ID] == capacities["embedportaldemo"].id
    assert reports[FINANCE_SUMMARY_REPORT_ID] == capacities["embedportalfabric"].id
    grant_counts = counts(app)
    run_seed(app)  # again: an administrator's later changes would survive; nothing new here
    assert counts(app) == grant_counts


def test_the_demo_shows_cost_control_on_both_capacities(
    app: FastAPI, fast_password_hashing: None
) -> None:
    """Both pause after half an hour unused, the Fabric one follows office hours, and the demo
    viewers may start a paused capacity by opening a report."""
    run_seed(app)
    run_seed(app)  # a restart adds no second schedule
    with session_scope(app.state.session_factory) as db:
        capacities = {c.display_name: c for c in db.scalars(select(Capacity))}
        assert {c.idle_pause_minutes for c in capacities.values()} == {30}
        rows = db.scalars(select(CapacityScheduleEntry)).all()
        assert {row.capacity_id for row in rows} == {capacities["embedportalfabric"].id}
        assert sorted((row.weekday, row.at_minute, row.action) for row in rows)[:2] == [
            (0, 8 * 60, "turn_on"),
            (0, 19 * 60, "turn_off"),
        ]
        assert len(rows) == 10
        group = db.scalars(select(Group)).one()
        assert group.may_start_capacity and not group.keeps_capacity_on


def test_the_demo_viewer_can_sign_in_and_open_the_regional_report(
    app: FastAPI, client: TestClient, fast_password_hashing: None, login_as: LoginAs
) -> None:
    run_seed(app)
    signed_in = login_as(demo.VIEWER_EMAIL, demo.VIEWER_PASSWORD)
    page = signed_in.get("/reports")
    assert "Regional Performance" in page.text and "Sales Overview" in page.text
    assert "Finance Summary" in page.text
    response = signed_in.post(
        f"/api/reports/{REGIONAL_PERFORMANCE_REPORT_ID}/token",
        headers={"X-CSRF-Token": csrf_of(signed_in, "/reports")},
    )
    assert response.status_code == 200, response.text
    # The report on the second (Fabric) capacity opens too.
    response = signed_in.post(
        f"/api/reports/{FINANCE_SUMMARY_REPORT_ID}/token",
        headers={"X-CSRF-Token": csrf_of(signed_in, "/reports")},
    )
    assert response.status_code == 200, response.text


def test_the_demo_administrator_opens_the_regional_report_as_a_region_manager(
    app: FastAPI, client: TestClient, fast_password_hashing: None, login_as: LoginAs
) -> None:
    run_seed(app)
    signed_in = login_as(demo.ADMIN_EMAIL, demo.ADMIN_PASSWORD)
    response = signed_in.post(
        f"/api/reports/{REGIONAL_PERFORMANCE_REPORT_ID}/token",
        headers={"X-CSRF-Token": csrf_of(signed_in, "/reports")},
    )
    assert response.status_code == 200, response.text
    claims = unverified_claims(response.json()["token"])
    [identity] = claims["identities"]
    assert identity["username"] == demo.ADMIN_RLS_USERNAME
    assert identity["roles"] == [REGION_MANAGER_ROLE]


@pytest.mark.parametrize(
    ("environment", "demo_flag", "with_emulator", "wanted"),
    [
        ("development", True, True, True),
        ("development", False, True, False),
        ("development", True, False, False),
        ("production", True, True, False),
    ],
)
def test_the_demo_runs_only_in_development_on_the_embedded_default(
    environment: str, demo_flag: bool, with_emulator: bool, wanted: bool
) -> None:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        environment=environment,  # type: ignore[arg-type]
        demo=demo_flag,
        secret_key=TEST_SECRET_KEY,  # type: ignore[arg-type]
    )
    assert demo.demo_wanted(settings, with_emulator=with_emulator) is wanted
