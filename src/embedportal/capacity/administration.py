"""What an administrator sets for each capacity, stored: the idle pause, the text of the
starting screen, an hourly price of their own, and the weekly schedule.

The rules are the pure policy's (``idle.parse_idle_minutes``, ``prices.parse_hourly_price``,
``schedule.parse_schedule_rows``); this module applies them to what a form sent, saves all or
nothing, and audits each change as old → new. Messages are English source strings, translated
by the page that shows them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from embedportal.access.audit import apply_changes_old_new
from embedportal.capacity.controller import weekly_schedule_of
from embedportal.capacity.idle import parse_idle_minutes
from embedportal.capacity.inventory import CapacityInputError, record_capacity_change
from embedportal.capacity.prices import (
    SKUS,
    Billing,
    Provider,
    Sku,
    is_known_sku,
    parse_hourly_price,
    sku_info,
)
from embedportal.capacity.reporting import (
    PAUSED,
    STARTED,
    CostReport,
    RecordedEvent,
    cost_report,
    report_start,
)
from embedportal.capacity.schedule import (
    WEEKDAY_NAMES,
    FieldError,
    WeeklySchedule,
    copy_day,
    parse_schedule_rows,
)
from embedportal.db.models import Capacity, CapacityEvent, CapacityScheduleEntry, User
from embedportal.i18n import N_

MAX_STARTING_MESSAGE = 500
FIELD_COPY_FROM = "copy_from"
FIELD_COPY_TO = "copy_to"


class ScheduleInputError(ValueError):
    """The schedule form was refused: ``errors`` says which field of which row, and why.
    Nothing was saved."""

    def __init__(self, errors: Sequence[FieldError]) -> None:
        super().__init__("; ".join(error.text() for error in errors))
        self.errors = tuple(errors)


# --- what the capacity is ------------------------------------------------------------------------


def provider_of(capacity: Capacity) -> Provider | None:
    """The capacity's SKU family: its configured provider, else what its SKU says."""
    if capacity.provider in tuple(Provider):
        return Provider(capacity.provider)
    if is_known_sku(name=capacity.sku):
        return sku_info(name=capacity.sku).provider
    return None


def sku_choices(capacity: Capacity) -> list[Sku]:
    """The SKUs the capacity can be changed to in Azure: its own family's, billed by the hour.
    (EM SKUs are Microsoft 365 subscriptions, not something Azure resizes to.)"""
    provider = provider_of(capacity)
    return [
        sku
        for sku in SKUS.values()
        if (provider is None or sku.provider is provider) and sku.billing is Billing.PAY_AS_YOU_GO
    ]


def price_override(capacity: Capacity) -> Decimal | None:
    """The administrator's own hourly price, exactly as typed (the column is a float)."""
    if capacity.hourly_price is None:
        return None
    return Decimal(str(capacity.hourly_price))


# --- idle pause, starting screen, hourly price ---------------------------------------------------


@dataclass(frozen=True)
class CapacitySettings:
    idle_pause_minutes: int | None
    starting_message: str
    hourly_price: Decimal | None


def validate_capacity_settings(
    *, idle_pause_minutes: str, starting_message: str, hourly_price: str
) -> tuple[CapacitySettings | None, dict[str, str]]:
    """(settings, {}) or (None, {field: message}). Pure."""
    errors: dict[str, str] = {}
    idle = parse_idle_minutes(text=idle_pause_minutes)
    if idle.error is not None:
        errors["idle_pause_minutes"] = idle.error
    message = starting_message.strip().replace("\r\n", "\n")
    if len(message) > MAX_STARTING_MESSAGE:
        errors["starting_message"] = N_(
            "The starting screen's text can have at most 500 characters."
        )
    price = parse_hourly_price(text=hourly_price)
    if price.error is not None:
        errors["hourly_price"] = price.error
    if errors:
        return None, errors
    return (
        CapacitySettings(
            idle_pause_minutes=idle.minutes, starting_message=message, hourly_price=price.price
        ),
        {},
    )


