"""The controller's pure decision (and the idle clock it uses): every branch in a table,
idempotence as properties, and days simulated tick by tick."""

from __future__ import annotations

import ast
import random
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import embedportal.capacity
from embedportal.capacity.decisions import (
    AUDITED_REASONS,
    REQUEST_FRESH_FOR,
    Action,
    CapacityState,
    Decision,
    Reason,
    ResumeRequest,
    Situation,
    change_sku,
    decide,
    nothing,
    resume,
    suspend,
)
from embedportal.capacity.idle import (
    DEFAULT_ACTIVE_WINDOW,
    active_window,
    idle_pause_due,
    idle_pause_due_at,
    idle_since,
    parse_idle_minutes,
    someone_active,
)
from embedportal.capacity.permissions import Because, Verdict
from embedportal.capacity.schedule import (
    ScheduleAction,
    ScheduleEvaluation,
    ScheduleMode,
    ScheduleRow,
    Transition,
    WeeklySchedule,
    evaluate_schedule,
)

NOW = datetime(2026, 7, 6, 19, 0, tzinfo=UTC)  # a Monday
ALLOWED = Verdict(True, Because.USER_PERMISSION)
REFUSED = Verdict(False, Because.NOT_GRANTED)
LISBON = ZoneInfo("Europe/Lisbon")


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)


def transition(action: ScheduleAction, at: datetime, sku: str | None = None) -> Transition:
    local = at.astimezone(UTC)
    return Transition(
        at=at,
        row=ScheduleRow(
            weekday=local.weekday(), at=time(local.hour, local.minute), action=action, sku=sku
        ),
        local_date=local.date(),
    )


NO_SCHEDULE = ScheduleEvaluation(
    mode=ScheduleMode.NO_OPINION,
    power_transition=None,
    sku_transition=None,
    last_transition=None,
    next_transition=None,
)


def window(
    *, opened: timedelta = timedelta(minutes=60), sku: Transition | None = None
) -> ScheduleEvaluation:
    """Inside an on-window that opened ``opened`` ago."""
    on = transition(ScheduleAction.TURN_ON, NOW - opened)
    return replace(
        NO_SCHEDULE, mode=ScheduleMode.SCHEDULED_ON, power_transition=on, sku_transition=sku
    )


def after_off(
    *, ago: timedelta = timedelta(minutes=60), sku: Transition | None = None
) -> ScheduleEvaluation:
    """After a scheduled turn-off ``ago`` ago."""
    off = transition(ScheduleAction.TURN_OFF, NOW - ago)
    return replace(
        NO_SCHEDULE, mode=ScheduleMode.SCHEDULED_OFF, power_transition=off, sku_transition=sku
    )


def sku_row(sku: str, ago: timedelta = timedelta(minutes=30)) -> Transition:
    return transition(ScheduleAction.CHANGE_SKU, NOW - ago, sku)


def request(
    user_id: int = 7, ago: timedelta = timedelta(minutes=1), permission: Verdict = ALLOWED
) -> ResumeRequest:
    return ResumeRequest(user_id=user_id, requested_at=NOW - ago, permission=permission)


def situation(**changes: object) -> Situation:
    base = Situation(
        now=NOW,
        state=CapacityState.RUNNING,
        schedule=NO_SCHEDULE,
        last_started_at=NOW - minutes(600),
        current_sku="F2",
    )
    return replace(base, **changes)  # type: ignore[arg-type]


