"""The organization of Part 3 (bench/capacity_week.py): who opens which report when, for a week.

Everything here is drawn from the seed before any policy runs, so every policy faces exactly the
same people doing the same things at the same instants. Times are UTC instants; the people live
in the organization's time zone (Europe/Lisbon by default), so "08:00" is their wall clock.

- **Office users** (``office_users``, 40): Monday to Friday, 90 % of days present. They arrive
  08:00–09:15 and leave 17:00–18:15, with a lunch break of 40–75 min starting 12:00–13:30. Six in
  ten are at a desk with the report open all day (the tab is closed over lunch half of the time,
  left open and idle the other half), in active stretches of 5–40 min (clicks at a per-person
  pace, one every 0.5–3 min on average) and quiet stretches of 5–45 min with no click. The other
  four in ten open it 2–5 times a day for 5–30 busy minutes. All are in the "Office" group,
  which may turn the capacity on.
- **Evening stragglers**: each office user, each weekday, looks in at 19:00–22:00 with
  probability ``straggler_probability`` (3 %, about one a night), for 5–25 busy minutes.
- **Weekends**: one or two visits a day by office users, 10:00–18:00, 10–40 minutes.
- **Wall TVs** (``tvs``, 3): open since before the week and all through it, never touched, with
  a timed token refresh every ``timed_refresh_minutes`` (10). Their accounts are in the "Wall
  screens" group, which has no capacity permission: they may neither turn it on nor keep it on.
- **The lobby TV**: its account has "Keeps the capacity on" and "May turn on the capacity". A
  timer switches the screen on at 07:30–07:40 and off at 19:30–19:40, Monday to Friday.
- **Forgotten tabs** (``forgotten_tab_probability``, 0 by default): a desk user's tab left open
  when they go home, until 08:00 the next working day (see bench/README.md).

Each person, day and purpose draws from a generator of its own, so a longer week or a what-if
(forgotten tabs) leaves every other draw as it was.
"""

from __future__ import annotations

import enum
import math
import random
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

MINUTE = timedelta(minutes=1)


class ViewerClass(enum.StrEnum):
    OFFICE = "office"
    TV = "TV"  # a wall screen without "keeps on"
    KEEPS_ON_TV = "keeps-on TV"


@dataclass(frozen=True)
class Visit:
    """One open report: from ``opened_at`` to ``closed_at``, clicked at ``interactions``."""

    opened_at: datetime
    closed_at: datetime
    interactions: tuple[datetime, ...]
    purpose: str  # desk, visit, straggler, weekend, forgotten, tv
    # Open since before the week began (the wall TVs): no "opened" at the start.
    opened_before: bool = False


@dataclass
class Person:
    key: str  # the e-mail's local part
    viewer_class: ViewerClass
    may_turn_on: bool  # how the bench sets up their account (capacity_rights decides)
    keeps_on: bool
    timed_refresh_minutes: int | None = None
    desk: bool = False  # office: the report open all day (else a few short visits)
    visits: list[Visit] = field(default_factory=list)


@dataclass(frozen=True)
class OrganizationParams:
    start: date  # a Monday
    days: int = 7
    seed: int = 1
    zone: str = "Europe/Lisbon"
    office_users: int = 40
    tvs: int = 3
    timed_refresh_minutes: int = 10
    straggler_probability: float = 0.03
    forgotten_tab_probability: float = 0.0


@dataclass
class Organization:
    params: OrganizationParams
    people: list[Person]
    starts_at: datetime
    ends_at: datetime


def _at(day: date, minutes: float, zone: ZoneInfo) -> datetime:
    """``minutes`` after local midnight of ``day``, as an aware instant (whole seconds)."""
    midnight = datetime.combine(day, time(0, 0), tzinfo=zone)
    return (midnight + timedelta(seconds=round(minutes * 60))).astimezone(ZoneInfo("UTC"))


def _clicks(
    rng: random.Random, start: datetime, end: datetime, mean_gap_min: float
) -> list[datetime]:
    clicks: list[datetime] = []
    at = start
    while True:
        at = at + timedelta(seconds=round(rng.expovariate(1 / (mean_gap_min * 60))))
        if at >= end:
            return clicks
        clicks.append(at)


def _desk_stretches(
    rng: random.Random, start: datetime, end: datetime, mean_gap_min: float
) -> list[datetime]:
    """Clicks of a report open from ``start`` to ``end``: active and quiet stretches in turn."""
    clicks: list[datetime] = []
    at = start
    active = True
    while at < end:
        length = timedelta(minutes=rng.uniform(5, 40) if active else rng.uniform(5, 45))
        stretch_end = min(at + length, end)
        if active:
            clicks += _clicks(rng, at, stretch_end, mean_gap_min)
        at = stretch_end
        active = not active
    return clicks


def _rng(params: OrganizationParams, *parts: object) -> random.Random:
    """A generator of its own for each person, day and purpose, so that changing one
    parameter (more days, forgotten tabs) leaves every other draw as it was."""
    return random.Random(":".join(str(part) for part in ("capacity-week", params.seed, *parts)))


