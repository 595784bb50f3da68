"""Part 3 of `make bench`: a week of an organization against the capacity's bill.

The same seeded week (bench/capacity_org.py: office hours, evening stragglers, weekends, three
wall TVs and a lobby TV that keeps the capacity on) is replayed under each policy through the
portal's real capacity code, in simulated time:

- a temporary SQLite database migrated with ``upgrade_database``, real ``Settings``, real users
  and groups (``create_user``, ``create_group``, ``add_member``), a ``Capacity`` configured with
  ``configure_capacity`` and its idle pause, and for one policy a weekly schedule;
- the real ``ActivityLedger``, ``CapacityControl`` and ``CapacityController``, all reading one
  simulated clock; ``CapacityControl`` drives a :class:`bench.capacity_arm.SimulatedArm`, which
  meters billed seconds;
- what each person may do comes from ``capacity_rights`` (the database's flags, groups and
  precedence), as the token API asks it.

Policies: **always on** (nothing pauses it), **Power Embedded** (its documented behaviour: every
open report's heartbeat and timed refresh counts as use, for everyone), **ours** (the real rules)
and **ours + schedule** (the same, with a Monday-to-Friday 07:30 on / 19:00 off schedule).

Nothing here asserts anything: ``run`` prints the tables and returns every figure.
"""

from __future__ import annotations

import asyncio
import enum
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from pydantic import SecretStr
from rich import box
from rich.console import Console
from rich.table import Table
from sqlalchemy import event, select
from sqlalchemy.orm import Session, sessionmaker

from bench.capacity_arm import SimClock, SimulatedArm
from bench.capacity_org import (
    MINUTE,
    Organization,
    OrganizationParams,
    Person,
    ViewerClass,
    build_organization,
)
from bench.capacity_viewers import ScreenTally, Viewer
from bench.support import cheap_password_hashing
from embedportal.access.capacity_rights import capacity_rights
from embedportal.access.groups import add_member, create_group
from embedportal.access.organization import get_organization
from embedportal.access.users import create_user
from embedportal.capacity.activity import ActivityKind
from embedportal.capacity.control import CapacityControl
from embedportal.capacity.controller import (
    CapacityController,
    request_resume,
    weekly_schedule_of,
)
from embedportal.capacity.decisions import Action
from embedportal.capacity.idle import active_window, idle_pause_due_at
from embedportal.capacity.inventory import configure_capacity
from embedportal.capacity.ledger import ActivityLedger, last_counted_activity
from embedportal.capacity.prices import cost_of_hours, hourly_price
from embedportal.capacity.schedule import ScheduleAction, evaluate_schedule
from embedportal.db.migrate import upgrade_database
from embedportal.db.models import Capacity, CapacityEvent, CapacityScheduleEntry, Role, User
from embedportal.db.session import create_db_engine, create_session_factory, session_scope
from embedportal.settings import Settings

CAPACITY_ID = "5b0b6a4e-0c1f-4c55-9d57-3c7c2f1e8a01"  # Power BI's id, lower case
SUBSCRIPTION_ID = "00000000-0000-4000-8000-00000000be7c"
PASSWORD = "bench-password-long-enough"
SECRET_KEY = "bench-secret-key-long-enough-for-the-production-checks"
# Between the instants at which its answer can change, the controller still passes this often.
MAX_PASS_GAP = timedelta(minutes=15)
SCHEDULE_ON = (7, 30)
SCHEDULE_OFF = (19, 0)
WEEKDAY_LABELS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_T = TypeVar("_T")


class Policy(enum.StrEnum):
    ALWAYS_ON = "always_on"
    POWER_EMBEDDED = "power_embedded"
    OURS = "ours"
    OURS_SCHEDULE = "ours_schedule"


POLICY_LABELS = {
    Policy.ALWAYS_ON: "always on",
    Policy.POWER_EMBEDDED: "Power Embedded",
    Policy.OURS: "ours",
    Policy.OURS_SCHEDULE: "ours + schedule",
}


