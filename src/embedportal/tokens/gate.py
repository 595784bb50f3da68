"""How many token requests one process works on at once.

A burst of every open viewer (a capacity that resumes, a room of screens switched on) must be
answered, not queued until the clients give up: past ``limit`` a request waits its turn for at
most ``queue_seconds``, then is told to come back (``GateBusyError`` → 503 + Retry-After).
"""

from __future__ import annotations

import asyncio
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
    async def turn(self) -> AsyncIterator[None]:
        # Made on first use: a semaphore belongs to the loop that first waits on it.
        if self._semaphore is None:
            self._semaphore = asyncio.Semaphore(self.limit)
        semaphore = self._semaphore
        if semaphore.locked():
            try:
                await asyncio.wait_for(semaphore.acquire(), timeout=self.queue_seconds)
            except TimeoutError:
                raise GateBusyError(retry_after_seconds=max(1.0, self.queue_seconds)) from None
        else:
            await semaphore.acquire()  # a free turn: taken without suspending
        try:
            yield
        finally:
            semaphore.release()
