"""How long a capacity ran and what that is estimated to have cost, from the capacity audit.

Pure, like the rest of the capacity policy: the events, the organization's time zone and "now"
are parameters, so every rule below has a test.

- **Running intervals** come from the audit's ``started`` and ``paused`` events, whatever their
  reason (by hand, on demand, by the schedule, after inactivity, or noticed as changed outside
  the portal). A second ``started`` while running, or a ``paused`` while paused, changes
  nothing. An interval still open runs to now.
- **Failed operations** start and stop nothing. The portal records an operation when it begins
  it (``capacity.control``) and, when Azure refuses it or it fails, a ``*_failed`` entry
  afterwards, so a failure undoes the entry it follows: a start that failed started nothing, a
  pause that failed left the capacity running, a SKU change that failed kept the old SKU.
- **What was running before the record begins** is not known, with one exception: a capacity
  whose first recorded power event is a pause was running before it, so it counts as running
  from the start of the period. The figures then err high, never low, as the month's estimate
  does. A capacity with no start or pause recorded counts no hours.
- **SKUs** come from ``sku_changed`` events: a running interval is split where the SKU changed,
  and each part is priced at its own SKU. Before the first recorded change the SKU is that
  change's "before"; with no change recorded (or none saying), the capacity's current SKU.
- **Days** are the organization's local days. A day begins the first instant its wall clock
  reads 00:00 or later, so a day with a daylight-saving jump has 23 or 25 hours, and a day whose
  midnight falls in the jump begins when the clocks jump.
- **Prices** are the estimates of :mod:`embedportal.capacity.prices`, or the administrator's own
  hourly figure for the capacity (``override``), which then applies to every SKU it had.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

from embedportal.capacity.prices import (
    CENT,
    MonthEstimate,
    cost_of_hours,
    is_known_sku,
    month_estimate,
    normalise_sku_name,
)
from embedportal.capacity.schedule import fire_instant

# The capacity audit's actions that change what runs (CapacityEvent.action); the *_failed ones
# are left out on purpose.
STARTED = "started"
PAUSED = "paused"
SKU_CHANGED = "sku_changed"
START_FAILED = "start_failed"
PAUSE_FAILED = "pause_failed"
SKU_CHANGE_FAILED = "sku_change_failed"

DEFAULT_DAYS = 30
_MICROSECONDS_PER_HOUR = Decimal(3_600_000_000)
_HOURS_SHOWN = Decimal("0.0001")


@dataclass(frozen=True)
class RecordedEvent:
    """What this module reads of a capacity audit entry (``CapacityEvent``)."""

    at: datetime  # aware
    action: str
    sku_before: str = ""
    sku_after: str = ""


@dataclass(frozen=True)
class RunningInterval:
    """The capacity ran from ``start`` to ``end`` (UTC) at ``sku`` ("" when not known)."""

    start: datetime
    end: datetime
    sku: str

    @property
    def hours(self) -> Decimal:
        return hours_of(self.end - self.start)


@dataclass(frozen=True)
class DayUsage:
    """One local day: running hours, and their estimated cost (None when a SKU is not in the
    price list and there is no hourly price of the administrator's own)."""

    day: date
    hours: Decimal
    cost: Decimal | None


@dataclass(frozen=True)
class CostReport:
    """The figures the capacity page shows."""

    days: tuple[DayUsage, ...]  # oldest first, the last one is today
    total_hours: Decimal
    total_cost: Decimal | None
    month: MonthEstimate | None  # None when the current SKU is not in the price list


def hours_of(duration: timedelta) -> Decimal:
    """A duration in hours, exactly (to the microsecond)."""
    return Decimal(duration // timedelta(microseconds=1)) / _MICROSECONDS_PER_HOUR


def _utc(at: datetime, *, what: str) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"{what} must be an aware datetime (got a naive one)")
    return at.astimezone(UTC)


def _in_order(events: Iterable[RecordedEvent]) -> list[RecordedEvent]:
    # Stable: events recorded in the same instant keep the order they were given in (by id).
    return sorted(events, key=lambda event: _utc(event.at, what="an event's time"))


def _sku_timeline(
    events: Sequence[RecordedEvent], current_sku: str
) -> tuple[str, list[tuple[datetime, str]]]:
    """The SKU before the first change that took effect, and each such change as (instant,
    new SKU)."""
    effective: list[RecordedEvent] = []
    for event in events:
        if event.action == SKU_CHANGED and event.sku_after.strip():
            effective.append(event)
        elif event.action == SKU_CHANGE_FAILED and effective:
            # The change this failure reports is the last one begun.
            if not event.sku_after.strip() or _same_sku(event.sku_after, effective[-1].sku_after):
                effective.pop()
    changes = [
        (_utc(event.at, what="an event's time"), normalise_sku_name(name=event.sku_after))
        for event in effective
    ]
    before_first = effective[0].sku_before if effective else ""
    return normalise_sku_name(name=before_first or current_sku), changes


def _same_sku(one: str, other: str) -> bool:
    return normalise_sku_name(name=one) == normalise_sku_name(name=other)


def _running_spans(
    events: Sequence[RecordedEvent], start: datetime, end: datetime
) -> list[tuple[datetime, datetime]]:
    """When the capacity ran, unclipped, from its starts, pauses and their failures."""
    spans: list[tuple[datetime, datetime]] = []
    running_from: datetime | None = None
    known = False  # whether any start or pause has been seen yet
    # What the last start or pause did, so the failure that follows it can undo it.
    last: str | None = None
    for event in events:
        at = _utc(event.at, what="an event's time")
        if event.action == STARTED:
            last = None
            if running_from is None:
                running_from, last = at, STARTED
            known = True
        elif event.action == PAUSED:
            last = None
            if running_from is None and not known:
                # Only a running capacity can be paused: it ran before the record begins.
                running_from = min(start, at)
            if running_from is not None:
                spans.append((running_from, at))
                running_from, last = None, PAUSED
            known = True
        elif event.action == START_FAILED and last == STARTED:
            running_from, last = None, None
        elif event.action == PAUSE_FAILED and last == PAUSED:
            running_from, _paused_at = spans.pop()
            last = None
    if running_from is not None:
        spans.append((running_from, end))
    return spans


def _split_by_sku(
    start: datetime, end: datetime, initial: str, changes: Sequence[tuple[datetime, str]]
) -> list[RunningInterval]:
    sku = initial
    for at, new_sku in changes:
        if at <= start:
            sku = new_sku
    parts: list[RunningInterval] = []
    cursor = start
    for at, new_sku in changes:
        if start < at < end:
            parts.append(RunningInterval(start=cursor, end=at, sku=sku))
            cursor, sku = at, new_sku
    parts.append(RunningInterval(start=cursor, end=end, sku=sku))
    return [part for part in parts if part.end > part.start]


def running_intervals(
    *, events: Iterable[RecordedEvent], start: datetime, end: datetime, current_sku: str = ""
) -> tuple[RunningInterval, ...]:
    """When the capacity ran between ``start`` and ``end`` (clipped to them), split where its
    SKU changed. Events before ``start`` say whether it was running at ``start``; pass every
    event from the last start or pause before ``start`` on."""
    start_utc, end_utc = _utc(start, what="start"), _utc(end, what="end")
    if end_utc <= start_utc:
        return ()
    ordered = _in_order(events)
    initial_sku, changes = _sku_timeline(ordered, current_sku)
    spans = _running_spans(ordered, start_utc, end_utc)
    intervals: list[RunningInterval] = []
    for span_start, span_end in spans:
        clipped_start, clipped_end = max(span_start, start_utc), min(span_end, end_utc)
        if clipped_end > clipped_start:
            intervals.extend(_split_by_sku(clipped_start, clipped_end, initial_sku, changes))
    return tuple(intervals)


def day_start(*, day: date, zone: ZoneInfo) -> datetime:
    """The instant (UTC) a local day begins: its midnight, or the end of a jump over it."""
    return fire_instant(wall_time=datetime.combine(day, time()), zone=zone)


def _cost(parts: Iterable[tuple[str, Decimal]], override: Decimal | None) -> Decimal | None:
    total = Decimal(0)
    for sku, hours in parts:
        if override is None and not is_known_sku(name=sku):
            return None
        total += cost_of_hours(sku=sku, hours=hours, override=override)
    return total


def _usage_between(
    intervals: Sequence[RunningInterval], start: datetime, end: datetime
) -> dict[str, Decimal]:
    """Running hours per SKU between two instants."""
    by_sku: dict[str, Decimal] = {}
    for interval in intervals:
        overlap_start, overlap_end = max(interval.start, start), min(interval.end, end)
        if overlap_end > overlap_start:
            by_sku[interval.sku] = by_sku.get(interval.sku, Decimal(0)) + hours_of(
                overlap_end - overlap_start
            )
    return by_sku


def daily_usage(
    *,
    intervals: Sequence[RunningInterval],
    zone: ZoneInfo,
    first_day: date,
    last_day: date,
    override: Decimal | None = None,
) -> tuple[DayUsage, ...]:
    """Running hours and estimated cost of each local day from ``first_day`` to ``last_day``
    (both included)."""
    days: list[DayUsage] = []
    day = first_day
    while day <= last_day:
        by_sku = _usage_between(
            intervals,
            day_start(day=day, zone=zone),
            day_start(day=day + timedelta(days=1), zone=zone),
        )
        hours = sum(by_sku.values(), Decimal(0))
        days.append(
            DayUsage(
                day=day,
                hours=hours.quantize(_HOURS_SHOWN, ROUND_HALF_UP),
                cost=_cost(by_sku.items(), override),
            )
        )
        day += timedelta(days=1)
    return tuple(days)


def _month_start(now: datetime) -> datetime:
    return _utc(now, what="now").replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def report_start(*, zone: ZoneInfo, now: datetime, days: int = DEFAULT_DAYS) -> datetime:
    """The earliest instant :func:`cost_report` looks at: the first of the ``days`` local days,
    or the start of the UTC month, whichever is earlier."""
    today = _utc(now, what="now").astimezone(zone).date()
    first_day = today - timedelta(days=days - 1)
    return min(day_start(day=first_day, zone=zone), _month_start(now))


def cost_report(
    *,
    events: Iterable[RecordedEvent],
    current_sku: str,
    zone: ZoneInfo,
    now: datetime,
    override: Decimal | None = None,
    days: int = DEFAULT_DAYS,
) -> CostReport:
    """Hours and estimated cost per local day for the last ``days`` days (today included), and
    this UTC month's estimate against always-on at the current SKU. Pass the events from the
    last start or pause before :func:`report_start` on."""
    now_utc = _utc(now, what="now")
    start = report_start(zone=zone, now=now_utc, days=days)
    intervals = running_intervals(events=events, start=start, end=now_utc, current_sku=current_sku)
    today = now_utc.astimezone(zone).date()
    per_day = daily_usage(
        intervals=intervals,
        zone=zone,
        first_day=today - timedelta(days=days - 1),
        last_day=today,
        override=override,
    )
    total_hours = sum((day.hours for day in per_day), Decimal(0))
    costs = [day.cost for day in per_day]
    total_cost = None if None in costs else sum((c for c in costs if c is not None), Decimal(0))
    sku = normalise_sku_name(name=current_sku)
    month: MonthEstimate | None = None
    if is_known_sku(name=sku):
        month_hours = sum(_usage_between(intervals, _month_start(now_utc), now_utc).values())
        month = month_estimate(
            sku=sku, now=now_utc, running_hours=Decimal(month_hours), override=override
        )
    return CostReport(
        days=per_day,
        total_hours=total_hours,
        total_cost=None if total_cost is None else total_cost.quantize(CENT),
        month=month,
    )
