"""The demo: with the built-in emulator in development, `serve` shows reports at once.

Creates (when absent) an administrator and a viewer, a "Demo viewers" group holding the viewer,
syncs the emulator's demo workspaces (every workspace, unless one is set) and grants their
reports to the group, with the emulator's RLS role on the report that needs one. It also syncs
the capacities and configures their Azure coordinates (the emulator keeps both in the demo
resource group under their display names), so the demo has two manageable capacities. Running
it again changes nothing: whatever exists is kept as it is (an administrator's later edits
survive a restart).
"""

from __future__ import annotations

import asyncio
import logging
import time

from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from embedportal.access.catalogue import SyncResult, apply_catalogue, fetch_catalogue
from embedportal.access.grants import grant_report
from embedportal.access.organization import PowerBIClients, effective_connection, get_organization
from embedportal.access.users import create_user, find_user_by_email
from embedportal.capacity.inventory import (
    CapacityInputError,
    CapacityInventory,
    apply_capacity_inventory,
    configure_capacity,
    fetch_capacity_inventory,
)
from embedportal.db.models import (
    Capacity,
    CapacityScheduleEntry,
    Group,
    GroupMembership,
    Report,
    ReportGrant,
    Role,
)
from embedportal.db.session import session_scope
from embedportal.emulator.demo import REGION_MANAGER_ROLE, REGION_MANAGERS
from embedportal.powerbi import FABRIC, PowerBIError
from embedportal.powerbi.connection import provider_for_sku
from embedportal.settings import Settings

logger = logging.getLogger("embedportal.demo")

ADMIN_EMAIL = "admin@example.com"
ADMIN_PASSWORD = "embedportal-admin"
VIEWER_EMAIL = "north@example.com"
VIEWER_PASSWORD = "embedportal-viewer"
GROUP_NAME = "Demo viewers"
# How long `serve` waits for the emulator beside it before giving up on the catalogue.
EMULATOR_WAIT_SECONDS = 30.0


def demo_wanted(settings: Settings, *, with_emulator: bool) -> bool:
    """Only on the embedded default (the built-in emulator), in development, when enabled."""
    return with_emulator and settings.demo and settings.environment == "development"


ADMIN_RLS_USERNAME = "south@example.com"


def seed_accounts(*, session: Session) -> None:
    """The two demo users and their group, created when absent. A first seeding also offers
    Sign in with Microsoft beside passwords: the emulator's directory has the same two people
    (same e-mails; its sign-in page takes the directory password), so it works out of the box."""
    if find_user_by_email(session=session, email=ADMIN_EMAIL) is None:
        get_organization(session=session).sign_in_methods = "both"
        create_user(
            session=session,
            email=ADMIN_EMAIL,
            password=ADMIN_PASSWORD,
            name="Demo administrator",
            role=Role.ADMIN,
            # A Region Manager identity of its own, so the regional report opens for the
            # administrator too (filtered to another region than the demo viewer's).
            rls_username=ADMIN_RLS_USERNAME,
            rls_roles=[REGION_MANAGER_ROLE],
            actor=None,
        )
    viewer = find_user_by_email(session=session, email=VIEWER_EMAIL)
    if viewer is None:
        viewer = create_user(
            session=session,
            email=VIEWER_EMAIL,
            password=VIEWER_PASSWORD,
            name="North region manager",
            role=Role.VIEWER,
            rls_username=VIEWER_EMAIL,
            actor=None,
        )
    group = session.scalar(select(Group).where(Group.name == GROUP_NAME))
    if group is None:
        # The demo viewers may start a paused capacity by opening a report (on demand).
        group = Group(
            name=GROUP_NAME,
            description="The demo accounts that view reports.",
            may_start_capacity=True,
        )
        session.add(group)
        session.flush()
    if session.get(GroupMembership, (group.id, viewer.id)) is None:
        session.add(GroupMembership(group_id=group.id, user_id=viewer.id))
        session.flush()


def grant_demo_reports(*, session: Session, workspace_id: str | None) -> int:
    """Grant the workspace's reports (None: every available report) to the demo group (RLS role
    where needed); returns how many grants were added. Reports the group already has are left
    alone."""
    group = session.scalar(select(Group).where(Group.name == GROUP_NAME))
    if group is None:
        return 0
    granted = set(
        session.scalars(select(ReportGrant.report_id).where(ReportGrant.group_id == group.id))
    )
    query = select(Report).where(Report.is_available.is_(True))
    if workspace_id is not None:
        query = query.where(Report.workspace_id == workspace_id)
    reports = session.scalars(query)
    added = 0
    for report in reports:
        if report.id in granted:
            continue
        roles = [REGION_MANAGER_ROLE] if report.rls_required else []
        grant_report(session=session, report=report, group=group, roles=roles, actor=None)
        added += 1
    return added