# (description, situation changes, expected decision)
BRANCHES: list[tuple[str, dict[str, object], Decision]] = [
    # 1. Busy or unsure.
    (
        "an operation in flight beats everything",
        {
            "operation_in_flight": True,
            "state": CapacityState.PAUSED,
            "resume_requests": (request(),),
            "schedule": window(),
        },
        nothing(reason=Reason.OPERATION_IN_FLIGHT),
    ),
    (
        "an operation in flight while idle for hours",
        {
            "operation_in_flight": True,
            "idle_minutes": 5,
            "last_counted_activity": NOW - minutes(600),
        },
        nothing(reason=Reason.OPERATION_IN_FLIGHT),
    ),
    (
        "transitioning",
        {"state": CapacityState.TRANSITIONING, "resume_requests": (request(),)},
        nothing(reason=Reason.TRANSITIONING),
    ),
    (
        "unknown state",
        {"state": CapacityState.UNKNOWN, "schedule": after_off(), "idle_minutes": 1},
        nothing(reason=Reason.STATE_UNKNOWN),
    ),
    # 2. Paused.
    (
        "paused inside an on-window: the schedule starts it",
        {"state": CapacityState.PAUSED, "schedule": window()},
        resume(reason=Reason.SCHEDULE),
    ),
    (
        "paused by hand after the window opened: it stays paused",
        {
            "state": CapacityState.PAUSED,
            "schedule": window(),
            "manually_paused_at": NOW - minutes(10),
        },
        nothing(reason=Reason.MANUALLY_PAUSED),
    ),
    (
        "paused by hand before the window opened: the window starts it",
        {
            "state": CapacityState.PAUSED,
            "schedule": window(),
            "manually_paused_at": NOW - minutes(61),
        },
        resume(reason=Reason.SCHEDULE),
    ),
    (
        "paused by hand in the window, someone asks: on demand",
        {
            "state": CapacityState.PAUSED,
            "schedule": window(),
            "manually_paused_at": NOW - minutes(10),
            "resume_requests": (request(user_id=3),),
        },
        resume(reason=Reason.ON_DEMAND, requested_by=3),
    ),
    (
        "paused by hand in the window, a SKU change is due: made while paused",
        {
            "state": CapacityState.PAUSED,
            "schedule": window(sku=sku_row("F4")),
            "manually_paused_at": NOW - minutes(10),
        },
        change_sku(sku="F4", reason=Reason.SCHEDULE),
    ),
    (
        "paused in the window with a SKU change due: the SKU first",
        {"state": CapacityState.PAUSED, "schedule": window(sku=sku_row("F4"))},
        change_sku(sku="F4", reason=Reason.SCHEDULE),
    ),
    (
        "paused in the window with a SKU change due and someone waiting: start first",
        {
            "state": CapacityState.PAUSED,
            "schedule": window(sku=sku_row("F4")),
            "resume_requests": (request(),),
        },
        resume(reason=Reason.SCHEDULE),
    ),
    (
        "the global block does not stop the schedule",
        {"state": CapacityState.PAUSED, "schedule": window(), "nobody_may_turn_on": True},
        resume(reason=Reason.SCHEDULE),
    ),
    (
        "paused, a permitted user asks",
        {
            "state": CapacityState.PAUSED,
            "schedule": after_off(),
            "resume_requests": (request(user_id=5),),
        },
        resume(reason=Reason.ON_DEMAND, requested_by=5),
    ),
    (
        "paused, the earliest permitted requester is named, whatever the order",
        {
            "state": CapacityState.PAUSED,
            "resume_requests": (
                request(user_id=1, ago=minutes(1)),
                request(user_id=2, ago=minutes(3), permission=REFUSED),
                request(user_id=4, ago=minutes(2)),
                request(user_id=3, ago=minutes(2)),
            ),
        },
        resume(reason=Reason.ON_DEMAND, requested_by=3),
    ),
    (
        "paused, the global block refuses a permitted user",
        {
            "state": CapacityState.PAUSED,
            "resume_requests": (request(),),
            "nobody_may_turn_on": True,
        },
        nothing(reason=Reason.TURN_ON_BLOCKED),
    ),
    (
        "paused, a user without the permission asks",
        {"state": CapacityState.PAUSED, "resume_requests": (request(permission=REFUSED),)},
        nothing(reason=Reason.NOT_PERMITTED),
    ),
    (
        "paused, a request older than its freshness is forgotten",
        {
            "state": CapacityState.PAUSED,
            "resume_requests": (request(ago=REQUEST_FRESH_FOR + timedelta(seconds=1)),),
        },
        nothing(reason=Reason.STAYS_PAUSED),
    ),
    (
        "paused, a request exactly as old as its freshness still counts",
        {"state": CapacityState.PAUSED, "resume_requests": (request(ago=REQUEST_FRESH_FOR),)},
        resume(reason=Reason.ON_DEMAND, requested_by=7),
    ),
    (
        "paused, the request that started it last time cannot start it again",
        {
            "state": CapacityState.PAUSED,
            "last_started_at": NOW - minutes(2),
            "resume_requests": (request(ago=minutes(3)),),
        },
        nothing(reason=Reason.STAYS_PAUSED),
    ),
    (
        "paused, a request made while it was pausing counts",
        {
            "state": CapacityState.PAUSED,
            "last_started_at": NOW - minutes(30),
            "resume_requests": (request(ago=minutes(1)),),
        },
        resume(reason=Reason.ON_DEMAND, requested_by=7),
    ),
    (
        "paused, a request from a clock a little ahead counts",
        {"state": CapacityState.PAUSED, "resume_requests": (request(ago=-timedelta(seconds=2)),)},
        resume(reason=Reason.ON_DEMAND, requested_by=7),
    ),
    (
        "paused, a SKU change is due: made while paused",
        {"state": CapacityState.PAUSED, "schedule": after_off(sku=sku_row("F4"))},
        change_sku(sku="F4", reason=Reason.SCHEDULE),
    ),
    (
        "paused, someone asks and a SKU change is due: start first",
        {
            "state": CapacityState.PAUSED,
            "schedule": after_off(sku=sku_row("F4")),
            "resume_requests": (request(),),
        },
        resume(reason=Reason.ON_DEMAND, requested_by=7),
    ),
    ("paused, nothing to do", {"state": CapacityState.PAUSED}, nothing(reason=Reason.STAYS_PAUSED)),
    # 3. Running.
    (
        "running in the window stays on however idle",
        {"schedule": window(), "idle_minutes": 5, "last_counted_activity": NOW - minutes(500)},
        nothing(reason=Reason.SCHEDULED_ON),
    ),
    (
        "running in the window with a SKU change due",
        {"schedule": window(sku=sku_row("F8"))},
        change_sku(sku="F8", reason=Reason.SCHEDULE),
    ),
    (
        "after the turn-off, someone active: wait",
        {
            "schedule": after_off(ago=minutes(10)),
            "idle_minutes": 30,
            "last_counted_activity": NOW - minutes(29),
        },
        nothing(reason=Reason.WAITING_FOR_ACTIVE_USERS),
    ),
    (
        "after the turn-off, someone active and a SKU change due",
        {
            "schedule": after_off(ago=minutes(10), sku=sku_row("F4")),
            "idle_minutes": 30,
            "last_counted_activity": NOW - minutes(1),
        },
        change_sku(sku="F4", reason=Reason.SCHEDULE),
    ),
    (
        "after the turn-off, nobody was there at the time: off by schedule",
        {
            "schedule": after_off(ago=minutes(1)),
            "idle_minutes": 30,
            "last_counted_activity": NOW - minutes(31),
        },
        suspend(reason=Reason.SCHEDULE),
    ),
    (
        "after the turn-off, nobody ever: off by schedule",
        {"schedule": after_off(ago=minutes(1))},
        suspend(reason=Reason.SCHEDULE),
    ),
    (
        "after the turn-off, people were there at the time and have left",
        {
            "schedule": after_off(ago=minutes(20)),
            "idle_minutes": 30,
            "last_counted_activity": NOW - minutes(30),
        },
        suspend(reason=Reason.INACTIVITY_AFTER_SCHEDULE),
    ),
    (
        "after the turn-off, people came after it and have left",
        {
            "schedule": after_off(ago=minutes(90)),
            "idle_minutes": 30,
            "last_counted_activity": NOW - minutes(45),
        },
        suspend(reason=Reason.INACTIVITY_AFTER_SCHEDULE),
    ),
    (
        "after the turn-off with the idle pause off: 15 minutes count as active",
        {"schedule": after_off(ago=minutes(5)), "last_counted_activity": NOW - minutes(14)},
        nothing(reason=Reason.WAITING_FOR_ACTIVE_USERS),
    ),
    (
        "after the turn-off with the idle pause off: gone after 15 minutes",
        {"schedule": after_off(ago=minutes(5)), "last_counted_activity": NOW - minutes(15)},
        suspend(reason=Reason.INACTIVITY_AFTER_SCHEDULE),
    ),
    (
        "after the turn-off, started since (on demand): the idle pause off keeps it on",
        {"schedule": after_off(ago=minutes(60)), "last_started_at": NOW - minutes(30)},
        nothing(reason=Reason.IDLE_PAUSE_OFF),
    ),
    (
        "after the turn-off, started since: only the idle rule applies",
        {
            "schedule": after_off(ago=minutes(60)),
            "last_started_at": NOW - minutes(40),
            "idle_minutes": 30,
            "last_counted_activity": NOW - minutes(35),
        },
        suspend(reason=Reason.INACTIVITY),
    ),
    (
        "after the turn-off, never seen starting: it counts as running since long ago",
        {"schedule": after_off(ago=minutes(60)), "last_started_at": None},
        suspend(reason=Reason.SCHEDULE),
    ),
    (
        "idle long enough",
        {"idle_minutes": 30, "last_counted_activity": NOW - minutes(30)},
        suspend(reason=Reason.INACTIVITY),
    ),
    (
        "idle not quite long enough",
        {
            "idle_minutes": 30,
            "last_counted_activity": NOW - minutes(30) + timedelta(microseconds=1),
        },
        nothing(reason=Reason.IN_USE),
    ),
    (
        "just started, the ledger's last entry is old: not paused at once",
        {
            "idle_minutes": 30,
            "last_counted_activity": NOW - minutes(300),
            "last_started_at": NOW - minutes(2),
        },
        nothing(reason=Reason.IN_USE),
    ),
    (
        "started 30 minutes ago and nobody came",
        {"idle_minutes": 30, "last_counted_activity": None, "last_started_at": NOW - minutes(30)},
        suspend(reason=Reason.INACTIVITY),
    ),
    (
        "idle pause set, nothing known at all: idle as long as anyone can tell",
        {"idle_minutes": 30, "last_counted_activity": None, "last_started_at": None},
        suspend(reason=Reason.INACTIVITY),
    ),
    (
        "idle and a SKU change due: pause first, change while paused",
        {
            "idle_minutes": 10,
            "last_counted_activity": NOW - minutes(60),
            "schedule": replace(NO_SCHEDULE, sku_transition=sku_row("F4")),
        },
        suspend(reason=Reason.INACTIVITY),
    ),
    (
        "running, in use, a SKU change due",
        {
            "idle_minutes": 10,
            "last_counted_activity": NOW - minutes(1),
            "schedule": replace(NO_SCHEDULE, sku_transition=sku_row("F4")),
        },
        change_sku(sku="F4", reason=Reason.SCHEDULE),
    ),
    (
        "idle pause off, idle for days",
        {"last_counted_activity": NOW - timedelta(days=3)},
        nothing(reason=Reason.IDLE_PAUSE_OFF),
    ),
    # The SKU rule.
    (
        "the SKU is already the wanted one",
        {"schedule": window(sku=sku_row("F2")), "current_sku": "F2"},
        nothing(reason=Reason.SCHEDULED_ON),
    ),
    (
        "ARM spells the SKU in another case",
        {"schedule": window(sku=sku_row("F2")), "current_sku": "f2"},
        nothing(reason=Reason.SCHEDULED_ON),
    ),
    (
        "changed by hand since the row fired: the manual change holds",
        {
            "schedule": window(sku=sku_row("F4", ago=minutes(30))),
            "sku_changed_at": NOW - minutes(29),
        },
        nothing(reason=Reason.SCHEDULED_ON),
    ),
    (
        "changed before the row fired: the row applies",
        {
            "schedule": window(sku=sku_row("F4", ago=minutes(30))),
            "sku_changed_at": NOW - minutes(31),
        },
        change_sku(sku="F4", reason=Reason.SCHEDULE),
    ),
    (
        "a SKU of another family is never asked for",
        {"schedule": window(sku=sku_row("F4")), "current_sku": "A1"},
        nothing(reason=Reason.SCHEDULED_ON),
    ),
    (
        "the current SKU is not known: the row applies",
        {"schedule": window(sku=sku_row("A2")), "current_sku": None},
        change_sku(sku="A2", reason=Reason.SCHEDULE),
    ),
    (
        "a row whose SKU the catalogue lacks (built without the form) is still tried",
        {"schedule": window(sku=sku_row("F128")), "current_sku": "F2"},
        change_sku(sku="F128", reason=Reason.SCHEDULE),
    ),
    (
        "the current SKU is one the catalogue lacks: the row applies",
        {"schedule": window(sku=sku_row("F4")), "current_sku": "F128"},
        change_sku(sku="F4", reason=Reason.SCHEDULE),
    ),
]


