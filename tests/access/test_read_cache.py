"""The read cache: entries live seconds at most, the cache stays bounded, and every change that
access depends on drops it at once (a commit in this process, a push event from any instance)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import delete
from sqlalchemy.orm import Session, sessionmaker

from embedportal.access.audit import record
from embedportal.access.read_cache import ReadCache
from embedportal.access.sessions import start_session
from embedportal.db.base import utcnow
from embedportal.db.models import Group, User, WebSession
from embedportal.db.session import create_db_engine, create_session_factory, session_scope
from embedportal.web.push import PushEvent, PushHub


class Ticks:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_an_entry_lives_its_ttl_and_no_longer() -> None:
    ticks = Ticks()
    cache = ReadCache(ttl_seconds=5, monotonic=ticks)
    cache.put("k", "v", generation=cache.generation)
    ticks.now += 4.9
    assert cache.get("k") == "v"
    ticks.now += 0.2
    assert cache.get("k") is None


def test_the_cache_is_bounded_and_forgets_the_oldest_first() -> None:
    cache = ReadCache(ttl_seconds=5, max_entries=3)
    for n in range(5):
        cache.put(n, n, generation=cache.generation)
    assert len(cache) == 3
    assert [cache.get(n) for n in range(5)] == [None, None, 2, 3, 4]


def test_a_load_that_began_before_an_invalidation_is_not_stored() -> None:
    cache = ReadCache(ttl_seconds=5)
    generation = cache.generation
    cache.invalidate()  # a change committed while the (old) value was being read
    cache.put("k", "old", generation=generation)
    assert cache.get("k") is None


def test_a_zero_ttl_turns_the_cache_off() -> None:
    cache = ReadCache(ttl_seconds=0)
    cache.put("k", "v", generation=cache.generation)
    assert cache.get("k") is None


@pytest.fixture
def factory(database_url: str) -> Iterator[sessionmaker[Session]]:
    engine = create_db_engine(database_url)
    yield create_session_factory(engine)
    engine.dispose()


@pytest.fixture
def watched(factory: sessionmaker[Session]) -> ReadCache:
    cache = ReadCache(ttl_seconds=60)
    cache.watch_commits(factory)
    return cache


def warm(cache: ReadCache) -> None:
    cache.put("k", "v", generation=cache.generation)


def test_a_commit_that_changes_access_drops_the_cache(
    factory: sessionmaker[Session], watched: ReadCache
) -> None:
    warm(watched)
    with session_scope(factory) as db:
        db.add(Group(name="Team"))
    assert watched.get("k") is None
    warm(watched)
    with session_scope(factory) as db:
        db.execute(delete(Group))  # a bulk statement, not an object, counts too
    assert watched.get("k") is None


def test_writes_no_cached_decision_reads_leave_it_alone(
    factory: sessionmaker[Session], watched: ReadCache
) -> None:
    with session_scope(factory) as db:
        user = User(email="ana@example.com", password_hash="x")
        db.add(user)
        db.flush()
        started = start_session(session=db, user=user)
        session_id = started.record.id
    warm(watched)
    with session_scope(factory) as db:
        record(session=db, actor=None, action="token.issued")  # audit and telemetry
        stored = db.get(WebSession, session_id)
        assert stored is not None
        stored.last_seen_at = utcnow() + timedelta(minutes=2)  # the once-a-minute stamp
    with session_scope(factory) as db:
        db.get(User, 1)  # reads commit nothing
    assert watched.get("k") == "v"
    with session_scope(factory) as db:
        db.execute(delete(WebSession).where(WebSession.id == session_id))  # signing out
    assert watched.get("k") is None


def test_a_rolled_back_change_does_not_count_for_the_next_commit(
    factory: sessionmaker[Session], watched: ReadCache
) -> None:
    db = factory()
    try:
        db.add(Group(name="Team"))
        db.flush()
        db.rollback()
        warm(watched)
        db.commit()
    finally:
        db.close()
    assert watched.get("k") == "v"


def test_every_push_event_drops_it_without_redis() -> None:
    cache = ReadCache(ttl_seconds=60)
    hub = PushHub()
    hub.add_listener(cache.invalidate)
    warm(cache)
    hub.publish(PushEvent(kind="access", user_id=7))
    assert cache.get("k") is None


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_an_event_published_on_another_instance_drops_it_through_redis(
    redis_url: str, anyio_backend: str
) -> None:
    channel = f"embedportal-test:{uuid.uuid4().hex}:push"
    here, there = PushHub(redis_url, channel=channel), PushHub(redis_url, channel=channel)
    cache = ReadCache(ttl_seconds=60)
    here.add_listener(cache.invalidate)
    await here.start()
    try:
        # The subscription is up once a probe event comes back through Redis.
        for _ in range(100):
            warm(cache)
            await asyncio.to_thread(there.publish, PushEvent(kind="probe"))
            await asyncio.sleep(0.05)
            if cache.get("k") is None:
                break
        warm(cache)
        await asyncio.to_thread(there.publish, PushEvent(kind="policy"))
        for _ in range(100):
            if cache.get("k") is None:
                break
            await asyncio.sleep(0.02)
        assert cache.get("k") is None
    finally:
        await here.stop()
        await there.stop()


def test_a_listener_that_fails_does_not_stop_the_event() -> None:
    hub = PushHub()
    seen: list[PushEvent] = []

    def broken(_event: PushEvent) -> None:
        raise RuntimeError("boom")

    hub.add_listener(broken)
    hub.add_listener(seen.append)
    hub.publish(PushEvent(kind="policy"))
    assert [event.kind for event in seen] == ["policy"]


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_burst_that_finds_an_entry_missing_reads_it_once(anyio_backend: str) -> None:
    cache = ReadCache(ttl_seconds=60)
    loads: list[int] = []

    def load() -> str:
        loads.append(1)
        time.sleep(0.05)  # the database, in a worker thread
        return "value"

    values = await asyncio.gather(*(cache.get_or_load("k", load) for _ in range(50)))
    assert values == ["value"] * 50
    assert len(loads) == 1
    assert await cache.get_or_load("k", load) == "value" and len(loads) == 1


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_load_overtaken_by_a_change_answers_its_callers_but_is_not_kept(
    anyio_backend: str,
) -> None:
    cache = ReadCache(ttl_seconds=60)

    def load() -> str:
        cache.invalidate()  # a commit lands while the old state is being read
        return "old"

    assert await cache.get_or_load("k", load) == "old"
    assert cache.get("k") is None


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_failed_load_is_raised_to_its_callers_and_not_kept(anyio_backend: str) -> None:
    cache = ReadCache(ttl_seconds=60)

    def load() -> str:
        raise RuntimeError("database down")

    with pytest.raises(RuntimeError):
        await cache.get_or_load("k", load)
    assert await cache.get_or_load("k", lambda: "back") == "back"


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_an_entry_just_expired_answers_while_one_reload_renews_it(
    anyio_backend: str,
) -> None:
    """Every open viewer reads the same few entries: when one expires they are answered from
    it while one reload runs, not all held on the database; an entry older than two TTLs, or
    an invalidated one, is waited for."""
    ticks = Ticks()
    cache = ReadCache(ttl_seconds=5, monotonic=ticks)
    loads: list[str] = []

    def load() -> str:
        loads.append("read")
        time.sleep(0.05)
        return f"value {len(loads)}"

    assert await cache.get_or_load("k", load) == "value 1"
    ticks.now += 6  # expired a second ago
    answers = await asyncio.gather(*(cache.get_or_load("k", load) for _ in range(20)))
    assert answers == ["value 1"] * 20  # at once, from the entry that just expired
    for _ in range(100):
        if cache.get("k") == "value 2":
            break
        await asyncio.sleep(0.01)
    assert loads == ["read", "read"]  # one reload behind them, now stored
    ticks.now += 11  # two TTLs past: too old to answer from
    assert await cache.get_or_load("k", load) == "value 3"
    cache.invalidate()
    assert await cache.get_or_load("k", load) == "value 4"
