"""Running the servers: the portal, and the built-in emulator beside it when it is wanted."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import uvicorn
from pydantic import SecretStr
from rich.console import Console

from embedportal.settings import Settings, UnsafeSettingsError

logger = logging.getLogger("embedportal")

GRACEFUL_SHUTDOWN_SECONDS = 3


# The worker processes' app factory, as uvicorn imports it.
WORKER_APP_FACTORY = "embedportal.server:create_worker_app"


def setup_logging(settings: Settings) -> None:
    from embedportal.logs import configure_logging

    configure_logging(log_format=settings.log_format, level=settings.log_level)


# asyncio's own loop, not uvloop: uvloop (libuv) takes a few waiting connections per turn of
# the loop, so on a loop busy with a burst of token requests each turn lasts ~0.1 s and a new
# connection (a viewer reconnecting, a load balancer's /healthz probe) waited seconds to be
# accepted (bench/README.md, 7 December). asyncio's accepts every waiting connection at once,
# and served as many token requests a second in the same runs.
EVENT_LOOP = "asyncio"


def serving_loop() -> asyncio.AbstractEventLoop:
    """A new event loop of the kind the portal serves on (EVENT_LOOP)."""
    return asyncio.SelectorEventLoop()


def _server(app: object, *, host: str, port: int) -> uvicorn.Server:
    config = uvicorn.Config(
        app,  # type: ignore[arg-type]
        host=host,
        port=port,
        log_config=None,  # our handler (setup_logging) formats and scrubs uvicorn's lines too
        access_log=False,  # access logs would carry report ids in URLs; we log what matters
        # uvicorn would trust X-Forwarded-For from any loopback peer; the portal reads it itself,
        # and only from EMBEDPORTAL_TRUSTED_PROXIES (web/client_address.py).
        proxy_headers=False,
        loop=EVENT_LOOP,
        lifespan="on",
        # Open viewers hold push streams forever; on shutdown give them a moment, not forever.
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )
    return uvicorn.Server(config)


def embedded_default_settings(settings: Settings) -> tuple[Settings, object]:
    """The portal's settings with the built-in emulator standing in for Power BI, on the
    emulator port: its identity fills the connection, and `emulator_url` says where it is.

    The Power BI, Entra and ARM addresses stay as set (Microsoft's, by default): the emulator's
    address goes with the emulator's identity only (access.organization.effective_connection),
    so a connection an administrator enters in Admin → Settings reaches the real services. The
    workspace stays as set (unset: every workspace, so the demo shows both of the emulator's)."""
    from embedportal.emulator.settings import EmulatorSettings

    emulator_settings = EmulatorSettings()
    base = f"http://127.0.0.1:{settings.resolved_emulator_port}"
    portal_settings = settings.model_copy(
        update={
            "powerbi_tenant_id": emulator_settings.tenant_id,
            "powerbi_client_id": emulator_settings.client_id,
            # model_copy does not validate: wrap the secret as the field's type.
            "powerbi_client_secret": SecretStr(emulator_settings.client_secret),
            "emulator_url": base,
            "capacity_subscription_id": emulator_settings.subscription_id,
            "capacity_resource_group": emulator_settings.resource_group,
            "capacity_name": emulator_settings.capacity_name,
        }
    )
    return portal_settings, emulator_settings


def emulator_wanted(settings: Settings) -> bool:
    """Whether `serve` starts the built-in emulator: never beside real credentials; in
    production only when EMBEDPORTAL_BUILTIN_EMULATOR=on says so (a production portal with no
    connection yet waits for one in Admin → Settings instead)."""
    if settings.has_powerbi_credentials or settings.builtin_emulator == "off":
        return False
    return settings.builtin_emulator == "on" or settings.environment != "production"


def emulator_refusal(settings: Settings) -> str | None:
    """Why the built-in emulator may not start with these settings, or None when it may: in
    production its published demo secret would let anyone who reaches its port act as the
    portal's service principal."""
    if not emulator_wanted(settings) or settings.environment != "production":
        return None
    from embedportal.emulator.settings import DEFAULT_CLIENT_SECRET, EmulatorSettings

    if EmulatorSettings().client_secret == DEFAULT_CLIENT_SECRET:
        return (
            "The built-in emulator's client secret is the published demo value. In production "
            "set EMBEDPORTAL_EMULATOR_CLIENT_SECRET to a random value, or leave "
            "EMBEDPORTAL_BUILTIN_EMULATOR unset and connect Power BI in Admin → Settings."
        )
    return None


def no_connection_note(settings: Settings) -> str:
    """What `serve` says when it starts with no Power BI connection and no emulator."""
    why = (
        "production starts no emulator unless EMBEDPORTAL_BUILTIN_EMULATOR=on"
        if settings.environment == "production" and settings.builtin_emulator != "off"
        else "EMBEDPORTAL_BUILTIN_EMULATOR=off"
    )
    return (
        "No Power BI connection in the environment and no emulator "
        f"({why}): enter the connection in Admin → Settings."
    )


def _emulator_allowed(settings: Settings) -> bool:
    """`emulator_wanted`, after refusing an unsafe emulator outright (the CLI says why first)."""
    refusal = emulator_refusal(settings)
    if refusal is not None:
        raise UnsafeSettingsError(refusal)
    return emulator_wanted(settings)


async def run_portal(settings: Settings, *, console: Console) -> None:
    from embedportal.app import create_app
    from embedportal.db.migrate import upgrade_database

    setup_logging(settings)
    upgrade_database(settings.resolved_database_url)
    servers: list[uvicorn.Server] = []
    with_emulator = _emulator_allowed(settings)
    if with_emulator:
        from embedportal.emulator.app import create_emulator_app

        settings, emulator_settings = embedded_default_settings(settings)
        emulator_app = create_emulator_app(emulator_settings)  # type: ignore[arg-type]
        servers.append(
            _server(emulator_app, host=settings.host, port=settings.resolved_emulator_port)
        )
        console.print(
            "[bold]Built-in Power BI emulator[/bold] on "
            f"http://{settings.host}:{settings.resolved_emulator_port}"
        )
        for line in emulator_settings.describe():  # type: ignore[attr-defined]
            console.print(f"  {line}")
    elif not settings.has_powerbi_credentials:
        console.print(no_connection_note(settings))

    portal_app = create_app(settings)
    from embedportal.demo import demo_wanted, prepare_demo

    if demo_wanted(settings, with_emulator=with_emulator):
        prepare_demo(portal_app)
    servers.append(_server(portal_app, host=settings.host, port=settings.port))
    console.print(f"[bold green]embedportal[/bold green] on http://{settings.host}:{settings.port}")
    for line in getattr(portal_app.state, "startup_notes", []):
        console.print(f"  {line}")
    await _serve_all(servers)


def workers_refusal(settings: Settings, workers: int) -> str | None:
    """Why ``workers`` processes cannot serve with these settings, or None when they can."""
    from sqlalchemy.engine import make_url

    if workers < 1:
        return "--workers must be at least 1."
    if workers == 1:
        return None
    url = make_url(settings.resolved_database_url)
    if url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:"):
        return (
            "An in-memory SQLite database lives inside one process: each worker would have a "
            "database of its own. Set EMBEDPORTAL_DATABASE_URL to PostgreSQL (or a SQLite file)."
        )
    if not settings.redis_url:
        return (
            "Several workers need EMBEDPORTAL_REDIS_URL: the token cache and the push channel "
            "must be shared between the processes, or each worker mints its own tokens and a "
            "settings change reaches only the viewers of the worker that saved it."
        )
    return None


def worker_environment(settings: Settings, base: Settings) -> dict[str, str]:
    """EMBEDPORTAL_* variables that make a worker's `Settings()` equal ``settings``: the fields
    that differ from ``base`` (what the environment alone gives)."""
    changed: dict[str, str] = {}
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if value == getattr(base, name) or value is None:
            continue
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        changed[f"EMBEDPORTAL_{name.upper()}"] = "" if value is None else str(value)
    return changed


def create_worker_app() -> object:
    """One worker's portal, built from the environment the parent prepared."""
    from embedportal.app import create_app

    settings = Settings()
    setup_logging(settings)
    return create_app(settings)


def run_workers(settings: Settings, *, workers: int, console: Console) -> None:
    """Serve with ``workers`` uvicorn processes on one port. The parent migrates the database,
    runs the built-in emulator (when it is the default) and prepares the demo once; each
    worker then builds its app from the same settings, passed down in the environment."""
    from embedportal.db.migrate import upgrade_database

    setup_logging(settings)
    upgrade_database(settings.resolved_database_url)
    base = Settings()
    with_emulator = _emulator_allowed(settings)
    if not with_emulator and not settings.has_powerbi_credentials:
        console.print(no_connection_note(settings))
    with _parent_emulator(settings, enabled=with_emulator, console=console) as portal_settings:
        _prepare_demo_once(portal_settings, with_emulator=with_emulator)
        _export(worker_environment(portal_settings, base))
        console.print(
            f"[bold green]embedportal[/bold green] on "
            f"http://{portal_settings.host}:{portal_settings.port} with {workers} workers"
        )
        uvicorn.run(
            WORKER_APP_FACTORY,
            factory=True,
            host=portal_settings.host,
            port=portal_settings.port,
            workers=workers,
            log_config=None,
            access_log=False,
            proxy_headers=False,  # as in _server: web/client_address.py decides
            loop=EVENT_LOOP,
            lifespan="on",
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        )


@contextmanager
def _parent_emulator(settings: Settings, *, enabled: bool, console: Console) -> Iterator[Settings]:
    if not enabled:
        yield settings
        return
    from embedportal.emulator.app import create_emulator_app

    portal_settings, emulator_settings = embedded_default_settings(settings)
    emulator_app = create_emulator_app(emulator_settings)  # type: ignore[arg-type]
    with serve_in_thread(
        emulator_app, host=settings.host, port=settings.resolved_emulator_port
    ) as url:
        console.print(f"[bold]Built-in Power BI emulator[/bold] on {url}")
        for line in emulator_settings.describe():  # type: ignore[attr-defined]
            console.print(f"  {line}")
        yield portal_settings


def _prepare_demo_once(settings: Settings, *, with_emulator: bool) -> None:
    from embedportal.demo import demo_wanted, prepare_demo

    if not demo_wanted(settings, with_emulator=with_emulator):
        return
    from embedportal.app import create_app

    app = create_app(settings)

    async def seed() -> None:
        for start in app.state.on_startup:
            await start()
        for close in reversed(app.state.on_shutdown):
            await close()

    try:
        prepare_demo(app)
        asyncio.run(seed())
    finally:
        app.state.engine.dispose()


def _export(variables: Mapping[str, str]) -> None:
    # Spawned workers inherit the parent's environment.
    os.environ.update(variables)


async def run_emulator_only(*, host: str, port: int, console: Console) -> None:
    from embedportal.emulator.app import create_emulator_app
    from embedportal.emulator.settings import EmulatorSettings
    from embedportal.logs import configure_logging

    # The emulator reads no portal settings (no secret key needed): the format comes from the
    # same variable, when it names one.
    log_format = os.environ.get("EMBEDPORTAL_LOG_FORMAT", "text")
    configure_logging(log_format="json" if log_format == "json" else "text")
    emulator_settings = EmulatorSettings()
    console.print(f"[bold]embedportal Power BI emulator[/bold] on http://{host}:{port}")
    for line in emulator_settings.describe():
        console.print(f"  {line}")
    await _serve_all([_server(create_emulator_app(emulator_settings), host=host, port=port)])


async def _serve_all(servers: list[uvicorn.Server]) -> None:
    """Run the servers together; when one stops (Ctrl-C or a failure), stop them all."""
    tasks = [asyncio.create_task(server.serve()) for server in servers]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for server in servers:
            server.should_exit = True
        await asyncio.gather(*tasks, return_exceptions=True)


_DEFAULT_EPHEMERAL_PORTS = (32768, 60999)


def _ephemeral_ports() -> tuple[int, int]:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range", encoding="ascii") as ranges:
            low, high = (int(part) for part in ranges.read().split())
    except (OSError, ValueError):
        return _DEFAULT_EPHEMERAL_PORTS
    return low, high


def free_loopback_port() -> int:
    """A loopback port free now, for a server a test or benchmark starts a moment later.

    Chosen outside the kernel's ephemeral range on purpose: a port the kernel hands out for
    bind(0) is also what it hands to the next outgoing connection, and with suites running side
    by side one of those connections can take it before the server binds (seen in CI as
    'address already in use'). Ports below the range are never picked by the kernel itself."""
    low, high = _ephemeral_ports()
    candidates = range(10_000, low) if low > 11_000 else range(high + 1, 65_536)
    for _ in range(200):
        port = random.choice(candidates)  # noqa: S311 - spreading choices, not a secret
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def serve_in_thread(
    app: object, *, host: str = "127.0.0.1", port: int, start_timeout: float = 30.0
) -> Iterator[str]:
    """Serve an ASGI app with uvicorn in a background thread until the block ends; yields its
    base URL. For tests and benchmarks that talk to a real server over HTTP in one process."""
    config = uvicorn.Config(
        app,  # type: ignore[arg-type]
        host=host,
        port=port,
        log_config=None,  # leave the host process's logging alone
        access_log=False,
        loop=EVENT_LOOP,
        lifespan="on",
        ws="none",
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"uvicorn on {host}:{port} did not start")
        time.sleep(0.01)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        # A server stuck in a request may not stop in time; its thread is a daemon.
        thread.join(timeout=10)
