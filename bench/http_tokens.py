"""Part 2 of `make bench`: the token API over real HTTP.

The built-in emulator and the portal (a temporary SQLite database, the demo content) run with
uvicorn in threads of this process, on free ports, wired like `embedportal serve` wires them.
Signed-in viewers call `POST /api/reports/{id}/token`:

1. one call at a time for identities nobody asked for yet (every call mints: cache misses), then
   the same again (cache hits);
2. a concurrent burst over identities shared by two users each, plus a report without RLS shared
   by everyone (cold: every key needs its token), then the same burst again (warm: all hits).

Figures: GenerateToken calls counted by the emulator (`GET /emulator/api/stats`) per distinct
(report, identity), latency percentiles, and the process's memory. Users sign in with cheap
argon2 parameters (as the test suite does): sign-in is not what is measured here.
"""

from __future__ import annotations

import asyncio
import re
import resource
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from rich import box
from rich.console import Console
from rich.table import Table
from sqlalchemy import select

from bench.support import cheap_password_hashing, free_port
from embedportal.access.users import create_user
from embedportal.app import create_app
from embedportal.db.migrate import upgrade_database
from embedportal.db.models import AuditEntry, Group, GroupMembership, Role
from embedportal.db.session import session_scope
from embedportal.emulator.app import create_emulator_app
from embedportal.emulator.demo import (
    REGIONAL_PERFORMANCE_REPORT_ID,
    SALES_OVERVIEW_REPORT_ID,
)
from embedportal.server import embedded_default_settings, serve_in_thread
from embedportal.settings import Settings

BENCH_PASSWORD = "bench-password-long-enough"
SEQUENTIAL_IDENTITIES = 20
BURST_IDENTITIES = 12  # each used by two users
RLS_REPORT = REGIONAL_PERFORMANCE_REPORT_ID  # row-level security: one key per identity
PLAIN_REPORT = SALES_OVERVIEW_REPORT_ID  # no RLS: one key for everybody
CALL_TIMEOUT_SECONDS = 20.0
PROBE_TIMEOUT_SECONDS = 5.0
_CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]*)"')


# --- servers -------------------------------------------------------------------------------


def _memory() -> dict[str, float]:
    """Peak RSS from getrusage, and the current RSS from /proc when there is one (MiB)."""
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    figures = {"peakRssMiB": round(peak_kib / 1024, 1)}
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmRSS:"):
                figures["rssMiB"] = round(int(line.split()[1]) / 1024, 1)
    return figures


# --- the portal's users ---------------------------------------------------------------------


@dataclass
class Viewer:
    email: str
    identity: str
    client: httpx.AsyncClient
    csrf: str = ""


@dataclass
class Phase:
    name: str
    latencies_ms: list[float] = field(default_factory=list)
    statuses: dict[int | str, int] = field(default_factory=dict)
    generate_token_calls: int = 0
    distinct_keys: int = 0
    seconds: float = 0.0
    tokens_per_key: dict[str, set[str]] = field(default_factory=dict)

    def record(self, status: int | str, latency_ms: float) -> None:
        self.statuses[status] = self.statuses.get(status, 0) + 1
        self.latencies_ms.append(latency_ms)

    def summary(self) -> dict[str, Any]:
        ordered = sorted(self.latencies_ms)

        def pct(q: float) -> float | None:
            if not ordered:
                return None
            return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)

        split_keys = sum(1 for ids in self.tokens_per_key.values() if len(ids) > 1)
        return {
            "phase": self.name,
            "requests": len(ordered),
            "statuses": {str(k): v for k, v in sorted(self.statuses.items(), key=str)},
            "p50Ms": pct(0.50),
            "p95Ms": pct(0.95),
            "maxMs": round(ordered[-1], 1) if ordered else None,
            "meanMs": round(statistics.fmean(ordered), 1) if ordered else None,
            "requestsPerSecond": round(len(ordered) / self.seconds, 1) if self.seconds else None,
            "generateTokenCalls": self.generate_token_calls,
            "distinctKeys": self.distinct_keys,
            "generateTokenPerKey": (
                round(self.generate_token_calls / self.distinct_keys, 2)
                if self.distinct_keys
                else None
            ),
            "keysAnsweredWithMoreThanOneToken": split_keys,
        }


