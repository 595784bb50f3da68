"""The push channel (server-sent events), viewer telemetry, and /metrics.

Both also feed the capacity's activity ledger, in memory (the ledger writes every few seconds,
never once per event): an open push stream is an open viewer's heartbeat for the capacities of
the reports it names, and a viewer's `interaction` telemetry is a person using a report.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import json
import math
import random
import re
import time
from collections.abc import Callable, Collection, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool
from starlette.types import Receive, Scope, Send

from embedportal.access.capacity_rights import capacity_rights
from embedportal.access.grants import can_view
from embedportal.access.read_cache import ReadCache
from embedportal.access.viewer_health import ReportedEvent
from embedportal.capacity.activity import ActivityKind
from embedportal.capacity.ledger import ActivityLedger
from embedportal.db.models import Capacity, Report, User
from embedportal.db.session import session_scope
from embedportal.i18n import _
from embedportal.metrics import REFRESH_REASONS, PortalMetrics
from embedportal.web.context import live_session_ids
from embedportal.web.deps import (
    ActivityLedgerDep,
    AppSettings,
    CsrfProtected,
    MetricsDep,
    PushHubDep,
    ReadCacheDep,
    SessionFactoryDep,
    SignedInUser,
    TelemetryLimiterDep,
    TokenTallyDep,
    signed_in_user,
)
from embedportal.web.push import HEARTBEAT, SESSION_ENDED, PushEvent, PushHub, Subscription
from embedportal.web.routes.tv import MAX_TV_REPORTS

router = APIRouter(tags=["viewer"])

# A `heartbeat` event this often keeps proxies from closing an idle stream, and lets the viewer
# see a dead one (it reconnects after two silent intervals; the `hello` event announces this).
HEARTBEAT_SECONDS = 15.0
# The `retry:` hint (ms) for browsers that reconnect by themselves: drawn per stream, so that
# viewers dropped together by a restart do not come back in the same instant.
RETRY_HINT_MS = (1000, 5000)
# How often an open stream notes its reports' capacities in the activity ledger: the ledger
# keeps one row per minute, so once a minute is all it can use.
ACTIVITY_SECONDS = 60.0
# The most reports one stream speaks for: a TV screen's limit. Further ids are ignored.
MAX_WATCHED_REPORTS = MAX_TV_REPORTS
# The portal's report ids are Power BI ids (GUIDs); anything else is not looked up.
REPORT_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True)
class WatchedCapacities:
    """What an open stream notes once a minute: its reports' capacities, and whether this
    person's open reports keep a capacity on (read once, when the stream opens)."""

    capacity_ids: tuple[str, ...] = ()
    keeps_capacity_on: bool = False


def _valid_report_ids(report_ids: Iterable[str]) -> list[str]:
    """The first MAX_WATCHED_REPORTS distinct ids that look like report ids."""
    chosen: list[str] = []
    for report_id in report_ids:
        if REPORT_ID.match(report_id) and report_id not in chosen:
            chosen.append(report_id)
            if len(chosen) == MAX_WATCHED_REPORTS:
                break
    return chosen


def _viewable_capacities(session: Session, user: User, report_ids: Collection[str]) -> set[str]:
    """The capacities of those reports the user may view. Unknown and forbidden reports, and
    reports on shared capacity, are left out; so is a capacity the portal has no row for (its
    ledger rows could not be written)."""
    if not report_ids:
        return set()
    reports = session.scalars(
        select(Report)
        .join(Capacity, Capacity.id == Report.capacity_id)
        .where(Report.id.in_(report_ids))
    )
    return {
        report.capacity_id
        for report in reports
        if report.capacity_id is not None and can_view(session=session, user=user, report=report)
    }


def _watched_capacities(session: Session, user: User, report_ids: list[str]) -> WatchedCapacities:
    capacity_ids = _viewable_capacities(session, user, report_ids)
    if not capacity_ids:
        return WatchedCapacities()
    keeps_on = capacity_rights(session=session, user=user).keeps_on.allowed
    return WatchedCapacities(capacity_ids=tuple(sorted(capacity_ids)), keeps_capacity_on=keeps_on)