def update_capacity_settings(
    *,
    session: Session,
    capacity: Capacity,
    idle_pause_minutes: str,
    starting_message: str,
    hourly_price: str,
    actor: User | None,
) -> list[str]:
    """Save the capacity's idle pause, starting-screen text and hourly price; raises
    :class:`CapacityInputError` (nothing saved) when a value is refused. Returns the names of
    the fields that changed."""
    settings, errors = validate_capacity_settings(
        idle_pause_minutes=idle_pause_minutes,
        starting_message=starting_message,
        hourly_price=hourly_price,
    )
    if settings is None:
        raise CapacityInputError(errors)
    detail: dict[str, Any] = {}
    old_price = price_override(capacity)
    if old_price != settings.hourly_price:
        detail["hourly_price"] = {
            "old": None if old_price is None else str(old_price),
            "new": None if settings.hourly_price is None else str(settings.hourly_price),
        }
        capacity.hourly_price = (
            None if settings.hourly_price is None else float(settings.hourly_price)
        )
    wanted = {
        "idle_pause_minutes": settings.idle_pause_minutes,
        "starting_message": settings.starting_message,
    }
    detail.update(apply_changes_old_new(capacity, wanted))
    if detail:
        session.flush()
        record_capacity_change(
            session=session,
            actor=actor,
            capacity=capacity,
            action="capacity.settings_changed",
            detail=detail,
        )
    return list(detail)


# --- the weekly schedule -------------------------------------------------------------------------


def schedule_of(*, session: Session, capacity: Capacity) -> WeeklySchedule:
    entries = session.scalars(
        select(CapacityScheduleEntry).where(CapacityScheduleEntry.capacity_id == capacity.id)
    )
    return weekly_schedule_of(list(entries))


def _described(schedule: WeeklySchedule) -> list[str]:
    """The rows as the audit shows them: "monday 08:00 turn_on", "friday 12:00 change_sku F4"."""
    return [
        f"{WEEKDAY_NAMES[row.weekday]} {row.at:%H:%M} {row.action.value}"
        + (f" {row.sku}" if row.sku else "")
        for row in schedule.rows
    ]


def _store(
    session: Session,
    capacity: Capacity,
    schedule: WeeklySchedule,
    actor: User | None,
    detail: Mapping[str, Any] | None = None,
) -> WeeklySchedule:
    """Replace every row of the capacity's schedule; the caller's transaction makes it one
    change (the controller never sees half a schedule)."""
    before = schedule_of(session=session, capacity=capacity)
    if before == schedule:
        return schedule
    session.execute(
        delete(CapacityScheduleEntry).where(CapacityScheduleEntry.capacity_id == capacity.id)
    )
    # The old rows must be gone before the new ones meet the (day, time) unique constraint.
    session.flush()
    session.add_all(
        CapacityScheduleEntry(
            capacity_id=capacity.id,
            weekday=row.weekday,
            at_minute=row.at.hour * 60 + row.at.minute,
            action=row.action.value,
            sku=row.sku,
        )
        for row in schedule.rows
    )
    session.flush()
    record_capacity_change(
        session=session,
        actor=actor,
        capacity=capacity,
        action="capacity.schedule_changed",
        detail={"old": _described(before), "new": _described(schedule), **(detail or {})},
    )
    return schedule


def _parse(capacity: Capacity, rows: Sequence[Mapping[str, str]]) -> WeeklySchedule:
    result = parse_schedule_rows(rows=rows, provider=provider_of(capacity))
    if result.schedule is None:
        raise ScheduleInputError(result.errors)
    return result.schedule


def save_schedule(
    *,
    session: Session,
    capacity: Capacity,
    rows: Sequence[Mapping[str, str]],
    actor: User | None,
) -> WeeklySchedule:
    """Replace the capacity's weekly schedule with the form's rows (each a mapping of
    ``weekday``, ``time``, ``action``, ``sku``). Raises :class:`ScheduleInputError` and saves
    nothing when any row is refused."""
    return _store(session, capacity, _parse(capacity, rows), actor)


def _weekday(raw: str) -> int | None:
    text = raw.strip()
    if text.isascii() and text.isdigit() and 0 <= int(text) <= 6:
        return int(text)
    return None