@pytest.mark.parametrize(
    ("changes", "expected"), [case[1:] for case in BRANCHES], ids=[case[0] for case in BRANCHES]
)
def test_branches(changes: dict[str, object], expected: Decision) -> None:
    assert decide(situation=situation(**changes)) == expected


def test_a_naive_now_is_refused() -> None:
    with pytest.raises(ValueError):
        decide(situation=situation(now=datetime(2026, 7, 6, 19)))


def test_audited_reasons() -> None:
    assert {reason.value for reason in AUDITED_REASONS} == {
        "manual",
        "on_demand",
        "schedule",
        "inactivity",
        "inactivity_after_schedule",
    }


# --- the idle clock ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "minutes_", "error"),
    [
        ("", None, None),
        ("  ", None, None),
        ("1", 1, None),
        (" 30 ", 30, None),
        ("+15", 15, None),
        ("1440", 1440, None),
        ("0", None, "from 1 to 1440"),
        ("1441", None, "from 1 to 1440"),
        ("-5", None, "from 1 to 1440"),
        ("99999999999999999999", None, "from 1 to 1440"),
        ("1.5", None, "whole number"),
        ("ten", None, "whole number"),
        ("3O", None, "whole number"),
        ("１０", None, "whole number"),
        ("1_0", None, "whole number"),
        ("+", None, "whole number"),
    ],
)
def test_parse_idle_minutes(text: str, minutes_: int | None, error: str | None) -> None:
    result = parse_idle_minutes(text=text)
    assert result.minutes == minutes_
    if error is None:
        assert result.error is None
    else:
        assert result.error is not None and error in result.error


