"""The capacity controller against the emulator's ARM over real HTTP, with the portal's clock run
ahead where a test needs hours to pass: idle pause, on-demand start, the schedule, the global
block, Azure refusing (403), an operation already running (409), a controller restarted in the
middle of an operation, and two controllers at once acting once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.orm import Session

from embedportal.capacity.activity import ActivityKind
from embedportal.capacity.control import (
    STATUS_FRESH_FOR,
    STATUS_STALE_OK,
    CapacityBusyError,
    CapacityControl,
)
from embedportal.capacity.controller import (
    CapacityController,
    acquire_lease,
    request_resume,
)
from embedportal.capacity.decisions import Action, Reason
from embedportal.capacity.inventory import configure_capacity, sync_capacities
from embedportal.capacity.ledger import ActivityLedger
from embedportal.db.models import (
    Capacity,
    CapacityEvent,
    CapacityScheduleEntry,
    Organization,
)
from embedportal.db.session import session_scope
from embedportal.emulator.capacity import Capacity as EmulatedCapacity
from embedportal.powerbi import FABRIC, PowerBIClient, PowerBIConnection
from embedportal.settings import Settings
from tests.emulator.harness import Emulator, running_emulator
from tests.support.portal import MakeUser, portal_settings_for

DEDICATED_ID = "b339bc78-b288-5b65-a797-77c024ae3696"  # the emulator's embedportaldemo
FABRIC_ID = "9cc5d9d6-0cda-56e9-8f9a-cdae2d92659a"  # the emulator's embedportalfabric


@pytest.fixture(scope="module")
def own_emulator() -> Iterator[Emulator]:
    """This module pauses and resizes capacities: its own emulator, so no other test sees it."""
    with running_emulator() as running:
        yield running


@pytest.fixture
def settings_overrides(own_emulator: Emulator) -> dict[str, object]:
    return {**portal_settings_for(own_emulator), "capacity_controller": False}


@dataclass
class Clock:
    """The portal's clock: real time plus however far a test has run it ahead."""

    ahead: timedelta = field(default_factory=timedelta)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.ahead


@dataclass
class World:
    app: FastAPI
    emulator: Emulator
    clock: Clock
    ledger: ActivityLedger
    control: CapacityControl
    # One loop for the whole test: the ARM clients' connections belong to it.
    loop: asyncio.AbstractEventLoop

    def run(self, awaitable: Any) -> Any:
        return self.loop.run_until_complete(awaitable)

    def sleep(self, seconds: float) -> None:
        self.run(asyncio.sleep(seconds))

    def controller(self, **options: Any) -> CapacityController:
        return CapacityController(
            self.app.state.session_factory,
            self.control,
            self.ledger,
            clock=self.clock,
            interval_seconds=1.0,
            **options,
        )

    def db(self) -> Any:
        return session_scope(self.app.state.session_factory)

    def emulated(self, capacity_id: str = DEDICATED_ID) -> EmulatedCapacity:
        state = self.emulator.state
        return state.capacity if capacity_id == DEDICATED_ID else state.fabric_capacity

    def running(self, capacity_id: str = DEDICATED_ID) -> bool:
        return self.emulated(capacity_id).is_running(self.emulator.state.now())

    def events(self) -> list[tuple[str, str, str]]:
        with self.db() as db:
            return [
                (event.action, event.reason, event.user_email)
                for event in db.scalars(select(CapacityEvent).order_by(CapacityEvent.id))
            ]

    def set_capacity(self, capacity_id: str = DEDICATED_ID, **values: Any) -> None:
        with self.db() as db:
            capacity = db.get(Capacity, capacity_id)
            assert capacity is not None
            for name, value in values.items():
                setattr(capacity, name, value)

    def pass_(self, controller: CapacityController) -> list[Any]:
        async def run() -> list[Any]:
            decisions = await controller.run_once()
            await self.control.wait_idle()
            return decisions

        result: list[Any] = self.run(run())
        return result


def _sync_and_configure(session: Session, settings: Settings, emulator: Emulator) -> None:
    async def sync() -> None:
        async with PowerBIClient(PowerBIConnection.from_settings(settings)) as client:
            await sync_capacities(session=session, client=client, settings=settings)

    asyncio.run(sync())
    configure_capacity(
        session=session,
        capacity_id=FABRIC_ID,
        subscription_id=emulator.settings.subscription_id,
        resource_group=emulator.settings.resource_group,
        resource_name=emulator.settings.fabric_capacity_name,
        provider=FABRIC,
        actor=None,
    )


