"""The application factory: everything the portal needs is built here from settings."""

from __future__ import annotations

import asyncio
import functools
import gc
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fastapi import Depends, FastAPI
from fastapi.staticfiles import StaticFiles
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from embedportal import __version__
from embedportal.access.api_keys import LastUseMemo, ReadMemo
from embedportal.access.audit_log import prune_audit
from embedportal.access.microsoft_accounts import MicrosoftSignIns
from embedportal.access.organization import PowerBIClients
from embedportal.access.person_tokens import PersonTokens
from embedportal.access.read_cache import ReadCache
from embedportal.access.viewer_health import OpenViewers, TokenTally
from embedportal.capacity.control import CapacityControl
from embedportal.capacity.controller import CapacityController
from embedportal.capacity.ledger import ActivityLedger
from embedportal.capacity.probe import CapacityProbe
from embedportal.db.periodic import flush_periodically
from embedportal.db.session import create_db_engine, create_session_factory
from embedportal.health import HealthChecker
from embedportal.mail.sender import MailSender
from embedportal.mail.transport import transport_for
from embedportal.metrics import PortalMetrics
from embedportal.settings import Settings
from embedportal.tokens.gate import TokenGate
from embedportal.tokens.service import TokenService, create_token_cache
from embedportal.web.api_auth import install_api_error_handlers
from embedportal.web.context import RequestContext
from embedportal.web.errors import install_error_handlers
from embedportal.web.idempotency import IdempotentAnswers
from embedportal.web.input_guard import guard_input
from embedportal.web.last_resort import LastResort
from embedportal.web.observability import RequestObservability
from embedportal.web.push import PushHub
from embedportal.web.rate_limit import SessionBuckets
from embedportal.web.routes import (
    account,
    admin_api_keys,
    admin_audit,
    admin_branding,
    admin_capacities,
    admin_groups,
    admin_health,
    admin_outbox,
    admin_reports,
    admin_settings,
    admin_users,
    admin_view_as,
    admin_viewers,
    api_docs,
    api_session,
    api_tokens,
    api_v1_audit,
    api_v1_groups,
    api_v1_reports,
    api_v1_sso,
    api_v1_users,
    auth,
    brand,
    events,
    health,
    home,
    microsoft_signin,
    password,
    reports,
    sso,
    tv,
    two_step,
    vendor,
    viewer,
)
from embedportal.web.security_headers import SecurityHeaders
from embedportal.web.templating import create_templates

WEB_DIR = Path(__file__).resolve().parent / "web"


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    hub: PushHub = app.state.push_hub
    await hub.start()
    # Async callables run at start, before the server accepts requests (e.g. demo seeding).
    for start in app.state.on_startup:
        await start()
    # What start-up built (modules, the app, its caches' first fill) lives as long as the
    # process: out of the collector's sight, a full collection during a burst of token requests
    # scans only what the requests made, not the whole heap.
    gc.freeze()
    # Long-running loops (the ledger's flush, the capacity controller), cancelled at shutdown.
    tasks = [asyncio.create_task(run()) for run in app.state.background]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await hub.stop()
        for close in reversed(app.state.on_shutdown):
            await close()


AUDIT_PRUNE_INTERVAL_SECONDS = 3600.0


def prune_audit_now(session_factory: sessionmaker[Session], keep_days: int) -> int:
    return prune_audit(session_factory=session_factory, keep_days=keep_days, now=datetime.now(UTC))


