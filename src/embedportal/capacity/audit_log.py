"""Reading the capacity audit back: filters, pages, a person's words for each entry, and CSV.

Each entry (``CapacityEvent``) is a start, pause or SKU change, or a failed one, with its reason
and the person who caused it. Filters work in the organization's time zone, whole days, both
ends included, like the general audit log's.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from embedportal.access.audit_log import day_filter, safe_cell
from embedportal.capacity.reporting import day_start
from embedportal.db.models import Capacity, CapacityEvent
from embedportal.i18n import N_, _

ACTIONS = ("started", "paused", "sku_changed", "start_failed", "pause_failed", "sku_change_failed")
REASONS = (
    "manual",
    "on_demand",
    "schedule",
    "inactivity",
    "inactivity_after_schedule",
    "outside_portal",
)
_ACTION_NAMES = {
    "started": N_("Started"),
    "paused": N_("Paused"),
    "sku_changed": N_("SKU changed"),
    "start_failed": N_("Start failed"),
    "pause_failed": N_("Pause failed"),
    "sku_change_failed": N_("SKU change failed"),
}
_REASON_NAMES = {
    "manual": N_("By hand"),
    "on_demand": N_("On demand"),
    "schedule": N_("By the schedule"),
    "inactivity": N_("Inactivity"),
    "inactivity_after_schedule": N_("Inactivity after the scheduled time"),
    "outside_portal": N_("Outside the portal"),
}
# A cell a spreadsheet would read as a formula (CSV injection); a tab or carriage return at the
# start is how such a cell hides its first character from the eye.


def action_name(action: str) -> str:
    return _(_ACTION_NAMES[action]) if action in _ACTION_NAMES else action


def reason_name(reason: str) -> str:
    return _(_REASON_NAMES[reason]) if reason in _REASON_NAMES else reason


@dataclass(frozen=True)
class EventFilters:
    """What the audit page filters by; empty means any."""

    capacity_id: str = ""
    user: str = ""  # part of the e-mail address
    action: str = ""
    reason: str = ""
    first_day: date | None = None
    last_day: date | None = None


def _day(value: str, field: str, errors: dict[str, str]) -> date | None:
    return day_filter(value, field, errors, message=N_("Give a date like 2025-01-31."))


def parse_event_filters(
    *, capacity: str, user: str, action: str, reason: str, since: str, until: str
) -> tuple[EventFilters, dict[str, str]]:
    """The filters from the page's fields, and {field: message} for those refused (a refused
    date filters nothing; an unknown action or reason is refused, not silently ignored)."""
    errors: dict[str, str] = {}
    first_day = _day(since, "since", errors)
    last_day = _day(until, "until", errors)
    if first_day and last_day and first_day > last_day:
        errors["until"] = N_("The last day comes before the first day.")
    if action and action not in ACTIONS:
        errors["action"] = N_("Choose an action from the list.")
    if reason and reason not in REASONS:
        errors["reason"] = N_("Choose a reason from the list.")
    filters = EventFilters(
        capacity_id=capacity.strip().lower(),
        user=user.strip(),
        action="" if "action" in errors else action,
        reason="" if "reason" in errors else reason,
        first_day=None if "since" in errors or "until" in errors else first_day,
        last_day=None if "since" in errors or "until" in errors else last_day,
    )
    return filters, errors


def _conditions(filters: EventFilters, zone: ZoneInfo) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if filters.capacity_id:
        conditions.append(CapacityEvent.capacity_id == filters.capacity_id)
    if filters.user:
        conditions.append(
            func.lower(CapacityEvent.user_email).contains(filters.user.lower(), autoescape=True)
        )
    if filters.action:
        conditions.append(CapacityEvent.action == filters.action)
    if filters.reason:
        conditions.append(CapacityEvent.reason == filters.reason)
    if filters.first_day is not None:
        conditions.append(CapacityEvent.at >= day_start(day=filters.first_day, zone=zone))
    if filters.last_day is not None:
        next_day = filters.last_day + timedelta(days=1)
        conditions.append(CapacityEvent.at < day_start(day=next_day, zone=zone))
    return conditions


@dataclass(frozen=True)
class EventPage:
    events: list[CapacityEvent]
    total: int


def search_capacity_events(
    *,
    session: Session,
    filters: EventFilters,
    zone: ZoneInfo,
    offset: int = 0,
    limit: int | None = 50,
) -> EventPage:
    """Entries newest first; ``limit`` None for every one (the CSV export)."""
    conditions = _conditions(filters, zone)
    total = session.scalar(select(func.count()).select_from(CapacityEvent).where(*conditions))
    query = (
        select(CapacityEvent)
        .where(*conditions)
        .order_by(CapacityEvent.at.desc(), CapacityEvent.id.desc())
        .offset(max(offset, 0))
    )
    if limit is not None:
        query = query.limit(limit)
    return EventPage(events=list(session.scalars(query)), total=total or 0)


def capacity_names(*, session: Session) -> dict[str, str]:
    """Capacity id → the name people know it by (Power BI's display name)."""
    return {
        capacity.id: capacity.display_name or capacity.id
        for capacity in session.scalars(select(Capacity).order_by(Capacity.display_name))
    }


# What a start or a pause says, by its reason: with the person who caused it, and without.
_STARTS_AND_PAUSES: dict[tuple[str, str], tuple[str | None, str]] = {
    ("started", "manual"): (N_("Started manually by %(email)s"), N_("Started manually")),
    ("started", "on_demand"): (N_("Started on demand by %(email)s"), N_("Started on demand")),
    ("started", "schedule"): (None, N_("Started by schedule")),
    ("started", "outside_portal"): (None, N_("Changed outside the portal: started")),
    ("paused", "manual"): (N_("Paused manually by %(email)s"), N_("Paused manually")),
    ("paused", "schedule"): (None, N_("Paused by schedule")),
    ("paused", "inactivity"): (None, N_("Paused due to inactivity")),
    ("paused", "inactivity_after_schedule"): (
        None,
        N_("Paused due to inactivity after the scheduled time"),
    ),
    ("paused", "outside_portal"): (None, N_("Changed outside the portal: paused")),
}


def describe_event(event: CapacityEvent) -> str:
    """What happened, in a person's words: "Started manually by ana@example.com", "Paused due
    to inactivity", "SKU changed A1 → A2", "Start failed: <Azure's reason>"."""
    who = event.user_email
    action, reason = event.action, event.reason
    words = _STARTS_AND_PAUSES.get((action, reason))
    if words is not None:
        by_whom, plain = words
        return _(by_whom, email=who) if by_whom and who else _(plain)
    if action == "sku_changed":
        return _(
            "SKU changed %(before)s → %(after)s",
            before=event.sku_before or "?",
            after=event.sku_after,
        )
    if action == "start_failed":
        return _("Start failed: %(reason)s", reason=event.error or _("no reason given"))
    if action == "pause_failed":
        return _("Pause failed: %(reason)s", reason=event.error or _("no reason given"))
    if action == "sku_change_failed":
        return _(
            "SKU change to %(sku)s failed: %(reason)s",
            sku=event.sku_after or "?",
            reason=event.error or _("no reason given"),
        )
    return f"{action_name(action)} ({reason_name(reason)})"


def is_failure(event: CapacityEvent) -> bool:
    return event.action.endswith("_failed")


CSV_HEADER = (
    "time",
    "time_zone",
    "capacity_id",
    "capacity",
    "action",
    "reason",
    "user_email",
    "sku_before",
    "sku_after",
    "error",
    "description",
)


def events_csv(*, events: Iterable[CapacityEvent], names: dict[str, str], zone: ZoneInfo) -> str:
    """The entries as CSV with a header row; times in ``zone`` (ISO 8601, with the offset)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_HEADER)
    for event in events:
        row: Sequence[str] = (
            event.at.astimezone(zone).isoformat(timespec="seconds"),
            zone.key,
            event.capacity_id,
            names.get(event.capacity_id, event.capacity_id),
            event.action,
            event.reason,
            event.user_email,
            event.sku_before,
            event.sku_after,
            event.error,
            describe_event(event),
        )
        writer.writerow([safe_cell(cell) for cell in row])
    return buffer.getvalue()
