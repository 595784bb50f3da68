"""Capacity hours and their estimated cost, from hand-made audit events: which events start and
stop the meter, local days (daylight saving included), SKU changes, prices and the month."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from embedportal.capacity.reporting import (
    RecordedEvent,
    RunningInterval,
    cost_report,
    daily_usage,
    day_start,
    hours_of,
    report_start,
    running_intervals,
)

LISBON = ZoneInfo("Europe/Lisbon")
SAO_PAULO = ZoneInfo("America/Sao_Paulo")


def at(day: int, hour: int = 0, minute: int = 0, *, month: int = 6, year: int = 2026) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def started(when: datetime) -> RecordedEvent:
    return RecordedEvent(at=when, action="started")


def paused(when: datetime) -> RecordedEvent:
    return RecordedEvent(at=when, action="paused")


def spans(intervals: tuple[RunningInterval, ...]) -> list[tuple[datetime, datetime]]:
    return [(interval.start, interval.end) for interval in intervals]


def test_starts_and_pauses_make_intervals_and_failures_change_nothing() -> None:
    events = [
        started(at(1, 8)),
        RecordedEvent(at=at(1, 9), action="pause_failed"),
        paused(at(1, 10)),
        RecordedEvent(at=at(1, 11), action="start_failed"),
        started(at(1, 12)),
        started(at(1, 13)),  # already running: the first start counts
        paused(at(1, 14)),
        paused(at(1, 15)),  # already paused: nothing
    ]
    intervals = running_intervals(events=events, start=at(1), end=at(2))
    assert spans(intervals) == [(at(1, 8), at(1, 10)), (at(1, 12), at(1, 14))]
    assert [interval.hours for interval in intervals] == [Decimal(2), Decimal(2)]


def test_a_failure_undoes_the_operation_it_follows() -> None:
    # The portal records an operation when it begins it, and its failure afterwards.
    events = [
        started(at(1, 8)),
        RecordedEvent(at=at(1, 8, 1), action="start_failed"),  # it never started
        started(at(1, 9)),
        paused(at(1, 10)),
        RecordedEvent(at=at(1, 10, 1), action="pause_failed"),  # it kept running
        paused(at(1, 12)),
    ]
    intervals = running_intervals(events=events, start=at(1), end=at(2))
    assert spans(intervals) == [(at(1, 9), at(1, 12))]
    resized = [
        started(at(1, 8)),
        RecordedEvent(at=at(1, 9), action="sku_changed", sku_before="A1", sku_after="A2"),
        RecordedEvent(at=at(1, 9, 1), action="sku_change_failed", sku_before="A1", sku_after="A2"),
        paused(at(1, 10)),
    ]
    intervals = running_intervals(events=resized, start=at(1), end=at(2), current_sku="A1")
    assert [(i.start, i.end, i.sku) for i in intervals] == [(at(1, 8), at(1, 10), "A1")]


def test_an_open_interval_runs_to_the_end_and_intervals_are_clipped() -> None:
    events = [started(at(1, 22)), paused(at(2, 2)), started(at(3, 20))]
    intervals = running_intervals(events=reversed(events), start=at(2), end=at(3, 21))
    assert spans(intervals) == [(at(2), at(2, 2)), (at(3, 20), at(3, 21))]


def test_nothing_recorded_counts_no_hours_but_a_first_pause_means_it_ran_before() -> None:
    assert running_intervals(events=[], start=at(1), end=at(2)) == ()
    # The record begins with a pause: it was running from the start of the period.
    intervals = running_intervals(events=[paused(at(1, 6))], start=at(1), end=at(2))
    assert spans(intervals) == [(at(1), at(1, 6))]
    # A start before the period says it was running at its start.
    intervals = running_intervals(
        events=[started(at(1, 6)), paused(at(2, 6))], start=at(2), end=at(3)
    )
    assert spans(intervals) == [(at(2), at(2, 6))]


def test_intervals_are_split_where_the_sku_changed() -> None:
    events = [
        started(at(1, 8)),
        RecordedEvent(at=at(1, 9), action="sku_changed", sku_before="A1", sku_after="a2"),
        # A failed change changes nothing.
        RecordedEvent(at=at(1, 9, 30), action="sku_change_failed", sku_before="A2", sku_after="A3"),
        paused(at(1, 10)),
        RecordedEvent(at=at(1, 11), action="sku_changed", sku_before="A2", sku_after="A1"),
        started(at(1, 12)),
        paused(at(1, 13)),
    ]
    intervals = running_intervals(events=events, start=at(1), end=at(2), current_sku="A1")
    assert [(i.start, i.end, i.sku) for i in intervals] == [
        (at(1, 8), at(1, 9), "A1"),
        (at(1, 9), at(1, 10), "A2"),
        (at(1, 12), at(1, 13), "A1"),
    ]
    # Without a recorded change, the capacity's current SKU.
    plain = running_intervals(events=events[:1], start=at(1), end=at(1, 9), current_sku=" f2 ")
    assert [interval.sku for interval in plain] == ["F2"]


def test_hours_are_split_at_local_midnight() -> None:
    # Lisbon is UTC+1 in June: 22:00 to 02:00 local is 21:00 to 01:00 UTC.
    events = [started(at(1, 21)), paused(at(2, 1))]
    intervals = running_intervals(events=events, start=at(1), end=at(3))
    days = daily_usage(
        intervals=intervals, zone=LISBON, first_day=date(2026, 6, 1), last_day=date(2026, 6, 3)
    )
    assert [(day.day.day, day.hours) for day in days] == [(1, 2), (2, 2), (3, 0)]
    # In UTC the same interval falls on other days.
    in_utc = daily_usage(
        intervals=intervals,
        zone=ZoneInfo("UTC"),
        first_day=date(2026, 6, 1),
        last_day=date(2026, 6, 2),
    )
    assert [day.hours for day in in_utc] == [3, 1]


@pytest.mark.parametrize(
    ("zone", "day", "hours"),
    [
        (LISBON, date(2026, 3, 29), 23),  # spring forward: 01:00 → 02:00
        (LISBON, date(2026, 10, 25), 25),  # fall back: 02:00 → 01:00
        (LISBON, date(2026, 6, 1), 24),
        # Midnight itself did not exist: the day began when the clocks jumped to 01:00.
        (SAO_PAULO, date(2018, 11, 3), 24),
        (SAO_PAULO, date(2018, 11, 4), 23),
        # 23:00 to midnight happened twice.
        (SAO_PAULO, date(2019, 2, 16), 25),
        (SAO_PAULO, date(2019, 2, 17), 24),
    ],
)
def test_a_day_always_on_has_as_many_hours_as_its_wall_clock(
    zone: ZoneInfo, day: date, hours: int
) -> None:
    start = day_start(day=day - timedelta(days=2), zone=zone)
    intervals = running_intervals(
        events=[started(start)], start=start, end=start + timedelta(days=5)
    )
    (usage,) = daily_usage(intervals=intervals, zone=zone, first_day=day, last_day=day)
    assert usage.hours == hours


def test_the_day_a_jump_swallowed_midnight_begins_at_the_jump() -> None:
    # São Paulo, 4 November 2018: clocks jumped from 00:00 (−03) to 01:00 (−02), at 03:00 UTC.
    assert day_start(day=date(2018, 11, 4), zone=SAO_PAULO) == datetime(2018, 11, 4, 3, tzinfo=UTC)
    assert hours_of(timedelta(minutes=90)) == Decimal("1.5")


def test_each_day_costs_its_hours_at_each_skus_price() -> None:
    events = [
        started(at(1, 8)),
        paused(at(1, 10)),
        started(at(2, 8)),
        RecordedEvent(at=at(2, 9), action="sku_changed", sku_before="A1", sku_after="A2"),
        paused(at(2, 10)),
    ]
    intervals = running_intervals(events=events, start=at(1), end=at(3), current_sku="A2")
    utc = ZoneInfo("UTC")
    first, second = daily_usage(
        intervals=intervals, zone=utc, first_day=date(2026, 6, 1), last_day=date(2026, 6, 2)
    )
    assert (first.hours, first.cost) == (Decimal(2), Decimal("2.02"))  # 2 × $1.0081
    assert (second.hours, second.cost) == (Decimal(2), Decimal("1.01") + Decimal("2.02"))
    # The administrator's own hourly price replaces every SKU's estimate.
    own = daily_usage(
        intervals=intervals,
        zone=utc,
        first_day=date(2026, 6, 2),
        last_day=date(2026, 6, 2),
        override=Decimal("1.5"),
    )
    assert own[0].cost == Decimal("3.00")


def test_a_sku_without_a_price_has_no_cost_unless_one_is_given() -> None:
    intervals = running_intervals(
        events=[started(at(1, 8)), paused(at(1, 9))], start=at(1), end=at(2), current_sku="P1"
    )
    utc = ZoneInfo("UTC")
    (unknown,) = daily_usage(
        intervals=intervals, zone=utc, first_day=date(2026, 6, 1), last_day=date(2026, 6, 1)
    )
    assert (unknown.hours, unknown.cost) == (Decimal(1), None)
    (priced,) = daily_usage(
        intervals=intervals,
        zone=utc,
        first_day=date(2026, 6, 1),
        last_day=date(2026, 6, 1),
        override=Decimal("2"),
    )
    assert priced.cost == Decimal("2.00")


def test_the_report_covers_thirty_local_days_and_the_month() -> None:
    now = at(11)  # 2026-06-11 00:00 UTC: ten days of June gone by
    events = [
        started(at(1, 10, month=5)),  # May: before the month, inside the thirty days
        paused(at(1, 12, month=5)),
        started(at(2)),
        paused(at(3)),  # a whole day in June
    ]
    report = cost_report(events=events, current_sku="A1", zone=ZoneInfo("UTC"), now=now)
    assert len(report.days) == 30
    assert report.days[-1].day == date(2026, 6, 11) and report.days[0].day == date(2026, 5, 13)
    # 1 May is outside the thirty days: only 2 June counts.
    assert report.total_hours == 24 and report.total_cost == Decimal("24.19")
    month = report.month
    assert month is not None
    assert month.running_hours == 24 and month.always_on_cost == Decimal("725.83")
    # 24 of 240 hours so far: a tenth of the month, projected over 720 hours.
    assert month.projected_cost == Decimal("72.58")
    assert month.projected_savings == Decimal("653.25")


def test_the_month_has_no_estimate_for_a_sku_without_a_price() -> None:
    report = cost_report(events=[], current_sku="P1", zone=LISBON, now=at(11))
    assert report.month is None and report.total_hours == 0 and report.total_cost == 0


def test_the_report_starts_at_the_earlier_of_thirty_days_and_the_month() -> None:
    # On 31 May the thirty days begin on 2 May, after the month's start.
    assert report_start(zone=ZoneInfo("UTC"), now=at(31, 12, month=5)) == at(1, month=5)
    # On 30 June they begin on 1 June; Lisbon's midnight is 23:00 UTC the day before.
    assert report_start(zone=LISBON, now=at(30, 12)) == datetime(2026, 5, 31, 23, tzinfo=UTC)


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        running_intervals(events=[], start=datetime(2026, 6, 1), end=at(2))
    with pytest.raises(ValueError, match="aware"):
        running_intervals(events=[started(datetime(2026, 6, 1, 8))], start=at(1), end=at(2))