def test_active_window_and_someone_active() -> None:
    assert active_window(idle_minutes=None) == DEFAULT_ACTIVE_WINDOW == minutes(15)
    assert active_window(idle_minutes=45) == minutes(45)
    assert not someone_active(now=NOW, last_counted_activity=None, idle_minutes=10)
    assert someone_active(now=NOW, last_counted_activity=NOW - minutes(9), idle_minutes=10)
    assert not someone_active(now=NOW, last_counted_activity=NOW - minutes(10), idle_minutes=10)
    assert someone_active(now=NOW, last_counted_activity=NOW + minutes(1), idle_minutes=10)


def test_idle_since_and_due() -> None:
    old, recent = NOW - minutes(50), NOW - minutes(5)
    assert idle_since(last_counted_activity=old, last_started_at=recent) == recent
    assert idle_since(last_counted_activity=recent, last_started_at=old) == recent
    assert idle_since(last_counted_activity=None, last_started_at=old) == old
    assert idle_since(last_counted_activity=None, last_started_at=None) is None
    assert (
        idle_pause_due_at(idle_minutes=None, last_counted_activity=old, last_started_at=old) is None
    )
    assert idle_pause_due_at(
        idle_minutes=10, last_counted_activity=old, last_started_at=recent
    ) == NOW + minutes(5)
    assert not idle_pause_due(
        now=NOW, idle_minutes=None, last_counted_activity=None, last_started_at=None
    )
    assert idle_pause_due(
        now=NOW, idle_minutes=10, last_counted_activity=None, last_started_at=None
    )
    assert idle_pause_due(
        now=NOW + minutes(5), idle_minutes=10, last_counted_activity=old, last_started_at=recent
    )
    assert not idle_pause_due(
        now=NOW, idle_minutes=10, last_counted_activity=old, last_started_at=recent
    )