def _note_heartbeats(ledger: ActivityLedger, user_id: int, watched: WatchedCapacities) -> None:
    for capacity_id in watched.capacity_ids:
        ledger.note(
            capacity_id=capacity_id,
            user_id=user_id,
            kind=ActivityKind.HEARTBEAT,
            keeps_capacity_on=watched.keeps_capacity_on,
        )


def _sse(event: PushEvent) -> str:
    return f"event: {event.kind}\ndata: {json.dumps(event.data)}\n\n"


def _stream_opening() -> str:
    """The jittered reconnection hint, then the heartbeat interval the viewer watches."""
    retry_ms = random.randint(*RETRY_HINT_MS)  # noqa: S311 - spreading load, not a secret
    hello = json.dumps({"heartbeatSeconds": HEARTBEAT_SECONDS})
    return f"retry: {retry_ms}\n\nevent: hello\ndata: {hello}\n\n"


HEARTBEAT_TEXT = "event: heartbeat\ndata: {}\n\n"


class EventStream(Response):
    """The open viewer's stream of server-sent events, as a bare ASGI response: the hub's one
    heartbeat task wakes it (no timer of its own), and one task per stream waits for the
    client to go (StreamingResponse would add a task group, and the loop a timer per wait)."""

    media_type = "text/event-stream"

    def __init__(
        self,
        *,
        hub: PushHub,
        user_id: int,
        session_id: str | None,
        on_heartbeat: Beat,
        metrics: PortalMetrics,
        watching: Callable[[], AbstractContextManager[object]] = contextlib.nullcontext,
    ) -> None:
        self.status_code = 200
        self.background = None
        self.init_headers({"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
        self._hub = hub
        self._user_id = user_id
        self._session_id = session_id
        self._on_heartbeat = on_heartbeat
        self._metrics = metrics
        self._watching = watching  # Admin → Viewer health's "open now" counts it while open

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        self._metrics.open_viewers.inc()
        try:
            with (
                self._watching(),
                self._hub.subscribe(
                    user_id=self._user_id,
                    session_id=self._session_id,
                    heartbeat_seconds=HEARTBEAT_SECONDS,
                ) as subscription,
            ):
                watcher = asyncio.ensure_future(_until_disconnected(receive, subscription))
                try:
                    await _send_chunk(send, _stream_opening())
                    self._on_heartbeat()  # the first note at once: the viewer is open
                    await self._serve(subscription, send)
                finally:
                    watcher.cancel()
        finally:
            self._metrics.open_viewers.dec()
        # The session ended (or the client went: then the server ignores this).
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _serve(self, subscription: Subscription, send: Send) -> None:
        while True:
            event = await subscription.next()
            if event is None or event is SESSION_ENDED:
                return
            if event is HEARTBEAT:
                self._on_heartbeat()
                await _send_chunk(send, HEARTBEAT_TEXT)
            else:
                await _send_chunk(send, _sse(event))


Beat = Callable[[], None]


async def _send_chunk(send: Send, text: str) -> None:
    await send({"type": "http.response.body", "body": text.encode(), "more_body": True})


async def _until_disconnected(receive: Receive, subscription: Subscription) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    subscription.end()


@router.get(
    "/api/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def events(
    request: Request,
    user: SignedInUser,
    hub: PushHubDep,
    ledger: ActivityLedgerDep,
    metrics: MetricsDep,
    settings: AppSettings,
    session_factory: SessionFactoryDep,
    tally: TokenTallyDep,
    report: Annotated[list[str] | None, Query(description="A report open on the page.")] = None,
) -> Response:
    """Server-sent events for the signed-in user's open viewers: `policy`, `access`, `session`
    (a sign-out of this user: each viewer asks /api/session whether its own session is gone),
    `hello` first (the heartbeat interval), then `heartbeat` every 15 s while nothing else comes.
    The stream ends when its session does (signed out, blocked, idle too long): at once after
    the event that says so, at the latest at its next heartbeat.

    `report` names the reports open on the page (at most 12; unknown ones and those the user
    may not view are ignored). While the stream is open, each of their capacities is noted once
    a minute as an open viewer's heartbeat in the activity ledger."""
    user_id = user.id
    report_ids = _valid_report_ids(report or [])
    # Read once, off the event loop, before the stream starts (its database session ends here).
    watched = (
        await run_in_threadpool(_watched_capacities_of, session_factory, user_id, report_ids)
        if report_ids
        else WatchedCapacities()
    )
    # One heartbeat task for every stream of the process, checking their sessions in bulk.
    hub.keep_alive(
        every=HEARTBEAT_SECONDS,
        live_sessions=functools.partial(
            live_session_ids, session_factory, idle_minutes=settings.session_idle_minutes
        ),
    )
    next_note = 0.0

    def on_heartbeat() -> None:
        # Noted at the last heartbeat before a minute is up: the ledger keeps a row a minute.
        nonlocal next_note
        now = time.monotonic()
        if watched.capacity_ids and now + HEARTBEAT_SECONDS > next_note:
            _note_heartbeats(ledger, user_id, watched)
            next_note = now + ACTIVITY_SECONDS

    return EventStream(
        hub=hub,
        user_id=user_id,
        session_id=request.state.web_session_id,
        on_heartbeat=on_heartbeat,
        metrics=metrics,
        watching=functools.partial(
            tally.open_viewers.watching,
            user_id=user_id,
            user_email=user.email,
            report_ids=report_ids,
        ),
    )


def _watched_capacities_of(
    session_factory: sessionmaker[Session], user_id: int, report_ids: list[str]
) -> WatchedCapacities:
    with session_scope(session_factory) as db:
        user = db.get(User, user_id)
        if user is None:
            return WatchedCapacities()
        return _watched_capacities(db, user, report_ids)


class ViewerEvent(BaseModel):
    # `interaction`: a person used the report (the keeper sends at most one a minute per report);
    # it goes to the capacity's activity ledger, not to the per-day viewer-health counts.
    type: Literal["refreshed", "refreshFailed", "expired", "recovered", "interaction"]
    # Free text up to 40 printable characters; reasons the portal does not know are counted as
    # "other".
    reason: str | None = Field(None, max_length=40, pattern=r"^[\x20-\x7e]*$")
    # The portal's report ids are Power BI ids (GUIDs); nothing else is looked up.
    report_id: str | None = Field(
        None, alias="reportId", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$"
    )


class TelemetryBatch(BaseModel):
    events: list[ViewerEvent] = Field(..., max_length=100)


@dataclass(frozen=True)
class ReportAccess:
    """What telemetry needs of one report for one user: may they open it, and the capacity
    whose activity ledger an interaction with it counts for (None: shared capacity, or one the
    portal has no row for)."""

    viewable: bool
    capacity_id: str | None


def _load_report_access(
    session_factory: sessionmaker[Session], user_id: int, report_id: str
) -> ReportAccess:
    with session_scope(session_factory) as session:
        user = session.get(User, user_id)
        report = session.get(Report, report_id)
        if user is None or user.is_blocked or report is None or not report.is_available:
            return ReportAccess(viewable=False, capacity_id=None)
        if not can_view(session=session, user=user, report=report):
            return ReportAccess(viewable=False, capacity_id=None)
        capacity_id = report.capacity_id
        if capacity_id is not None and session.get(Capacity, capacity_id) is None:
            capacity_id = None
        return ReportAccess(viewable=True, capacity_id=capacity_id)


async def _report_access(
    read_cache: ReadCache, session_factory: sessionmaker[Session], user_id: int, report_id: str
) -> ReportAccess:
    """Through the read cache: an open viewer reports on the same reports batch after batch,
    and any change to access (grants, groups, blocking) drops the cache at once."""
    load = functools.partial(_load_report_access, session_factory, user_id, report_id)
    return await read_cache.get_or_load(("telemetry-access", user_id, report_id), load)


def _too_many(wait_seconds: float) -> JSONResponse:
    retry_after = max(1, math.ceil(min(wait_seconds, 3600.0)))
    return JSONResponse(
        {
            "detail": _("Too much telemetry from this session. Send it again later."),
            "code": "TooManyRequests",
        },
        status_code=429,
        headers={"Retry-After": str(retry_after)},
    )


@router.post(
    "/api/telemetry",
    status_code=204,
    # The session is checked before CSRF, so a signed-out caller gets 401, not 403.
    dependencies=[Depends(signed_in_user), CsrfProtected],
    responses={
        403: {"description": "A report the user may not open is named"},
        429: {"description": "Too much telemetry from this session; Retry-After says when"},
    },
)
async def telemetry(
    request: Request,
    batch: TelemetryBatch,
    user: SignedInUser,
    read_cache: ReadCacheDep,
    session_factory: SessionFactoryDep,
    limiter: TelemetryLimiterDep,
    tally: TokenTallyDep,
    metrics: MetricsDep,
    ledger: ActivityLedgerDep,
) -> Response:
    """Open viewers report refreshes, failures, expiry screens and recoveries: counted in this
    instance's Prometheus metrics, and per day for Admin → Viewer health. Interactions are noted
    in the capacity's activity ledger. Both are kept in memory and written every few seconds:
    no database write here, and reads only through the read cache.

    Each web session may send `EMBEDPORTAL_TELEMETRY_EVENTS_PER_MINUTE` events (429 with
    Retry-After beyond). A batch naming a report the user may not open is refused whole (403):
    nobody's telemetry speaks for reports they cannot see."""
    wait = limiter.take(request.state.web_session_id, max(1, len(batch.events)))
    if wait > 0:
        return _too_many(wait)
    named = sorted({event.report_id for event in batch.events if event.report_id})
    if len(named) > MAX_WATCHED_REPORTS:
        raise HTTPException(
            status_code=400,
            detail=_("A batch may name at most %(count)s reports.", count=MAX_WATCHED_REPORTS),
        )
    access = {
        report_id: await _report_access(read_cache, session_factory, user.id, report_id)
        for report_id in named
    }
    if not all(found.viewable for found in access.values()):
        raise HTTPException(
            status_code=403,
            detail=_("Telemetry names a report you do not have access to. Nothing was counted."),
        )
    health = [event for event in batch.events if event.type != "interaction"]
    if health:
        tally.note_events(
            [
                ReportedEvent(event_type=event.type, reason=event.reason, report_id=event.report_id)
                for event in health
            ]
        )
    touched = {
        access[event.report_id].capacity_id
        for event in batch.events
        if event.type == "interaction" and event.report_id
    }
    for capacity_id in sorted(capacity for capacity in touched if capacity is not None):
        # Interaction always counts (activity.ALWAYS_COUNTED): the keeps-on flag is moot.
        ledger.note(
            capacity_id=capacity_id,
            user_id=user.id,
            kind=ActivityKind.INTERACTION,
            keeps_capacity_on=False,
        )
    for event in health:
        reason = event.reason if event.reason in REFRESH_REASONS else None
        metrics.record_viewer_event(event.type, reason)
    return Response(status_code=204)


def _bearer_token_matches(authorization: str | None, expected: str) -> bool:
    scheme, _sep, supplied = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not supplied.strip():
        return False
    # Bytes: compare_digest refuses str with non-ASCII characters, which a header may carry.
    return hmac.compare_digest(supplied.strip().encode(), expected.encode())


LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})


