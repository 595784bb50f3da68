"""Part 4 of `make bench` (`python -m bench --only load`): the token API and the push channel
under load, against real server processes, beside the anchor in the same run.

Processes, each on a free loopback port: the built-in emulator alone (`embedportal emulator`),
the portal as `embedportal serve` subprocesses configured to use it (a temporary SQLite file, or
a temporary database on the PostgreSQL server plus Redis when they are given), and the anchor
(`bench/anchor_app.py`: bare FastAPI + uvicorn signing an HS256 JWT per request). The load
generator (`bench/loadgen.py`) is a closed loop of N callers, each on its own keep-alive
connection, in this process.

For each configuration (1 worker; `--workers N` when `serve` has it; two instances sharing
PostgreSQL + Redis) and each number of callers, fresh portal processes (so their in-process
caches start empty; a fresh Redis prefix for each) answer:

* misses: every caller asks for a different viewer's RLS identity, each viewer once, so every
  call mints a token at the emulator (GenerateToken counted there);
* hits: the demo viewer asks for the same report again and again for the duration.

Open viewers: one portal process holds `GET /api/events?report=…` streams, signed in, at each
requested count, and its RSS is read from /proc/<pid>/status before and after.

Figures are printed next to the issue's targets and never asserted: a benchmark reports.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvloop
from rich import box
from rich.console import Console
from rich.table import Table

from bench.loadgen import Call, Result, Target, each_once, repeat, run_closed_loop
from bench.support import cheap_password_hashing, free_port

ROOT = Path(__file__).resolve().parent.parent
BENCH_PASSWORD = "bench-password-long-enough"
TOKEN_BODY = b'{"reason":"load"}'
START_TIMEOUT_SECONDS = 60.0
CALL_TIMEOUT_SECONDS = 10.0
HEALTHZ_TIMEOUT_SECONDS = 5.0
GIB = 1024**3
# Streams opened at once while filling up to a count: a steady stream of arrivals, not a burst
# (the token runs measure bursts); the figure wanted here is memory per open viewer.
VIEWER_OPENS_AT_ONCE = 8
# The targets (#10), printed beside the figures.
TARGET_HIT_RATIO = 0.40
TARGET_P99_MS_AT_64 = 50.0
TARGET_VIEWERS_BYTES = GIB
TARGET_VIEWERS_COUNT = 10_000


@dataclass(frozen=True)
class LoadParams:
    concurrency: tuple[int, ...] = (64, 256)
    duration_seconds: float = 5.0
    miss_viewers: int = 256
    viewers: tuple[int, ...] = (1000, 10000)
    viewers_seconds: float = 90.0  # the most time given to open the streams of each count
    workers: int = 0  # 0: as many as cores, when `serve` has --workers
    database_url: str | None = None  # a PostgreSQL server to create a temporary database on
    redis_url: str | None = None
    skip_viewers: bool = False
    skip_fleet: bool = False


# --- processes -----------------------------------------------------------------------------------


def raise_open_file_limit(wanted: int) -> int:
    """Raise RLIMIT_NOFILE towards ``wanted`` (children inherit it); the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


def rss_bytes(pid: int) -> int | None:
    """VmRSS of a process (its own memory, not its children's), from /proc."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def children_rss_bytes(pid: int) -> int:
    """RSS of a process and its direct children (uvicorn's workers)."""
    total = rss_bytes(pid) or 0
    with contextlib.suppress(OSError):
        for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
            total += rss_bytes(int(child)) or 0
    return total


@dataclass
class Server:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def target(self) -> Target:
        return Target("127.0.0.1", self.port)

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def start_server(
    name: str, command: list[str], *, port: int, env: dict[str, str], cwd: Path, log_dir: Path
) -> Server:
    log_path = log_dir / f"{name}-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(  # noqa: S603 - our own commands
            command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = Server(name, port, process, log_path)
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}:\n{server.log_tail()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{server.url}/healthz", timeout=2).status_code < 500:
                return server
        if time.monotonic() > deadline:
            stop_server(server)
            raise RuntimeError(f"{name} did not answer /healthz:\n{server.log_tail()}")
        time.sleep(0.2)


def stop_server(server: Server) -> None:
    if server.process.poll() is not None:
        return
    # The whole process group: uvicorn's worker processes go with their parent.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.process.pid, signal.SIGTERM)
    try:
        server.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.process.pid, signal.SIGKILL)
        server.process.wait(timeout=5)


