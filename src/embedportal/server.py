"""Running the servers: the portal, and the built-in emulator beside it when it is the default."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from pydantic import SecretStr
from rich.console import Console

from embedportal.settings import Settings

logger = logging.getLogger("embedportal")

GRACEFUL_SHUTDOWN_SECONDS = 3


def _server(app: object, *, host: str, port: int) -> uvicorn.Server:
    config = uvicorn.Config(
        app,  # type: ignore[arg-type]
        host=host,
        port=port,
        log_level="info",
        access_log=False,  # access logs would carry report ids in URLs; we log what matters
        proxy_headers=True,
        lifespan="on",
        # Open viewers hold push streams forever; on shutdown give them a moment, not forever.
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )
    return uvicorn.Server(config)


def embedded_default_settings(settings: Settings) -> tuple[Settings, object]:
    """Point the portal's Power BI settings at a built-in emulator on the emulator port. The
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
            "powerbi_authority_host": base,
            "powerbi_api_url": base,
            "arm_url": base,
            "capacity_subscription_id": emulator_settings.subscription_id,
            "capacity_resource_group": emulator_settings.resource_group,
            "capacity_name": emulator_settings.capacity_name,
        }
    )
    return portal_settings, emulator_settings


async def run_portal(settings: Settings, *, console: Console) -> None:
    from embedportal.app import create_app
    from embedportal.db.migrate import upgrade_database

    upgrade_database(settings.resolved_database_url)
    servers: list[uvicorn.Server] = []
    with_emulator = not settings.has_powerbi_credentials
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

    portal_app = create_app(settings)
    from embedportal.demo import demo_wanted, prepare_demo

    if demo_wanted(settings, with_emulator=with_emulator):
        prepare_demo(portal_app)
    servers.append(_server(portal_app, host=settings.host, port=settings.port))
    console.print(f"[bold green]embedportal[/bold green] on http://{settings.host}:{settings.port}")
    for line in getattr(portal_app.state, "startup_notes", []):
        console.print(f"  {line}")
    await _serve_all(servers)


async def run_emulator_only(*, host: str, port: int, console: Console) -> None:
    from embedportal.emulator.app import create_emulator_app
    from embedportal.emulator.settings import EmulatorSettings

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