@dataclass(frozen=True)
class CapacityWeekParams:
    days: int = 7
    seed: int = 1
    idle_minutes: int = 30
    office_users: int = 40
    tvs: int = 3
    timed_refresh_minutes: int = 10
    heartbeat_minutes: float = 5.0
    straggler_probability: float = 0.03
    forgotten_tab_probability: float = 0.0
    transition_seconds: float = 60.0
    step_seconds: float = 30.0
    # 0: a pass whenever its answer can change (and every MAX_PASS_GAP); > 0: every so often.
    # Either way a viewer asking for a start wakes it at once, as controller.wake() does.
    controller_seconds: float = 0.0
    sku: str = "A1"
    start: date = date(2026, 5, 4)  # a Monday; no daylight-saving change in the next weeks
    zone: str = "Europe/Lisbon"
    schedule: bool = True  # also run "ours + schedule"

    def organization(self) -> OrganizationParams:
        return OrganizationParams(
            start=self.start,
            days=self.days,
            seed=self.seed,
            zone=self.zone,
            office_users=self.office_users,
            tvs=self.tvs,
            timed_refresh_minutes=self.timed_refresh_minutes,
            straggler_probability=self.straggler_probability,
            forgotten_tab_probability=self.forgotten_tab_probability,
        )


# --- the run of one policy ----------------------------------------------------------------------


@dataclass
class PolicyRun:
    policy: Policy
    billed: list[tuple[datetime, datetime]]
    tallies: dict[ViewerClass, ScreenTally]
    audit: Counter[tuple[str, str]]  # (action, reason) from the real capacity audit
    starts_asked_by: Counter[str]  # on-demand starts by what the first asker was doing
    controller_passes: int = 0
    ledger_rows: int = 0
    refused_operations: list[str] = field(default_factory=list)
    seconds: float = 0.0


class _InlineExecutor(ThreadPoolExecutor):
    """Runs what the capacity code hands to ``asyncio.to_thread`` at once, on the loop's own
    thread. The simulated world is single-threaded anyway, and a thread hand-off per database
    call would cost more than the call."""

    def submit(self, fn: Callable[..., _T], /, *args: Any, **kwargs: Any) -> Future[_T]:
        future: Future[_T] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as error:  # handed back to the awaiting caller
            future.set_exception(error)
        return future


def _fast_sqlite(dbapi_connection: Any, _record: Any) -> None:
    # A throw-away database: no fsync per commit (the bench measures decisions, not disks).
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA synchronous=OFF")
    cursor.close()


def _settings(directory: Path, database_url: str) -> Settings:
    return Settings(
        _env_file=None,
        environment="test",
        secret_key=SecretStr(SECRET_KEY),
        database_url=database_url,
        data_dir=directory,
        demo=False,
        capacity_controller=False,
        # Dummy credentials: the connection must be complete for the capacity control to act,
        # and nothing ever reaches Microsoft (the ARM client is the simulated one).
        powerbi_tenant_id="00000000-0000-4000-8000-0000000000aa",
        powerbi_client_id="00000000-0000-4000-8000-0000000000bb",
        powerbi_client_secret=SecretStr("bench-dummy-secret"),
    )


def _email(person: Person) -> str:
    return f"{person.key}@bench.example"


