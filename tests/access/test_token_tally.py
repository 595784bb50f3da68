"""The token API's tally: every token counted in memory and written in bulk to the day's
counters, one audit entry for a user's first token of a report each UTC day, nothing lost when
the database fails, and what Viewer health shows of it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from embedportal.access.viewer_health import TokenTally, viewer_health
from embedportal.db.models import AuditEntry, Report, User, ViewerEventCount
from embedportal.db.session import create_db_engine, create_session_factory, session_scope

NOON = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = NOON

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def factory(database_url: str) -> Iterator[sessionmaker[Session]]:
    engine = create_db_engine(database_url)
    made = create_session_factory(engine)
    with session_scope(made) as db:
        db.add(
            Report(id="r1", workspace_id="w", dataset_id="d", name="Sales", embed_url="https://x")
        )
        db.add(User(email="ana@example.com", password_hash="x"))
    yield made
    engine.dispose()


def note(tally: TokenTally, *, user_id: int = 1, shared: bool, reason: str = "margin") -> None:
    tally.note(
        user_id=user_id,
        user_email="ana@example.com",
        report_id="r1",
        token_id="tid",
        shared=shared,
        expiration="2026-12-01T13:00:00Z",
        reason=reason,
    )


def entries(factory: sessionmaker[Session]) -> list[AuditEntry]:
    with session_scope(factory) as db:
        found = list(db.scalars(select(AuditEntry).where(AuditEntry.action == "token.issued")))
        db.expunge_all()
        return found


def test_every_token_is_counted_and_the_first_of_the_day_is_audited(
    factory: sessionmaker[Session],
) -> None:
    clock = Clock()
    tally = TokenTally(factory, clock=clock)
    note(tally, shared=False, reason="load")
    for _ in range(4):
        note(tally, shared=True)
    assert entries(factory) == []  # nothing written before the flush
    assert tally.flush() == 5
    assert tally.flush() == 0
    [entry] = entries(factory)
    assert entry.actor_user_id == 1 and entry.target_id == "r1"
    assert entry.detail == {
        "tokenId": "tid",
        "shared": False,
        "expiration": "2026-12-01T13:00:00Z",
        "reason": "load",
        "firstToday": True,
    }
    with session_scope(factory) as db:
        counts = {(r.event_type, r.reason): r.count for r in db.scalars(select(ViewerEventCount))}
        health = viewer_health(session=db, first_day=NOON.date(), last_day=NOON.date(), now=NOON)
    assert counts == {("tokenMinted", "load"): 1, ("tokenShared", "margin"): 4}
    assert (health.totals.handed_out, health.totals.minted) == (5, 1)
    assert health.totals.refresh_total == 0  # tokens are not viewer refreshes

    clock.now += timedelta(days=1)  # a new UTC day: a new first token
    note(tally, shared=True)
    tally.flush()
    assert len(entries(factory)) == 2


def test_a_failed_flush_keeps_everything_for_the_next(
    factory: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    tally = TokenTally(factory, clock=Clock())
    note(tally, shared=False)
    note(tally, shared=True)

    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("database down")

    monkeypatch.setattr("embedportal.access.viewer_health._add", broken)
    with pytest.raises(RuntimeError):
        tally.flush()
    monkeypatch.undo()
    assert tally.pending == 2
    assert tally.flush() == 2
    assert len(entries(factory)) == 1


def test_a_user_removed_before_the_flush_keeps_an_entry_without_the_link(
    factory: sessionmaker[Session],
) -> None:
    tally = TokenTally(factory, clock=Clock())
    note(tally, user_id=999, shared=False)
    assert tally.flush() == 1
    [entry] = entries(factory)
    assert entry.actor_user_id is None and entry.actor_email == "ana@example.com"