def serve_has_workers() -> bool:
    done = subprocess.run(
        [_embedportal(), "serve", "--help"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "COLUMNS": "200", "TERM": "dumb"},
    )
    return "--workers" in done.stdout


def _embedportal() -> str:
    beside = Path(sys.executable).with_name("embedportal")
    return str(beside) if beside.exists() else (shutil.which("embedportal") or "embedportal")


# --- databases -----------------------------------------------------------------------------------


@contextlib.contextmanager
def temporary_database(server_url: str | None, tmp: Path) -> Iterator[str]:
    """A SQLite file in ``tmp``, or a fresh database on the given PostgreSQL server (dropped at
    the end), so the benchmark never writes into a database someone else uses."""
    if server_url is None:
        yield f"sqlite:///{(tmp / 'bench.db').as_posix()}"
        return
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(server_url)
    name = f"embedportal_bench_{secrets.token_hex(4)}"
    admin = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _drop_redis_prefix(redis_url: str, prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


# --- the portal's content and viewers -----------------------------------------------------------


@dataclass(frozen=True)
class Viewer:
    email: str
    cookie: str
    csrf: str


def _powerbi_env(emulator_url: str) -> dict[str, str]:
    from embedportal.emulator.settings import EmulatorSettings

    emulator = EmulatorSettings(_env_file=None)
    return {
        "EMBEDPORTAL_POWERBI_TENANT_ID": emulator.tenant_id,
        "EMBEDPORTAL_POWERBI_CLIENT_ID": emulator.client_id,
        "EMBEDPORTAL_POWERBI_CLIENT_SECRET": emulator.client_secret,
        "EMBEDPORTAL_POWERBI_AUTHORITY_HOST": emulator_url,
        "EMBEDPORTAL_POWERBI_API_URL": emulator_url,
        "EMBEDPORTAL_ARM_URL": emulator_url,
        "EMBEDPORTAL_CAPACITY_SUBSCRIPTION_ID": emulator.subscription_id,
        "EMBEDPORTAL_CAPACITY_RESOURCE_GROUP": emulator.resource_group,
        "EMBEDPORTAL_CAPACITY_NAME": emulator.capacity_name,
    }


def seed(database_url: str, portal_env: dict[str, str], *, viewers: int) -> list[Viewer]:
    """Migrate, sync the demo content from the emulator process, create ``viewers`` viewers with
    RLS identities of their own in the demo group, and sign the demo viewer and them in. The
    sessions are started with the portal's own `start_session`, as its sign-in route does:
    signing hundreds of people in over HTTP would cost more than the runs it prepares (every
    sign-in rehashes the password with the production argon2 parameters)."""
    from sqlalchemy import select

    from embedportal import demo
    from embedportal.access.sessions import SESSION_COOKIE, start_session
    from embedportal.access.users import create_user
    from embedportal.app import create_app
    from embedportal.db.migrate import upgrade_database
    from embedportal.db.models import Group, GroupMembership, Role, User
    from embedportal.db.session import session_scope
    from embedportal.settings import Settings

    fields: dict[str, Any] = {
        name.removeprefix("EMBEDPORTAL_").lower(): value
        for name, value in portal_env.items()
        if name.startswith("EMBEDPORTAL_")
    }
    settings = Settings(_env_file=None, **fields)
    upgrade_database(database_url)
    app = create_app(settings)
    signed_in: list[Viewer] = []
    try:
        with cheap_password_hashing(), session_scope(app.state.session_factory) as session:
            demo.seed_accounts(session=session)
        synced = asyncio.run(_sync(app, settings))
        if synced is None:
            raise RuntimeError("the demo content did not sync from the emulator")
        with cheap_password_hashing(), session_scope(app.state.session_factory) as session:
            group = session.scalar(select(Group).where(Group.name == demo.GROUP_NAME))
            if group is None:
                raise RuntimeError("the demo group is missing")
            users: list[User | None] = [
                session.scalar(select(User).where(User.email == demo.VIEWER_EMAIL))
            ]
            for n in range(viewers):
                email = f"load{n}@bench.example.com"
                user = create_user(
                    session=session,
                    email=email,
                    password=BENCH_PASSWORD,
                    name=f"load{n}",
                    role=Role.VIEWER,
                    rls_username=email,
                    actor=None,
                )
                session.add(GroupMembership(group_id=group.id, user_id=user.id))
                users.append(user)
            session.flush()
            for account in users:
                if account is None:
                    raise RuntimeError("the demo viewer is missing")
                started = start_session(session=session, user=account, user_agent="bench")
                signed_in.append(
                    Viewer(
                        email=account.email,
                        cookie=f"{SESSION_COOKIE}={started.cookie_value}",
                        csrf=started.record.csrf_token,
                    )
                )
    finally:
        app.state.engine.dispose()
    return signed_in


async def _sync(app: Any, settings: Any) -> Any:
    from embedportal import demo

    try:
        return await demo.sync_demo_workspace(
            session_factory=app.state.session_factory,
            settings=settings,
            clients=app.state.powerbi_clients,
        )
    finally:
        await app.state.powerbi_clients.aclose()


def token_call(viewer: Viewer, report_id: str) -> Call:
    return Call.post_json(
        f"/api/reports/{report_id}/token",
        TOKEN_BODY,
        host="127.0.0.1",
        headers={"Cookie": viewer.cookie, "X-CSRF-Token": viewer.csrf},
    )


async def generate_token_calls(emulator_url: str) -> int:
    async with httpx.AsyncClient(timeout=30) as client:
        answer = await client.get(f"{emulator_url}/emulator/api/stats")
        return int(answer.json()["generateTokenCalls"])


# --- measurements --------------------------------------------------------------------------------


@dataclass
class Row:
    """One line of the token table."""

    config: str
    kind: str  # "hit", "miss", "anchor"
    callers: int
    result: dict[str, Any]
    mints: int | None = None
    healthz: dict[str, Any] | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "config": self.config,
            "kind": self.kind,
            "callers": self.callers,
            **self.result,
            "generateTokenCalls": self.mints,
            "healthz": self.healthz,
        }


