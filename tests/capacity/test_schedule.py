"""The weekly schedule: the form, "copy to other days", and evaluation in a time zone,
checked against a brute-force model that steps the wall clock minute by minute."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from embedportal.capacity.prices import Provider
from embedportal.capacity.schedule import (
    MAX_ROWS,
    FieldError,
    ScheduleAction,
    ScheduleMode,
    ScheduleRow,
    Transition,
    WeeklySchedule,
    copy_day,
    evaluate_schedule,
    fire_instant,
    format_schedule_rows,
    parse_schedule_rows,
    parse_time_zone,
    transitions_between,
)

SAO_PAULO = ZoneInfo("America/Sao_Paulo")
LISBON = ZoneInfo("Europe/Lisbon")
MON, TUE, WED, THU, FRI, SAT, SUN = range(7)
ON, OFF, SKU = ScheduleAction.TURN_ON, ScheduleAction.TURN_OFF, ScheduleAction.CHANGE_SKU


def row(weekday: int, hh_mm: str, action: ScheduleAction, sku: str | None = None) -> ScheduleRow:
    hour, minute = (int(part) for part in hh_mm.split(":"))
    return ScheduleRow(weekday=weekday, at=time(hour, minute), action=action, sku=sku)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


# --- the model ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"weekday": 7, "at": time(8), "action": ON},
        {"weekday": -1, "at": time(8), "action": ON},
        {"weekday": 0, "at": time(8, 0, 30), "action": ON},
        {"weekday": 0, "at": time(8, tzinfo=UTC), "action": ON},
        {"weekday": 0, "at": time(8), "action": SKU},
        {"weekday": 0, "at": time(8), "action": ON, "sku": "F2"},
    ],
)
def test_rows_refuse_impossible_values(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        ScheduleRow(**kwargs)  # type: ignore[arg-type]


def test_schedules_sort_their_rows_and_refuse_two_at_one_time() -> None:
    schedule = WeeklySchedule(
        rows=(row(TUE, "08:00", ON), row(MON, "17:00", OFF), row(MON, "08:00", ON))
    )
    assert [(r.weekday, r.at) for r in schedule.rows] == [
        (MON, time(8)),
        (MON, time(17)),
        (TUE, time(8)),
    ]
    assert schedule.has_power_rows
    assert not WeeklySchedule(rows=(row(MON, "08:00", SKU, "F4"),)).has_power_rows
    with pytest.raises(ValueError):
        WeeklySchedule(rows=(row(MON, "08:00", ON), row(MON, "08:00", OFF)))


# --- the form ----------------------------------------------------------------------------------


def form(
    weekday: str = "0", at: str = "08:00", action: str = "turn_on", sku: str = ""
) -> dict[str, str]:
    return {"weekday": weekday, "time": at, "action": action, "sku": sku}


def test_parse_a_good_schedule() -> None:
    result = parse_schedule_rows(
        rows=[
            form("1", "8:00", "turn_on"),
            form("monday", "17:30", "TURN_OFF", "F4"),  # a SKU with turn_off is ignored
            form("", "", "", ""),  # the spare row
            form("Sun", " 07:55 ", "change_sku", " f4 "),
            form("", "", "", "F2"),  # a spare row with the SKU list left filled in
        ]
    )
    assert result.errors == ()
    assert result.schedule == WeeklySchedule(
        rows=(row(TUE, "08:00", ON), row(MON, "17:30", OFF), row(SUN, "07:55", SKU, "F4"))
    )


def test_an_empty_form_is_an_empty_schedule() -> None:
    assert parse_schedule_rows(rows=[]).schedule == WeeklySchedule()
    assert parse_schedule_rows(rows=[form("", "", "")]).schedule == WeeklySchedule()


BAD_ROWS: list[tuple[str, dict[str, str], str, str]] = [
    ("no weekday", form(weekday=""), "weekday", "Choose a day of the week."),
    ("weekday 7", form(weekday="7"), "weekday", "Unknown day of the week"),
    ("weekday -1", form(weekday="-1"), "weekday", "Unknown day of the week"),
    ("weekday name", form(weekday="Funday"), "weekday", "Unknown day of the week"),
    ("weekday unicode digit", form(weekday="３"), "weekday", "Unknown day of the week"),
    ("no time", form(at=""), "time", "HH:MM"),
    ("time 24:00", form(at="24:00"), "time", "HH:MM"),
    ("time 12:60", form(at="12:60"), "time", "HH:MM"),
    ("time with seconds", form(at="08:00:00"), "time", "HH:MM"),
    ("time 8h", form(at="8h"), "time", "HH:MM"),
    ("time 8:5", form(at="8:5"), "time", "HH:MM"),
    ("time am/pm", form(at="8:00 PM"), "time", "HH:MM"),
    ("time unicode digits", form(at="０８:００"), "time", "HH:MM"),
    ("no action", form(action=""), "action", "Choose what to do"),
    ("unknown action", form(action="reboot"), "action", "Choose what to do"),
    ("change_sku without SKU", form(action="change_sku"), "sku", "Choose the SKU to change to."),
    ("unknown SKU", form(action="change_sku", sku="P1"), "sku", "Unknown SKU"),
    ("SKU too big", form(action="change_sku", sku="F128"), "sku", "Unknown SKU"),
]


@pytest.mark.parametrize(
    ("raw", "field", "message"), [case[1:] for case in BAD_ROWS], ids=[case[0] for case in BAD_ROWS]
)
def test_bad_rows_are_named_by_field_and_nothing_is_saved(
    raw: dict[str, str], field: str, message: str
) -> None:
    result = parse_schedule_rows(rows=[form("1", "09:00", "turn_off"), raw])
    assert result.schedule is None
    assert len(result.errors) == 1
    error = result.errors[0]
    assert (error.row, error.field) == (1, field)
    assert message in error.message
    assert result.errors_for(row=1) == {field: error.message}
    assert result.errors_for(row=0) == {}


def test_every_bad_field_of_a_row_is_reported() -> None:
    result = parse_schedule_rows(rows=[form("8", "25:00", "explode")])
    assert {(e.row, e.field) for e in result.errors} == {(0, "weekday"), (0, "time"), (0, "action")}


def test_duplicates_and_conflicts_point_at_the_earlier_row() -> None:
    result = parse_schedule_rows(
        rows=[
            form("0", "08:00", "turn_on"),
            form("0", "17:00", "turn_off"),
            form("monday", "8:00", "turn_on"),  # repeats row 1
            form("0", "17:00", "turn_on"),  # conflicts with row 2
            form("0", "17:00", "change_sku", "F2"),  # conflicts with row 2 too
            form("2", "12:00", "change_sku", "F2"),
            form("2", "12:00", "change_sku", "F4"),  # another SKU at the same time: a conflict
        ]
    )
    assert result.schedule is None
    texts = {(e.row, e.field): e.text() for e in result.errors}
    assert texts == {
        (2, "time"): "This row repeats row 1.",
        (3, "time"): "Row 2 already does something else on this day at this time: "
        "one action per day and time.",
        (4, "time"): "Row 2 already does something else on this day at this time: "
        "one action per day and time.",
        (6, "time"): "Row 6 already does something else on this day at this time: "
        "one action per day and time.",
    }


def test_messages_are_translated_before_their_placeholders_are_filled() -> None:
    error = FieldError(
        row=2, field="time", message="This row repeats row %(row)d.", params=(("row", 1),)
    )
    catalogue = {"This row repeats row %(row)d.": "Esta linha repete a linha %(row)d."}
    assert (
        error.text(lambda message: catalogue.get(message, message))
        == "Esta linha repete a linha 1."
    )
    plain = FieldError(row=0, field="time", message="100% wrong")
    assert plain.text() == "100% wrong"  # no placeholders: no formatting


def test_too_many_rows_is_one_message_for_the_schedule() -> None:
    rows = [form(str(i % 7), f"{i // 7 % 24:02d}:{i % 60:02d}") for i in range(MAX_ROWS + 1)]
    result = parse_schedule_rows(rows=rows)
    assert result.schedule is None
    assert [(e.row, e.field) for e in result.errors] == [(None, "rows")]
    assert result.errors[0].text() == f"A schedule can have at most {MAX_ROWS} rows."


def test_a_sku_of_another_family_is_refused_for_that_capacity() -> None:
    rows = [form(action="change_sku", sku="F4")]
    assert parse_schedule_rows(rows=rows).schedule is not None
    assert parse_schedule_rows(rows=rows, provider=Provider.FABRIC).schedule is not None
    refused = parse_schedule_rows(rows=rows, provider=Provider.POWER_BI_DEDICATED)
    assert refused.schedule is None
    assert refused.errors[0].field == "sku"
    assert refused.errors[0].text() == (
        "This capacity cannot change to a SKU of another family: choose an A or EM SKU."
    )


# Rows whose times cluster around the hours where DST changes happen in the zones below.
HOURS = st.one_of(st.sampled_from([0, 1, 2, 3, 23]), st.integers(0, 23))
MINUTES = st.one_of(st.sampled_from([0, 15, 30, 59]), st.integers(0, 59))
SKUS = st.sampled_from(["F2", "F4", "F64", "A1", "EM2"])


@st.composite
def rows_strategy(draw: st.DrawFn, max_size: int = 12) -> list[ScheduleRow]:
    slots = draw(
        st.lists(
            st.tuples(st.integers(0, 6), HOURS, MINUTES), min_size=0, max_size=max_size, unique=True
        )
    )
    rows = []
    for weekday, hour, minute in slots:
        action = draw(st.sampled_from(list(ScheduleAction)))
        sku = draw(SKUS) if action is ScheduleAction.CHANGE_SKU else None
        rows.append(ScheduleRow(weekday=weekday, at=time(hour, minute), action=action, sku=sku))
    return rows


@settings(derandomize=True, max_examples=150)
@given(rows=rows_strategy(max_size=25), seed=st.integers(0, 10_000))
def test_round_trip_through_the_form(rows: list[ScheduleRow], seed: int) -> None:
    schedule = WeeklySchedule(rows=tuple(rows))
    values = list(format_schedule_rows(schedule=schedule))
    # However the form orders the rows, and with spare rows in between, it reads back the same.
    noise = random.Random(seed)
    noise.shuffle(values)
    for _ in range(noise.randint(0, 3)):
        values.insert(noise.randint(0, len(values)), form("", "", "", noise.choice(["", "F2"])))
    result = parse_schedule_rows(rows=values)
    assert result.errors == ()
    assert result.schedule == schedule
    assert format_schedule_rows(schedule=schedule) == format_schedule_rows(schedule=result.schedule)


# --- copy to other days ------------------------------------------------------------------------


def test_copy_a_day_to_other_days_replaces_their_rows() -> None:
    schedule = WeeklySchedule(
        rows=(
            row(MON, "08:00", ON),
            row(MON, "18:00", OFF),
            row(TUE, "09:00", ON),
            row(SAT, "10:00", ON),
        )
    )
    copied = copy_day(schedule=schedule, from_weekday=MON, to_weekdays=[TUE, WED, THU, FRI, MON])
    assert copied.rows == tuple(
        [row(MON, "08:00", ON), row(MON, "18:00", OFF)]
        + [r for d in (TUE, WED, THU, FRI) for r in (row(d, "08:00", ON), row(d, "18:00", OFF))]
        + [row(SAT, "10:00", ON)]
    )


def test_copying_an_empty_day_clears_the_targets() -> None:
    schedule = WeeklySchedule(rows=(row(MON, "08:00", ON), row(TUE, "09:00", ON)))
    assert copy_day(schedule=schedule, from_weekday=SUN, to_weekdays=[TUE]).rows == (
        row(MON, "08:00", ON),
    )


def test_copy_refuses_impossible_weekdays() -> None:
    with pytest.raises(ValueError):
        copy_day(schedule=WeeklySchedule(), from_weekday=7, to_weekdays=[1])
    with pytest.raises(ValueError):
        copy_day(schedule=WeeklySchedule(), from_weekday=0, to_weekdays=[-1])


@settings(derandomize=True, max_examples=100)
@given(rows=rows_strategy(), source=st.integers(0, 6), targets=st.sets(st.integers(0, 6)))
def test_copy_properties(rows: list[ScheduleRow], source: int, targets: set[int]) -> None:
    schedule = WeeklySchedule(rows=tuple(rows))
    copied = copy_day(schedule=schedule, from_weekday=source, to_weekdays=targets)
    shape = [(r.at, r.action, r.sku) for r in schedule.rows_on(weekday=source)]
    for weekday in range(7):
        got = [(r.at, r.action, r.sku) for r in copied.rows_on(weekday=weekday)]
        if weekday in targets or weekday == source:
            assert got == shape
        else:
            assert copied.rows_on(weekday=weekday) == schedule.rows_on(weekday=weekday)


# --- time zones --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["Europe/Lisbon", "America/Sao_Paulo", "UTC", " Asia/Tokyo "])
def test_real_time_zones(name: str) -> None:
    result = parse_time_zone(name=name)
    assert result.error is None
    assert result.zone == ZoneInfo(name.strip())


@pytest.mark.parametrize(
    "name",
    [
        "",
        "  ",
        "Mars/Olympus_Mons",
        "europe/lisbon",
        "America",
        "../etc/passwd",
        "/etc/localtime",
        "localtime",
        "posixrules",
        "Factory",
        "zone.tab",
        "Europe/Lisbon\x00",
    ],
)
def test_time_zones_that_do_not_exist(name: str) -> None:
    result = parse_time_zone(name=name)
    assert result.zone is None
    assert result.error in {
        "Choose a time zone, e.g. Europe/Lisbon or UTC.",
        "Unknown time zone. Use a name like Europe/Lisbon or UTC.",
    }


# --- evaluation: explicit DST cases ------------------------------------------------------------


def fires(
    schedule: WeeklySchedule, zone: ZoneInfo, start: datetime, end: datetime
) -> list[tuple[datetime, ScheduleRow]]:
    return [
        (t.at, t.row)
        for t in transitions_between(schedule=schedule, zone=zone, start=start, end=end)
    ]


def test_sao_paulo_2018_spring_forward_gap_fires_at_the_jump() -> None:
    # 2018-11-04 (a Sunday): at 00:00 (-03) clocks jumped to 01:00 (-02); 00:xx did not exist.
    jump = utc(2018, 11, 4, 3, 0)
    schedule = WeeklySchedule(
        rows=(
            row(SUN, "00:00", SKU, "F4"),
            row(SUN, "00:30", ON),
            row(SUN, "01:00", OFF),
            row(SUN, "01:01", ON),
        )
    )
    assert fires(schedule, SAO_PAULO, utc(2018, 11, 3), utc(2018, 11, 5)) == [
        (jump, row(SUN, "00:00", SKU, "F4")),
        (jump, row(SUN, "00:30", ON)),
        (jump, row(SUN, "01:00", OFF)),  # 01:00 exists: it *is* the jump
        (utc(2018, 11, 4, 3, 1), row(SUN, "01:01", ON)),
    ]
    # At the jump, the last row in wall-clock order has the last word.
    at_jump = evaluate_schedule(schedule=schedule, zone=SAO_PAULO, at=jump)
    assert at_jump.mode is ScheduleMode.SCHEDULED_OFF
    assert at_jump.last_transition == Transition(
        at=jump, row=row(SUN, "01:00", OFF), local_date=date(2018, 11, 4)
    )
    assert at_jump.sku_transition is not None and at_jump.sku_transition.row.sku == "F4"
    before = evaluate_schedule(schedule=schedule, zone=SAO_PAULO, at=jump - timedelta(seconds=1))
    assert before.next_transition is not None
    assert before.next_transition.row == row(SUN, "00:00", SKU, "F4")
    assert fire_instant(wall_time=datetime(2018, 11, 4, 0, 30), zone=SAO_PAULO) == jump


def test_sao_paulo_2019_fall_back_fold_fires_once() -> None:
    # 2019-02-17 00:00 (-02) clocks went back to 2019-02-16 23:00 (-03): 23:xx of Saturday
    # happened twice. A Saturday 23:30 row fires at the first 23:30 only.
    schedule = WeeklySchedule(rows=(row(SAT, "23:30", OFF), row(SUN, "00:00", ON)))
    assert fires(schedule, SAO_PAULO, utc(2019, 2, 16), utc(2019, 2, 18)) == [
        (utc(2019, 2, 17, 1, 30), row(SAT, "23:30", OFF)),  # 23:30 -02
        (utc(2019, 2, 17, 3, 0), row(SUN, "00:00", ON)),  # midnight comes once, at -03
    ]
    second_pass = evaluate_schedule(
        schedule=schedule, zone=SAO_PAULO, at=utc(2019, 2, 17, 2, 45)
    )  # 23:45 -03
    assert second_pass.mode is ScheduleMode.SCHEDULED_OFF
    assert second_pass.last_transition is not None
    assert second_pass.last_transition.at == utc(2019, 2, 17, 1, 30)
    assert second_pass.next_transition is not None
    assert second_pass.next_transition.at == utc(2019, 2, 17, 3, 0)


def test_sao_paulo_has_no_dst_after_2019() -> None:
    schedule = WeeklySchedule(rows=(row(SUN, "00:30", ON),))
    # The first Sunday of November 2019 is an ordinary day: 00:30 exists (-03).
    assert fires(schedule, SAO_PAULO, utc(2019, 11, 2), utc(2019, 11, 5)) == [
        (utc(2019, 11, 3, 3, 30), row(SUN, "00:30", ON))
    ]


def test_lisbon_march_gap() -> None:
    # Last Sunday of March 2026 (the 29th): 01:00 WET → 02:00 WEST.
    schedule = WeeklySchedule(
        rows=(row(SUN, "00:59", ON), row(SUN, "01:30", OFF), row(SUN, "02:00", ON))
    )
    assert fires(schedule, LISBON, utc(2026, 3, 28), utc(2026, 3, 30)) == [
        (utc(2026, 3, 29, 0, 59), row(SUN, "00:59", ON)),
        (utc(2026, 3, 29, 1, 0), row(SUN, "01:30", OFF)),  # did not exist: fires at the jump
        (utc(2026, 3, 29, 1, 0), row(SUN, "02:00", ON)),  # 02:00 WEST is the jump itself
    ]


def test_lisbon_october_fold() -> None:
    # Last Sunday of October 2026 (the 25th): 02:00 WEST → 01:00 WET; 01:xx happens twice.
    schedule = WeeklySchedule(
        rows=(row(SUN, "01:00", OFF), row(SUN, "01:30", ON), row(SUN, "02:00", OFF))
    )
    assert fires(schedule, LISBON, utc(2026, 10, 24), utc(2026, 10, 26)) == [
        (utc(2026, 10, 25, 0, 0), row(SUN, "01:00", OFF)),  # 01:00 WEST
        (utc(2026, 10, 25, 0, 30), row(SUN, "01:30", ON)),  # 01:30 WEST, not again at WET
        (utc(2026, 10, 25, 2, 0), row(SUN, "02:00", OFF)),  # 02:00 WET
    ]
    # During the repeated hour the window opened by the first 01:30 is still open.
    repeat = evaluate_schedule(
        schedule=schedule, zone=LISBON, at=utc(2026, 10, 25, 1, 45)
    )  # 01:45 WET
    assert repeat.mode is ScheduleMode.SCHEDULED_ON
    assert repeat.next_transition is not None
    assert repeat.next_transition.at == utc(2026, 10, 25, 2, 0)


def test_a_change_of_time_zone_evaluates_the_same_rows_in_the_new_zone() -> None:
    office_hours = WeeklySchedule(
        rows=tuple(r for d in range(5) for r in (row(d, "08:00", ON), row(d, "18:00", OFF)))
    )
    at = utc(2026, 7, 6, 19, 0)  # a Monday: 20:00 in Lisbon (WEST), 16:00 in São Paulo
    lisbon = evaluate_schedule(schedule=office_hours, zone=LISBON, at=at)
    sao_paulo = evaluate_schedule(schedule=office_hours, zone=SAO_PAULO, at=at)
    assert lisbon.mode is ScheduleMode.SCHEDULED_OFF
    assert sao_paulo.mode is ScheduleMode.SCHEDULED_ON
    assert lisbon.next_transition is not None and sao_paulo.next_transition is not None
    assert lisbon.next_transition.at == utc(2026, 7, 7, 7, 0)  # Tuesday 08:00 WEST
    assert sao_paulo.next_transition.at == utc(2026, 7, 6, 21, 0)  # Monday 18:00 -03


def test_a_schedule_without_power_rows_has_no_opinion() -> None:
    for schedule in (WeeklySchedule(), WeeklySchedule(rows=(row(MON, "12:00", SKU, "F4"),))):
        evaluation = evaluate_schedule(schedule=schedule, zone=LISBON, at=utc(2026, 7, 6, 12))
        assert evaluation.mode is ScheduleMode.NO_OPINION
        assert evaluation.power_transition is None
    empty = evaluate_schedule(schedule=WeeklySchedule(), zone=LISBON, at=utc(2026, 7, 6, 12))
    assert (empty.last_transition, empty.next_transition, empty.sku_transition) == (
        None,
        None,
        None,
    )


def test_a_firing_at_exactly_now_has_happened() -> None:
    schedule = WeeklySchedule(rows=(row(MON, "08:00", ON), row(MON, "18:00", OFF)))
    eight = utc(2026, 1, 5, 8, 0)  # a Monday; Lisbon is on UTC in winter
    assert (
        evaluate_schedule(schedule=schedule, zone=LISBON, at=eight).mode
        is ScheduleMode.SCHEDULED_ON
    )
    just_before = evaluate_schedule(
        schedule=schedule, zone=LISBON, at=eight - timedelta(microseconds=1)
    )
    assert just_before.mode is ScheduleMode.SCHEDULED_OFF
    assert just_before.next_transition is not None and just_before.next_transition.at == eight


def test_naive_instants_are_refused() -> None:
    with pytest.raises(ValueError):
        evaluate_schedule(schedule=WeeklySchedule(), zone=LISBON, at=datetime(2026, 1, 1))
    with pytest.raises(ValueError):
        fire_instant(wall_time=datetime(2026, 1, 1, tzinfo=UTC), zone=LISBON)
    assert (
        transitions_between(
            schedule=WeeklySchedule(rows=(row(MON, "08:00", ON),)),
            zone=LISBON,
            start=utc(2026, 1, 2),
            end=utc(2026, 1, 1),
        )
        == ()
    )


# --- evaluation: against brute force -----------------------------------------------------------


@dataclass(frozen=True)
class Fire:
    at: datetime
    wall: datetime
    row: ScheduleRow


def brute_force(
    schedule: WeeklySchedule, zone: ZoneInfo, start: datetime, end: datetime
) -> list[Fire]:
    """Step UTC minute by minute and fire a row when the wall clock first reaches its time:
    the clock's high-water mark moves forward only, so a repeated hour (a fold) fires nothing
    twice, and a jump (a gap) fires every row it jumped over, in wall-clock order."""
    slots = {(r.weekday, r.at): r for r in schedule.rows}
    found: list[Fire] = []
    instant = start
    high_water = instant.astimezone(zone).replace(tzinfo=None)
    while instant < end:
        instant += timedelta(minutes=1)
        wall = instant.astimezone(zone).replace(tzinfo=None)
        if wall <= high_water:
            continue
        minute = high_water + timedelta(minutes=1)
        while minute <= wall:
            hit = slots.get((minute.weekday(), minute.time()))
            if hit is not None:
                found.append(Fire(at=instant, wall=minute, row=hit))
            minute += timedelta(minutes=1)
        high_water = wall
    return found


# Zones with gaps and folds: São Paulo (DST until 2019), Lisbon, Lord Howe (a 30-minute DST),
# Apia (skipped 2011-12-30 entirely), and UTC (none). Each with an instant near a transition.
AROUND = [
    ("America/Sao_Paulo", utc(2018, 11, 4, 3)),
    ("America/Sao_Paulo", utc(2019, 2, 17, 2)),
    ("America/Sao_Paulo", utc(2017, 10, 15, 3)),
    ("Europe/Lisbon", utc(2026, 3, 29, 1)),
    ("Europe/Lisbon", utc(2026, 10, 25, 1)),
    ("Europe/Lisbon", utc(2000, 10, 29, 1)),
    ("Australia/Lord_Howe", utc(2024, 10, 5, 15, 30)),
    ("Australia/Lord_Howe", utc(2024, 4, 6, 15)),
    ("Pacific/Apia", utc(2011, 12, 30, 10)),
    ("UTC", utc(2026, 1, 1)),
]


def offset_changes(zone: ZoneInfo, start: datetime, end: datetime) -> list[datetime]:
    """The instants (to the minute) where the zone's UTC offset changes, found by scanning."""
    found = []
    instant = start
    step = timedelta(minutes=15)
    while instant < end:
        if instant.astimezone(zone).utcoffset() != (instant + step).astimezone(zone).utcoffset():
            low, high = instant, instant + step
            while high - low > timedelta(minutes=1):
                middle = low + timedelta(minutes=(high - low) // timedelta(minutes=2))
                if middle.astimezone(zone).utcoffset() == low.astimezone(zone).utcoffset():
                    low = middle
                else:
                    high = middle
            found.append(high)
        instant += step
    return found


def hot_slots(zone: ZoneInfo, jumps: list[datetime]) -> list[tuple[int, time]]:
    """(weekday, time) slots within 90 minutes of the wall clock on either side of each jump:
    where gaps and folds are. Random rows drawn from these exercise them."""
    slots: set[tuple[int, time]] = set()
    for jump in jumps:
        for side in (jump - timedelta(minutes=1), jump):
            wall = side.astimezone(zone).replace(tzinfo=None)
            for minutes in range(-90, 91):
                moment = wall + timedelta(minutes=minutes)
                slots.add((moment.weekday(), moment.time()))
    return sorted(slots)


JUMPS = {
    (name, near): offset_changes(ZoneInfo(name), near - timedelta(days=2), near + timedelta(days=2))
    for name, near in AROUND
}


def test_the_scenarios_really_have_jumps() -> None:
    assert JUMPS[("America/Sao_Paulo", utc(2018, 11, 4, 3))] == [utc(2018, 11, 4, 3)]
    assert JUMPS[("Europe/Lisbon", utc(2026, 10, 25, 1))] == [utc(2026, 10, 25, 1)]
    assert JUMPS[("Pacific/Apia", utc(2011, 12, 30, 10))] == [utc(2011, 12, 30, 10)]
    assert all(JUMPS[key] for key in AROUND if key[0] != "UTC")


@dataclass(frozen=True)
class Scenario:
    zone: ZoneInfo
    base: datetime
    jumps: tuple[datetime, ...]
    rows: tuple[ScheduleRow, ...]


def _row_for(draw: st.DrawFn, weekday: int, at: time) -> ScheduleRow:
    action = draw(st.sampled_from(list(ScheduleAction)))
    sku = draw(SKUS) if action is ScheduleAction.CHANGE_SKU else None
    return ScheduleRow(weekday=weekday, at=at, action=action, sku=sku)


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    name, near = draw(st.sampled_from(AROUND))
    zone = ZoneInfo(name)
    jumps = JUMPS[(name, near)]
    hot = hot_slots(zone, jumps)
    chosen = draw(st.lists(st.sampled_from(hot), max_size=6, unique=True)) if hot else []
    chosen += draw(
        st.lists(st.tuples(st.integers(0, 6), HOURS, MINUTES), max_size=6, unique=True).map(
            lambda slots: [(weekday, time(hour, minute)) for weekday, hour, minute in slots]
        )
    )
    slots = list(dict.fromkeys(chosen))  # unique, in drawing order
    rows = tuple(_row_for(draw, weekday, at) for weekday, at in slots)
    if draw(st.integers(0, 4)):  # mostly within a day of the jump, sometimes anywhere
        base = near + timedelta(minutes=draw(st.integers(-1440, 1440)))
    else:
        base = utc(2010, 1, 1) + timedelta(minutes=draw(st.integers(0, 20 * 365 * 1440)))
        jumps = []
    return Scenario(zone=zone, base=base, jumps=tuple(jumps), rows=rows)


def _same(transition: Transition | None, fire: Fire | None) -> bool:
    if transition is None or fire is None:
        return transition is None and fire is None
    return (transition.at, transition.row, transition.wall_time) == (fire.at, fire.row, fire.wall)


@settings(derandomize=True, max_examples=30, deadline=None)
@given(
    scenario=scenarios(),
    offsets=st.lists(st.integers(-1440, 1440), min_size=8, max_size=8),
)
def test_evaluation_agrees_with_minute_stepping(scenario: Scenario, offsets: list[int]) -> None:
    schedule = WeeklySchedule(rows=scenario.rows)
    zone, base = scenario.zone, scenario.base
    model = brute_force(schedule, zone, base - timedelta(days=9), base + timedelta(days=9))
    probes = [base + timedelta(minutes=offset) for offset in [0, *offsets]]
    # Right at each jump, and at every firing in reach (and a minute either side).
    probes += [jump + timedelta(minutes=k) for jump in scenario.jumps for k in (-1, 0, 1)]
    probes += [
        fire.at + timedelta(minutes=k)
        for fire in model
        if abs(fire.at - base) <= timedelta(days=1)
        for k in (-1, 0)
    ]
    for at in probes:
        evaluation = evaluate_schedule(schedule=schedule, zone=zone, at=at)
        past = [f for f in model if f.at <= at]
        future = [f for f in model if f.at > at]
        power = [f for f in past if f.row.action is not SKU]
        skus = [f for f in past if f.row.action is SKU]
        assert _same(evaluation.last_transition, past[-1] if past else None)
        assert _same(evaluation.next_transition, future[0] if future else None)
        assert _same(evaluation.power_transition, power[-1] if power else None)
        assert _same(evaluation.sku_transition, skus[-1] if skus else None)
        if not power:
            assert evaluation.mode is ScheduleMode.NO_OPINION
        elif power[-1].row.action is ON:
            assert evaluation.mode is ScheduleMode.SCHEDULED_ON
        else:
            assert evaluation.mode is ScheduleMode.SCHEDULED_OFF
        if evaluation.next_transition is not None:
            assert evaluation.next_transition.at > at
        if evaluation.last_transition is not None:
            assert evaluation.last_transition.at <= at


@settings(derandomize=True, max_examples=100)
@given(scenario=scenarios(), cuts=st.lists(st.integers(1, 14 * 1440), max_size=6))
def test_no_firing_twice_however_the_range_is_cut(scenario: Scenario, cuts: list[int]) -> None:
    """Asking piecewise (as a controller does, tick after tick) gives each (row, local day)
    exactly once: folds and gaps never repeat or drop a firing at a boundary."""
    zone = scenario.zone
    start = scenario.base - timedelta(days=7)
    end = start + timedelta(days=14)
    schedule = WeeklySchedule(rows=scenario.rows)
    whole = transitions_between(schedule=schedule, zone=zone, start=start, end=end)
    edges = [start, *sorted({start + timedelta(minutes=c) for c in cuts}), end]
    pieces = [
        transition
        for low, high in zip(edges, edges[1:], strict=False)
        for transition in transitions_between(schedule=schedule, zone=zone, start=low, end=high)
    ]
    assert pieces == list(whole)
    keys = [(t.row, t.local_date) for t in whole]
    assert len(keys) == len(set(keys))
    assert [t.at for t in whole] == sorted(t.at for t in whole)
    for schedule_row in schedule.rows:  # two weeks: twice each, give or take one at each end
        assert 1 <= sum(1 for t in whole if t.row == schedule_row) <= 3


@settings(derandomize=True, max_examples=300)
@given(scenario=scenarios(), pick=st.integers(0, 10_000), day_shift=st.integers(-1, 1))
def test_fire_instant_is_the_first_time_the_wall_clock_reaches_it(
    scenario: Scenario, pick: int, day_shift: int
) -> None:
    zone = scenario.zone
    hot = hot_slots(zone, list(scenario.jumps))
    if hot:
        jump_day = scenario.jumps[pick % len(scenario.jumps)].astimezone(zone).date()
        weekday, at = hot[pick % len(hot)]
        day = jump_day + timedelta(days=(weekday - jump_day.weekday() + 3) % 7 - 3)
    else:
        day = scenario.base.astimezone(zone).date() + timedelta(days=day_shift)
        at = time(pick % 24, pick % 60)
    wall = datetime.combine(day, at)
    instant = fire_instant(wall_time=wall, zone=zone)
    assert instant.tzinfo is UTC
    reached = instant.astimezone(zone).replace(tzinfo=None)
    before = (instant - timedelta(seconds=1)).astimezone(zone).replace(tzinfo=None)
    assert reached >= wall
    assert before < wall
    if reached != wall:  # only in a gap, and then the instant is the jump
        assert instant in scenario.jumps