def _set_up(
    factory: sessionmaker[Session],
    organization: Organization,
    policy: Policy,
    params: CapacityWeekParams,
    running: bool,
) -> None:
    """The organization, its people and groups, and the configured capacity, as an
    administrator would have set them up in the portal."""
    with session_scope(factory) as session:
        get_organization(session=session).time_zone = params.zone
        admin = create_user(
            session=session, email="admin@bench.example", password=PASSWORD, role=Role.ADMIN,
            actor=None,
        )  # fmt: skip
        office = create_group(session=session, name="Office", may_start_capacity=True, actor=admin)
        screens = create_group(session=session, name="Wall screens", actor=admin)
        for person in organization.people:
            own_flags = person.viewer_class is ViewerClass.KEEPS_ON_TV  # its own account's
            create_user(
                session=session, email=_email(person), password=PASSWORD, role=Role.VIEWER,
                may_start_capacity=own_flags and person.may_turn_on,
                keeps_capacity_on=own_flags and person.keeps_on, actor=admin,
            )  # fmt: skip
            if not own_flags:
                group = office if person.viewer_class is ViewerClass.OFFICE else screens
                add_member(session=session, group=group, email=_email(person), actor=admin)
        session.add(
            Capacity(
                id=CAPACITY_ID,
                display_name=f"Bench {params.sku}",
                sku=params.sku,
                state="Active" if running else "Suspended",
                region="West Europe",
            )
        )
        session.flush()
        capacity = configure_capacity(
            session=session, capacity_id=CAPACITY_ID, subscription_id=SUBSCRIPTION_ID,
            resource_group="rg-bench", resource_name="benchcapacity",
            provider="Microsoft.PowerBIDedicated", actor=admin,
        )  # fmt: skip
        capacity.idle_pause_minutes = params.idle_minutes
        # As the Sunday night before left it: running since well before the week, or paused.
        capacity.running_since = organization.starts_at - timedelta(hours=1) if running else None
        if policy is Policy.OURS_SCHEDULE:
            for weekday in range(5):
                for (hour, minute), action in (
                    (SCHEDULE_ON, ScheduleAction.TURN_ON),
                    (SCHEDULE_OFF, ScheduleAction.TURN_OFF),
                ):
                    session.add(
                        CapacityScheduleEntry(
                            capacity_id=CAPACITY_ID, weekday=weekday,
                            at_minute=hour * 60 + minute, action=action.value,
                        )
                    )  # fmt: skip


def _viewers(
    factory: sessionmaker[Session],
    organization: Organization,
    policy: Policy,
    params: CapacityWeekParams,
) -> tuple[list[Viewer], dict[ViewerClass, ScreenTally]]:
    tallies = {viewer_class: ScreenTally() for viewer_class in ViewerClass}
    viewers = []
    with session_scope(factory) as session:
        for person in organization.people:
            user = session.scalars(select(User).where(User.email == _email(person))).one()
            rights = capacity_rights(session=session, user=user)
            if (rights.turn_on_on_demand.allowed, rights.keeps_on.allowed) != (
                person.may_turn_on,
                person.keeps_on,
            ):
                raise RuntimeError(f"bench: {person.key}'s rights are not what was set up")
            session.expunge(user)
            viewers.append(
                Viewer(
                    person=person,
                    user=user,
                    may_turn_on=rights.turn_on_on_demand.allowed,
                    # Power Embedded counts every open report: as if everyone kept it on.
                    keeps_on=policy is Policy.POWER_EMBEDDED or rights.keeps_on.allowed,
                    tally=tallies[person.viewer_class],
                    heartbeat=timedelta(minutes=params.heartbeat_minutes),
                )
            )
    return viewers, tallies