def copy_schedule_day(
    *,
    session: Session,
    capacity: Capacity,
    rows: Sequence[Mapping[str, str]],
    copy_from: str,
    copy_to: Sequence[str],
    actor: User | None,
) -> WeeklySchedule:
    """ "Copy this day to …": the form's rows, with the chosen days given exactly the rows of
    ``copy_from`` (weekday numbers, 0 = Monday), saved. Refused rows or days raise
    :class:`ScheduleInputError` and save nothing."""
    errors: list[FieldError] = []
    source = _weekday(copy_from)
    if source is None:
        errors.append(
            FieldError(row=None, field=FIELD_COPY_FROM, message=N_("Choose the day to copy."))
        )
    targets = [_weekday(raw) for raw in copy_to]
    chosen = {target for target in targets if target is not None} - {source}
    if None in targets:
        errors.append(
            FieldError(
                row=None,
                field=FIELD_COPY_TO,
                message=N_("Unknown day of the week: choose days from Monday to Sunday."),
            )
        )
    elif not chosen:
        errors.append(
            FieldError(
                row=None,
                field=FIELD_COPY_TO,
                message=N_("Choose at least one other day to copy the rows to."),
            )
        )
    try:
        schedule = _parse(capacity, rows)
    except ScheduleInputError as refused:
        errors.extend(refused.errors)
    if errors or source is None:
        raise ScheduleInputError(errors)
    copied = copy_day(schedule=schedule, from_weekday=source, to_weekdays=chosen)
    return _store(
        session,
        capacity,
        copied,
        actor,
        detail={
            "copied": {
                "from": WEEKDAY_NAMES[source],
                "to": [WEEKDAY_NAMES[d] for d in sorted(chosen)],
            }
        },
    )


def schedule_errors(
    errors: Sequence[FieldError],
) -> tuple[dict[int, dict[str, FieldError]], dict[str, FieldError]]:
    """The errors by row (``{row: {field: error}}``) and those of the form as a whole."""
    by_row: dict[int, dict[str, FieldError]] = {}
    whole: dict[str, FieldError] = {}
    for error in errors:
        if error.row is None:
            whole.setdefault(error.field, error)
        else:
            by_row.setdefault(error.row, {}).setdefault(error.field, error)
    return by_row, whole


# --- a SKU change by hand ------------------------------------------------------------------------


def parse_sku_choice(*, capacity: Capacity, text: str) -> tuple[str | None, str | None]:
    """(SKU, None) for a SKU the capacity can change to, else (None, why not)."""
    wanted = text.strip().upper()
    if not wanted:
        return None, N_("Choose the SKU to change to.")
    if wanted not in {sku.name for sku in sku_choices(capacity)}:
        return None, N_("This capacity cannot change to that SKU: choose one from the list.")
    if wanted == capacity.sku.strip().upper():
        return None, N_("The capacity already has this SKU.")
    return wanted, None


# --- hours and cost ------------------------------------------------------------------------------


def capacity_cost(
    *, session: Session, capacity: Capacity, zone: ZoneInfo, now: datetime
) -> CostReport:
    """Hours and estimated cost per day of the last 30 days and this month, from the audit."""
    start = report_start(zone=zone, now=now)
    # The last start or pause before the period says whether it was running when it began.
    before = session.scalars(
        select(CapacityEvent)
        .where(
            CapacityEvent.capacity_id == capacity.id,
            CapacityEvent.at < start,
            CapacityEvent.action.in_((STARTED, PAUSED)),
        )
        .order_by(CapacityEvent.at.desc(), CapacityEvent.id.desc())
        .limit(1)
    ).all()
    during = session.scalars(
        select(CapacityEvent)
        .where(
            CapacityEvent.capacity_id == capacity.id,
            CapacityEvent.at >= start,
            CapacityEvent.at <= now,
        )
        .order_by(CapacityEvent.at, CapacityEvent.id)
    ).all()
    events = [
        RecordedEvent(
            at=event.at,
            action=event.action,
            sku_before=event.sku_before,
            sku_after=event.sku_after,
        )
        for event in (*before, *during)
    ]
    return cost_report(
        events=events,
        current_sku=capacity.sku,
        zone=zone,
        now=now,
        override=price_override(capacity),
    )