def _create_users(app: Any) -> list[tuple[str, str, str]]:
    """(email, password, RLS username) of the bench's viewers, in the demo's viewer group."""
    from embedportal.demo import GROUP_NAME

    users: list[tuple[str, str, str]] = []
    for n in range(SEQUENTIAL_IDENTITIES):
        identity = f"seq{n}@bench.example.com"
        users.append((identity, BENCH_PASSWORD, identity))
    for n in range(BURST_IDENTITIES):
        identity = f"burst{n}@bench.example.com"
        for suffix in "ab":
            users.append((f"burst{n}{suffix}@bench.example.com", BENCH_PASSWORD, identity))
    with session_scope(app.state.session_factory) as session:
        group = session.scalar(select(Group).where(Group.name == GROUP_NAME))
        if group is None:
            raise RuntimeError("the demo group is missing: did the demo run?")
        for email, _password, identity in users:
            user = create_user(
                session=session,
                email=email,
                password=BENCH_PASSWORD,
                name=email.split("@")[0],
                role=Role.VIEWER,
                rls_username=identity,
                actor=None,
            )
            session.add(GroupMembership(group_id=group.id, user_id=user.id))
        session.flush()
    return users


async def _sign_in(base_url: str, email: str, password: str, identity: str) -> Viewer:
    client = httpx.AsyncClient(base_url=base_url, timeout=60, follow_redirects=False)
    page = await client.get("/login")
    match = _CSRF_META.search(page.text)
    if not match:
        raise RuntimeError("no CSRF token on the sign-in page")
    answer = await client.post(
        "/login", data={"email": email, "password": password, "csrf_token": match.group(1)}
    )
    if answer.status_code != 303:
        raise RuntimeError(f"sign-in as {email} failed: {answer.status_code}")
    page = await client.get("/reports", follow_redirects=True)
    match = _CSRF_META.search(page.text)
    if not match:
        raise RuntimeError("no CSRF token for the signed-in session")
    return Viewer(email=email, identity=identity, client=client, csrf=match.group(1))


async def _call(
    viewer: Viewer, report_id: str, phase: Phase, *, timeout: float = CALL_TIMEOUT_SECONDS
) -> None:
    started = time.perf_counter()
    try:
        answer = await viewer.client.post(
            f"/api/reports/{report_id}/token",
            headers={"X-CSRF-Token": viewer.csrf},
            json={"reason": "load"},
            timeout=timeout,
        )
    except httpx.HTTPError as error:
        # Counted, not raised: a benchmark reports a stuck server instead of dying on it.
        phase.record(type(error).__name__, (time.perf_counter() - started) * 1000)
        return
    phase.record(answer.status_code, (time.perf_counter() - started) * 1000)
    if answer.status_code == 200:
        key = report_id if report_id == PLAIN_REPORT else f"{report_id}:{viewer.identity}"
        phase.tokens_per_key.setdefault(key, set()).add(answer.json()["tokenId"])


async def _generate_token_calls(emulator: httpx.AsyncClient) -> int:
    return int((await emulator.get("/emulator/api/stats")).json()["generateTokenCalls"])


async def _sequential(
    name: str, viewers: list[Viewer], emulator: httpx.AsyncClient, keys: int
) -> Phase:
    phase = Phase(name, distinct_keys=keys)
    before = await _generate_token_calls(emulator)
    started = time.perf_counter()
    for viewer in viewers:
        await _call(viewer, RLS_REPORT, phase)
    phase.seconds = time.perf_counter() - started
    phase.generate_token_calls = await _generate_token_calls(emulator) - before
    return phase


