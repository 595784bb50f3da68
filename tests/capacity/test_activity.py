"""What counts as activity, the minute ledger, and the last counted activity."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from embedportal.capacity.activity import (
    ActivityKind,
    LedgerKey,
    LedgerRow,
    counts_as_activity,
    last_counted_activity,
    ledger_key,
    minute_of,
    record_activity,
    users_active_since,
)

T0 = datetime(2026, 3, 29, 0, 59, 30, tzinfo=UTC)  # Lisbon springs forward at 01:00 UTC


@pytest.mark.parametrize(
    ("kind", "keeps_on", "counts"),
    [
        (ActivityKind.OPENED, False, True),
        (ActivityKind.OPENED, True, True),
        (ActivityKind.INTERACTION, False, True),
        (ActivityKind.INTERACTION, True, True),
        (ActivityKind.HEARTBEAT, False, False),
        (ActivityKind.HEARTBEAT, True, True),
        (ActivityKind.TIMED_REFRESH, False, False),
        (ActivityKind.TIMED_REFRESH, True, True),
    ],
)
def test_what_counts(kind: ActivityKind, keeps_on: bool, counts: bool) -> None:
    assert counts_as_activity(kind=kind, keeps_capacity_on=keeps_on) is counts


def test_every_kind_is_classified() -> None:
    assert {kind.value for kind in ActivityKind} == {
        "opened",
        "interaction",
        "heartbeat",
        "timed_refresh",
    }


@pytest.mark.parametrize(
    ("at", "minute"),
    [
        (T0, datetime(2026, 3, 29, 0, 59, tzinfo=UTC)),
        (datetime(2026, 3, 29, 1, 0, tzinfo=UTC), datetime(2026, 3, 29, 1, 0, tzinfo=UTC)),
        (
            datetime(2026, 3, 29, 2, 0, 59, 999999, tzinfo=timezone(timedelta(hours=1))),
            datetime(2026, 3, 29, 1, 0, tzinfo=UTC),
        ),
        (
            datetime(2019, 2, 16, 23, 30, 10, tzinfo=timezone(timedelta(hours=-3))),
            datetime(2019, 2, 17, 2, 30, tzinfo=UTC),
        ),
    ],
)
def test_minute_buckets_are_utc_minutes(at: datetime, minute: datetime) -> None:
    assert minute_of(at=at) == minute
    assert minute_of(at=at).tzinfo is UTC


def test_naive_instants_are_refused() -> None:
    with pytest.raises(ValueError):
        minute_of(at=datetime(2026, 1, 1, 12, 0))
    with pytest.raises(ValueError):
        users_active_since(rows=[], since=datetime(2026, 1, 1))


def test_a_minute_of_events_is_one_row() -> None:
    row = None
    for second, kind in [
        (5, ActivityKind.HEARTBEAT),
        (20, ActivityKind.OPENED),
        (40, ActivityKind.HEARTBEAT),
    ]:
        row = record_activity(
            row=row,
            capacity="cap",
            user_id=7,
            kind=kind,
            at=datetime(2026, 5, 4, 9, 30, second, tzinfo=UTC),
            keeps_capacity_on=False,
        )
    assert row is not None
    assert row.key == LedgerKey(
        capacity="cap", user_id=7, minute=datetime(2026, 5, 4, 9, 30, tzinfo=UTC)
    )
    assert row.kinds == {ActivityKind.HEARTBEAT, ActivityKind.OPENED}
    assert row.counted
    # The heartbeat at :40 did not count (no keeps-on): the opening at :20 is the last.
    assert row.last_counted_at == datetime(2026, 5, 4, 9, 30, 20, tzinfo=UTC)


def test_a_minute_of_uncounted_events_is_not_activity() -> None:
    row = record_activity(
        row=None,
        capacity="cap",
        user_id=1,
        kind=ActivityKind.TIMED_REFRESH,
        at=T0,
        keeps_capacity_on=False,
    )
    assert not row.counted
    assert last_counted_activity(rows=[row]) is None


def test_keeps_on_heartbeats_count() -> None:
    row = record_activity(
        row=None,
        capacity="cap",
        user_id=1,
        kind=ActivityKind.HEARTBEAT,
        at=T0,
        keeps_capacity_on=True,
    )
    assert row.last_counted_at == T0


def test_folding_an_event_into_another_minute_s_row_is_an_error() -> None:
    row = record_activity(
        row=None,
        capacity="cap",
        user_id=1,
        kind=ActivityKind.OPENED,
        at=T0,
        keeps_capacity_on=False,
    )
    with pytest.raises(ValueError):
        record_activity(
            row=row,
            capacity="cap",
            user_id=1,
            kind=ActivityKind.OPENED,
            at=T0 + timedelta(minutes=1),
            keeps_capacity_on=False,
        )
    with pytest.raises(ValueError):
        record_activity(
            row=row,
            capacity="cap",
            user_id=2,
            kind=ActivityKind.OPENED,
            at=T0,
            keeps_capacity_on=False,
        )


EVENT = st.tuples(
    st.sampled_from(list(ActivityKind)),
    st.integers(min_value=0, max_value=59_999_999),  # microseconds into one minute
    st.booleans(),
)


@settings(derandomize=True, max_examples=200)
@given(events=st.lists(EVENT, min_size=1, max_size=12), seed=st.integers(0, 1000))
def test_rows_are_order_independent_and_idempotent(
    events: list[tuple[ActivityKind, int, bool]], seed: int
) -> None:
    base = datetime(2026, 10, 25, 1, 30, tzinfo=UTC)

    def fold(order: list[tuple[ActivityKind, int, bool]]) -> LedgerRow:
        row: LedgerRow | None = None
        for kind, micros, keeps_on in order:
            row = record_activity(
                row=row,
                capacity="cap",
                user_id=3,
                kind=kind,
                at=base + timedelta(microseconds=micros),
                keeps_capacity_on=keeps_on,
            )
        assert row is not None
        return row

    in_order = fold(events)
    shuffled = list(events)
    random.Random(seed).shuffle(shuffled)
    assert fold(shuffled) == in_order
    assert fold(events + events) == in_order
    counted = [
        base + timedelta(microseconds=micros)
        for kind, micros, keeps_on in events
        if counts_as_activity(kind=kind, keeps_capacity_on=keeps_on)
    ]
    assert in_order.last_counted_at == (max(counted) if counted else None)
    assert in_order.kinds == {kind for kind, _, _ in events}


def _row(capacity: str, user_id: int, at: datetime | None, minute: datetime) -> LedgerRow:
    return LedgerRow(
        key=ledger_key(capacity=capacity, user_id=user_id, at=minute),
        kinds=frozenset({ActivityKind.OPENED if at else ActivityKind.HEARTBEAT}),
        last_counted_at=at,
    )


ROWS = [
    _row(
        "a", 1, datetime(2026, 5, 4, 9, 0, 10, tzinfo=UTC), datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
    ),
    _row(
        "a", 2, datetime(2026, 5, 4, 9, 5, 50, tzinfo=UTC), datetime(2026, 5, 4, 9, 5, tzinfo=UTC)
    ),
    _row("a", 3, None, datetime(2026, 5, 4, 9, 9, tzinfo=UTC)),
    _row("b", 4, datetime(2026, 5, 4, 9, 8, 0, tzinfo=UTC), datetime(2026, 5, 4, 9, 8, tzinfo=UTC)),
]


def test_last_counted_activity_of_a_capacity_and_of_all() -> None:
    assert last_counted_activity(rows=ROWS, capacity="a") == datetime(
        2026, 5, 4, 9, 5, 50, tzinfo=UTC
    )
    assert last_counted_activity(rows=ROWS, capacity="b") == datetime(2026, 5, 4, 9, 8, tzinfo=UTC)
    assert last_counted_activity(rows=ROWS) == datetime(2026, 5, 4, 9, 8, tzinfo=UTC)
    assert last_counted_activity(rows=ROWS, capacity="c") is None
    assert last_counted_activity(rows=[]) is None
    assert last_counted_activity(rows=iter(ROWS), capacity="a") is not None  # any iterable


def test_users_active_since() -> None:
    since = datetime(2026, 5, 4, 9, 5, 50, tzinfo=UTC)
    assert users_active_since(rows=ROWS, since=since, capacity="a") == {2}
    assert users_active_since(rows=ROWS, since=since) == {2, 4}
    assert users_active_since(rows=ROWS, since=since + timedelta(seconds=1), capacity="a") == set()
    local = since.astimezone(timezone(timedelta(hours=-3)))  # the same instant, another offset
    assert users_active_since(rows=ROWS, since=local, capacity="a") == {2}