def _settle(emulator: Emulator) -> None:
    """Wait until no capacity of the emulator is in the middle of an operation."""
    state = emulator.state
    deadline = state.now() + 10
    while state.now() < deadline and any(
        capacity.pending_operation(state.now()) for capacity in state.capacities.values()
    ):
        time.sleep(0.05)


@pytest.fixture
def world(app: FastAPI, settings: Settings, own_emulator: Emulator) -> Iterator[World]:
    _settle(own_emulator)
    for emulated in own_emulator.state.capacities.values():  # every test starts with both on
        emulated.azure_role = "Contributor"
        emulated.transition_override = None
        if not emulated.is_running(own_emulator.state.now()):
            emulated.resume(own_emulator.state.now())
    _settle(own_emulator)
    with session_scope(app.state.session_factory) as db:
        _sync_and_configure(db, settings, own_emulator)
    clock = Clock()
    ledger = ActivityLedger(app.state.session_factory, clock=clock)
    control = CapacityControl(app.state.session_factory, settings, clock=clock)
    loop = asyncio.new_event_loop()
    world = World(
        app=app, emulator=own_emulator, clock=clock, ledger=ledger, control=control, loop=loop
    )
    try:
        yield world
    finally:
        world.run(control.aclose())
        loop.close()
        _settle(own_emulator)


def test_nothing_happens_without_an_idle_pause_or_a_schedule(world: World) -> None:
    controller = world.controller()
    world.clock.ahead = timedelta(days=3)
    decisions = world.pass_(controller)
    assert {action.action for _id, action in decisions} == {Action.NOTHING}
    assert world.running() and world.running(FABRIC_ID)
    # First sight of a running capacity: billing starts counting from here.
    assert world.events() == [
        ("started", "outside_portal", ""),
        ("started", "outside_portal", ""),
    ]


def test_an_idle_capacity_pauses_after_its_idle_minutes(world: World, make_user: MakeUser) -> None:
    viewer = make_user("ana@example.com")
    controller = world.controller()
    world.set_capacity(idle_pause_minutes=30)
    world.pass_(controller)  # first sight: running since now
    world.ledger.note(
        capacity_id=DEDICATED_ID,
        user_id=viewer.id,
        kind=ActivityKind.OPENED,
        keeps_capacity_on=False,
    )
    world.clock.ahead = timedelta(minutes=29)
    world.pass_(controller)
    assert world.running()
    world.clock.ahead = timedelta(minutes=31)
    world.pass_(controller)
    assert not world.running()
    assert world.running(FABRIC_ID)  # the other capacity has no idle pause
    assert world.events()[-1] == ("paused", "inactivity", "")
    with world.db() as db:
        capacity = db.get(Capacity, DEDICATED_ID)
        assert capacity is not None
        assert capacity.operation is None and capacity.running_since is None


def test_heartbeats_keep_it_on_only_for_users_who_keep_it_on(
    world: World, make_user: MakeUser
) -> None:
    tv = make_user("tv@example.com")
    controller = world.controller()
    world.set_capacity(idle_pause_minutes=10)
    world.pass_(controller)
    for minute in range(0, 60, 5):  # a TV's heartbeats and timed refreshes for an hour
        world.clock.ahead = timedelta(minutes=minute)
        for kind in (ActivityKind.HEARTBEAT, ActivityKind.TIMED_REFRESH):
            world.ledger.note(
                capacity_id=DEDICATED_ID, user_id=tv.id, kind=kind, keeps_capacity_on=False
            )
        world.pass_(controller)
    assert not world.running()  # paused 10 minutes in, whatever the TV did

    world.emulated().resume(world.emulator.state.now())  # someone starts it again in Azure
    world.sleep(0.5)
    keeper = make_user("wall@example.com")
    start = world.clock.ahead
    for minute in range(0, 60, 5):
        world.clock.ahead = start + timedelta(minutes=minute)
        world.ledger.note(
            capacity_id=DEDICATED_ID,
            user_id=keeper.id,
            kind=ActivityKind.HEARTBEAT,
            keeps_capacity_on=True,
        )
        world.pass_(controller)
        assert world.running()


