"""Writing in-memory tallies to the database in the background, every few seconds.

The hot paths fold what they see in memory (no database write per request); a loop like this
one writes the fold, and writes it once more when the app stops, so nothing is lost."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

logger = logging.getLogger("embedportal.db")


async def flush_periodically(
    flush: Callable[[], object], *, interval_seconds: float, name: str
) -> None:
    """Run ``flush`` (blocking, off the event loop) every ``interval_seconds`` until cancelled,
    and once more on the way out. A failed flush keeps its rows for the next one (``flush``'s
    own contract), so it is logged and the loop goes on."""
    try:
        while True:
            await asyncio.sleep(interval_seconds)
            await _flush_logged(flush, name)
    finally:
        await asyncio.shield(_flush_logged(flush, name))


async def _flush_logged(flush: Callable[[], object], name: str) -> None:
    try:
        await asyncio.to_thread(flush)
    except Exception:  # noqa: BLE001 - the next flush tries again; nothing is lost
        logger.warning("%s: flush failed; kept for the next one", name, exc_info=True)
