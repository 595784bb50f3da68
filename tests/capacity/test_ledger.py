"""The activity ledger: folded in memory, one row per capacity, user and minute, merged across
instances on write, kept when the database fails, and pruned after the retention."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, select
from sqlalchemy.orm import Session, sessionmaker

from embedportal.capacity.activity import ActivityKind
from embedportal.capacity.ledger import (
    ActivityLedger,
    last_counted_activity,
    prune_activity,
    users_active_since,
)
from embedportal.db.models import Capacity, CapacityActivity, User
from embedportal.db.session import create_db_engine, create_session_factory, session_scope

CAPACITY = "cap-1"
NOON = datetime(2026, 12, 1, 12, 0, 10, tzinfo=UTC)


@pytest.fixture
def factory(database_url: str) -> Iterator[sessionmaker[Session]]:
    engine = create_db_engine(database_url)
    made = create_session_factory(engine)
    with session_scope(made) as db:
        db.add(Capacity(id=CAPACITY, display_name="one"))
        db.add_all(User(email=f"u{n}@example.com", password_hash="x") for n in (1, 2))
    yield made
    engine.dispose()


def user_ids(factory: sessionmaker[Session]) -> list[int]:
    with session_scope(factory) as db:
        return sorted(db.scalars(select(User.id)))


def rows(factory: sessionmaker[Session]) -> list[CapacityActivity]:
    with session_scope(factory) as db:
        found = list(db.scalars(select(CapacityActivity).order_by(CapacityActivity.minute)))
        db.expunge_all()
        return found


def test_events_of_one_minute_are_one_row_written_on_flush(
    factory: sessionmaker[Session],
) -> None:
    ledger = ActivityLedger(factory)
    ana, _bob = user_ids(factory)
    for second, kind in ((0, ActivityKind.OPENED), (20, ActivityKind.HEARTBEAT)):
        ledger.note(
            capacity_id=CAPACITY,
            user_id=ana,
            kind=kind,
            keeps_capacity_on=False,
            at=NOON + timedelta(seconds=second),
        )
    assert rows(factory) == []  # nothing written until the flush
    assert ledger.flush() == 1
    (row,) = rows(factory)
    assert row.kinds == "heartbeat,opened"
    assert row.last_counted_at == NOON  # the heartbeat did not count: no "keeps it on"
    assert ledger.flush() == 0


def test_two_instances_writing_the_same_minute_merge(factory: sessionmaker[Session]) -> None:
    ana, _bob = user_ids(factory)
    first, second = ActivityLedger(factory), ActivityLedger(factory)
    first.note(capacity_id=CAPACITY, user_id=ana, kind=ActivityKind.OPENED,
               keeps_capacity_on=False, at=NOON)  # fmt: skip
    second.note(capacity_id=CAPACITY, user_id=ana, kind=ActivityKind.INTERACTION,
                keeps_capacity_on=False, at=NOON + timedelta(seconds=30))  # fmt: skip
    first.flush()
    second.flush()
    (row,) = rows(factory)
    assert row.kinds == "interaction,opened"
    assert row.last_counted_at == NOON + timedelta(seconds=30)
    with session_scope(factory) as db:
        assert last_counted_activity(session=db, capacity_id=CAPACITY) == row.last_counted_at
        assert users_active_since(session=db, capacity_id=CAPACITY, since=NOON) == [ana]


def test_a_removed_capacity_does_not_keep_other_rows_from_being_written(
    factory: sessionmaker[Session],
) -> None:
    ana, _bob = user_ids(factory)
    ledger = ActivityLedger(factory)
    ledger.note(capacity_id="gone", user_id=ana, kind=ActivityKind.OPENED,
                keeps_capacity_on=False, at=NOON)  # fmt: skip
    ledger.note(capacity_id=CAPACITY, user_id=ana, kind=ActivityKind.OPENED,
                keeps_capacity_on=False, at=NOON)  # fmt: skip
    ledger.flush()
    assert [row.capacity_id for row in rows(factory)] == [CAPACITY]


def test_pending_activity_is_known_before_the_flush(factory: sessionmaker[Session]) -> None:
    ana, _bob = user_ids(factory)
    ledger = ActivityLedger(factory)
    assert ledger.pending_last_counted(CAPACITY) is None
    ledger.note(capacity_id=CAPACITY, user_id=ana, kind=ActivityKind.TIMED_REFRESH,
                keeps_capacity_on=True, at=NOON)  # fmt: skip
    assert ledger.pending_last_counted(CAPACITY) == NOON


def test_old_rows_are_pruned(factory: sessionmaker[Session]) -> None:
    ana, _bob = user_ids(factory)
    ledger = ActivityLedger(factory)
    for days in (0, 100):
        ledger.note(capacity_id=CAPACITY, user_id=ana, kind=ActivityKind.OPENED,
                    keeps_capacity_on=False, at=NOON - timedelta(days=days))  # fmt: skip
    ledger.flush()
    with session_scope(factory) as db:
        assert prune_activity(session=db, older_than=timedelta(days=90), now=NOON) == 1
    assert [row.minute for row in rows(factory)] == [NOON.replace(second=0)]


def test_a_flush_writes_many_rows_in_a_few_statements_merging_with_stored_ones(
    factory: sessionmaker[Session],
) -> None:
    ana, bob = user_ids(factory)
    first = ActivityLedger(factory)
    first.note(
        capacity_id=CAPACITY, user_id=ana, kind=ActivityKind.OPENED, keeps_capacity_on=True, at=NOON
    )
    first.flush()
    ledger = ActivityLedger(factory)
    for minute in range(450):  # more than one statement's worth
        for user in (ana, bob):
            ledger.note(
                capacity_id=CAPACITY,
                user_id=user,
                kind=ActivityKind.HEARTBEAT,
                keeps_capacity_on=True,
                at=NOON + timedelta(minutes=minute),
            )
    statements: list[str] = []
    engine = factory.kw["bind"]

    def count(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        assert ledger.flush() == 900
    finally:
        event.remove(engine, "before_cursor_execute", count)
    writes = [s for s in statements if s.lstrip().upper().startswith("INSERT")]
    assert len(writes) == 3  # 900 rows, 400 a statement
    stored = rows(factory)
    assert len(stored) == 900
    noon_ana = next(r for r in stored if r.user_id == ana and r.minute == NOON.replace(second=0))
    assert set(noon_ana.kinds.split(",")) == {"opened", "heartbeat"}