def _office_day(
    person: Person, rng: random.Random, day: date, zone: ZoneInfo, params: OrganizationParams
) -> list[Visit]:
    if rng.random() >= 0.9:
        return []
    arrive = 8 * 60 + rng.uniform(0, 75)
    leave = 17 * 60 + rng.uniform(0, 75)
    lunch = 12 * 60 + rng.uniform(0, 90)
    lunch_end = lunch + rng.uniform(40, 75)
    pace = math.exp(rng.uniform(math.log(0.5), math.log(3.0)))  # mean minutes between clicks
    visits: list[Visit] = []
    if person.desk:
        closes_for_lunch = rng.random() < 0.5
        spans = [(arrive, lunch), (lunch_end, leave)] if closes_for_lunch else [(arrive, leave)]
        for from_minute, to_minute in spans:
            opened, closed = _at(day, from_minute, zone), _at(day, to_minute, zone)
            clicks = _desk_stretches(rng, opened, closed, pace)
            if not closes_for_lunch:  # open and idle over lunch: nobody clicks
                lunch_from, lunch_to = _at(day, lunch, zone), _at(day, lunch_end, zone)
                clicks = [c for c in clicks if not lunch_from <= c < lunch_to]
            visits.append(Visit(opened, closed, tuple(clicks), "desk"))
        if _rng(params, person.key, day, "forgotten").random() < params.forgotten_tab_probability:
            last = visits[-1]
            next_day = day + timedelta(days=3 if day.weekday() == 4 else 1)
            closes = _at(next_day, 8 * 60, zone)
            visits[-1] = Visit(last.opened_at, closes, last.interactions, "forgotten")
        return visits
    starts = sorted(rng.uniform(arrive, leave - 10) for _ in range(rng.randint(2, 5)))
    previous_end = 0.0
    for begin in starts:
        if lunch <= begin < lunch_end:
            begin = lunch_end
        begin = max(begin, previous_end + 5)
        end = min(begin + rng.uniform(5, 30), leave)
        if end <= begin:
            continue
        opened, closed = _at(day, begin, zone), _at(day, end, zone)
        visits.append(Visit(opened, closed, tuple(_clicks(rng, opened, closed, pace)), "visit"))
        previous_end = end
    return visits


def _short_visit(
    rng: random.Random, day: date, zone: ZoneInfo, earliest: float, latest: float,
    minutes: tuple[float, float], purpose: str,
) -> Visit:  # fmt: skip
    begin = rng.uniform(earliest, latest)
    opened = _at(day, begin, zone)
    closed = opened + timedelta(minutes=rng.uniform(*minutes))
    pace = rng.uniform(0.5, 2.0)
    return Visit(opened, closed, tuple(_clicks(rng, opened, closed, pace)), purpose)


def build_organization(params: OrganizationParams) -> Organization:
    """The seeded week: every person's visits, identical for every policy."""
    if params.start.weekday() != 0:
        raise ValueError("the simulated week starts on a Monday")
    zone = ZoneInfo(params.zone)
    starts_at = _at(params.start, 0, zone)
    ends_at = _at(params.start + timedelta(days=params.days), 0, zone)
    people: list[Person] = []
    office = [
        Person(
            key=f"office{n + 1:02d}",
            viewer_class=ViewerClass.OFFICE,
            may_turn_on=True,
            keeps_on=False,
            desk=n % 10 < 6,
        )
        for n in range(params.office_users)
    ]
    days = [params.start + timedelta(days=d) for d in range(params.days)]
    for day in days:
        weekday = day.weekday() < 5
        for person in office:
            if weekday:
                person.visits += _office_day(
                    person, _rng(params, person.key, day), day, zone, params
                )
                evening = _rng(params, person.key, day, "evening")
                if evening.random() < params.straggler_probability:
                    person.visits.append(
                        _short_visit(evening, day, zone, 19 * 60, 22 * 60, (5, 25), "straggler")
                    )
        if not weekday and office:
            rng = _rng(params, "weekend", day)
            for _ in range(rng.randint(1, 2)):
                visitor = rng.choice(office)
                visitor.visits.append(
                    _short_visit(rng, day, zone, 10 * 60, 18 * 60, (10, 40), "weekend")
                )
    for person in office:
        person.visits.sort(key=lambda v: v.opened_at)
    people += office
    for n in range(params.tvs):
        people.append(
            Person(
                key=f"tv{n + 1}",
                viewer_class=ViewerClass.TV,
                may_turn_on=False,
                keeps_on=False,
                timed_refresh_minutes=params.timed_refresh_minutes,
                visits=[Visit(starts_at, ends_at, (), "tv", opened_before=True)],
            )
        )
    lobby = Person(
        key="lobby-tv",
        viewer_class=ViewerClass.KEEPS_ON_TV,
        may_turn_on=True,
        keeps_on=True,
        timed_refresh_minutes=params.timed_refresh_minutes,
    )
    for day in days:
        if day.weekday() < 5:
            rng = _rng(params, lobby.key, day)
            lobby.visits.append(
                Visit(
                    _at(day, 7 * 60 + 30 + rng.uniform(0, 10), zone),
                    _at(day, 19 * 60 + 30 + rng.uniform(0, 10), zone),
                    (),
                    "tv",
                )
            )
    people.append(lobby)
    for person in people:
        person.visits = [
            Visit(
                max(v.opened_at, starts_at),
                min(v.closed_at, ends_at),
                tuple(c for c in v.interactions if c < ends_at),
                v.purpose,
                v.opened_before or v.opened_at < starts_at,
            )
            for v in person.visits
            if v.opened_at < ends_at
        ]
    return Organization(params=params, people=people, starts_at=starts_at, ends_at=ends_at)