@dataclass
class Context:
    params: LoadParams
    tmp: Path
    env: dict[str, str]
    emulator_url: str
    hit_viewer: Viewer
    miss_viewers: list[Viewer]
    report_id: str
    console: Console
    rows: list[Row] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def add(self, row: Row) -> None:
        """Keep a figure, and say it at once: a long run shows where it is."""
        self.rows.append(row)
        r = row.result
        self.console.print(
            f"  {row.config}, {row.kind}, {row.callers} callers: {_fmt(r['okPerSecond'])} ok/s, "
            f"p99 {_fmt(r['p99Ms'])} ms, {r['failures']} failed"
            + (f"; /healthz {_healthz_text(row.healthz)}" if row.healthz else "")
        )


def portal_command(port: int, workers: int | None) -> list[str]:
    command = [_embedportal(), "serve", "--host", "127.0.0.1", "--port", str(port)]
    if workers:
        command += ["--workers", str(workers)]
    return command


@contextlib.contextmanager
def portals(ctx: Context, name: str, *, count: int, workers: int | None) -> Iterator[list[Server]]:
    prefix = f"embedportal-bench-{uuid.uuid4().hex[:8]}"
    env = {**ctx.env, "EMBEDPORTAL_REDIS_PREFIX": prefix}
    servers: list[Server] = []
    try:
        for n in range(count):
            port = free_port()
            servers.append(
                start_server(
                    f"{name}-{n}",
                    portal_command(port, workers),
                    port=port,
                    env=env,
                    cwd=ctx.tmp,
                    log_dir=ctx.tmp,
                )
            )
        yield servers
    finally:
        for server in servers:
            stop_server(server)
        if ctx.params.redis_url is not None:
            _drop_redis_prefix(ctx.params.redis_url, prefix)