# --- idempotence -------------------------------------------------------------------------------


def carry_out(decision: Decision, before: Situation) -> Situation:
    """What the world looks like once the controller has done what it was told, at once."""
    if decision.action is Action.RESUME:
        return replace(before, state=CapacityState.RUNNING, last_started_at=before.now)
    if decision.action is Action.SUSPEND:
        return replace(before, state=CapacityState.PAUSED)
    if decision.action is Action.CHANGE_SKU:
        return replace(before, current_sku=decision.sku, sku_changed_at=before.now)
    return before


SKU_NAMES = st.sampled_from(["F2", "F4", "F8", "A1", "A2"])
MAYBE_AGO = st.one_of(st.none(), st.integers(-5, 24 * 60).map(lambda m: NOW - minutes(m)))
LOOSE_ROWS = st.lists(
    st.tuples(
        st.integers(0, 6),
        st.integers(0, 23),
        st.sampled_from([0, 30]),
        st.sampled_from(list(ScheduleAction)),
        SKU_NAMES,
    ),
    max_size=8,
    unique_by=lambda r: (r[0], r[1], r[2]),
)


@st.composite
def situations(draw: st.DrawFn) -> Situation:
    rows = tuple(
        ScheduleRow(
            weekday=d, at=time(h, m), action=a, sku=s if a is ScheduleAction.CHANGE_SKU else None
        )
        for d, h, m, a, s in draw(LOOSE_ROWS)
    )
    now = NOW + minutes(draw(st.integers(0, 7 * 24 * 60)))
    requests = tuple(
        ResumeRequest(
            user_id=draw(st.integers(1, 4)),
            requested_at=now - timedelta(seconds=draw(st.integers(-10, 600))),
            permission=draw(
                st.sampled_from([ALLOWED, REFUSED, Verdict(True, Because.ADMINISTRATOR)])
            ),
        )
        for _ in range(draw(st.integers(0, 3)))
    )

    def ago() -> datetime | None:
        value = draw(MAYBE_AGO)
        return None if value is None else value + (now - NOW)

    return Situation(
        now=now,
        state=draw(st.sampled_from(list(CapacityState))),
        schedule=evaluate_schedule(schedule=WeeklySchedule(rows=rows), zone=LISBON, at=now),
        idle_minutes=draw(st.one_of(st.none(), st.integers(1, 120))),
        last_counted_activity=ago(),
        last_started_at=ago(),
        resume_requests=requests,
        nobody_may_turn_on=draw(st.booleans()),
        operation_in_flight=draw(st.integers(0, 9)) == 0,
        manually_paused_at=ago(),
        current_sku=draw(st.one_of(st.none(), SKU_NAMES)),
        sku_changed_at=ago(),
    )


