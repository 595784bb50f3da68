"""A fleet on loopback: portal instances as real processes sharing one PostgreSQL database and
one Redis server of the test's own, the emulator as its own process behind a proxy that can
slow it down. The test plays the load balancer: it picks which instance a request goes to."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from embedportal.access.organization import PowerBIClients
from embedportal.db.migrate import upgrade_database
from embedportal.db.session import create_session_factory, session_scope
from embedportal.demo import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    VIEWER_EMAIL,
    VIEWER_PASSWORD,
    seed_accounts,
    sync_demo_workspace,
)
from embedportal.emulator.settings import EmulatorSettings
from embedportal.settings import Settings
from tests.support.portal import TEST_SECRET_KEY
from tests.support.redis_server import RedisServer
from tests.support.servers import REPO_ROOT

CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]*)"')
EMULATOR_SIGNING_KEY = "fleet-emulator-signing-key-0123456789"


def _spawn(args: list[str], *, env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    log_file = log_path.open("ab")
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "embedportal", *args],
            cwd=REPO_ROOT,
            env={**os.environ, **env},
            stdout=log_file,
            stderr=subprocess.STDOUT,
            # Its own process group, so a kill reaches uvicorn's worker processes too.
            start_new_session=True,
        )
    finally:
        log_file.close()


def wait_for(url: str, process: subprocess.Popen[bytes], log_path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url} exited early:\n{log_path.read_text(errors='replace')}")
        try:
            if httpx.get(url, timeout=2.0).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up:\n{log_path.read_text(errors='replace')[-3000:]}")


@dataclass
class Process:
    """One server process (its process group) that a test may stop, kill and start again."""

    name: str
    args: list[str]
    env: dict[str, str]
    port: int
    log_path: Path
    health_path: str = "/healthz"
    process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 90.0) -> None:
        assert self.process is None or self.process.poll() is not None
        self.process = _spawn(self.args, env=self.env, log_path=self.log_path)
        wait_for(self.base_url + self.health_path, self.process, self.log_path, timeout)

    def _signal(self, sig: signal.Signals) -> None:
        if self.process is not None and self.process.poll() is None:
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                pass

    def kill(self) -> None:
        """As a crash: no shutdown, no goodbye."""
        self._signal(signal.SIGKILL)
        if self.process is not None:
            self.process.wait(timeout=10)

    def stop(self) -> None:
        self._signal(signal.SIGTERM)
        if self.process is not None:
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


class SlowProxy:
    """A TCP proxy in front of the emulator; `delay` seconds are added before each request's
    bytes go on (0: a plain pipe)."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.delay = 0.0
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(256)
        self.port: int = self._listener.getsockname()[1]
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True, name="slow-proxy")
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        self._listener.settimeout(0.2)
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
        except OSError:
            client.close()  # the emulator is down: the caller sees the connection drop
            return
        upstream.settimeout(None)

        def pipe(source: socket.socket, target: socket.socket, slow: bool) -> None:
            try:
                while data := source.recv(65536):
                    if slow and self.delay:
                        time.sleep(self.delay)
                    target.sendall(data)
            except OSError:
                pass
            finally:
                for sock in (source, target):
                    try:
                        sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

        threading.Thread(target=pipe, args=(upstream, client, False), daemon=True).start()
        pipe(client, upstream, True)
        client.close()
        upstream.close()

    def close(self) -> None:
        self._stopping.set()
        self._listener.close()
        self._thread.join(timeout=5)


@dataclass
class Viewer:
    """A signed-in browser session (cookies), valid on every instance (sessions live in the
    shared database)."""

    cookies: httpx.Cookies
    csrf: str

    def client(self, base_url: str, timeout: float = 10.0) -> httpx.Client:
        return httpx.Client(base_url=base_url, cookies=self.cookies, timeout=timeout)


def sign_in(base_url: str, email: str, password: str) -> Viewer:
    with httpx.Client(base_url=base_url, timeout=20.0) as client:
        page = client.get("/login")
        token = CSRF_META.search(page.text)
        assert token, page.text[:300]
        answer = client.post(
            "/login",
            data={"email": email, "password": password, "csrf_token": token.group(1)},
        )
        assert answer.status_code == 303, (answer.status_code, answer.text[:300])
        reports = client.get("/reports")
        csrf = CSRF_META.search(reports.text)
        assert csrf and csrf.group(1)
        return Viewer(cookies=client.cookies, csrf=csrf.group(1))


@dataclass
class Fleet:
    tmp: Path
    database_url: str
    admin_engine: Engine
    redis: RedisServer
    emulator: Process
    proxy: SlowProxy
    instances: dict[str, Process] = field(default_factory=dict)
    report_ids: dict[str, str] = field(default_factory=dict)

    def engine(self) -> Engine:
        return create_engine(self.database_url)

    def emulator_stats(self) -> dict[str, Any]:
        answer = httpx.get(self.emulator.base_url + "/emulator/api/stats", timeout=5).json()
        assert isinstance(answer, dict)
        return answer

    def generate_token_calls(self) -> int:
        return int(self.emulator_stats()["generateTokenCalls"])

    def terminate_connections(self) -> int:
        """pg_terminate_backend on every connection of the fleet's database; how many."""
        name = make_url(self.database_url).database
        with self.admin_engine.connect() as connection:
            rows = connection.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :name AND pid <> pg_backend_pid()"
                ),
                {"name": name},
            ).all()
        return len(rows)

    def admin(self, instance: str = "a") -> Viewer:
        return sign_in(self.instances[instance].base_url, ADMIN_EMAIL, ADMIN_PASSWORD)

    def viewer(self, instance: str = "a") -> Viewer:
        return sign_in(self.instances[instance].base_url, VIEWER_EMAIL, VIEWER_PASSWORD)


