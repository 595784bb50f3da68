"""The push channel to open viewers (server-sent events).

Viewers are told two things: the refresh policy changed (apply it now, no reload), and a user's
access changed (re-check by asking for a token: the token API decides, so there is one place
where access is judged). With several portal instances, events travel through Redis pub/sub so a
change made on one instance reaches viewers connected to any other.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import queue
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import redis

logger = logging.getLogger("embedportal.push")

DEFAULT_REDIS_CHANNEL = "embedportal:push"
# Every Redis call of the hub is bounded by this: a hung server costs seconds, never a stall.
REDIS_TIMEOUT_SECONDS = 1.0
MAX_BACKOFF_SECONDS = 5.0
PING_AFTER_QUIET_SECONDS = 5.0
# Events waiting for the publisher thread; beyond this they are delivered on this instance only.
OUTBOX_SIZE = 1000


@dataclass(frozen=True)
class PushEvent:
    """`kind` is the SSE event name; `user_id` None means every connected viewer."""

    kind: str
    data: dict[str, Any] = field(default_factory=dict)
    user_id: int | None = None

    def to_json(self) -> str:
        return json.dumps({"kind": self.kind, "data": self.data, "user_id": self.user_id})

    @classmethod
    def from_json(cls, raw: str | bytes) -> PushEvent:
        value = json.loads(raw)
        return cls(kind=str(value["kind"]), data=dict(value["data"]), user_id=value["user_id"])


# What the hub's one heartbeat task puts in a stream's queue (compared by identity): time for a
# heartbeat, or the stream's session has ended (signed out, blocked, idle) and it must close.
HEARTBEAT = PushEvent(kind="heartbeat")
SESSION_ENDED = PushEvent(kind="session-ended")
# Which of these web session ids are still signed in (run in a worker thread: it reads the
# database, once for every stream due, never once per stream).
LiveSessions = Callable[[list[str]], set[str]]


class Subscription:
    """One open viewer connection's queue of events."""

    def __init__(self, queue: asyncio.Queue[PushEvent]) -> None:
        self._queue = queue

    async def next(self, timeout: float | None = None) -> PushEvent | None:
        """The next event, or None when ``timeout`` seconds pass without one."""
        if timeout is None:
            return await self._queue.get()
        try:
            return await asyncio.wait_for(self._queue.get(), timeout)
        except TimeoutError:
            return None

    def end(self) -> None:
        """Make ``next`` answer SESSION_ENDED (the connection went away: stop serving it)."""
        if self._queue.full():
            self._queue.get_nowait()
        self._queue.put_nowait(SESSION_ENDED)


@dataclass(eq=False, slots=True)
class _Subscriber:
    user_id: int
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[PushEvent]
    session_id: str | None = None
    # When its next heartbeat (and session check) is due, on the monotonic clock.
    due: float = 0.0