def _next_pass_at(
    factory: sessionmaker[Session], ledger: ActivityLedger, arm: SimulatedArm, now: datetime
) -> datetime:
    """The first instant after a pass at ``now`` at which the controller's answer can change,
    read with the portal's own functions: the end of the operation under way, the idle pause
    falling due or the last counted use leaving the active window (counted activity only
    pushes both later), or the schedule's next row; a request wakes it anyway. Every
    :data:`MAX_PASS_GAP` at the latest."""
    pending = arm.pending_until
    if pending is not None:
        return pending
    candidates = [now + MAX_PASS_GAP]
    with session_scope(factory) as session:
        capacity = session.get(Capacity, CAPACITY_ID)
        assert capacity is not None
        if capacity.operation is not None:
            return now
        entries = list(
            session.scalars(
                select(CapacityScheduleEntry).where(
                    CapacityScheduleEntry.capacity_id == CAPACITY_ID
                )
            )
        )
        evaluation = evaluate_schedule(
            schedule=weekly_schedule_of(entries),
            zone=ZoneInfo(get_organization(session=session).time_zone),
            at=now,
        )
        if evaluation.next_transition is not None:
            candidates.append(evaluation.next_transition.at)
        if arm.running:
            written = last_counted_activity(session=session, capacity_id=CAPACITY_ID)
            pending_at = ledger.pending_last_counted(CAPACITY_ID)
            last = max((at for at in (written, pending_at) if at is not None), default=None)
            idle = capacity.idle_pause_minutes
            due = idle_pause_due_at(
                idle_minutes=idle,
                last_counted_activity=last,
                last_started_at=capacity.running_since,
            )
            if due is not None:
                candidates.append(due)
            if last is not None:
                candidates.append(last + active_window(idle_minutes=idle))
    return min(at for at in candidates if at > now)  # MAX_PASS_GAP is always one


async def _run_policy(
    policy: Policy, organization: Organization, params: CapacityWeekParams
) -> PolicyRun:
    started = time.perf_counter()
    if policy is Policy.ALWAYS_ON:  # nothing ever pauses it, so nobody ever sees a screen
        return PolicyRun(
            policy=policy,
            billed=[(organization.starts_at, organization.ends_at)],
            tallies={viewer_class: ScreenTally() for viewer_class in ViewerClass},
            audit=Counter(),
            starts_asked_by=Counter(),
        )
    # The steady state of the Sunday night before: the TVs' timed refresh keeps Power
    # Embedded's capacity on around the clock; ours has been idle since the weekend's visits.
    running = policy is Policy.POWER_EMBEDDED
    with tempfile.TemporaryDirectory(prefix="embedportal-bench-capacity-") as directory:
        url = f"sqlite:///{Path(directory) / 'bench.db'}"
        upgrade_database(url)
        engine = create_db_engine(url)
        event.listen(engine, "connect", _fast_sqlite)
        try:
            factory = create_session_factory(engine)
            _set_up(factory, organization, policy, params, running)
            viewers, tallies = _viewers(factory, organization, policy, params)
            settings = _settings(Path(directory), url)
            run = await _simulate(
                policy, organization, params, factory, settings, viewers, tallies, running
            )
        finally:
            engine.dispose()
    run.seconds = time.perf_counter() - started
    return run