def test_a_permitted_user_starts_it_on_demand(world: World, make_user: MakeUser) -> None:
    starter = make_user("boss@example.com", may_start_capacity=True)
    world.emulated().suspend(world.emulator.state.now())
    world.sleep(0.5)
    controller = world.controller()
    world.pass_(controller)
    assert not world.running()
    with world.db() as db:
        request_resume(session=db, capacity_id=DEDICATED_ID, user=starter, now=world.clock())
    world.pass_(controller)
    assert world.running()
    assert world.events()[-1] == ("started", "on_demand", "boss@example.com")
    with world.db() as db:
        capacity = db.get(Capacity, DEDICATED_ID)
        assert capacity is not None and capacity.running_since is not None


def test_a_request_made_while_it_starts_does_not_start_it_again_after_a_pause(
    world: World, make_user: MakeUser
) -> None:
    starter = make_user("boss@example.com", may_start_capacity=True)
    world.emulated().suspend(world.emulator.state.now())
    world.sleep(0.5)
    world.emulated().transition_override = 1.0
    world.set_capacity(idle_pause_minutes=2)
    controller = world.controller()
    with world.db() as db:
        request_resume(session=db, capacity_id=DEDICATED_ID, user=starter, now=world.clock())

    async def start_while_asked_again() -> None:
        await controller.run_once()  # the start begins
        with world.db() as db:  # the waiting viewer opens the report again meanwhile
            request_resume(session=db, capacity_id=DEDICATED_ID, user=starter, now=world.clock())
        await world.control.wait_idle()

    world.run(start_while_asked_again())
    assert world.running()
    world.clock.ahead = timedelta(minutes=3)  # nobody uses it: the idle pause
    world.pass_(controller)
    world.emulated().transition_override = None
    assert not world.running()
    world.pass_(controller)
    assert not world.running()
    assert [event[:2] for event in world.events()][-2:] == [
        ("started", "on_demand"),
        ("paused", "inactivity"),
    ]


def test_the_global_block_refuses_every_on_demand_start(world: World, make_user: MakeUser) -> None:
    starter = make_user("boss@example.com", may_start_capacity=True)
    with world.db() as db:
        organization = db.get(Organization, 1) or Organization(id=1)
        organization.nobody_may_start_capacity = True
        db.add(organization)
    world.emulated().suspend(world.emulator.state.now())
    world.sleep(0.5)
    controller = world.controller()
    with world.db() as db:
        request_resume(session=db, capacity_id=DEDICATED_ID, user=starter, now=world.clock())
    world.pass_(controller)
    assert not world.running()


def test_a_user_without_the_permission_does_not_start_it(world: World, make_user: MakeUser) -> None:
    viewer = make_user("ana@example.com")
    world.emulated().suspend(world.emulator.state.now())
    world.sleep(0.5)
    with world.db() as db:
        request_resume(session=db, capacity_id=DEDICATED_ID, user=viewer, now=world.clock())
    world.pass_(world.controller())
    assert not world.running()


def test_a_scheduled_on_window_starts_it_and_keeps_it_on(world: World) -> None:
    world.emulated().suspend(world.emulator.state.now())
    world.sleep(0.5)
    now = world.clock()
    window_start = (now - timedelta(minutes=5)).replace(second=0, microsecond=0)
    with world.db() as db:
        for weekday in range(7):
            db.add(
                CapacityScheduleEntry(
                    capacity_id=DEDICATED_ID,
                    weekday=weekday,
                    at_minute=window_start.hour * 60 + window_start.minute,
                    action="turn_on",
                )
            )
        db.get(Capacity, DEDICATED_ID).idle_pause_minutes = 1  # type: ignore[union-attr]
    controller = world.controller()
    world.pass_(controller)
    assert world.running()
    assert world.events()[-1] == ("started", "schedule", "")
    world.clock.ahead = timedelta(hours=2)  # idle for two hours, inside the window
    world.pass_(controller)
    assert world.running()