@settings(derandomize=True, max_examples=400, deadline=None)
@given(start=situations(), seed=st.integers(0, 1000))
def test_decisions_are_idempotent_and_settle(start: Situation, seed: int) -> None:
    decision = decide(situation=start)
    # Same inputs, same answer, whatever order the requests come in.
    assert decide(situation=start) == decision
    shuffled = list(start.resume_requests)
    random.Random(seed).shuffle(shuffled)
    assert decide(situation=replace(start, resume_requests=tuple(shuffled))) == decision
    # Nothing happens while an operation is in flight.
    assert decide(situation=replace(start, operation_in_flight=True)) == nothing(
        reason=Reason.OPERATION_IN_FLIGHT
    )
    # Reasons: audited exactly when something is done, and never "manual".
    assert (decision.reason in AUDITED_REASONS) == (decision.action is not Action.NOTHING)
    assert decision.reason is not Reason.MANUAL
    assert (decision.sku is not None) == (decision.action is Action.CHANGE_SKU)
    assert (decision.requested_by is not None) == (decision.reason is Reason.ON_DEMAND)
    if decision.reason is Reason.ON_DEMAND:
        assert not start.nobody_may_turn_on
        assert any(
            r.user_id == decision.requested_by and r.permission.allowed
            for r in start.resume_requests
        )
    if decision.action is Action.SUSPEND:
        assert start.schedule.mode is not ScheduleMode.SCHEDULED_ON
        assert start.state is CapacityState.RUNNING
    if decision.action is Action.RESUME:
        assert start.state is CapacityState.PAUSED
    # Carried out, the same action is never asked for again; a start is never followed by a
    # pause, and a pause only by a start someone asks for; and the world settles quickly.
    current, previous = start, decision
    for _ in range(4):
        if previous.action is Action.NOTHING:
            break
        current = carry_out(previous, current)
        following = decide(situation=current)
        assert following != previous
        if previous.action is Action.RESUME:
            assert following.action is not Action.SUSPEND
        if previous.action is Action.SUSPEND and following.action is Action.RESUME:
            assert following.reason is Reason.ON_DEMAND
        previous = following
    assert previous.action is Action.NOTHING


# --- days, tick by tick ------------------------------------------------------------------------


