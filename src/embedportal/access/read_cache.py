"""A small in-process cache for what every request reads and almost nothing changes: sessions,
access decisions and the organization's settings.

The token API is called by every open viewer, often all at once; reading the same rows from the
database for each call is what made a burst stall. Entries live a few seconds at most, and are
dropped at once when something they depend on may have changed:

* a push event (access changed, settings changed: see web/push.py), on this instance or, through
  Redis, on any other;
* a commit in this process that wrote to a table access depends on (``watch_commits``), so a
  change made here is never served stale, pushed or not.

The TTL bounds staleness for changes that reach neither (another instance writing without Redis);
an entry is answered from for up to one more TTL while its reload runs, so the bound is about two.
Invalidation drops everything: it is rare, and a miss only costs the read the cache saves.
A load that started before an invalidation is not stored (the generation check), so a reader
racing a writer cannot put the old state back.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, TypeVar, cast

import anyio.to_thread
from sqlalchemy import event
from sqlalchemy.orm import ORMExecuteState, Session, sessionmaker

from embedportal.db.models import (
    AuditEntry,
    CapacityActivity,
    LoginThrottle,
    ViewerEventCount,
    WebSession,
)

DEFAULT_TTL_SECONDS = 5.0
DEFAULT_MAX_ENTRIES = 10_000

# Tables written on hot paths that no cached decision reads: writing them must not empty the
# cache (the activity ledger and telemetry flush every few seconds).
_UNWATCHED_TABLES = frozenset(
    {
        AuditEntry.__tablename__,
        CapacityActivity.__tablename__,
        ViewerEventCount.__tablename__,
        # Every sign-in attempt writes it; a flood of wrong passwords must not empty the cache.
        LoginThrottle.__tablename__,
    }
)
_DIRTY = "embedportal.read_cache.dirty"

Monotonic = Callable[[], float]
T = TypeVar("T")


class ReadCache:
    """``get``/``put`` by key, bounded (least recently stored goes first), thread-safe."""

    def __init__(
        self,
        *,
        ttl_seconds: float = DEFAULT_TTL_SECONDS,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        monotonic: Monotonic = time.monotonic,
    ) -> None:
        self.ttl_seconds = ttl_seconds
        self._max_entries = max(1, max_entries)
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._items: OrderedDict[Hashable, tuple[float, Any]] = OrderedDict()
        self._generation = 0
        # Loads under way, so a burst that finds an entry expired waits for one read of it.
        self._loading: dict[Hashable, tuple[asyncio.AbstractEventLoop, asyncio.Task[Any]]] = {}

    @property
    def generation(self) -> int:
        """Take it before loading; ``put`` drops the value if an invalidation came between."""
        return self._generation

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: Hashable) -> Any | None:
        if self.ttl_seconds <= 0:
            return None
        # No lock: a dict read is atomic, and every open viewer's call comes through here. An
        # expired entry is dropped under the lock, and only if no fresher one replaced it.
        item = self._items.get(key)
        if item is None:
            return None
        expires, value = item
        if self._monotonic() >= expires:
            with self._lock:
                if self._items.get(key) is item:
                    del self._items[key]
            return None
        return value

    def put(self, key: Hashable, value: Any, *, generation: int) -> None:
        if self.ttl_seconds <= 0:
            return
        with self._lock:
            if generation != self._generation:
                return
            self._items[key] = (self._monotonic() + self.ttl_seconds, value)
            self._items.move_to_end(key)
            while len(self._items) > self._max_entries:
                self._items.popitem(last=False)

    async def get_or_load(self, key: Hashable, load: Callable[[], T]) -> T:
        """The cached value, or ``load()`` run in a worker thread (it blocks on the database)
        once for every caller that asks for ``key`` meanwhile. ``load`` must not return None.

        An entry that expired less than a TTL ago is answered from while one reload renews it
        behind the callers: every open viewer asks for the same few entries, and all of them
        waiting on one read each time one expires was a stall every few seconds. An
        invalidation still drops everything at once, so a change is never answered from."""
        item = self._items.get(key) if self.ttl_seconds > 0 else None
        if item is not None:
            expires, value = item
            now = self._monotonic()
            if now < expires:
                return cast(T, value)
            if now < expires + self.ttl_seconds:
                self._loading_task(key, load)
                return cast(T, value)
        value = await asyncio.shield(self._loading_task(key, load))
        return cast(T, value)

    def _loading_task(self, key: Hashable, load: Callable[[], T]) -> asyncio.Task[T]:
        """The load of ``key`` under way on this loop, or a new one, stored when it lands."""
        loop = asyncio.get_running_loop()
        pending = self._loading.get(key)
        if pending is not None and pending[0] is loop and not pending[1].done():
            return cast("asyncio.Task[T]", pending[1])
        generation = self._generation
        task: asyncio.Task[T] = loop.create_task(anyio.to_thread.run_sync(load))
        self._loading[key] = (loop, task)

        def landed(done: asyncio.Task[T]) -> None:
            if self._loading.get(key, (None, None))[1] is done:
                del self._loading[key]
            # exception() also marks a failure seen: a reload nobody awaited may fail.
            if not done.cancelled() and done.exception() is None:
                self.put(key, done.result(), generation=generation)

        task.add_done_callback(landed)
        return task

    def invalidate(self, *_event: object) -> None:
        """Forget everything (callable as a push listener: the event itself does not matter)."""
        with self._lock:
            self._generation += 1
            self._items.clear()

    def watch_commits(self, factory: sessionmaker[Session]) -> None:
        """Invalidate after every commit of ``factory``'s sessions that wrote a watched table."""
        event.listen(factory, "before_flush", _note_flush)
        event.listen(factory, "do_orm_execute", _note_statement)
        event.listen(factory, "after_commit", self._after_commit)
        event.listen(factory, "after_soft_rollback", _forget)

    def _after_commit(self, session: Session) -> None:
        if session.info.pop(_DIRTY, False):
            self.invalidate()


def _watched(table_name: str | None) -> bool:
    return table_name not in _UNWATCHED_TABLES


def _note_flush(session: Session, _context: Any, _instances: Any) -> None:
    if session.info.get(_DIRTY):
        return
    for obj in (*session.new, *session.deleted):
        if _watched(getattr(obj, "__tablename__", None)):
            session.info[_DIRTY] = True
            return
    for obj in session.dirty:
        # A session's last-seen stamp changes once a minute per viewer; nothing cached
        # depends on it (a session's end is a delete, which is watched above).
        if isinstance(obj, WebSession):
            continue
        if _watched(getattr(obj, "__tablename__", None)) and session.is_modified(obj):
            session.info[_DIRTY] = True
            return


def _note_statement(state: ORMExecuteState) -> None:
    if not (state.is_update or state.is_delete or state.is_insert):
        return
    table = getattr(state.statement, "table", None)
    if _watched(getattr(table, "name", None)):
        state.session.info[_DIRTY] = True


def _forget(session: Session, _previous_transaction: Any) -> None:
    session.info.pop(_DIRTY, None)