def test_azure_refusing_is_audited_with_its_reason_and_releases_the_capacity(
    world: World, make_user: MakeUser
) -> None:
    admin = make_user("admin@example.com", role="admin")
    world.emulated().azure_role = "Reader"

    async def turn_off() -> None:
        await world.control.operate(
            capacity_id=DEDICATED_ID, action=Action.SUSPEND, reason=Reason.MANUAL, user=admin
        )
        await world.control.wait_idle()

    world.run(turn_off())
    assert world.running()
    assert world.events()[-2:] == [
        ("paused", "manual", "admin@example.com"),
        ("pause_failed", "manual", "admin@example.com"),
    ]
    with world.db() as db:
        failed = db.scalars(select(CapacityEvent).order_by(CapacityEvent.id.desc())).first()
        assert failed is not None and "Contributor" in failed.error
        capacity = db.get(Capacity, DEDICATED_ID)
        assert capacity is not None and capacity.operation is None  # free for the next try


def test_a_start_azure_refuses_is_audited_and_the_capacity_stays_paused(
    world: World, make_user: MakeUser
) -> None:
    starter = make_user("boss@example.com", may_start_capacity=True)
    world.emulated().suspend(world.emulator.state.now())
    world.sleep(0.5)
    world.emulated().azure_role = "Reader"
    with world.db() as db:
        request_resume(session=db, capacity_id=DEDICATED_ID, user=starter, now=world.clock())
    world.pass_(world.controller())
    assert not world.running()
    assert world.events()[-2:] == [
        ("started", "on_demand", "boss@example.com"),
        ("start_failed", "on_demand", "boss@example.com"),
    ]
    with world.db() as db:
        failed = db.scalars(select(CapacityEvent).order_by(CapacityEvent.id.desc())).first()
        assert failed is not None and "Contributor" in failed.error
        capacity = db.get(Capacity, DEDICATED_ID)
        assert capacity is not None and capacity.operation is None


def test_after_a_failed_start_viewers_do_not_retry_it_every_few_seconds(
    world: World, make_user: MakeUser
) -> None:
    starter = make_user("boss@example.com", may_start_capacity=True)
    world.emulated().suspend(world.emulator.state.now())
    world.sleep(0.5)
    world.emulated().azure_role = "Reader"  # the service principal lost its Contributor role
    controller = world.controller()
    for _ in range(3):  # a waiting viewer keeps asking
        with world.db() as db:
            request_resume(session=db, capacity_id=DEDICATED_ID, user=starter, now=world.clock())
        world.pass_(controller)
    assert [event[0] for event in world.events()].count("start_failed") == 1
    world.emulated().azure_role = "Contributor"
    world.clock.ahead = timedelta(minutes=6)  # the hold-off is over
    with world.db() as db:
        request_resume(session=db, capacity_id=DEDICATED_ID, user=starter, now=world.clock())
    world.pass_(controller)
    assert world.running()


def test_an_operation_already_running_in_azure_is_a_clear_failure(
    world: World, make_user: MakeUser
) -> None:
    admin = make_user("admin@example.com", role="admin")
    emulated = world.emulated()
    emulated.transition_override = 3.0
    emulated.suspend(world.emulator.state.now())  # someone pauses it in the Azure portal

    async def turn_on() -> None:
        await world.control.operate(
            capacity_id=DEDICATED_ID, action=Action.RESUME, reason=Reason.MANUAL, user=admin
        )
        await world.control.wait_idle()

    world.run(turn_on())
    assert world.events()[-1][0] == "start_failed"
    with world.db() as db:
        failed = db.scalars(select(CapacityEvent).order_by(CapacityEvent.id.desc())).first()
        assert failed is not None and "still running" in failed.error.lower()


def test_a_second_operation_while_one_runs_is_refused(world: World, make_user: MakeUser) -> None:
    admin = make_user("admin@example.com", role="admin")
    world.emulated().transition_override = 1.0

    async def twice() -> None:
        await world.control.operate(
            capacity_id=DEDICATED_ID, action=Action.SUSPEND, reason=Reason.MANUAL, user=admin
        )
        with pytest.raises(CapacityBusyError):
            await world.control.operate(
                capacity_id=DEDICATED_ID, action=Action.RESUME, reason=Reason.MANUAL, user=admin
            )
        await world.control.wait_idle()

    world.run(twice())
    assert not world.running()
    assert [event[0] for event in world.events()] == ["paused"]