async def _burst(
    name: str,
    viewers: list[Viewer],
    emulator: httpx.AsyncClient,
    *,
    requests: int,
    concurrency: int,
    timeout: float = CALL_TIMEOUT_SECONDS,
) -> Phase:
    # About every fifth call is for the report without RLS, which every viewer shares; the
    # pattern shifts each round so that every viewer asks for both reports.
    plan = [
        (
            viewers[n % len(viewers)],
            PLAIN_REPORT if (n + n // len(viewers)) % 5 == 4 else RLS_REPORT,
        )
        for n in range(requests)
    ]
    keys = {r if r == PLAIN_REPORT else f"{r}:{v.identity}" for v, r in plan}
    phase = Phase(name, distinct_keys=len(keys))
    gate = asyncio.Semaphore(max(1, concurrency))

    async def one(viewer: Viewer, report_id: str) -> None:
        async with gate:
            await _call(viewer, report_id, phase, timeout=timeout)

    before = await _generate_token_calls(emulator)
    started = time.perf_counter()
    await asyncio.gather(*(one(v, r) for v, r in plan))
    phase.seconds = time.perf_counter() - started
    phase.generate_token_calls = await _generate_token_calls(emulator) - before
    return phase


async def _drive(
    app: Any,
    portal_url: str,
    emulator_url: str,
    users: list[tuple[str, str, str]],
    *,
    requests: int,
    concurrency: int,
    probe: int,
) -> tuple[list[Phase], int, dict[str, float], tuple[int, int]]:
    viewers = [await _sign_in(portal_url, *user) for user in users]
    sequential = viewers[:SEQUENTIAL_IDENTITIES]
    burst = viewers[SEQUENTIAL_IDENTITIES:]
    async with httpx.AsyncClient(base_url=emulator_url, timeout=30) as emulator:
        start_calls = await _generate_token_calls(emulator)
        phases = [
            await _sequential(
                "miss: 1 at a time, new identity", sequential, emulator, SEQUENTIAL_IDENTITIES
            ),
            await _sequential("hit: 1 at a time, same again", sequential, emulator, 0),
            await _burst(
                f"cold burst: {concurrency} in flight",
                burst,
                emulator,
                requests=requests,
                concurrency=concurrency,
            ),
            await _burst(
                f"warm burst: {concurrency} in flight",
                burst,
                emulator,
                requests=requests,
                concurrency=concurrency,
            ),
        ]
        total_calls = await _generate_token_calls(emulator) - start_calls
        memory = _memory()
        audit = _audit_mints(app)
        if probe > 0:
            # Last, with a short timeout: a server that stalls under this load cannot hold up
            # the phases above, and the stall shows as timeouts instead of a hung benchmark.
            phases.append(
                await _burst(
                    f"probe: {probe} at once ({PROBE_TIMEOUT_SECONDS:g} s timeout)",
                    burst,
                    emulator,
                    requests=probe,
                    concurrency=probe,
                    timeout=PROBE_TIMEOUT_SECONDS,
                )
            )
    for viewer in viewers:
        await viewer.client.aclose()
    return phases, total_calls, memory, audit


def _audit_mints(app: Any) -> tuple[int, int]:
    """(issued, minted) according to the portal's own audit log."""
    with session_scope(app.state.session_factory) as session:
        entries = session.scalars(select(AuditEntry).where(AuditEntry.action == "token.issued"))
        details = [entry.detail or {} for entry in entries]
    return len(details), sum(1 for d in details if d.get("shared") is False)


# --- entry point ---------------------------------------------------------------------------


def run(console: Console, *, requests: int, concurrency: int, probe: int) -> dict[str, Any]:
    """Start both servers, run the phases, print the figures, and return them."""
    from embedportal import demo

    memory_before = _memory()
    with tempfile.TemporaryDirectory(prefix="embedportal-bench-") as tmp, cheap_password_hashing():
        portal_port, emulator_port = free_port(), free_port()
        base = Settings(
            _env_file=None,  # type: ignore[call-arg]
            environment="development",
            database_url=f"sqlite:///{Path(tmp, 'bench.db').as_posix()}",
            data_dir=Path(tmp),
            demo=True,
            port=portal_port,
            emulator_port=emulator_port,
        )
        settings, emulator_settings = embedded_default_settings(base)
        upgrade_database(settings.resolved_database_url)
        emulator_app = create_emulator_app(emulator_settings)  # type: ignore[arg-type]
        portal_app = create_app(settings)
        demo.prepare_demo(portal_app)
        started = time.perf_counter()
        with serve_in_thread(emulator_app, port=emulator_port) as emulator_url:
            with serve_in_thread(portal_app, port=portal_port) as portal_url:
                startup_seconds = time.perf_counter() - started
                users = _create_users(portal_app)
                # The demo's own viewer joins the bursts with its own identity.
                users.append((demo.VIEWER_EMAIL, demo.VIEWER_PASSWORD, demo.VIEWER_EMAIL))
                memory_ready = _memory()
                phases, total_calls, memory_after, (issued, minted) = asyncio.run(
                    _drive(
                        portal_app,
                        portal_url,
                        emulator_url,
                        users,
                        requests=requests,
                        concurrency=concurrency,
                        probe=probe,
                    )
                )
        portal_app.state.engine.dispose()

    figures: dict[str, Any] = {
        "phases": [phase.summary() for phase in phases],
        "generateTokenCallsTotal": total_calls,
        "auditTokensIssued": issued,
        "auditTokensMinted": minted,
        "serversStartSeconds": round(startup_seconds, 2),
        "memoryBefore": memory_before,
        "memoryServersReady": memory_ready,
        "memoryAfter": memory_after,
    }
    _print(console, figures, viewers=len(users))
    return figures


def _print(console: Console, figures: dict[str, Any], *, viewers: int) -> None:
    console.print(
        f"{viewers} signed-in viewers; {SEQUENTIAL_IDENTITIES} identities for the one-at-a-time "
        f"calls; {BURST_IDENTITIES} identities shared by two users each (+ the demo viewer) on the "
        "RLS report, and one report without RLS that everybody shares, for the bursts"
    )
    table = Table(box=box.ASCII2, highlight=False)
    for n, column in enumerate(
        [
            "phase",
            "calls",
            "HTTP status",
            "p50 ms",
            "p95 ms",
            "max ms",
            "calls/s",
            "GenerateToken\ncalls",
            "distinct (report,\nidentity) keys",
            "GenerateToken\nper key",
        ]
    ):
        table.add_column(column, justify="left" if n == 0 else "right", no_wrap=n == 0)
    for p in figures["phases"]:
        statuses = " ".join(f"{code}x{count}" for code, count in p["statuses"].items())
        table.add_row(
            p["phase"],
            str(p["requests"]),
            statuses,
            _fmt(p["p50Ms"]),
            _fmt(p["p95Ms"]),
            _fmt(p["maxMs"]),
            _fmt(p["requestsPerSecond"]),
            str(p["generateTokenCalls"]),
            str(p["distinctKeys"] or "-"),
            _fmt(p["generateTokenPerKey"], digits=2),
        )
    console.print(table)
    split = sum(p["keysAnsweredWithMoreThanOneToken"] for p in figures["phases"])
    console.print(
        f"  GenerateToken calls at the emulator in all: {figures['generateTokenCallsTotal']}; "
        f"the portal's audit log: {figures['auditTokensIssued']} tokens handed out, "
        f"{figures['auditTokensMinted']} of them freshly minted. Keys answered with more than "
        f"one token within a phase: {split}."
    )
    before, ready, after = (
        figures["memoryBefore"],
        figures["memoryServersReady"],
        figures["memoryAfter"],
    )
    console.print(
        "  Memory of this process (bench client + portal + emulator): RSS "
        f"{before.get('rssMiB', '?')} MiB before, {ready.get('rssMiB', '?')} MiB with both "
        f"servers up, {after.get('rssMiB', '?')} MiB after the calls; getrusage peak RSS "
        f"{before['peakRssMiB']} -> {after['peakRssMiB']} MiB. Servers started in "
        f"{figures['serversStartSeconds']} s."
    )


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"