async def measure_config(ctx: Context, config: str, *, count: int, workers: int | None) -> None:
    params = ctx.params
    hit = token_call(ctx.hit_viewer, ctx.report_id)
    misses = [token_call(viewer, ctx.report_id) for viewer in ctx.miss_viewers]
    for callers in params.concurrency:
        with portals(ctx, config, count=count, workers=workers) as servers:
            targets = [server.target for server in servers]
            # Warm-up: the hit key's token is minted and every process has served a few calls.
            await run_closed_loop(
                targets=targets,
                calls=repeat(hit, 4),
                callers=max(4, 2 * len(targets) * (workers or 1)),
                duration_seconds=None,
                timeout_seconds=30,
            )
            # Hits first: a portal that stalls under the misses' burst would spoil them.
            before = await generate_token_calls(ctx.emulator_url)
            hits, health = await while_probing_health(
                servers[0],
                run_closed_loop(
                    targets=targets,
                    calls=repeat(hit),
                    callers=callers,
                    duration_seconds=params.duration_seconds,
                    timeout_seconds=CALL_TIMEOUT_SECONDS,
                ),
            )
            minted = await generate_token_calls(ctx.emulator_url) - before
            ctx.add(Row(config, "hit", callers, hits.summary(), mints=minted, healthz=health))
            before = await generate_token_calls(ctx.emulator_url)
            miss_callers = min(callers, len(misses))
            miss, health = await while_probing_health(
                servers[0],
                run_closed_loop(
                    targets=targets,
                    calls=each_once(misses, miss_callers),
                    callers=miss_callers,
                    duration_seconds=None,
                    timeout_seconds=CALL_TIMEOUT_SECONDS,
                ),
            )
            minted = await generate_token_calls(ctx.emulator_url) - before
            ctx.add(Row(config, "miss", callers, miss.summary(), mints=minted, healthz=health))