def portal_env(
    fleet_tmp: Path, database_url: str, redis_url: str, proxy_url: str, prefix: str
) -> dict[str, str]:
    emulator = EmulatorSettings(_env_file=None)  # type: ignore[call-arg]
    return {
        "EMBEDPORTAL_ENVIRONMENT": "test",
        "EMBEDPORTAL_SECRET_KEY": TEST_SECRET_KEY,
        "EMBEDPORTAL_DATA_DIR": str(fleet_tmp),
        "EMBEDPORTAL_DATABASE_URL": database_url,
        "EMBEDPORTAL_REDIS_URL": redis_url,
        "EMBEDPORTAL_REDIS_PREFIX": prefix,
        "EMBEDPORTAL_POWERBI_TENANT_ID": emulator.tenant_id,
        "EMBEDPORTAL_POWERBI_CLIENT_ID": emulator.client_id,
        "EMBEDPORTAL_POWERBI_CLIENT_SECRET": emulator.client_secret,
        "EMBEDPORTAL_POWERBI_AUTHORITY_HOST": proxy_url,
        "EMBEDPORTAL_POWERBI_API_URL": proxy_url,
        "EMBEDPORTAL_ARM_URL": proxy_url,
        "EMBEDPORTAL_CAPACITY_SUBSCRIPTION_ID": emulator.subscription_id,
        "EMBEDPORTAL_CAPACITY_RESOURCE_GROUP": emulator.resource_group,
        "EMBEDPORTAL_CAPACITY_NAME": emulator.capacity_name,
        "EMBEDPORTAL_CAPACITY_CONTROLLER": "true",
        "EMBEDPORTAL_CAPACITY_CONTROLLER_SECONDS": "0.5",
        "EMBEDPORTAL_DEMO": "false",
        "EMBEDPORTAL_LOG_FORMAT": "json",
        "EMBEDPORTAL_HEALTH_CACHE_SECONDS": "0.5",
        "EMBEDPORTAL_HEALTH_TIMEOUT_SECONDS": "1.0",
    }


def seed(database_url: str, env: dict[str, str]) -> None:
    """Migrate, create the demo accounts, sync the emulator's workspaces and grant them."""
    upgrade_database(database_url)
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        **{key.removeprefix("EMBEDPORTAL_").lower(): value for key, value in env.items()},
    )
    engine = create_engine(database_url)
    factory = create_session_factory(engine)
    try:
        with session_scope(factory) as session:
            seed_accounts(session=session)

        async def sync() -> None:
            clients = PowerBIClients()
            try:
                await sync_demo_workspace(
                    session_factory=factory, settings=settings, clients=clients, wait_seconds=30
                )
            finally:
                await clients.aclose()

        asyncio.run(sync())
    finally:
        engine.dispose()


@dataclass
class EventStream:
    """A viewer's push stream read in a thread: the events that arrived, as (kind, data)."""

    viewer: Viewer
    base_url: str
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    opened: threading.Event = field(default_factory=threading.Event)
    ended: threading.Event = field(default_factory=threading.Event)
    status: int | None = None

    def run(self) -> None:
        try:
            with (
                self.viewer.client(self.base_url, timeout=None) as client,  # type: ignore[arg-type]
                client.stream("GET", "/api/events") as response,
            ):
                self.status = response.status_code
                kind = None
                for line in response.iter_lines():
                    if line.startswith("retry:"):
                        self.opened.set()
                    elif line.startswith("event: "):
                        kind = line.removeprefix("event: ")
                    elif line.startswith("data: ") and kind is not None:
                        self.events.append((kind, json.loads(line.removeprefix("data: "))))
                        kind = None
        except httpx.HTTPError:
            pass
        finally:
            self.ended.set()

    def wait_for(self, kind: str, after: int, timeout: float) -> tuple[str, dict[str, Any]] | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in self.events[after:]:
                if event[0] == kind:
                    return event
            time.sleep(0.02)
        return None


def open_stream(viewer: Viewer, base_url: str, timeout: float = 10.0) -> EventStream:
    stream = EventStream(viewer, base_url)
    threading.Thread(target=stream.run, daemon=True, name="event-stream").start()
    assert stream.opened.wait(timeout), f"no push stream from {base_url} (status {stream.status})"
    return stream


def unique_name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def new_demo_viewer(fleet: Fleet) -> Viewer:
    """A new member of the demo viewers' group, signed in on instance `a`: an identity whose
    row-level-security tokens nobody has minted yet."""
    from sqlalchemy import select

    from embedportal.access.users import create_user
    from embedportal.db.models import Group, GroupMembership, Role
    from embedportal.demo import GROUP_NAME

    email = f"{unique_name('viewer')}@example.com"
    password = "fleet-viewer-password"
    engine = fleet.engine()
    try:
        with session_scope(create_session_factory(engine)) as session:
            user = create_user(
                session=session, email=email, password=password, role=Role.VIEWER, actor=None
            )
            group = session.scalar(select(Group).where(Group.name == GROUP_NAME))
            assert group is not None
            session.add(GroupMembership(group_id=group.id, user_id=user.id))
    finally:
        engine.dispose()
    return sign_in(fleet.instances["a"].base_url, email, password)


def rls_report_id(fleet: Fleet) -> str:
    from sqlalchemy import select

    from embedportal.db.models import Report

    engine = fleet.engine()
    try:
        with engine.connect() as connection:
            found = connection.scalar(select(Report.id).where(Report.rls_required.is_(True)))
    finally:
        engine.dispose()
    assert found is not None
    return str(found)
