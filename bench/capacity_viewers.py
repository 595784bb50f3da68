"""The people's browsers in Part 3 (bench/capacity_week.py): what each one shows, and what it
tells the portal.

What reaches the activity ledger follows what the portal's token API notes today, plus the
design's heartbeat of an open viewer:

- a page load notes ``opened`` (also the load that follows a "starting" screen);
- a click notes ``interaction`` (the viewer's interaction telemetry, at most once a minute);
  it also refreshes the token when that is at least 5 minutes old (the keeper's default);
- a wall screen's timed token refresh ("Refresh token every X minutes") notes
  ``timed_refresh``; the keeper's refresh at its 10-minute margin (every 50 minutes) and its
  reload after an off screen note ``heartbeat``;
- an open report sends a ``heartbeat`` every ``heartbeat_minutes``.

Nothing is noted while the capacity does not run: the token API gives no token then. A token
call made then by a person allowed to turn the capacity on (a page load, a click on the broken
report) is a resume request, exactly as the token API's ``CapacityStarting`` path makes it; that
viewer shows "starting the capacity" and keeps asking until it runs. A call that only keeps an
open report alive (a timed refresh, a refresh at the margin) starts nothing, as the token API
answers it ``CapacityNotActive``: a forgotten tab does not undo the idle pause. Everyone else
shows "the capacity is off" until it runs again. Both screens end, and the report reloads, once
the capacity is running.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from bench.capacity_org import Person
from embedportal.capacity.activity import ActivityKind
from embedportal.db.models import User

# The token keeper's defaults (the organization's columns): a 60-minute token refreshed at its
# 10-minute margin; a click refreshes it only when it is at least 5 minutes old.
TOKEN_REFRESH_AFTER = timedelta(minutes=50)
INTERACTION_MIN_AGE = timedelta(minutes=5)
# The viewer reports interaction telemetry at most once a minute per report (token-keeper.js).
INTERACTION_REPORT_EVERY = timedelta(minutes=1)

Note = Callable[[int, ActivityKind, bool, datetime], None]  # user id, kind, keeps on, at


class Screen(enum.StrEnum):
    CLOSED = "closed"
    REPORT = "report"
    OFF = "off"  # "the capacity is off" (it comes back by itself)
    STARTING = "starting"  # "starting the capacity" for someone allowed to turn it on


@dataclass
class ScreenTally:
    """What one class of viewers saw over the run."""

    off_screens: int = 0
    off_seconds: float = 0.0
    longest_off_seconds: float = 0.0
    starting_screens: int = 0
    starting_seconds: float = 0.0
    # Seconds from a starting screen's first moment to the capacity running (starting screens
    # ended by the viewer closing the report are not in it).
    start_waits: list[float] = field(default_factory=list)


class _Event(enum.IntEnum):
    CLOSE = 0  # before an OPEN at the same instant
    CONTINUE = 1  # a report open since before the run began
    OPEN = 2
    CLICK = 3


def _events_of(person: Person) -> list[tuple[datetime, _Event]]:
    events: list[tuple[datetime, _Event]] = []
    for visit in person.visits:
        events.append((visit.opened_at, _Event.CONTINUE if visit.opened_before else _Event.OPEN))
        events += [(at, _Event.CLICK) for at in visit.interactions]
        events.append((visit.closed_at, _Event.CLOSE))
    events.sort()
    return events


class Viewer:
    """One person's browser: the report they have open (if any) and what it shows."""

    def __init__(
        self,
        *,
        person: Person,
        user: User,
        may_turn_on: bool,
        keeps_on: bool,
        tally: ScreenTally,
        heartbeat: timedelta,
    ) -> None:
        self.person = person
        self.user = user
        self.may_turn_on = may_turn_on  # capacity_rights(...).turn_on_on_demand, as the API asks
        self.keeps_on = keeps_on  # what the ledger is told along with each event
        self.tally = tally
        self.heartbeat = heartbeat
        timed = person.timed_refresh_minutes
        self.timed = timedelta(minutes=timed) if timed else None
        self._events = _events_of(person)
        self._cursor = 0
        self._open_tabs = 0
        self._loaded = False  # the report loaded since it was opened (a reload is no "opened")
        self.screen = Screen.CLOSED
        self._since: datetime | None = None
        self._next_heartbeat: datetime | None = None
        self._next_timed: datetime | None = None
        self._token_at: datetime | None = None
        self._interaction_at: datetime | None = None
        self.asked: str | None = None  # why it asked for a start, this episode

    # -- screens ----------------------------------------------------------------------------

    def _show(self, screen: Screen, at: datetime) -> None:
        self._end(at, by_running=screen is Screen.REPORT)
        self.screen = screen
        self._since = None if screen is Screen.CLOSED else at
        if screen is Screen.OFF:
            self.tally.off_screens += 1
        elif screen is Screen.STARTING:
            self.tally.starting_screens += 1

    def _end(self, at: datetime, *, by_running: bool) -> None:
        if self._since is None:
            return
        seconds = (at - self._since).total_seconds()
        if self.screen is Screen.OFF:
            self.tally.off_seconds += seconds
            self.tally.longest_off_seconds = max(self.tally.longest_off_seconds, seconds)
        elif self.screen is Screen.STARTING:
            self.tally.starting_seconds += seconds
            if by_running:
                self.tally.start_waits.append(seconds)
        self._since = None

    def finish(self, at: datetime) -> None:
        self._end(at, by_running=False)

    # -- what it does -----------------------------------------------------------------------

    def _ask(self, why: str, at: datetime, asks: dict[int, str]) -> None:
        """A token call while the capacity is not running. The token API notes a resume
        request for a user allowed to turn it on (and answers CapacityStarting); the others
        get CapacityNotActive and keep their "off" screen."""
        if not self.may_turn_on:
            return
        if self.asked is None:
            self.asked = why
        asks[self.user.id] = self.asked
        if self.screen is Screen.OFF:
            self._show(Screen.STARTING, at)

    def _load(self, at: datetime, note: Note) -> None:
        kind = ActivityKind.HEARTBEAT if self._loaded else ActivityKind.OPENED
        note(self.user.id, kind, self.keeps_on, at)
        self._loaded = True
        self._token_at = at
        self.asked = None
        self._show(Screen.REPORT, at)

    def _opened(self, at: datetime, running: bool, fresh: bool) -> None:
        self._open_tabs += 1
        if self._open_tabs > 1:
            return
        self._loaded = not fresh
        self._next_heartbeat = at + self.heartbeat
        self._next_timed = at + self.timed if self.timed else None

    def _event(
        self, at: datetime, what: _Event, running: bool, note: Note, asks: dict[int, str]
    ) -> None:
        if what is _Event.CONTINUE:
            self._opened(at, running, fresh=False)
            if running:  # its heartbeats went on before the run began
                note(self.user.id, ActivityKind.HEARTBEAT, self.keeps_on, at)
                self._token_at = at
                self._show(Screen.REPORT, at)
            else:
                self._show(Screen.OFF, at)
        elif what is _Event.OPEN:
            self._opened(at, running, fresh=True)
            if running:
                self._load(at, note)
                return
            if self.screen in (Screen.CLOSED, Screen.REPORT):
                self._show(Screen.STARTING if self.may_turn_on else Screen.OFF, at)
            self._ask("opened a report", at, asks)
        elif what is _Event.CLOSE:
            self._open_tabs = max(0, self._open_tabs - 1)
            if self._open_tabs == 0:
                self._show(Screen.CLOSED, at)
                self._next_heartbeat = self._next_timed = self._token_at = None
                self.asked = None
        elif self._open_tabs:  # a click
            if running and self.screen is Screen.REPORT:
                if (
                    self._interaction_at is None
                    or at - self._interaction_at >= INTERACTION_REPORT_EVERY
                ):
                    note(self.user.id, ActivityKind.INTERACTION, self.keeps_on, at)
                    self._interaction_at = at
                if self._token_at is None or at - self._token_at >= INTERACTION_MIN_AGE:
                    self._token_at = at  # the keeper's refresh on interaction
            elif not running:
                self._ask("clicked a report", at, asks)

    def step(self, now: datetime, running: bool, note: Note, asks: dict[int, str]) -> None:
        """Everything this browser does up to ``now``; ``running``: the capacity's state."""
        while self._cursor < len(self._events) and self._events[self._cursor][0] <= now:
            at, what = self._events[self._cursor]
            self._event(at, what, running, note, asks)
            self._cursor += 1
        if not self._open_tabs:
            return
        showing = running and self.screen is Screen.REPORT
        while self._next_heartbeat is not None and self._next_heartbeat <= now:
            if showing:
                note(self.user.id, ActivityKind.HEARTBEAT, self.keeps_on, self._next_heartbeat)
            self._next_heartbeat += self.heartbeat
        while self.timed is not None and self._next_timed is not None and self._next_timed <= now:
            # Off, a refresh that keeps a report alive starts nothing (the token API's rule).
            if showing:
                note(self.user.id, ActivityKind.TIMED_REFRESH, self.keeps_on, self._next_timed)
                self._token_at = self._next_timed
            self._next_timed += self.timed
        if self._token_at is not None and now - self._token_at >= TOKEN_REFRESH_AFTER:
            if showing:  # the keeper's refresh at its margin (off: CapacityNotActive, no start)
                note(self.user.id, ActivityKind.HEARTBEAT, self.keeps_on, now)
                self._token_at = now
        if running:
            if self.screen in (Screen.OFF, Screen.STARTING):
                self._load(now, note)  # the keeper reloads the report by itself
            return
        if self.screen is Screen.REPORT:  # the report notices the capacity has gone
            self._show(Screen.STARTING if self.asked else Screen.OFF, now)
        if self.screen is Screen.STARTING:  # the viewer keeps asking every few seconds
            asks[self.user.id] = self.asked or "waiting"
