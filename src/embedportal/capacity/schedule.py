"""The weekly schedule of a capacity: rows of (weekday, local time, action), in the
organization's time zone.

A row is an instruction to carry out when the organization's wall clock reaches its time on its
weekday: turn the capacity on, turn it off, or change its SKU. A ``turn_on`` starts a
*scheduled on-window* that lasts until the next ``turn_off``; after a ``turn_off`` the schedule
wants the capacity off, until the next ``turn_on``. A schedule with no on/off rows has no
opinion about power (it may still change SKUs). What the controller does with that (an
on-window keeps the capacity on; a turn-off waits for active users) is decisions.py's business.

Wall clocks are not instants, and daylight saving time makes that matter twice a year:

- **Gaps** (spring forward): a time that does not exist that day (02:30 when clocks jump from
  02:00 to 03:00) fires at the first instant after it that does, the moment of the jump.
- **Folds** (fall back): a time that happens twice that day fires once, the first time.

Both follow from one rule, which the tests check minute by minute: *a row fires the first time
the wall clock reaches its time on its day.* The zone is a parameter, so a change of the
organization's time zone simply evaluates the same rows in the new zone.

Weekdays are Python's: 0 = Monday … 6 = Sunday. Times have minute precision.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from embedportal.capacity.prices import Provider, is_known_sku, normalise_sku_name, sku_info
from embedportal.i18n import N_

WEEKDAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
MAX_ROWS = 250  # 7 days × 35 changes a day is far beyond any real schedule: a form-abuse guard

FIELD_WEEKDAY = "weekday"
FIELD_TIME = "time"
FIELD_ACTION = "action"
FIELD_SKU = "sku"
FIELD_ROWS = "rows"  # the schedule as a whole


class ScheduleAction(enum.StrEnum):
    TURN_ON = "turn_on"
    TURN_OFF = "turn_off"
    CHANGE_SKU = "change_sku"


POWER_ACTIONS = frozenset({ScheduleAction.TURN_ON, ScheduleAction.TURN_OFF})
_ACTION_RANK = {ScheduleAction.CHANGE_SKU: 0, ScheduleAction.TURN_ON: 1, ScheduleAction.TURN_OFF: 2}


@dataclass(frozen=True)
class ScheduleRow:
    weekday: int  # 0 = Monday … 6 = Sunday
    at: time  # local wall-clock time, whole minutes, no tzinfo
    action: ScheduleAction
    sku: str | None = None  # only (and always) for change_sku, a catalogue name

    def __post_init__(self) -> None:
        if not 0 <= self.weekday <= 6:
            raise ValueError(f"weekday must be 0 (Monday) to 6 (Sunday), got {self.weekday}")
        if self.at.tzinfo is not None or self.at.second or self.at.microsecond:
            raise ValueError(f"a schedule time is a naive whole minute, got {self.at!r}")
        if (self.action is ScheduleAction.CHANGE_SKU) != (self.sku is not None):
            raise ValueError("a SKU goes with change_sku, and only with it")

    @property
    def sort_key(self) -> tuple[int, time, int, str]:
        return (self.weekday, self.at, _ACTION_RANK[self.action], self.sku or "")


@dataclass(frozen=True)
class WeeklySchedule:
    """Rows in weekday and time order; at most one row per weekday and time (the form
    reports duplicates and conflicts; constructing one with them is a programming error)."""

    rows: tuple[ScheduleRow, ...] = ()

    def __post_init__(self) -> None:
        ordered = tuple(sorted(self.rows, key=lambda row: row.sort_key))
        seen: set[tuple[int, time]] = set()
        for row in ordered:
            if (row.weekday, row.at) in seen:
                raise ValueError(f"two rows on weekday {row.weekday} at {row.at:%H:%M}")
            seen.add((row.weekday, row.at))
        object.__setattr__(self, "rows", ordered)

    @property
    def has_power_rows(self) -> bool:
        return any(row.action in POWER_ACTIONS for row in self.rows)

    def rows_on(self, *, weekday: int) -> tuple[ScheduleRow, ...]:
        return tuple(row for row in self.rows if row.weekday == weekday)


def copy_day(
    *, schedule: WeeklySchedule, from_weekday: int, to_weekdays: Iterable[int]
) -> WeeklySchedule:
    """The "copy to other days" helper: each target day gets exactly the source day's rows
    (its own rows are replaced, so the copy can never conflict with what was there)."""
    targets = set(to_weekdays) - {from_weekday}
    for weekday in (from_weekday, *targets):
        if not 0 <= weekday <= 6:
            raise ValueError(f"weekday must be 0 (Monday) to 6 (Sunday), got {weekday}")
    source = schedule.rows_on(weekday=from_weekday)
    kept = [row for row in schedule.rows if row.weekday not in targets]
    copies = [
        ScheduleRow(weekday=weekday, at=row.at, action=row.action, sku=row.sku)
        for weekday in sorted(targets)
        for row in source
    ]
    return WeeklySchedule(rows=tuple(kept + copies))


# --- the form ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldError:
    """A message for one field of one row (``row`` is its position in the submitted rows,
    from 0; None for the schedule as a whole). ``message`` is an English source string with
    ``%(name)s`` placeholders filled from ``params`` after translation."""

    row: int | None
    field: str
    message: str
    params: tuple[tuple[str, int | str], ...] = ()

    def text(self, translate: Callable[[str], str] = str) -> str:
        """The message for a reader: ``translate`` is a gettext function (English without)."""
        message = translate(self.message)
        return message % dict(self.params) if self.params else message


@dataclass(frozen=True)
class ScheduleFormResult:
    """Either a schedule (``errors`` empty) or the errors (``schedule`` None), never half."""

    schedule: WeeklySchedule | None
    errors: tuple[FieldError, ...] = field(default=())

    def errors_for(self, *, row: int | None) -> dict[str, str]:
        """{field: message} for one row, as the form shows them next to the fields."""
        return {error.field: error.message for error in self.errors if error.row == row}


_FAMILY = {Provider.POWER_BI_DEDICATED: "A or EM", Provider.FABRIC: "F"}
_TIME = re.compile(r"^(\d{1,2}):(\d{2})$")


def _parse_weekday(raw: str) -> int | None:
    text = raw.strip().lower()
    if text.isascii() and text.isdigit():
        number = int(text)
        return number if 0 <= number <= 6 else None
    for number, name in enumerate(WEEKDAY_NAMES):
        if text in (name, name[:3]):
            return number
    return None


def _parse_time(raw: str) -> time | None:
    match = _TIME.match(raw.strip())
    if match is None or not raw.strip().isascii():
        return None
    hour, minute = int(match.group(1)), int(match.group(2))
    if hour > 23 or minute > 59:
        return None
    return time(hour, minute)


def _parse_action(raw: str) -> ScheduleAction | None:
    try:
        return ScheduleAction(raw.strip().lower())
    except ValueError:
        return None


def _is_blank(raw: Mapping[str, str]) -> bool:
    return not any(raw.get(name, "").strip() for name in (FIELD_WEEKDAY, FIELD_TIME, FIELD_ACTION))


def _parse_row(
    index: int, raw: Mapping[str, str], provider: Provider | None
) -> tuple[ScheduleRow | None, list[FieldError]]:
    errors: list[FieldError] = []

    def refuse(field: str, message: str, **params: int | str) -> None:
        """File a problem of this row under ``field`` and carry on with the next check."""
        errors.append(
            FieldError(row=index, field=field, message=message, params=tuple(params.items()))
        )

    weekday_text = raw.get(FIELD_WEEKDAY, "")
    weekday = _parse_weekday(weekday_text)
    if weekday is None:
        refuse(
            FIELD_WEEKDAY,
            N_("Choose a day of the week.")
            if not weekday_text.strip()
            else N_("Unknown day of the week: choose one from Monday to Sunday."),
        )

    at = _parse_time(raw.get(FIELD_TIME, ""))
    if at is None:
        refuse(FIELD_TIME, N_("Enter the time as HH:MM on a 24-hour clock, e.g. 08:00 or 17:30."))

    action = _parse_action(raw.get(FIELD_ACTION, ""))
    if action is None:
        refuse(FIELD_ACTION, N_("Choose what to do: turn on, turn off or change the SKU."))

    sku: str | None = None
    if action is ScheduleAction.CHANGE_SKU:
        sku_text = raw.get(FIELD_SKU, "")
        if not sku_text.strip():
            refuse(FIELD_SKU, N_("Choose the SKU to change to."))
        elif not is_known_sku(name=sku_text):
            refuse(FIELD_SKU, N_("Unknown SKU. Choose one of the list (A1–A6, EM1–EM3, F2–F64)."))
        elif provider is not None and sku_info(name=sku_text).provider is not provider:
            refuse(
                FIELD_SKU,
                N_(
                    "This capacity cannot change to a SKU of another family: choose an "
                    "%(family)s SKU."
                ),
                family=_FAMILY[provider],
            )
        else:
            sku = normalise_sku_name(name=sku_text)
    # A SKU sent with turn_on / turn_off is ignored: forms keep the SKU list filled in.

    if errors or weekday is None or at is None or action is None:
        return None, errors
    return ScheduleRow(weekday=weekday, at=at, action=action, sku=sku), []


def parse_schedule_rows(
    *, rows: Sequence[Mapping[str, str]], provider: Provider | None = None
) -> ScheduleFormResult:
    """Check the rows of the schedule form (each a mapping of ``weekday``, ``time``,
    ``action``, ``sku`` to the submitted text) and build the schedule, or say what is wrong
    next to each field. A row whose day, time and action are all empty is the form's spare
    row and is skipped. Two rows on the same day and time are an error: the later one
    "repeats" the earlier when they are equal, and "conflicts" with it otherwise. With
    ``provider`` (the capacity's), SKUs of another family are refused: Azure cannot turn a
    Power BI Embedded capacity into a Fabric one."""
    errors: list[FieldError] = []
    if len(rows) > MAX_ROWS:
        return ScheduleFormResult(
            schedule=None,
            errors=(
                FieldError(
                    row=None,
                    field=FIELD_ROWS,
                    message=N_("A schedule can have at most %(limit)d rows."),
                    params=(("limit", MAX_ROWS),),
                ),
            ),
        )
    parsed: list[ScheduleRow] = []
    first_at: dict[tuple[int, time], tuple[int, ScheduleRow]] = {}
    for index, raw in enumerate(rows):
        if _is_blank(raw):
            continue
        row, row_errors = _parse_row(index, raw, provider)
        errors.extend(row_errors)
        if row is None:
            continue
        slot = (row.weekday, row.at)
        earlier = first_at.get(slot)
        if earlier is None:
            first_at[slot] = (index, row)
            parsed.append(row)
            continue
        earlier_index, earlier_row = earlier
        message = (
            N_("This row repeats row %(row)d.")
            if earlier_row == row
            else N_(
                "Row %(row)d already does something else on this day at this time: "
                "one action per day and time."
            )
        )
        errors.append(
            FieldError(
                row=index, field=FIELD_TIME, message=message, params=(("row", earlier_index + 1),)
            )
        )
    if errors:
        return ScheduleFormResult(schedule=None, errors=tuple(errors))
    return ScheduleFormResult(schedule=WeeklySchedule(rows=tuple(parsed)))


def format_schedule_rows(*, schedule: WeeklySchedule) -> tuple[dict[str, str], ...]:
    """The schedule as form values (what :func:`parse_schedule_rows` reads back)."""
    return tuple(
        {
            FIELD_WEEKDAY: str(row.weekday),
            FIELD_TIME: row.at.strftime("%H:%M"),
            FIELD_ACTION: row.action.value,
            FIELD_SKU: row.sku or "",
        }
        for row in schedule.rows
    )


@dataclass(frozen=True)
class TimeZoneResult:
    zone: ZoneInfo | None
    error: str | None


# Names the time-zone database answers to that mean "this server's setting", not a place.
_NOT_PLACES = frozenset({"localtime", "posixrules", "Factory"})


def parse_time_zone(*, name: str) -> TimeZoneResult:
    """An IANA time-zone name (``Europe/Lisbon``, ``America/Sao_Paulo``, ``UTC``), exactly as
    the database spells it."""
    key = name.strip()
    if not key:
        return TimeZoneResult(zone=None, error=N_("Choose a time zone, e.g. Europe/Lisbon or UTC."))
    try:
        if key in _NOT_PLACES:
            raise ZoneInfoNotFoundError(key)
        zone = ZoneInfo(key)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return TimeZoneResult(
            zone=None, error=N_("Unknown time zone. Use a name like Europe/Lisbon or UTC.")
        )
    return TimeZoneResult(zone=zone, error=None)


# --- evaluation --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Transition:
    """One firing of one row: the instant (UTC), and the local day it belongs to."""

    at: datetime
    row: ScheduleRow
    local_date: date

    @property
    def wall_time(self) -> datetime:
        """The row's nominal local date and time (which may not exist, in a gap)."""
        return datetime.combine(self.local_date, self.row.at)

    @property
    def sort_key(self) -> tuple[datetime, datetime, int]:
        return (self.at, self.wall_time, _ACTION_RANK[self.row.action])


class ScheduleMode(enum.StrEnum):
    SCHEDULED_ON = "scheduled_on"  # inside an on-window: the capacity stays on
    SCHEDULED_OFF = "scheduled_off"  # after a turn_off, before the next turn_on
    NO_OPINION = "no_opinion"  # no turn_on / turn_off rows


@dataclass(frozen=True)
class ScheduleEvaluation:
    mode: ScheduleMode
    power_transition: Transition | None  # the turn_on / turn_off that set the mode
    sku_transition: Transition | None  # the latest change_sku, if there are any
    last_transition: Transition | None  # the latest firing of any row, at or before the instant
    next_transition: Transition | None  # the first firing after the instant


def _aware_utc(at: datetime, *, what: str) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"{what} must be an aware datetime (got a naive one)")
    return at.astimezone(UTC)


