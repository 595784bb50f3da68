"""The capacity controller's decision: given everything known right now, the one thing to do.

Pure: the controller gathers the inputs (ARM's state, the ledger, the settings, the schedule
evaluated at ``now``, pending on-demand requests) and carries out what :func:`decide` returns,
recording the audit entry with its reason. Asking again with the same inputs gives the same
answer; once the action has been carried out, the inputs change (an operation in flight, a new
state, a new start or SKU-change instant) and the answer becomes "nothing".

The rules, in the order they are applied:

1. **Busy or unsure**: an operation in flight, a capacity in transition (resuming, pausing,
   scaling) or in an unknown state → nothing. Acting on a guess could pause a capacity someone
   is starting.
2. **Paused**:
   a. inside a scheduled on-window → resume (``schedule``), unless an administrator paused it by
      hand after the window began: a deliberate pause holds until the next scheduled turn-on.
      A SKU change the schedule wants is made first, while it is still paused (free, and the
      capacity then starts at the right size), unless someone is waiting on demand;
   b. an on-demand request by a permitted user → resume (``on_demand``, by the earliest
      requester). The global block "Nobody may turn on a capacity" refuses every request (it
      does not stop the schedule: that is the administrator's own plan). A request counts for
      :data:`REQUEST_FRESH_FOR` and only if made after the capacity last started (the request
      that started it cannot start it again after an idle pause);
   c. a SKU change the schedule wants → change it (allowed, and free, while paused);
   d. otherwise nothing.
3. **Running**:
   a. inside a scheduled on-window → it stays on, whatever the idle clock says (a wanted SKU
      change is still made);
   b. after a scheduled turn-off, if it has been running since before that turn-off: while
      someone is active (counted activity within the idle window, or within
      ``idle.DEFAULT_ACTIVE_WINDOW`` when the idle pause is off) → wait; then pause, with reason
      ``schedule`` if nobody was active at the turn-off time, else
      ``inactivity_after_schedule`` ("paused due to inactivity after the scheduled time"). A
      capacity started after the turn-off (on demand, by hand) is not switched off by it: from
      then on only the idle rule applies, as it does outside any window;
   c. the idle pause, when set, and idle that long since the later of the last counted
      activity and the last start → pause (``inactivity``);
   d. a SKU change the schedule wants → change it;
   e. otherwise nothing.

A scheduled SKU change is wanted when the latest ``change_sku`` row's SKU differs from the
current one and the SKU has not been changed (by anyone) since that row fired: "the SKU stays
changed until another row or a manual change".

``manual`` is an audit reason too, but manual actions are the admin page's, never decided here.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta

from embedportal.capacity.idle import active_window, idle_pause_due, someone_active
from embedportal.capacity.permissions import Verdict
from embedportal.capacity.prices import is_known_sku, normalise_sku_name, sku_info
from embedportal.capacity.schedule import ScheduleEvaluation, ScheduleMode

REQUEST_FRESH_FOR = timedelta(minutes=5)  # a waiting viewer keeps asking; a gone one stops


class CapacityState(enum.StrEnum):
    RUNNING = "running"
    PAUSED = "paused"
    TRANSITIONING = "transitioning"  # resuming, pausing, scaling, provisioning, …
    UNKNOWN = "unknown"  # ARM could not be asked, or answered Failed


class Action(enum.StrEnum):
    RESUME = "resume"
    SUSPEND = "suspend"
    CHANGE_SKU = "change_sku"
    NOTHING = "nothing"


class Reason(enum.StrEnum):
    # Why an action is taken: these go to the capacity audit.
    MANUAL = "manual"  # the admin's buttons; never returned by decide()
    ON_DEMAND = "on_demand"
    SCHEDULE = "schedule"
    INACTIVITY = "inactivity"
    INACTIVITY_AFTER_SCHEDULE = "inactivity_after_schedule"
    # Why nothing is done.
    OPERATION_IN_FLIGHT = "operation_in_flight"
    TRANSITIONING = "transitioning"
    STATE_UNKNOWN = "state_unknown"
    SCHEDULED_ON = "scheduled_on"
    WAITING_FOR_ACTIVE_USERS = "waiting_for_active_users"
    IN_USE = "in_use"
    IDLE_PAUSE_OFF = "idle_pause_off"
    MANUALLY_PAUSED = "manually_paused"
    TURN_ON_BLOCKED = "turn_on_blocked"
    NOT_PERMITTED = "not_permitted"
    STAYS_PAUSED = "stays_paused"


AUDITED_REASONS = frozenset(
    {
        Reason.MANUAL,
        Reason.ON_DEMAND,
        Reason.SCHEDULE,
        Reason.INACTIVITY,
        Reason.INACTIVITY_AFTER_SCHEDULE,
    }
)


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: Reason
    sku: str | None = None  # for change_sku
    requested_by: int | None = None  # the user whose request resumes it on demand


def resume(*, reason: Reason, requested_by: int | None = None) -> Decision:
    return Decision(action=Action.RESUME, reason=reason, requested_by=requested_by)


def suspend(*, reason: Reason) -> Decision:
    return Decision(action=Action.SUSPEND, reason=reason)


def change_sku(*, sku: str, reason: Reason) -> Decision:
    return Decision(action=Action.CHANGE_SKU, reason=reason, sku=sku)


def nothing(*, reason: Reason) -> Decision:
    return Decision(action=Action.NOTHING, reason=reason)


@dataclass(frozen=True)
class ResumeRequest:
    """Someone opened a report of the paused capacity (the token API's 503 path)."""

    user_id: int
    requested_at: datetime
    permission: Verdict  # capacity_permissions(...).turn_on_on_demand for that user


@dataclass(frozen=True)
class Situation:
    """Everything :func:`decide` looks at. Instants are aware datetimes."""

    now: datetime
    state: CapacityState
    schedule: ScheduleEvaluation  # evaluate_schedule(..., at=now) in the organization's zone
    idle_minutes: int | None = None  # "Pause the capacity after"; None: the idle pause is off
    last_counted_activity: datetime | None = None
    # When the capacity last started running (even if it is paused now); None if never seen:
    # then it counts as running since long ago.
    last_started_at: datetime | None = None
    resume_requests: tuple[ResumeRequest, ...] = ()
    nobody_may_turn_on: bool = False  # Settings → "Nobody may turn on a capacity"
    operation_in_flight: bool = False
    manually_paused_at: datetime | None = None  # an administrator's last "Turn off"
    current_sku: str | None = None  # as ARM reports it; None: not known
    sku_changed_at: datetime | None = None  # the last SKU change anyone made


def _wanted_sku(situation: Situation) -> str | None:
    transition = situation.schedule.sku_transition
    if transition is None or transition.row.sku is None:
        return None
    target = transition.row.sku
    current = situation.current_sku
    if current is not None and normalise_sku_name(name=current) == target:
        return None
    if situation.sku_changed_at is not None and situation.sku_changed_at >= transition.at:
        return None  # changed since that row fired (the row itself, or an administrator)
    if (
        current is not None
        and is_known_sku(name=current)
        and is_known_sku(name=target)
        and sku_info(name=current).provider is not sku_info(name=target).provider
    ):
        return None  # Azure cannot move a capacity to another family: asking would fail
    return target


def _valid_request(situation: Situation) -> ResumeRequest | None:
    if situation.nobody_may_turn_on:
        return None
    valid = [
        request
        for request in situation.resume_requests
        if request.permission.allowed
        and situation.now - request.requested_at <= REQUEST_FRESH_FOR
        and (situation.last_started_at is None or request.requested_at > situation.last_started_at)
    ]
    if not valid:
        return None
    return min(valid, key=lambda request: (request.requested_at, request.user_id))


def _decide_paused(situation: Situation, wanted_sku: str | None) -> Decision:
    schedule = situation.schedule
    request = _valid_request(situation)
    if schedule.mode is ScheduleMode.SCHEDULED_ON and schedule.power_transition is not None:
        window_start = schedule.power_transition.at
        paused_by_hand = (
            situation.manually_paused_at is not None
            and situation.manually_paused_at >= window_start
        )
        if not paused_by_hand:
            if wanted_sku is not None and request is None:
                return change_sku(sku=wanted_sku, reason=Reason.SCHEDULE)
            return resume(reason=Reason.SCHEDULE)
        if request is None and wanted_sku is None:
            return nothing(reason=Reason.MANUALLY_PAUSED)
    if request is not None:
        return resume(reason=Reason.ON_DEMAND, requested_by=request.user_id)
    if wanted_sku is not None:
        return change_sku(sku=wanted_sku, reason=Reason.SCHEDULE)
    fresh = [
        r
        for r in situation.resume_requests
        if situation.now - r.requested_at <= REQUEST_FRESH_FOR
        and (situation.last_started_at is None or r.requested_at > situation.last_started_at)
    ]
    if fresh and situation.nobody_may_turn_on:
        return nothing(reason=Reason.TURN_ON_BLOCKED)
    if fresh:
        return nothing(reason=Reason.NOT_PERMITTED)
    return nothing(reason=Reason.STAYS_PAUSED)


def _decide_running(situation: Situation, wanted_sku: str | None) -> Decision:
    schedule = situation.schedule
    if schedule.mode is ScheduleMode.SCHEDULED_ON:
        if wanted_sku is not None:
            return change_sku(sku=wanted_sku, reason=Reason.SCHEDULE)
        return nothing(reason=Reason.SCHEDULED_ON)

    turn_off = schedule.power_transition
    off_pending = (
        schedule.mode is ScheduleMode.SCHEDULED_OFF
        and turn_off is not None
        and (situation.last_started_at is None or situation.last_started_at < turn_off.at)
    )
    if off_pending and turn_off is not None:
        if someone_active(
            now=situation.now,
            last_counted_activity=situation.last_counted_activity,
            idle_minutes=situation.idle_minutes,
        ):
            if wanted_sku is not None:
                return change_sku(sku=wanted_sku, reason=Reason.SCHEDULE)
            return nothing(reason=Reason.WAITING_FOR_ACTIVE_USERS)
        last = situation.last_counted_activity
        window = active_window(idle_minutes=situation.idle_minutes)
        active_at_turn_off = last is not None and last + window > turn_off.at
        return suspend(
            reason=Reason.INACTIVITY_AFTER_SCHEDULE if active_at_turn_off else Reason.SCHEDULE
        )

    if idle_pause_due(
        now=situation.now,
        idle_minutes=situation.idle_minutes,
        last_counted_activity=situation.last_counted_activity,
        last_started_at=situation.last_started_at,
    ):
        return suspend(reason=Reason.INACTIVITY)
    if wanted_sku is not None:
        return change_sku(sku=wanted_sku, reason=Reason.SCHEDULE)
    if situation.idle_minutes is None:
        return nothing(reason=Reason.IDLE_PAUSE_OFF)
    return nothing(reason=Reason.IN_USE)


def decide(*, situation: Situation) -> Decision:
    """The one action for the controller to take now (see the module's rules)."""
    if situation.now.tzinfo is None:
        raise ValueError("now must be an aware datetime")
    if situation.operation_in_flight:
        return nothing(reason=Reason.OPERATION_IN_FLIGHT)
    if situation.state is CapacityState.TRANSITIONING:
        return nothing(reason=Reason.TRANSITIONING)
    if situation.state is CapacityState.UNKNOWN:
        return nothing(reason=Reason.STATE_UNKNOWN)
    wanted_sku = _wanted_sku(situation)
    if situation.state is CapacityState.PAUSED:
        return _decide_paused(situation, wanted_sku)
    return _decide_running(situation, wanted_sku)