def test_a_controller_restarted_in_the_middle_of_an_operation_carries_on(
    world: World, make_user: MakeUser
) -> None:
    """The instance that started a pause died before it saw the end: the capacity is marked
    busy, ARM shows it paused. The next controller clears the mark and goes on deciding."""
    starter = make_user("boss@example.com", may_start_capacity=True)
    world.emulated().suspend(world.emulator.state.now())
    world.sleep(0.5)
    world.set_capacity(operation="suspend", operation_started_at=world.clock())
    with world.db() as db:
        request_resume(session=db, capacity_id=DEDICATED_ID, user=starter, now=world.clock())
    controller = world.controller()
    world.pass_(controller)
    assert not world.running()  # a fresh mark: its instance may still be at work
    world.clock.ahead = timedelta(minutes=3)
    with world.db() as db:  # the viewer is still waiting
        request_resume(session=db, capacity_id=DEDICATED_ID, user=starter, now=world.clock())
    world.pass_(controller)
    assert world.running()
    assert world.events()[-1] == ("started", "on_demand", "boss@example.com")


def test_two_controllers_at_once_act_once(world: World, make_user: MakeUser) -> None:
    world.set_capacity(idle_pause_minutes=5)
    first, second = world.controller(), world.controller()
    world.pass_(first)
    world.clock.ahead = timedelta(minutes=10)

    async def both() -> tuple[list[Any], list[Any]]:
        results = await asyncio.gather(first.run_once(), second.run_once())
        await world.control.wait_idle()
        return results[0], results[1]

    one, other = world.run(both())
    assert [] in (one, other), "only the lease holder decides"
    assert not world.running()
    assert [event for event in world.events() if event[0] == "paused"] == [
        ("paused", "inactivity", "")
    ]


def test_the_lease_passes_on_when_its_holder_stops_renewing(world: World) -> None:
    now = world.clock()
    with world.db() as db:
        assert acquire_lease(session=db, holder="a", now=now, ttl=timedelta(seconds=30))
    with world.db() as db:
        assert not acquire_lease(session=db, holder="b", now=now, ttl=timedelta(seconds=30))
        assert acquire_lease(session=db, holder="a", now=now, ttl=timedelta(seconds=30))
    with world.db() as db:
        later = now + timedelta(seconds=31)
        assert acquire_lease(session=db, holder="b", now=later, ttl=timedelta(seconds=30))
        assert not acquire_lease(session=db, holder="a", now=later, ttl=timedelta(seconds=30))


@pytest.mark.parametrize("enabled", [True, False])
def test_the_app_runs_the_controller_only_when_enabled(settings: Settings, enabled: bool) -> None:
    from embedportal.app import create_app

    app = create_app(settings.model_copy(update={"capacity_controller": enabled}))
    try:
        controller = app.state.capacity_controller
        assert (controller.run in app.state.background) is enabled
        assert app.state.activity_ledger.run in app.state.background
        assert controller.interval_seconds == settings.capacity_controller_seconds
    finally:
        app.state.engine.dispose()


def test_the_token_api_reads_a_recent_status_while_a_new_one_is_read_behind_it(
    world: World,
) -> None:
    """Every open viewer asks at once: when the remembered status expires, they are answered
    from it (up to STATUS_STALE_OK old) while one read refreshes it, instead of all waiting on
    ARM; past that, nothing stands in and the caller must ask (and wait)."""
    control = world.control
    assert control.status_without_waiting(DEDICATED_ID) is None  # nothing read yet
    first = world.run(control.status(capacity_id=DEDICATED_ID))

    async def twice_without_waiting() -> tuple[Any, Any]:
        return (
            control.status_without_waiting(DEDICATED_ID),
            control.status_without_waiting(DEDICATED_ID),
        )

    assert world.run(twice_without_waiting()) == (first, first)  # fresh: no read
    world.clock.ahead = STATUS_FRESH_FOR + timedelta(seconds=1)
    stale, again = world.run(twice_without_waiting())
    assert stale is first and again is first  # answered at once, from the recent one

    async def refreshed() -> Any:
        for _ in range(200):
            if (status := control.remembered_status(DEDICATED_ID)) is not None:
                return status
            await asyncio.sleep(0.025)
        return None

    renewed = world.run(refreshed())
    assert renewed is not None and renewed.read_at > first.read_at  # one read, behind them
    world.clock.ahead += STATUS_STALE_OK + timedelta(seconds=1)
    assert world.run(twice_without_waiting()) == (None, None)  # too old to stand in