def fire_instant(*, wall_time: datetime, zone: ZoneInfo) -> datetime:
    """The instant (UTC) a row set for the local ``wall_time`` fires: the wall time itself
    when it exists, the first of its two instants in a fold, the end of the gap (the first
    instant whose wall clock is past it) when it does not exist."""
    if wall_time.tzinfo is not None:
        raise ValueError("wall_time is a naive local date and time")
    earlier_offset = wall_time.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if earlier_offset.astimezone(zone).replace(tzinfo=None) == wall_time:
        return earlier_offset  # exists (fold=0 is the first of two in a fold)
    later_offset = wall_time.replace(tzinfo=zone, fold=1).astimezone(UTC)
    # In a gap the two readings of the offset bracket the jump: find its instant, to the
    # second (zone transitions fall on whole seconds).
    low, high = sorted((earlier_offset, later_offset))
    while high - low > timedelta(seconds=1):
        middle = low + timedelta(seconds=((high - low).total_seconds() // 2))
        if middle.astimezone(zone).replace(tzinfo=None) >= wall_time:
            high = middle
        else:
            low = middle
    return high


def transitions_between(
    *, schedule: WeeklySchedule, zone: ZoneInfo, start: datetime, end: datetime
) -> tuple[Transition, ...]:
    """Every firing with ``start <= at < end``, in order (ties, which only a gap can make,
    in wall-clock order: the later row has the last word)."""
    start_utc, end_utc = _aware_utc(start, what="start"), _aware_utc(end, what="end")
    if end_utc <= start_utc or not schedule.rows:
        return ()
    # A firing is within about a day of its local date (offsets, gaps), so two days of
    # margin on each side finds them all.
    first_day = start_utc.astimezone(zone).date() - timedelta(days=2)
    last_day = end_utc.astimezone(zone).date() + timedelta(days=2)
    by_weekday: dict[int, list[ScheduleRow]] = {}
    for row in schedule.rows:
        by_weekday.setdefault(row.weekday, []).append(row)
    found: list[Transition] = []
    day = first_day
    while day <= last_day:
        for row in by_weekday.get(day.weekday(), ()):
            instant = fire_instant(wall_time=datetime.combine(day, row.at), zone=zone)
            if start_utc <= instant < end_utc:
                found.append(Transition(at=instant, row=row, local_date=day))
        day += timedelta(days=1)
    return tuple(sorted(found, key=lambda transition: transition.sort_key))


_LOOK = timedelta(days=8)  # every row fires once a week: a week and a day sees each of them


def evaluate_schedule(
    *, schedule: WeeklySchedule, zone: ZoneInfo, at: datetime
) -> ScheduleEvaluation:
    """What the schedule says at the instant ``at`` (a firing at exactly ``at`` has happened)."""
    now = _aware_utc(at, what="at")
    past = transitions_between(
        schedule=schedule, zone=zone, start=now - _LOOK, end=now + timedelta(microseconds=1)
    )
    future = transitions_between(
        schedule=schedule, zone=zone, start=now + timedelta(microseconds=1), end=now + _LOOK
    )
    power = [t for t in past if t.row.action in POWER_ACTIONS]
    skus = [t for t in past if t.row.action is ScheduleAction.CHANGE_SKU]
    power_transition = power[-1] if power else None
    if power_transition is None:
        mode = ScheduleMode.NO_OPINION
    elif power_transition.row.action is ScheduleAction.TURN_ON:
        mode = ScheduleMode.SCHEDULED_ON
    else:
        mode = ScheduleMode.SCHEDULED_OFF
    return ScheduleEvaluation(
        mode=mode,
        power_transition=power_transition,
        sku_transition=skus[-1] if skus else None,
        last_transition=past[-1] if past else None,
        next_transition=future[0] if future else None,
    )