async def while_probing_health(
    server: Server, run: Coroutine[Any, Any, Result]
) -> tuple[Result, dict[str, Any]]:
    """Run ``run`` while asking the first portal's `/healthz` every half second (the issue
    wants it answering throughout a burst); its answers and their worst latency. The prober
    has a thread and a loop of its own: on the callers' loop, each of its steps would wait
    behind every caller's, and the figure would be the load generator's, not the portal's."""
    probes = Result()
    done = threading.Event()
    call = Call(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")

    async def probe() -> None:
        while not done.is_set():
            once = await run_closed_loop(
                targets=[server.target], calls=repeat(call, 1), callers=1,
                duration_seconds=None, timeout_seconds=HEALTHZ_TIMEOUT_SECONDS,
            )  # fmt: skip
            probes.latencies_ms += once.latencies_ms
            for outcome, n in once.outcomes.items():
                probes.outcomes[outcome] = probes.outcomes.get(outcome, 0) + n
            await asyncio.to_thread(done.wait, 0.5)

    prober = asyncio.create_task(asyncio.to_thread(uvloop.run, probe()))
    try:
        result = await run
    finally:
        done.set()
        await prober
    return result, {
        "probes": probes.calls,
        "answered": probes.calls - probes.failures,
        "outcomes": dict(sorted(probes.outcomes.items())),
        "maxMs": None if not probes.latencies_ms else round(max(probes.latencies_ms), 1),
    }


def _healthz_text(health: dict[str, Any]) -> str:
    return f"{health['answered']}/{health['probes']} answered, max {_fmt(health['maxMs'])} ms"


async def _measure_or_say_why(
    ctx: Context, config: str, *, count: int, workers: int | None
) -> None:
    """The configurations beyond one worker are new: one that does not start is reported, and
    the rest of the run goes on."""
    try:
        await measure_config(ctx, config, count=count, workers=workers)
    except RuntimeError as error:
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        said = " ... ".join(lines[:1] + lines[-1:]) if lines else type(error).__name__
        ctx.skipped.append(f"{config}: failed: {said}")


async def measure_anchor(ctx: Context) -> None:
    port = free_port()
    command = [
        sys.executable, "-m", "uvicorn", "bench.anchor_app:app",
        "--host", "127.0.0.1", "--port", str(port), "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    server = start_server("anchor", command, port=port, env=env, cwd=ROOT, log_dir=ctx.tmp)
    try:
        call = Call.post_json(f"/api/reports/{ctx.report_id}/token", TOKEN_BODY, host="127.0.0.1")
        await run_closed_loop(
            targets=[server.target], calls=repeat(call, 20),
            callers=4, duration_seconds=None,
        )  # fmt: skip
        for callers in ctx.params.concurrency:
            result = await run_closed_loop(
                targets=[server.target],
                calls=repeat(call),
                callers=callers,
                duration_seconds=ctx.params.duration_seconds,
                timeout_seconds=CALL_TIMEOUT_SECONDS,
            )
            ctx.add(Row("anchor (1 process)", "anchor", callers, result.summary()))
    finally:
        stop_server(server)


async def hold_viewers(ctx: Context) -> dict[str, Any]:
    """Open push streams on one portal process, up to each count in turn; its RSS each time."""
    counts = sorted(set(ctx.params.viewers))
    limit = raise_open_file_limit(max(counts) + 1024)
    figures: dict[str, Any] = {"openFileLimit": limit, "levels": []}
    with portals(ctx, "viewers", count=1, workers=None) as (server,):
        pid = server.process.pid
        writers: list[asyncio.StreamWriter] = []
        viewers = [ctx.hit_viewer, *ctx.miss_viewers]
        path = f"/api/events?report={ctx.report_id}"
        # A token call first, so the baseline includes what the first requests allocate.
        hit = token_call(ctx.hit_viewer, ctx.report_id)
        await run_closed_loop(
            targets=[server.target], calls=repeat(hit, 20),
            callers=4, duration_seconds=None,
        )  # fmt: skip
        await asyncio.sleep(0.5)
        baseline = rss_bytes(pid) or 0
        figures["baselineRssMiB"] = round(baseline / 2**20, 1)
        failures: dict[str, int] = {}
        gate = asyncio.Semaphore(VIEWER_OPENS_AT_ONCE)

        async def open_one(n: int) -> None:
            viewer = viewers[n % len(viewers)]
            request = (
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n"
                f"Cookie: {viewer.cookie}\r\n\r\n"
            ).encode()
            async with gate:
                writer: asyncio.StreamWriter | None = None
                try:
                    reader, connected = await asyncio.wait_for(
                        asyncio.open_connection("127.0.0.1", server.port), 30
                    )
                    writer = connected
                    connected.write(request)
                    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
                    if b" 200 " not in head.split(b"\r\n", 1)[0]:
                        raise ConnectionError(head.split(b"\r\n", 1)[0].decode(errors="replace"))
                    # The stream's first event ("retry: …"): the server holds it open now.
                    await asyncio.wait_for(reader.readuntil(b"\n\n"), 30)
                except (OSError, TimeoutError, asyncio.IncompleteReadError) as error:
                    name = "timeout" if isinstance(error, TimeoutError) else type(error).__name__
                    failures[name] = failures.get(name, 0) + 1
                    if writer is not None:
                        writer.close()
                    return
                except asyncio.CancelledError:  # out of time: a half-open stream is not held
                    if writer is not None:
                        writer.close()
                    raise
                writers.append(connected)

        opened = 0
        try:
            for count in counts:
                started = time.perf_counter()
                tasks = [asyncio.create_task(open_one(n)) for n in range(opened, count)]
                _done, late = await asyncio.wait(tasks, timeout=ctx.params.viewers_seconds)
                for task in late:
                    task.cancel()
                await asyncio.gather(*late, return_exceptions=True)
                seconds = time.perf_counter() - started
                opened = count
                await asyncio.sleep(1.0)
                rss = rss_bytes(pid) or 0
                probe = await run_closed_loop(
                    targets=[server.target], calls=repeat(hit, 20),
                    callers=1, duration_seconds=None, timeout_seconds=CALL_TIMEOUT_SECONDS,
                )  # fmt: skip
                held = len(writers)
                figures["levels"].append(
                    {
                        "viewers": count,
                        "held": held,
                        "failures": dict(failures),
                        "openSeconds": round(seconds, 1),
                        "notOpenedInTime": len(late),
                        "rssMiB": round(rss / 2**20, 1),
                        "rssBytes": rss,
                        "kibPerViewer": (
                            round((rss - baseline) / held / 1024, 1) if held else None
                        ),
                        "tokenCallWhileHeld": probe.summary(),
                    }
                )
        finally:
            for writer in writers:
                writer.close()
    return figures


# --- entry point ---------------------------------------------------------------------------------


def run(console: Console, params: LoadParams) -> dict[str, Any]:
    from embedportal.emulator.demo import REGIONAL_PERFORMANCE_REPORT_ID

    started = time.perf_counter()
    raise_open_file_limit(max([*params.viewers, *params.concurrency, 1024]) + 1024)
    with contextlib.ExitStack() as stack:
        # The servers run in sessions of their own; a SIGTERM to the benchmark must still stop
        # them, so it unwinds like Ctrl-C does.
        previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
        stack.callback(signal.signal, signal.SIGTERM, previous)
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="embedportal-load-")))
        database_url = stack.enter_context(temporary_database(params.database_url, tmp))
        emulator_port = free_port()
        emulator = start_server(
            "emulator",
            [_embedportal(), "emulator", "--host", "127.0.0.1", "--port", str(emulator_port)],
            port=emulator_port,
            env={**_clean_env(), "EMBEDPORTAL_EMULATOR_REQUEST_BUDGET": "0"},
            cwd=tmp,
            log_dir=tmp,
        )
        stack.callback(stop_server, emulator)
        env = {
            **_clean_env(),
            "EMBEDPORTAL_ENVIRONMENT": "development",
            "EMBEDPORTAL_SECRET_KEY": secrets.token_urlsafe(48),
            "EMBEDPORTAL_DATABASE_URL": database_url,
            "EMBEDPORTAL_DATA_DIR": str(tmp),
            "EMBEDPORTAL_DEMO": "false",
            **_powerbi_env(emulator.url),
        }
        if params.redis_url is not None:
            env["EMBEDPORTAL_REDIS_URL"] = params.redis_url
        signed_in = seed(database_url, env, viewers=params.miss_viewers)
        ctx = Context(
            params=params,
            tmp=tmp,
            env=env,
            emulator_url=emulator.url,
            hit_viewer=signed_in[0],
            miss_viewers=signed_in[1:],
            report_id=REGIONAL_PERFORMANCE_REPORT_ID,
            console=console,
        )
        # uvloop, as uvicorn serves with: the load generator shares the two cores with the
        # servers it measures, and its loop costs them less CPU than asyncio's own.
        figures = uvloop.run(_measure(ctx, console))
    figures["backend"] = "PostgreSQL + Redis" if params.database_url else "SQLite"
    figures["runtimeSeconds"] = round(time.perf_counter() - started, 1)
    print_figures(console, figures, params)
    return figures


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _clean_env() -> dict[str, str]:
    """This process's environment without any EMBEDPORTAL_* of its own (the bench sets its)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("EMBEDPORTAL_")}


async def _measure(ctx: Context, console: Console) -> dict[str, Any]:
    params = ctx.params
    console.print(
        f"  anchor, then the portal: {', '.join(map(str, params.concurrency))} callers, "
        f"hits for {params.duration_seconds:g} s, misses over {len(ctx.miss_viewers)} viewers"
    )
    await measure_anchor(ctx)
    await measure_config(ctx, "1 worker", count=1, workers=None)
    if serve_has_workers():
        workers = params.workers or (os.cpu_count() or 2)
        await _measure_or_say_why(ctx, f"{workers} workers", count=1, workers=workers)
    else:
        ctx.skipped.append("N workers: skipped: serve has no --workers yet")
    if params.skip_fleet:
        ctx.skipped.append("two instances: skipped (--load-skip-fleet)")
    elif params.database_url is None or params.redis_url is None:
        ctx.skipped.append(
            "two instances: skipped: they need a shared PostgreSQL + Redis "
            "(EMBEDPORTAL_BENCH_DATABASE_URL and EMBEDPORTAL_BENCH_REDIS_URL, or "
            "--load-database-url / --load-redis-url)"
        )
    else:
        await _measure_or_say_why(ctx, "2 instances", count=2, workers=None)
    viewers: dict[str, Any] | None = None
    if params.skip_viewers or not params.viewers:
        ctx.skipped.append("open viewers: skipped")
    else:
        viewers = await hold_viewers(ctx)
    return {
        "tokens": [row.as_json() for row in ctx.rows],
        "viewers": viewers,
        "skipped": ctx.skipped,
        "cpuCount": os.cpu_count(),
    }


# --- printing ------------------------------------------------------------------------------------


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def print_figures(console: Console, figures: dict[str, Any], params: LoadParams) -> None:
    rows = figures["tokens"]
    anchor = {r["callers"]: r for r in rows if r["kind"] == "anchor"}
    table = Table(box=box.ASCII2, highlight=False)
    for n, column in enumerate(
        [
            "configuration",
            "calls",
            "callers",
            "answers",
            "req/s",
            "x anchor",
            "p50 ms",
            "p99 ms",
            "max ms",
            "Generate\nToken",
            "/healthz\nanswered",
            "target",
        ]
    ):
        table.add_column(column, justify="left" if n in (0, 11) else "right", no_wrap=n == 0)
    for r in rows:
        base = anchor.get(r["callers"])
        ratio = (
            r["okPerSecond"] / base["okPerSecond"]
            if base and base["okPerSecond"] and r["okPerSecond"] is not None
            else None
        )
        table.add_row(
            r["config"],
            r["kind"],
            str(r["callers"]),
            " ".join(f"{k}x{v}" for k, v in r["outcomes"].items()) or "-",
            _fmt(r["okPerSecond"]),
            "-" if r["kind"] == "anchor" or ratio is None else f"{ratio:.1%}",
            _fmt(r["p50Ms"]),
            _fmt(r["p99Ms"]),
            _fmt(r["maxMs"]),
            "-" if r["generateTokenCalls"] is None else str(r["generateTokenCalls"]),
            "-" if not r["healthz"] else f"{r['healthz']['answered']}/{r['healthz']['probes']}",
            _verdict(r, ratio),
        )
    console.print(table)
    console.print(
        "  req/s counts answered calls (2xx) per second; 'x anchor' is that against the bare "
        "endpoint at the same number of callers. Misses: each of "
        f"{params.miss_viewers} viewers once (a different RLS identity each, so each call mints); "
        f"hits: the demo viewer, one report, for {params.duration_seconds:g} s. /healthz: "
        f"asked every 0.5 s during each run ({HEALTHZ_TIMEOUT_SECONDS:g} s time-out), answered "
        "of asked. Backend: "
        f"{figures['backend']}; {figures['cpuCount']} cores shared by the load generator and "
        "the servers."
    )
    for line in figures["skipped"]:
        console.print(f"  {line}")
    viewers = figures.get("viewers")
    if viewers:
        table = Table(box=box.ASCII2, highlight=False)
        for n, column in enumerate(
            ["open viewers", "held", "failed", "opening s", "server RSS MiB", "KiB / viewer",
             "token call p50 ms\nwhile held", "target"]
        ):  # fmt: skip
            table.add_column(column, justify="left" if n in (0, 7) else "right")
        for level in viewers["levels"]:
            target = ""
            if level["viewers"] >= TARGET_VIEWERS_COUNT:
                under = (
                    level["rssBytes"] < TARGET_VIEWERS_BYTES and level["held"] >= level["viewers"]
                )
                target = f"< 1 GiB at 10,000: {'met' if under else 'NOT met'}"
                if level["notOpenedInTime"] and level["kibPerViewer"] is not None:
                    projected = (
                        viewers["baselineRssMiB"] + level["kibPerViewer"] * level["viewers"] / 1024
                    )
                    target += (
                        f" ({level['notOpenedInTime']:,} not open in the time given; at this "
                        f"KiB per viewer, {level['viewers']:,} would take {projected:,.0f} MiB)"
                    )
            table.add_row(
                f"{level['viewers']:,}",
                f"{level['held']:,}",
                " ".join(f"{k}x{v}" for k, v in level["failures"].items()) or "0",
                _fmt(level["openSeconds"]),
                _fmt(level["rssMiB"]),
                _fmt(level["kibPerViewer"]),
                _fmt(level["tokenCallWhileHeld"]["p50Ms"]),
                target,
            )
        console.print(table)
        console.print(
            f"  One portal process (1 worker) holding `GET /api/events` streams, signed in; RSS "
            f"from /proc/<pid>/status, {viewers['baselineRssMiB']} MiB before the first stream; "
            "KiB per viewer = (RSS - that) / streams held. Streams are opened "
            f"{VIEWER_OPENS_AT_ONCE} at a time, for at most {params.viewers_seconds:g} s per "
            "count (--load-viewers-seconds). Open-file limit "
            f"{viewers['openFileLimit']:,}."
        )
    console.print(f"  (load part: {figures['runtimeSeconds']} s)")


def _verdict(row: dict[str, Any], ratio: float | None) -> str:
    parts = []
    if row["kind"] == "hit" and row["config"] == "1 worker" and ratio is not None:
        parts.append(f">= 40% anchor: {'met' if ratio >= TARGET_HIT_RATIO else 'NOT met'}")
    # The latency target is the cache hit's; a miss waits for Power BI, and must be answered.
    if row["kind"] == "hit" and row["callers"] == 64 and row["p99Ms"] is not None:
        parts.append(f"p99 < 50: {'met' if row['p99Ms'] < TARGET_P99_MS_AT_64 else 'NOT met'}")
    if row["kind"] != "anchor" and row["callers"] >= 256:
        errors = {k: v for k, v in row["outcomes"].items() if not k.startswith("2")}
        parts.append("no error/time-out: " + ("met" if not errors else "NOT met"))
    return "; ".join(parts)
