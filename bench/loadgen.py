"""A small closed-loop HTTP/1.1 load generator on raw asyncio streams.

N callers, each on its own keep-alive connection, send one request, read the whole answer, and
send the next, until the time is up or their list of requests runs out. It costs far less CPU
per request than an HTTP client library, which matters on a machine where the load generator
shares two cores with the servers it measures (wrk is not installed here).

Only what the benchmark needs: answers framed by `Content-Length` or chunked, no TLS, no
redirects. A call that outlives its timeout or loses its connection is counted by the name of
the failure, and the caller reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Target:
    host: str
    port: int


@dataclass(frozen=True)
class Call:
    """One ready-to-send request: the bytes on the wire, built once."""

    raw: bytes

    @staticmethod
    def post_json(
        path: str, body: bytes, *, host: str, headers: dict[str, str] | None = None
    ) -> Call:
        lines = [
            f"POST {path} HTTP/1.1",
            f"Host: {host}",
            "Content-Type: application/json",
            f"Content-Length: {len(body)}",
            "Accept: application/json",
        ]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        return Call(("\r\n".join(lines) + "\r\n\r\n").encode() + body)


@dataclass
class Result:
    """What the callers saw: latencies (ms) of every finished call, counts by outcome."""

    latencies_ms: list[float] = field(default_factory=list)
    outcomes: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def count(self, outcome: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1

    @property
    def calls(self) -> int:
        return sum(self.outcomes.values())

    @property
    def failures(self) -> int:
        return sum(n for outcome, n in self.outcomes.items() if not outcome.startswith("2"))

    def percentile(self, q: float) -> float | None:
        if not self.latencies_ms:
            return None
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def summary(self) -> dict[str, Any]:
        def rounded(value: float | None) -> float | None:
            return None if value is None else round(value, 1)

        return {
            "calls": self.calls,
            "outcomes": dict(sorted(self.outcomes.items())),
            "failures": self.failures,
            "seconds": round(self.seconds, 2),
            "requestsPerSecond": round(self.calls / self.seconds, 1) if self.seconds else None,
            "okPerSecond": (
                round((self.calls - self.failures) / self.seconds, 1) if self.seconds else None
            ),
            "p50Ms": rounded(self.percentile(0.50)),
            "p99Ms": rounded(self.percentile(0.99)),
            "maxMs": rounded(max(self.latencies_ms) if self.latencies_ms else None),
        }


def repeat(call: Call, times: int | None = None) -> Callable[[int, int], Call | None]:
    """Every caller sends ``call`` again and again (``times`` each, or until the time is up)."""
    return lambda _caller, n: call if times is None or n < times else None


def each_once(calls: Sequence[Call], callers: int) -> Callable[[int, int], Call | None]:
    """The ``callers`` share out ``calls`` so that each is sent exactly once."""

    def pick(caller: int, n: int) -> Call | None:
        index = caller + n * callers
        return calls[index] if index < len(calls) else None

    return pick


class ProtocolError(Exception):
    """The server's answer is not HTTP/1.1 this client can frame."""


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """(status, body, keep-alive) of one answer."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
        raise ProtocolError(lines[0][:80].decode(errors="replace"))
    status = int(parts[1])
    length: int | None = None
    chunked = False
    keep_alive = parts[0] == b"HTTP/1.1"
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        value = value.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value:
            chunked = True
        elif name == b"connection":
            keep_alive = value == b"keep-alive" or (keep_alive and value != b"close")
    if chunked:
        pieces = []
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";")[0].strip(), 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                break
            pieces.append(await reader.readexactly(size + 2))
        return status, b"".join(piece[:-2] for piece in pieces), keep_alive
    if length is None:
        return status, await reader.read(), False
    return status, await reader.readexactly(length), keep_alive


async def run_closed_loop(
    *,
    targets: Sequence[Target],
    calls: Callable[[int, int], Call | None],
    callers: int,
    duration_seconds: float | None,
    timeout_seconds: float = 10.0,
    on_answer: Callable[[int, int, int, bytes], None] | None = None,
) -> Result:
    """``callers`` connections, caller ``i`` to ``targets[i % len(targets)]``. ``calls(i, n)``
    gives caller ``i``'s ``n``-th request, or None when it has no more; the run ends when the
    duration is over (if any) or every caller has run out. ``on_answer(i, n, status, body)``
    sees each answer."""
    result = Result()
    deadline = None if duration_seconds is None else time.perf_counter() + duration_seconds

    async def caller(index: int) -> None:
        target = targets[index % len(targets)]
        reader: asyncio.StreamReader | None = None
        writer: asyncio.StreamWriter | None = None
        n = 0
        try:
            while deadline is None or time.perf_counter() < deadline:
                call = calls(index, n)
                if call is None:
                    return
                started = time.perf_counter()
                try:
                    if writer is None or reader is None:
                        reader, writer = await asyncio.wait_for(
                            asyncio.open_connection(target.host, target.port), timeout_seconds
                        )
                    assert reader is not None and writer is not None
                    writer.write(call.raw)
                    status, body, keep_alive = await asyncio.wait_for(
                        read_response(reader), timeout_seconds
                    )
                except (TimeoutError, OSError, asyncio.IncompleteReadError, ProtocolError) as e:
                    result.count("timeout" if isinstance(e, TimeoutError) else type(e).__name__)
                    result.latencies_ms.append((time.perf_counter() - started) * 1000)
                    await _close(writer)
                    reader, writer = None, None
                    n += 1
                    continue
                result.latencies_ms.append((time.perf_counter() - started) * 1000)
                result.count(str(status))
                if on_answer is not None:
                    on_answer(index, n, status, body)
                if not keep_alive:
                    await _close(writer)
                    reader, writer = None, None
                n += 1
        finally:
            await _close(writer)

    started = time.perf_counter()
    await asyncio.gather(*(caller(i) for i in range(callers)))
    result.seconds = time.perf_counter() - started
    return result


async def _close(writer: asyncio.StreamWriter | None) -> None:
    if writer is None:
        return
    writer.close()
    with contextlib.suppress(OSError, asyncio.TimeoutError):
        await asyncio.wait_for(writer.wait_closed(), 1.0)
