"""Reading the push channel (`/api/events`) from a test, as an open viewer would."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import httpx

from embedportal.access.sessions import SESSION_COOKIE


def watch_events(
    base_url: str,
    cookie: str,
    *,
    until: Callable[[list[str]], bool],
    report_ids: Sequence[str] = (),
    timeout: float = 10,
) -> list[str]:
    """Hold `/api/events` open (for ``report_ids``) until ``until(kinds)`` is true, checked at
    every line; the kinds of the events seen so far, in order."""
    deadline = time.monotonic() + timeout
    kinds: list[str] = []
    with httpx.stream(
        "GET",
        f"{base_url}/api/events",
        params=[("report", report_id) for report_id in report_ids],
        cookies={SESSION_COOKIE: cookie},
        timeout=timeout,
    ) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("event: "):
                kinds.append(line[len("event: ") :])
            if until(kinds):
                return kinds
            assert time.monotonic() < deadline, "the condition never came true"
    raise AssertionError(f"the stream ended first; events seen: {kinds}")