def _disposer(engine: Engine) -> Callable[[], Awaitable[None]]:
    async def dispose() -> None:
        engine.dispose()

    return dispose


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    app = FastAPI(
        lifespan=lifespan,
        title="embedportal",
        version=__version__,
        # The schema and Swagger UI are routes of ours (web/routes/api_docs.py): not public
        # outside development, and Swagger UI from the npm package rather than a CDN.
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        # Before any route's own dependencies: what no field accepts never reaches them.
        dependencies=[Depends(guard_input)],
        # No OpenTelemetry here (Prometheus at /metrics): FastAPI would otherwise look for a
        # configured provider, through os.environ, on every request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    engine = create_db_engine(settings.resolved_database_url)
    app.state.settings = settings
    app.state.engine = engine
    app.state.session_factory = create_session_factory(engine)
    app.state.templates = create_templates()
    app.state.metrics = PortalMetrics()
    app.state.push_hub = PushHub(settings.redis_url, channel=f"{settings.redis_prefix}:push")
    # Async callables run at shutdown, last added first (e.g. closing HTTP clients).
    app.state.on_shutdown = []
    app.state.on_startup = []
    app.state.background = []
    app.state.startup_notes = []
    app.state.powerbi_clients = PowerBIClients()
    app.state.microsoft_sign_ins = MicrosoftSignIns()
    app.state.on_shutdown.append(app.state.microsoft_sign_ins.aclose)
    # People's own Power BI tokens (user-owned embedding), renewed from their refresh tokens.
    app.state.person_tokens = PersonTokens()
    app.state.token_service = TokenService(
        cache=create_token_cache(settings.redis_url, prefix=f"{settings.redis_prefix}:tokens"),
        wait_seconds=settings.token_wait_seconds,
        first_wait_seconds=settings.token_first_wait_seconds,
        lock_seconds=settings.token_lock_seconds,
        error_seconds=settings.token_error_seconds,
    )
    # The token API's hot path (docs/token-api.md): bounded concurrency, reads through a cache
    # that every commit touching access and every push event drop, tokens counted in memory.
    app.state.token_gate = TokenGate(
        limit=settings.token_concurrency, queue_seconds=settings.token_queue_seconds
    )
    app.state.read_cache = ReadCache(
        ttl_seconds=settings.read_cache_seconds, max_entries=settings.read_cache_entries
    )
    app.state.read_cache.watch_commits(app.state.session_factory)
    app.state.push_hub.add_listener(app.state.read_cache.invalidate)
    # Blocked, deleted or signed out (on any instance): their own Power BI token is dropped here.
    app.state.push_hub.add_listener(app.state.person_tokens.forget_addressed)
    app.state.token_tally = TokenTally(
        app.state.session_factory,
        open_viewers=OpenViewers(redis_url=settings.redis_url, key_prefix=settings.redis_prefix),
    )
    app.state.telemetry_limiter = SessionBuckets(per_minute=settings.telemetry_events_per_minute)
    app.state.background.append(app.state.token_tally.run)
    if settings.redis_url:  # Admin → Viewer health's "open now" across instances
        app.state.background.append(app.state.token_tally.open_viewers.run)
    # The integration API (/api/v1): each key's rate limit, and when its last use was written.
    app.state.api_limiter = SessionBuckets(
        per_minute=settings.api_requests_per_minute, capacity=settings.api_burst
    )
    # Wrong keys by address: a guesser is slowed to a crawl, a mistyped key costs a moment.
    app.state.api_key_failures = SessionBuckets(per_minute=settings.api_failed_keys_per_minute)
    app.state.api_key_memo = LastUseMemo()
    app.state.api_read_memo = ReadMemo()
    if settings.audit_retention_days:
        app.state.background.append(
            functools.partial(
                flush_periodically,
                functools.partial(
                    prune_audit_now, app.state.session_factory, settings.audit_retention_days
                ),
                interval_seconds=AUDIT_PRUNE_INTERVAL_SECONDS,
                name="audit retention",
            )
        )
    app.state.on_shutdown.append(app.state.powerbi_clients.aclose)
    app.state.on_shutdown.append(app.state.token_service.aclose)
    # A connection of its own: a burst of requests holding every pooled connection must not make
    # a database that answers look down.
    health_engine = create_db_engine(settings.resolved_database_url, connections=1)
    app.state.health = HealthChecker(
        engine=health_engine,
        redis_url=settings.redis_url,
        powerbi_url=settings.powerbi_url_to_check,
        timeout_seconds=settings.health_timeout_seconds,
        cache_seconds=settings.health_cache_seconds,
    )
    app.state.on_shutdown.append(app.state.health.aclose)
    app.state.on_shutdown.append(_disposer(health_engine))
    app.state.capacity_probe = CapacityProbe()
    app.state.on_shutdown.append(app.state.capacity_probe.aclose)
    app.state.activity_ledger = ActivityLedger(app.state.session_factory)
    app.state.background.append(app.state.activity_ledger.run)
    app.state.capacity_control = CapacityControl(app.state.session_factory, settings)
    app.state.on_shutdown.append(app.state.capacity_control.aclose)
    app.state.capacity_controller = CapacityController(
        app.state.session_factory,
        app.state.capacity_control,
        app.state.activity_ledger,
        interval_seconds=settings.capacity_controller_seconds,
        retention=timedelta(days=settings.activity_retention_days),
    )
    if settings.capacity_controller:
        app.state.background.append(app.state.capacity_controller.run)
    app.state.mail_sender = MailSender(
        app.state.session_factory,
        transport_for(settings),
        interval_seconds=settings.mail_send_seconds,
        max_attempts=settings.mail_max_attempts,
    )
    if settings.mail_sender:
        app.state.background.append(app.state.mail_sender.run)

    # Innermost: it keeps the answer a route gave to an `Idempotency-Key` (web/idempotency.py).
    app.add_middleware(IdempotentAnswers)
    app.add_middleware(RequestContext)
    # Inside the observability layer: an unhandled error becomes a generic 500 naming the request
    # id, logged with its traceback (web/last_resort.py).
    app.add_middleware(LastResort)
    # Added last, so outermost: it sees every request, and the context middleware's errors.
    app.add_middleware(RequestObservability, metrics=app.state.metrics)
    # Outermost of all: every answer, the observability layer's own 503 included, carries them.
    app.add_middleware(SecurityHeaders, settings=settings)
    install_error_handlers(app)
    install_api_error_handlers(app)
    _track_shared_state(app)

    app.mount("/static/app", StaticFiles(directory=WEB_DIR / "static"), name="static")
    # The token API first: every open viewer calls it, and routes are matched in order.
    for module in (api_tokens, health, vendor, brand, home, auth, two_step, account, admin_users):
        app.include_router(module.router)
    for module in (admin_groups, admin_audit, events, api_session, api_docs, admin_capacities):
        app.include_router(module.router)
    # The integration API (docs/integration-api.md).
    for module in (api_v1_users, api_v1_groups, api_v1_reports, api_v1_audit, api_v1_sso):
        app.include_router(module.router)
    # Pages of HTML only, left out of the API reference.
    html_pages = (
        reports,
        viewer,
        tv,
        password,
        admin_reports,
        admin_settings,
        admin_viewers,
        admin_health,
        microsoft_signin,
        admin_outbox,
        admin_branding,
        admin_view_as,
        admin_api_keys,
        sso,
    )
    for module in html_pages:
        app.include_router(module.router, include_in_schema=False)
    return app


def _track_shared_state(app: FastAPI) -> None:
    """/metrics reads the pool's and the push hub's figures when scraped."""
    pool = app.state.engine.pool
    hub: PushHub = app.state.push_hub
    metrics: PortalMetrics = app.state.metrics
    metrics.track_pool(
        checked_out=lambda: float(getattr(pool, "checkedout", lambda: 0)()),
        size=lambda: float(getattr(pool, "size", lambda: 0)()),
    )
    metrics.track_push(
        redis_live=lambda: float(hub.redis_live), fallbacks=lambda: float(hub.fallbacks)
    )