async def _simulate(
    policy: Policy,
    organization: Organization,
    params: CapacityWeekParams,
    factory: sessionmaker[Session],
    settings: Settings,
    viewers: list[Viewer],
    tallies: dict[ViewerClass, ScreenTally],
    running: bool,
) -> PolicyRun:
    clock = SimClock(organization.starts_at)
    arm = SimulatedArm(
        clock,
        name="benchcapacity",
        sku=params.sku,
        running=running,
        transition=timedelta(seconds=params.transition_seconds),
    )
    ledger = ActivityLedger(factory, clock=clock.now)
    control = CapacityControl(factory, settings, arm_factory=lambda _c, _k: arm, clock=clock.now)
    controller = CapacityController(
        factory, control, ledger, clock=clock.now, holder="bench",
        interval_seconds=params.controller_seconds or 15.0,
    )  # fmt: skip

    def note(user_id: int, kind: ActivityKind, keeps_on: bool, at: datetime) -> None:
        ledger.note(
            capacity_id=CAPACITY_ID, user_id=user_id, kind=kind, keeps_capacity_on=keeps_on, at=at
        )

    users = {viewer.user.id: viewer.user for viewer in viewers}
    step = timedelta(seconds=params.step_seconds)
    uniform = params.controller_seconds > 0
    every = max(1, round(params.controller_seconds / params.step_seconds)) if uniform else 0
    steps = int((organization.ends_at - organization.starts_at) / step)
    starts_asked_by: Counter[str] = Counter()
    passes = rows = 0
    next_pass = organization.starts_at
    try:
        for n in range(steps):
            now = organization.starts_at + n * step
            if clock.advance_to(now):  # an operation's transition is over: let it finish
                await control.wait_idle()
            asks: dict[int, str] = {}
            state_running = arm.running
            for viewer in viewers:
                viewer.step(now, state_running, note, asks)
            if asks:
                with session_scope(factory) as session:
                    for user_id in sorted(asks):
                        request_resume(
                            session=session, capacity_id=CAPACITY_ID, user=users[user_id], now=now
                        )
            due = n % every == 0 if uniform else now >= next_pass
            if not (asks or due):  # a waiting viewer wakes the controller (controller.wake())
                continue
            rows += ledger.flush()  # what the pass would flush first, counted
            decisions = await controller.run_once()
            passes += 1
            acted = False
            for _capacity_id, decision in decisions:
                if decision.action is Action.NOTHING:
                    continue
                acted = True
                if decision.action is Action.RESUME and decision.requested_by is not None:
                    starts_asked_by[asks.get(decision.requested_by, "an earlier request")] += 1
            for _ in range(20 if acted else 0):  # let the operation reach ARM at this instant
                if arm.pending_until is not None:
                    break
                await asyncio.sleep(0)
            if not uniform:
                next_pass = _next_pass_at(factory, ledger, arm, now)
        clock.advance_to(organization.ends_at)
        for viewer in viewers:
            viewer.finish(organization.ends_at)
        rows += ledger.flush()
    finally:
        await control.aclose()
    with session_scope(factory) as session:
        audit: Counter[tuple[str, str]] = Counter(
            (e.action, e.reason) for e in session.scalars(select(CapacityEvent))
        )
    return PolicyRun(
        policy=policy,
        billed=arm.billed_intervals(until=organization.ends_at),
        tallies=tallies,
        audit=audit,
        starts_asked_by=starts_asked_by,
        controller_passes=passes,
        ledger_rows=rows,
        refused_operations=list(arm.counters.refused),
    )


# --- the target ---------------------------------------------------------------------------------


