"""The push channel to open viewers (server-sent events).

Viewers are told two things: the refresh policy changed (apply it now, no reload), and a user's
access changed (re-check by asking for a token: the token API decides, so there is one place
where access is judged). With several portal instances, events travel through Redis pub/sub so a
change made on one instance reaches viewers connected to any other.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import redis

logger = logging.getLogger("embedportal.push")

DEFAULT_REDIS_CHANNEL = "embedportal:push"


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


class Subscription:
    """One open viewer connection's queue of events."""

    def __init__(self, queue: asyncio.Queue[PushEvent]) -> None:
        self._queue = queue

    async def next(self, timeout: float | None = None) -> PushEvent | None:
        """The next event, or None when ``timeout`` seconds pass without one."""
        try:
            return await asyncio.wait_for(self._queue.get(), timeout)
        except TimeoutError:
            return None


@dataclass(eq=False)
class _Subscriber:
    user_id: int
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[PushEvent]


class PushHub:
    """Fans events out to the subscribers of this process. `publish` is safe from any thread."""

    def __init__(
        self,
        redis_url: str | None = None,
        *,
        channel: str = DEFAULT_REDIS_CHANNEL,
        queue_size: int = 100,
    ) -> None:
        self._channel = channel
        self._subscribers: set[_Subscriber] = set()
        self._lock = threading.Lock()
        self._queue_size = queue_size
        self._redis_url = redis_url
        self._listener: asyncio.Task[None] | None = None
        # One publishing client (its own connection pool, thread-safe), made on first use.
        self._publisher: redis.Redis | None = None
        # Called with every event, local or from Redis (e.g. the read cache's invalidation).
        self._event_listeners: list[Callable[[PushEvent], None]] = []

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

    def publish(self, event: PushEvent) -> None:
        if self._redis_url:
            # This process learns at once, before (and whether or not) Redis carries it.
            self._notify_listeners(event)
            with self._lock:
                if self._publisher is None:
                    self._publisher = redis.Redis.from_url(self._redis_url)
                publisher = self._publisher
            publisher.publish(self._channel, event.to_json())
        else:
            self._deliver(event)

    def _deliver(self, event: PushEvent) -> None:
        self._notify_listeners(event)
        with self._lock:
            targets = [
                s for s in self._subscribers if event.user_id is None or s.user_id == event.user_id
            ]
        for subscriber in targets:
            subscriber.loop.call_soon_threadsafe(self._offer, subscriber.queue, event)

    @staticmethod
    def _offer(queue: asyncio.Queue[PushEvent], event: PushEvent) -> None:
        if queue.full():
            # A viewer this far behind only needs the newest state; drop the oldest.
            queue.get_nowait()
        queue.put_nowait(event)

    @contextmanager
    def subscribe(self, *, user_id: int) -> Iterator[Subscription]:
        """Receive the events for one user (and broadcasts) while the block runs.

        Registration happens on entry, so nothing published after entry is missed."""
        subscriber = _Subscriber(
            user_id=user_id,
            loop=asyncio.get_running_loop(),
            queue=asyncio.Queue(maxsize=self._queue_size),
        )
        with self._lock:
            self._subscribers.add(subscriber)
        try:
            yield Subscription(subscriber.queue)
        finally:
            with self._lock:
                self._subscribers.discard(subscriber)

    async def start(self) -> None:
        """With Redis, listen to the shared channel and deliver to local subscribers."""
        if self._redis_url and self._listener is None:
            self._listener = asyncio.create_task(self._listen())

    async def stop(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            try:
                await self._listener
            except asyncio.CancelledError:
                pass
            self._listener = None
        with self._lock:
            publisher, self._publisher = self._publisher, None
        if publisher is not None:
            publisher.close()

    async def _listen(self) -> None:
        import redis.asyncio as aioredis

        assert self._redis_url is not None
        while True:
            client = aioredis.Redis.from_url(self._redis_url)
            try:
                async with client.pubsub() as pubsub:
                    await pubsub.subscribe(self._channel)
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            self._deliver(PushEvent.from_json(message["data"]))
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - a lost Redis connection must not end pushes
                logger.warning("push: Redis subscription lost; reconnecting", exc_info=True)
                await asyncio.sleep(1.0)
            finally:
                await client.aclose()


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