class PushHub:
    """Fans events out to the subscribers of this process. `publish` is safe from any thread and
    never blocks: events are handed to a publisher thread, so a hung Redis cannot stall the event
    loop or turn a committed change into an error.

    With Redis, an event reaches local viewers through the subscription (the same way it reaches
    every other instance). While Redis is down or hung, or the subscription is not live, events
    are delivered locally as well, so this instance's viewers never miss one; a repeat is
    harmless (events say "apply this policy" or "re-check access"), a loss would not be.
    """

    def __init__(
        self,
        redis_url: str | None = None,
        *,
        channel: str = DEFAULT_REDIS_CHANNEL,
        queue_size: int = 100,
        redis_timeout_seconds: float = REDIS_TIMEOUT_SECONDS,
        max_backoff_seconds: float = MAX_BACKOFF_SECONDS,
    ) -> None:
        self._channel = channel
        self._subscribers: set[_Subscriber] = set()
        self._lock = threading.Lock()
        self._queue_size = queue_size
        self._redis_url = redis_url
        self._timeout = redis_timeout_seconds
        self._max_backoff = max_backoff_seconds
        self._listener: asyncio.Task[None] | None = None
        self._outbox: queue.Queue[PushEvent | None] = queue.Queue(maxsize=OUTBOX_SIZE)
        self._publisher_thread: threading.Thread | None = None
        # True while the subscription is live: only then do local viewers hear our own events
        # through Redis, and local delivery can be skipped.
        self._subscribed = False
        self._publisher_up = True
        self._publish_retry_at = 0.0
        self.fallbacks = 0  # events delivered locally because Redis could not carry them
        # Called with every event, local or from Redis (e.g. the read cache's invalidation).
        self._event_listeners: list[Callable[[PushEvent], None]] = []
        self._heartbeat: asyncio.Task[None] | None = None
        self._live_check_failing = False

    @property
    def connected(self) -> int:
        with self._lock:
            return len(self._subscribers)

    def add_listener(self, listener: Callable[[PushEvent], None]) -> None:
        """Call ``listener(event)`` for every event this process publishes or receives."""
        self._event_listeners.append(listener)

    def _notify_listeners(self, event: PushEvent) -> None:
        for listener in self._event_listeners:
            try:
                listener(event)
            except Exception:  # noqa: BLE001 - one listener must not keep events from viewers
                logger.warning("push: an event listener failed", exc_info=True)

    @property
    def uses_redis(self) -> bool:
        return bool(self._redis_url)

    @property
    def redis_live(self) -> bool:
        """Whether events currently travel through Redis (subscription live, publishing works)."""
        return self.uses_redis and self._subscribed and self._publisher_up

    def publish(self, event: PushEvent) -> None:
        if not self._redis_url:
            self._deliver(event)
            return
        # This process learns at once, before (and whether or not) Redis carries it.
        self._notify_listeners(event)
        self._ensure_publisher()
        try:
            self._outbox.put_nowait(event)
        except queue.Full:
            # Redis has been slow for a while: this instance's viewers still hear it.
            self._fall_back(event)

    def _deliver(self, event: PushEvent) -> None:
        """Every event, local or from Redis, passes through here."""
        self._notify_listeners(event)
        with self._lock:
            targets = [
                s for s in self._subscribers if event.user_id is None or s.user_id == event.user_id
            ]
        for subscriber in targets:
            if event.user_id is not None:
                # Addressed to this user (a sign-out, a block, an access change): the heartbeat
                # task checks the session at its next tick, not a heartbeat later.
                subscriber.due = 0.0
            try:
                subscriber.loop.call_soon_threadsafe(self._offer, subscriber.queue, event)
            except RuntimeError:  # that viewer's loop has closed; it is leaving anyway
                continue

    def _fall_back(self, event: PushEvent) -> None:
        self.fallbacks += 1
        self._deliver(event)

    @staticmethod
    def _offer(queue: asyncio.Queue[PushEvent], event: PushEvent) -> None:
        if queue.full():
            # A viewer this far behind only needs the newest state; drop the oldest.
            queue.get_nowait()
        queue.put_nowait(event)

    @contextmanager
    def subscribe(
        self, *, user_id: int, session_id: str | None = None, heartbeat_seconds: float = 0.0
    ) -> Iterator[Subscription]:
        """Receive the events for one user (and broadcasts) while the block runs; with
        ``heartbeat_seconds`` (see ``keep_alive``), HEARTBEAT that often, and SESSION_ENDED
        once ``session_id`` is no longer signed in.

        Registration happens on entry, so nothing published after entry is missed."""
        subscriber = _Subscriber(
            user_id=user_id,
            loop=asyncio.get_running_loop(),
            queue=asyncio.Queue(maxsize=self._queue_size),
            session_id=session_id,
            due=time.monotonic() + heartbeat_seconds if heartbeat_seconds > 0 else math.inf,
        )
        with self._lock:
            self._subscribers.add(subscriber)
        try:
            yield Subscription(subscriber.queue)
        finally:
            with self._lock:
                self._subscribers.discard(subscriber)

    # --- Heartbeats: one task for every open stream of this process ----------------------

    def keep_alive(self, *, every: float, live_sessions: LiveSessions | None = None) -> None:
        """Start, once, the task that puts HEARTBEAT in each stream's queue every ``every``
        seconds (from its own opening, so the beats of many streams are spread out) and checks
        their sessions then, in one database read for all the streams due; a stream whose
        session ended gets SESSION_ENDED instead. One task and one timer for the process rather
        than a sleeping timer per open viewer."""
        if self._heartbeat is None or self._heartbeat.done():
            self._heartbeat = asyncio.get_running_loop().create_task(
                self._beat(every, live_sessions), name="push-heartbeat"
            )

    async def _beat(self, every: float, live_sessions: LiveSessions | None) -> None:
        loop = asyncio.get_running_loop()
        tick = min(1.0, every / 4)
        while True:
            await asyncio.sleep(tick)
            now = time.monotonic()
            with self._lock:
                due = [s for s in self._subscribers if s.due <= now and s.loop is loop]
            if not due:
                continue
            live = await self._live(live_sessions, due)
            for subscriber in due:
                subscriber.due = now + every
                ended = (
                    live is not None
                    and subscriber.session_id is not None
                    and subscriber.session_id not in live
                )
                self._offer(subscriber.queue, SESSION_ENDED if ended else HEARTBEAT)

    async def _live(
        self, live_sessions: LiveSessions | None, due: list[_Subscriber]
    ) -> set[str] | None:
        """The live sessions among those due; None when unknown (the database is down: a
        viewer is not cut off for that, its session is checked again at its next beat)."""
        ids = sorted({s.session_id for s in due if s.session_id is not None})
        if live_sessions is None or not ids:
            return None
        try:
            live = await asyncio.to_thread(live_sessions, ids)
        except Exception as error:  # noqa: BLE001 - a database outage must not end push streams
            if not self._live_check_failing:
                logger.warning(
                    "push: open viewers' sessions not checked (%s)", type(error).__name__
                )
                self._live_check_failing = True
            return None
        self._live_check_failing = False
        return live

    async def start(self) -> None:
        """With Redis, listen to the shared channel and deliver to local subscribers."""
        if self._redis_url and self._listener is None:
            self._listener = asyncio.create_task(self._listen())

    async def stop(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
            self._heartbeat = None
        if self._listener is not None:
            self._listener.cancel()
            try:
                await self._listener
            except asyncio.CancelledError:
                pass
            self._listener = None
        with self._lock:
            thread, self._publisher_thread = self._publisher_thread, None
        if thread is not None:
            with contextlib.suppress(queue.Full):  # a full outbox: the daemon thread is dropped
                self._outbox.put_nowait(None)
            # The thread's Redis calls are bounded by the timeout; wait a little longer.
            await asyncio.to_thread(thread.join, self._timeout * 3 + 1)

    # --- Publishing (a thread of its own: redis-py's blocking client, bounded by timeouts) --

    def _ensure_publisher(self) -> None:
        with self._lock:
            if self._publisher_thread is None:
                self._publisher_thread = threading.Thread(
                    target=self._publish_loop, name="push-publisher", daemon=True
                )
                self._publisher_thread.start()

    def _publish_loop(self) -> None:
        assert self._redis_url is not None
        client = redis.Redis.from_url(
            self._redis_url,
            socket_timeout=self._timeout,
            socket_connect_timeout=self._timeout,
        )
        backoff = Backoff(self._max_backoff)
        try:
            while True:
                try:
                    # While Redis is down, wake up to see whether it is back, events or not.
                    event = self._outbox.get(timeout=None if self._publisher_up else 0.5)
                except queue.Empty:
                    if time.monotonic() >= self._publish_retry_at:
                        self._probe_publisher(client, backoff)
                    continue
                if event is None:
                    return
                if not self._publisher_up and time.monotonic() < self._publish_retry_at:
                    self._fall_back(event)  # Redis is down: do not wait on it per event
                    continue
                try:
                    client.publish(self._channel, event.to_json())
                except Exception as error:  # noqa: BLE001 - Redis down or hung: deliver locally
                    if self._publisher_up:
                        logger.warning(
                            "push: Redis unreachable for publishing (%s); delivering on this "
                            "instance only until it is back",
                            type(error).__name__,
                        )
                    self._publisher_up = False
                    self._publish_retry_at = time.monotonic() + backoff.next()
                    self._fall_back(event)
                    continue
                self._publisher_recovered(backoff)
                if not self._subscribed:
                    # Published, but our own subscription cannot echo it back yet.
                    self._fall_back(event)
        finally:
            client.close()

    def _probe_publisher(self, client: redis.Redis, backoff: Backoff) -> None:
        try:
            client.ping()
        except Exception:  # noqa: BLE001 - still down: try again later
            self._publish_retry_at = time.monotonic() + backoff.next()
            return
        self._publisher_recovered(backoff)

    def _publisher_recovered(self, backoff: Backoff) -> None:
        if not self._publisher_up:
            logger.warning("push: Redis reachable again for publishing")
            self._publisher_up = True
            backoff.reset()

    # --- Listening -----------------------------------------------------------------------

    async def _listen(self) -> None:
        import redis.asyncio as aioredis

        assert self._redis_url is not None
        backoff = Backoff(self._max_backoff)
        lost_logged = False
        while True:
            client = aioredis.Redis.from_url(
                self._redis_url,
                socket_timeout=self._timeout,
                socket_connect_timeout=self._timeout,
            )
            try:
                async with client.pubsub() as pubsub:
                    async with asyncio.timeout(self._timeout):
                        await pubsub.subscribe(self._channel)
                        # A server that accepts and never answers must not pass for live.
                        while await pubsub.get_message(timeout=self._timeout) is None:
                            pass
                    self._subscribed = True
                    backoff.reset()
                    if lost_logged:
                        logger.warning("push: Redis subscription restored")
                        lost_logged = False
                    await self._pump(pubsub)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - a lost Redis connection must not end pushes
                if not lost_logged:
                    logger.warning(
                        "push: Redis subscription lost (%s); delivering on this instance only "
                        "and retrying with backoff",
                        type(error).__name__,
                    )
                    lost_logged = True
            finally:
                self._subscribed = False
                with contextlib.suppress(Exception):
                    await client.aclose()
            await asyncio.sleep(backoff.next())

    async def _pump(self, pubsub: Any) -> None:
        """Deliver messages; ping when quiet, so a hung server is noticed within seconds."""
        quiet_since = time.monotonic()
        pinged_at: float | None = None
        while True:
            message = await pubsub.get_message(timeout=min(1.0, self._timeout))
            now = time.monotonic()
            if message is not None:
                quiet_since, pinged_at = now, None
                if message.get("type") == "message":
                    try:
                        event = PushEvent.from_json(message["data"])
                    except (ValueError, KeyError, TypeError):
                        logger.warning("push: ignored a malformed event on the channel")
                        continue
                    self._deliver(event)
                continue
            if pinged_at is not None and now - pinged_at > self._timeout:
                raise TimeoutError("Redis did not answer a ping")
            if pinged_at is None and now - quiet_since > PING_AFTER_QUIET_SECONDS:
                await pubsub.ping()
                pinged_at = now


class Backoff:
    """Capped exponential backoff with jitter, for reconnecting to Redis."""

    def __init__(self, cap: float, *, first: float = 0.25) -> None:
        self._cap = cap
        self._first = first
        self._next = first

    def next(self) -> float:
        delay = self._next
        self._next = min(self._cap, self._next * 2)
        return delay * random.uniform(0.8, 1.0)

    def reset(self) -> None:
        self._next = self._first


def notify_access_changed(hub: PushHub, user_ids: Iterable[int]) -> None:
    """Tell these users' open viewers that their access changed: each viewer asks for a token
    again, and the token API's answer (a token for the current identity, or 401/403) decides.

    Call it after the change is committed, or a viewer may re-check before it is visible. Best
    effort: when the fan-out fails the change stands, and viewers find out at their next refresh.
    """
    targets = sorted(set(user_ids))
    for told, user_id in enumerate(targets):
        try:
            hub.publish(PushEvent(kind="access", user_id=user_id))
        except Exception:  # noqa: BLE001 - a lost Redis must not turn a saved change into a 500
            logger.warning(
                "push: %d of %d users not told about an access change",
                len(targets) - told,
                len(targets),
                exc_info=True,
            )
            return