class World:
    """A capacity, a ledger reduced to its last counted instant, and a controller that asks
    :func:`decide` once a minute and carries out what it says (an operation takes a minute)."""

    def __init__(
        self, *, schedule: WeeklySchedule, zone: ZoneInfo, idle_minutes: int | None, start: datetime
    ) -> None:
        self.schedule, self.zone, self.idle_minutes = schedule, zone, idle_minutes
        self.now = start
        self.state = CapacityState.PAUSED
        self.last_started_at: datetime | None = None
        self.last_activity: datetime | None = None
        self.requests: list[ResumeRequest] = []
        self.in_flight: tuple[datetime, CapacityState] | None = None
        self.log: list[tuple[str, Action, Reason, int | None]] = []

    def local(self) -> str:
        return self.now.astimezone(self.zone).strftime("%a %H:%M")

    def tick(self) -> None:
        if self.in_flight is not None and self.now >= self.in_flight[0]:
            self.state = self.in_flight[1]
            if self.state is CapacityState.RUNNING:
                self.last_started_at = self.now
            self.in_flight = None
        decision = decide(
            situation=Situation(
                now=self.now,
                state=self.state,
                schedule=evaluate_schedule(schedule=self.schedule, zone=self.zone, at=self.now),
                idle_minutes=self.idle_minutes,
                last_counted_activity=self.last_activity,
                last_started_at=self.last_started_at,
                resume_requests=tuple(self.requests),
                operation_in_flight=self.in_flight is not None,
            )
        )
        if decision.action is not Action.NOTHING:
            self.log.append((self.local(), decision.action, decision.reason, decision.requested_by))
            target = (
                CapacityState.RUNNING if decision.action is Action.RESUME else CapacityState.PAUSED
            )
            self.in_flight = (self.now + minutes(1), target)
            self.state = CapacityState.TRANSITIONING
        self.now += minutes(1)

    def use(self, user_id: int) -> None:
        """Someone opens or touches a report: activity, or a request if it is not running."""
        if self.state is CapacityState.RUNNING:
            self.last_activity = self.now
        else:
            self.requests.append(
                ResumeRequest(user_id=user_id, requested_at=self.now, permission=ALLOWED)
            )

    def run_until(self, end: datetime, *, using: dict[datetime, int] | None = None) -> None:
        using = using or {}
        while self.now < end:
            if self.now in using:
                self.use(using[self.now])
            self.tick()


def test_an_office_day_in_lisbon() -> None:
    office = WeeklySchedule(
        rows=tuple(
            row
            for day in range(5)
            for row in (
                ScheduleRow(weekday=day, at=time(8), action=ScheduleAction.TURN_ON),
                ScheduleRow(weekday=day, at=time(18), action=ScheduleAction.TURN_OFF),
            )
        )
    )
    day = date(2026, 7, 6)  # a Monday, WEST (UTC+1)

    def at(hh: int, mm: int) -> datetime:
        return datetime.combine(day, time(hh, mm), tzinfo=LISBON).astimezone(UTC)

    world = World(schedule=office, zone=LISBON, idle_minutes=30, start=at(7, 0))
    using = {at(9, 0): 1, at(17, 50): 1, at(18, 20): 1}  # hours of idleness at midday: stays on
    using[at(20, 0)] = 2  # evening: opens a report while it is off
    using[at(20, 5)] = 2  # the retry once it is up: counted activity
    world.run_until(at(23, 0), using=using)
    assert world.log == [
        ("Mon 08:00", Action.RESUME, Reason.SCHEDULE, None),
        # 18:00 turn-off waits for user 1 (active at 18:20), then 30 idle minutes.
        ("Mon 18:50", Action.SUSPEND, Reason.INACTIVITY_AFTER_SCHEDULE, None),
        ("Mon 20:00", Action.RESUME, Reason.ON_DEMAND, 2),
        # Started at 20:01, used at 20:05: idle pause 30 minutes later.
        ("Mon 20:35", Action.SUSPEND, Reason.INACTIVITY, None),
    ]


