"""What counts as using the capacity, and the compact ledger that remembers it.

Why it matters: every hour a capacity runs is billed, and the idle pause only works if the
portal can tell a person from a screen. A person opening a report or touching it is activity,
always. An open report's heartbeat, or a timed token refresh ("Refresh token every X minutes"),
happens with nobody there: it counts only for users (or groups) with "Keeps the capacity on",
or else one forgotten tab, or a TV, would keep the capacity billed forever.

The ledger keeps one row per user, capacity and UTC minute (a viewer sends many events a
minute; the controller needs only "was anyone here, and when last"). A row remembers whether
anything in its minute counted, and the latest counted instant within it, so the idle clock is
exact to the second without one row per event.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime


class ActivityKind(enum.StrEnum):
    OPENED = "opened"
    INTERACTION = "interaction"  # filter, page change, visual click (from the token keeper)
    HEARTBEAT = "heartbeat"  # an open viewer saying it is still open
    TIMED_REFRESH = "timed_refresh"  # "Refresh token every X minutes"


ALWAYS_COUNTED: frozenset[ActivityKind] = frozenset({ActivityKind.OPENED, ActivityKind.INTERACTION})
COUNTED_ONLY_FOR_KEEPS_ON: frozenset[ActivityKind] = frozenset(
    {ActivityKind.HEARTBEAT, ActivityKind.TIMED_REFRESH}
)


def counts_as_activity(*, kind: ActivityKind, keeps_capacity_on: bool) -> bool:
    """Whether this event keeps the capacity from going idle, for a user whose effective
    "Keeps the capacity on" is ``keeps_capacity_on`` (see permissions.py)."""
    if kind in ALWAYS_COUNTED:
        return True
    return keeps_capacity_on


def _utc(at: datetime, *, what: str) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"{what} must be an aware datetime (got a naive one)")
    return at.astimezone(UTC)


def minute_of(*, at: datetime) -> datetime:
    """The start of the UTC minute ``at`` falls in: the ledger's bucket. UTC, so a DST change
    or a change of the organization's time zone never merges or splits buckets."""
    return _utc(at, what="at").replace(second=0, microsecond=0)


@dataclass(frozen=True, order=True)
class LedgerKey:
    capacity: str
    user_id: int
    minute: datetime  # start of a UTC minute


def ledger_key(*, capacity: str, user_id: int, at: datetime) -> LedgerKey:
    return LedgerKey(capacity=capacity, user_id=user_id, minute=minute_of(at=at))


@dataclass(frozen=True)
class LedgerRow:
    """One user's use of one capacity during one minute."""

    key: LedgerKey
    kinds: frozenset[ActivityKind]  # everything seen, counted or not (for the admin's view)
    last_counted_at: datetime | None  # None: nothing in this minute counted

    @property
    def counted(self) -> bool:
        return self.last_counted_at is not None


def record_activity(
    *,
    row: LedgerRow | None,
    capacity: str,
    user_id: int,
    kind: ActivityKind,
    at: datetime,
    keeps_capacity_on: bool,
) -> LedgerRow:
    """The ledger row after one more event: start the minute's row, or fold the event into it.

    The caller looks up the row for ``ledger_key(...)`` and stores what this returns (an upsert).
    Recording the same event twice changes nothing, and events may arrive out of order.
    """
    key = ledger_key(capacity=capacity, user_id=user_id, at=at)
    if row is not None and row.key != key:
        raise ValueError(f"event of {key} folded into the row of {row.key}")
    counted_at = (
        _utc(at, what="at")
        if counts_as_activity(kind=kind, keeps_capacity_on=keeps_capacity_on)
        else None
    )
    if row is None:
        return LedgerRow(key=key, kinds=frozenset({kind}), last_counted_at=counted_at)
    latest = row.last_counted_at
    if counted_at is not None and (latest is None or counted_at > latest):
        latest = counted_at
    return replace(row, kinds=row.kinds | {kind}, last_counted_at=latest)


def last_counted_activity(
    *, rows: Iterable[LedgerRow], capacity: str | None = None
) -> datetime | None:
    """The latest instant anyone's use counted (of ``capacity``, or of any), or None."""
    latest: datetime | None = None
    for row in rows:
        if capacity is not None and row.key.capacity != capacity:
            continue
        if row.last_counted_at is not None and (latest is None or row.last_counted_at > latest):
            latest = row.last_counted_at
    return latest


def users_active_since(
    *, rows: Iterable[LedgerRow], since: datetime, capacity: str | None = None
) -> frozenset[int]:
    """Users whose counted use is at or after ``since``: who the capacity is being kept on for
    ("2 people are still using it")."""
    threshold = _utc(since, what="since")
    return frozenset(
        row.key.user_id
        for row in rows
        if (capacity is None or row.key.capacity == capacity)
        and row.last_counted_at is not None
        and row.last_counted_at >= threshold
    )