def metrics_refusal(
    *,
    environment: str,
    token: str | None,
    authorization: str | None,
    client_host: str | None,
    forwarded: bool,
) -> str | None:
    """Why `/metrics` is refused to this caller, or None. With a metrics token, only its
    bearer reads; without one, anyone outside production, and in production only a direct
    connection from this machine (through no proxy: a proxy on the same host would make every
    outside caller look local, so a forwarded request is not local)."""
    if token is not None:
        if _bearer_token_matches(authorization, token):
            return None
        return _("Send the metrics token as “Authorization: Bearer <token>”.")
    if environment != "production":
        return None
    if client_host in LOOPBACK_HOSTS and not forwarded:
        return None
    return _(
        "In production /metrics answers only this machine unless EMBEDPORTAL_METRICS_TOKEN is "
        "set; then send it as “Authorization: Bearer <token>”."
    )


@router.get("/metrics", include_in_schema=False)
def prometheus_metrics(
    request: Request,
    settings: AppSettings,
    metrics: MetricsDep,
) -> Response:
    """Prometheus text format: see `metrics_refusal` for who may read it."""
    expected = settings.metrics_token
    refusal = metrics_refusal(
        environment=settings.environment,
        token=expected.get_secret_value() if expected is not None else None,
        authorization=request.headers.get("authorization"),
        client_host=request.client.host if request.client is not None else None,
        forwarded="x-forwarded-for" in request.headers or "forwarded" in request.headers,
    )
    if refusal is not None:
        raise HTTPException(
            status_code=401,
            detail=refusal,
            headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
        )
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