def test_a_schedule_across_the_lisbon_spring_forward() -> None:
    # Sunday 29 March 2026: 01:00 WET → 02:00 WEST. "On at 01:30" fires at the jump, once.
    schedule = WeeklySchedule(
        rows=(
            ScheduleRow(weekday=6, at=time(1, 30), action=ScheduleAction.TURN_ON),
            ScheduleRow(weekday=6, at=time(3, 0), action=ScheduleAction.TURN_OFF),
        )
    )
    world = World(
        schedule=schedule,
        zone=LISBON,
        idle_minutes=None,
        start=datetime(2026, 3, 28, 23, tzinfo=UTC),
    )
    world.run_until(datetime(2026, 3, 29, 6, tzinfo=UTC))
    assert world.log == [
        ("Sun 02:00", Action.RESUME, Reason.SCHEDULE, None),
        ("Sun 03:00", Action.SUSPEND, Reason.SCHEDULE, None),
    ]


def test_a_schedule_across_the_sao_paulo_fall_back() -> None:
    # Saturday 16 February 2019, 23:xx happened twice; "off at 23:30" fires the first time.
    sao_paulo = ZoneInfo("America/Sao_Paulo")
    schedule = WeeklySchedule(
        rows=(
            ScheduleRow(weekday=5, at=time(22, 0), action=ScheduleAction.TURN_ON),
            ScheduleRow(weekday=5, at=time(23, 30), action=ScheduleAction.TURN_OFF),
        )
    )
    world = World(
        schedule=schedule,
        zone=sao_paulo,
        idle_minutes=None,
        start=datetime(2019, 2, 16, 23, tzinfo=UTC),
    )
    world.run_until(datetime(2019, 2, 17, 5, tzinfo=UTC))
    assert [(when, action) for when, action, _, _ in world.log] == [
        ("Sat 22:00", Action.RESUME),
        ("Sat 23:30", Action.SUSPEND),  # -02; the second 23:30 (-03) does nothing
    ]
    assert world.now == datetime(2019, 2, 17, 5, tzinfo=UTC)


def test_a_change_of_time_zone() -> None:
    """Running since a UTC 08:00 turn-on; the organization moves to Tokyo, where it is already
    past 18:00: the turn-off there is now behind us, and nobody is active, so it pauses."""
    office = WeeklySchedule(
        rows=(
            ScheduleRow(weekday=0, at=time(8), action=ScheduleAction.TURN_ON),
            ScheduleRow(weekday=0, at=time(18), action=ScheduleAction.TURN_OFF),
        )
    )
    now = datetime(2026, 7, 6, 10, 0, tzinfo=UTC)  # Monday 10:00 UTC, 19:00 in Tokyo
    running = situation(now=now, last_started_at=datetime(2026, 7, 6, 8, 0, tzinfo=UTC))
    in_utc = replace(
        running, schedule=evaluate_schedule(schedule=office, zone=ZoneInfo("UTC"), at=now)
    )
    assert decide(situation=in_utc) == nothing(reason=Reason.SCHEDULED_ON)
    in_tokyo = replace(
        running, schedule=evaluate_schedule(schedule=office, zone=ZoneInfo("Asia/Tokyo"), at=now)
    )
    assert decide(situation=in_tokyo) == suspend(reason=Reason.SCHEDULE)


# --- purity ------------------------------------------------------------------------------------

PURE_MODULES = [
    "activity.py",
    "decisions.py",
    "idle.py",
    "permissions.py",
    "prices.py",
    "schedule.py",
]
FORBIDDEN_IMPORTS = (
    "time",
    "os",
    "socket",
    "random",
    "asyncio",
    "threading",
    "sqlalchemy",
    "httpx",
    "redis",
    "logging",
)
ALLOWED_PORTAL_IMPORTS = ("embedportal.capacity.", "embedportal.i18n")
CLOCK_CALLS = {"now", "utcnow", "today", "time", "monotonic", "perf_counter"}


@pytest.mark.parametrize("name", PURE_MODULES)
def test_the_policy_modules_do_no_io_and_read_no_clock(name: str) -> None:
    path = Path(embedportal.capacity.__file__).parent / name
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            modules = [node.module or ""]
        else:
            modules = []
        for module in modules:
            assert module.split(".")[0] not in FORBIDDEN_IMPORTS, f"{name} imports {module}"
            if module.startswith("embedportal"):
                assert module.startswith(ALLOWED_PORTAL_IMPORTS), f"{name} imports {module}"
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            assert node.func.attr not in CLOCK_CALLS, f"{name} calls .{node.func.attr}()"
