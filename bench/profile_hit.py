"""The CPU one cache-hit token request costs, in-process and repeatable (issue #10).

`python -m bench.profile_hit` builds the portal on a temporary SQLite file with the built-in
emulator on loopback (as `embedportal serve --demo` wires them), signs the demo viewer in with
the portal's own `start_session`, warms that viewer's token for one report, then calls
`POST /api/reports/{id}/token` straight through the ASGI app, with no server or HTTP client
in between, so the figure is the portal's own cost. It prints the CPU microseconds per request
(measured without the profiler, best of a few rounds, since the machine is shared), then the
same calls under cProfile and their top cumulative costs. Logging is on, as JSON to
/dev/null, so the per-request log line is paid as in production.

    .venv/bin/python -m bench.profile_hit                  # 1,000 calls, best of 10, top 40
    .venv/bin/python -m bench.profile_hit --requests 5000 --top 60 --sort tottime
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.support import cheap_password_hashing, free_port

BODY = b'{"reason":"margin"}'


async def _call(app: Any, scope: dict[str, Any]) -> int:
    """One request through the ASGI app; its status."""
    sent = False
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": BODY, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(dict(scope), receive, send)
    return status


def _scope(report_id: str, cookie: str, csrf: str) -> dict[str, Any]:
    path = f"/api/reports/{report_id}/token"
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"user-agent", b"bench"),
            (b"accept", b"*/*"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(BODY)).encode()),
            (b"cookie", cookie.encode()),
            (b"x-csrf-token", csrf.encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }


async def _round(app: Any, scope: dict[str, Any], requests: int) -> float:
    """CPU seconds of this process for ``requests`` calls, one after another (CPU rather than
    wall time: the two other processes on the machine then matter less); each must be a 200."""
    started = time.process_time()
    for _ in range(requests):
        status = await _call(app, scope)
        if status != 200:
            raise RuntimeError(f"a cache-hit call answered {status}")
    return time.process_time() - started


async def _measure(app: Any, scope: dict[str, Any], args: argparse.Namespace) -> None:
    async with app.router.lifespan_context(app):
        # The first call mints (and fills the read cache); every later one is a hit.
        if await _call(app, scope) != 200:
            raise RuntimeError("the warming call did not get a token")
        await _round(app, scope, min(200, args.requests))
        best = min([await _round(app, scope, args.requests) for _ in range(args.rounds)])
        per_hit = best / args.requests * 1e6
        print(
            f"cache hits: {per_hit:.0f} µs of CPU per request ({args.requests} calls, best of "
            f"{args.rounds} rounds, no profiler)"
        )
        profiler = cProfile.Profile()
        profiler.enable()
        await _round(app, scope, args.requests)
        profiler.disable()
        stats = pstats.Stats(profiler)
        stats.strip_dirs().sort_stats(args.sort).print_stats(args.top)
        print(f"cache hits: {per_hit:.0f} µs of CPU per request without the profiler")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--log-level", default="info", help="warning: without the request's line")
    parser.add_argument("--sort", default="cumulative", choices=("cumulative", "tottime"))
    args = parser.parse_args(argv)

    from sqlalchemy import select

    from embedportal import demo
    from embedportal.access.sessions import SESSION_COOKIE, start_session
    from embedportal.app import create_app
    from embedportal.db.migrate import upgrade_database
    from embedportal.db.models import User
    from embedportal.db.session import session_scope
    from embedportal.emulator.app import create_emulator_app
    from embedportal.emulator.demo import REGIONAL_PERFORMANCE_REPORT_ID
    from embedportal.logs import configure_logging
    from embedportal.server import embedded_default_settings, serve_in_thread
    from embedportal.settings import Settings

    with (
        tempfile.TemporaryDirectory(prefix="embedportal-profile-") as tmp,
        open(os.devnull, "w") as devnull,
        cheap_password_hashing(),
    ):
        handler = configure_logging(log_format="json", level=args.log_level, stream=devnull)
        base = Settings(
            _env_file=None,  # type: ignore[call-arg]
            environment="development",
            database_url=f"sqlite:///{Path(tmp, 'profile.db').as_posix()}",
            data_dir=Path(tmp),
            demo=True,
            emulator_port=free_port(),
        )
        settings, emulator_settings = embedded_default_settings(base)
        upgrade_database(settings.resolved_database_url)
        emulator_app = create_emulator_app(emulator_settings)  # type: ignore[arg-type]
        app = create_app(settings)
        demo.prepare_demo(app)
        with session_scope(app.state.session_factory) as session:
            viewer = session.scalar(select(User).where(User.email == demo.VIEWER_EMAIL))
            if viewer is None:
                raise RuntimeError("the demo viewer is missing")
            started = start_session(session=session, user=viewer, user_agent="bench")
            cookie = f"{SESSION_COOKIE}={started.cookie_value}"
            csrf = started.record.csrf_token
        scope = _scope(REGIONAL_PERFORMANCE_REPORT_ID, cookie, csrf)
        try:
            with serve_in_thread(emulator_app, port=settings.resolved_emulator_port):
                asyncio.run(_measure(app, scope, args))
        finally:
            import logging

            logging.getLogger().removeHandler(handler)
            app.state.engine.dispose()


if __name__ == "__main__":
    main()
