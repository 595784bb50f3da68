"""Token buckets by key, in memory: how the telemetry endpoint limits each web session, the
integration API each key, and wrong API keys each address.

Pure bookkeeping, no I/O: a bucket holds up to `capacity` tokens (by default `per_minute`) and
regains `per_minute` per minute, continuously; `take` either spends what a request costs or says
how long until it could.
Each instance keeps its own buckets (a client spread over several instances gets each one's
allowance): the limit bounds what one session can do to the figures, it is no quota.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable

DEFAULT_MAX_KEYS = 100_000


class SessionBuckets:
    def __init__(
        self,
        *,
        per_minute: int,
        capacity: int | None = None,
        max_keys: int = DEFAULT_MAX_KEYS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if per_minute < 1:
            raise ValueError("per_minute must be at least 1")
        # The burst: as many as a minute's allowance unless told (the API keys' is smaller).
        self.capacity = float(capacity if capacity is not None else per_minute)
        if self.capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._per_second = per_minute / 60.0
        self._max_keys = max(1, max_keys)
        self._monotonic = monotonic
        self._lock = threading.Lock()
        # key → (tokens, when last topped up); least recently used first.
        self._buckets: OrderedDict[Hashable, tuple[float, float]] = OrderedDict()

    def take(self, key: Hashable, amount: float = 1.0) -> float:
        """Spend ``amount`` from ``key``'s bucket and return 0, or spend nothing and return
        the seconds until the bucket holds ``amount`` (more than its capacity: never)."""
        if amount > self.capacity:
            return float("inf")
        now = self._monotonic()
        with self._lock:
            tokens = self._tokens(self._buckets.pop(key, None), now)
            wait = self._wait_for(tokens, amount)
            self._buckets[key] = (tokens - amount if wait == 0 else tokens, now)
            # A full bucket is what a new key gets anyway: forgetting the oldest loses nothing
            # but that key's recent spending.
            while len(self._buckets) > self._max_keys:
                self._buckets.popitem(last=False)
        return wait

    def wait(self, key: Hashable, amount: float = 1.0) -> float:
        """The seconds until ``key``'s bucket holds ``amount`` (0: now), spending nothing."""
        if amount > self.capacity:
            return float("inf")
        now = self._monotonic()
        with self._lock:
            bucket = self._buckets.get(key)
        return self._wait_for(self._tokens(bucket, now), amount)

    def _tokens(self, bucket: tuple[float, float] | None, now: float) -> float:
        """What a bucket holds at ``now``: its tokens and what it regained since (a key not
        seen, a full bucket)."""
        if bucket is None:
            return self.capacity
        tokens, then = bucket
        return min(self.capacity, tokens + (now - then) * self._per_second)

    def _wait_for(self, tokens: float, amount: float) -> float:
        return 0.0 if tokens >= amount else (amount - tokens) / self._per_second

    def __len__(self) -> int:
        return len(self._buckets)
