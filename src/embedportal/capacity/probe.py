"""Is the capacity running? Asked of Azure ARM before a token is handed out, and remembered for
a few seconds so a room full of viewers costs ARM one call, not one per viewer.

A paused capacity cannot render a report, so handing out a token would only move the failure
into the iframe; the token API answers 503 CapacityNotActive instead, and the viewer shows its
"capacity is off" screen and comes back by itself. When ARM cannot be asked (no capacity
configured, no Azure role, ARM down), the probe says "unknown" and tokens are not held back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from embedportal.powerbi import PowerBIConnection, PowerBIError
from embedportal.powerbi.arm import CapacityClient

logger = logging.getLogger("embedportal.capacity")

# Short while paused, so a resumed capacity is noticed quickly; longer while it runs.
RECHECK_RUNNING_SECONDS = 15.0
RECHECK_NOT_RUNNING_SECONDS = 3.0
RECHECK_UNKNOWN_SECONDS = 30.0


@dataclass(frozen=True)
class CapacityReading:
    running: bool | None  # None: could not tell
    state: str
    read_at: float


class CapacityProbe:
    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._clients: dict[PowerBIConnection, CapacityClient] = {}
        self._readings: dict[PowerBIConnection, CapacityReading] = {}
        self._locks: dict[PowerBIConnection, asyncio.Lock] = {}

    def _fresh(self, reading: CapacityReading | None) -> bool:
        if reading is None:
            return False
        if reading.running is None:
            ttl = RECHECK_UNKNOWN_SECONDS
        elif reading.running:
            ttl = RECHECK_RUNNING_SECONDS
        else:
            ttl = RECHECK_NOT_RUNNING_SECONDS
        return self._clock() - reading.read_at < ttl

    async def reading(
        self, connection: PowerBIConnection, *, fresh: bool = False
    ) -> CapacityReading:
        """The capacity's state; ``fresh`` skips the remembered one (a viewer just saw the
        capacity fail)."""
        if not connection.has_capacity:
            return CapacityReading(running=None, state="NotConfigured", read_at=self._clock())
        if fresh:
            self._readings.pop(connection, None)
        if (cached := self.remembered(connection)) is not None:
            return cached
        lock = self._locks.setdefault(connection, asyncio.Lock())
        async with lock:  # one ARM call at a time per capacity; the others read its answer
            cached = self._readings.get(connection)
            if self._fresh(cached):
                assert cached is not None
                return cached
            reading = await self._read(connection)
            self._readings[connection] = reading
            return reading

    def remembered(self, connection: PowerBIConnection) -> CapacityReading | None:
        """The reading ``reading`` would answer without asking, or None (no I/O, no await)."""
        cached = self._readings.get(connection)
        return cached if self._fresh(cached) else None

    async def _read(self, connection: PowerBIConnection) -> CapacityReading:
        client = self._clients.get(connection)
        if client is None:
            client = CapacityClient(connection, max_retries=1)
            self._clients[connection] = client
        try:
            info = await client.get()
        except PowerBIError as error:
            logger.warning("capacity state unknown (tokens are not held back): %s", error)
            return CapacityReading(running=None, state="Unknown", read_at=self._clock())
        return CapacityReading(running=info.is_running, state=info.state, read_at=self._clock())

    def forget(self) -> None:
        """Read again at the next request (after a start or pause made here)."""
        self._readings.clear()

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()
