"""The activity ledger, kept cheaply: events are folded in memory and written once per flush.

Opening a report, touching it, an open viewer's heartbeat and a timed refresh all arrive on hot
paths (the token API, the push channel, telemetry), where a database write per event would cost
more than the event is worth. :class:`ActivityLedger` folds them into one row per capacity, user
and minute (the rules are in activity.py) and writes the rows every few seconds; the capacity
controller then asks the database when anyone last counted. Each portal instance flushes its
own; rows from several instances for the same minute merge on write.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

from sqlalchemy import case, delete, func, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from embedportal.capacity.activity import (
    ActivityKind,
    LedgerKey,
    LedgerRow,
    ledger_key,
    record_activity,
)
from embedportal.db.base import utcnow
from embedportal.db.models import Capacity, CapacityActivity
from embedportal.db.periodic import flush_periodically
from embedportal.db.session import session_scope

DEFAULT_FLUSH_SECONDS = 5.0
# Rows per statement: well under SQLite's limit on bound parameters.
_CHUNK_ROWS = 400


def _kinds_text(kinds: Iterable[ActivityKind]) -> str:
    return ",".join(sorted(kind.value for kind in kinds))


def _kinds_of(text: str) -> frozenset[ActivityKind]:
    return frozenset(ActivityKind(part) for part in text.split(",") if part)


class ActivityLedger:
    """``note(...)`` from anywhere (any thread, no I/O); ``flush()`` writes what was noted."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._session_factory = session_factory
        self._clock = clock
        self._lock = threading.Lock()
        self._pending: dict[LedgerKey, LedgerRow] = {}

    def note(
        self,
        *,
        capacity_id: str,
        user_id: int,
        kind: ActivityKind,
        keeps_capacity_on: bool,
        at: datetime | None = None,
    ) -> None:
        moment = at or self._clock()
        key = ledger_key(capacity=capacity_id, user_id=user_id, at=moment)
        with self._lock:
            self._pending[key] = record_activity(
                row=self._pending.get(key),
                capacity=capacity_id,
                user_id=user_id,
                kind=kind,
                at=moment,
                keeps_capacity_on=keeps_capacity_on,
            )

    def pending_last_counted(self, capacity_id: str) -> datetime | None:
        """This instance's latest counted activity not yet written (the controller may run
        here between flushes)."""
        with self._lock:
            instants = [
                row.last_counted_at
                for key, row in self._pending.items()
                if key.capacity == capacity_id and row.last_counted_at is not None
            ]
        return max(instants, default=None)

    def flush(self) -> int:
        """Write the noted rows (merging with what other instances wrote); the rows written.
        On a database error the rows stay noted and go with the next flush."""
        with self._lock:
            rows, self._pending = self._pending, {}
        if not rows:
            return 0
        try:
            with session_scope(self._session_factory) as session:
                # A capacity removed meanwhile takes its activity with it; it must not keep
                # every other row from being written.
                known = set(
                    session.scalars(
                        select(Capacity.id).where(Capacity.id.in_({key.capacity for key in rows}))
                    )
                )
                _upsert(session, [row for row in rows.values() if row.key.capacity in known])
        except Exception:
            with self._lock:
                for key, row in rows.items():
                    newer = self._pending.get(key)
                    self._pending[key] = row if newer is None else _fold(row, newer)
            raise
        return len(rows)

    async def run(self, *, interval_seconds: float = DEFAULT_FLUSH_SECONDS) -> None:
        """Flush every ``interval_seconds`` until cancelled, and once more on the way out."""
        await flush_periodically(
            self.flush, interval_seconds=interval_seconds, name="activity ledger"
        )


def _fold(first: LedgerRow, second: LedgerRow) -> LedgerRow:
    latest = max(
        (at for at in (first.last_counted_at, second.last_counted_at) if at is not None),
        default=None,
    )
    return LedgerRow(key=first.key, kinds=first.kinds | second.kinds, last_counted_at=latest)


def _upsert(session: Session, rows: list[LedgerRow]) -> None:
    """Write the rows in a few statements: read what is stored for their keys (to merge the
    kinds), then INSERT … ON CONFLICT DO UPDATE, which keeps the later ``last_counted_at`` of
    what is stored and what is written, on SQLite and PostgreSQL alike."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    for start in range(0, len(rows), _CHUNK_ROWS):
        chunk = rows[start : start + _CHUNK_ROWS]
        keys = [(row.key.capacity, row.key.user_id, row.key.minute) for row in chunk]
        stored = {
            (capacity_id, user_id, minute): kinds
            for capacity_id, user_id, minute, kinds in session.execute(
                select(
                    CapacityActivity.capacity_id,
                    CapacityActivity.user_id,
                    CapacityActivity.minute,
                    CapacityActivity.kinds,
                ).where(
                    tuple_(
                        CapacityActivity.capacity_id,
                        CapacityActivity.user_id,
                        CapacityActivity.minute,
                    ).in_(keys)
                )
            )
        }
        values = []
        for key, row in zip(keys, chunk, strict=True):
            kinds = row.kinds | _kinds_of(stored.get(key, ""))
            values.append(
                {
                    "capacity_id": row.key.capacity,
                    "user_id": row.key.user_id,
                    "minute": row.key.minute,
                    "kinds": _kinds_text(kinds),
                    "last_counted_at": row.last_counted_at,
                }
            )
        statement = insert(CapacityActivity).values(values)
        written = statement.excluded.last_counted_at
        kept = CapacityActivity.last_counted_at
        statement = statement.on_conflict_do_update(
            index_elements=["capacity_id", "user_id", "minute"],
            set_={
                "kinds": statement.excluded.kinds,
                "last_counted_at": case(
                    (kept.is_(None), written),
                    (written.is_(None), kept),
                    (written > kept, written),
                    else_=kept,
                ),
            },
        )
        session.execute(statement)


def last_counted_activity(*, session: Session, capacity_id: str) -> datetime | None:
    """When anyone's use of the capacity last counted, as written to the ledger."""
    latest: datetime | None = session.scalar(
        select(func.max(CapacityActivity.last_counted_at)).where(
            CapacityActivity.capacity_id == capacity_id
        )
    )
    return latest


def users_active_since(*, session: Session, capacity_id: str, since: datetime) -> list[int]:
    """Who the capacity is being kept on for: users whose use counted at or after ``since``."""
    return list(
        session.scalars(
            select(CapacityActivity.user_id)
            .where(
                CapacityActivity.capacity_id == capacity_id,
                CapacityActivity.last_counted_at >= since,
            )
            .distinct()
        )
    )


def prune_activity(*, session: Session, older_than: timedelta, now: datetime | None = None) -> int:
    """Forget rows older than the retention; the number removed."""
    cutoff = (now or utcnow()) - older_than
    result = session.execute(delete(CapacityActivity).where(CapacityActivity.minute < cutoff))
    return int(getattr(result, "rowcount", 0) or 0)
