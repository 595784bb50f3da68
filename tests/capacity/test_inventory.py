"""The capacity inventory: syncing Power BI's capacities (and each report's capacity) into the
portal, prefilling Azure coordinates from EMBEDPORTAL_CAPACITY_*, and configuring them by hand
(bad input → per-field messages, nothing saved). Syncs go through the real Power BI client to
the emulator over HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from embedportal.access.catalogue import apply_catalogue, fetch_catalogue
from embedportal.access.users import create_user
from embedportal.capacity.inventory import (
    CapacityInputError,
    CapacityInventory,
    CapacitySyncResult,
    UnknownCapacityError,
    apply_capacity_inventory,
    configure_capacity,
    coordinates_of,
    sync_capacities,
    validate_coordinates,
)
from embedportal.db.models import AuditEntry, Capacity, Report, Role, User
from embedportal.db.session import create_db_engine, create_session_factory
from embedportal.emulator.demo import (
    DEMO_WORKSPACE_ID,
    FINANCE_SUMMARY_REPORT_ID,
    FINANCE_WORKSPACE_ID,
    SALES_OVERVIEW_REPORT_ID,
)
from embedportal.powerbi import (
    FABRIC,
    POWERBI_DEDICATED,
    CapacityClient,
    PowerBICapacity,
    PowerBIClient,
    PowerBIConnection,
    Workspace,
)
from embedportal.settings import Settings
from tests.emulator.harness import Emulator
from tests.support.portal import TEST_SECRET_KEY, portal_settings_for

DEDICATED_ID = "b339bc78-b288-5b65-a797-77c024ae3696"  # the emulator's embedportaldemo
FABRIC_ID = "9cc5d9d6-0cda-56e9-8f9a-cdae2d92659a"  # the emulator's embedportalfabric
SUBSCRIPTION = "00000000-0000-0000-0000-0000000e0003"


@pytest.fixture
def db(database_url: str) -> Iterator[Session]:
    engine = create_db_engine(database_url)
    session = create_session_factory(engine)()
    try:
        yield session
    finally:
        session.close()
        engine.dispose()


def portal_settings(emulator: Emulator, **changes: Any) -> Settings:
    values: dict[str, Any] = {
        "environment": "test",
        "secret_key": TEST_SECRET_KEY,
        **portal_settings_for(emulator),
        **changes,
    }
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def sync(db: Session, settings: Settings, actor: User | None = None) -> CapacitySyncResult:
    async def run() -> CapacitySyncResult:
        async with PowerBIClient(PowerBIConnection.from_settings(settings)) as client:
            return await sync_capacities(session=db, client=client, settings=settings, actor=actor)

    return asyncio.run(run())


def sync_reports(db: Session, settings: Settings, workspace_id: str | None) -> None:
    async def run() -> None:
        async with PowerBIClient(PowerBIConnection.from_settings(settings)) as client:
            catalogue = await fetch_catalogue(client=client, workspace_id=workspace_id)
        apply_catalogue(session=db, catalogue=catalogue, actor=None)

    asyncio.run(run())


def capacities(db: Session) -> dict[str, Capacity]:
    return {capacity.display_name: capacity for capacity in db.scalars(select(Capacity))}


def audit(db: Session, action: str) -> list[AuditEntry]:
    return list(db.scalars(select(AuditEntry).where(AuditEntry.action == action)))


def listed(id_: str, name: str, sku: str = "A1", state: str = "Active") -> PowerBICapacity:
    return PowerBICapacity(id=id_, display_name=name, sku=sku, state=state, region="West Europe")


def inventory(*capacities: PowerBICapacity, workspaces: tuple[Workspace, ...] = ()) -> Any:
    return CapacityInventory(capacities=capacities, workspaces=workspaces)


def no_capacity_settings(**changes: Any) -> Settings:
    values: dict[str, Any] = {"environment": "test", "secret_key": TEST_SECRET_KEY, **changes}
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


# --- sync ----------------------------------------------------------------------------------------


def test_a_sync_records_both_capacities_and_prefills_the_configured_one(
    db: Session, emulator: Emulator, fast_password_hashing: None
) -> None:
    settings = portal_settings(emulator)
    admin = create_user(
        session=db,
        email="admin@example.com",
        password="inventory admin passphrase 42",
        role=Role.ADMIN,
        actor=None,
    )
    result = sync(db, settings, admin)
    assert (result.added, result.updated, result.unchanged) == (2, 0, 0)
    assert result.capacity_ids == (DEDICATED_ID, FABRIC_ID)
    assert result.prefilled == DEDICATED_ID and result.missing == ()

    found = capacities(db)
    demo, second = found["embedportaldemo"], found["embedportalfabric"]
    assert (demo.id, demo.sku, demo.state, demo.region) == (
        DEDICATED_ID,
        "A1",
        "Active",
        "West Europe",
    )
    assert (second.id, second.sku) == (FABRIC_ID, "F2")
    # EMBEDPORTAL_CAPACITY_* describe the capacity named like EMBEDPORTAL_CAPACITY_NAME.
    assert demo.is_configured and (
        demo.subscription_id,
        demo.resource_group,
        demo.resource_name,
        demo.provider,
    ) == (SUBSCRIPTION, "embedportal-demo", "embedportaldemo", POWERBI_DEDICATED)
    # The other is "not configured" until an administrator says where it is.
    assert not second.is_configured and coordinates_of(second) is None
    assert second.subscription_id is None and second.provider is None
    assert second.idle_pause_minutes is None and second.starting_message == ""
    assert second.hourly_price is None

    [configured] = audit(db, "capacity.configured")
    assert configured.target_id == DEDICATED_ID and configured.actor_email == "admin@example.com"
    assert configured.detail["source"] == "environment"
    [synced] = audit(db, "capacities.synced")
    assert synced.detail["added"] == 2

    again = sync(db, settings)
    assert (again.added, again.updated, again.unchanged, again.prefilled) == (0, 0, 2, None)
    assert len(audit(db, "capacity.configured")) == 1


def test_a_sync_gives_each_report_its_workspaces_capacity(db: Session, emulator: Emulator) -> None:
    settings = portal_settings(emulator, powerbi_workspace_id=None)
    sync_reports(db, settings, None)  # every workspace: both demo workspaces
    reports = {r.id: r for r in db.scalars(select(Report))}
    assert len(reports) == 4
    # The report sync already records the capacity (lower case, as the inventory keys it).
    assert reports[SALES_OVERVIEW_REPORT_ID].capacity_id == DEDICATED_ID
    assert reports[FINANCE_SUMMARY_REPORT_ID].capacity_id == FABRIC_ID
    assert reports[FINANCE_SUMMARY_REPORT_ID].workspace_id == FINANCE_WORKSPACE_ID

    # A capacity sync corrects a report whose capacity is stale (its workspace moved).
    reports[FINANCE_SUMMARY_REPORT_ID].capacity_id = DEDICATED_ID
    db.add(
        Report(
            id="elsewhere",
            workspace_id="00000000-0000-0000-0000-00000000abcd",
            dataset_id="d",
            name="In a workspace Power BI does not list",
            embed_url="https://app.powerbi.com/reportEmbed",
            capacity_id="kept",
        )
    )
    db.flush()
    result = sync(db, settings)
    assert result.reports_updated == 1
    assert db.get(Report, FINANCE_SUMMARY_REPORT_ID).capacity_id == FABRIC_ID  # type: ignore[union-attr]
    assert db.get(Report, "elsewhere").capacity_id == "kept"  # type: ignore[union-attr]


def test_changes_and_vanished_capacities(db: Session) -> None:
    settings = no_capacity_settings()
    apply_capacity_inventory(
        session=db,
        inventory=inventory(listed("AAA-1", "one"), listed("bbb-2", "two")),
        settings=settings,
    )
    assert set(capacities(db)) == {"one", "two"}
    assert {c.id for c in db.scalars(select(Capacity))} == {"aaa-1", "bbb-2"}
    seen_before = capacities(db)["two"].seen_at

    result = apply_capacity_inventory(
        session=db,
        inventory=inventory(listed("aaa-1", "one", "A2", "Suspended")),
        settings=settings,
    )
    assert (result.added, result.updated, result.unchanged) == (0, 1, 0)
    assert result.missing == ("bbb-2",)
    one, two = capacities(db)["one"], capacities(db)["two"]
    assert (one.sku, one.state) == ("A2", "Suspended")
    assert two.seen_at == seen_before  # kept as it was last seen
    assert result.prefilled is None  # no EMBEDPORTAL_CAPACITY_* at all


@pytest.mark.parametrize(
    ("listed_capacities", "expected"),
    [
        # Named like EMBEDPORTAL_CAPACITY_NAME (case does not matter).
        ((listed("c1", "Other"), listed("c2", "MyCap")), "c2"),
        # Not named so, but the only capacity there is.
        ((listed("c1", "Something else"),), "c1"),
        # Not named so, and not the only one: nobody is guessed.
        ((listed("c1", "First"), listed("c2", "Second")), None),
    ],
)
def test_which_capacity_the_environment_describes(
    db: Session, listed_capacities: tuple[PowerBICapacity, ...], expected: str | None
) -> None:
    settings = no_capacity_settings(
        capacity_subscription_id=SUBSCRIPTION,
        capacity_resource_group="rg",
        capacity_name="mycap",
    )
    result = apply_capacity_inventory(
        session=db, inventory=inventory(*listed_capacities), settings=settings
    )
    assert result.prefilled == expected
    if expected is not None:
        capacity = db.get(Capacity, expected)
        assert capacity is not None and capacity.resource_name == "mycap"


def test_prefilling_follows_the_sku_and_never_overwrites(db: Session) -> None:
    settings = no_capacity_settings(
        capacity_subscription_id=SUBSCRIPTION,
        capacity_resource_group="rg",
        capacity_name="fab",
    )
    apply_capacity_inventory(
        session=db, inventory=inventory(listed("c1", "fab", sku="F4")), settings=settings
    )
    capacity = db.get(Capacity, "c1")
    assert capacity is not None and capacity.provider == FABRIC
    configure_capacity(
        session=db,
        capacity_id="c1",
        subscription_id=SUBSCRIPTION,
        resource_group="elsewhere",
        resource_name="fab",
        provider=FABRIC,
        actor=None,
    )
    result = apply_capacity_inventory(
        session=db, inventory=inventory(listed("c1", "fab", sku="F4")), settings=settings
    )
    assert result.prefilled is None
    assert capacity.resource_group == "elsewhere"  # the administrator's choice stays


def test_workspace_capacity_ids_in_capitals_match(db: Session) -> None:
    db.add(
        Report(
            id="r1",
            workspace_id="w1",
            dataset_id="d",
            name="R",
            embed_url="https://app.powerbi.com/reportEmbed",
        )
    )
    db.flush()
    workspaces = (Workspace(id="W1", name="W", is_on_dedicated_capacity=True, capacity_id="C-1"),)
    result = apply_capacity_inventory(
        session=db,
        inventory=inventory(listed("c-1", "cap"), workspaces=workspaces),
        settings=no_capacity_settings(),
    )
    assert result.reports_updated == 1
    report = db.get(Report, "r1")
    assert report is not None and report.capacity_id == "c-1"


# --- configure -----------------------------------------------------------------------------------


def seed(db: Session, sku: str = "F2", id_: str = FABRIC_ID) -> Capacity:
    apply_capacity_inventory(
        session=db,
        inventory=inventory(listed(id_, "embedportalfabric", sku=sku)),
        settings=no_capacity_settings(),
    )
    capacity = db.get(Capacity, id_)
    assert capacity is not None
    return capacity


def test_configure_a_capacity_then_control_it(db: Session, emulator: Emulator) -> None:
    capacity = seed(db)
    configured = configure_capacity(
        session=db,
        capacity_id=FABRIC_ID.upper(),  # ids match whatever their case
        subscription_id=f"  {SUBSCRIPTION} ",
        resource_group=" embedportal-demo",
        resource_name="embedportalfabric ",
        provider=FABRIC,
        actor=None,
    )
    assert configured is capacity and capacity.is_configured
    assert (capacity.subscription_id, capacity.resource_group, capacity.resource_name) == (
        SUBSCRIPTION,
        "embedportal-demo",
        "embedportalfabric",
    )
    [entry] = audit(db, "capacity.configured")
    assert entry.target_id == FABRIC_ID
    assert entry.detail["provider"] == {"old": None, "new": FABRIC}

    # Saving the same again changes (and audits) nothing.
    configure_capacity(
        session=db,
        capacity_id=FABRIC_ID,
        subscription_id=SUBSCRIPTION,
        resource_group="embedportal-demo",
        resource_name="embedportalfabric",
        provider=FABRIC,
        actor=None,
    )
    assert len(audit(db, "capacity.configured")) == 1

    coordinates = coordinates_of(capacity)
    assert coordinates is not None

    async def read() -> str:
        connection = PowerBIConnection.from_settings(portal_settings(emulator))
        async with CapacityClient(connection, capacity=coordinates) as client:
            return (await client.get()).state

    assert asyncio.run(read()) == "Active"


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (
            {"subscription_id": "", "resource_group": " ", "resource_name": "", "provider": ""},
            {
                "subscription_id": "Enter the Azure subscription id of the capacity.",
                "resource_group": "Enter the resource group the capacity is in.",
                "resource_name": "Enter the capacity's name in Azure.",
                "provider": "Choose the capacity's type: Power BI Embedded (A and EM SKUs) or "
                "Fabric (F SKUs).",
            },
        ),
        (
            {
                "subscription_id": "not-a-guid",
                "resource_group": "ends-with-a-period.",
                "resource_name": "Has-Capitals",
                "provider": "Microsoft.Web",
            },
            {
                "subscription_id": "The subscription id is a GUID such as "
                "00000000-0000-0000-0000-000000000000 (Azure portal → Subscriptions).",
                "resource_group": "A resource group name has 1 to 90 letters, digits, "
                "underscores, hyphens, periods or parentheses, and does not end with a period.",
                "resource_name": "A capacity name in Azure has 3 to 63 lower-case letters and "
                "digits and starts with a letter.",
                "provider": "Choose the capacity's type: Power BI Embedded (A and EM SKUs) or "
                "Fabric (F SKUs).",
            },
        ),
        (
            {"resource_group": "rg/with/slashes", "resource_name": "1starts-with-a-digit"},
            {"resource_group": ..., "resource_name": ...},
        ),
        (
            {"resource_group": "x" * 91, "resource_name": "ab"},
            {"resource_group": ..., "resource_name": ...},
        ),
        ({"resource_name": "a" * 64}, {"resource_name": ...}),
        # An F SKU capacity is a Fabric one.
        (
            {"provider": POWERBI_DEDICATED},
            {"provider": "A capacity with an F SKU is a Fabric capacity."},
        ),
    ],
)
def test_bad_input_gives_per_field_messages_and_saves_nothing(
    db: Session, fields: dict[str, str], expected: dict[str, Any]
) -> None:
    capacity = seed(db)
    values = {
        "subscription_id": SUBSCRIPTION,
        "resource_group": "embedportal-demo",
        "resource_name": "embedportalfabric",
        "provider": FABRIC,
        **fields,
    }
    with pytest.raises(CapacityInputError) as caught:
        configure_capacity(session=db, capacity_id=FABRIC_ID, actor=None, **values)
    errors = caught.value.errors
    assert set(errors) == set(expected)
    for name, message in expected.items():
        if message is not ...:
            assert errors[name] == message
    db.expire_all()
    assert not capacity.is_configured and capacity.subscription_id is None
    assert capacity.resource_group is None and capacity.provider is None
    assert audit(db, "capacity.configured") == []


def test_an_a_sku_capacity_is_a_power_bi_embedded_one(db: Session) -> None:
    seed(db, sku="A1", id_="c-a")
    with pytest.raises(CapacityInputError) as caught:
        configure_capacity(
            session=db,
            capacity_id="c-a",
            subscription_id=SUBSCRIPTION,
            resource_group="rg",
            resource_name="cap",
            provider=FABRIC,
            actor=None,
        )
    assert caught.value.errors == {
        "provider": "A capacity with an A or EM SKU is a Power BI Embedded capacity."
    }


def test_an_unknown_capacity_cannot_be_configured(db: Session) -> None:
    with pytest.raises(UnknownCapacityError):
        configure_capacity(
            session=db,
            capacity_id="nope",
            subscription_id=SUBSCRIPTION,
            resource_group="rg",
            resource_name="cap",
            provider=FABRIC,
            actor=None,
        )


def test_validation_is_pure_and_accepts_azure_names() -> None:
    coordinates, errors = validate_coordinates(
        subscription_id=SUBSCRIPTION,
        resource_group="My_Group-1.(prod)",
        resource_name="cap1",
        provider=POWERBI_DEDICATED,
        sku="EM2",
    )
    assert errors == {} and coordinates is not None
    assert coordinates.resource_group == "My_Group-1.(prod)"
    _, errors = validate_coordinates(
        subscription_id=SUBSCRIPTION,
        resource_group="rg",
        resource_name="cap1",
        provider=FABRIC,
        sku="P1",  # no ARM resource; the provider is the administrator's word
    )
    assert errors == {}


def test_the_configured_workspace_only_is_synced_when_set(db: Session, emulator: Emulator) -> None:
    settings = portal_settings(emulator)
    sync_reports(db, settings, None)
    sync_reports(db, settings, DEMO_WORKSPACE_ID)
    finance = db.get(Report, FINANCE_SUMMARY_REPORT_ID)
    assert finance is not None and not finance.is_available  # outside the workspace now
    assert finance.capacity_id == FABRIC_ID
    entries = audit(db, "reports.synced")
    assert entries[0].target_id == "*"
    assert entries[0].detail["workspaces"] == [DEMO_WORKSPACE_ID, FINANCE_WORKSPACE_ID]
    assert entries[1].target_id == DEMO_WORKSPACE_ID and "workspaces" not in entries[1].detail