def _union(intervals: list[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    merged: list[tuple[datetime, datetime]] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _clip(
    intervals: list[tuple[datetime, datetime]], start: datetime, end: datetime
) -> list[tuple[datetime, datetime]]:
    return [(max(a, start), min(b, end)) for a, b in intervals if b > start and a < end]


def counted_activity(
    organization: Organization, *, tail: timedelta
) -> list[tuple[datetime, datetime]]:
    """When a counted user is active under the real rules (opening and clicking count for
    everyone; an open report counts only for "keeps the capacity on"), each instant extended
    by ``tail``; policy-independent, from the people's own schedule."""
    spans: list[tuple[datetime, datetime]] = []
    for person in organization.people:
        for visit in person.visits:
            if person.keeps_on:
                spans.append((visit.opened_at, visit.closed_at + tail))
                continue
            if not visit.opened_before:
                spans.append((visit.opened_at, visit.opened_at + tail))
            spans += [(at, at + tail) for at in visit.interactions]
    return _clip(_union(spans), organization.starts_at, organization.ends_at)


def _hours(intervals: list[tuple[datetime, datetime]]) -> float:
    return sum((b - a).total_seconds() for a, b in intervals) / 3600


def _local_days(organization: Organization) -> Iterator[tuple[datetime, datetime]]:
    zone = ZoneInfo(organization.params.zone)
    for d in range(organization.params.days):
        day = organization.params.start + timedelta(days=d)
        start = datetime(day.year, day.month, day.day, tzinfo=zone)
        after = day + timedelta(days=1)
        yield start, datetime(after.year, after.month, after.day, tzinfo=zone)


def _per_day(intervals: list[tuple[datetime, datetime]], organization: Organization) -> list[float]:
    return [_hours(_clip(intervals, a, b)) for a, b in _local_days(organization)]


# --- figures ------------------------------------------------------------------------------------


def _tally_figures(tally: ScreenTally) -> dict[str, Any]:
    waits = tally.start_waits
    return {
        "offScreens": tally.off_screens,
        "offMinutes": round(tally.off_seconds / 60, 1),
        "longestOffMinutes": round(tally.longest_off_seconds / 60, 1),
        "startingScreens": tally.starting_screens,
        "startingMinutes": round(tally.starting_seconds / 60, 1),
        "startWaitSeconds": {
            "median": statistics.median(waits),
            "max": max(waits),
            "count": len(waits),
        }
        if waits
        else None,
    }


def _figures(
    organization: Organization,
    params: CapacityWeekParams,
    runs: list[PolicyRun],
    seconds: float,
) -> dict[str, Any]:
    tail = timedelta(minutes=params.idle_minutes)
    active = counted_activity(organization, tail=MINUTE)
    target = counted_activity(organization, tail=tail)
    target_hours = _hours(target)
    total_hours = (organization.ends_at - organization.starts_at).total_seconds() / 3600
    price = hourly_price(sku=params.sku)
    people = Counter(p.viewer_class.value for p in organization.people)
    visits = Counter(v.purpose for p in organization.people for v in p.visits)
    policies: list[dict[str, Any]] = []
    for run in runs:
        billed = _hours(run.billed)
        starting = list(run.tallies.values())
        waits = [w for t in starting for w in t.start_waits]
        policies.append(
            {
                "name": run.policy.value,
                "label": POLICY_LABELS[run.policy],
                "billedHours": round(billed, 3),
                "billedHoursPerDay": [round(h, 3) for h in _per_day(run.billed, organization)],
                "estimatedCostUsd": str(cost_of_hours(sku=params.sku, hours=Decimal(billed))),
                "vsTarget": round(billed / target_hours, 3) if target_hours else None,
                "excessOverTargetPercent": round(100 * (billed - target_hours) / target_hours, 2)
                if target_hours
                else None,
                "savedVsAlwaysOnPercent": round(100 * (1 - billed / total_hours), 1),
                "screensByClass": {c.value: _tally_figures(t) for c, t in run.tallies.items()},
                "startingScreens": sum(t.starting_screens for t in starting),
                "startWaitSeconds": {"median": statistics.median(waits), "max": max(waits)}
                if waits
                else None,
                "expiryScreens": 0,
                "audit": {f"{a}/{r}": n for (a, r), n in sorted(run.audit.items())},
                "onDemandStartsAskedBy": dict(run.starts_asked_by),
                "controllerPasses": run.controller_passes,
                "ledgerRows": run.ledger_rows,
                "refusedArmOperations": run.refused_operations,
                "runtimeSeconds": round(run.seconds, 2),
            }
        )
    ours = next((p for p in policies if p["name"] == Policy.OURS.value), None)
    return {
        "params": {
            "days": params.days,
            "seed": params.seed,
            "idleMinutes": params.idle_minutes,
            "officeUsers": params.office_users,
            "tvs": params.tvs,
            "timedRefreshMinutes": params.timed_refresh_minutes,
            "heartbeatMinutes": params.heartbeat_minutes,
            "stragglerProbability": params.straggler_probability,
            "forgottenTabProbability": params.forgotten_tab_probability,
            "transitionSeconds": params.transition_seconds,
            "stepSeconds": params.step_seconds,
            "controllerSeconds": params.controller_seconds,
            "sku": params.sku,
            "hourlyPriceUsd": str(price),
            "start": organization.starts_at.isoformat(),
            "startDate": params.start.isoformat(),
            "zone": params.zone,
        },
        "people": dict(people),
        "visits": dict(visits),
        "hours": round(total_hours, 3),
        "countedActiveHours": round(_hours(active), 3),
        "targetHours": round(target_hours, 3),
        "targetHoursPerDay": [round(h, 3) for h in _per_day(target, organization)],
        "policies": policies,
        "target": {
            "withinPercent": 5,
            "met": bool(
                ours is not None
                and ours["excessOverTargetPercent"] is not None
                and ours["excessOverTargetPercent"] <= 5
                and ours["expiryScreens"] == 0
                and ours["screensByClass"][ViewerClass.KEEPS_ON_TV.value]["offScreens"] == 0
            ),
        },
        "runtimeSeconds": round(seconds, 2),
    }


# --- printing -----------------------------------------------------------------------------------


def _table(*columns: str) -> Table:
    table = Table(box=box.ASCII2, show_edge=True, pad_edge=True, highlight=False)
    for n, column in enumerate(columns):
        table.add_column(column, justify="left" if n == 0 else "right", no_wrap=n == 0)
    return table


def _screens(figures: dict[str, Any]) -> str:
    if figures["offScreens"] == 0:
        return "0"
    return f"{figures['offScreens']} / {figures['offMinutes']:,.0f}"


def print_figures(console: Console, figures: dict[str, Any]) -> None:
    params = figures["params"]
    people = figures["people"]
    console.print(
        f"[bold]Capacity week[/bold]: {params['days']} simulated days from Monday "
        f"{params['startDate']} ({params['zone']}), seed {params['seed']}; "
        f"{people.get('office', 0)} office users, {people.get('TV', 0)} wall TVs without "
        f"'keeps on', {people.get('keeps-on TV', 0)} lobby TV with 'keeps on'; idle pause "
        f"{params['idleMinutes']} min; {params['sku']} at ${params['hourlyPriceUsd']}/h "
        f"(estimate); ARM transitions {params['transitionSeconds']:g} s; people every "
        f"{params['stepSeconds']:g} s, heartbeats every {params['heartbeatMinutes']:g} min, "
        f"timed refresh every {params['timedRefreshMinutes']} min; controller "
        + (
            f"every {params['controllerSeconds']:g} s"
            if params["controllerSeconds"]
            else "whenever its answer can change (at most 15 min apart)"
        )
        + " and at once for a viewer asking (simulated time)"
    )
    console.print(
        "  Visits: " + ", ".join(f"{n} {k}" for k, n in sorted(figures["visits"].items()))
    )
    target = figures["targetHours"]
    bill = _table(
        "policy",
        "billed\ncapacity-h",
        "x target",
        "over target",
        "est. cost\n(USD)",
        "saved vs\nalways on",
        "starts",
        "pauses",
    )
    for p in figures["policies"]:
        audit = p["audit"]
        starts = sum(n for k, n in audit.items() if k.startswith("started/"))
        pauses = sum(n for k, n in audit.items() if k.startswith("paused/"))
        bill.add_row(
            p["label"],
            f"{p['billedHours']:,.2f}",
            f"{p['vsTarget']:.2f}x" if p["vsTarget"] is not None else "-",
            f"{p['excessOverTargetPercent']:+.1f} %"
            if p["excessOverTargetPercent"] is not None
            else "-",
            p["estimatedCostUsd"],
            f"{p['savedVsAlwaysOnPercent']:.1f} %",
            "-" if p["name"] == Policy.ALWAYS_ON.value else str(starts),
            "-" if p["name"] == Policy.ALWAYS_ON.value else str(pauses),
        )
    console.print(bill)
    console.print(
        f"  Target: {figures['countedActiveHours']:,.2f} h in which a counted user is active "
        f"(a minute per open or click; the lobby TV's whole screen time), "
        f"{target:,.2f} h with the {params['idleMinutes']} idle minutes after each stretch, "
        f"out of {figures['hours']:,.0f} h."
    )

    screens = _table(
        "policy",
        "off screens\noffice\n(n / min)",
        "off screens\nTVs\n(n / min)",
        "off screens\nkeeps-on TV\n(n / min)",
        "longest off\nscreen, TVs\n(h)",
        "starting screens\noffice /\nkeeps-on TV",
        "time to start s\nmedian / max",
        "expiry\nscreens",
    )
    for p in figures["policies"]:
        by = p["screensByClass"]
        wait = p["startWaitSeconds"]
        screens.add_row(
            p["label"],
            _screens(by["office"]),
            _screens(by["TV"]),
            _screens(by["keeps-on TV"]),
            f"{by['TV']['longestOffMinutes'] / 60:.1f}",
            f"{by['office']['startingScreens']} / {by['keeps-on TV']['startingScreens']}",
            "-" if wait is None else f"{wait['median']:.0f} / {wait['max']:.0f}",
            str(p["expiryScreens"]) + "*",
        )
    console.print(screens)
    console.print(
        "  * The token keeper is not simulated here (Part 1 is its benchmark): an off or "
        "starting screen is the keeper's 'capacity' state, which reloads the report with a "
        "fresh token once the capacity runs, so it never turns into an expiry screen."
    )

    days = [
        WEEKDAY_LABELS[(date.fromisoformat(params["startDate"]).weekday() + d) % 7]
        for d in range(params["days"])
    ]
    per_day = _table("billed h per day", *days)
    per_day.add_row("target", *(f"{h:.1f}" for h in figures["targetHoursPerDay"]))
    for p in figures["policies"]:
        per_day.add_row(p["label"], *(f"{h:.1f}" for h in p["billedHoursPerDay"]))
    console.print(per_day)

    for p in figures["policies"]:
        if p["name"] == Policy.ALWAYS_ON.value:
            continue
        asked = ", ".join(f"{why} {n}" for why, n in sorted(p["onDemandStartsAskedBy"].items()))
        console.print(
            f"  {p['label']}: audit "
            + ", ".join(f"{k} {n}" for k, n in p["audit"].items())
            + (f"; on-demand starts asked by: {asked}" if asked else "")
            + f"; {p['controllerPasses']:,} controller passes, {p['ledgerRows']:,} ledger rows, "
            f"{p['runtimeSeconds']:.1f} s"
        )
        if p["refusedArmOperations"]:
            console.print(f"    ARM refused: {p['refusedArmOperations'][:5]}")
    ours = next((p for p in figures["policies"] if p["name"] == Policy.OURS.value), None)
    if ours is not None:
        keeps_on = ours["screensByClass"]["keeps-on TV"]["offScreens"]
        console.print(
            f"Ours: {ours['billedHours']:,.2f} billed capacity-hours against a target of "
            f"{target:,.2f} h ({ours['excessOverTargetPercent']:+.1f} %): within 5 %: "
            f"{'yes' if ours['excessOverTargetPercent'] <= 5 else 'NO'}; expiry screens "
            f"{ours['expiryScreens']}; off screens for the keeps-on TV {keeps_on}."
        )


async def simulate_all(params: CapacityWeekParams) -> dict[str, Any]:
    started = time.perf_counter()
    asyncio.get_running_loop().set_default_executor(_InlineExecutor(max_workers=1))
    organization = build_organization(params.organization())
    policies = [Policy.ALWAYS_ON, Policy.POWER_EMBEDDED, Policy.OURS]
    if params.schedule:
        policies.append(Policy.OURS_SCHEDULE)
    runs = [await _run_policy(policy, organization, params) for policy in policies]
    return _figures(organization, params, runs, time.perf_counter() - started)


def run(console: Console, params: CapacityWeekParams) -> dict[str, Any]:
    """Run every policy over the seeded week, print the tables, return the figures."""
    with cheap_password_hashing():
        figures = asyncio.run(simulate_all(params))
    print_figures(console, figures)
    console.print(f"  (capacity week: {figures['runtimeSeconds']:.1f} s)")
    return figures
