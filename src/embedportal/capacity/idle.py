"""The idle clock: the "Pause the capacity after" setting, and who still counts as active.

Two questions share one clock:

- **Idle pause** (only when "Pause the capacity after N minutes" is set): the capacity has been
  idle N minutes when N minutes have passed since the *later* of the last counted activity and
  the moment the capacity last started running. Counting from the start too means a capacity
  that was just resumed (on demand, by hand, by the schedule) is not paused at once because the
  ledger's last entry is old; it gets N minutes for someone to use it.
- **Still active?** A scheduled turn-off waits while people are using the capacity. "Active"
  means counted activity within the idle window, N minutes; when the idle pause is off there is
  no N, so :data:`DEFAULT_ACTIVE_WINDOW` (15 minutes) stands in: long enough to read a page
  without clicking, short enough that an evening turn-off is not held up for hours by someone
  who left a report open (an idle open report does not count at all without "Keeps the
  capacity on").

Time is always a parameter: no clock is read here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from embedportal.i18n import N_

MIN_IDLE_MINUTES = 1
MAX_IDLE_MINUTES = 1440  # one day
DEFAULT_ACTIVE_WINDOW = timedelta(minutes=15)


@dataclass(frozen=True)
class IdleMinutesResult:
    """``minutes`` None and ``error`` None: the field was empty, the idle pause is off."""

    minutes: int | None
    error: str | None


def parse_idle_minutes(*, text: str) -> IdleMinutesResult:
    """The "Pause the capacity after" field: empty (off) or a whole number from 1 to 1440."""
    raw = text.strip()
    if not raw:
        return IdleMinutesResult(minutes=None, error=None)
    if not (raw.isascii() and (raw.isdigit() or (raw[0] in "+-" and raw[1:].isdigit()))):
        return IdleMinutesResult(
            minutes=None,
            error=N_(
                "Enter a whole number of minutes from 1 to 1440, or leave it empty to turn "
                "the idle pause off."
            ),
        )
    minutes = int(raw)
    if not MIN_IDLE_MINUTES <= minutes <= MAX_IDLE_MINUTES:
        return IdleMinutesResult(
            minutes=None,
            error=N_(
                "The idle time must be from 1 to 1440 minutes (one day); leave it empty to "
                "turn the idle pause off."
            ),
        )
    return IdleMinutesResult(minutes=minutes, error=None)


def active_window(*, idle_minutes: int | None) -> timedelta:
    """How recent counted activity must be for someone to count as still there."""
    if idle_minutes is None:
        return DEFAULT_ACTIVE_WINDOW
    return timedelta(minutes=idle_minutes)


def someone_active(
    *, now: datetime, last_counted_activity: datetime | None, idle_minutes: int | None
) -> bool:
    """Whether counted activity happened within the active window before ``now``."""
    if last_counted_activity is None:
        return False
    return now - last_counted_activity < active_window(idle_minutes=idle_minutes)


def idle_since(
    *, last_counted_activity: datetime | None, last_started_at: datetime | None
) -> datetime | None:
    """From when the idle clock runs: the later of the two instants (None if neither is
    known: the capacity has been idle as long as anyone can tell)."""
    known = [instant for instant in (last_counted_activity, last_started_at) if instant]
    return max(known) if known else None


def idle_pause_due_at(
    *,
    idle_minutes: int | None,
    last_counted_activity: datetime | None,
    last_started_at: datetime | None,
) -> datetime | None:
    """When the idle pause becomes due; None when the idle pause is off, or when nothing is
    known to count from (then it is due already: :func:`idle_pause_due` says so)."""
    if idle_minutes is None:
        return None
    since = idle_since(last_counted_activity=last_counted_activity, last_started_at=last_started_at)
    if since is None:
        return None
    return since + timedelta(minutes=idle_minutes)


def idle_pause_due(
    *,
    now: datetime,
    idle_minutes: int | None,
    last_counted_activity: datetime | None,
    last_started_at: datetime | None,
) -> bool:
    if idle_minutes is None:
        return False
    due_at = idle_pause_due_at(
        idle_minutes=idle_minutes,
        last_counted_activity=last_counted_activity,
        last_started_at=last_started_at,
    )
    return due_at is None or now >= due_at
