"""How many token requests one process works on at once.

A burst of every open viewer (a capacity that resumes, a room of screens switched on) must be
answered, not queued until the clients give up: past ``limit`` a request waits its turn for at
most ``queue_seconds``, then is told to come back (``GateBusyError`` → 503 + Retry-After).
The time spent waiting is handed to the request, so it waits that much less for Power BI: every
answer comes within about the longer of the two waits, not their sum.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class GateBusyError(Exception):
    """No turn within the queue time; ``retry_after_seconds`` says when to try again."""

    def __init__(self, retry_after_seconds: float) -> None:
        super().__init__("busy")
        self.retry_after_seconds = retry_after_seconds


class TokenGate:
    def __init__(self, *, limit: int, queue_seconds: float) -> None:
        self.limit = limit
        self.queue_seconds = queue_seconds
        self._semaphore: asyncio.Semaphore | None = None

    @asynccontextmanager
    async def turn(self) -> AsyncIterator[float]:
        """A turn; yields the seconds spent waiting for it."""
        # Made on first use: a semaphore belongs to the loop that first waits on it.
        if self._semaphore is None:
            self._semaphore = asyncio.Semaphore(self.limit)
        semaphore = self._semaphore
        waited = 0.0
        if semaphore.locked():
            queued_at = time.monotonic()
            try:
                await asyncio.wait_for(semaphore.acquire(), timeout=self.queue_seconds)
            except TimeoutError:
                raise GateBusyError(retry_after_seconds=max(1.0, self.queue_seconds)) from None
            waited = time.monotonic() - queued_at
        else:
            await semaphore.acquire()  # a free turn: taken without suspending
        try:
            yield waited
        finally:
            semaphore.release()
