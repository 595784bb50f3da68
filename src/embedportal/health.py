"""What the portal depends on, and whether each answers: the database, Redis, Power BI.

`/healthz` and Admin → Health read one cached report: each check has a short timeout, the
checks run concurrently, and a flood of probes within the cache window costs one check. A
dependency that hangs costs a probe its timeout, never a stall. The checks run on an event loop
of their own, in a thread: on the portal's loop, under a burst of token requests, each of
their awaits would wait its turn behind every request; there, they wait only for the
interpreter. Past the cache window a probe waits for the next check (shared by every probe
meanwhile), never an older answer: a load balancer must see a dependency that went down at
its first probe past the window. The database is asked on a thread and a connection of the
checker's own, so a burst of requests holding the pool cannot make it look down.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx
from sqlalchemy import Engine
from sqlalchemy.pool import PoolProxiedConnection

DATABASE = "database"
REDIS = "redis"
POWERBI = "powerbi"


@dataclass(frozen=True)
class DependencyState:
    name: str
    ok: bool
    # A critical dependency down means the portal cannot serve (503); others degrade it.
    critical: bool
    detail: str = ""
    seconds: float = 0.0


@dataclass(frozen=True)
class HealthReport:
    dependencies: tuple[DependencyState, ...]
    checked_at: float

    @property
    def serving(self) -> bool:
        return all(state.ok for state in self.dependencies if state.critical)

    @property
    def down(self) -> list[str]:
        return [state.name for state in self.dependencies if not state.ok]

    @property
    def status(self) -> str:
        if not self.serving:
            return "unavailable"
        return "degraded" if self.down else "ok"

    def to_json(self) -> dict[str, object]:
        return {
            "status": self.status,
            "down": self.down,
            "dependencies": {
                state.name: {
                    "ok": state.ok,
                    "critical": state.critical,
                    "detail": state.detail,
                    "seconds": round(state.seconds, 4),
                }
                for state in self.dependencies
            },
        }


Probe = Callable[[], Awaitable[str]]


class HealthChecker:
    """Checks the dependencies at most once per ``cache_seconds``; callers share the answer."""

    def __init__(
        self,
        *,
        engine: Engine,
        redis_url: str | None,
        powerbi_url: str | None,
        timeout_seconds: float = 1.0,
        cache_seconds: float = 1.5,
    ) -> None:
        self._engine = engine
        self._redis_url = redis_url
        self._powerbi_url = powerbi_url
        self._timeout = timeout_seconds
        self._cache_seconds = cache_seconds
        self._report: HealthReport | None = None
        # The check in progress, on the checkers' loop; shared by every probe meanwhile (from
        # any loop: a test's asyncio.run, the portal's).
        self._checking: concurrent.futures.Future[HealthReport] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None
        self._lock = threading.Lock()
        # A database probe stuck in its thread is not started again until it ends, so a hung
        # server cannot pile up threads.
        self._database_probe: asyncio.Future[None] | None = None
        # Its own thread: a burst of requests filling the shared pools must not make a
        # database that answers look down.
        self._database_thread = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="healthz-database"
        )
        self._http: httpx.AsyncClient | None = None
        self._redis: object | None = None
        self._probe_connection: PoolProxiedConnection | None = None

    async def report(self) -> HealthReport:
        cached = self._report
        if cached is not None and time.monotonic() - cached.checked_at < self._cache_seconds:
            return cached
        with self._lock:
            if self._checking is None or self._checking.done():
                self._checking = asyncio.run_coroutine_threadsafe(
                    self._check_all(), self._checkers_loop()
                )
            checking = self._checking
        # Shielded: a probe whose client went away must not cancel everyone's check. Never a
        # stale answer past the window: a load balancer must see a database that went down.
        return await asyncio.shield(asyncio.wrap_future(checking))

    def _checkers_loop(self) -> asyncio.AbstractEventLoop:
        """The loop the checks run on, started on first use (called under the lock)."""
        if self._loop is None:
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="healthz", daemon=True)
            thread.start()
            self._loop, self._loop_thread = loop, thread
        return self._loop

    async def _check_all(self) -> HealthReport:
        checks: list[tuple[str, bool, Probe]] = [(DATABASE, True, self._check_database)]
        if self._redis_url:
            checks.append((REDIS, False, self._check_redis))
        if self._powerbi_url:
            checks.append((POWERBI, False, self._check_powerbi))
        states = await asyncio.gather(
            *(self._run(name, critical, probe) for name, critical, probe in checks)
        )
        report = HealthReport(dependencies=tuple(states), checked_at=time.monotonic())
        self._report = report
        return report

    async def _run(self, name: str, critical: bool, probe: Probe) -> DependencyState:
        started = time.monotonic()
        try:
            async with asyncio.timeout(self._timeout):
                detail = await probe()
        except TimeoutError:
            return DependencyState(
                name, False, critical, f"no answer within {self._timeout:g}s", self._timeout
            )
        except Exception as error:  # noqa: BLE001 - any failure is the dependency's state
            return DependencyState(
                name, False, critical, _describe(error), time.monotonic() - started
            )
        return DependencyState(name, True, critical, detail, time.monotonic() - started)

    async def _check_database(self) -> str:
        if self._database_probe is None or self._database_probe.done():
            loop = asyncio.get_running_loop()
            self._database_probe = loop.run_in_executor(self._database_thread, self._select_one)
        await asyncio.shield(self._database_probe)
        return ""

    def _select_one(self) -> None:
        # One driver connection kept for the probe and a bare cursor on it: the fewest Python
        # steps, so a busy interpreter (a burst of requests) cannot make it miss its timeout.
        # A connection the server dropped (a restart, pg_terminate_backend) is replaced at
        # once: the database is down only if a fresh one fails too.
        for attempt in (1, 2):
            connection = self._probe_connection
            try:
                if connection is None:
                    connection = self._probe_connection = self._engine.raw_connection()
                cursor = connection.cursor()
                try:
                    cursor.execute("SELECT 1")
                    cursor.fetchone()
                finally:
                    cursor.close()
                connection.rollback()  # never left idle in a transaction
                return
            except Exception:
                self._probe_connection = None
                if connection is not None:
                    with contextlib.suppress(Exception):
                        connection.invalidate()
                if attempt == 2:
                    raise

    async def _check_redis(self) -> str:
        import redis.asyncio as aioredis

        if self._redis is None:
            self._redis = aioredis.Redis.from_url(
                self._redis_url or "",
                socket_timeout=self._timeout,
                socket_connect_timeout=self._timeout,
            )
        client: aioredis.Redis = self._redis  # type: ignore[assignment]
        try:
            await client.ping()
        except aioredis.ConnectionError:
            # A pooled connection from before a Redis restart fails once; a fresh one tells.
            self._redis = None
            await client.aclose()
            return await self._check_redis()
        return ""

    async def _check_powerbi(self) -> str:
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=self._timeout)
        # Any HTTP answer means the service is reachable; credentials are the token API's job.
        response = await self._http.get(self._powerbi_url or "")
        return f"HTTP {response.status_code}"

    def close_database_probe(self) -> None:
        """Give back the probe's database connection (unless a probe is using it)."""
        probe_running = self._database_probe is not None and not self._database_probe.done()
        connection = self._probe_connection
        if connection is not None and not probe_running:
            self._probe_connection = None
            with contextlib.suppress(Exception):
                connection.close()

    async def aclose(self) -> None:
        # A probe stuck on a hung database must not hold up shutdown.
        self._database_thread.shutdown(wait=False, cancel_futures=True)
        self.close_database_probe()
        with self._lock:
            loop, thread = self._loop, self._loop_thread
            self._loop = self._loop_thread = None
        if loop is None:
            return
        # The clients belong to the checkers' loop: closed there, then the loop ends.
        closing = asyncio.run_coroutine_threadsafe(self._close_clients(), loop)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.wrap_future(closing), self._timeout + 1)
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            await asyncio.to_thread(thread.join, self._timeout + 1)
        if not loop.is_running():
            loop.close()

    async def _close_clients(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None
        if self._redis is not None:
            await self._redis.aclose()  # type: ignore[attr-defined]
            self._redis = None
        # The check in progress, if any, ends with the loop.
        for task in asyncio.all_tasks():
            if task is not asyncio.current_task():
                task.cancel()


def _describe(error: BaseException) -> str:
    """The error's kind and first line, never more (messages may hold a connection URL)."""
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
    # Connection URLs may carry a password; keep only the kind when one shows.
    if "://" in first_line or "password" in first_line.lower():
        first_line = ""
    return f"{type(error).__name__}: {first_line}"[:200].rstrip(": ")