def configure_demo_capacities(*, session: Session, settings: Settings) -> int:
    """Give every not-configured capacity the demo's Azure coordinates: the subscription and
    resource group of ``EMBEDPORTAL_CAPACITY_*`` and its display name (that is where the
    emulator keeps them). Returns how many were configured."""
    subscription, group = settings.capacity_subscription_id, settings.capacity_resource_group
    if not (subscription and group):
        return 0
    configured = 0
    for capacity in session.scalars(select(Capacity).order_by(Capacity.id)):
        provider = provider_for_sku(capacity.sku)
        if capacity.is_configured or capacity.subscription_id or provider is None:
            continue
        try:
            configure_capacity(
                session=session,
                capacity_id=capacity.id,
                subscription_id=subscription,
                resource_group=group,
                resource_name=capacity.display_name,
                provider=provider,
                actor=None,
            )
        except CapacityInputError as error:
            logger.warning("demo: capacity %s left unconfigured: %s", capacity.id, error)
            continue
        configured += 1
    return configured


DEMO_IDLE_MINUTES = 30
# The second demo capacity follows office hours (organization time zone), Monday to Friday.
DEMO_OFFICE_HOURS = ((8 * 60, "turn_on"), (19 * 60, "turn_off"))


def _demo_cost_control(*, session: Session, capacity: Capacity) -> None:
    """What the quick start shows of cost control: both capacities pause after half an hour
    without use, and the Fabric one also follows office hours."""
    capacity.idle_pause_minutes = DEMO_IDLE_MINUTES
    if capacity.provider == FABRIC:
        for weekday in range(5):
            for at_minute, action in DEMO_OFFICE_HOURS:
                session.add(
                    CapacityScheduleEntry(
                        capacity_id=capacity.id,
                        weekday=weekday,
                        at_minute=at_minute,
                        action=action,
                    )
                )
    session.flush()


async def sync_demo_workspace(
    *,
    session_factory: sessionmaker[Session],
    settings: Settings,
    clients: PowerBIClients,
    wait_seconds: float = EMULATOR_WAIT_SECONDS,
) -> SyncResult | None:
    """Sync the catalogue and the capacities once the emulator answers, then grant the reports
    to the group and configure the capacities."""
    with session_scope(session_factory) as session:
        connection = effective_connection(session=session, settings=settings)
    if connection.connection is None:
        logger.warning("demo: no Power BI connection (%s); reports not synced", connection.problem)
        return None
    client = clients.get(connection.connection)
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            catalogue = await fetch_catalogue(client=client, workspace_id=connection.workspace_id)
            break
        except PowerBIError as error:
            if time.monotonic() >= deadline:
                logger.warning("demo: the emulator did not answer (%s); reports not synced", error)
                return None
            await asyncio.sleep(0.2)
    inventory: CapacityInventory | None = None
    try:
        inventory = await fetch_capacity_inventory(client=client)
    except PowerBIError as error:
        logger.warning("demo: capacities not synced (%s)", error)
    with session_scope(session_factory) as session:
        result = apply_catalogue(session=session, catalogue=catalogue, actor=None)
        grant_demo_reports(session=session, workspace_id=connection.workspace_id)
        if inventory is not None:
            known = set(session.scalars(select(Capacity.id)))
            apply_capacity_inventory(session=session, inventory=inventory, settings=settings)
            configure_demo_capacities(session=session, settings=settings)
            # Only capacities this run found first: an administrator's later choices stay.
            for capacity in session.scalars(select(Capacity).where(Capacity.id.not_in(known))):
                if capacity.is_configured:
                    _demo_cost_control(session=session, capacity=capacity)
    return result


def startup_notes() -> list[str]:
    region = REGION_MANAGERS.get(VIEWER_EMAIL, "")
    return [
        "Demo accounts (development only; EMBEDPORTAL_DEMO=false turns them off):",
        f"  {ADMIN_EMAIL} / {ADMIN_PASSWORD}    administrator",
        f"  {VIEWER_EMAIL} / {VIEWER_PASSWORD}  viewer (RLS: {region} region only)",
        "  or Sign in with Microsoft: the emulator's page takes the same e-mails and its "
        "directory password (docs/sign-in-with-microsoft.md)",
    ]


def prepare_demo(app: FastAPI) -> None:
    """Create the demo accounts now; sync and grant when the app starts (before it accepts
    requests, so the first page a newcomer opens already lists the reports)."""
    settings: Settings = app.state.settings
    with session_scope(app.state.session_factory) as session:
        seed_accounts(session=session)

    async def sync() -> None:
        try:
            await sync_demo_workspace(
                session_factory=app.state.session_factory,
                settings=settings,
                clients=app.state.powerbi_clients,
            )
        except Exception:  # noqa: BLE001 - the demo must never stop the portal from starting
            logger.exception("demo: syncing the demo workspaces failed")

    app.state.on_startup.append(sync)
    app.state.startup_notes.extend(startup_notes())
